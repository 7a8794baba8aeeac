//! Test harness: runs the real `supervise` binary against the example workers, reads its events
//! file, and polls with deadlines (never bare sleeps). Each run has its own temp dir; a guard kills
//! a supervisor that outlives its test.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MIB: u64 = 1 << 20;

/// Path of the `supervise` binary cargo built for these tests.
pub fn supervise_bin() -> &'static str {
    env!("CARGO_BIN_EXE_supervise")
}

/// Path of an example worker (`cargo test` builds the examples next to the test binaries).
pub fn example(name: &str) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Resident memory of one process, bytes.
pub fn rss(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Every process whose environment says it belongs to `name` (SUPERVISE_NAME), i.e. every
/// descendant of a worker of that program, wherever it was reparented.
pub fn pids_of_program(name: &str) -> Vec<i32> {
    let needle = format!("SUPERVISE_NAME={name}");
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(env) = fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// A unique program name for one test, so tests running side by side never see each other's
/// processes.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running supervisor under test.
pub struct Sup {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    status: Option<ExitStatus>,
    /// The program started by [`run_example`]: what is left of it is killed once the
    /// supervisor is gone (the caller's guard is dropped before this, being bound after it).
    program: Option<String>,
}

impl Sup {
    /// Starts `supervise ARGS` with `--events` in a fresh temp dir; stdout and stderr go to files
    /// there.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, |_, _| {})
    }

    /// Like [`Sup::start`], letting the caller adjust the command (stdio, env) first.
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command, &Path)) -> Self {
        Self::launch(true, args, adjust)
    }

    /// Like [`Sup::start_with`] without `--events`: what supervise says on its own.
    pub fn without_events(args: &[&str], adjust: impl FnOnce(&mut Command, &Path)) -> Self {
        Self::launch(false, args, adjust)
    }

    fn launch(events_flag: bool, args: &[&str], adjust: impl FnOnce(&mut Command, &Path)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("events.jsonl");
        let mut cmd = Command::new(supervise_bin());
        if events_flag {
            cmd.arg("--events").arg(&events);
        }
        cmd.args(args);
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        adjust(&mut cmd, dir.path());
        let child = cmd.spawn().expect("spawn supervise");
        Self {
            child,
            dir,
            events,
            status: None,
            program: None,
        }
    }

    /// Starts `supervise -c` on `config`, written into the run's temp dir, with its control
    /// socket at [`Sup::socket`].
    pub fn with_config(config: &str) -> Self {
        Self::start_with(&[], |cmd, dir| {
            let path = dir.join("supervise.toml");
            fs::write(&path, config).expect("config");
            cmd.arg("--admin")
                .arg(dir.join("ctl.sock"))
                .arg("-c")
                .arg(path);
        })
    }

    /// The control socket of a run started with [`Sup::with_config`].
    pub fn socket(&self) -> PathBuf {
        self.path("ctl.sock")
    }

    /// Waits until the control socket is there, so the supervisor is up and answering.
    pub fn wait_socket(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || self.socket().exists()),
            "no control socket\n{}",
            self.dump()
        );
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// All events written so far (a partly written last line is left for later).
    pub fn events(&self) -> Vec<Value> {
        let text = read_regular(&self.events);
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Events of one kind.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Waits for the `n`th (1-based) event matching `pred`; panics with the whole log on timeout.
    pub fn wait_nth(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut found = None;
        let mut gone = false;
        wait_until(timeout, || {
            // Looked at before the events: once it has exited, no event can come any more.
            gone = !alive(self.pid());
            found = self.events().into_iter().filter(|e| pred(e)).nth(n - 1);
            found.is_some() || gone
        });
        let Some(found) = found else {
            let why = if gone {
                "supervise exited"
            } else {
                "timed out"
            };
            panic!("{why} waiting for {what} (#{n})\n{}", self.dump());
        };
        found
    }

    /// Waits until the supervisor's stdout holds `n` lines containing `needle`.
    pub fn wait_stdout(&self, needle: &str, n: usize, timeout: Duration) {
        let count = || {
            fs::read_to_string(self.path("stdout"))
                .map_or(0, |s| s.lines().filter(|l| l.contains(needle)).count())
        };
        let mut gone = false;
        wait_until(timeout, || {
            gone = !alive(self.pid());
            count() >= n || gone
        });
        if count() < n {
            let why = if gone {
                "supervise exited"
            } else {
                "timed out"
            };
            panic!(
                "{why} waiting for {n} stdout lines with {needle:?}\n{}",
                self.dump()
            );
        }
    }

    /// Waits for the first event of `kind`.
    pub fn wait_event(&self, kind: &str, timeout: Duration) -> Value {
        self.wait_nth(1, timeout, kind, |e| e["event"] == kind)
    }

    /// What supervise wrote on its stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Events, stdout and stderr, for failure messages.
    pub fn dump(&self) -> String {
        let read = |n: &str| read_regular(&self.path(n));
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- events\n{}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            tail(read("events.jsonl")),
            tail(read("stdout")),
            tail(read("stderr"))
        )
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the supervisor to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let mut status = None;
        let ok = wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(
            ok,
            "supervise did not exit within {timeout:?}\n{}",
            self.dump()
        );
        self.status = status;
        status.expect("status")
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            if !wait_until(Duration::from_secs(5), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            }) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // A supervisor that outlived its test may have started processes after the guard ran.
        if let Some(name) = self.program.take() {
            wait_until(Duration::from_secs(2), || {
                drop(ProgramGuard(name.clone()));
                pids_of_program(&name).is_empty()
            });
        }
    }
}

