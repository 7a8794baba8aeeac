//! The stop signal reaches every process of a worker's tree exactly once: in `group` mode (the
//! default) the process group once, then only the members outside it; in `main` mode the root
//! alone, the rest SIGKILLed once it has exited. Checked with `sigcount`, whose processes log
//! every signal they receive.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    ctl, pid_of, pids_of_program, run_example_ctl, sigcount_log, times_received, wait_until, Sup,
};

const LONG: Duration = Duration::from_secs(20);

/// `sigcount` with two children and one escaped grandchild, which keep logging for a second
/// after their first TERM (time enough for a second one to show).
fn tree(prefix: &str, flags: &[&str]) -> (Sup, String, common::ProgramGuard) {
    let mut all = vec!["--grace", "4s", "--sample-every", "200ms"];
    all.extend_from_slice(flags);
    run_example_ctl(
        prefix,
        &all,
        "sigcount",
        &[
            "--log",
            "@/sig.log",
            "--children",
            "2",
            "--escaped",
            "1",
            "--linger",
            "1000",
        ],
    )
}

/// Waits for incarnation `n` (1-based) to be up with its four processes, all of them attributed
/// to the worker (the escaped one included), and returns (root, every pid).
fn incarnation(sup: &Sup, name: &str, n: usize) -> (i32, BTreeSet<i32>) {
    let root = pid_of(&sup.wait_nth(n, LONG, "started", |e| e["event"] == "started"));
    sup.wait_stdout("sigcount ready", n, LONG);
    assert!(
        wait_until(LONG, || {
            let (ok, text) = ctl(&sup.socket(), &["status", "--json"]);
            ok && text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|w| w["pid"] == root && w["processes"] == 4)
        }),
        "the supervisor never saw the whole tree of {root}\n{}",
        sup.dump()
    );
    let pids: BTreeSet<i32> = pids_of_program(name).into_iter().collect();
    assert_eq!(pids.len(), 4, "{pids:?}\n{}", sup.dump());
    assert!(pids.contains(&root));
    (root, pids)
}

/// Per pid, how many times it got `signal`, for failure messages.
fn tally(sup: &Sup, pids: &BTreeSet<i32>, signal: &str) -> Vec<(i32, usize)> {
    pids.iter()
        .map(|&p| (p, times_received(&sup.path("sig.log"), p, signal)))
        .collect()
}

fn assert_nothing_left(sup: &Sup, name: &str) {
    assert!(
        wait_until(Duration::from_secs(2), || pids_of_program(name).is_empty()),
        "left behind: {:?}\n{}",
        pids_of_program(name),
        sup.dump()
    );
}

#[test]
fn group_mode_sends_term_to_every_process_once() {
    let (mut sup, name, _guard) = tree("once-group", &[]);
    let (_root, pids) = incarnation(&sup, &name, 1);
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(LONG);
    assert_nothing_left(&sup, &name);
    let got = tally(&sup, &pids, "TERM");
    assert!(
        got.iter().all(|&(_, n)| n == 1),
        "TERM per process {got:?}\n{:?}\n{}",
        sigcount_log(&sup.path("sig.log")),
        sup.dump()
    );
    // Each left by itself on its one TERM: nothing needed SIGKILL.
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{}", sup.dump());
}

#[test]
fn main_mode_sends_term_to_the_root_only() {
    let (mut sup, name, _guard) = tree("once-main", &["--stop-mode", "main"]);
    let (root, pids) = incarnation(&sup, &name, 1);
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    assert_nothing_left(&sup, &name);
    let got = tally(&sup, &pids, "TERM");
    assert!(
        got.iter().all(|&(p, n)| n == usize::from(p == root)),
        "TERM per process {got:?} (root {root})\n{}",
        sup.dump()
    );
    // The root died of its own TERM, after its linger; the rest were killed.
    let exited = sup.of("exited");
    assert_eq!(exited[0]["signal"], libc::SIGTERM, "{}", sup.dump());
}

