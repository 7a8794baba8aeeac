//! Starting a worker without copying the supervisor: `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn` does. The child runs on a stack of its own in the supervisor's memory, which it
//! only reads (everything was prepared before the clone), until `execve` replaces it; the thread
//! that cloned waits meanwhile. A `fork` copies the page tables of a supervisor holding tens of
//! MiB at a thousand workers, for each worker, only for `exec` to throw them away.
//!
//! What the child does is what std's spawn and the worker's `pre_exec` do after a fork, in the
//! same order, through system calls alone (signal-safety(7)); a failure is left in memory the
//! two share, read by the parent once the child has exited. Handlers: every signal is blocked
//! across the clone, and the child gives each signal with a handler its default action before
//! anything unblocks, so no handler of the supervisor's runs in the child.
//!
//! Not for a worker that switches user or group (see [`super::Setup::needs_fork`]): glibc's
//! `setuid` and friends signal every thread of a threaded process to switch them all, and a
//! child sharing the supervisor's memory would take the supervisor's threads for its own.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use super::setup::Setup;

/// The child's stack (a guard page below it). What it runs is a few frames of system calls.
const STACK: usize = 128 << 10;

/// Where a command's name without a slash is looked for when the worker has no `PATH`
/// (glibc's `execvp` default).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The shell `execvp` hands a file without a known executable format to.
const SH: &std::ffi::CStr = c"/bin/sh";

/// The fds a worker finds at given numbers: (ours, its number), and a number above every one
/// of them, where each is first moved so that placing one never clobbers another.
pub(super) struct Fds<'a> {
    pub places: &'a [(i32, i32)],
    pub high: i32,
}

/// Everything the child needs, prepared by the parent.
struct Child<'a> {
    /// The paths `execve` tries in turn (one, or one per `PATH` entry).
    paths: &'a [CString],
    argv: &'a [*const libc::c_char],
    /// For each of `paths`, `/bin/sh PATH ARGS…`: what `execvp` runs when the file is no
    /// executable format the kernel knows (a script without `#!`, ENOEXEC).
    sh_argvs: &'a [Vec<*const libc::c_char>],
    envp: &'a [*const libc::c_char],
    /// What stdin, stdout and stderr become (-1: supervise's own, kept as it is).
    stdio: [RawFd; 3],
    /// A session of its own (it holds a terminal), else a process group of its own.
    own_session: bool,
    /// (our fd, the number the worker finds it at).
    places: &'a [(i32, i32)],
    high: i32,
    setup: &'a Setup,
    report: RawFd,
    parent: i32,
    /// The errno of the step that failed (0: none), written by the child before it exits.
    failed: AtomicI32,
}

/// The fds of a worker started this way: its pid and the read ends of its output pipes.
pub(super) struct Started {
    pub pid: i32,
    /// None for a stream handed over (supervise's terminal).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Starts `program` with `args` and exactly `env` (its whole environment). `Err` carries the
/// errno of what failed, in the parent or in the child (then the child has been reaped).
pub(super) fn spawn(
    program: &OsStr,
    args: &[String],
    env: &[(OsString, OsString)],
    fds: Fds<'_>,
    setup: &Setup,
    report: RawFd,
    stdio: super::stdio::Stdio,
) -> io::Result<Started> {
    let nul = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    };
    let c = |b: &[u8]| CString::new(b).map_err(|_| nul());
    let argv_c: Vec<CString> = std::iter::once(c(program.as_bytes()))
        .chain(args.iter().map(|a| c(a.as_bytes())))
        .collect::<io::Result<_>>()?;
    let envp_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            c(&kv)
        })
        .collect::<io::Result<_>>()?;
    let paths = candidates(program, env)?;
    let sh_argvs: Vec<Vec<*const libc::c_char>> = paths
        .iter()
        .map(|path| {
            std::iter::once(SH.as_ptr())
                .chain(std::iter::once(path.as_ptr()))
                .chain(argv_c.iter().skip(1).map(|a| a.as_ptr()))
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        })
        .collect();
    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envp_c
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let pipe = |o: super::stdio::Out| -> io::Result<Option<(OwnedFd, OwnedFd)>> {
        match o {
            super::stdio::Out::Pipe => Ok(Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)),
            super::stdio::Out::Terminal => Ok(None),
        }
    };
    let (out, err) = (pipe(stdio.stdout)?, pipe(stdio.stderr)?);
    let write_end = |p: &Option<(OwnedFd, OwnedFd)>| p.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let child = Child {
        paths: &paths,
        argv: &argv,
        sh_argvs: &sh_argvs,
        envp: &envp,
        stdio: [
            if stdio.stdin { -1 } else { null.as_raw_fd() },
            write_end(&out),
            write_end(&err),
        ],
        own_session: stdio.own_session,
        places: fds.places,
        high: fds.high,
        setup,
        report,
        // SAFETY: getpid has no preconditions; it runs here in the parent.
        parent: unsafe { libc::getpid() },
        failed: AtomicI32::new(0),
    };
    let stack = Stack::new()?;
    let mask = crate::signals::block_all()?;
    // SAFETY: `run` gets a pointer to `child`, which outlives the child's use of it: with
    // CLONE_VFORK this thread sleeps until the child has exec'd or exited. The child runs on
    // `stack`, its own mapping, and only reads `child` (but for the atomic it fails with).
    let pid = unsafe {
        libc::clone(
            run,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(&child).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    let _ = crate::signals::set_mask(mask);
    drop(stack);
    let (out_r, err_r) = (out.map(|(r, _)| r), err.map(|(r, _)| r));
    drop(null);
    if pid < 0 {
        return Err(clone_error);
    }
    let failed = child.failed.load(Ordering::Acquire);
    if failed != 0 {
        // It exited without exec: reaped here, as std reaps a child whose exec failed (the
        // reaper runs on this thread, after this returns, and never sees it).
        let mut status = 0;
        // SAFETY: waitpid on our own child, into a local.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        return Err(io::Error::from_raw_os_error(failed));
    }
    Ok(Started {
        pid,
        stdout: out_r,
        stderr: err_r,
    })
}

/// The paths `execvp` would try for `program`: itself if it holds a slash, else each entry of
/// the worker's `PATH` (an empty entry is the working directory).
fn candidates(program: &OsStr, env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    let name = program.as_bytes();
    let nul = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    };
    if name.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    if name.contains(&b'/') {
        return Ok(vec![CString::new(name).map_err(|_| nul())?]);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_bytes());
    path.split(|&b| b == b':')
        .map(|dir| {
            let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
            if !dir.is_empty() {
                p.extend_from_slice(dir);
                p.push(b'/');
            }
            p.extend_from_slice(name);
            CString::new(p).map_err(|_| nul())
        })
        .collect()
}

