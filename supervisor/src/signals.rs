//! Signals by number, realtime ones included, and what the supervisor does with each one it
//! receives.
//!
//! `nix::sys::signal::Signal` knows only the 31 classic signals; a stop signal may be any signal
//! Linux has, `RTMIN+N` included (systemd's `KillSignal=` accepts them too), so signals are plain
//! numbers here, checked once when parsed.
//!
//! The supervisor's own signals ([`Disposition`]): TERM, INT and QUIT stop everything (a second
//! one kills), HUP reloads (or is forwarded in single-command mode), and every other catchable
//! signal is forwarded to the workers, so none of them can terminate or suspend the supervisor.
//! Faults (SEGV, BUS, FPE, ILL, TRAP, ABRT) keep their default action: they are the supervisor's
//! own crash, not a request; CHLD is the reaper's; KILL and STOP cannot be caught.
//!
//! Signals 32 and 33 are handled like the rest, although glibc keeps them for itself
//! (SIGCANCEL for `pthread_cancel`, SIGSETXID for `setuid` and friends in a threaded process),
//! refuses them in `sigaction` and `sigaddset`, and leaves them out of every mask its
//! `sigprocmask` and `pthread_sigmask` set. It installs its handlers only on first use, so until
//! then their action is the default, which kills: `kill -32` once ended supervise at once
//! (exit 160). supervise never cancels a thread and changes credentials only in a forked child
//! before `exec`, so neither of glibc's uses is lost. Through the system calls themselves
//! (`signals/kernel.rs`), 32 and 33 are:
//! - blocked in every thread and read from the signalfd with the others. The main thread blocks
//!   them in [`block`] before any other thread starts, but after glibc's first `pthread_create`,
//!   which unblocks them in its caller; each later `pthread_create` gives the new thread its
//!   creator's mask less 32, so every thread supervise starts blocks them again as its first
//!   act ([`spawn_thread`], [`block_in_thread`]);
//! - ignored (`SIG_IGN`, in place of the SIGSETXID handler glibc installs with its first thread),
//!   so that one sent in the instant between a new thread's start and its first act is lost
//!   rather than fatal. An ignored signal stays ignored across `exec`, so a child gets the
//!   default action back before it execs ([`restore_in_child`]).
//!
//! Had supervise itself called `setuid` while threaded, glibc's SIGSETXID round between its
//! threads would wait forever on threads that block it: it must not (nothing does).

use std::fmt;

mod kernel;

/// A signal number, valid on this system (1 to `SIGRTMAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(i32);

