//! `sigcount`: a test worker that records every signal it receives, for exactly-once checks.
//!
//! Every process of its tree catches every signal it can (1 to SIGRTMAX, except KILL and STOP,
//! which cannot be caught, CHLD, which the root needs for its children, SEGV, BUS, FPE, ILL and
//! TRAP, which only faults raise, and PIPE) with a handler installed by sigaction with
//! SA_RESTART. The handler only writes the signal number, one byte, to the process's self-pipe
//! (async-signal-safe, never blocking: the write end is non-blocking). Signals 32 and 33, which
//! glibc keeps for itself (SIGCANCEL, SIGSETXID) and whose sigaction and sigaddset refuse them,
//! are blocked with the raw rt_sigprocmask system call and read from a signalfd instead. The
//! process's main loop reads both and appends one line per signal to the `--log` file,
//! `<pid> <role> <SIGNAME>`: role `root`, `child` or `escaped`; names without `SIG`, as `kill -l`
//! spells them (`TERM`, `USR1`, `WINCH`, `RTMIN`, `RTMIN+3`, `RTMAX-2`, `RTMAX`; `32` and `33`
//! by number). The file is opened with O_APPEND and each line is one write(2), so the processes'
//! lines never interleave.
//!
//! The root sets everything up with the handled signals blocked, so nothing arrives before the
//! process that gets it owns its pipe: it installs the handlers, forks `--children` children
//! (role `child`; they stay in its process group) and `--escaped` grandchildren by the double
//! fork, the middle process exiting at once and the grandchild calling setsid() (role
//! `escaped`: it leaves the process group and session and is reparented). Each forked process
//! inherits the handlers, makes its own self-pipe, unblocks the signals and reports through a
//! pipe. Once all have, the root prints `sigcount ready pid=<pid>` to stdout, flushed, and
//! sleeps in poll(2) on its pipe, reaping its children as they die.
//!
//! Stopping: on its first TERM, INT or QUIT each process, independently, keeps recording for
//! `--linger` milliseconds and then dies of that signal: it resets it to SIG_DFL, unblocks it and
//! raises it (with RLIMIT_CORE 0, so QUIT leaves no core file), so its wait status is "killed by
//! that signal", as for a program that does not handle it. Every other signal is only recorded.
//!
//! Flags:
//! - `--log FILE`: the file to append the lines to (created if missing; required).
//! - `--children N`: children forked into the root's process group (default 0).
//! - `--escaped N`: double-forked, setsid() grandchildren (default 0).
//! - `--linger MS`: how long a process keeps recording after its first TERM, INT or QUIT
//!   (default 500).
//! - `--ignore-stop`: TERM, INT, QUIT and HUP are only recorded, never acted on; only SIGKILL
//!   ends the process.
//!
//! If its stdout is a pipe whose reader has gone, the root exits quietly (code 0) at its ready
//! line, as `stubborn` does; any other failure to set up is reported on stderr with code 1.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

/// The write end of this process's self-pipe, for the handler. Each process stores its own
/// after fork, while the signals are still blocked.
static SELF_PIPE: AtomicI32 = AtomicI32::new(-1);

/// How often the root wakes up to reap its children when no signal comes.
const REAP_EVERY_MS: libc::c_int = 200;

/// Records every signal it receives, for exactly-once checks.
#[derive(Parser, Debug)]
#[command(name = "sigcount", version)]
struct Args {
    /// Append `<pid> <role> <SIGNAME>` lines to this file.
    #[arg(long, value_name = "FILE")]
    log: PathBuf,

    /// Children forked into the root's process group.
    #[arg(long, value_name = "N", default_value_t = 0)]
    children: u32,

    /// Grandchildren made by double fork and setsid(), outside the process group.
    #[arg(long, value_name = "N", default_value_t = 0)]
    escaped: u32,

    /// Milliseconds to keep recording after the first TERM, INT or QUIT, before dying of it.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    linger: u64,

    /// Only record TERM, INT, QUIT and HUP; never act on them.
    #[arg(long)]
    ignore_stop: bool,
}

/// Reports a failed setup step on stderr and exits with code 1.
fn fail(what: &str, err: io::Error) -> ! {
    let _ = writeln!(io::stderr(), "sigcount: {what}: {err}");
    process::exit(1);
}

/// Every signal a handler is installed for.
fn handled() -> Vec<libc::c_int> {
    let skip = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGPIPE,
    ];
    (1..=31)
        .filter(|s| !skip.contains(s))
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect()
}

