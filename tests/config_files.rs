//! What a config names cannot hold supervise up at start: a config or env file that is a FIFO, a
//! device or too large is refused at once, naming it, with exit code 2; so is a umask written as
//! a decimal integer.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{supervise_bin, wait_until};

/// Runs `supervise ARGS` in `dir`, which must exit 2 within a few seconds (it is killed if it
/// does not, and the test fails); returns its stderr.
fn refused_at_once(dir: &Path, args: &[&str]) -> String {
    let err = dir.join("stderr");
    let mut child = Command::new(supervise_bin())
        .current_dir(dir)
        .args(["--admin", "ctl.sock"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn supervise");
    let mut status = None;
    let exited = wait_until(Duration::from_secs(10), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(exited, "{args:?}: still running after 10s\n{stderr}");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{args:?}\n{stderr}");
    assert!(!dir.join("ran").exists(), "{args:?}: something was spawned");
    stderr
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn a_config_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    fifo(&dir.path().join("fifo.toml"));
    let err = refused_at_once(dir.path(), &["-c", "fifo.toml"]);
    assert!(
        err.contains("fifo.toml: the config is a FIFO (named pipe), not a regular file"),
        "{err}"
    );
    let err = refused_at_once(dir.path(), &["-c", "/dev/zero"]);
    assert!(
        err.contains("/dev/zero: the config is a character device, not a regular file"),
        "{err}"
    );
    // A sparse file, larger than any config, costing nothing on disk.
    fs::File::create(dir.path().join("big.toml"))
        .and_then(|f| f.set_len(5 << 20))
        .expect("sparse");
    let err = refused_at_once(dir.path(), &["-c", "big.toml"]);
    assert!(
        err.contains("big.toml: the config is 5.0 MiB, more than the 1.0 MiB it may be"),
        "{err}"
    );
}

#[test]
fn an_env_file_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    fifo(&dir.path().join("app.env"));
    let marker = dir.path().join("ran");
    let marker = marker.to_str().expect("utf-8");
    for (env_file, says) in [
        (
            "app.env",
            "the env file is a FIFO (named pipe), not a regular file",
        ),
        (
            "/dev/zero",
            "/dev/zero: the env file is a character device, not a regular file",
        ),
    ] {
        let config = format!(
            "[program.a]\ncommand = [\"touch\", \"{marker}\"]\nenv_file = \"{env_file}\"\n"
        );
        fs::write(dir.path().join("s.toml"), config).expect("config");
        let err = refused_at_once(dir.path(), &["-c", "s.toml"]);
        assert!(
            err.contains("s.toml:3: program.a.env_file: ") && err.contains(says),
            "{env_file}: {err}"
        );
    }
    // The flag, too.
    let err = refused_at_once(
        dir.path(),
        &["--env-file", "app.env", "--", "touch", marker],
    );
    assert!(
        err.contains("--env-file: app.env: the env file is a FIFO"),
        "{err}"
    );
    fs::File::create(dir.path().join("big.env"))
        .and_then(|f| f.set_len(2 << 20))
        .expect("sparse");
    let err = refused_at_once(
        dir.path(),
        &["--env-file", "big.env", "--", "touch", marker],
    );
    assert!(
        err.contains("big.env: the env file is 2.0 MiB, more than the 1.0 MiB it may be"),
        "{err}"
    );
}

#[test]
fn a_umask_written_as_a_decimal_integer_is_refused() {
    let (path, err) =
        common::refused("[program.a]\ncommand = [\"touch\", \"MARKER\"]\numask = 27\n");
    assert!(
        err.contains(&format!(
            "{path}:3: program.a.umask: 27 is a decimal number in TOML (0o33 as a umask); write \
             the octal digits as a string: umask = \"027\""
        )),
        "{err}"
    );
}
