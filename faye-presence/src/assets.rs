//! What the program serves besides Bayeux, for front ends that need no build step:
//! - `<mount>/client.js`: Faye's browser client (as Node Faye serves it), embedded at build time
//!   (see `build.rs`);
//! - `<mount>/presence.js`: the presence client library, `clients/faye-presence.js`;
//! - with `--static DIR`: the files under `DIR` at `/` (`/` is `DIR/index.html`), e.g. the "who is
//!   online" page of `examples/web/`.
//!
//! Routes are added beside the Bayeux router (axum merges them; the exact paths win over the mount's
//! wildcard), so the Bayeux server knows nothing of them.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Faye's browser bundle, or empty when the build had none.
const FAYE_CLIENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/faye-browser-min.js"));
/// The presence client library.
const PRESENCE_CLIENT: &str = include_str!("../../clients/faye-presence.js");
const JAVASCRIPT: &str = "application/javascript; charset=utf-8";

/// The routes for `mount` (the Bayeux mount path) and, if given, the static directory.
pub fn routes(mount: &str, static_dir: Option<PathBuf>) -> Router {
    let mount = mount.trim_end_matches('/');
    let mut router = Router::new()
        .route(&format!("{mount}/client.js"), get(faye_client))
        .route(&format!("{mount}/presence.js"), get(presence_client));
    if let Some(dir) = static_dir {
        router = router.fallback(move |request: Request<Body>| {
            let dir = dir.clone();
            async move { static_file(&dir, request).await }
        });
    }
    router
}

async fn faye_client() -> Response {
    if FAYE_CLIENT.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "this faye-presence was built without Faye's browser client: build it after \
             `npm ci --prefix tests/js`, or with FAYE_BROWSER_JS=<path to faye-browser-min.js>\n",
        )
            .into_response();
    }
    script(FAYE_CLIENT)
}

async fn presence_client() -> Response {
    script(PRESENCE_CLIENT.as_bytes())
}

fn script(body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, JAVASCRIPT),
            // Versioned with the binary, not with the URL: let browsers check again.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A file under `dir`, for GET and HEAD; 404 for anything outside it or missing.
async fn static_file(dir: &Path, request: Request<Body>) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(relative) = safe_relative(request.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut path = dir.join(relative);
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The request path as a path relative to the static directory, or `None` if it could leave it:
/// no `..`, no hidden files, no backslashes, no NUL, no percent-escapes (which could hide any of those).
fn safe_relative(uri_path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for segment in uri_path.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains(['\\', '\0', '%', ':']) {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => JAVASCRIPT,
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_paths_stay_inside_the_directory() {
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(
            safe_relative("/css/site.css"),
            Some(PathBuf::from("css/site.css"))
        );
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/.git/config",
            "/a%2e%2e/b",
            "/a\\b",
            "/c:x",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_presence_library_is_embedded() {
        assert!(PRESENCE_CLIENT.contains("FayePresence"));
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.js")), JAVASCRIPT);
    }
}