/// The child's stack: an anonymous mapping with a guard page at its low end.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Self> {
        let page = usize::try_from(crate::probe::proc::page_size()).unwrap_or(4096);
        let len = STACK + page;
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the lowest page of our own mapping becomes inaccessible: an overflow faults.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top of the stack (it grows down), 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping, whose length is a multiple of 16.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used (the child has exec'd or exited).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The child: sets itself up and execs; on failure leaves the errno in `failed` and exits 127.
extern "C" fn run(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Child`, alive until this child execs or exits.
    let child = unsafe { &*arg.cast::<Child<'_>>() };
    let err = match child.prepare() {
        Ok(()) => child.exec(),
        Err(e) => e,
    };
    child.failed.store(
        err.raw_os_error().filter(|&e| e != 0).unwrap_or(libc::EIO),
        Ordering::Release,
    );
    // SAFETY: _exit(2) ends this child at once, running nothing of the parent's (no atexit
    // handlers, no buffers flushed: they are the supervisor's).
    unsafe { libc::_exit(127) }
}

impl Child<'_> {
    /// Everything before `execve`, in the order of std's spawn and the worker's `pre_exec`
    /// (see `spawn`), through async-signal-safe calls only.
    fn prepare(&self) -> io::Result<()> {
        crate::signals::defaults_in_vm_child()?;
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY (this block): system calls on fds this child holds and on its own process.
        unsafe {
            for (at, &fd) in self.stdio.iter().enumerate() {
                if fd >= 0 {
                    check(libc::dup2(fd, libc::c_int::try_from(at).unwrap_or(0)))?;
                }
            }
            // Out of supervise's session, a terminal it was handed is not its controlling
            // terminal (see `stdio`); a session of its own makes it a group leader too.
            if self.own_session {
                check(libc::setsid())?;
            } else {
                check(libc::setpgid(0, 0))?;
            }
        }
        // As the fork path's `pre_exec` does (see `spawn`).
        super::place_fds(self.places, self.high)?;
        super::restore_fd_limit_in_child()?;
        self.setup.apply(self.report)?;
        // SAFETY: prctl(2) with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // What std's spawn does (an empty mask), then the mask supervise started with.
        crate::signals::set_mask(0)?;
        crate::signals::restore_in_child()?;
        // SAFETY: getppid(2) has no preconditions.
        if unsafe { libc::getppid() } != self.parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }

    /// `execve` of each candidate path in turn, as `execvp` goes through `PATH`: returns only
    /// on failure, with EACCES if some candidate was found but refused.
    fn exec(&self) -> io::Error {
        let mut denied = false;
        for (k, path) in self.paths.iter().enumerate() {
            // SAFETY: NUL-terminated strings and null-terminated arrays prepared by the parent.
            unsafe { libc::execve(path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
            let mut e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOEXEC) {
                if let Some(sh) = self.sh_argvs.get(k) {
                    // SAFETY: as above; `sh` was prepared by the parent and ends in a null.
                    unsafe { libc::execve(SH.as_ptr(), sh.as_ptr(), self.envp.as_ptr()) };
                    e = io::Error::last_os_error();
                }
            }
            match e.raw_os_error() {
                Some(libc::EACCES) => denied = true,
                Some(
                    libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT,
                ) => {}
                _ => return e,
            }
        }
        io::Error::from_raw_os_error(if denied { libc::EACCES } else { libc::ENOENT })
    }
}

#[cfg(test)]
mod tests {
    use super::super::stdio::Stdio;
    const SUPERVISED: Stdio = Stdio::SUPERVISED;
    use super::*;
    use std::fs::File;
    use std::io::Read;

    /// Starts `program` as a worker would be, reads its stdout to the end and reaps it: its pid,
    /// its output and its wait status.
    fn run(
        program: &OsStr,
        args: &[&str],
        env: &[(OsString, OsString)],
        stdio: Stdio,
    ) -> (i32, String, i32) {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let fds = Fds {
            places: &[],
            high: 10,
        };
        let started =
            spawn(program, &args, env, fds, &Setup::default(), -1, stdio).expect("spawned");
        let mut out = String::new();
        File::from(started.stdout.expect("piped"))
            .read_to_string(&mut out)
            .expect("read its output");
        let mut status = 0;
        // SAFETY: waitpid on the child this test started, into a local.
        let reaped = unsafe { libc::waitpid(started.pid, &mut status, 0) };
        assert_eq!(reaped, started.pid);
        (started.pid, out, status)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn a_name_is_looked_for_along_the_workers_path() {
        // (program, the worker's environment, the paths tried)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case<'_>; 5] = [
            ("/bin/true", &[("PATH", "/x")], &["/bin/true"]),
            ("sub/true", &[], &["sub/true"]),
            ("true", &[("PATH", "/a:/b/")], &["/a/true", "/b//true"]),
            ("true", &[("PATH", ":/a")], &["true", "/a/true"]),
            ("true", &[], &["/bin/true", "/usr/bin/true"]),
        ];
        for (program, pairs, want) in cases {
            let got = candidates(OsStr::new(program), &env(pairs)).expect("paths");
            let got: Vec<&str> = got.iter().map(|c| c.to_str().expect("utf-8")).collect();
            assert_eq!(got, want, "{program} with {pairs:?}");
        }
        let empty = candidates(OsStr::new(""), &[]).expect_err("no name");
        assert_eq!(empty.raw_os_error(), Some(libc::ENOENT));
    }

    /// The child runs with exactly the environment given, in a process group of its own, with
    /// its output on the pipes; a program that is not there is told as exec would tell it.
    #[test]
    fn a_worker_started_without_a_copy_gets_what_a_forked_one_gets() {
        let setup = Setup::default();
        let sh = OsStr::new("sh");
        let script = "echo \"$ONLY:$HOME:$(cut -d' ' -f5 /proc/$$/stat):$$\"";
        let path = ("PATH", "/usr/bin:/bin");
        let (pid, out, status) = run(
            sh,
            &["-c", script],
            &env(&[("ONLY", "it"), path]),
            SUPERVISED,
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        assert_eq!(out.trim(), format!("it::{pid}:{pid}"), "env, group, pid");

        // One that holds a terminal leads a session of its own (and so its group), and keeps
        // supervise's stdin.
        let own = Stdio {
            own_session: true,
            stdin: true,
            ..SUPERVISED
        };
        let script = "echo \"$(cut -d' ' -f5,6 /proc/$$/stat):$$\"";
        let (pid, out, _) = run(sh, &["-c", script], &env(&[path]), own);
        assert_eq!(
            out.trim(),
            format!("{pid} {pid}:{pid}"),
            "group, session, pid"
        );

        let missing = spawn(
            OsStr::new("/nonexistent/program"),
            &[],
            &env(&[]),
            Fds {
                places: &[],
                high: 10,
            },
            &setup,
            -1,
            SUPERVISED,
        );
        let e = missing.err().expect("not there");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        let not_found = spawn(
            OsStr::new("no-such-program-anywhere"),
            &[],
            &env(&[("PATH", "/usr/bin:/bin")]),
            Fds {
                places: &[],
                high: 10,
            },
            &setup,
            -1,
            SUPERVISED,
        );
        assert_eq!(
            not_found.err().and_then(|e| e.raw_os_error()),
            Some(libc::ENOENT)
        );
    }

    /// A script without `#!` runs through /bin/sh, as `execvp` runs it.
    #[test]
    fn a_script_without_an_interpreter_line_runs_through_the_shell() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("supervise-vm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("plain");
        std::fs::write(&script, "echo \"from sh: $1\"\n").expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let (_, out, _) = run(
            script.as_os_str(),
            &["x"],
            &env(&[("PATH", "/usr/bin:/bin")]),
            SUPERVISED,
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(out.trim(), "from sh: x");
    }
}