/// The classic signals and their names, as `kill -l` spells them (without `SIG`).
const NAMES: [(i32, &str); 31] = [
    (libc::SIGHUP, "HUP"),
    (libc::SIGINT, "INT"),
    (libc::SIGQUIT, "QUIT"),
    (libc::SIGILL, "ILL"),
    (libc::SIGTRAP, "TRAP"),
    (libc::SIGABRT, "ABRT"),
    (libc::SIGBUS, "BUS"),
    (libc::SIGFPE, "FPE"),
    (libc::SIGKILL, "KILL"),
    (libc::SIGUSR1, "USR1"),
    (libc::SIGSEGV, "SEGV"),
    (libc::SIGUSR2, "USR2"),
    (libc::SIGPIPE, "PIPE"),
    (libc::SIGALRM, "ALRM"),
    (libc::SIGTERM, "TERM"),
    (libc::SIGSTKFLT, "STKFLT"),
    (libc::SIGCHLD, "CHLD"),
    (libc::SIGCONT, "CONT"),
    (libc::SIGSTOP, "STOP"),
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

/// Other spellings accepted on input.
const ALIASES: [(&str, i32); 3] = [
    ("IOT", libc::SIGABRT),
    ("POLL", libc::SIGIO),
    ("CLD", libc::SIGCHLD),
];

fn rtmin() -> i32 {
    libc::SIGRTMIN()
}

fn rtmax() -> i32 {
    libc::SIGRTMAX()
}

impl Sig {
    pub const HUP: Sig = Sig(libc::SIGHUP);
    pub const INT: Sig = Sig(libc::SIGINT);
    pub const QUIT: Sig = Sig(libc::SIGQUIT);
    pub const ABRT: Sig = Sig(libc::SIGABRT);
    pub const KILL: Sig = Sig(libc::SIGKILL);
    pub const TERM: Sig = Sig(libc::SIGTERM);

    /// The signal numbered `n`, if this system has it.
    #[must_use]
    pub fn from_raw(n: i32) -> Option<Sig> {
        (1..=rtmax()).contains(&n).then_some(Sig(n))
    }

    #[must_use]
    pub fn raw(self) -> i32 {
        self.0
    }

    /// Parses `TERM`, `SIGTERM`, `term`, `15`, `RTMIN`, `RTMIN+3`, `SIGRTMAX-1`.
    pub fn parse(s: &str) -> Result<Sig, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "unknown signal {s:?}; use a name (TERM, INT, QUIT, HUP, USR1, RTMIN+3), or a number from 1 to {}",
                rtmax()
            )
        };
        if let Ok(n) = t.parse::<i32>() {
            return Sig::from_raw(n).ok_or_else(bad);
        }
        let upper = t.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(&(n, _)) = NAMES.iter().find(|(_, m)| *m == name) {
            return Ok(Sig(n));
        }
        if let Some(&(_, n)) = ALIASES.iter().find(|(m, _)| *m == name) {
            return Ok(Sig(n));
        }
        let realtime = |base: i32, rest: &str| -> Option<i32> {
            if rest.is_empty() {
                return Some(base);
            }
            let (sign, digits) = rest.split_at(1);
            let k: i32 = digits.parse().ok().filter(|_| digits.len() <= 3)?;
            match sign {
                "+" => Some(base + k),
                "-" => Some(base - k),
                _ => None,
            }
        };
        let n = if let Some(rest) = name.strip_prefix("RTMIN") {
            realtime(rtmin(), rest)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            realtime(rtmax(), rest)
        } else {
            None
        };
        n.filter(|n| (rtmin()..=rtmax()).contains(n))
            .map(Sig)
            .ok_or_else(bad)
    }

    /// The name without `SIG`: `TERM`, `RTMIN+3`, or the number for one without a name.
    #[must_use]
    pub fn name(self) -> String {
        if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == self.0) {
            return (*n).to_owned();
        }
        let (lo, hi) = (rtmin(), rtmax());
        if self.0 == lo {
            "RTMIN".to_owned()
        } else if self.0 == hi {
            "RTMAX".to_owned()
        } else if (lo..hi).contains(&self.0) {
            format!("RTMIN+{}", self.0 - lo)
        } else {
            self.0.to_string()
        }
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// What the supervisor does with a signal it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Stop every worker gracefully and exit; a second stop signal kills.
    Stop,
    /// Reload the config (`-c`), or forward to the program in single-command mode.
    Reload,
    /// Forward to the workers.
    Forward,
}

/// Signals that keep their default action: faults in the supervisor itself, the reaper's CHLD,
/// and the two that cannot be caught.
///
/// SIGPIPE is forwarded like the rest, as tini and dumb-init do: one sent to supervise (by
/// `kill`) is meant for the program. One a write of supervise's own brings on (a closed pipe or
/// socket: the kernel sends it to the writing thread, as if by itself) is dropped unread in
/// [`Intake::recv`], and the write fails with `EPIPE` as it did while SIGPIPE was ignored.
const NOT_HANDLED: [i32; 9] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGCHLD,
    libc::SIGKILL,
    libc::SIGSTOP,
];

/// What the supervisor does with `sig`, or `None` for the signals it leaves alone.
#[must_use]
pub fn disposition(sig: Sig) -> Option<Disposition> {
    match sig.0 {
        n if NOT_HANDLED.contains(&n) => None,
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => Some(Disposition::Stop),
        libc::SIGHUP => Some(Disposition::Reload),
        _ => Some(Disposition::Forward),
    }
}

/// What a signal forwarded to a worker becomes, and whether supervise then stops itself.
///
/// A worker that was handed supervise's terminal runs in a session of its own (see
/// `spawn::stdio`), where its process group is orphaned: the kernel discards the terminal's
/// stop signals (TSTP, TTIN, TTOU) sent to it while their action is the default (POSIX, "orphaned
/// process group"), so Ctrl-Z would stop nothing. They become STOP for it, as dumb-init rewrites
/// them in its setsid mode, and supervise then stops itself too, so that the shell that started
/// it gets the terminal back; `fg` continues supervise, which forwards the CONT. Any other
/// signal, and every signal to a worker in supervise's session, is passed on as it is.
#[must_use]
pub fn for_worker(sig: Sig, own_session: bool) -> (Sig, bool) {
    match sig.0 {
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU if own_session => (Sig(libc::SIGSTOP), true),
        _ => (sig, false),
    }
}

