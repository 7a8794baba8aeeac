//! supervise as a container's entrypoint, in tini's and dumb-init's place: their own test cases
//! where they apply (tini's test/run_inner_tests.py, dumb-init's tests/*.py), run through a
//! shim that starts `supervise --restart never --quiet -- CMD` where they start `tini CMD` or
//! `dumb-init CMD`. Real processes throughout; a terminal is a pty opened here (as dumb-init's
//! `pty.fork()`) or util-linux's `script`. docs/lifecycle.md ("A transparent entrypoint") lists
//! the cases left out or changed, and why.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{alive, example, proc_state, sigcount_log, supervise_bin, wait_until};

const LONG: Duration = Duration::from_secs(20);

/// `supervise` in tini's place: it never restarts, says nothing of its own, and has a control
/// socket in `dir`.
fn shim(dir: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(supervise_bin());
    c.args(["--restart", "never", "--quiet", "--admin"])
        .arg(dir.join("ctl.sock"))
        .args(extra)
        .arg("--")
        .args(cmd);
    c
}

/// Waits for `child` to exit, killing it past `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let mut status = None;
    let ok = wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
        panic!("supervise did not exit within {limit:?}");
    }
    status.expect("status")
}

/// The shell's view of an exit: the code, or 128+signal.
fn shell_code(s: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    s.code()
        .or_else(|| s.signal().map(|n| 128 + n))
        .unwrap_or(-1)
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process of this test's.
    unsafe { libc::kill(pid, sig) };
}

fn pid(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pid")
}

/// The pids of `pid`'s descendants, from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(dir) = fs::read_dir("/proc") else {
            break;
        };
        for e in dir.flatten() {
            let Some(q) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let parent = fs::read_to_string(format!("/proc/{q}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                });
            if parent == Some(p) {
                all.push(q);
                todo.push(q);
            }
        }
    }
    all
}

/// Whether a descendant of `pid` runs `comm`.
fn runs(pid: i32, comm: &str) -> bool {
    descendants(pid)
        .into_iter()
        .any(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// The sigcount process started under `sup` (it writes its ready line to stdout, a file here).
fn sigcount_pid(out: &Path) -> i32 {
    let mut pid = None;
    assert!(
        wait_until(LONG, || {
            pid = fs::read_to_string(out).ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("sigcount ready pid="))
                    .and_then(|p| p.trim().parse().ok())
            });
            pid.is_some()
        }),
        "sigcount never got ready: {:?}",
        fs::read_to_string(out)
    );
    pid.expect("pid")
}

// ---- A terminal: dumb-init's tests/tty_test.py, and the issue's own check.

