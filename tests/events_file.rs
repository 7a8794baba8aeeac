//! The events file rides out a full disk: writing resumes once there is room, and the first line
//! written says how many events were lost. It is rotated by size, so a crash loop cannot fill the
//! disk with it.

mod common;

use std::fs;
use std::time::Duration;

use common::{run_example, run_example_in, wait_until};

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

#[test]
fn a_crash_loop_cannot_grow_the_events_file_past_its_bound() {
    const MAX: u64 = 4096;
    let (sup, _name, _guard) = run_example(
        "evrot",
        &[
            "--restart",
            "always",
            "--max-restarts",
            "100000",
            "--backoff-first",
            "0",
            "--backoff-max",
            "0",
            "--events-max",
            "4KiB",
            "--events-keep",
            "2",
        ],
        "crasher",
        &["--code", "1", "--after", "0"],
    );
    // Some 430 bytes of events a restart: 60 restarts write six times what the three files hold.
    sup.wait_stdout("crasher exiting", 60, Duration::from_secs(60));
    let rotated = |k: u32| sup.path(&format!("events.jsonl.{k}"));
    let mut total = 0;
    for p in [sup.events.clone(), rotated(1), rotated(2)] {
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        total += text.len() as u64;
        assert!(
            text.len() as u64 <= MAX,
            "{}: {} bytes",
            p.display(),
            text.len()
        );
        // Every line whole: rotation happens between lines.
        for line in text.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{}: {line:?}",
                p.display()
            );
        }
    }
    assert!(
        !rotated(3).exists(),
        "two rotated files kept\n{}",
        sup.dump()
    );
    assert!(total <= 3 * MAX, "{total} bytes");
    // The oldest were dropped: the first worker's events are in none of the files.
    let stdout = fs::read_to_string(sup.path("stdout")).expect("stdout");
    let first_pid = stdout
        .lines()
        .find_map(|l| l.split("crasher pid=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the first worker's pid");
    let needle = format!("\"pid\":{first_pid},");
    for p in [sup.events.clone(), rotated(1), rotated(2)] {
        let text = fs::read_to_string(&p).expect("read");
        assert!(
            !text.contains(&needle),
            "{}: still has {needle}",
            p.display()
        );
    }
}