/// Stops supervise (SIGSTOP to itself): the shell's job control sees it stopped and takes the
/// terminal back; a CONT continues it.
pub fn suspend_self() {
    // SAFETY: raise(3) with a valid signal number; STOP stops every thread until a CONT.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Every signal the supervisor takes over.
pub fn handled() -> impl Iterator<Item = Sig> {
    (1..=rtmax()).map(Sig).filter(|&s| disposition(s).is_some())
}

/// The set of every handled signal, as the kernel takes it (glibc's would leave out 32 and 33).
fn handled_set() -> kernel::Set {
    kernel::set_of(handled().map(Sig::raw))
}

/// The signals glibc keeps for itself: SIGCANCEL and SIGSETXID (see the module's doc).
const RESERVED: [i32; 2] = [32, 33];

/// The signal mask the supervisor started with (less the stop signals), restored in every child
/// it starts.
static ORIGINAL_MASK: std::sync::OnceLock<kernel::Set> = std::sync::OnceLock::new();

/// The signals supervise stops on (TERM, INT, QUIT) whatever it inherited: blocked or ignored
/// by its parent, they still reach it through the signalfd, so its workers must be able to
/// receive them as well. A shell starts a background job with INT and QUIT ignored, so
/// `supervise … &` in a script would otherwise hand that on, and a forwarded Ctrl-C would run
/// out the grace into SIGKILL instead of stopping anything.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];

/// Which of [`STOP_SIGNALS`] supervise inherited ignored (bit i for `STOP_SIGNALS[i]`): a child
/// gets their default action back before it `exec`s.
static IGNORED_STOPS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Blocks every handled signal in the calling thread (and so in every thread spawned after, but
/// for 32: see [`spawn_thread`]), remembering the mask it had, and which stop signals it
/// inherited ignored; ignores 32 and 33 (see the module's doc). Call before any other thread
/// starts.
pub fn block() -> std::io::Result<()> {
    // glibc's first `pthread_create` in a process unblocks 32 and 33 in the thread that calls it
    // and installs its own SIGSETXID handler (`late_init` in nptl/pthread_create.c): have that
    // happen now, with a thread that does nothing, so that what is set below stays.
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| ())?
        .join()
        .map_err(|_| std::io::Error::other("a thread that does nothing panicked"))?;
    let mut ignored = 0u8;
    for (i, &sig) in STOP_SIGNALS.iter().enumerate() {
        // SAFETY: sigaction only reads the disposition into a zeroed struct we own.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a valid signal number, no new action, a valid pointer for the old one.
        let r = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if r == 0 && old.sa_sigaction == libc::SIG_IGN {
            ignored |= 1 << i;
        }
    }
    IGNORED_STOPS.store(ignored, std::sync::atomic::Ordering::Relaxed);
    // Blocked first: a 32 or 33 sent between the two steps then waits in the queue, where
    // setting SIG_IGN would not drop it (the kernel keeps a blocked signal, whatever its action).
    let old = kernel::sigprocmask(libc::SIG_BLOCK, handled_set())?;
    for sig in RESERVED {
        kernel::set_action(sig, libc::SIG_IGN)?;
    }
    let _ = ORIGINAL_MASK.set(old & !kernel::set_of(STOP_SIGNALS));
    Ok(())
}

/// Blocks 32 and 33 in the calling thread, which glibc's `pthread_create` does not hand down
/// (see the module's doc); every other handled signal a thread inherits blocked. For threads
/// started other than by [`spawn_thread`] (a runtime's `on_thread_start`).
pub fn block_in_thread() {
    // Cannot fail: a valid `how` and the kernel's own set size.
    let _ = kernel::sigprocmask(libc::SIG_BLOCK, kernel::set_of(RESERVED));
}

/// Starts a thread of the supervisor's that blocks 32 and 33 before it runs `f`: without that,
/// the kernel could pick it to take one of them, which would then be lost instead of forwarded.
pub fn spawn_thread<F, T>(
    builder: std::thread::Builder,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    builder.spawn(move || {
        block_in_thread();
        f()
    })
}

/// Gives a child about to `exec` the signal mask the supervisor started with (less the stop
/// signals), so a worker is not born with the supervisor's signals blocked, the default action
/// of any stop signal supervise inherited ignored, and that of 32 and 33, which supervise
/// ignores. Async-signal-safe (atomic loads and at most six syscalls): for `pre_exec`.
pub fn restore_in_child() -> std::io::Result<()> {
    let Some(mask) = ORIGINAL_MASK.get() else {
        return Ok(());
    };
    let ignored = IGNORED_STOPS.load(std::sync::atomic::Ordering::Relaxed);
    for (i, &sig) in STOP_SIGNALS.iter().enumerate() {
        if ignored & (1 << i) != 0 {
            // SAFETY: signal(2) with SIG_DFL installs no handler; async-signal-safe.
            if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    for sig in RESERVED {
        kernel::set_action(sig, libc::SIG_DFL)?;
    }
    kernel::sigprocmask(libc::SIG_SETMASK, *mask).map(|_| ())
}

/// Every signal of the calling process that has a handler gets its default action, and SIGPIPE
/// too (the Rust runtime ignores it; std's spawn gives a child its default back). For a child
/// that shares the supervisor's memory (`clone(CLONE_VM | CLONE_VFORK)`, see `spawn`), before it
/// unblocks anything: a handler of the supervisor's must never run there, on the supervisor's
/// memory. Async-signal-safe (at most 130 rt_sigaction(2) calls, no allocation).
pub fn defaults_in_vm_child() -> std::io::Result<()> {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let handler = kernel::handler_of(sig)?;
        if handler != libc::SIG_DFL && (handler != libc::SIG_IGN || sig == libc::SIGPIPE) {
            kernel::set_action(sig, libc::SIG_DFL)?;
        }
    }
    Ok(())
}

/// Blocks every signal in the calling thread; returns the mask it had. Around a
/// `clone(CLONE_VM)`, so that no handler runs in the child before it has reset them.
pub fn block_all() -> std::io::Result<u64> {
    kernel::sigprocmask(libc::SIG_SETMASK, !0)
}

/// Sets the calling thread's signal mask (as [`block_all`] returned it). Async-signal-safe.
pub fn set_mask(mask: u64) -> std::io::Result<()> {
    kernel::sigprocmask(libc::SIG_SETMASK, mask).map(|_| ())
}

/// A signal the supervisor received, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub sig: Sig,
    /// The sending process (0 for the kernel).
    pub from: i32,
    /// `si_code`: ≤ 0 when a process sent it (kill, sigqueue, tgkill), > 0 when the kernel did
    /// (a terminal's keys and resizes, a resource limit, a timer).
    pub code: i32,
}

impl Received {
    /// Whether a signal to forward is about the workers at all. One the supervisor brought on
    /// itself (sent by its own pid; XFSZ or XCPU for its own resource limits; TTIN/TTOU for its
    /// own terminal access; SYS from a seccomp filter on it) would be wrong to pass on: a
    /// worker would die of the supervisor's trouble. A terminal's signals (INT, QUIT, TSTP,
    /// WINCH, HUP, CONT) come from the kernel too, and are meant for the whole job.
    #[must_use]
    pub fn for_workers(self) -> bool {
        if self.from == i32::try_from(std::process::id()).unwrap_or(0) && self.code <= 0 {
            return false;
        }
        self.code <= 0
            || matches!(
                self.sig.0,
                libc::SIGINT
                    | libc::SIGQUIT
                    | libc::SIGTSTP
                    | libc::SIGWINCH
                    | libc::SIGHUP
                    | libc::SIGCONT
            )
    }
}

impl Received {
    /// A SIGPIPE a write of supervise's own brought on (the kernel sends it in the writer's
    /// name): the write's `EPIPE` says all there is to say.
    fn own_broken_pipe(self) -> bool {
        self.sig.0 == libc::SIGPIPE
            && self.code <= 0
            && self.from == i32::try_from(std::process::id()).unwrap_or(0)
    }
}

/// The supervisor's signals, read from a signalfd: each arrives once, in order, with its
/// sender, and none can interrupt anything.
#[derive(Debug)]
pub struct Intake {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Intake {
    /// Opens the signalfd for every handled signal ([`block`] them first).
    pub fn open() -> std::io::Result<Self> {
        let fd = kernel::signalfd(handled_set())?;
        // SAFETY: an `OwnedFd` stays open while owned and always returns the same number, as
        // `register_with_interest` requires of its inner value.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// The next signal.
    pub async fn recv(&self) -> std::io::Result<Received> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.fd.readable().await?;
            // SAFETY: signalfd_siginfo is plain data.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: read into a buffer of exactly one signalfd_siginfo, which we own.
            let n = unsafe {
                libc::read(
                    guard.get_inner().as_raw_fd(),
                    std::ptr::addr_of_mut!(info).cast(),
                    size,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    continue;
                }
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if usize::try_from(n).ok() != Some(size) {
                continue;
            }
            let Some(sig) = i32::try_from(info.ssi_signo).ok().and_then(Sig::from_raw) else {
                continue;
            };
            let got = Received {
                sig,
                from: i32::try_from(info.ssi_pid).unwrap_or(0),
                code: info.ssi_code,
            };
            if got.own_broken_pipe() {
                continue;
            }
            return Ok(got);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in 1..=rtmax() {
            let s = Sig(n);
            if (32..rtmin()).contains(&n) {
                // Named by number only (`kill -l` has no name for them).
                assert_eq!(s.name(), n.to_string());
                assert_eq!(Sig::parse(&n.to_string()), Ok(s), "{n}");
                continue;
            }
            assert_eq!(Sig::parse(&s.name()), Ok(s), "{n}");
            assert_eq!(Sig::parse(&s.to_string()), Ok(s), "{n}");
            assert_eq!(Sig::parse(&n.to_string()), Ok(s), "{n}");
        }
    }

    #[test]
    fn spellings() {
        for (text, n) in [
            ("TERM", libc::SIGTERM),
            ("sigterm", libc::SIGTERM),
            (" term ", libc::SIGTERM),
            ("15", libc::SIGTERM),
            ("IOT", libc::SIGABRT),
            ("RTMIN", rtmin()),
            ("rtmin+3", rtmin() + 3),
            ("SIGRTMAX-1", rtmax() - 1),
            ("RTMAX", rtmax()),
        ] {
            assert_eq!(Sig::parse(text), Ok(Sig(n)), "{text}");
        }
        for bad in [
            "",
            "0",
            "-1",
            "65",
            "TERMX",
            "RTMIN+99",
            "RTMAX+1",
            "RTMIN-1",
            "RTMIN*2",
            "RTMIN+",
            "RTMIN+0001",
        ] {
            assert!(Sig::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Sig(rtmin() + 3).name(), "RTMIN+3");
        assert_eq!(Sig::TERM.to_string(), "SIGTERM");
    }

    #[test]
    fn terminal_stops_become_stop_for_a_worker_in_its_own_session() {
        let stop = Sig(libc::SIGSTOP);
        // (signal, worker in a session of its own) -> (what it gets, supervise stops itself)
        let rows = [
            (libc::SIGTSTP, true, stop, true),
            (libc::SIGTTIN, true, stop, true),
            (libc::SIGTTOU, true, stop, true),
            (libc::SIGTSTP, false, Sig(libc::SIGTSTP), false),
            (libc::SIGTTIN, false, Sig(libc::SIGTTIN), false),
            (libc::SIGCONT, true, Sig(libc::SIGCONT), false),
            (libc::SIGWINCH, true, Sig(libc::SIGWINCH), false),
            (libc::SIGPIPE, true, Sig(libc::SIGPIPE), false),
            (libc::SIGUSR1, false, Sig(libc::SIGUSR1), false),
        ];
        for (n, own, to, suspend) in rows {
            assert_eq!(
                for_worker(Sig(n), own),
                (to, suspend),
                "{n} own session {own}"
            );
        }
    }

    #[test]
    fn own_broken_pipes_are_not_forwarded() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let pipe = Sig(libc::SIGPIPE);
        let got = |sig, from, code| Received { sig, from, code };
        assert!(got(pipe, me, 0).own_broken_pipe());
        // From `kill` by someone else, or from the kernel: for the workers.
        assert!(!got(pipe, me + 1, 0).own_broken_pipe());
        assert!(!got(pipe, 0, 128).own_broken_pipe());
        assert!(!got(Sig::TERM, me, 0).own_broken_pipe());
    }

    #[test]
    fn dispositions() {
        assert_eq!(disposition(Sig::TERM), Some(Disposition::Stop));
        assert_eq!(disposition(Sig::INT), Some(Disposition::Stop));
        assert_eq!(disposition(Sig::QUIT), Some(Disposition::Stop));
        assert_eq!(disposition(Sig::HUP), Some(Disposition::Reload));
        for n in [
            libc::SIGUSR1,
            libc::SIGALRM,
            libc::SIGVTALRM,
            libc::SIGPWR,
            libc::SIGSYS,
            libc::SIGXCPU,
            libc::SIGXFSZ,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGCONT,
            libc::SIGWINCH,
            libc::SIGPIPE,
            32,
            33,
            rtmin(),
            rtmax(),
        ] {
            assert_eq!(disposition(Sig(n)), Some(Disposition::Forward), "{n}");
        }
        for n in [libc::SIGSEGV, libc::SIGCHLD, libc::SIGKILL, libc::SIGSTOP] {
            assert_eq!(disposition(Sig(n)), None, "{n}");
        }
        assert!(handled().all(|s| s != Sig::KILL));
        assert_eq!(handled_set() & kernel::set_of(RESERVED), 0b11 << 31);
        assert_eq!(handled_set() & kernel::set_of(NOT_HANDLED), 0);
    }
}