/// A pty pair: the master, and the path of the slave.
fn pty() -> (OwnedFd, PathBuf) {
    // SAFETY: posix_openpt(3) returns a new fd or -1.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(
        master >= 0,
        "posix_openpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the fd was just opened and is owned here alone.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt, unlockpt and ptsname_r on the master fd, into a buffer of its length.
    unsafe {
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    (master, PathBuf::from(path.to_string_lossy().into_owned()))
}

/// dumb-init's `ttyflags`: no output processing, no echo, so what is read is what was written.
fn raw_output(fd: &OwnedFd) {
    // SAFETY: tcgetattr/tcsetattr on an open pty fd, with a termios of ours.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t.c_oflag &= !libc::OPOST;
        t.c_lflag &= !libc::ECHO;
        assert_eq!(libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
}

/// Starts `cmd` as `pty.fork()` does: in a new session whose controlling terminal is the pty's
/// slave, which is its stdin, stdout and stderr.
fn on_terminal(mut cmd: Command, slave: &Path) -> Child {
    let tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(slave)
        .expect("open the pty's slave");
    cmd.stdin(tty.try_clone().expect("dup"))
        .stdout(tty.try_clone().expect("dup"))
        .stderr(tty);
    // SAFETY: setsid(2) and ioctl(TIOCSCTTY) are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn on the terminal")
}

/// Everything the master reads until the slave's last holder is gone (EIO).
fn read_all(master: OwnedFd) -> String {
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn under_script_the_program_has_the_terminal_on_all_three_fds_and_no_prefix() {
    // The check, as written: `supervise -- python3 -c …` under `script`.
    let out = Command::new("script")
        .args(["-qfc"])
        .arg(format!(
            "{} -- python3 -c 'import os,sys; print([os.isatty(f) for f in (0,1,2)])'",
            supervise_bin()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_end_matches('\r') == "[True, True, True]"),
        "{text}"
    );
    // Without a terminal it is not one; the output still passes, unprefixed.
    let out = Command::new(supervise_bin())
        .args(["--quiet", "--"])
        .args([
            "python3",
            "-c",
            "import os; print([os.isatty(f) for f in (0,1,2)])",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[False, False, False]\n"
    );
}

#[test]
fn tty_tac_reads_the_terminal_and_logs_says_why_it_keeps_nothing() {
    // dumb-init's test_tty: `dumb-init tac` on a pty: 1 2 3 in, 3 2 1 out.
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, slave) = pty();
    raw_output(&master);
    let mut sup = on_terminal(shim(dir.path(), &["--name", "tac"], &["tac"]), &slave);
    let socket = dir.path().join("ctl.sock");
    assert!(wait_until(LONG, || socket.exists()), "no control socket");
    // Its output is the terminal's, not supervise's: `logs` says so.
    let logs = Command::new(supervise_bin())
        .arg("--admin")
        .arg(&socket)
        .args(["logs", "tac"])
        .output()
        .expect("logs");
    let said = String::from_utf8_lossy(&logs.stderr);
    assert!(logs.status.success(), "{said}");
    assert!(
        said.contains("tac: its stdout and stderr are supervise's terminal"),
        "{said}"
    );
    let mut w = fs::File::from(master.try_clone().expect("dup"));
    w.write_all(b"1\n2\n3\n").expect("write");
    // EOF twice, as dumb-init's test: one ends the line being read, one the input.
    w.write_all(b"\x04\x04").expect("write");
    drop(w);
    let status = exit_within(&mut sup, LONG);
    let output = read_all(master);
    assert_eq!(shell_code(status), 0, "{output:?}");
    assert_eq!(output, "3\n2\n1\n");
}

#[test]
fn ctrl_z_on_a_terminal_stops_the_program_and_supervise_and_cont_resumes_both() {
    // dumb-init's test_shell_background_support_setsid: in its own session the program would
    // never stop on TSTP (an orphaned group), so it gets STOP, and supervise stops itself.
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, slave) = pty();
    let mut sup = on_terminal(shim(dir.path(), &[], &["sleep", "60"]), &slave);
    let sp = pid(&sup);
    let mut worker = None;
    assert!(wait_until(LONG, || {
        worker = descendants(sp).into_iter().find(|&p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        worker.is_some()
    }));
    let worker = worker.expect("sleep");
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        kill(sp, sig);
        assert!(
            wait_until(LONG, || proc_state(sp) == Some('T')
                && proc_state(worker) == Some('T')),
            "signal {sig}: supervise {:?}, program {:?}",
            proc_state(sp),
            proc_state(worker)
        );
        kill(sp, libc::SIGCONT);
        assert!(
            wait_until(LONG, || proc_state(sp) != Some('T')
                && proc_state(worker) != Some('T')),
            "CONT after {sig}: supervise {:?}, program {:?}",
            proc_state(sp),
            proc_state(worker)
        );
    }
    kill(sp, libc::SIGTERM);
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 128 + libc::SIGTERM);
    drop(master);
}

// ---- Output and input without a terminal.

#[test]
fn without_a_terminal_stdin_passes_and_output_goes_through_supervise_unprefixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = shim(
        dir.path(),
        &["--name", "pass"],
        &["sh", "-c", "cat; echo to-stderr >&2; sleep 30"],
    );
    let mut sup = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = sup.stdin.take().expect("stdin");
    stdin.write_all(b"from stdin\n").expect("write");
    drop(stdin);
    let socket = dir.path().join("ctl.sock");
    // `logs` keeps the lines (they went through supervise), with the program's name.
    let mut kept = String::new();
    assert!(
        wait_until(LONG, || {
            let out = Command::new(supervise_bin())
                .arg("--admin")
                .arg(&socket)
                .args(["logs", "pass"])
                .output()
                .expect("logs");
            kept = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            kept.contains("pass[0] from stdin") && kept.contains("pass[0] to-stderr")
        }),
        "{kept}"
    );
    kill(pid(&sup), libc::SIGTERM);
    let out = sup.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    // With --prefix, as a supervisor forwards.
    let out = shim(dir.path(), &["--name", "pre", "--prefix"], &["echo", "hi"])
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pre[0] hi\n");
}

