//! The lifeline under pressure: it keeps protecting after many restarts under a low fd limit,
//! the raised fd limit stays the supervisor's own (workers get the one it started with), and a
//! lifeline that dies is reported, once.

mod common;

use std::fs;
use std::time::Duration;

use common::{
    alive, example, fd_count, fd_limit, fd_limits_of, forker_grandchild, lifeline_of, pid_of,
    pidfds_of, unique, wait_until, ProgramGuard, Sup,
};

/// `supervise --admin ctl.sock -c supervise.toml` (`config` written into the run's dir) with
/// RLIMIT_NOFILE at `soft`/`hard`.
fn with_fd_limit(config: &str, soft: u64, hard: u64) -> Sup {
    Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        fs::write(&path, config).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
        fd_limit(cmd, soft, hard);
    })
}

#[test]
fn many_restarts_under_a_low_fd_limit_leave_the_lifeline_protecting() {
    let keep = unique("keep");
    let crash = unique("crash");
    let fork = unique("fork");
    let _guards = [
        ProgramGuard(keep.clone()),
        ProgramGuard(crash.clone()),
        ProgramGuard(fork.clone()),
    ];
    // 251 starts of a crasher (zero backoff), each one a tree the lifeline is told of, under
    // 192 fds that cannot be raised (the start-up budget asks 166 for three programs).
    let base = format!(
        r#"
[sample]
every = "200ms"
[program.{keep}]
command = ["{leaky}", "--rate", "0"]
[program.{crash}]
command = ["{crasher}", "--after", "0"]
restart = "always"
backoff = {{ first = "0s" }}
intensity = {{ max = 250, within = "1h" }}
essential = false
"#,
        leaky = example("leaky"),
        crasher = example("crasher"),
    );
    let sup = with_fd_limit(&base, 192, 192);
    sup.wait_nth(1, Duration::from_secs(90), "the crasher's fatal", |e| {
        e["event"] == "fatal"
    });
    let starts = sup
        .of("started")
        .iter()
        .filter(|e| e["program"] == crash.as_str())
        .count();
    assert_eq!(starts, 251, "{}", sup.dump());
    // Then a worker whose grandchild leaves its process group and session: only the lifeline's
    // pidfd for it can reach it once the supervisor is SIGKILLed.
    fs::write(
        sup.path("supervise.toml"),
        format!(
            "{base}[program.{fork}]\ncommand = [\"{}\", \"--hold\", \"1\", \"--setsid\"]\n",
            example("forker")
        ),
    )
    .expect("config");
    sup.signal(libc::SIGHUP);
    let grandchild = forker_grandchild(&sup, &fork);
    // A sample of the worker's tree finds the grandchild and tells the lifeline, which holds
    // it: unless it ran out of fds.
    let lifeline = lifeline_of(sup.pid()).expect("the lifeline");
    let held = wait_until(Duration::from_secs(10), || {
        pidfds_of(lifeline).contains(&grandchild)
    });
    let fds = fd_count(lifeline);
    sup.signal(libc::SIGKILL);
    assert!(
        held && wait_until(Duration::from_secs(5), || !alive(grandchild)),
        "the grandchild {grandchild} outlived a SIGKILLed supervisor after 250 restarts \
         (the lifeline held {fds} fds, {} for it)\n{}",
        if held { "one" } else { "none" },
        sup.dump()
    );
    // The lifeline holds pidfds for the living only: stdio, and the three processes of two
    // workers' trees (the crasher is long gone).
    assert!(fds <= 16, "the lifeline held {fds} fds");
    assert!(sup.of("lifeline_error").is_empty(), "{}", sup.dump());
}

#[test]
fn workers_get_the_fd_limit_supervise_started_with() {
    let fork = unique("limits");
    let _guard = ProgramGuard(fork.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = dir.path().join("alerts.jsonl");
    let config = format!(
        r#"
[program.{fork}]
command = ["{forker}", "--hold", "1"]
[alert]
exec = ["{sink}", "{alerts}", "--hang"]
on = ["started"]
"#,
        forker = example("forker"),
        sink = example("alert_sink"),
        alerts = alerts.display(),
    );
    let sup = with_fd_limit(&config, 64, 4096);
    let worker = pid_of(&sup.wait_event("started", Duration::from_secs(10)));
    let grandchild = forker_grandchild(&sup, &fork);
    // The alert command's own child (same limits as the command).
    let mut alert_child = None;
    wait_until(Duration::from_secs(10), || {
        alert_child = fs::read_to_string(&alerts).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("grandchild ")?.trim().parse::<i32>().ok())
        });
        alert_child.is_some()
    });
    let alert_child = alert_child.unwrap_or_else(|| panic!("no alert command\n{}", sup.dump()));
    let lifeline = lifeline_of(sup.pid()).expect("the lifeline");
    let limits = [
        ("supervise", fd_limits_of(sup.pid())),
        ("lifeline", fd_limits_of(lifeline)),
        ("worker", fd_limits_of(worker)),
        ("grandchild", fd_limits_of(grandchild)),
        ("alert command", fd_limits_of(alert_child)),
    ];
    // SAFETY: kill(2) on the alert command's `sleep`, which this test's sink started.
    unsafe { libc::kill(alert_child, libc::SIGKILL) };
    sup.signal(libc::SIGKILL);
    assert_eq!(
        limits,
        [
            ("supervise", Some((4096, 4096))),
            ("lifeline", Some((4096, 4096))),
            ("worker", Some((64, 4096))),
            ("grandchild", Some((64, 4096))),
            ("alert command", Some((64, 4096))),
        ],
        "{}",
        sup.dump()
    );
}

