//! Reloads (`supervise reload`, SIGHUP) that fail keep the running config, are answered at once
//! with the reason on the client's stderr (exit 1), and are said by supervise itself; what the
//! new config names (a FIFO, a device) cannot hold the supervisor up.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{ctl_output, example, status_json, unique, wait_until, ProgramGuard, Sup};

/// A config of one idle worker program `name` with `extra` keys.
fn config(name: &str, extra: &str) -> String {
    format!(
        "[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\"]\n{extra}",
        example("leaky")
    )
}

/// `supervise reload` against `sup`: exit code and stderr, and how long it took.
fn reload(sup: &Sup) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let (code, _, err) = ctl_output(&sup.socket(), &["reload"]);
    (code, err, t.elapsed())
}

/// Lines of supervise's stderr saying a reload failed.
fn failures_said(sup: &Sup) -> Vec<String> {
    sup.stderr()
        .lines()
        .filter(|l| l.contains("reload failed; keeping the running config"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_reload_naming_a_fifo_or_a_device_is_refused_at_once_and_the_old_config_runs_on() {
    let name = unique("rlfifo");
    let _guard = ProgramGuard(name.clone());
    let mut sup = Sup::with_config(&config(&name, ""));
    let started = sup.wait_event("started", Duration::from_secs(10));
    sup.wait_socket(Duration::from_secs(5));
    let path = sup.path("supervise.toml");
    let fifo = sup.path("app.env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");

    // An env file that is a FIFO with no writer.
    fs::write(&path, config(&name, "env_file = \"app.env\"\n")).expect("config");
    let (code, err, took) = reload(&sup);
    assert_eq!(code, Some(1), "{err}\n{}", sup.dump());
    assert!(
        err.contains("supervise: reload failed, the running config is kept: ")
            && err.contains("program.")
            && err.contains("env_file: ")
            && err.contains("app.env: the env file is a FIFO (named pipe), not a regular file"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // The engine goes on: status answers, the worker was not touched.
    let workers = status_json(&sup.socket());
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["pid"], started["pid"]);
    // And by SIGHUP: said on supervise's stderr, which the client's failure was too.
    sup.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || failures_said(&sup).len() >= 2),
        "{}",
        sup.dump()
    );
    for line in failures_said(&sup) {
        assert!(line.contains("the env file is a FIFO"), "{line}");
    }

    // The config itself a device that never ends, or a FIFO.
    fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    let (code, err, _) = reload(&sup);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the config is a character device, not a regular file"),
        "{err}"
    );
    fs::remove_file(&path).expect("rm");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let (code, err, _) = reload(&sup);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the config is a FIFO"), "{err}");

    // Put right, a reload applies again.
    fs::remove_file(&path).expect("rm");
    fs::write(&path, config(&name, "replicas = 2\n")).expect("config");
    let (code, err, _) = reload(&sup);
    assert_eq!(code, Some(0), "{err}");
    sup.wait_nth(2, Duration::from_secs(10), "the second instance", |e| {
        e["event"] == "started"
    });
    assert_eq!(status_json(&sup.socket()).len(), 2);

    // TERM still stops it, within seconds.
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
}

#[test]
fn a_failed_reload_is_said_by_the_client_and_by_supervise() {
    let name = unique("rlbad");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&config(&name, ""));
    sup.wait_event("started", Duration::from_secs(10));
    sup.wait_socket(Duration::from_secs(5));
    let path = sup.path("supervise.toml");
    fs::write(&path, config(&name, "replicas = 0\n")).expect("config");
    let (code, err, _) = reload(&sup);
    assert_eq!(code, Some(1), "{err}");
    let why = format!(
        "{}:3: program.{name}.replicas: must be between 1 and",
        path.display()
    );
    assert!(
        err.starts_with("supervise: reload failed, the running config is kept: ")
            && err.contains(&why),
        "{err}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || failures_said(&sup)
            .iter()
            .any(|l| l.contains(&why))),
        "{}",
        sup.dump()
    );
    assert_eq!(status_json(&sup.socket()).len(), 1);
}
