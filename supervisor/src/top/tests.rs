use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::{sparkline, Action, App, Detail, LogEvent, Mode, RowKey, SortKey, HISTORY};
use crate::admin::Request;
use crate::status::{HostStatus, OwnStatus, Phase, Pressure, WorkerStatus};

fn worker(program: &str, instance: u32, rss_mib: u64, cpu: f64) -> WorkerStatus {
    WorkerStatus {
        pid: Some(10_000 + i32::try_from(instance).expect("small")),
        state: Phase::Running,
        ready: true,
        uptime_s: Some(125.0),
        restarts: 3,
        rss_bytes: Some(rss_mib << 20),
        cpu_percent: Some(cpu),
        threads: Some(4),
        fds: Some(9),
        processes: Some(1),
        memory_max_bytes: Some(512 << 20),
        memory_measure: Some("rss".into()),
        argv: Vec::new(),
        findings: vec!["leak".to_owned()],
        findings_by_kind: [("leak".to_owned(), 2)].into(),
        ..WorkerStatus::new(program, instance)
    }
}

/// Six instances of three programs.
fn fleet() -> Vec<WorkerStatus> {
    vec![
        worker("api", 0, 10, 1.0),
        worker("api", 1, 300, 2.0),
        worker("batch", 0, 50, 90.0),
        worker("batch", 1, 60, 80.0),
        worker("cron", 0, 5, 0.0),
        worker("cron", 1, 6, 0.0),
    ]
}

fn host() -> HostStatus {
    HostStatus {
        load: Some([0.52, 0.4, 0.31]),
        cpus: Some(2),
        mem_total_bytes: Some(8 << 30),
        mem_available_bytes: Some(3 << 30),
        swap_total_bytes: Some(2 << 30),
        swap_free_bytes: Some(2 << 30),
        memory_pressure: Some(Pressure {
            some_avg10: 1.5,
            full_avg10: Some(0.5),
            ..Pressure::default()
        }),
        cpu_pressure: None,
        io_pressure: None,
        own: OwnStatus {
            pid: 42,
            rss_bytes: Some(3 << 20),
            cpu_percent: Some(0.2),
            fds: Some(40),
            threads: Some(3),
        },
        pressure_policy: None,
    }
}

fn app() -> App {
    let mut app = App::default();
    app.update(fleet(), Some(host()));
    app
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// Renders into a `w`x`h` buffer and returns its lines.
fn screen_at(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| super::render(app, f)).expect("draw");
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn row_of(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", lines.join("\n")))
}

#[test]
fn at_80x24_the_listed_columns_are_whole_with_a_header_and_a_detail_pane() {
    let mut app = app();
    app.on_key(key(KeyCode::Enter));
    let lines = screen_at(&app, 80, 24);
    let text = lines.join("\n");
    assert!(lines[0].contains("6 instances: 6 ready"), "{text}");
    for chip in [
        "load 0.52 0.40 0.31",
        "mem avail 3.0G of 8.0G",
        "psi mem 1.5/0.5",
        "self: pid 42 rss 3.0M",
    ] {
        assert!(text.contains(chip), "{chip} missing:\n{text}");
    }
    let head = &lines[row_of(&lines, "PROGRAM")];
    for col in [
        "PROGRAM", "#", "STATE", "UPTIME", "RST", "MEM", "%LIM", "CPU%", "FINDINGS",
    ] {
        assert!(head.contains(col), "{col} missing: {head}");
    }
    // api is expanded: its instances whole, each figure with its unit.
    let api1 = &lines[row_of(&lines, "10001")];
    for cell in [
        "api",
        " 1 ",
        "ready",
        "2m05s",
        "300.0M",
        "59%",
        "2.0",
        "leak\u{d7}2",
    ] {
        assert!(api1.contains(cell), "{cell} missing: {api1}");
    }
    // batch is folded: one row, sums and the worst.
    let batch = &lines[row_of(&lines, "batch")];
    for cell in ["\u{d7}2", "110.0M", "12%", "170.0"] {
        assert!(batch.contains(cell), "{cell} missing: {batch}");
    }
    // The detail pane is about the selected row's instance, under the table.
    let pane = row_of(&lines, " api/1 ");
    assert!(pane > row_of(&lines, "cron"), "{text}");
    assert!(text.contains("tree: 1 process"), "{text}");
}

#[test]
fn wider_terminals_show_more_columns_never_a_cut_number() {
    let app = app();
    let narrow = screen_at(&app, 80, 24);
    let wide = screen_at(&app, 200, 50);
    let head = |l: &[String]| l[row_of(l, "PROGRAM")].clone();
    for col in ["LIMIT", "MEM HISTORY", "THR", "FDS"] {
        assert!(head(&wide).contains(col), "{col}: {}", head(&wide));
    }
    assert!(!head(&narrow).contains("FDS"), "{}", head(&narrow));
    // Every cell of the memory column ends in its unit at every width.
    for w in [60u16, 80, 100, 120, 160, 200] {
        let lines = screen_at(&app, w, 30);
        for name in ["api", "batch", "cron"] {
            let row = &lines[row_of(&lines, &format!("\u{25b8} {name}"))];
            assert!(
                row.split_whitespace()
                    .any(|c| c.ends_with('M') && c[..c.len() - 1].parse::<f64>().is_ok()),
                "{w}: {row}"
            );
        }
    }
}

#[test]
fn replicas_fold_and_expand() {
    let mut app = app();
    let rows = app.rows();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.grouped && r.key.instance.is_none()));
    // → expands the selected program, ← folds it again.
    app.on_key(key(KeyCode::Right));
    assert_eq!(app.rows().len(), 5);
    app.on_key(key(KeyCode::Down));
    assert_eq!(
        app.selected,
        Some(RowKey {
            program: "api".into(),
            instance: Some(0)
        })
    );
    app.on_key(key(KeyCode::Left));
    assert_eq!(app.rows().len(), 3);
    assert_eq!(app.selected.as_ref().map(|k| k.instance), Some(None));
    // A program row's detail is about its worst instance.
    let mut fleet = fleet();
    fleet[1].state = Phase::Backoff;
    fleet[1].ready = false;
    app.update(fleet, None);
    assert_eq!(app.target(), Some(("api".into(), 1)));
}

