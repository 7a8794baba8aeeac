//! The events file rides out a full disk: writing resumes once there is room, and the first line
//! written says how many events were lost.

mod common;

use std::fs;
use std::time::Duration;

use common::{run_example_in, wait_until};

#[test]
fn events_resume_after_a_full_disk_and_count_what_was_lost() {
    // The events file is first a link to /dev/full, where every write fails with ENOSPC; the
    // test then puts a real file in its place, as freeing space would let writes succeed again.
    let (sup, name, _guard) = run_example_in(
        "evfull",
        &[
            "--restart",
            "always",
            "--max-restarts",
            "1000",
            "--backoff-first",
            "200ms",
            "--backoff-max",
            "200ms",
        ],
        "crasher",
        &["--code", "0", "--after", "200"],
        |dir| {
            std::os::unix::fs::symlink("/dev/full", dir.join("events.jsonl")).expect("symlink");
        },
    );
    // A few crash cycles while the disk is full (the worker's own lines show they happen).
    sup.wait_stdout("crasher exiting", 3, Duration::from_secs(20));
    let fresh = sup.path("events.new");
    fs::write(&fresh, "").expect("file");
    fs::rename(&fresh, &sup.events).expect("replace the link");
    let lost = sup.wait_event("events_lost", Duration::from_secs(15));
    let events = sup.events();
    assert_eq!(events[0], lost, "events_lost comes first\n{}", sup.dump());
    assert_eq!(lost["program"], "supervise");
    let count = lost["count"].as_u64().expect("count");
    // Three cycles of started, exited and restarting at least.
    assert!(count >= 9, "{count} lost\n{}", sup.dump());
    // And what follows is written as usual.
    assert!(
        wait_until(Duration::from_secs(15), || sup
            .events()
            .iter()
            .any(|e| e["event"] == "started" && e["program"] == name.as_str())),
        "{}",
        sup.dump()
    );
}
