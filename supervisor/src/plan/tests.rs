use super::*;
use crate::plan::{Check, ReadyHow, ReadySpec};
use crate::signals::Sig;
use clap::Parser;
use std::path::Path;

fn err(src: &str) -> PlanError {
    match parse_config(src, Some(Path::new("s.toml"))) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn full_config_parses() {
    let plan = parse_config(
        r#"
events = "-"
[sample]
every = "250ms"
[log]
dir = "logs"
max = "1MiB"
keep = 2
[program.api]
command = ["./api", "--port", "8080"]
replicas = 2
restart = "always"
env = { A = "1" }
backoff = { first = "50ms", max = "5s", factor = 3.0, jitter = 0.0 }
intensity = { max = 3, within = "10s" }
stop = { signal = "INT", grace = "2s" }
[program.api.memory]
max = "1.5GiB"
measure = "pss"
for = 1
"#,
        None,
    )
    .expect("valid config");
    assert_eq!(plan.sample_every, Duration::from_millis(250));
    assert_eq!(plan.events, Some(EventsTarget::Stderr));
    assert_eq!(
        plan.log.as_ref().map(|l| (l.max, l.keep)),
        Some((1 << 20, 2))
    );
    let p = &plan.programs[0];
    assert_eq!(p.name, "api");
    assert_eq!(p.command, ["./api", "--port", "8080"]);
    assert_eq!(p.replicas, 2);
    assert_eq!(p.restart, RestartMode::Always);
    assert_eq!(p.env, [("A".to_owned(), "1".to_owned())]);
    assert_eq!(p.backoff.first, Duration::from_millis(50));
    assert!((p.backoff.factor - 3.0).abs() < f64::EPSILON);
    assert_eq!(
        p.intensity,
        Intensity {
            max: 3,
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(p.stop.signal, Sig::INT);
    let m = p.memory.expect("memory");
    assert_eq!(m.max, 1_610_612_736);
    assert_eq!(m.measure, Measure::Pss);
    assert_eq!(m.count, 1);
}

#[test]
fn defaults_apply() {
    let plan = parse_config("[program.a]\ncommand = [\"x\"]\n", None).expect("valid");
    let p = &plan.programs[0];
    assert_eq!(p.replicas, 1);
    assert_eq!(p.restart, RestartMode::OnFailure);
    assert_eq!(p.stop, StopSpec::default());
    assert_eq!(p.intensity, Intensity::default());
    assert_eq!(p.memory, None);
    assert_eq!(plan.sample_every, DEFAULT_SAMPLE_EVERY);
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = err("[program.a]\ncommand = [\"x\"]\n\n[program.a.memory]\nmax = \"1GiB\"\nmaxx = 3\n");
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.key, "program.a.memory.maxx", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    assert!(
        e.to_string()
            .starts_with("s.toml:6: program.a.memory.maxx: "),
        "{e}"
    );
}

#[test]
fn bad_size_names_line_and_key() {
    let e = err("[program.a]\ncommand = [\"x\"]\nmemory = { max = \"12XB\" }\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.key, "program.a.memory.max");
    assert!(e.message.contains("invalid size \"12XB\""), "{e}");
}

#[test]
fn bad_duration_names_line_and_key() {
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.stop]\ngrace = \"ten seconds\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "program.a.stop.grace"),
        "{e}"
    );
    assert!(e.message.contains("invalid duration"), "{e}");
}

#[test]
fn zero_replicas_is_an_error() {
    let e = err("[program.a]\ncommand = [\"x\"]\nreplicas = 0\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "program.a.replicas"),
        "{e}"
    );
}

#[test]
fn missing_command_is_an_error() {
    let e = err("[program.a]\nreplicas = 2\n");
    assert_eq!(e.key, "program.a.command", "{e}");
    assert!(e.message.contains("missing"), "{e}");
    assert_eq!(e.line, Some(1), "{e}");
    let e = err("[program.x]\ncommand = [\"x\"]\n\n[program.a]\nreplicas = 2\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "program.a.command"),
        "{e}"
    );
}

#[test]
fn empty_command_is_an_error() {
    let e = err("[program.a]\ncommand = []\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(2), "program.a.command"),
        "{e}"
    );
}

#[test]
fn bad_name_signal_and_syntax() {
    let e = err("[program.\"a b\"]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "program.a b"), "{e}");
    let e = err("[program.a]\ncommand = [\"x\"]\nstop = { signal = \"TERMINATE\" }\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "program.a.stop.signal"),
        "{e}"
    );
    let e = err("[program.a]\ncommand = [\"x\"\n");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err("[sample]\nevery = \"1ms\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "sample.every"), "{e}");
    let e = err("");
    assert_eq!(e.key, "program");
}

#[test]
fn value_parsers() {
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
    assert!(parse_size("lots").is_err());
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_signal("term"), Ok(Sig::TERM));
    assert_eq!(parse_signal("SIGKILL"), Ok(Sig::KILL));
    assert_eq!(parse_signal("2"), Ok(Sig::INT));
    assert_eq!(
        parse_signal("RTMIN+3").map(Sig::raw),
        Ok(libc::SIGRTMIN() + 3)
    );
    assert!(parse_signal("99").is_err());
}

fn cli(args: &[&str]) -> Result<Plan, PlanError> {
    let matches = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(args)
        .expect("parses");
    let cli = Cli::from_arg_matches(&matches).expect("matches");
    let explicit =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    cli.into_plan(&explicit)
}

use clap::FromArgMatches;

#[test]
fn flags_build_a_single_program_plan() {
    let plan = cli(&[
        "supervise",
        "--memory-max",
        "64MiB",
        "--memory-for",
        "1",
        "--replicas",
        "3",
        "--restart",
        "always",
        "--grace",
        "2s",
        "--stop-signal",
        "INT",
        "--",
        "/usr/bin/env",
        "-i",
    ])
    .expect("plan");
    assert!(plan.single);
    let p = &plan.programs[0];
    assert_eq!(p.name, "env");
    assert_eq!(p.command, ["/usr/bin/env", "-i"]);
    assert_eq!(p.replicas, 3);
    assert_eq!(
        p.stop,
        StopSpec {
            signal: Sig::INT,
            grace: Duration::from_secs(2),
            mode: StopMode::Group,
            drain: Duration::ZERO,
        }
    );
    assert_eq!(p.memory.map(|m| (m.max, m.count)), Some((64 << 20, 1)));
}

#[test]
fn flag_errors() {
    assert!(cli(&["supervise"]).is_err());
    let e = cli(&[
        "supervise",
        "--backoff-first",
        "5s",
        "--backoff-max",
        "1s",
        "--",
        "x",
    ])
    .expect_err("bad backoff");
    assert_eq!(e.key, "--backoff-max");
    let e = cli(&["supervise", "--log-max", "1MiB", "--", "x"]).expect_err("log-max without dir");
    assert_eq!(e.key, "--log-max");
    let e = cli(&["supervise", "--name", "../x", "--", "x"]).expect_err("bad name");
    assert_eq!(e.key, "--name");
    assert!(Cli::try_parse_from(["supervise", "--replicas", "0", "--", "x"]).is_err());
    assert!(Cli::try_parse_from(["supervise", "--memory-max", "12XB", "--", "x"]).is_err());
}

#[test]
fn program_flags_conflict_with_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[program.a]\ncommand = [\"x\"]\n").expect("write");
    let p = path.to_str().expect("utf-8");
    let e = cli(&["supervise", "-c", p, "--replicas", "2"]).expect_err("conflict");
    assert_eq!(e.key, "--replicas");
    let plan = cli(&[
        "supervise",
        "-c",
        p,
        "--sample-every",
        "200ms",
        "--events",
        "-",
    ])
    .expect("global flags");
    assert_eq!(plan.sample_every, Duration::from_millis(200));
    assert!(!plan.single);
}

#[test]
fn heartbeat_and_warn_at() {
    let plan = parse_config(
        "[program.a]\ncommand = [\"x\"]\nheartbeat = { timeout = \"5s\" }\nmemory = { max = \"1GiB\", warn_at = 0.8 }\n",
        None,
    )
    .expect("valid");
    let p = &plan.programs[0];
    assert_eq!(
        p.heartbeat,
        Some(HeartbeatSpec {
            timeout: Duration::from_secs(5),
            signal: Sig::ABRT,
            grace: Duration::from_secs(3),
        })
    );
    assert_eq!(p.memory.and_then(|m| m.warn_at), Some(0.8));
    let e = err("[program.a]\ncommand = [\"x\"]\nmemory = { max = \"1GiB\", warn_at = 1.5 }\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "program.a.memory.warn_at"),
        "{e}"
    );
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.heartbeat]\ntimeout = \"0s\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "program.a.heartbeat.timeout"),
        "{e}"
    );
    let e = cli(&["supervise", "--memory-warn-at", "0.8", "--", "x"]).expect_err("needs a max");
    assert_eq!(e.key, "--memory-warn-at");
    let plan = cli(&[
        "supervise",
        "--memory-max",
        "1GiB",
        "--memory-warn-at",
        "0.9",
        "--heartbeat-timeout",
        "2s",
        "--",
        "x",
    ])
    .expect("plan");
    assert_eq!(
        plan.programs[0].heartbeat.map(|h| h.timeout),
        Some(Duration::from_secs(2))
    );
}