#[test]
fn sorting_by_memory_and_cpu_keeps_the_selection() {
    let mut app = app();
    app.on_key(key(KeyCode::Down));
    assert_eq!(
        app.selected.as_ref().map(|k| k.program.as_str()),
        Some("batch")
    );
    app.on_key(key(KeyCode::Char('M')));
    assert_eq!(app.sort, SortKey::Memory);
    let order: Vec<String> = app.rows().iter().map(|r| r.key.program.clone()).collect();
    assert_eq!(order, ["api", "batch", "cron"]);
    app.on_key(key(KeyCode::Char('P')));
    let order: Vec<String> = app.rows().iter().map(|r| r.key.program.clone()).collect();
    assert_eq!(order, ["batch", "api", "cron"]);
    assert_eq!(
        app.selected.as_ref().map(|k| k.program.as_str()),
        Some("batch")
    );
    assert_eq!(app.cursor(), 0);
}

#[test]
fn the_filter_keeps_matching_programs() {
    let mut app = app();
    app.on_key(key(KeyCode::Char('/')));
    assert_eq!(app.mode, Mode::Filter);
    for c in "BAT".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    let rows = app.rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(app.target().map(|t| t.0), Some("batch".into()));
    app.on_key(key(KeyCode::Char('/')));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.rows().len(), 3);
}

#[test]
fn restart_and_stop_ask_first_start_does_not() {
    let mut app = app();
    // A program row: every instance, one at a time.
    assert_eq!(app.on_key(key(KeyCode::Char('r'))), Action::None);
    let lines = screen_at(&app, 100, 30);
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("restart every instance of api, one at a time? (y/n)")),
        "{lines:#?}"
    );
    assert_eq!(app.on_key(key(KeyCode::Char('n'))), Action::None);
    assert_eq!(app.message, "cancelled");
    // One instance.
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Char('r')));
    assert_eq!(
        app.on_key(key(KeyCode::Char('y'))),
        Action::Send(Request::Restart {
            program: "api".into(),
            instance: Some(0),
            wait_ms: None
        })
    );
    app.on_key(key(KeyCode::Char('s')));
    assert!(matches!(app.mode, Mode::Confirm { .. }));
    assert_eq!(
        app.on_key(key(KeyCode::Char('y'))),
        Action::Send(Request::Stop {
            program: "api".into(),
            wait_ms: None
        })
    );
    assert_eq!(
        app.on_key(key(KeyCode::Char('t'))),
        Action::Send(Request::Start {
            program: "api".into(),
            wait_ms: None
        })
    );
}

#[test]
fn k_chooses_a_signal() {
    let mut app = app();
    app.on_key(key(KeyCode::Char('k')));
    let lines = screen_at(&app, 80, 24).join("\n");
    assert!(
        lines.contains("signal api") && lines.contains("SIGUSR1"),
        "{lines}"
    );
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Action::Send(Request::Signal {
            program: "api".into(),
            instance: None,
            signal: libc::SIGINT,
            group: false,
        })
    );
    app.on_key(key(KeyCode::Char('k')));
    assert_eq!(app.on_key(key(KeyCode::Esc)), Action::None);
    assert_eq!(app.mode, Mode::Normal);
    app.on_key(key(KeyCode::Char('k')));
    app.on_key(key(KeyCode::Char('5')));
    assert!(matches!(
        app.on_key(key(KeyCode::Enter)),
        Action::Send(Request::Signal { signal, .. }) if signal == libc::SIGUSR1
    ));
}

