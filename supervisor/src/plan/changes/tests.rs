use super::{changes, live, outcome, plan_changes, Needs, Outcome};
use crate::plan::{parse_config, ProgramSpec, Switch};

/// One line of `[program.a]` each, so that a case replaces one.
const BASE: &[&str] = &[
    r#"command = ["./api", "--port", "8080"]"#,
    r#"cwd = "/srv""#,
    r#"env = { A = "1" }"#,
    "clear_env = false",
    r#"umask = "022""#,
    "nice = 5",
    "oom_score_adj = 100",
    "rlimits = { nofile = 1024 }",
    "replicas = 4",
    r#"restart = "always""#,
    r#"backoff = { first = "100ms", max = "30s" }"#,
    r#"intensity = { max = 5, within = "60s" }"#,
    r#"stop = { signal = "TERM", grace = "10s", mode = "group", drain = "0s" }"#,
    r#"memory = { max = "512MiB", measure = "rss", for = 3, hysteresis = 0.05, warn_at = 0.8, leak = "64MiB/10m", on_leak = "restart", min_uptime = "30s", max_unavailable = 1, ceiling = "1GiB", recycle = "tree", recycle_before = "10m" }"#,
    r#"heartbeat = { timeout = "5s" }"#,
    r#"net = { max_connections = 100 }"#,
    r#"ready = { tcp = "127.0.0.1:8080", every = "1s", timeout = "1s", start_timeout = "30s" }"#,
    r#"health = { tcp = "127.0.0.1:8080", every = "10s", failures = 3 }"#,
    r#"after = ["db"]"#,
    r#"recycle = { every = "24h" }"#,
    r#"oom = "normal""#,
    "essential = true",
    r#"reload = { signal = "HUP", settle = "2s", timeout = "60s" }"#,
];