#[test]
fn leak_config_and_flags() {
    let plan = parse_config(
        "[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nleak = \"64MiB/10m\"\non_leak = \"warn\"\n",
        None,
    )
    .expect("valid");
    let p = &plan.programs[0];
    assert_eq!(p.memory, None, "a leak watch needs no limit");
    let leak = p.leak.expect("leak");
    assert_eq!(leak.on_leak, OnLeak::Warn);
    assert_eq!(leak.spec.growth, 64 << 20);
    assert_eq!(leak.spec.within, Duration::from_secs(600));
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nleak = \"64MiB\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "program.a.memory.leak"),
        "{e}"
    );
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nmeasure = \"pss\"\n");
    assert_eq!(e.key, "program.a.memory", "{e}");
    let e = err(
        "[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nleak = \"1GiB/1h\"\nwarn_at = 0.5\n",
    );
    assert_eq!(e.key, "program.a.memory.max", "{e}");
    let plan = cli(&["supervise", "--leak", "8MiB/30s", "--", "x"]).expect("plan");
    let leak = plan.programs[0].leak.expect("leak");
    assert_eq!((leak.spec.growth, leak.on_leak), (8 << 20, OnLeak::Restart));
    assert!(Cli::try_parse_from(["supervise", "--leak", "8MiB/1s", "--", "x"]).is_err());
}

