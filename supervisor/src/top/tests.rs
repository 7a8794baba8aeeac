use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::{sparkline, Action, App, SortKey, HISTORY};
use crate::status::Phase;
use crate::status::WorkerStatus;

fn worker(program: &str, instance: u32, rss_mib: u64, cpu: f64) -> WorkerStatus {
    WorkerStatus {
        pid: Some(1000 + i32::try_from(instance).expect("small")),
        state: Phase::Running,
        uptime_s: Some(125.0),
        restarts: 3,
        restarts_by_reason: std::collections::BTreeMap::new(),
        rss_bytes: Some(rss_mib << 20),
        cpu_percent: Some(cpu),
        threads: Some(4),
        fds: Some(9),
        processes: Some(1),
        heartbeat_age_ms: Some(250),
        findings: vec!["fd_growth".to_owned(), "leak".to_owned()],
        ..WorkerStatus::new(program, instance)
    }
}

fn fleet() -> Vec<WorkerStatus> {
    vec![
        worker("api", 0, 10, 1.0),
        worker("api", 1, 300, 2.0),
        worker("batch", 0, 50, 90.0),
    ]
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// Renders into a 160x12 buffer and returns its lines.
fn screen(app: &App) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(160, 12)).expect("terminal");
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
fn header_and_rows() {
    let mut app = App::default();
    app.update(fleet());
    let lines = screen(&app);
    assert!(
        lines[0].contains("3 workers, sorted by name"),
        "{}",
        lines[0]
    );
    for col in [
        "PROGRAM", "INST", "PID", "STATE", "UPTIME", "RSS", "PSS", "CPU%", "HB AGE",
    ] {
        assert!(lines[1].contains(col), "{col} missing: {}", lines[1]);
    }
    let api1 = &lines[row_of(&lines, "1001")];
    for cell in ["api", "running", "2m05s", "300.0M", "2.0", "250ms", "leak"] {
        assert!(api1.contains(cell), "{cell} missing: {api1}");
    }
    // Name order by default, and the first row selected.
    assert!(row_of(&lines, "1000") < row_of(&lines, "1001"));
    assert!(lines[row_of(&lines, "1000")].starts_with("> "));
}

#[test]
fn ready_shows_instead_of_state_and_missing_figures_are_dashes() {
    let mut w = worker("solo", 0, 1, 0.0);
    w.ready = true;
    w.pss_bytes = None;
    w.heap_bytes = Some(2 << 20);
    let mut app = App::default();
    app.update(vec![w]);
    let line = screen(&app)[2].clone();
    assert!(
        line.contains("ready") && !line.contains("running"),
        "{line}"
    );
    assert!(line.contains(" - ") && line.contains("2.0M"), "{line}");
}

#[test]
fn a_fatal_instance_is_a_red_row_with_its_last_exit() {
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
    // A running instance's last exit is its previous process's: not news.
    let mut running = worker("api", 0, 10, 1.0);
    running.last_exit = Some(crate::status::LastExit::new(
        crate::reaper::Exit::Signal(libc::SIGKILL),
        ago,
    ));
    let mut app = App::default();
    app.update(vec![running, fatal]);
    // Wide enough for the last column to hold the whole note.
    let mut term = Terminal::new(TestBackend::new(200, 12)).expect("terminal");
    term.draw(|f| super::render(&app, f)).expect("draw");
    let buf = term.backend().buffer();
    let lines: Vec<String> = (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect();
    let y = row_of(&lines, "crash");
    let row = &lines[y];
    // The age is 100 s give or take the time this test takes to draw.
    for cell in ["fatal", "exit 3, 1m4", "s ago"] {
        assert!(row.contains(cell), "{cell} missing: {row}");
    }
    let at = u16::try_from(row.find("fatal").expect("fatal")).expect("narrow");
    let cell = &buf[(at, u16::try_from(y).expect("short"))];
    assert_eq!(cell.fg, ratatui::style::Color::Red, "{cell:?}");
    assert!(cell.modifier.contains(ratatui::style::Modifier::BOLD));
    let api = &lines[row_of(&lines, "api")];
    assert!(!api.contains("SIGKILL") && api.contains("leak"), "{api}");
    let api_at = u16::try_from(api.find("running").expect("running")).expect("narrow");
    let y = u16::try_from(row_of(&lines, "api")).expect("short");
    assert_ne!(buf[(api_at, y)].fg, ratatui::style::Color::Red);
}

#[test]
fn sort_by_memory_puts_the_biggest_first_and_keeps_the_selection() {
    let mut app = App::default();
    app.update(fleet());
    assert_eq!(app.on_key(key(KeyCode::Char('M'))), Action::None);
    assert_eq!(app.sort, SortKey::Memory);
    let order: Vec<u64> = app.workers.iter().filter_map(|w| w.rss_bytes).collect();
    assert_eq!(order, vec![300 << 20, 50 << 20, 10 << 20]);
    let lines = screen(&app);
    assert!(lines[0].contains("sorted by memory"));
    assert!(row_of(&lines, "1001") < row_of(&lines, "batch"));
    // api/0 was selected before the sort and still is.
    assert_eq!(app.selected_key(), Some(("api".to_owned(), 0)));

    app.on_key(key(KeyCode::Char('P')));
    assert_eq!(app.workers[0].program, "batch");
    app.on_key(key(KeyCode::Char('N')));
    assert_eq!(
        (app.workers[0].program.as_str(), app.workers[0].instance),
        ("api", 0)
    );
}

#[test]
fn selection_moves_with_keys_and_stays_in_bounds() {
    let mut app = App::default();
    app.update(fleet());
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.selected, 0);
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.selected, 2);
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.selected_key(), Some(("api".to_owned(), 1)));
    let lines = screen(&app);
    assert!(lines[row_of(&lines, "1001")].starts_with("> "));
    // A poll with fewer workers clamps the selection.
    app.update(vec![worker("api", 0, 1, 0.0)]);
    assert_eq!(app.selected, 0);
}

