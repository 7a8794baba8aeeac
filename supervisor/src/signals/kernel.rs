//! The signal system calls themselves, for what glibc's wrappers will not do: its `sigaddset`,
//! `sigaction` refuse signals 32 and 33 (SIGCANCEL and SIGSETXID, which it keeps for itself), and
//! its `sigprocmask` and `pthread_sigmask` quietly leave them out of any mask they set.
//!
//! Linux's generic signal ABI: 64 signals, so a kernel signal set is one `u64` (bit N-1 for
//! signal N), and a `struct sigaction` that starts with the handler. x86, Arm, RISC-V,
//! PowerPC, s390x and LoongArch all have it; MIPS and SPARC do not.

#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
compile_error!("signals/kernel.rs speaks Linux's generic signal ABI, which MIPS and SPARC lack");

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A signal set as the kernel takes it: bit N-1 for signal N.
pub type Set = u64;

/// The set of these signals (numbers from 1 to 64; others are left out).
pub fn set_of(signals: impl IntoIterator<Item = i32>) -> Set {
    signals
        .into_iter()
        .filter(|n| (1..=64).contains(n))
        .fold(0, |set, n| set | 1 << (n - 1))
}

/// rt_sigprocmask(2) on the calling thread: `how` is `SIG_BLOCK`, `SIG_UNBLOCK` or
/// `SIG_SETMASK`; returns the mask the thread had. One system call, async-signal-safe.
pub fn sigprocmask(how: libc::c_int, set: Set) -> io::Result<Set> {
    let mut old: Set = 0;
    // SAFETY: rt_sigprocmask reads one kernel set of the size given from a local and writes the
    // old one into another local of the same size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            std::ptr::from_ref(&set),
            std::ptr::from_mut(&mut old),
            std::mem::size_of::<Set>(),
        )
    };
    if r == 0 {
        Ok(old)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's `struct sigaction` in the generic layout, as far as a handler-less action needs
/// it: the handler first, then zeroes (flags, restorer where the architecture has one, mask).
#[repr(C)]
struct Action {
    handler: libc::sighandler_t,
    /// Pointer-sized words, so there is no padding to leave uninitialised on 32-bit machines;
    /// enough of them for the largest layout.
    rest: [libc::c_ulong; 4],
}

/// rt_sigaction(2) setting `SIG_IGN` or `SIG_DFL` for `sig` (no handler code, so no restorer is
/// needed). One system call, async-signal-safe.
pub fn set_action(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    debug_assert!(handler == libc::SIG_IGN || handler == libc::SIG_DFL);
    let action = Action {
        handler,
        rest: [0; 4],
    };
    // SAFETY: rt_sigaction reads the action from a local at least as large as the kernel's
    // struct, with a null old-action pointer and the kernel's set size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            std::ptr::from_ref(&action),
            std::ptr::null_mut::<Action>(),
            std::mem::size_of::<Set>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The handler `sig` has now (`SIG_DFL`, `SIG_IGN` or a function), from rt_sigaction(2) with no
/// new action. One system call, async-signal-safe.
pub fn handler_of(sig: i32) -> io::Result<libc::sighandler_t> {
    let mut old = Action {
        handler: libc::SIG_DFL,
        rest: [0; 4],
    };
    // SAFETY: rt_sigaction with a null new action writes the old one into a local at least as
    // large as the kernel's struct, given the kernel's set size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            std::ptr::null::<Action>(),
            std::ptr::from_mut(&mut old),
            std::mem::size_of::<Set>(),
        )
    };
    if r == 0 {
        Ok(old.handler)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A new non-blocking, close-on-exec signalfd(2) for `set`.
pub fn signalfd(set: Set) -> io::Result<OwnedFd> {
    // SAFETY: signalfd4 creates a new fd from a kernel set of the size given, read from a local,
    // or returns -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            std::ptr::from_ref(&set),
            std::mem::size_of::<Set>(),
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        )
    };
    match libc::c_int::try_from(fd) {
        Ok(fd) if fd >= 0 => {
            // SAFETY: the kernel just returned this fd; nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        assert_eq!(set_of([1]), 1);
        assert_eq!(set_of([32, 33]), 0b11 << 31);
        assert_eq!(set_of([64]), 1 << 63);
        assert_eq!(set_of([0, 65, -1]), 0);
    }

    /// In a thread of its own, so the test harness's other threads are not touched: 32 and 33
    /// can be blocked, are seen blocked in /proc, and come back unblocked.
    #[test]
    fn blocks_what_glibc_will_not() {
        std::thread::spawn(|| {
            let reserved = set_of([32, 33]);
            let before = sigprocmask(libc::SIG_BLOCK, reserved).expect("block");
            let now = sigprocmask(libc::SIG_BLOCK, 0).expect("read");
            assert_eq!(now & reserved, reserved);
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let status =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("status");
            let blk = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .map(|h| u64::from_str_radix(h.trim(), 16).expect("hex"));
            assert_eq!(blk.map(|b| b & reserved), Some(reserved));
            sigprocmask(libc::SIG_SETMASK, before).expect("restore");
            let fd = signalfd(reserved);
            assert!(fd.is_ok(), "{fd:?}");
        })
        .join()
        .expect("thread");
    }
}
