//! Bad configs fail before anything is spawned, naming file, line and key, with exit code 2.

mod common;

use common::supervise_bin;

fn fails_with(config: &str, expect: &str) {
    let (path, stderr) = common::refused(config);
    let want = format!("{path}:{expect}");
    assert!(stderr.contains(&want), "expected {want:?} in {stderr:?}");
}

#[test]
fn unknown_key() {
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nreplica = 2\n",
        "3: program.a.replica: unknown field",
    );
}

#[test]
fn bad_size() {
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\n\n[program.a.memory]\nmax = \"64 MegaBytes\"\n",
        "5: program.a.memory.max: invalid size",
    );
}

#[test]
fn bad_duration() {
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nstop = { grace = \"soon\" }\n",
        "3: program.a.stop.grace: invalid duration",
    );
}

#[test]
fn missing_command() {
    fails_with(
        "[program.ok]\ncommand = [\"touch\", \"MARKER\"]\n[program.a]\nreplicas = 1\n",
        "3: program.a.command: missing",
    );
}

#[test]
fn zero_replicas() {
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nreplicas = 0\n",
        "3: program.a.replicas:",
    );
}

#[test]
fn unreadable_file() {
    let out = std::process::Command::new(supervise_bin())
        .args(["-c", "/nonexistent/supervise.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/supervise.toml: cannot read config"));
}

#[test]
fn replicas_beyond_the_bound() {
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nreplicas = 100000\n",
        "3: program.a.replicas: must be between 1 and 10000, got 100000",
    );
}

#[test]
fn replicas_beyond_the_open_files_limit() {
    // 30 one-process instances need about 436 open files in the supervisor (with what clients and a
    // notify datagram may hold): more than 256.
    let (path, stderr) = common::refused_with(
        "[program.small]\ncommand = [\"touch\", \"MARKER\"]\n\
         [program.big]\ncommand = [\"touch\", \"MARKER\"]\nreplicas = 29\n",
        |cmd| common::fd_limit(cmd, 256, 256),
    );
    let want = format!("{path}:3: program.big.replicas: 30 instances need about 436 open files");
    assert!(stderr.contains(&want), "expected {want:?} in {stderr:?}");
    assert!(stderr.contains("limit of 256"), "{stderr}");
    // Single-command mode: the flag is named, and nothing runs either.
    let mut cmd = std::process::Command::new(supervise_bin());
    cmd.args(["--replicas", "30", "--", "true"]);
    common::fd_limit(&mut cmd, 256, 256);
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--replicas: 30 instances need about 436 open files"),
        "{stderr}"
    );
}
