use super::*;

fn at(kind: Kind) -> Event<'static> {
    Event {
        ts: "2026-11-28T20:33:49.123Z".to_owned(),
        program: "api",
        instance: 0,
        pid: Some(42),
        kind,
    }
}

fn plain(kind: Kind) -> String {
    line(&at(kind), Style::default()).expect("a line")
}

#[test]
fn every_kind_but_a_workers_chatter_has_a_line() {
    for kind in Kind::one_of_each() {
        let name = kind.name();
        let got = line(&at(kind.clone()), Style::default());
        if let Kind::WorkerEvent { .. } = kind {
            assert!(got.is_none(), "an info event is left out");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("no line for {name}"));
        assert!(got.starts_with("2026-11-28T20:33:49Z "), "{got}");
        assert!(
            got.ends_with('\n') && got.matches('\n').count() == 1,
            "{got}"
        );
    }
}

#[test]
fn the_lifecycle_in_words() {
    let cases = [
        (
            Kind::Started {
                command: vec!["./api".into()],
            },
            "api[0] started with pid 42",
        ),
        (
            Kind::SpawnFailed {
                error: "cannot run \"/nonexistent/cmd\": No such file or directory (os error 2)"
                    .into(),
            },
            "api[0] cannot run \"/nonexistent/cmd\": No such file or directory",
        ),
        (
            Kind::Exited {
                code: Some(3),
                signal: None,
                uptime_s: 1.234,
                report: None,
            },
            "api[0] exited with code 3 after 1.2s",
        ),
        (
            Kind::Exited {
                code: None,
                signal: Some(9),
                uptime_s: 3600.0,
                report: None,
            },
            "api[0] was killed by SIGKILL after 1h",
        ),
        (
            Kind::Restarting {
                reason: Reason::Exit,
                delay_ms: 200,
            },
            "api[0] restarting in 200ms (exit)",
        ),
        (
            Kind::Restarting {
                reason: Reason::Manual,
                delay_ms: 0,
            },
            "api[0] restarting now (manual)",
        ),
        (
            Kind::Stopping {
                reason: Some(Reason::Memory),
                for_good: false,
            },
            "api[0] stopping to restart (memory)",
        ),
        (
            Kind::Stopping {
                reason: None,
                for_good: true,
            },
            "api[0] stopping",
        ),
        (
            Kind::Killed { processes: 1 },
            "api[0] killed 1 process still running (SIGKILL)",
        ),
        (Kind::Stopped, "api[0] stopped"),
        (
            Kind::Fatal {
                restarts: 6,
                within_s: 60.0,
            },
            "api[0] gave up after 6 restarts in 60s (fatal)",
        ),
        (
            Kind::MemoryOver {
                bytes: 530 << 20,
                limit: 512 << 20,
                measure: "rss",
                count: 1,
                of: 3,
            },
            "api[0] memory 530MiB over its 512MiB limit (rss, 1 of 3)",
        ),
        (
            Kind::Finding {
                kind: "hung",
                detail: "the heartbeat stopped while the process is alive".into(),
                numbers: std::collections::BTreeMap::new(),
            },
            "api[0] finding hung: the heartbeat stopped while the process is alive",
        ),
        (
            Kind::LogError {
                path: "logs/api.0.stdout.log".into(),
                error: "No space left on device (os error 28)".into(),
            },
            "api[0] cannot write logs/api.0.stdout.log: No space left on device; dropping its lines, retrying every second",
        ),
        (
            Kind::LogResumed {
                path: "logs/api.0.stdout.log".into(),
                dropped: 3,
            },
            "api[0] writing logs/api.0.stdout.log again; 3 lines were dropped meanwhile",
        ),
        (
            Kind::RollHalted {
                waited_s: 60.0,
                left: 2,
            },
            "api[0] rolling restart halted: the new process was not up after 60s; 2 instances left as they were",
        ),
        (Kind::Orphan, "supervise process 42 was orphaned and no worker claims it; killed at shutdown"),
        (
            Kind::Listening {
                addr: "127.0.0.1:9100".into(),
            },
            "supervise serving the dashboard, /metrics, /healthz and /readyz on http://127.0.0.1:9100/",
        ),
        (
            Kind::SpawnFailed {
                error: "cannot switch to user nobody: Operation not permitted (os error 1)".into(),
            },
            "api[0] cannot switch to user nobody: Operation not permitted",
        ),
        (
            Kind::Daemonized {
                processes: 1,
                pids: vec![4712],
            },
            "api[0] forked into the background and exited (daemonized), leaving 1 process (pid 4712), stopped with it: run it in the foreground (nginx: daemon off;, redis: --daemonize no, gunicorn: no --daemon, postgres: not pg_ctl)",
        ),
        (
            Kind::Daemonized {
                processes: 7,
                pids: vec![1, 2, 3, 4, 5, 6, 7],
            },
            "api[0] forked into the background and exited (daemonized), leaving 7 processes (pids 1, 2, 3, 4, 5 and 2 more), stopped with it: run it in the foreground (nginx: daemon off;, redis: --daemonize no, gunicorn: no --daemon, postgres: not pg_ctl)",
        ),
        (
            Kind::Reloading {
                action: "SIGHUP".into(),
            },
            "api[0] reloading in place (SIGHUP)",
        ),
        (
            Kind::Reloaded {
                took_ms: 2_000,
                restarted: false,
            },
            "api[0] reloaded in place in 2s",
        ),
        (
            Kind::ReloadHalted {
                detail: "not ready again within reload.timeout (1m)".into(),
            },
            "api[0] reload-program halted: not ready again within reload.timeout (1m)",
        ),
        (
            Kind::EventsLost { count: 12 },
            "supervise 12 events were lost while the events file could not be written",
        ),
        (
            Kind::WorkerEvent {
                level: "error",
                text: "db down".into(),
            },
            "api[0] says (error): db down",
        ),
    ];
    for (kind, want) in cases {
        assert_eq!(plain(kind), format!("2026-11-28T20:33:49Z {want}\n"));
    }
}