// ---- Exit statuses: tini's exit code test, dumb-init's exit_status_test.py.

#[test]
fn every_exit_code_passes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    for code in 0..=255 {
        let status = shim(dir.path(), &[], &["sh", "-c", &format!("exit {code}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("supervise");
        assert_eq!(status.code(), Some(code), "sh -c 'exit {code}'");
    }
}

#[test]
fn a_program_killed_by_a_signal_gives_128_plus_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGKILL] {
        let status = shim(
            dir.path(),
            &[],
            &[
                "python3",
                "-c",
                &format!(
                    "import os, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); \
                     os.kill(os.getpid(), {sig})"
                ),
            ],
        )
        .stdin(Stdio::null())
        .status()
        .expect("supervise");
        assert_eq!(status.code(), Some(128 + sig), "killed by {sig}");
    }
}

#[test]
fn replicas_stopped_by_term_exit_143_as_one_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    for replicas in ["1", "2"] {
        let mut sup = shim(dir.path(), &["--replicas", replicas], &["sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        let sp = pid(&sup);
        let want = replicas.parse::<usize>().expect("n");
        assert!(wait_until(LONG, || descendants(sp)
            .iter()
            .filter(|&&p| fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "sleep"))
            .count()
            == want));
        kill(sp, libc::SIGTERM);
        assert_eq!(
            shell_code(exit_within(&mut sup, LONG)),
            143,
            "{replicas} replicas"
        );
    }
}

// ---- Signals: tini's signals and process group tests, dumb-init's proxies_signals_test.py and
// shell_background_test.py (without setsid).

#[test]
fn term_usr1_and_usr2_reach_the_program_and_its_status_is_ours() {
    // tini's test/signals/test.py: default actions, then `sleep 100` through os.system.
    let dir = tempfile::tempdir().expect("tempdir");
    for sig in [libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2] {
        let mut sup = shim(
            dir.path(),
            &[],
            &[
                "python3",
                "-c",
                "import os, signal\n\
                 for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):\n    \
                 signal.signal(s, signal.SIG_DFL)\n\
                 os.system('sleep 100')",
            ],
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
        let sp = pid(&sup);
        assert!(wait_until(LONG, || runs(sp, "sleep")));
        kill(sp, sig);
        assert_eq!(shell_code(exit_within(&mut sup, LONG)), 128 + sig, "{sig}");
    }
}

#[test]
fn a_signal_reaches_the_whole_process_group() {
    // tini's test/pgroup: the program ignores USR1, its child does not; USR1 to supervise ends
    // the child, so the program's wait returns and it exits.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sup = shim(
        dir.path(),
        &[],
        &[
            "python3",
            "-c",
            "import signal, subprocess\n\
             signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n\
             subprocess.Popen(['sleep', '1000'], \
             preexec_fn=lambda: signal.signal(signal.SIGUSR1, signal.SIG_DFL)).wait()",
        ],
    )
    .stdin(Stdio::null())
    .spawn()
    .expect("spawn");
    let sp = pid(&sup);
    assert!(wait_until(LONG, || runs(sp, "sleep")));
    kill(sp, libc::SIGUSR1);
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 0);
}