#[test]
fn l_follows_the_log_full_screen() {
    let mut app = app();
    assert_eq!(
        app.on_key(key(KeyCode::Char('l'))),
        Action::Follow {
            program: "api".into(),
            instance: None
        }
    );
    app.log_line(LogEvent::Line(false, "hello <b>there</b>".into()));
    app.log_line(LogEvent::Line(true, "an \x1b[31merror".into()));
    app.log_line(LogEvent::Skipped(3));
    let lines = screen_at(&app, 80, 10);
    assert!(
        lines[0].contains("log of api") && lines[0].contains("3 lines skipped"),
        "{lines:#?}"
    );
    assert!(lines[1].contains("hello <b>there</b>"), "{lines:#?}");
    // An escape sequence from a worker never reaches the terminal.
    assert!(lines[2].contains("an \u{fffd}[31merror"), "{lines:#?}");
    assert_eq!(app.on_key(key(KeyCode::Esc)), Action::StopFollow);
    assert!(app.log_view.is_none());
}

#[test]
fn the_detail_pane_shows_the_selected_instances_events_and_log() {
    let mut app = app();
    let target = app.target().expect("target");
    assert_eq!(
        target,
        ("api".into(), 1),
        "the worst (biggest share) of api"
    );
    app.detail_answered(Detail {
        of: Some(target),
        events: vec![serde_json::json!({
            "ts": "2026-11-01T10:20:30.123Z", "event": "restarting", "program": "api",
            "instance": 1, "pid": 10001, "reason": "memory", "delay_ms": 100
        })],
        logs: vec![(false, "api says <script>alert(1)</script>".into())],
        memory: None,
    });
    let text = screen_at(&app, 120, 40).join("\n");
    assert!(text.contains("10:20:30 restarting"), "{text}");
    assert!(text.contains("reason=memory"), "{text}");
    assert!(
        text.contains("api says <script>alert(1)</script>"),
        "{text}"
    );
    // Another instance's answer, late, is not shown as this one's.
    app.detail_answered(Detail {
        of: Some(("cron".into(), 0)),
        ..Detail::default()
    });
    assert_eq!(app.detail.events.len(), 1);
    // Moving the selection asks for the new one's.
    assert_eq!(app.on_key(key(KeyCode::Down)), Action::Reselect);
    assert!(app.detail.events.is_empty());
}

#[test]
fn a_fatal_program_is_red_with_its_last_exit() {
    let ago = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
    let fatal = WorkerStatus {
        state: Phase::Fatal,
        restarts: 5,
        last_exit: Some(crate::status::LastExit::new(
            crate::reaper::Exit::Code(3),
            ago,
        )),
        ..WorkerStatus::new("crash", 0)
    };
    let mut app = App::default();
    app.update(vec![worker("api", 0, 10, 1.0), fatal], None);
    let lines = screen_at(&app, 120, 24);
    let row = &lines[row_of(&lines, "crash")];
    assert!(
        row.contains("fatal") && row.contains("exit 3, 1m40s ago"),
        "{row}"
    );
}

#[test]
fn disconnected_keeps_rows_and_says_retrying() {
    let mut app = app();
    app.disconnect("cannot reach a supervisor".into());
    let lines = screen_at(&app, 80, 24);
    assert!(lines[0].contains("disconnected, retrying"), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("batch")), "{lines:#?}");
}

#[test]
fn history_is_bounded_and_forgets_gone_instances() {
    let mut app = App::default();
    for _ in 0..HISTORY + 5 {
        app.update(fleet(), None);
    }
    assert_eq!(app.history[&("api".to_owned(), 0)].len(), HISTORY);
    app.update(vec![worker("api", 0, 1, 0.0)], None);
    assert_eq!(app.history.len(), 1);
}

#[test]
fn sparkline_scales_between_min_and_max() {
    assert_eq!(sparkline(&[], 5), "");
    assert_eq!(sparkline(&[3, 3, 3], 5), "\u{2581}\u{2581}\u{2581}");
    assert_eq!(sparkline(&[0, 7], 5), "\u{2581}\u{2588}");
    assert_eq!(sparkline(&[9, 0, 7], 2), "\u{2581}\u{2588}");
}

#[test]
fn help_lists_the_keys() {
    let mut app = app();
    app.on_key(key(KeyCode::Char('?')));
    let text = screen_at(&app, 80, 24).join("\n");
    for k in [
        "restart",
        "stop",
        "start",
        "signal",
        "follow its log",
        "show only programs",
    ] {
        assert!(text.contains(k), "{k}:\n{text}");
    }
    app.on_key(key(KeyCode::Char('x')));
    assert_eq!(app.mode, Mode::Normal);
}
