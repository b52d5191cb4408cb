//! The one guard between Redis and this module's Rust code, and the text that crosses back.
//!
//! A panic that unwinds out of an `extern "C"` function aborts the process, and here the process is
//! Redis. So every function Redis calls (command entry points, data-type callbacks, the INFO handler) runs
//! its body under [`guard`]: a panic is caught, logged, counted in `INFO presence` (`presence_panics`),
//! and the callback returns the value Redis expects when it has nothing better.
//!
//! Text handed to Redis as a C string (error replies, log lines) goes through [`c_text`]: printable
//! ASCII only and bounded, so a NUL cannot make building it fail and CR LF cannot break a RESP line.

use std::any::Any;
use std::ffi::{c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context};

use crate::stats;

// The guard is catch_unwind; with panic=abort a panic would take Redis down before it could catch
// anything, so such a build must not exist.
#[cfg(panic = "abort")]
compile_error!(
    "the presence module must be built with panic = \"unwind\": its guard is catch_unwind"
);

/// The longest text sent to Redis as an error reply or a log line; longer text is cut with `...`.
pub const MAX_TEXT_BYTES: usize = 256;

/// Runs `body`; if it panics, reports the panic and returns `fallback` instead.
///
/// `what` names the callback in the log. Everything after the catch is itself panic-free or caught: the
/// report runs under its own `catch_unwind`, and a panic payload whose `Drop` panics is leaked.
pub fn guard<T>(what: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(panic) => {
            report_panic(what, panic);
            fallback
        }
    }
}

/// Counts and logs a caught panic. Never panics.
pub fn report_panic(what: &str, panic: Box<dyn Any + Send>) {
    stats::PANICS.add(1);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        log_warning(&format!(
            "presence: {what} panicked (a bug, please report it): {message}"
        ));
    }));
    if catch_unwind(AssertUnwindSafe(|| drop(panic))).is_err() {
        // The payload's own drop panicked; what is left of it is leaked, which is harmless.
    }
}

/// Writes `message` to the Redis log at warning level, made safe by [`c_text`].
pub fn log_warning(message: &str) {
    log(c"warning", message);
}

/// Writes `message` to the Redis log at notice level, made safe by [`c_text`].
pub fn log_notice(message: &str) {
    log(c"notice", message);
}

fn log(level: &CStr, message: &str) {
    let text = c_text(message.as_bytes());
    // SAFETY: a static level and a "%s" format with one NUL-terminated argument, so nothing in the
    // message is read as a format directive (redis-module's own log passes the message as the format).
    // A null context logs under the name "module", which is fine where no context is at hand.
    if let Some(log) = unsafe { raw::RedisModule_Log } {
        // SAFETY: as above.
        unsafe {
            log(
                std::ptr::null_mut(),
                level.as_ptr(),
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        };
    }
}

/// `text` as a C string Redis can take as is: bytes outside printable ASCII become `\xNN`, and the
/// result is cut at [`MAX_TEXT_BYTES`] with `...`. Total: no input makes it fail or panic.
pub fn c_text(text: &[u8]) -> CString {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(text.len().min(MAX_TEXT_BYTES) + 4);
    for &b in text {
        let escaped_len = if (0x20..0x7f).contains(&b) { 1 } else { 4 };
        if out.len() + escaped_len > MAX_TEXT_BYTES {
            out.truncate(MAX_TEXT_BYTES - 3);
            out.extend_from_slice(b"...");
            break;
        }
        if escaped_len == 1 {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
    // No NUL can be left (it was escaped); the fallback only keeps this total.
    CString::new(out).unwrap_or_else(|_| CString::from(c"ERR internal error"))
}

/// Replies with the error `text` (its first word the code), made safe by [`c_text`].
pub fn reply_error(ctx: &Context, text: &str) -> c_int {
    reply_error_c(ctx, &c_text(text.as_bytes()))
}

/// Replies with an error text that is already safe (a static string, or [`c_text`]'s).
pub fn reply_error_c(ctx: &Context, text: &CStr) -> c_int {
    // SAFETY: the live context of the current command and a NUL-terminated text.
    match unsafe { raw::RedisModule_ReplyWithError } {
        // SAFETY: as above.
        Some(reply) => unsafe { reply(ctx.get_raw(), text.as_ptr()) },
        None => raw::Status::Err as c_int,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_for_redis_is_printable_bounded_and_never_fails() {
        assert_eq!(
            c_text(b"SYNTAX unknown option 'NX'").to_bytes(),
            b"SYNTAX unknown option 'NX'"
        );
        assert_eq!(
            c_text(b"a\0b\r\n\xc4\x80").to_bytes(),
            b"a\\x00b\\x0d\\x0a\\xc4\\x80"
        );
        let long = c_text(&[0u8; 10_000]);
        assert!(long.to_bytes().len() <= MAX_TEXT_BYTES);
        assert!(long.to_bytes().ends_with(b"..."));
        let long = c_text(&[b'x'; 10_000]);
        assert_eq!(long.to_bytes().len(), MAX_TEXT_BYTES);
        assert!(c_text(b"").to_bytes().is_empty());
    }

    #[test]
    fn a_guard_returns_the_fallback_on_panic() {
        assert_eq!(guard("test", 0, || 7), 7);
        let before = stats::PANICS.value();
        assert_eq!(guard("test", 0, || panic!("boom")), 0);
        assert_eq!(stats::PANICS.value(), before + 1);
    }
}