#[test]
fn every_other_signal_is_proxied() {
    // dumb-init's test_proxies_signals, with sigcount recording what it gets: every signal
    // from 1 to 31 but KILL, STOP and CHLD (which no one can forward), TERM, INT and QUIT
    // (supervise's stop signals: the last, and below), the faults (supervise's own crash) and
    // PIPE (sigcount ignores it: below).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("signals.log");
    let out = dir.path().join("stdout");
    let mut sup = shim(
        dir.path(),
        &[],
        &[&example("sigcount"), "--log", log.to_str().expect("utf-8")],
    )
    .stdin(Stdio::null())
    .stdout(fs::File::create(&out).expect("stdout"))
    .spawn()
    .expect("spawn");
    let sp = pid(&sup);
    let program = sigcount_pid(&out);
    let sent = [
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGALRM, "ALRM"),
        (libc::SIGSTKFLT, "STKFLT"),
        (libc::SIGCONT, "CONT"),
        (libc::SIGTSTP, "TSTP"),
        (libc::SIGTTIN, "TTIN"),
        (libc::SIGTTOU, "TTOU"),
        (libc::SIGURG, "URG"),
        (libc::SIGXCPU, "XCPU"),
        (libc::SIGXFSZ, "XFSZ"),
        (libc::SIGVTALRM, "VTALRM"),
        (libc::SIGPROF, "PROF"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGIO, "IO"),
        (libc::SIGPWR, "PWR"),
        (libc::SIGSYS, "SYS"),
    ];
    for (n, (sig, name)) in sent.iter().enumerate() {
        kill(sp, *sig);
        assert!(
            wait_until(LONG, || sigcount_log(&log).len() > n),
            "{name} never arrived: {:?}",
            sigcount_log(&log)
        );
        let got = sigcount_log(&log);
        assert_eq!(got[n], (program, "root".to_owned(), (*name).to_owned()));
        // Without a terminal TSTP, TTIN and TTOU pass as they are: supervise keeps running.
        assert_ne!(proc_state(sp), Some('T'));
    }
    kill(sp, libc::SIGTERM);
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 128 + libc::SIGTERM);
}

#[test]
fn pipe_is_forwarded_like_the_others() {
    // A program that leaves PIPE at its default action dies of it (sigcount, a Rust program,
    // ignores it: std does so at start).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sup = shim(dir.path(), &[], &["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let sp = pid(&sup);
    assert!(wait_until(LONG, || runs(sp, "sleep")));
    kill(sp, libc::SIGPIPE);
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 128 + libc::SIGPIPE);
}

#[test]
fn term_is_forwarded_once_and_a_second_stop_signal_kills() {
    // dumb-init forwards every TERM; supervise forwards the first stop signal and kills on the
    // second (docs/lifecycle.md).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("signals.log");
    let out = dir.path().join("stdout");
    let mut sup = shim(
        dir.path(),
        &[],
        &[
            &example("sigcount"),
            "--log",
            log.to_str().expect("utf-8"),
            "--ignore-stop",
        ],
    )
    .stdin(Stdio::null())
    .stdout(fs::File::create(&out).expect("stdout"))
    .spawn()
    .expect("spawn");
    let sp = pid(&sup);
    let program = sigcount_pid(&out);
    kill(sp, libc::SIGTERM);
    assert!(wait_until(LONG, || sigcount_log(&log).len() == 1));
    kill(sp, libc::SIGQUIT);
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 128 + libc::SIGKILL);
    assert_eq!(
        sigcount_log(&log),
        vec![(program, "root".to_owned(), "TERM".to_owned())]
    );
}

// ---- Processes: dumb-init's child_processes_test.py, tini's reaping and pdeathsig tests.

#[test]
fn term_ends_every_process_of_the_program() {
    // dumb-init's test_setsid_signals_entire_group: a pipeline in the background and one in
    // the foreground.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sup = shim(
        dir.path(),
        &[],
        &["sh", "-c", "yes 'oh, hi' | tail & yes error | tail >&2"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let sp = pid(&sup);
    let mut pids = Vec::new();
    assert!(wait_until(LONG, || {
        pids = descendants(sp)
            .into_iter()
            .filter(|&p| {
                fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| matches!(c.trim(), "yes" | "tail"))
            })
            .collect();
        pids.len() == 4
    }));
    kill(sp, libc::SIGTERM);
    exit_within(&mut sup, LONG);
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} still alive");
}

