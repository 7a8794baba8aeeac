//! `--history FILE` and `supervise report`: a leaking worker's samples, memory restarts and
//! findings are recorded, and the report draws them; bad history files are clear errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{run_example, run_example_ctl, status_json, supervise_bin, Sup, MIB};

fn report(args: &[&Path]) -> Output {
    Command::new(supervise_bin())
        .arg("report")
        .args(args)
        .output()
        .expect("run supervise report")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn memory_restarts_are_recorded_and_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hist = dir.path().join("history.bin");
    let hist_arg = hist.to_str().expect("utf-8 path");
    let (mut sup, name, _guard) = run_example(
        "history",
        &[
            "--memory-max",
            "48MiB",
            "--memory-for",
            "1",
            "--sample-every",
            "200ms",
            "--history",
            hist_arg,
        ],
        "leaky",
        &["--rate", "40"],
    );
    sup.wait_nth(2, Duration::from_secs(30), "two memory restarts", |e| {
        e["event"] == "restarting" && e["reason"] == "memory"
    });
    // The third instance runs for a few samples before the supervisor is stopped.
    sup.wait_nth(3, Duration::from_secs(10), "third start", |e| {
        e["event"] == "started"
    });
    std::thread::sleep(Duration::from_millis(600));
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));

    let series = supervisor::history::read(&hist).expect("the history reads back");
    let w = series
        .workers
        .iter()
        .find(|w| w.program == name)
        .unwrap_or_else(|| panic!("no series for {name}: {series:?}\n{}", sup.dump()));
    let memory = w.restarts.iter().filter(|m| m.reason == "memory").count();
    assert!(memory >= 2, "{:?}\n{}", w.restarts, sup.dump());
    let peak = w.points.iter().filter_map(|p| p.rss).max().unwrap_or(0);
    assert!(peak > 30 * MIB, "peak RSS {peak} recorded");
    assert_eq!(series.ignored_bytes, 0);

    let svg = dir.path().join("out.svg");
    let o = report(&[&hist, Path::new("-o"), &svg]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        text.starts_with("<svg "),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        text.contains(r#"class="restart reason-memory""#),
        "no memory restart marker"
    );
    assert!(text.contains(&format!("<title>{name}/0 RSS</title>")));
    assert!(text.contains("limit 48 MiB") || !series.limits.contains_key(&name));
}

#[test]
fn a_leak_that_only_warns_is_recorded_and_drawn_as_a_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hist = dir.path().join("history.bin");
    let (mut sup, name, _guard) = run_example_ctl(
        "histleak",
        &[
            "--leak",
            "6MiB/10s",
            "--on-leak",
            "warn",
            "--sample-every",
            "200ms",
            "--history",
            hist.to_str().expect("utf-8 path"),
        ],
        "leaky",
        &["--rate", "1.5", "--step-ms", "100"],
    );
    sup.wait_nth(1, Duration::from_secs(30), "leak finding", |e| {
        e["event"] == "finding" && e["kind"] == "leak"
    });
    // The count by kind is in the status, and reaches the history with the next tick.
    let status = status_json(&sup.socket());
    assert_eq!(status[0]["findings_by_kind"]["leak"], 1, "{status:?}");
    std::thread::sleep(Duration::from_millis(600));
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));
    assert!(sup.of("restarting").is_empty(), "{}", sup.dump());

    let series = supervisor::history::read(&hist).expect("the history reads back");
    let w = series
        .workers
        .iter()
        .find(|w| w.program == name)
        .unwrap_or_else(|| panic!("no series for {name}: {series:?}\n{}", sup.dump()));
    let kinds: Vec<&str> = w.findings.iter().map(|m| m.kind.as_str()).collect();
    assert!(
        kinds.starts_with(&["leak"]),
        "{:?}\n{}",
        w.findings,
        sup.dump()
    );
    assert!(w.restarts.is_empty(), "{:?}", w.restarts);
    let at = w.findings[0].unix_ms;
    let (first, last) = (w.points[0].unix_ms, w.points[w.points.len() - 1].unix_ms);
    assert!(
        first < at && at <= last,
        "finding at {at}, samples {first}..={last}"
    );

    let svg = dir.path().join("out.svg");
    let o = report(&[&hist, Path::new("-o"), &svg]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        text.contains(r#"class="finding kind-leak""#),
        "no leak finding marker"
    );
    assert!(text.contains(&format!("{name}/0: finding leak at ")));
}

#[test]
fn an_existing_file_that_is_not_a_history_is_never_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "keep me\n").expect("write");
    let mut sup = Sup::start(&[
        "--history",
        notes.to_str().expect("utf-8 path"),
        "--",
        "/bin/sleep",
        "30",
    ]);
    let status = sup.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", sup.dump());
    assert!(
        std::fs::read_to_string(sup.path("stderr"))
            .unwrap_or_default()
            .contains("not a supervise history file"),
        "{}",
        sup.dump()
    );
    assert_eq!(std::fs::read_to_string(&notes).expect("read"), "keep me\n");
    assert!(sup.of("started").is_empty(), "nothing was started");
}

#[test]
fn report_of_a_missing_or_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.svg");
    let missing = dir.path().join("missing.bin");
    let o = report(&[&missing, Path::new("-o"), &out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.bin"), "{}", stderr(&o));

    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01not a history at all").expect("write");
    let o = report(&[&garbage, Path::new("-o"), &out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a supervise history file"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "no SVG for a bad file");

    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").expect("write");
    let o = report(&[&empty, Path::new("-o"), &out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no samples"), "{}", stderr(&o));
}