/// A signal's name without `SIG`, as `kill -l` prints it.
fn name(signal: libc::c_int) -> String {
    const CLASSIC: [&str; 32] = [
        "0", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match signal {
        s if (0..32).contains(&s) => CLASSIC[s as usize].to_owned(),
        s if s == min => "RTMIN".to_owned(),
        s if s == max => "RTMAX".to_owned(),
        s if (min..max).contains(&s) && s - min <= max - s => format!("RTMIN+{}", s - min),
        s if (min..max).contains(&s) => format!("RTMAX-{}", max - s),
        s => s.to_string(),
    }
}

/// The handler: the signal number, one byte, into this process's self-pipe.
extern "C" fn record(signal: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot. It is saved and restored so the
    // interrupted code never sees the handler's write change it.
    let errno = unsafe { *libc::__errno_location() };
    // Signal numbers are 1..=64, so they fit in a byte.
    let byte = signal as u8;
    let fd = SELF_PIPE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe (signal-safety(7)); it reads one byte from a local.
    // The write end is non-blocking: should the pipe ever be full, the byte is lost rather than
    // the process deadlocked.
    unsafe { libc::write(fd, ptr::from_ref(&byte).cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The signals glibc keeps for itself (SIGCANCEL and SIGSETXID), which its sigaction refuses.
const RESERVED: [libc::c_int; 2] = [32, 33];

/// [`RESERVED`] as the kernel takes a signal set (bit N-1 for signal N; 64 signals on every
/// architecture but MIPS): glibc's sigaddset refuses them.
fn reserved_set() -> u64 {
    RESERVED.iter().fold(0, |set, &s| set | 1 << (s - 1))
}

/// Blocks [`RESERVED`] with the system call itself (glibc's sigprocmask leaves them out). The
/// process has a single thread, so the process mask is that thread's mask.
fn block_reserved() {
    let set = reserved_set();
    // SAFETY: rt_sigprocmask reads one kernel signal set of the size given from a local; a null
    // old-set pointer is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            ptr::from_ref(&set),
            ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        )
    };
    if r == -1 {
        fail("rt_sigprocmask", io::Error::last_os_error());
    }
}

/// A non-blocking signalfd for [`RESERVED`] (blocked first), reading this process's own.
fn reserved_fd() -> OwnedFd {
    let set = reserved_set();
    // SAFETY: signalfd4 creates a new fd from a kernel signal set of the size given, read from
    // a local, or returns -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            ptr::from_ref(&set),
            std::mem::size_of::<u64>(),
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        )
    };
    let Ok(fd) = libc::c_int::try_from(fd) else {
        fail("signalfd", io::Error::last_os_error());
    };
    if fd < 0 {
        fail("signalfd", io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The signal numbers queued on a non-blocking signalfd, until it has none left.
fn drain_signalfd(fd: &OwnedFd) -> Vec<libc::c_int> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data; zeroes are a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: read into one signalfd_siginfo we own, at most its size.
        let n = unsafe { libc::read(fd.as_raw_fd(), ptr::from_mut(&mut info).cast(), size) };
        if usize::try_from(n).ok() != Some(size) {
            if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return out;
        }
        out.extend(libc::c_int::try_from(info.ssi_signo).ok());
    }
}

/// A set of the given signals.
fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is then initialised by sigemptyset before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; sigaddset fails only for invalid numbers, and every
    // number given here is a real signal.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks (`libc::SIG_BLOCK`) or unblocks (`libc::SIG_UNBLOCK`) `set` for this single-threaded
/// process.
fn mask(how: libc::c_int, set: &libc::sigset_t) {
    // SAFETY: `set` is initialised; a null old-set pointer is allowed. The process has a single
    // thread, so the process mask is that thread's mask.
    if unsafe { libc::sigprocmask(how, set, ptr::null_mut()) } == -1 {
        fail("sigprocmask", io::Error::last_os_error());
    }
}

/// A pipe as (read end, write end), both close-on-exec, with extra `flags` (O_NONBLOCK).
fn pipe(flags: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two c_ints, which is what pipe2 fills in.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } == -1 {
        fail("pipe", io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open, and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// This process's own self-pipe: its write end becomes the handler's. Returns (read, write);
/// the caller keeps the write end open.
fn self_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = pipe(libc::O_NONBLOCK);
    SELF_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
    (read, write)
}

/// Installs [`record`] for every handled signal.
fn install(signals: &[libc::c_int]) {
    for &s in signals {
        // SAFETY: a zeroed sigaction is a valid starting point; sa_mask is then initialised.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and `record` is async-signal-safe; a null
        // old-action pointer is allowed.
        if unsafe { libc::sigaction(s, &action, ptr::null_mut()) } == -1 {
            fail(
                &format!("sigaction({})", name(s)),
                io::Error::last_os_error(),
            );
        }
    }
}

/// Forks. The caller must be single-threaded (see the SAFETY note at the call sites).
fn fork() -> libc::pid_t {
    let _ = io::stdout().flush();
    // SAFETY: fork has no memory-safety preconditions of its own. What makes running Rust code
    // in the child sound is that this process is single-threaded (no thread was ever spawned,
    // and clap spawns none): no other thread can hold a lock (the allocator's, stdout's) that
    // would stay locked forever in the child.
    match unsafe { libc::fork() } {
        -1 => fail("fork", io::Error::last_os_error()),
        pid => pid,
    }
}

fn main() {
    let args = Args::parse();
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&args.log)
        .unwrap_or_else(|err| fail(&format!("open {}", args.log.display()), err));
    let signals = handled();
    let set = sigset(&signals);
    // Nothing is delivered until the process that gets it has a pipe of its own.
    mask(libc::SIG_BLOCK, &set);
    // Blocked for good (every member inherits it): they are read from each one's signalfd.
    block_reserved();
    let reserved = reserved_fd();
    let (pipe_read, pipe_write) = self_pipe();
    install(&signals);
    let (ready_read, ready_write) = pipe(0);

    for _ in 0..args.children {
        if fork() == 0 {
            drop((pipe_read, pipe_write, ready_read, reserved));
            member("child", log, ready_write, &set, &args);
        }
    }
    for _ in 0..args.escaped {
        let middle = fork();
        if middle == 0 {
            drop((pipe_read, pipe_write, ready_read, reserved));
            if fork() == 0 {
                // SAFETY: setsid has no memory-safety preconditions. It cannot fail here (EPERM
                // is for process group leaders, and this fresh process is not one).
                if unsafe { libc::setsid() } == -1 {
                    fail("setsid", io::Error::last_os_error());
                }
                member("escaped", log, ready_write, &set, &args);
            }
            // SAFETY: _exit ends the middle process at once, skipping exit handlers and stdio
            // flushing, which belong to the root it was copied from.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: `status` is a valid c_int to write; `middle` is our own child.
        while unsafe { libc::waitpid(middle, &mut status, 0) } == -1 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                fail("waitpid", err);
            }
        }
    }
    // Only the members keep the write end: one that dies before reporting shows up as EOF.
    drop(ready_write);
    mask(libc::SIG_UNBLOCK, &set);
    let expected = usize::try_from(args.children + args.escaped).unwrap_or(usize::MAX);
    let mut ready = vec![0u8; expected];
    if let Err(err) = File::from(ready_read).read_exact(&mut ready) {
        fail("waiting for the children to be ready", err);
    }

    let mut out = io::stdout().lock();
    if let Err(err) =
        writeln!(out, "sigcount ready pid={}", process::id()).and_then(|()| out.flush())
    {
        if err.kind() == io::ErrorKind::BrokenPipe {
            process::exit(0);
        }
        fail("cannot write to stdout", err);
    }
    drop(out);
    serve("root", &log, &pipe_read, &reserved, &args, true);
}

