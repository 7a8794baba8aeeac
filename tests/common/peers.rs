//! Real peers the tests drive (Prometheus, Alertmanager, promtool): finding them on `PATH`,
//! running them on a loopback port, and speaking plain HTTP/1.0 to them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// The path of `name` on `PATH`, if it is there and executable.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The first of `names` found on `PATH`; `None` (and a line on stderr saying what `test`
/// skips) when none is.
pub fn tool(test: &str, names: &[&str]) -> Option<PathBuf> {
    let found = names.iter().find_map(|n| which(n));
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: {} not installed (`.ci/run` installs it)",
            names.join(" or ")
        );
    }
    found
}

/// A loopback port free a moment ago (for a server that takes its port as a flag).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// A server this test started (Prometheus, Alertmanager): killed and reaped when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `bin ARGS` with its stdout and stderr in files of a fresh temp dir, passed to
    /// `args` so flags can point into it.
    pub fn start(bin: &Path, args: impl FnOnce(&Path) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args(args(dir.path()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("spawn");
        Self { child, dir }
    }

    /// Waits until `GET path` on `addr` answers 200; panics with its output if it does not
    /// within `timeout`.
    pub fn wait_ready(&mut self, addr: &str, path: &str, timeout: Duration) {
        let ok = wait_until(timeout, || {
            matches!(http(addr, "GET", path, None), Some((200, _)))
                || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let exited = matches!(self.child.try_wait(), Ok(Some(_)));
        assert!(
            ok && !exited,
            "not ready on {addr}{path}\n{}",
            self.output()
        );
    }

    /// What it wrote so far, for failure messages.
    pub fn output(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange (`body` as JSON when given): (status code, body); `None` if the
/// connection failed or the answer is not HTTP. Every step has a 5 s timeout.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(b) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    s.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8(out).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// `python3` if it is there and at least 3.9; `None`, said on stderr, otherwise.
pub fn python(test: &str) -> Option<PathBuf> {
    let py = tool(test, &["python3"])?;
    let ok = Command::new(&py)
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 9))"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED {test}: python3 is older than 3.9");
        return None;
    }
    Some(py)
}

/// A virtualenv with gunicorn, made once and kept under `~/.cache`; `None` (said) if it cannot
/// be made (no network, no venv module).
pub fn gunicorn(py: &Path, test: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let venv = home.join(".cache/supervise-tests/venv-gunicorn");
    let bin = venv.join("bin/gunicorn");
    if bin.exists() {
        return Some(bin);
    }
    let run = |cmd: &mut Command| -> bool {
        let Ok(mut child) = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
            return false;
        };
        let mut status = None;
        wait_until(Duration::from_secs(300), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status.is_some_and(|s| s.success())
    };
    let made = run(Command::new(py).arg("-m").arg("venv").arg(&venv))
        && run(
            Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "-q", "gunicorn"])
        );
    if made && bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "SKIPPED {test}: gunicorn could not be installed in {}",
            venv.display()
        );
        None
    }
}