fn spec(lines: &[&str]) -> ProgramSpec {
    let text = format!(
        "[program.db]\ncommand = [\"db\"]\n[program.a]\n{}\n",
        lines.join("\n")
    );
    let plan = parse_config(&text, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    plan.programs
        .into_iter()
        .find(|p| p.name == "a")
        .expect("program a")
}

/// `BASE` with the line starting with `prefix` replaced by `line`.
fn with(prefix: &str, line: &str) -> ProgramSpec {
    let mut lines = BASE.to_vec();
    let at = lines
        .iter()
        .position(|l| l.strip_prefix(prefix).is_some_and(|r| r.starts_with(" =")))
        .unwrap_or_else(|| panic!("no line {prefix}"));
    lines[at] = line;
    spec(&lines)
}

#[test]
fn every_config_key_is_classified() {
    use Needs::{Count, Live, Restart};
    let base = spec(BASE);
    // (line replaced, new line, the key the change is reported as, what it needs)
    let cases: &[(&str, &str, &str, Needs)] = &[
        (
            "command",
            r#"command = ["./api", "--port", "9090"]"#,
            "command",
            Restart,
        ),
        ("cwd", r#"cwd = "/tmp""#, "cwd", Restart),
        ("env", r#"env = { A = "2" }"#, "env", Restart),
        ("clear_env", "clear_env = true", "clear_env", Restart),
        ("umask", r#"umask = "077""#, "umask", Restart),
        ("nice", "nice = 10", "nice", Restart),
        (
            "oom_score_adj",
            "oom_score_adj = 200",
            "oom_score_adj",
            Restart,
        ),
        ("rlimits", "rlimits = { nofile = 2048 }", "rlimits", Restart),
        ("oom", r#"oom = "never""#, "oom", Live),
        ("essential", "essential = false", "essential", Live),
        (
            "reload",
            r#"reload = { exec = ["./reopen"], settle = "2s", timeout = "60s" }"#,
            "reload",
            Live,
        ),
        (
            "reload",
            r#"reload = { signal = "HUP", settle = "5s", timeout = "60s" }"#,
            "reload",
            Live,
        ),
        (
            "ready",
            r#"ready = { http = "http://127.0.0.1:8080/", every = "1s", timeout = "1s", start_timeout = "30s" }"#,
            "ready",
            Restart,
        ),
        (
            "ready",
            r#"ready = { tcp = "127.0.0.1:8080", every = "2s", timeout = "1s", start_timeout = "30s" }"#,
            "ready timings",
            Live,
        ),
        (
            "ready",
            r#"ready = { tcp = "127.0.0.1:8080", every = "1s", timeout = "1s", start_timeout = "1m" }"#,
            "ready timings",
            Live,
        ),
        ("replicas", "replicas = 2", "replicas", Count),
        ("restart", r#"restart = "on-failure""#, "restart", Live),
        (
            "backoff",
            r#"backoff = { first = "1s", max = "30s" }"#,
            "backoff",
            Live,
        ),
        (
            "intensity",
            r#"intensity = { max = 9, within = "60s" }"#,
            "intensity",
            Live,
        ),
        (
            "stop",
            r#"stop = { signal = "INT", grace = "10s", mode = "group", drain = "0s" }"#,
            "stop.signal",
            Live,
        ),
        (
            "stop",
            r#"stop = { signal = "TERM", grace = "3s", mode = "group", drain = "0s" }"#,
            "stop.grace",
            Live,
        ),
        (
            "stop",
            r#"stop = { signal = "TERM", grace = "10s", mode = "main", drain = "0s" }"#,
            "stop.mode",
            Live,
        ),
        (
            "stop",
            r#"stop = { signal = "TERM", grace = "10s", mode = "group", drain = "2s" }"#,
            "stop.drain",
            Live,
        ),
        (
            "heartbeat",
            r#"heartbeat = { timeout = "9s" }"#,
            "heartbeat",
            Live,
        ),
        ("net", "net = { max_connections = 5 }", "net", Live),
        (
            "health",
            r#"health = { tcp = "127.0.0.1:8080", every = "5s", failures = 3 }"#,
            "health",
            Live,
        ),
        ("after", "after = []", "after", Live),
        ("recycle", r#"recycle = { every = "12h" }"#, "recycle", Live),
    ];
    // The memory table's keys, one at a time.
    let memory = [
        ("max = \"512MiB\"", "max = \"256MiB\"", "memory.max"),
        ("measure = \"rss\"", "measure = \"pss\"", "memory.measure"),
        ("for = 3", "for = 1", "memory.for"),
        ("hysteresis = 0.05", "hysteresis = 0.1", "memory.hysteresis"),
        ("warn_at = 0.8", "warn_at = 0.9", "memory.warn_at"),
        (
            "leak = \"64MiB/10m\"",
            "leak = \"32MiB/10m\"",
            "memory.leak",
        ),
        ("on_leak = \"restart\"", "on_leak = \"warn\"", "memory.leak"),
        (
            "min_uptime = \"30s\"",
            "min_uptime = \"1m\"",
            "memory.min_uptime",
        ),
        (
            "max_unavailable = 1",
            "max_unavailable = 2",
            "memory.max_unavailable",
        ),
        ("ceiling = \"1GiB\"", "ceiling = \"2GiB\"", "memory.ceiling"),
        (
            "recycle = \"tree\"",
            "recycle = \"member\"",
            "memory.recycle",
        ),
        (
            "recycle_before = \"10m\"",
            "recycle_before = \"5m\"",
            "memory.recycle_before",
        ),
    ];
    let memory_line = BASE
        .iter()
        .find(|l| l.starts_with("memory"))
        .expect("memory line");
    let mut seen = Vec::new();
    let mut check = |new: ProgramSpec, key: &str, needs: Needs, what: &str| {
        let got = changes(&base, &new);
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        assert_eq!(got[0].key, key, "{what}");
        assert_eq!(got[0].needs, needs, "{what}");
        assert_ne!(got[0].old, got[0].new, "{what}: shown alike");
        seen.push(key.to_owned());
    };
    for (prefix, line, key, needs) in cases {
        check(with(prefix, line), key, *needs, line);
    }
    for (from, to, key) in memory {
        let line = memory_line.replace(from, to);
        assert_ne!(&line, memory_line, "{from}");
        check(with("memory", &line), key, Needs::Live, &line);
    }
    // Every key a change can be reported as was met (user and group below, as they need root).
    for key in [
        "command",
        "cwd",
        "env",
        "clear_env",
        "umask",
        "nice",
        "oom_score_adj",
        "rlimits",
        "oom",
        "essential",
        "reload",
        "ready",
        "ready timings",
        "replicas",
        "restart",
        "backoff",
        "intensity",
        "stop.signal",
        "stop.grace",
        "stop.mode",
        "stop.drain",
        "heartbeat",
        "net",
        "health",
        "after",
        "recycle",
        "memory.max",
        "memory.measure",
        "memory.for",
        "memory.hysteresis",
        "memory.warn_at",
        "memory.leak",
        "memory.min_uptime",
        "memory.max_unavailable",
        "memory.ceiling",
        "memory.recycle",
        "memory.recycle_before",
    ] {
        assert!(seen.iter().any(|s| s == key), "{key} not tested");
    }
    assert!(changes(&base, &spec(BASE)).is_empty());
}

#[test]
fn credentials_need_a_new_process() {
    let base = spec(BASE);
    let switch = |user: &str, uid, group: &str, gid| Switch {
        uid: Some(uid),
        gid,
        groups: vec![gid],
        user: user.into(),
        group: group.into(),
    };
    let mut a = base.clone();
    a.identity.switch = Some(switch("web", 1000, "web", 1000));
    let mut b = a.clone();
    b.identity.switch = Some(switch("app", 1001, "web", 1000));
    let got = changes(&a, &b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].key.as_str(), got[0].needs),
        ("user", Needs::Restart)
    );
    assert_eq!((got[0].old.as_str(), got[0].new.as_str()), ("web", "app"));
    let mut c = a.clone();
    c.identity.switch = Some(switch("web", 1000, "staff", 50));
    let got = changes(&a, &c);
    assert_eq!(
        (got[0].key.as_str(), got[0].needs),
        ("group", Needs::Restart)
    );
    let mut d = a.clone();
    d.identity.user_env = vec![("HOME".into(), "/home/x".into())];
    assert_eq!(changes(&a, &d)[0].needs, Needs::Restart);
}

#[test]
fn outcomes_of_a_whole_config() {
    let base = spec(BASE);
    let live_only = with("restart", r#"restart = "never""#);
    let more = with("replicas", "replicas = 6");
    let rolled = with("command", r#"command = ["./api2"]"#);
    assert_eq!(outcome(&changes(&base, &base)), Outcome::Unchanged);
    assert_eq!(outcome(&changes(&base, &live_only)), Outcome::Live);
    assert_eq!(outcome(&changes(&base, &more)), Outcome::Live);
    assert_eq!(outcome(&changes(&base, &rolled)), Outcome::Rolling);
    // A live key and a restart key together: rolled, and both reported.
    let mut both = rolled.clone();
    both.restart = live_only.restart;
    let c = changes(&base, &both);
    assert_eq!(outcome(&c), Outcome::Rolling);
    assert_eq!(c.len(), 2);

    let mut other = base.clone();
    other.name = "b".into();
    let mut gone = base.clone();
    gone.name = "c".into();
    let got = plan_changes(&[base.clone(), gone], &[live_only, other]);
    let summary: Vec<_> = got.iter().map(|p| (p.name.as_str(), p.outcome)).collect();
    assert_eq!(
        summary,
        [
            ("a", Outcome::Live),
            ("b", Outcome::Added),
            ("c", Outcome::Removed)
        ]
    );
}

#[test]
fn a_live_change_keeps_what_the_process_was_started_with() {
    let base = spec(BASE);
    // The running instance: an older command (a roll to `base` under way), same readiness rule.
    let running = with("command", r#"command = ["./old"]"#);
    let mut new = with("memory", &BASE[13].replace("512MiB", "128MiB"));
    new.restart = crate::plan::RestartMode::Never;
    new.ready = with("ready", r#"ready = { tcp = "127.0.0.1:8080", every = "3s", timeout = "1s", start_timeout = "30s" }"#).ready;
    let merged = live(&running, &new);
    assert_eq!(merged.command, running.command, "the process's own argv");
    assert_eq!(merged.memory.map(|m| m.max), Some(128 << 20));
    assert_eq!(merged.restart, crate::plan::RestartMode::Never);
    assert_eq!(
        merged.ready.as_ref().map(|r| r.every),
        Some(std::time::Duration::from_secs(3))
    );
    // Whatever is left differs only where a new process is needed.
    assert!(changes(&merged, &new)
        .iter()
        .all(|c| c.needs == Needs::Restart));
    assert!(changes(&running, &merged)
        .iter()
        .all(|c| c.needs != Needs::Restart));
    // A new readiness rule is not taken on by a running process.
    let other_rule = with(
        "ready",
        r#"ready = { http = "http://127.0.0.1:8080/", every = "1s", timeout = "1s", start_timeout = "30s" }"#,
    );
    assert_eq!(live(&base, &other_rule).ready, base.ready);
    assert_eq!(live(&base, &base), base);
}

#[test]
fn a_dry_run_says_what_each_program_would_get() {
    let base = spec(BASE);
    let mut lower = with("memory", &BASE[13].replace("512MiB", "256MiB"));
    lower.restart = crate::plan::RestartMode::OnFailure;
    let mut web = with("command", r#"command = ["./web"]"#);
    web.name = "web".into();
    let mut web2 = with("command", r#"command = ["./web", "-v"]"#);
    web2.name = "web".into();
    let mut gone = base.clone();
    gone.name = "gone".into();
    let got = super::render(
        &plan_changes(&[base.clone(), web, gone], &[lower, web2]),
        &[],
    );
    assert_eq!(
        got,
        "a: live: no instance restarted\n  \
         restart: always → on-failure (live)\n  \
         memory.max: 512.0 MiB → 256.0 MiB (live)\n\
         web: rolling: instances replaced one at a time, each up before the next\n  \
         command: [\"./web\"] → [\"./web\", \"-v\"] (restart)\n\
         gone: removed: stopped"
    );
    let more = with("replicas", "replicas = 6");
    let got = super::render(
        &plan_changes(std::slice::from_ref(&base), &[more]),
        &["a".into()],
    );
    assert_eq!(
        got,
        "a: fatal: started afresh\n  replicas: 4 → 6 (replicas)"
    );
    let more = with("replicas", "replicas = 6");
    let got = super::render(&plan_changes(&[base], &[more]), &[]);
    assert_eq!(
        got,
        "a: live: no instance restarted; replicas 4 → 6\n  replicas: 4 → 6 (replicas)"
    );
}