/// The text of a regular file, or nothing: a path that leads to a device (`/dev/full`, which
/// some tests put where a file is expected) is never read, as it would never end.
fn read_regular(path: &Path) -> String {
    if fs::metadata(path).is_ok_and(|m| m.is_file()) {
        fs::read_to_string(path).unwrap_or_default()
    } else {
        String::new()
    }
}

/// The pid of an event as an i32.
pub fn pid_of(e: &Value) -> i32 {
    e["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .expect("event has a pid")
}

/// Kills whatever processes of `program` are left (cleanup after a failed assertion).
pub struct ProgramGuard(pub String);

impl Drop for ProgramGuard {
    fn drop(&mut self) {
        for pid in pids_of_program(&self.0) {
            // SAFETY: kill(2); these processes belong to this test's program.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Runs `supervise --name NAME FLAGS -- EXAMPLE ARGS` under a program name unique to this test.
/// The guard kills whatever is left of the program when the test ends, pass or fail.
pub fn run_example(
    prefix: &str,
    flags: &[&str],
    example_name: &str,
    args: &[&str],
) -> (Sup, String, ProgramGuard) {
    run_example_in(prefix, flags, example_name, args, |_| {})
}

/// An idle `leaky` worker (`--rate 0`) under a supervise serving its metrics on `bind`; returns
/// the address it listens on, from its `listening` event.
pub fn idle_with_metrics(prefix: &str, bind: &str) -> (Sup, String, ProgramGuard) {
    let name = unique(prefix);
    let guard = ProgramGuard(name.clone());
    let leaky = example("leaky");
    let sup = Sup::start(&[
        "--metrics",
        bind,
        "--name",
        &name,
        "--",
        &leaky,
        "--rate",
        "0",
    ]);
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    (sup, addr, guard)
}

/// Like [`run_example`], after `prepare` has had the run's dir (to put files where the flags
/// point, before supervise starts).
pub fn run_example_in(
    prefix: &str,
    flags: &[&str],
    example_name: &str,
    args: &[&str],
    prepare: impl FnOnce(&Path),
) -> (Sup, String, ProgramGuard) {
    run_named(prefix, example_name, |cmd, dir, name, program| {
        prepare(dir);
        cmd.args(["--name", name])
            .args(flags)
            .arg("--")
            .arg(program)
            .args(args);
    })
}

/// Like [`run_example`], with the control socket at [`Sup::socket`], and core dumps off (see
/// [`no_core_dumps`]) for tests whose signals may dump core. An argument of the worker that
/// starts with `@/` names a file in the run's temp dir (`@/sig.log` is `Sup::path("sig.log")`).
pub fn run_example_ctl(
    prefix: &str,
    flags: &[&str],
    example_name: &str,
    args: &[&str],
) -> (Sup, String, ProgramGuard) {
    run_named(prefix, example_name, |cmd, dir, name, program| {
        no_core_dumps(cmd);
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--name", name])
            .args(flags)
            .arg("--")
            .arg(program)
            .args(args.iter().map(|a| match a.strip_prefix("@/") {
                Some(file) => dir.join(file).into_os_string(),
                None => a.into(),
            }));
    })
}

/// Starts a supervisor of an example under a program name unique to this test; `build` adds
/// the arguments, given the run's dir, the name and the example's path.
fn run_named(
    prefix: &str,
    example_name: &str,
    build: impl FnOnce(&mut Command, &Path, &str, &str),
) -> (Sup, String, ProgramGuard) {
    let name = unique(prefix);
    let guard = ProgramGuard(name.clone());
    let program = example(example_name);
    let mut sup = Sup::start_with(&[], |cmd, dir| build(cmd, dir, &name, &program));
    sup.program = Some(name.clone());
    (sup, name, guard)
}

/// Starts `cmd` with RLIMIT_CORE 0, which its children inherit: a supervisor or worker killed by
/// QUIT, ABRT, SYS, XCPU or XFSZ leaves no core file in the working directory.
pub fn no_core_dumps(cmd: &mut Command) {
    rlimit(cmd, libc::RLIMIT_CORE, 0, 0);
}

/// Starts `cmd` with the limit `resource` at `soft`/`hard`, which its children inherit
/// (lowering needs no privilege; raising a hard limit needs CAP_SYS_RESOURCE).
pub fn rlimit(cmd: &mut Command, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls setrlimit, a plain system call (async-signal-safe), on a
    // local value.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource, &lim) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `cmd` with `RLIMIT_NOFILE` at `soft`/`hard`.
pub fn fd_limit(cmd: &mut Command, soft: u64, hard: u64) {
    rlimit(cmd, libc::RLIMIT_NOFILE, soft, hard);
}

/// This process's `RLIMIT_NOFILE` as (soft, hard).
pub fn open_files() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}

/// The one-letter state of a process (`R`, `S`, `T`, `Z`, ...), if it exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The status an `exited` event describes, as a shell reports it: the code, or 128+signal.
pub fn shell_status(exited: &Value) -> Option<i32> {
    let n = |k: &str| exited[k].as_i64().and_then(|v| i32::try_from(v).ok());
    n("code").or_else(|| n("signal").map(|s| 128 + s))
}

/// The lines of a `sigcount --log` file: (pid, role, signal name).
pub fn sigcount_log(path: &Path) -> Vec<(i32, String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let pid = f.next()?.parse().ok()?;
            Some((pid, f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

/// How many times `pid` recorded `signal` (a sigcount name: `TERM`, `RTMIN+3`) in `path`.
pub fn times_received(path: &Path, pid: i32, signal: &str) -> usize {
    sigcount_log(path)
        .iter()
        .filter(|(p, _, s)| *p == pid && s == signal)
        .count()
}

/// Runs `supervise --admin SOCKET ARGS` (a control-socket client): success, and stdout on
/// success or stderr on failure.
pub fn ctl(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(supervise_bin())
        .arg("--admin")
        .arg(socket)
        .args(args)
        .output()
        .expect("run client");
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    })
    .into_owned();
    (out.status.success(), text)
}

/// Runs `supervise --admin SOCKET ARGS`: the exit code, stdout and stderr.
pub fn ctl_output(socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(supervise_bin())
        .arg("--admin")
        .arg(socket)
        .args(args)
        .output()
        .expect("run client");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `supervise status --json` against `socket`: one object per worker instance (the last line,
/// the supervisor's own, left out; see [`supervisor_json`]).
pub fn status_json(socket: &Path) -> Vec<Value> {
    let (ok, text) = ctl(socket, &["status", "--json"]);
    assert!(ok, "status failed: {text}");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|v| v.get("supervisor").is_none())
        .collect()
}

/// The `supervisor` object of `supervise status --json` against `socket`.
pub fn supervisor_json(socket: &Path) -> Value {
    let (ok, text) = ctl(socket, &["status", "--json"]);
    assert!(ok, "status failed: {text}");
    let last = text.lines().last().expect("a supervisor line");
    let mut v: Value = serde_json::from_str(last).expect("json line");
    v["supervisor"].take()
}

/// Runs `supervise -c` on `config`, which must be refused before anything is spawned: checks
/// exit code 2 and that no program ran (a `MARKER` in the config becomes a file that a spawned
/// `touch` would create), and returns the config's path as the messages name it, and stderr.
pub fn refused(config: &str) -> (String, String) {
    refused_with(config, |_| {})
}

/// Like [`refused`], letting the caller adjust the command first (limits, environment).
pub fn refused_with(config: &str, adjust: impl FnOnce(&mut Command)) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let marker = dir.path().join("ran");
    let config = config.replace("MARKER", marker.to_str().expect("utf-8"));
    fs::write(&path, config).expect("write");
    let mut cmd = Command::new(supervise_bin());
    cmd.arg("-c").arg(&path);
    adjust(&mut cmd);
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!marker.exists(), "something was spawned");
    (path.display().to_string(), stderr)
}

/// The soft and hard `Max open files` of a process, from /proc/PID/limits.
pub fn fd_limits_of(pid: i32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// The supervisor's lifeline (`supervise __lifeline`, a child of `sup`), once it is there.
pub fn lifeline_of(sup: i32) -> Option<i32> {
    let mut found = None;
    wait_until(Duration::from_secs(5), || {
        found = fs::read_dir(format!("/proc/{sup}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .collect::<Vec<_>>()
            })
            .find(|c| {
                fs::read(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|b| b.split(|&x| x == 0).any(|a| a == b"__lifeline"))
            });
        found.is_some()
    });
    found
}

/// How many fds `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The pids `pid` holds a pidfd for (the `Pid:` line of each fd's fdinfo).
pub fn pidfds_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(link) = fs::read_link(format!(
            "/proc/{pid}/fd/{}",
            e.file_name().to_string_lossy()
        )) else {
            continue;
        };
        if !link.to_string_lossy().contains("pidfd") {
            continue;
        }
        if let Ok(info) = fs::read_to_string(e.path()) {
            out.extend(
                info.lines()
                    .find_map(|l| l.strip_prefix("Pid:"))
                    .and_then(|p| p.trim().parse::<i32>().ok()),
            );
        }
    }
    out
}

/// The grandchild's pid from a `forker` run's output (its `forker worker ... grandchild=<pid>`
/// line, after `name[i] ` from a config or replicas, as written from one instance of a single
/// command), once the worker has printed it.
pub fn forker_grandchild(sup: &Sup, name: &str) -> i32 {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = fs::read_to_string(sup.path("stdout")).ok().and_then(|s| {
            s.lines()
                .filter(|l| l.starts_with(&format!("{name}[")) || l.starts_with("forker "))
                .find_map(|l| l.split_once("grandchild=")?.1.trim().parse().ok())
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no grandchild line for {name}\n{}", sup.dump()))
}

pub mod browser;
pub mod peers;

/// Whether the tests run as root (switching users needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// nobody's uid and gid.
pub fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .expect("user database")
        .expect("a user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// A temp dir owned by nobody (root only): nobody writes its files there.
pub fn nobodys_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (uid, gid) = nobody();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    dir
}

/// `path`, or a copy of it in `dir` when some directory on the way keeps other users out (a
/// build dir under a private home), so that nobody can run it.
pub fn runnable_by_others(path: &Path, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let open =
        |p: &Path, bits: u32| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & bits == bits);
    let reachable = path.ancestors().skip(1).all(|d| open(d, 0o001)) && open(path, 0o005);
    if reachable {
        return path.to_owned();
    }
    let copy = dir.join(path.file_name().expect("a file"));
    fs::copy(path, &copy).expect("copy");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}
