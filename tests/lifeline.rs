//! The lifeline under pressure: the raised fd limit stays the supervisor's own (workers get the
//! one it started with).

mod common;

use std::fs;
use std::time::Duration;

use common::{
    example, fd_limit, fd_limits_of, forker_grandchild, lifeline_of, pid_of, unique, wait_until,
    ProgramGuard, Sup,
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