#[test]
fn a_lifeline_that_dies_is_reported_once() {
    let crash = unique("lost");
    let _guard = ProgramGuard(crash.clone());
    let config = format!(
        r#"
[program.{crash}]
command = ["{crasher}", "--after", "50"]
restart = "always"
backoff = {{ first = "10ms" }}
intensity = {{ max = 1000, within = "1h" }}
"#,
        crasher = example("crasher"),
    );
    let sup = Sup::with_config(&config);
    sup.wait_event("started", Duration::from_secs(10));
    let lifeline = lifeline_of(sup.pid()).expect("the lifeline");
    // SAFETY: kill(2) on the supervisor's lifeline, a process of this test's run.
    unsafe { libc::kill(lifeline, libc::SIGKILL) };
    let error = sup.wait_event("lifeline_error", Duration::from_secs(10));
    assert_eq!(error["program"], "supervise", "{error}");
    assert!(
        error["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{error}"
    );
    // Every restart from now on is a member the lifeline cannot be told of: still one report.
    let n = sup.of("started").len();
    sup.wait_nth(n + 10, Duration::from_secs(20), "10 more starts", |e| {
        e["event"] == "started"
    });
    assert_eq!(sup.of("lifeline_error").len(), 1, "{}", sup.dump());
    let stderr = fs::read_to_string(sup.path("stderr")).unwrap_or_default();
    assert_eq!(
        stderr.lines().filter(|l| l.contains("lifeline")).count(),
        1,
        "{stderr}"
    );
}

/// Resident memory of a process, KiB (`VmRSS`).
fn rss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_lifeline_is_a_small_program_of_its_own() {
    let name = unique("small");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::start(&["--name", &name, "--", "sleep", "100"]);
    sup.wait_event("started", Duration::from_secs(10));
    let lifeline = lifeline_of(sup.pid()).expect("a lifeline");
    let exe = fs::read_link(format!("/proc/{lifeline}/exe")).expect("its program");
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("supervise-lifeline"),
        "{}",
        exe.display()
    );
    assert_eq!(
        exe.parent(),
        std::path::Path::new(common::supervise_bin()).parent(),
        "found beside supervise"
    );
    // It maps nothing of supervise: a fraction of the supervisor's resident memory.
    let (own, sup_rss) = (rss_kib(lifeline), rss_kib(sup.pid()));
    assert!(
        own > 0 && own * 2 < sup_rss,
        "lifeline {own} KiB, supervisor {sup_rss} KiB"
    );
    assert!(
        !sup.stderr().contains("supervise-lifeline"),
        "{}",
        sup.stderr()
    );
}

/// Without `supervise-lifeline` beside it, supervise runs its own binary as the lifeline, and
/// says so.
#[test]
fn without_its_program_the_lifeline_is_supervise_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alone = dir.path().join("supervise");
    if fs::hard_link(common::supervise_bin(), &alone).is_err() {
        fs::copy(common::supervise_bin(), &alone).expect("copy supervise");
    }
    let stderr = dir.path().join("stderr");
    let mut child = std::process::Command::new(&alone)
        .arg("--admin")
        .arg(dir.path().join("ctl.sock"))
        .args(["--", "sleep", "100"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn supervise");
    let pid = i32::try_from(child.id()).expect("pid");
    let lifeline = lifeline_of(pid);
    let exe = lifeline.and_then(|l| fs::read_link(format!("/proc/{l}/exe")).ok());
    let said = wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&stderr).is_ok_and(|s| s.contains("no supervise-lifeline beside"))
    });
    // SAFETY: kill(2) on our own child, which then stops its worker.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(
        exe.as_deref(),
        Some(alone.as_path()),
        "the lifeline runs supervise"
    );
    assert!(said, "{}", fs::read_to_string(&stderr).unwrap_or_default());
}