/// A forked member: its own self-pipe, then the signals unblocked, then ready.
fn member(role: &str, log: File, ready_write: OwnedFd, set: &libc::sigset_t, args: &Args) -> ! {
    let (pipe_read, _pipe_write) = self_pipe();
    let reserved = reserved_fd();
    mask(libc::SIG_UNBLOCK, set);
    if let Err(err) = File::from(ready_write).write_all(&[1]) {
        fail("reporting ready", err);
    }
    serve(role, &log, &pipe_read, &reserved, args, false)
}

/// Reads the self-pipe and the signalfd and logs each signal; dies of the first stop signal
/// after the linger.
fn serve(
    role: &str,
    mut log: &File,
    pipe_read: &OwnedFd,
    reserved: &OwnedFd,
    args: &Args,
    root: bool,
) -> ! {
    let pid = process::id();
    let mut dying: Option<(Instant, libc::c_int)> = None;
    let mut buf = [0u8; 256];
    loop {
        let timeout = match dying {
            Some((at, _)) => {
                let left = at.saturating_duration_since(Instant::now());
                libc::c_int::try_from(left.as_millis() + 1).unwrap_or(libc::c_int::MAX)
            }
            None if root => REAP_EVERY_MS,
            None => -1,
        };
        let mut pfds = [pipe_read, reserved].map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two valid pollfds. EINTR (poll is never restarted) just goes round again.
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, timeout) };
        let mut got = drain_signalfd(reserved);
        loop {
            // SAFETY: read into a buffer we own, at most its length.
            let n =
                unsafe { libc::read(pipe_read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            };
            if n == 0 {
                break;
            }
            got.extend(buf[..n].iter().map(|&b| libc::c_int::from(b)));
        }
        for signal in got {
            let line = format!("{pid} {role} {}\n", name(signal));
            if let Err(err) = log.write_all(line.as_bytes()) {
                fail("writing the log", err);
            }
            let stop = matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT);
            if stop && !args.ignore_stop && dying.is_none() {
                dying = Some((Instant::now() + Duration::from_millis(args.linger), signal));
            }
        }
        if root {
            reap();
        }
        if let Some((at, signal)) = dying {
            if Instant::now() >= at {
                die_of(signal);
            }
        }
    }
}

/// Reaps every child that has ended, without waiting.
fn reap() {
    let mut status = 0;
    // SAFETY: `status` is a valid c_int to write; WNOHANG never blocks.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// Dies of `signal` as a process that does not handle it would.
fn die_of(signal: libc::c_int) -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `no_core` is a valid rlimit that setrlimit only reads; lowering a limit never
    // needs privileges, and should it fail the only effect is a possible core file.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
    mask(libc::SIG_UNBLOCK, &sigset(&[signal]));
    // SAFETY: raise has no memory-safety preconditions; with the default action unblocked, a
    // terminating signal is delivered before raise returns.
    unsafe { libc::raise(signal) };
    process::exit(128 + signal)
}
