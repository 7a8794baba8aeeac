//! The events file rides out a full disk: writing resumes once there is room, and the first line
//! written says how many events were lost. It is rotated by size, so a crash loop cannot fill the
//! disk with it.

mod common;

use std::fs;
use std::time::Duration;

use common::{example, run_example, run_example_in, unique, wait_until, ProgramGuard, Sup};

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

#[test]
fn a_full_disk_is_told_once_when_it_fills_and_once_when_writing_resumes() {
    // The events file and the worker's log file are links to /dev/full (every write fails with
    // ENOSPC, as on a full disk) while the worker crashes and restarts, writing lines; then real
    // files take their place, as freeing space would let writes succeed again.
    let name = unique("evonce");
    let _guard = ProgramGuard(name.clone());
    let crasher = example("crasher");
    let log = format!("{name}.0.stdout.log");
    let sup = Sup::start_with(&[], |cmd, dir| {
        std::os::unix::fs::symlink("/dev/full", dir.join("events.jsonl")).expect("symlink");
        fs::create_dir(dir.join("logs")).expect("mkdir");
        std::os::unix::fs::symlink("/dev/full", dir.join("logs").join(&log)).expect("symlink");
        cmd.arg("--log-dir").arg(dir.join("logs")).args([
            "--name",
            &name,
            "--restart",
            "always",
            "--max-restarts",
            "1000",
            "--backoff-first",
            "100ms",
            "--backoff-max",
            "100ms",
            "--",
            &crasher,
            "--code",
            "0",
            "--after",
            "100",
            "--lines",
            "3",
        ]);
    });
    let said = |needle: &str| sup.stderr().lines().filter(|l| l.contains(needle)).count();
    let (events_full, log_full) = (
        "cannot write events",
        format!("cannot write {}", sup.path("logs").join(&log).display()),
    );
    // Some 3 s of failure: three retries of each, at least.
    sup.wait_stdout("crasher exiting", 15, Duration::from_secs(30));
    assert_eq!(said(events_full), 1, "{}", sup.dump());
    assert_eq!(said(&log_full), 1, "{}", sup.dump());

    // The events file first, so that the log's `log_resumed` finds it written again.
    let replace = |link: &std::path::Path| {
        let fresh = sup.path("fresh");
        fs::write(&fresh, "").expect("file");
        fs::rename(&fresh, link).expect("replace the link");
    };
    let events_back = "writing events again";
    let log_back = format!("writing {} again", sup.path("logs").join(&log).display());
    replace(&sup.events);
    assert!(
        wait_until(Duration::from_secs(15), || said(events_back) == 1),
        "{}",
        sup.dump()
    );
    replace(&sup.path("logs").join(&log));
    assert!(
        wait_until(Duration::from_secs(15), || said(&log_back) == 1),
        "{}",
        sup.dump()
    );
    // A few more cycles: nothing more is said.
    let exits = |s: &Sup| {
        fs::read_to_string(s.path("stdout")).map_or(0, |t| t.matches("crasher exiting").count())
    };
    let now = exits(&sup);
    sup.wait_stdout("crasher exiting", now + 8, Duration::from_secs(30));
    for (needle, n) in [
        (events_full, 1),
        (log_full.as_str(), 1),
        (events_back, 1),
        (log_back.as_str(), 1),
    ] {
        assert_eq!(said(needle), n, "{needle}\n{}", sup.dump());
    }
    // The events file has the end of the log's episode.
    assert!(
        wait_until(Duration::from_secs(10), || !sup
            .of("log_resumed")
            .is_empty()),
        "{}",
        sup.dump()
    );
}