#[test]
fn what_the_program_leaves_behind_gets_term() {
    // dumb-init's test_all_processes_receive_term_on_exit_if_setsid.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("signals.log");
    let mut sup = shim(
        dir.path(),
        &[],
        &[
            "sh",
            "-c",
            &format!(
                "{} --log {} --linger 0 & sleep 1",
                example("sigcount"),
                log.display()
            ),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .spawn()
    .expect("spawn");
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 0);
    let got = sigcount_log(&log);
    assert!(got.iter().any(|(_, _, s)| s == "TERM"), "{got:?}");
}

#[test]
fn orphans_are_reaped() {
    // tini's reaping test: a child leaves processes that exit; none stays a zombie.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sup = shim(
        dir.path(),
        &[],
        &["sh", "-c", "sh -c 'sleep 0.2 & sleep 0.2 &'; sleep 3"],
    )
    .stdin(Stdio::null())
    .spawn()
    .expect("spawn");
    let sp = pid(&sup);
    // The orphans came to supervise (a subreaper) and exited by now: none is left unreaped.
    std::thread::sleep(Duration::from_millis(1500));
    let zombies: Vec<i32> = descendants(sp)
        .into_iter()
        .filter(|&p| proc_state(p) == Some('Z'))
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
    assert_eq!(shell_code(exit_within(&mut sup, LONG)), 0);
}

#[test]
fn the_program_dies_with_a_killed_supervise() {
    // tini's pdeathsignal test: the program kills its supervisor. tini sends the signal `-p`
    // names; supervise's is always KILL (and its lifeline's: processes that left the tree die
    // too).
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let mut sup = shim(
        dir.path(),
        &[],
        &[
            "sh",
            "-c",
            &format!(
                "echo $$ > {}; kill -KILL $PPID; sleep 30",
                pidfile.display()
            ),
        ],
    )
    .stdin(Stdio::null())
    .spawn()
    .expect("spawn");
    let status = exit_within(&mut sup, LONG);
    assert_eq!(shell_code(status), 128 + libc::SIGKILL);
    let program: i32 = fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_until(LONG, || !alive(program)),
        "{program} outlived supervise"
    );
}

#[test]
fn signals_ignored_or_blocked_by_the_parent_stay_so_but_the_stop_signals() {
    // tini's sigconf test: the parent ignores TTOU, SEGV and INT and blocks TTIN, ILL and TERM
    // before it execs supervise; the program keeps each as it was, but for INT and TERM:
    // supervise stops on them whatever it inherited, so its program must be able to get them.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = shim(dir.path(), &[], &["cat", "/proc/self/status"]);
    // SAFETY: signal(2) and sigprocmask(2) on a set built on the stack: async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for s in [libc::SIGTTOU, libc::SIGSEGV, libc::SIGINT] {
                libc::signal(s, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGTTIN, libc::SIGILL, libc::SIGTERM] {
                libc::sigaddset(&mut set, s);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().expect("supervise");
    let text = String::from_utf8_lossy(&out.stdout);
    let mask = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    let has = |m: u64, sig: i32| m & (1 << (sig - 1)) != 0;
    let (ignored, blocked) = (mask("SigIgn:"), mask("SigBlk:"));
    assert!(
        has(ignored, libc::SIGTTOU) && has(ignored, libc::SIGSEGV),
        "{text}"
    );
    assert!(
        has(blocked, libc::SIGTTIN) && has(blocked, libc::SIGILL),
        "{text}"
    );
    assert!(
        !has(ignored, libc::SIGINT) && !has(blocked, libc::SIGTERM),
        "{text}"
    );
}

// ---- Starting: dumb-init's test_fails_nonzero_with_bad_exec and cwd_test.py.

#[test]
fn a_program_that_cannot_run_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(supervise_bin())
        .args(["--restart", "never", "--admin"])
        .arg(dir.path().join("ctl.sock"))
        .args(["--", "/doesnotexist"])
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("\"/doesnotexist\": No such file or directory"),
        "{err}"
    );
}

#[test]
fn the_program_starts_where_supervise_was_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = shim(dir.path(), &[], &["sh", "-c", "readlink /proc/$$/cwd"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    let want = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want.to_string_lossy()
    );
}
