//! Channel names: the Bayeux grammar, the `/meta/` and `/service/` namespaces, and wildcards.
//!
//! Routing never matches patterns against names one by one: a channel name is *expanded* into every
//! pattern that matches it (`/a/b` → `/a/b`, `/a/*`, `/a/**`, `/**`), and those are looked up as plain
//! keys. That keeps publish cost proportional to the channel's depth, and works the same for any engine.

/// Whether a byte may appear in a channel segment: the Bayeux grammar's `alpha | digit | mark`, as Faye
/// checks it (`faye/src/protocol/grammar.js`).
fn segment_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_!~()$@".contains(&c)
}

/// Whether `name` is a valid concrete channel name like `/foo/bar` (no wildcards).
pub fn is_valid_name(name: &str) -> bool {
    name.len() > 1
        && name.starts_with('/')
        && name[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg.bytes().all(segment_char))
}

/// Whether `name` is a valid wildcard pattern: `/*`, `/**`, or a valid name followed by `/*` or `/**`.
pub fn is_valid_pattern(name: &str) -> bool {
    let prefix = name.strip_suffix("/**").or_else(|| name.strip_suffix("/*"));
    match prefix {
        Some("") => true,
        Some(p) => is_valid_name(p),
        None => false,
    }
}

/// Whether `name` is a valid name or a valid pattern (what a subscription may name).
pub fn is_valid(name: &str) -> bool {
    is_valid_name(name) || is_valid_pattern(name)
}

/// Whether the channel is in the `/meta/` namespace (protocol channels, never subscribable).
pub fn is_meta(name: &str) -> bool {
    name == "/meta" || name.starts_with("/meta/")
}

/// Whether the channel is in the `/service/` namespace (messages for the server only, never routed to
/// subscribers).
pub fn is_service(name: &str) -> bool {
    name == "/service" || name.starts_with("/service/")
}

/// Whether a remote client may subscribe to `name`: valid, and neither `/meta/` nor `/service/` (Faye's
/// `Channel.isSubscribable`).
pub fn is_subscribable(name: &str) -> bool {
    is_valid(name) && !is_meta(name) && !is_service(name)
}

/// Every subscription key that receives a message published on the concrete channel `name`: the name
/// itself, `/parent/*`, and `/ancestor/**` for each ancestor including the root.
pub fn expand(name: &str) -> Vec<String> {
    let segments: Vec<&str> = name.split('/').skip(1).collect();
    let mut out = Vec::with_capacity(segments.len() + 2);
    out.push("/**".to_owned());
    let mut prefix = String::new();
    for (i, seg) in segments.iter().enumerate() {
        if i + 1 == segments.len() {
            out.push(format!("{prefix}/*"));
        }
        prefix.push('/');
        prefix.push_str(seg);
        if i + 1 < segments.len() {
            out.push(format!("{prefix}/**"));
        }
    }
    out.push(name.to_owned());
    out
}

/// Whether a subscription (a name or a pattern) receives messages published on channel `name`.
pub fn matches(subscription: &str, name: &str) -> bool {
    expand(name).iter().any(|key| key == subscription)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["/a", "/foo/bar", "/a-b_c!~()$@/9", "/meta/connect"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "/", "a", "/a/", "//a", "/a b", "/a.b", "/a/*", "/é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        for ok in ["/*", "/**", "/foo/*", "/foo/bar/**"] {
            assert!(is_valid_pattern(ok), "{ok}");
        }
        for bad in ["/foo/***", "/foo*", "/*/foo", "/foo/*/bar", "*", "/a./*"] {
            assert!(!is_valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn namespaces() {
        assert!(is_meta("/meta/foo") && is_meta("/meta") && !is_meta("/metadata"));
        assert!(is_service("/service/x") && !is_service("/services"));
        assert!(is_subscribable("/foo/**"));
        assert!(!is_subscribable("/meta/connect") && !is_subscribable("/service/x"));
        assert!(!is_subscribable("/meta/*") && !is_subscribable("nope"));
    }

    #[test]
    fn expansion_and_matching() {
        assert_eq!(expand("/a"), vec!["/**", "/*", "/a"]);
        assert_eq!(
            expand("/a/b/c"),
            vec!["/**", "/a/**", "/a/b/**", "/a/b/*", "/a/b/c"]
        );
        assert!(matches("/foo/*", "/foo/bar"));
        assert!(!matches("/foo/*", "/foo/bar/baz"));
        assert!(matches("/foo/**", "/foo/bar/baz"));
        assert!(!matches("/foo/**", "/foo"));
        assert!(!matches("/foo/*", "/foobar/x"));
        assert!(matches("/**", "/x/y"));
    }
}
