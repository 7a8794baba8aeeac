use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::status::{LastExit, NetStatus};

fn worker(program: &str, instance: u32) -> WorkerStatus {
    WorkerStatus {
        pid: Some(123_456 + i32::try_from(instance).expect("small")),
        state: Phase::Running,
        ready: true,
        uptime_s: Some(3725.0),
        restarts: 2,
        rss_bytes: Some(23_400 * 1024),
        cpu_percent: Some(1.5),
        threads: Some(4),
        fds: Some(12),
        memory_max_bytes: Some(50 << 20),
        memory_measure: Some("rss".into()),
        argv: Vec::new(),
        findings: vec!["leak".into(), "hung".into(), "leak".into()],
        findings_by_kind: [("leak".to_owned(), 4), ("hung".to_owned(), 1)].into(),
        net: Some(NetStatus {
            established: 3,
            sent_bytes_per_s: Some(1024.0),
            received_bytes_per_s: Some(1024.0),
            rtt_ms: Some(0.5),
            ..NetStatus::default()
        }),
        ..WorkerStatus::new(program, instance)
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn row(w: &WorkerStatus, specs: &[Spec]) -> Vec<String> {
    specs.iter().map(|s| cell(s.col, &[w], now())).collect()
}

#[test]
fn cells_of_one_instance() {
    let w = worker("api", 1);
    let c = |col| cell(col, &[&w], now());
    assert_eq!(c(Col::Pid), "123457");
    assert_eq!(c(Col::State), "ready");
    assert_eq!(c(Col::Uptime), "1h02m");
    assert_eq!(c(Col::Mem), "22.9M");
    assert_eq!(c(Col::LimitPct), "46%");
    assert_eq!(c(Col::Limit), "50.0M");
    assert_eq!(c(Col::Net), "2K/s");
    assert_eq!(c(Col::Rtt), "0.5ms");
    // Each finding once, latest first, with its count over the supervisor's life.
    assert_eq!(c(Col::Findings), "leak\u{d7}4, hung\u{d7}1");
}

#[test]
fn a_pss_program_shows_pss_against_its_limit() {
    let mut w = worker("db", 0);
    w.memory_measure = Some("pss".into());
    w.pss_bytes = Some(10 << 20);
    assert_eq!(cell(Col::Mem, &[&w], now()), "10.0M pss");
    assert_eq!(cell(Col::LimitPct, &[&w], now()), "20%");
    // Not read yet: RSS stands in.
    w.pss_bytes = None;
    assert_eq!(cell(Col::LimitPct, &[&w], now()), "46%");
}

#[test]
fn status_text_is_shown_and_cleaned() {
    let mut w = worker("api", 0);
    w.status_text = Some("serving \x1b[2J42 clients\r".into());
    assert_eq!(
        cell(Col::Status, &[&w], now()),
        "serving \u{fffd}[2J42 clients\u{fffd}"
    );
}

#[test]
fn a_folded_group_sums_what_adds_up_and_shows_the_worst() {
    let a = worker("api", 0);
    let mut b = worker("api", 1);
    b.state = Phase::Backoff;
    b.ready = false;
    b.pid = None;
    b.rss_bytes = None;
    b.uptime_s = None;
    b.cpu_percent = None;
    b.last_exit = Some(LastExit::new(
        crate::reaper::Exit::Code(3),
        now() - Duration::from_secs(5),
    ));
    let mut c = worker("api", 2);
    c.rss_bytes = Some(45 << 20);
    c.uptime_s = Some(10.0);
    let g = [&a, &b, &c];
    let cell = |col| cell(col, &g, now());
    assert_eq!(cell(Col::Inst), "\u{d7}3");
    assert_eq!(cell(Col::Pid), "-");
    assert_eq!(cell(Col::State), "backoff");
    assert_eq!(cell(Col::Uptime), "10s");
    assert_eq!(cell(Col::Restarts), "6");
    assert_eq!(cell(Col::Mem), "67.9M");
    assert_eq!(cell(Col::LimitPct), "90%");
    assert_eq!(cell(Col::Cpu), "3.0");
    // The worst instance's note: how its last process ended.
    assert_eq!(
        cell(Col::Findings),
        "exit 3, 5s ago; leak\u{d7}4, hung\u{d7}1"
    );
}

#[test]
fn columns_drop_by_priority_and_numbers_are_never_cut() {
    let specs = status_columns();
    let rows: Vec<Vec<String>> = (0..6)
        .map(|i| row(&worker(&format!("program{}", i / 2), i % 2), &specs))
        .collect();
    for width in [40, 60, 80, 100, 120, 160, 200, 400] {
        let fit = fit(&specs, &rows, Some(width));
        let used: usize = fit.iter().map(|(_, w)| w).sum::<usize>() + fit.len().saturating_sub(1);
        assert!(used <= width, "{width}: {used}");
        let shown: Vec<Col> = fit.iter().map(|&(i, _)| specs[i].col).collect();
        for &(i, w) in &fit {
            if specs[i].shrink_to.is_none() {
                for r in &rows {
                    assert!(r[i].chars().count() <= w, "{width}: {:?} cut", specs[i].col);
                }
            }
        }
        if width >= 80 {
            for must in [
                Col::Program,
                Col::Inst,
                Col::State,
                Col::Uptime,
                Col::Restarts,
                Col::Mem,
                Col::LimitPct,
                Col::Cpu,
                Col::Findings,
            ] {
                assert!(
                    shown.contains(&must),
                    "{width}: {must:?} missing: {shown:?}"
                );
            }
        }
        // A column with something to say is never dropped while one less important is shown.
        let dropped_best = specs
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !shown.contains(&s.col) && rows.iter().any(|r| !r[*i].is_empty() && r[*i] != "-")
            })
            .map(|(_, s)| s.priority)
            .min();
        let shown_worst = fit.iter().map(|&(i, _)| specs[i].priority).max();
        if let (Some(d), Some(s)) = (dropped_best, shown_worst) {
            // Equal priorities may split when the later one alone is too wide.
            assert!(d >= s, "{width}: dropped {d} while showing {s}");
        }
    }
    // Empty columns are left out (STATUS: nobody said anything).
    assert!(!fit(&specs, &rows, Some(400))
        .iter()
        .any(|&(i, _)| specs[i].col == Col::Status));
    // Without a width: every column, as wide as its widest cell.
    assert_eq!(fit(&specs, &rows, None).len(), specs.len());
}

#[test]
fn text_is_shortened_with_an_ellipsis_numbers_padded() {
    assert_eq!(pad("a-very-long-name", 6, false), "a-ver\u{2026}");
    assert_eq!(pad("23.4M", 7, true), "  23.4M");
    assert_eq!(pad("ok", 4, false), "ok  ");
    assert_eq!(pad("x", 0, false), "");
}

#[test]
fn memory_keeps_its_unit() {
    for (b, text) in [
        (0, "0K"),
        (1023, "0K"),
        (2048, "2K"),
        (3 << 20, "3.0M"),
        (5 << 30, "5.0G"),
    ] {
        assert_eq!(bytes(b), text, "{b}");
    }
}