#[test]
fn restart_asks_first_and_y_sends_it() {
    let mut app = App::default();
    app.update(fleet());
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.on_key(key(KeyCode::Char('r'))), Action::None);
    let lines = screen(&app);
    assert!(
        lines[11].contains("restart api/1? (y/n)"),
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        app.on_key(key(KeyCode::Char('y'))),
        Action::Restart {
            program: "api".to_owned(),
            instance: 1
        }
    );
    assert!(app.confirm.is_none());
    app.answered(Ok(crate::admin::Response::Ok {
        message: "restarting api/1".to_owned(),
    }));
    assert!(screen(&app)[11].contains("restarting api/1"));

    // Anything but y cancels, and q in the prompt does not quit.
    app.on_key(key(KeyCode::Char('r')));
    assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::None);
    assert!(screen(&app)[11].contains("restart cancelled"));
    assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
}

#[test]
fn disconnected_keeps_rows_and_says_retrying() {
    let mut app = App::default();
    app.update(fleet());
    app.disconnect("cannot reach a supervisor".to_owned());
    let lines = screen(&app);
    assert!(
        lines[0].starts_with("disconnected, retrying"),
        "{}",
        lines[0]
    );
    assert!(lines[11].contains("cannot reach"));
    row_of(&lines, "batch");
    app.update(fleet());
    assert!(!screen(&app)[0].contains("disconnected"));
}

#[test]
fn history_is_bounded_and_forgets_gone_instances() {
    let mut app = App::default();
    for i in 0..(HISTORY as u64 + 10) {
        let mut w = worker("api", 0, 1, 0.0);
        w.rss_bytes = Some(i);
        app.update(vec![w]);
    }
    let h = &app.history[&("api".to_owned(), 0)];
    assert_eq!(h.len(), HISTORY);
    assert_eq!(h.front(), Some(&10));
    app.update(vec![worker("other", 0, 1, 0.0)]);
    assert!(!app.history.contains_key(&("api".to_owned(), 0)));
}

#[test]
fn sparkline_scales_between_min_and_max() {
    assert_eq!(sparkline(&[], 5), "");
    assert_eq!(sparkline(&[7, 7, 7], 5), "\u{2581}\u{2581}\u{2581}");
    assert_eq!(sparkline(&[0, 100], 5), "\u{2581}\u{2588}");
    // Only the last `width` samples.
    assert_eq!(sparkline(&[1000, 0, 0, 1], 3).chars().count(), 3);
}

#[test]
fn network_and_disk_columns() {
    let mut w = worker("api", 0, 100, 1.0);
    w.net = Some(crate::status::NetStatus {
        established: 7,
        sent_bytes_per_s: Some(1024.0 * 1024.0),
        received_bytes_per_s: Some(512.0 * 1024.0),
        rtt_ms: Some(1.5),
        ..Default::default()
    });
    w.disk = Some(crate::disk::WorkerDisk {
        deleted_bytes: 50 << 20,
        deleted_files: 1,
        ..Default::default()
    });
    let mut app = App::default();
    app.update(vec![w, worker("batch", 0, 50, 2.0)]);
    let mut term = Terminal::new(TestBackend::new(200, 6)).expect("terminal");
    term.draw(|f| super::render(&app, f)).expect("draw");
    let buf = term.backend().buffer();
    let lines: Vec<String> = (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect();
    for col in ["CONN", "NET/S", "RTT", "DELETED"] {
        assert!(lines[1].contains(col), "{col} missing: {}", lines[1]);
    }
    let api = &lines[row_of(&lines, "api")];
    for cell in [" 7 ", "1.5M/s", "1.5ms", "50.0M"] {
        assert!(api.contains(cell), "{cell} missing: {api}");
    }
    // Not probed yet: dashes, not zeros.
    let batch = &lines[row_of(&lines, "batch")];
    assert!(
        batch.contains("250ms   -     -        -       -"),
        "{batch}"
    );
}