#[test]
fn a_workers_text_cannot_break_the_line_or_drive_the_terminal() {
    let got = plain(Kind::WorkerEvent {
        level: "warn",
        text: "two\nlines \x1b[2J".into(),
    });
    assert_eq!(
        got,
        "2026-11-28T20:33:49Z api[0] says (warn): two\\nlines \\u{1b}[2J\n"
    );
}

#[test]
fn colours_and_milliseconds() {
    let e = at(Kind::Fatal {
        restarts: 1,
        within_s: 90.0,
    });
    let got = line(
        &e,
        Style {
            colour: true,
            millis: true,
        },
    )
    .expect("line");
    assert_eq!(
        got,
        "\x1b[2m2026-11-28T20:33:49.123Z\x1b[0m api[0] \x1b[31mgave up after 1 restart in 90s (fatal)\x1b[0m\n"
    );
    let got = line(
        &at(Kind::Stopped),
        Style {
            colour: true,
            millis: false,
        },
    )
    .expect("line");
    assert_eq!(got, "\x1b[2m2026-11-28T20:33:49Z\x1b[0m api[0] stopped\n");
    assert!(!plain(Kind::Stopped).contains('\x1b'));
}

#[test]
fn durations_and_sizes() {
    let d = |ms: u64| duration(Duration::from_millis(ms));
    assert_eq!(d(0), "0ms");
    assert_eq!(d(999), "999ms");
    assert_eq!(d(1000), "1s");
    assert_eq!(d(1690), "1.7s");
    assert_eq!(d(42_000), "42s");
    assert_eq!(d(60_000), "60s");
    assert_eq!(d(119_000), "119s");
    assert_eq!(d(300_000), "5m");
    assert_eq!(d(3_720_000), "1h 2m");
    assert_eq!(size(12), "12B");
    assert_eq!(size(900 * 1024), "900KiB");
    assert_eq!(size(48 * 1024 * 1024 + 512 * 1024), "48.5MiB");
    assert_eq!(size(512 << 20), "512MiB");
    assert_eq!(size(3 << 30), "3GiB");
}

#[test]
fn a_cleared_finding_in_words() {
    let e = Event {
        program: "supervise",
        ..at(Kind::Cleared {
            kind: "disk",
            detail: "/var/log/app is back under its limits".into(),
            remaining: 0,
        })
    };
    assert_eq!(
        line(&e, Style::default()).as_deref(),
        Some("2026-11-28T20:33:49Z supervise finding disk cleared: /var/log/app is back under its limits\n")
    );
}

#[test]
fn alert_words_and_severity() {
    let fatal = at(Kind::Fatal {
        restarts: 5,
        within_s: 60.0,
    });
    assert_eq!(
        alert_words(&fatal),
        (
            "critical",
            "api[0] gave up after 5 restarts in 60s (fatal)".to_owned()
        )
    );
    let restarting = at(Kind::Restarting {
        reason: Reason::Exit,
        delay_ms: 200,
    });
    assert_eq!(
        alert_words(&restarting),
        ("warning", "api[0] restarting in 200ms (exit)".to_owned())
    );
    assert_eq!(
        alert_words(&at(Kind::Started { command: vec![] })),
        ("info", "api[0] started with pid 42".to_owned())
    );
    let chatter = at(Kind::WorkerEvent {
        level: "info",
        text: "hello".into(),
    });
    assert_eq!(
        alert_words(&chatter),
        ("info", "api[0] worker_event".to_owned())
    );
    let listening = at(Kind::Listening { addr: "x".into() });
    assert!(alert_words(&listening).1.starts_with("supervise serving"));
}