#[test]
fn a_restart_sends_term_once_per_process_per_incarnation() {
    let (mut sup, name, _guard) = tree("once-restart", &[]);
    let (_, first) = incarnation(&sup, &name, 1);
    let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
    assert!(ok, "{text}");
    let (_, second) = incarnation(&sup, &name, 2);
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    let got = tally(&sup, &first, "TERM");
    assert!(
        got.iter().all(|&(_, n)| n == 1),
        "first incarnation, TERM per process {got:?}\n{}",
        sup.dump()
    );
    assert!(
        tally(&sup, &second, "TERM").iter().all(|&(_, n)| n == 0),
        "{}",
        sup.dump()
    );
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    assert_nothing_left(&sup, &name);
    let got = tally(&sup, &second, "TERM");
    assert!(
        got.iter().all(|&(_, n)| n == 1),
        "second incarnation, TERM per process {got:?}\n{}",
        sup.dump()
    );
    assert!(tally(&sup, &first, "TERM").iter().all(|&(_, n)| n == 1));
}

#[test]
fn a_realtime_stop_signal_arrives_once_under_its_name() {
    // sigcount only records RTMIN+3, so the stop ends in SIGKILL after the grace.
    let (mut sup, name, _guard) = tree("once-rt", &["--stop-signal", "RTMIN+3"]);
    let (root, pids) = incarnation(&sup, &name, 1);
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    assert_nothing_left(&sup, &name);
    assert_eq!(
        times_received(&sup.path("sig.log"), root, "RTMIN+3"),
        1,
        "{:?}\n{}",
        sigcount_log(&sup.path("sig.log")),
        sup.dump()
    );
    let got = tally(&sup, &pids, "RTMIN+3");
    assert!(got.iter().all(|&(_, n)| n == 1), "{got:?}\n{}", sup.dump());
    assert!(
        tally(&sup, &pids, "TERM").iter().all(|&(_, n)| n == 0),
        "TERM sent although the stop signal is RTMIN+3\n{}",
        sup.dump()
    );
    assert_eq!(sup.of("killed").len(), 1, "{}", sup.dump());
}

#[test]
fn a_queued_stop_signal_shows_every_copy_sent() {
    // TERM sent twice in quick succession can merge into one delivery (a standard signal is
    // pending at most once), which hides a duplicate; realtime signals queue, so each copy sent
    // is a line in the log. Given by number, as `--stop-signal` also accepts.
    let rt = (libc::SIGRTMIN() + 4).to_string();
    let (mut sup, name, _guard) = tree("once-queued", &["--stop-signal", &rt]);
    let (_, pids) = incarnation(&sup, &name, 1);
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    assert_nothing_left(&sup, &name);
    let got = tally(&sup, &pids, "RTMIN+4");
    assert!(
        got.iter().all(|&(_, n)| n == 1),
        "RTMIN+4 per process {got:?}\n{}",
        sup.dump()
    );
}

#[test]
fn stop_signal_spellings() {
    // Names with or without SIG, any case, and numbers all mean the same signal; and with
    // --stop-signal given, a TERM to the supervisor reaches the worker as that signal.
    for spelling in ["SIGINT", "int", "2"] {
        let (mut sup, name, _guard) = run_example_ctl(
            "once-spelling",
            &["--grace", "4s", "--stop-signal", spelling],
            "sigcount",
            &["--log", "@/sig.log", "--linger", "0"],
        );
        let root = pid_of(&sup.wait_event("started", LONG));
        sup.wait_stdout("sigcount ready", 1, LONG);
        sup.signal(libc::SIGTERM);
        let status = sup.wait_exit(LONG);
        assert_nothing_left(&sup, &name);
        let log = sup.path("sig.log");
        assert_eq!(
            (
                times_received(&log, root, "INT"),
                times_received(&log, root, "TERM")
            ),
            (1, 0),
            "--stop-signal {spelling}\n{}",
            sup.dump()
        );
        assert_eq!(status.code(), Some(128 + libc::SIGINT), "{}", sup.dump());
    }
}
