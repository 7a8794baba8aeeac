//! `leaver`: a command that leaves a process behind, as a careless check does
//! (`sh -c 'sleep 1000 & exit 1'`), without the races of a shell one-liner.
//!
//! The process (the root) forks a child. Without `--double-fork` that child is the sleeper;
//! with it, the child forks the sleeper and exits at once, so the sleeper is reparented to the
//! nearest subreaper (a supervisor). With `--setsid`, the sleeper calls setsid() first, leaving
//! the root's process group and session. The sleeper records itself (an empty file
//! `sleeper.<pid>` in the `--record` directory), tells the root through a pipe, and sleeps
//! forever. Only then does the root record itself (`root.<pid>`), and exit with `--exit`
//! (default 1) `--exit-after` milliseconds later (default 0), or, with `--stay`, sleep forever.
//! With `--clear-env`, the sleeper first executes itself again with an empty environment (so
//! nothing it inherited, a mark included, is left in /proc/PID/environ), then records itself.
//!
//! So once `root.<pid>` is there, its sleeper exists and is recorded. Any failure to set the
//! processes up is reported on stderr with exit code 3.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::thread;
use std::time::Duration;

use clap::Parser;

/// Forks a sleeper that outlives it, then exits.
#[derive(Parser, Debug)]
#[command(name = "leaver", version)]
struct Args {
    /// Where each process records itself (`root.<pid>`, `sleeper.<pid>`).
    #[arg(long, value_name = "DIR")]
    record: PathBuf,

    /// The sleeper calls setsid() first, leaving the process group and session.
    #[arg(long)]
    setsid: bool,

    /// The sleeper is forked by a child that exits at once, so it is reparented.
    #[arg(long)]
    double_fork: bool,

    /// The root sleeps forever instead of exiting.
    #[arg(long, conflicts_with_all = ["exit", "exit_after"])]
    stay: bool,

    /// The root's exit code.
    #[arg(long, value_name = "CODE", default_value_t = 1)]
    exit: u8,

    /// The root exits this many milliseconds after it recorded itself.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    exit_after: u64,

    /// The sleeper executes itself again with an empty environment.
    #[arg(long)]
    clear_env: bool,

    /// (Internal) Be the sleeper: record, write a byte to this fd, sleep.
    #[arg(long, value_name = "FD", hide = true)]
    sleeper_telling: Option<i32>,
}

fn fail(what: &str, err: io::Error) -> ! {
    let _ = writeln!(io::stderr(), "leaver: {what}: {err}");
    process::exit(3);
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// Creates the empty file `ROLE.<pid>` in `dir`.
fn record(dir: &Path, role: &str) -> io::Result<()> {
    File::create(dir.join(format!("{role}.{}", process::id()))).map(drop)
}

/// A pipe as (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two c_ints, which is what pipe2 fills in.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks: the child's pid, or 0 in the child.
fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: fork has no memory-safety preconditions of its own. This process is
    // single-threaded (no thread was ever spawned, and clap spawns none), so no lock another
    // thread held is left locked in the child, which may therefore run ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

fn main() {
    let args = Args::parse();
    if let Some(fd) = args.sleeper_telling {
        // SAFETY: the fd was left open for this process by its previous image, and nothing
        // else here owns it.
        sleep_after_telling(&args, unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let (read_end, write_end) = pipe().unwrap_or_else(|e| fail("pipe", e));
    let child = fork().unwrap_or_else(|e| fail("fork", e));
    if child == 0 {
        drop(read_end);
        if !args.double_fork {
            sleeper(&args, write_end);
        }
        if fork().unwrap_or_else(|e| fail("fork (sleeper)", e)) == 0 {
            sleeper(&args, write_end);
        }
        // SAFETY: _exit ends this copy of the root at once, without the root's exit handlers.
        unsafe { libc::_exit(0) }
    }
    drop(write_end);
    if args.double_fork {
        let mut status = 0;
        // SAFETY: waitpid on our own child, into a c_int we own.
        unsafe { libc::waitpid(child, &mut status, 0) };
    }
    let mut byte = [0u8; 1];
    if let Err(e) = File::from(read_end).read_exact(&mut byte) {
        fail("waiting for the sleeper", e);
    }
    if let Err(e) = record(&args.record, "root") {
        fail("recording the root", e);
    }
    if args.stay {
        sleep_forever();
    }
    thread::sleep(Duration::from_millis(args.exit_after));
    process::exit(i32::from(args.exit));
}

/// Leaves the group (with `--setsid`), records itself, tells the root, sleeps forever.
fn sleeper(args: &Args, tell: OwnedFd) -> ! {
    // SAFETY: setsid has no memory-safety preconditions; this fresh process leads no group,
    // so it cannot fail with EPERM.
    if args.setsid && unsafe { libc::setsid() } == -1 {
        fail("setsid", io::Error::last_os_error());
    }
    if args.clear_env {
        let fd = tell.as_raw_fd();
        // SAFETY: F_SETFD on an fd we own: it stays open across the exec below.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            fail("keeping the pipe open", io::Error::last_os_error());
        }
        let e = Command::new("/proc/self/exe")
            .arg0("leaver")
            .arg("--record")
            .arg(&args.record)
            .arg("--sleeper-telling")
            .arg(fd.to_string())
            .env_clear()
            .exec();
        fail("executing itself", e);
    }
    sleep_after_telling(args, tell)
}

/// Records itself as the sleeper, tells the root, sleeps forever.
fn sleep_after_telling(args: &Args, tell: OwnedFd) -> ! {
    if let Err(e) = record(&args.record, "sleeper") {
        fail("recording the sleeper", e);
    }
    // The root may be gone already (killed): the sleeper lingers regardless.
    let _ = File::from(tell).write_all(b"x");
    sleep_forever()
}
