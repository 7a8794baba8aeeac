//! A hostile worker attacks the channel and the segment; the supervisor keeps running and keeps
//! supervising its neighbour.

mod common;

use std::time::Duration;

use common::{example, rss, unique, wait_until, ProgramGuard, Sup, MIB};

#[test]
fn hostile_worker_changes_nothing_for_its_neighbour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bad, good) = (unique("hostile"), unique("neighbour"));
    let _guards = [ProgramGuard(bad.clone()), ProgramGuard(good.clone())];
    let config = dir.path().join("supervise.toml");
    std::fs::write(
        &config,
        format!(
            "[sample]\nevery = \"100ms\"\n[program.{bad}]\ncommand = [\"{}\"]\n[program.{good}]\ncommand = [\"{}\", \"--serve\", \"--leak\", \"30\"]\nmemory = {{ max = \"64MiB\", for = 1 }}\n",
            example("hostile"),
            example("sdk_worker"),
        ),
    )
    .expect("config");
    let mut sup = Sup::start(&["-c", config.to_str().expect("utf-8")]);
    let is =
        |e: &serde_json::Value, kind: &str, name: &str| e["event"] == kind && e["program"] == name;
    // The hostile one is cut off once its error budget is spent...
    let closed = sup.wait_nth(1, Duration::from_secs(20), "channel closed", |e| {
        is(e, "protocol_error", &bad) && e["closed"] == true
    });
    assert!(closed["count"].as_u64().expect("count") >= 8);
    assert!(
        sup.events()
            .iter()
            .any(|e| is(e, "finding", &bad) && e["kind"] == "implausible_report"),
        "{}",
        sup.dump()
    );
    // ...its attacks on the segment fail...
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            sup.path("stdout")
        )
        .is_ok_and(|s| s.contains("hostile scribbling"))),
        "{}",
        sup.dump()
    );
    let out = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(
        out.contains("hostile truncate=refused") && out.contains("hostile grow=refused"),
        "{out}"
    );
    // ...while the neighbour is handshaken, ready, and restarted for memory as usual, twice.
    sup.wait_nth(1, Duration::from_secs(10), "neighbour ready", |e| {
        is(e, "ready", &good)
    });
    for n in 1..=2 {
        let r = sup.wait_nth(n, Duration::from_secs(20), "neighbour restart", |e| {
            is(e, "restarting", &good)
        });
        assert_eq!(r["reason"], "memory");
    }
    // The neighbour never had a protocol error, and the supervisor stayed small.
    assert!(!sup.events().iter().any(|e| is(e, "protocol_error", &good)));
    let supervisor_rss = rss(sup.pid()).expect("alive");
    assert!(
        supervisor_rss < 32 * MIB,
        "supervisor RSS {} MiB",
        supervisor_rss / MIB
    );
    // And it still stops cleanly, hostile worker included.
    sup.signal(libc::SIGTERM);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        sup.dump()
    );
}
