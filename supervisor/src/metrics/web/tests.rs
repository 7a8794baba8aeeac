use super::actions::bearer;
use super::{host_allowed, query, same_origin};

#[test]
fn bound_to_loopback_only_loopback_names_are_answered() {
    for ok in [
        Some("127.0.0.1:9100"),
        Some("localhost:9100"),
        Some("LOCALHOST"),
        Some("127.0.0.2"),
        Some("[::1]:9100"),
        Some("[::1]"),
        None,
    ] {
        assert!(host_allowed(ok, true), "{ok:?}");
    }
    // A rebinding site's name, however it resolves; names that only look like loopback.
    for bad in [
        "evil.example:9100",
        "localhost.evil.example",
        "127.0.0.1.nip.io:9100",
        "[::1].evil",
        "[::2]:9100",
        "10.0.0.1:9100",
        "",
    ] {
        assert!(!host_allowed(Some(bad), true), "{bad:?}");
    }
    // Bound elsewhere, the name a client uses is its business.
    assert!(host_allowed(Some("supervise.internal:9100"), false));
}

#[test]
fn only_the_pages_own_origin_may_act() {
    let host = Some("127.0.0.1:9100");
    assert!(same_origin(
        Some("http://127.0.0.1:9100"),
        Some("same-origin"),
        host
    ));
    // curl: no Origin, no Sec-Fetch-Site (it needs the token all the same).
    assert!(same_origin(None, None, host));
    for (origin, site) in [
        (Some("http://evil.example"), Some("cross-site")),
        (Some("http://evil.example"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
        (Some("null"), None),
        (Some("http://127.0.0.1:9101"), None),
        (Some("https://127.0.0.1:9100"), None),
    ] {
        assert!(!same_origin(origin, site, host), "{origin:?} {site:?}");
    }
    assert!(!same_origin(Some("http://127.0.0.1:9100"), None, None));
}

#[test]
fn bearer_tokens() {
    assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
    assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
    assert_eq!(bearer(Some("Basic abc")), None);
    assert_eq!(bearer(Some("Bearer")), None);
    assert_eq!(bearer(Some("Bearer ")), None);
    assert_eq!(bearer(None), None);
}

#[test]
fn query_values_are_decoded() {
    let q = "logs=api%2F1&lines=5&x=a+b&bad=%zz&cut=%4";
    assert_eq!(query(q, "logs").as_deref(), Some("api/1"));
    assert_eq!(query(q, "lines").as_deref(), Some("5"));
    assert_eq!(query(q, "x").as_deref(), Some("a b"));
    assert_eq!(query(q, "bad").as_deref(), Some("%zz"));
    assert_eq!(query(q, "cut").as_deref(), Some("%4"));
    assert_eq!(query(q, "none"), None);
    assert_eq!(query("%ff%fe=1&k=%ff", "k").as_deref(), Some("\u{fffd}"));
}

#[test]
fn the_page_loads_nothing_from_elsewhere() {
    // Its size is held at build time (see `assets.rs`); nothing is fetched from elsewhere.
    for asset in [include_str!("index.html"), include_str!("app.js")] {
        assert!(
            !asset.contains("http://") && !asset.contains("https://"),
            "an outside address"
        );
    }
}

#[test]
fn the_script_puts_no_markup_on_the_page() {
    // Worker text goes in with textContent; nothing parses a string as HTML.
    let script = include_str!("app.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "{sink}");
    }
}
