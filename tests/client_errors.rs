//! What a new user trips on, said plainly: a client that cannot reach the control socket names
//! its path; a command whose reader goes away (`| head`) ends quietly instead of panicking; a
//! memory limit written without a unit that would mean a few bytes is refused, with the unit it
//! probably meant.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    example, is_root, nobody, refused, supervise_bin, unique, wait_until, ProgramGuard, Sup,
};

/// Runs `supervise ARGS` with its stdout a pipe whose reading end is already closed, as
/// `supervise … | head` is once `head` has had its lines.
fn into_closed_pipe(args: &[&std::ffi::OsStr]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(supervise_bin())
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run supervise")
}

fn quiet_success(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
}

#[test]
fn commands_writing_to_a_closed_pipe_end_quietly() {
    for shell in ["zsh", "bash", "fish"] {
        let out = into_closed_pipe(&["completions".as_ref(), shell.as_ref()]);
        quiet_success(&out, &format!("completions {shell}"));
    }
    quiet_success(&into_closed_pipe(&["man".as_ref()]), "man");

    let name = unique("pipe");
    let _g = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\"]\nreplicas = 3\n",
        example("leaky")
    ));
    sup.wait_socket(Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(20), || sup
        .of("started")
        .len()
        == 3));
    let socket = sup.socket();
    let admin = |rest: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--admin".as_ref(), socket.as_os_str()];
        args.extend(rest.iter().map(std::ffi::OsStr::new));
        into_closed_pipe(&args)
    };
    quiet_success(&admin(&["status"]), "status");
    quiet_success(&admin(&["status", "--json"]), "status --json");
    quiet_success(&admin(&["status", "--wide"]), "status --wide");
    quiet_success(&admin(&["logs", &name, "-n", "100"]), "logs");
    quiet_success(&admin(&["signal", &name, "WINCH"]), "signal");
}

#[test]
fn a_client_that_cannot_reach_the_control_socket_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/dir/ctl.sock");
    let out = Command::new(supervise_bin())
        .arg("--admin")
        .arg(&missing)
        .arg("status")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    // Not allowed to: the socket of a supervisor run by someone else (root's, in a directory
    // only root may enter), as contrib's /run/supervise.sock is for other users.
    if !is_root() {
        eprintln!(
            "SKIPPED the permission half of this test: it needs root to run a client as nobody"
        );
        return;
    }
    let name = unique("perm");
    let _g = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\"]\n",
        example("leaky")
    ));
    sup.wait_socket(Duration::from_secs(20));
    let socket = sup.socket();
    let (uid, gid) = nobody();
    let out = std::os::unix::process::CommandExt::gid(
        std::os::unix::process::CommandExt::uid(
            Command::new(supervise_bin())
                .arg("--admin")
                .arg(&socket)
                .arg("status"),
            uid,
        ),
        gid,
    )
    .output()
    .expect("run as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: Permission denied", socket.display())),
        "{stderr}"
    );
}

#[test]
fn a_memory_limit_without_a_unit_that_means_bytes_is_refused() {
    for max in ["512", "\"512\""] {
        let (path, stderr) = refused(&format!(
            "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nmemory = {{ max = {max} }}\n"
        ));
        assert!(stderr.contains(&path), "{stderr}");
        assert!(stderr.contains("program.a.memory.max"), "{stderr}");
        assert!(stderr.contains("\"512MiB\""), "{stderr}");
    }
    let out = Command::new(supervise_bin())
        .args(["--memory-max", "512", "--", "true"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"512MiB\""), "{stderr}");
}