#[test]
fn metrics_address_from_config_and_flag() {
    let plan = parse_config(
        "metrics = \":9100\"\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("valid");
    assert_eq!(plan.metrics, Some("127.0.0.1:9100".parse().expect("addr")));
    let e = err("metrics = \"somewhere\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.key.as_str(), e.line), ("metrics", Some(1)));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "metrics = \"127.0.0.1:9100\"\n[program.a]\ncommand = [\"x\"]\n",
    )
    .expect("write");
    let p = path.to_str().expect("utf-8");
    let plan = cli(&["supervise", "-c", p, "--metrics", "0.0.0.0:0"]).expect("flag overrides");
    assert_eq!(plan.metrics, Some("0.0.0.0:0".parse().expect("addr")));
    let plan = cli(&["supervise", "--", "x"]).expect("single");
    assert_eq!(plan.metrics, None);
}

#[test]
fn history_in_config() {
    let plan = parse_config(
        "history = \"h.bin\"\nhistory_max = \"1MiB\"\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("valid");
    assert_eq!(
        plan.history,
        Some(HistorySpec {
            path: PathBuf::from("h.bin"),
            max: 1 << 20
        })
    );
    let plan = parse_config(
        "history = \"h.bin\"\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("ok");
    assert_eq!(plan.history.map(|h| h.max), Some(DEFAULT_HISTORY_MAX));
    let plan = parse_config("[program.a]\ncommand = [\"x\"]\n", None).expect("ok");
    assert_eq!(plan.history, None);
}

#[test]
fn history_errors_name_line_and_key() {
    let e = err("history = \"h\"\nhistory_max = \"12 parsecs\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "history_max"), "{e}");
    assert!(e.message.contains("invalid size"), "{e}");
    let e = err("history = \"h\"\nhistory_max = \"1KiB\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "history_max"), "{e}");
    assert!(e.message.contains("at least 64KiB"), "{e}");
    let e = err("events = \"-\"\nhistory_max = \"1MiB\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "history_max"), "{e}");
    assert!(
        e.to_string()
            .starts_with("s.toml:2: history_max: needs `history`"),
        "{e}"
    );
    let e = err("history = 3\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "history"), "{e}");
}

#[test]
fn history_flags() {
    let plan = cli(&["supervise", "--history", "h.bin", "--", "x"]).expect("plan");
    assert_eq!(
        plan.history,
        Some(HistorySpec {
            path: PathBuf::from("h.bin"),
            max: DEFAULT_HISTORY_MAX
        })
    );
    let plan = cli(&[
        "supervise",
        "--history",
        "h.bin",
        "--history-max",
        "2MiB",
        "--",
        "x",
    ])
    .expect("plan");
    assert_eq!(plan.history.map(|h| h.max), Some(2 << 20));
    let e = cli(&["supervise", "--history-max", "2MiB", "--", "x"]).expect_err("no file");
    assert_eq!(e.key, "--history-max");
    let e = cli(&[
        "supervise",
        "--history",
        "h",
        "--history-max",
        "1000",
        "--",
        "x",
    ])
    .expect_err("too small");
    assert_eq!(e.key, "--history-max");
    // With -c, the flag overrides the file's path and keeps its size.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "history = \"a\"\nhistory_max = \"1MiB\"\n[program.a]\ncommand = [\"x\"]\n",
    )
    .expect("write");
    let p = path.to_str().expect("utf-8");
    let plan = cli(&["supervise", "-c", p, "--history", "b"]).expect("plan");
    assert_eq!(
        plan.history,
        Some(HistorySpec {
            path: PathBuf::from("b"),
            max: 1 << 20
        })
    );
}

#[test]
fn report_subcommand_parses() {
    let c = Cli::try_parse_from(["supervise", "report", "h.bin", "-o", "out.svg"]).expect("parse");
    assert_eq!(
        c.control,
        Some(Control::Report {
            file: PathBuf::from("h.bin"),
            output: PathBuf::from("out.svg"),
            program: None
        })
    );
    let c = Cli::try_parse_from([
        "supervise",
        "report",
        "h.bin",
        "--output",
        "-",
        "--program",
        "api",
    ])
    .expect("parse");
    assert!(matches!(c.control, Some(Control::Report { program: Some(ref p), .. }) if p == "api"));
    assert!(
        Cli::try_parse_from(["supervise", "report", "h.bin"]).is_err(),
        "-o is required"
    );
}

#[test]
fn replicas_are_bounded() {
    for (src, want) in [
        ("replicas = 0\n", "must be between 1 and 10000, got 0"),
        (
            "replicas = 10001\n",
            "must be between 1 and 10000, got 10001",
        ),
        ("replicas = -3\n", "must be between 1 and 10000, got -3"),
    ] {
        let e = err(&format!("[program.a]\ncommand = [\"x\"]\n{src}"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "program.a.replicas"),
            "{e}"
        );
        assert!(e.message.contains(want), "{e}");
    }
    let e = cli(&["supervise", "--replicas", "10001", "--", "x"]).expect_err("too many");
    assert_eq!(e.key, "--replicas");
}

#[test]
fn fd_budget_counts_every_instance_and_what_clients_may_hold() {
    // 10 per instance, 32 for the supervisor, 96 for control and metrics clients, 8 for a notify
    // datagram's fds.
    assert!(fd_budget(88, 1024).is_ok());
    let e = fd_budget(89, 1024).expect_err("over");
    assert!(e.contains("89 instances need about 1026 open files"), "{e}");
    assert_eq!(
        FDS_CLIENTS,
        (crate::admin::MAX_CONNECTIONS + crate::metrics::MAX_CONNECTIONS) as u64
    );
    assert_eq!(FDS_NOTIFY, crate::notify::MAX_FDS as u64);
    assert!(fd_budget(u64::MAX, u64::MAX).is_ok());
    assert!(fd_budget(u64::MAX, 1 << 40).is_err());
}

#[test]
fn readiness_health_and_order() {
    let plan = parse_config(
        "[program.db]\ncommand = [\"x\"]\nready = { notify = true, start_timeout = \"30s\" }\n\
         [program.api]\ncommand = [\"y\"]\nafter = [\"db\"]\n\
         [program.api.ready]\nhttp = \"http://127.0.0.1:8080/ready\"\nevery = \"500ms\"\n\
         [program.api.health]\ntcp = \"127.0.0.1:8080\"\nfailures = 5\n",
        None,
    )
    .expect("valid");
    let api = plan.programs.iter().find(|p| p.name == "api").expect("api");
    assert_eq!(api.after, ["db"]);
    assert_eq!(
        api.ready,
        Some(ReadySpec {
            how: ReadyHow::Check(Check::Http {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/ready".into()
            }),
            every: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            start_timeout: None,
        })
    );
    let h = api.health.as_ref().expect("health");
    assert_eq!((h.failures, h.every), (5, Duration::from_secs(10)));
    let db = plan.programs.iter().find(|p| p.name == "db").expect("db");
    assert_eq!(db.ready.as_ref().map(|r| &r.how), Some(&ReadyHow::Notify));
    for (src, line, key, msg) in [
        (
            "[program.a]\ncommand = [\"x\"]\nready = { tcp = \"h:1\", exec = [\"y\"] }\n",
            3,
            "program.a.ready",
            "give one of",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\nready = { every = \"1s\" }\n",
            3,
            "program.a.ready",
            "needs one of",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\nready = { fd = 1 }\n",
            3,
            "program.a.ready.fd",
            "must be an fd number from 3",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\n[program.a.health]\nhttp = \"https://x/\"\n",
            3,
            "program.a.health.http",
            "plain http",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\nafter = [\"b\"]\n",
            3,
            "program.a.after",
            "no program named \"b\"",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\nafter = [\"b\"]\n[program.b]\ncommand = [\"x\"]\nafter = [\"c\"]\n[program.c]\ncommand = [\"x\"]\nafter = [\"a\"]\n",
            3,
            "program.a.after",
            "a cycle: a after b after c after a",
        ),
        (
            "[program.a]\ncommand = [\"x\"]\nafter = [\"a\"]\n",
            3,
            "program.a.after",
            "cannot start after itself",
        ),
    ] {
        let e = err(src);
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
    let e = cli(&["supervise", "--start-timeout", "5s", "--", "x"]).expect_err("needs --ready");
    assert_eq!(e.key, "--start-timeout");
}

#[test]
fn quiet_and_timestamps_from_flags_or_config() {
    let plan = cli(&["supervise", "--", "x"]).expect("plan");
    assert!(!plan.quiet && !plan.timestamps);
    let plan = cli(&["supervise", "-q", "--timestamps", "--", "x"]).expect("plan");
    assert!(plan.quiet && plan.timestamps);
    let plan = parse_config(
        "quiet = true\ntimestamps = true\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("valid");
    assert!(plan.quiet && plan.timestamps);
    let e = err("quiet = \"yes\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "quiet"), "{e}");
}

#[test]
fn log_format_and_prefix_from_flags_or_config() {
    use crate::plan::LogFormat;
    let plan = cli(&["supervise", "--", "x"]).expect("plan");
    assert_eq!((plan.log_format, plan.prefix), (LogFormat::Human, false));
    let plan = cli(&["supervise", "--log-format", "json", "--prefix", "--", "x"]).expect("plan");
    assert_eq!((plan.log_format, plan.prefix), (LogFormat::Json, true));
    let plan = parse_config(
        "log_format = \"json\"\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("valid");
    assert_eq!(plan.log_format, LogFormat::Json);
    let e = err("log_format = \"xml\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "log_format"), "{e}");
    assert!(e.to_string().contains("human"), "{e}");
    // A config's lines always carry their prefix: --prefix there is a mistake, said so.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[program.a]\ncommand = [\"x\"]\n").expect("write");
    let path = path.to_str().expect("utf-8");
    let e = cli(&["supervise", "--prefix", "-c", path]).expect_err("refused");
    assert_eq!(e.key, "--prefix", "{e}");
    let plan = cli(&["supervise", "--log-format", "json", "-c", path]).expect("plan");
    assert_eq!(plan.log_format, LogFormat::Json);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let plan = parse_config(include_str!("../../../contrib/supervise.toml"), None).expect("valid");
    assert_eq!(plan.programs.len(), 1);
    assert!(plan.metrics.is_some());
}

#[test]
fn deleted_growth_and_destroy_events_from_the_config_and_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "[sample]\ndestroy_events = false\n\n[watch]\ndeleted_growth = \"1MiB/s\"\n\n[program.a]\ncommand = [\"true\"]\n",
    )
    .expect("write");
    let plan = crate::plan::load_config(&path).expect("valid");
    assert_eq!(plan.sample_every, DEFAULT_SAMPLE_EVERY);
    assert!(!plan.destroy_events);
    assert_eq!(plan.deleted_growth, 1 << 20);
    std::fs::write(
        &path,
        "[watch]\ndeleted_growth = \"fast\"\n\n[program.a]\ncommand = [\"true\"]\n",
    )
    .expect("write");
    let e = crate::plan::load_config(&path)
        .expect_err("bad rate")
        .to_string();
    assert!(e.contains("deleted_growth") && e.contains("SIZE/s"), "{e}");
    let plan = crate::plan::load_config(&{
        std::fs::write(&path, "[program.a]\ncommand = [\"true\"]\n").expect("write");
        path.clone()
    })
    .expect("valid");
    assert!(plan.destroy_events);
    assert_eq!(plan.deleted_growth, crate::plan::watch::DEFAULT_RATE);
}

#[test]
fn deleted_growth_and_destroy_event_flags() {
    let p = cli(&["supervise", "--", "x"]).expect("plan");
    assert!(p.destroy_events);
    assert_eq!(p.deleted_growth, crate::plan::watch::DEFAULT_RATE);
    let p = cli(&[
        "supervise",
        "--no-destroy-events",
        "--deleted-growth",
        "10MiB/10s",
        "--",
        "x",
    ])
    .expect("plan");
    assert!(!p.destroy_events);
    assert_eq!(p.deleted_growth, 1 << 20);
    assert!(Cli::try_parse_from(["supervise", "--deleted-growth", "1MiB", "--", "x"]).is_err());
}

#[test]
fn the_log_buffer_is_bounded_and_off_with_zero() {
    let plan = cli(&["supervise", "--", "x"]).expect("plan");
    assert_eq!(plan.log_buffer, DEFAULT_LOG_BUFFER);
    let plan = cli(&["supervise", "--log-buffer", "0", "--", "x"]).expect("plan");
    assert_eq!(plan.log_buffer, 0);
    let plan = cli(&["supervise", "--log-buffer", "4MiB", "--", "x"]).expect("plan");
    assert_eq!(plan.log_buffer, 4 << 20);
    for bad in ["512", "2GiB"] {
        let e = cli(&["supervise", "--log-buffer", bad, "--", "x"]).expect_err(bad);
        assert_eq!(e.key, "--log-buffer");
        assert!(e.message.contains("between 1KiB and 1GiB"), "{e}");
    }
    let plan = parse_config(
        "log_buffer = \"64KiB\"\n[program.a]\ncommand = [\"x\"]\n",
        None,
    )
    .expect("config");
    assert_eq!(plan.log_buffer, 64 << 10);
    let plan = parse_config("[program.a]\ncommand = [\"x\"]\n", None).expect("config");
    assert_eq!(plan.log_buffer, DEFAULT_LOG_BUFFER);
    let e = err("log_buffer = \"100\"\n[program.a]\ncommand = [\"x\"]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "log_buffer"), "{e}");
    assert!(e.message.contains("between 1KiB and 1GiB"), "{e}");
}

#[test]
fn logs_and_wait_flags_parse() {
    let c = Cli::try_parse_from(["supervise", "logs", "api/1", "-n", "5", "-f"]).expect("parse");
    assert_eq!(
        c.control,
        Some(Control::Logs {
            target: "api/1".into(),
            lines: 5,
            follow: true
        })
    );
    let c = Cli::try_parse_from(["supervise", "logs", "api"]).expect("parse");
    assert!(matches!(
        c.control,
        Some(Control::Logs {
            lines: 50,
            follow: false,
            ..
        })
    ));
    let c = Cli::try_parse_from(["supervise", "restart", "api", "--wait", "--timeout", "90s"])
        .expect("parse");
    let Some(Control::Restart { wait, .. }) = c.control else {
        panic!("restart")
    };
    assert_eq!(wait.wait_ms(), Some(90_000));
    let c = Cli::try_parse_from(["supervise", "stop", "api", "--wait"]).expect("parse");
    let Some(Control::Stop { wait, .. }) = c.control else {
        panic!("stop")
    };
    assert_eq!(wait.wait_ms(), Some(60_000));
    let c = Cli::try_parse_from(["supervise", "start", "api"]).expect("parse");
    let Some(Control::Start { wait, .. }) = c.control else {
        panic!("start")
    };
    assert_eq!(wait.wait_ms(), None);
    assert!(Cli::try_parse_from(["supervise", "start", "api", "--timeout", "5s"]).is_err());
}

#[test]
fn memory_handling_from_the_file_and_the_flags() {
    let plan = parse_config(
        "[program.a]\ncommand = [\"x\"]\nreplicas = 4\n[program.a.memory]\nmax = \"100MiB\"\n\
         min_uptime = \"5s\"\nmax_unavailable = 2\nceiling = \"200MiB\"\nrecycle = \"member\"\n\
         recycle_before = \"10m\"\n[program.a.recycle]\nevery = \"24h\"\njitter = \"1h\"\n\
         requests = 10000\nrequests_jitter = 500\n",
        None,
    )
    .expect("parses");
    let h = plan.programs[0].handling;
    assert_eq!(h.min_uptime, Duration::from_secs(5));
    assert_eq!(h.max_unavailable, 2);
    assert_eq!(h.ceiling, Some(200 << 20));
    assert_eq!(h.recycle, RecycleScope::Member);
    assert_eq!(h.recycle_before, Some(Duration::from_secs(600)));
    assert_eq!(h.schedule.every, Some(Duration::from_secs(86_400)));
    assert_eq!(h.schedule.requests, Some(10_000));
    assert_eq!(h.schedule.requests_jitter, 500);
    // Defaults: a ceiling of 1.5 × max, one out at a time.
    let plan = parse_config(
        "[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nmax = \"100MiB\"\n",
        None,
    )
    .expect("parses");
    assert_eq!(plan.programs[0].handling.ceiling, Some(150 << 20));
    assert_eq!(plan.programs[0].handling.max_unavailable, 1);
    // Errors name the key and the line of its table.
    let e = err(
        "[program.a]\ncommand = [\"x\"]\n[program.a.memory]\nmax = \"100MiB\"\n\
                 ceiling = \"50MiB\"\n",
    );
    assert_eq!(e.key, "program.a.memory.ceiling", "{e}");
    assert!(e.to_string().contains("must be above `max`"), "{e}");
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.recycle]\njitter = \"1h\"\n");
    assert_eq!(e.key, "program.a.recycle.jitter", "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    let e = err("[program.a]\ncommand = [\"x\"]\n[program.a.recycle]\nevry = \"1h\"\n");
    assert!(e.to_string().contains("evry"), "{e}");
    // The flags.
    let plan = cli(&[
        "supervise",
        "--memory-max",
        "64MiB",
        "--memory-recycle",
        "member",
        "--memory-max-unavailable",
        "3",
        "--drain",
        "2s",
        "--recycle-every",
        "1h",
        "--recycle-jitter",
        "5m",
        "--",
        "x",
    ])
    .expect("flags");
    let p = &plan.programs[0];
    assert_eq!(p.handling.recycle, RecycleScope::Member);
    assert_eq!(p.handling.max_unavailable, 3);
    assert_eq!(p.handling.ceiling, Some(96 << 20));
    assert_eq!(p.stop.drain, Duration::from_secs(2));
    assert_eq!(p.handling.schedule.jitter, Duration::from_secs(300));
    let e = cli(&["supervise", "--memory-ceiling", "1GiB", "--", "x"]).expect_err("no max");
    assert_eq!(e.key, "--memory-ceiling");
    let e = cli(&["supervise", "--recycle-requests", "0", "--", "x"]).expect_err("zero");
    assert_eq!(e.key, "--recycle-requests");
}

#[test]
fn events_rotation_from_the_config_and_the_flags() {
    let prog = "[program.a]\ncommand = [\"x\"]\n";
    let plan = parse_config(&format!("events = \"e.jsonl\"\n{prog}"), None).expect("ok");
    assert_eq!(
        plan.events_rotation,
        EventsRotation {
            max: 64 << 20,
            keep: 3
        }
    );
    let plan = parse_config(
        &format!("events = \"e.jsonl\"\nevents_max = \"1MiB\"\nevents_keep = 0\n{prog}"),
        None,
    )
    .expect("ok");
    assert_eq!(
        plan.events_rotation,
        EventsRotation {
            max: 1 << 20,
            keep: 0
        }
    );
    let plan = parse_config(
        &format!("events = \"e.jsonl\"\nevents_max = 0\n{prog}"),
        None,
    )
    .expect("0 never rotates");
    assert_eq!(plan.events_rotation.max, 0);
    for (src, line, key, says) in [
        (
            "events = \"e\"\nevents_max = \"1000B\"\n",
            2,
            "events_max",
            "at least 1KiB",
        ),
        ("events_max = \"1MiB\"\n", 1, "events_max", "needs `events`"),
        (
            "events = \"-\"\n\nevents_keep = 2\n",
            3,
            "events_keep",
            "needs `events` (a file to write, not \"-\")",
        ),
    ] {
        let e = err(&format!("{src}{prog}"));
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
        assert!(e.message.contains(says), "{e}");
    }

    let plan = cli(&[
        "supervise",
        "--events",
        "e.jsonl",
        "--events-max",
        "4KiB",
        "--events-keep",
        "1",
        "--",
        "x",
    ])
    .expect("plan");
    assert_eq!(plan.events_rotation, EventsRotation { max: 4096, keep: 1 });
    let plan = cli(&["supervise", "--events", "e.jsonl", "--", "x"]).expect("plan");
    assert_eq!(plan.events_rotation, EventsRotation::default());
    for (args, flag, says) in [
        (
            &["--events-max", "1MiB"][..],
            "--events-max",
            "needs --events FILE",
        ),
        (
            &["--events", "-", "--events-keep", "2"][..],
            "--events-keep",
            "needs --events FILE (not -)",
        ),
        (
            &["--events", "e", "--events-max", "10"][..],
            "--events-max",
            "at least 1KiB",
        ),
    ] {
        let mut all = vec!["supervise"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "x"]);
        let e = cli(&all).expect_err(flag);
        assert_eq!(e.key, flag, "{e}");
        assert!(e.message.contains(says), "{e}");
    }
}
