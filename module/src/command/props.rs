//! Property tests: every command parser takes arbitrary argument vectors without panicking, and every
//! error it returns has a reply text Redis can take as is: printable ASCII, bounded. The parsers are
//! plain functions over `&[&[u8]]`, so this runs without Redis (`module_hostile` in the tests crate does
//! the same against a real server). A unit test module, not an integration test: linked as a library,
//! the crate brings its Redis allocator, which only exists inside Redis.

use super::{apply, join, leave, parse_ttl, touch};
use crate::config::MAX_TTL_MS;
use crate::error::PresenceError;
use crate::guard::MAX_TEXT_BYTES;
use presence_roster::snapshot::MAX_REV;
use proptest::prelude::*;

fn assert_reply_safe(error: &PresenceError) {
    let text = error.reply_text();
    let bytes = text.to_bytes();
    assert!(bytes.len() <= MAX_TEXT_BYTES, "{} bytes", bytes.len());
    assert!(bytes.iter().all(|b| (0x20..0x7f).contains(b)), "{text:?}");
    // The first word is an error code.
    let code = bytes.split(|&b| b == b' ').next().unwrap_or_default();
    assert!(
        !code.is_empty() && code.iter().all(u8::is_ascii_uppercase),
        "{text:?}"
    );
}

/// Arguments biased towards what the parsers look for: option words in odd cases, numbers at the edges,
/// and bytes that break naive error text.
fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "TTL",
            "ttl",
            "WITHROSTER",
            "withRoster",
            "MAXMEMBERS",
            "maxMembers",
            "SNAPSHOT",
            "snapshot",
            "NX",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "2592000000",
            "2592000001",
            "4611686018427387904",
            "4611686018427387905",
            "18446744073709551615",
            "18446744073709551616",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![&b"\0"[..], b"\r\n", b"\xc4\x80", b"\xff", b"L 1:c\n"])
            .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 0..40),
        (1usize..2000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn argv() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(argument(), 0..10)
}

proptest! {
    #[test]
    fn no_parser_panics_and_every_error_is_a_safe_reply(args in argv()) {
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        match join::parse(&argv) {
            Ok(join) => {
                prop_assert!(argv.len() >= 5);
                if let Some(ttl) = join.ttl_ms {
                    prop_assert!((1..=MAX_TTL_MS as u64).contains(&ttl));
                }
                prop_assert!(join.max_members.is_none_or(|n| n >= 1));
            }
            Err(e) => assert_reply_safe(&e),
        }
        match leave::parse(&argv) {
            Ok(leave) => {
                prop_assert_eq!(Some(&leave.client), argv.get(2));
                if let Some(grace) = leave.grace_ms {
                    prop_assert!(grace <= MAX_TTL_MS as u64);
                }
            }
            Err(e) => assert_reply_safe(&e),
        }
        match touch::parse(&argv) {
            Ok(touch) => prop_assert!(!touch.clients.is_empty()),
            Err(e) => assert_reply_safe(&e),
        }
        match apply::parse(&argv) {
            Ok(apply::ApplyArgs::Ops { rev_before, .. }) => prop_assert!(rev_before <= MAX_REV),
            Ok(apply::ApplyArgs::Snapshot(_)) => {}
            Err(e) => assert_reply_safe(&e),
        }
        for arg in &argv {
            match parse_ttl(arg) {
                Ok(ttl) => prop_assert!((1..=MAX_TTL_MS as u64).contains(&ttl)),
                Err(e) => assert_reply_safe(&e),
            }
        }
    }

    #[test]
    fn unknown_options_are_quoted_escaped_and_bounded(option in prop::collection::vec(any::<u8>(), 1..3000)) {
        prop_assume!(!["TTL", "WITHROSTER", "MAXMEMBERS"].iter().any(|o| option.eq_ignore_ascii_case(o.as_bytes())));
        let argv: [&[u8]; 6] = [b"PRESENCE.JOIN", b"/c", b"cl", b"id", b"", &option];
        let error = join::parse(&argv).unwrap_err();
        prop_assert!(matches!(error, PresenceError::UnknownOption(_)));
        assert_reply_safe(&error);
    }
}
