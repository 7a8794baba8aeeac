//! Start one worker: `clone(CLONE_VM | CLONE_VFORK)` and exec, as `posix_spawn` does
//! (`spawn/vm.rs`), so no page table of the supervisor is copied; a `fork` only for a worker
//! that switches user or group (see `Setup::needs_fork`). Both do the same setup, in the same
//! order, between the clone and the exec.
//!
//! The worker gets its own process group (so a stop reaches its whole group), stdin on /dev/null,
//! stdout and stderr on pipes to the supervisor (single-command mode with one instance hands over
//! stdin and a terminal, see [`stdio`]), its end of the channel at fd 3 and its
//! shared-memory segment at fd 4 (announced in `SUPERVISE_CONTROL_FD` and `SUPERVISE_SEGMENT_FD`),
//! `SUPERVISE_NAME` and `SUPERVISE_INSTANCE`, and `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with
//! the supervisor even when the supervisor is SIGKILLed. The death signal fires when the
//! *thread* that forked exits (prctl(2)), which is why workers are only ever spawned from the
//! main thread. Its user, group, limits, nice value, OOM score, umask and working directory are
//! set in the child between fork and exec (see `setup`).
//!
//! Supervise raises its own soft `RLIMIT_NOFILE` to the hard limit (as systemd does for itself):
//! it holds a few fds per tracked process. Workers get back the soft limit supervise started
//! with, between fork and exec, so running under supervise changes nothing for them (unless
//! their program sets `rlimits.nofile`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::plan::ProgramSpec;

mod setup;
pub mod stdio;
mod vm;

/// A worker just started, and the read ends of its output pipes (none for a stream it writes to
/// supervise's terminal itself).
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The argv it was started with, `{instance}` and the like expanded.
    pub argv: Vec<String>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// The fds a worker inherits besides stdio: its channel end and its segment.
#[derive(Debug)]
pub struct Inherit {
    pub channel: OwnedFd,
    pub segment: OwnedFd,
}

/// The write end of an s6-style readiness pipe, to be placed at fd `at` in the worker.
#[derive(Debug)]
pub struct ReadyPipe {
    pub write: OwnedFd,
    pub at: i32,
}

/// The fd numbers the worker finds them at.
pub const CHANNEL_FD: i32 = 3;
pub const SEGMENT_FD: i32 = 4;

/// What a worker gets besides its command: the channel and segment, an s6 readiness pipe, and
/// the supervisor's notify socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct With<'a> {
    pub inherit: Option<&'a Inherit>,
    pub ready: Option<&'a ReadyPipe>,
    pub notify: Option<&'a std::path::Path>,
    /// What to watch for memory pressure (systemd's `MEMORY_PRESSURE_WATCH`).
    pub pressure: Option<&'a crate::pressure::Watch>,
    /// Where its fds 0, 1 and 2 go (`None`: a supervisor's, [`stdio::Stdio::SUPERVISED`]).
    pub stdio: Option<stdio::Stdio>,
}

/// Starts one instance of `spec`. Errors are the exec's own (not found, permission denied),
/// reported by std through its close-on-exec error pipe, or a setup step's (a user it cannot
/// switch to, a limit the kernel refuses, a bad cwd), each as one line that says which.
pub fn spawn(spec: &ProgramSpec, instance: u32, with: With<'_>) -> io::Result<Spawned> {
    let With {
        inherit,
        ready,
        notify,
        pressure,
        stdio,
    } = with;
    // `{instance}`, `{name}`, `{8000 + instance}` in command, cwd and env.
    let spec = &crate::plan::expand::instance_spec(spec, instance)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stdio = stdio.unwrap_or(stdio::Stdio::SUPERVISED);
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let env = environment(spec, instance, inherit.is_some(), notify, pressure);
    // (our fd, the number the worker finds it at); built before the fork, only read after it.
    let mut places: Vec<(i32, i32)> = Vec::with_capacity(3);
    if let Some(i) = inherit {
        places.push((i.channel.as_raw_fd(), CHANNEL_FD));
        places.push((i.segment.as_raw_fd(), SEGMENT_FD));
    }
    if let Some(r) = ready {
        // Held open in the supervisor, so std's exec-error pipe can never be created at that
        // number and then be overwritten in the child.
        reserve_fd(r.at)?;
        places.push((r.write.as_raw_fd(), r.at));
    }
    // Above every target: placing one copy can never clobber another.
    let high = places
        .iter()
        .map(|&(_, at)| at + 1)
        .max()
        .unwrap_or(0)
        .max(10);
    let setup = setup::Setup::new(spec)?;
    // Which step of the setup failed, told by the child (std carries back only the errno).
    let report = if setup.any() {
        Some(nix::unistd::pipe2(
            nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK,
        )?)
    } else {
        None
    };
    let report_fd = report.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let describe = |e: io::Error| {
        let step = report
            .as_ref()
            .and_then(|(r, _)| setup::reported(r.as_raw_fd()));
        io::Error::new(
            e.kind(),
            match step {
                Some(code) => setup::Setup::describe(spec, code, &e),
                None => format!("cannot run {program:?}: {e}"),
            },
        )
    };
    if !setup.needs_fork() {
        let started = vm::spawn(
            std::ffi::OsStr::new(program),
            args,
            &env,
            vm::Fds {
                places: &places,
                high,
            },
            &setup,
            report_fd,
            stdio,
        )
        .map_err(describe)?;
        return Ok(Spawned {
            pid: started.pid,
            argv: spec.command.clone(),
            stdout: started.stdout,
            stderr: started.stderr,
        });
    }
    let out = |o: stdio::Out| match o {
        stdio::Out::Pipe => Stdio::piped(),
        stdio::Out::Terminal => Stdio::inherit(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdio.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(out(stdio.stdout))
        .stderr(out(stdio.stderr))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    // A session of its own makes it a group leader too (and `setsid` refuses one already).
    let own_session = stdio.own_session;
    if !own_session {
        cmd.process_group(0);
    }
    // SAFETY: getpid is async-signal-safe; it runs here in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, fcntl, dup2, setrlimit, then the setup's open, write, close,
    // setpriority, umask, setrlimit, setgroups, setgid, setuid, chdir, then prctl, sigprocmask,
    // getppid) on values prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Out of supervise's session, the terminal it was handed is not its controlling
            // terminal: no SIGTTIN or SIGTTOU for reading it or setting its modes, as a
            // background job of supervise's session would get (see `stdio`).
            if own_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // First, so that a low RLIMIT_NOFILE set below cannot refuse it.
            place_fds(&places, high)?;
            // After the fd moves, which need the raised limit when the supervisor's fds are high;
            // before the setup, whose `rlimits.nofile` wins.
            restore_fd_limit_in_child()?;
            setup.apply(report_fd)?;
            // After the switch of user: a change of credentials clears the death signal
            // (prctl(2), PR_SET_PDEATHSIG).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            crate::signals::restore_in_child()?;
            // The supervisor may have died before prctl: then nobody would ever kill us. (No
            // message: nobody is left to read it, and building one would allocate.)
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(describe)?;
    drop(report);
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    if stdout.is_none() != (stdio.stdout == stdio::Out::Terminal)
        || stderr.is_none() != (stdio.stderr == stdio::Out::Terminal)
    {
        return Err(io::Error::other("pipes missing"));
    }
    // `child` is dropped without wait(): the reaper owns every exit status.
    Ok(Spawned {
        pid,
        argv: spec.command.clone(),
        stdout,
        stderr,
    })
}

/// Puts each of `places`' fds at the number the worker finds it at: every source is first
/// moved above `high` (above every target), then each is dup2'd into place, which clears
/// close-on-exec on the copy the worker keeps; so placing one never clobbers another. Only
/// fcntl and dup2: it runs in the child between the clone or fork and the exec.
fn place_fds(places: &[(i32, i32)], high: i32) -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let mut moved = [-1i32; 3];
    for (k, &(from, _)) in places.iter().enumerate().take(moved.len()) {
        // SAFETY: fcntl(2) on an fd this process holds.
        moved[k] = check(unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, high) })?;
    }
    for (k, &(_, at)) in places.iter().enumerate().take(moved.len()) {
        // SAFETY: dup2(2) of an fd this process holds.
        check(unsafe { libc::dup2(moved[k], at) })?;
    }
    Ok(())
}

/// A worker's whole environment: supervise's own (unless `clear_env`) < the user's HOME, USER,
/// LOGNAME, SHELL < env_file < env < the variables of supervise's own, which the worker always
/// gets. Later entries win; the order of first appearance is kept.
fn environment(
    spec: &ProgramSpec,
    instance: u32,
    ipc: bool,
    notify: Option<&std::path::Path>,
    pressure: Option<&crate::pressure::Watch>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = if spec.identity.clear_env {
        Vec::new()
    } else {
        std::env::vars_os().collect()
    };
    let set = |env: &mut Vec<(OsString, OsString)>, k: &OsStr, v: &OsStr| match env
        .iter_mut()
        .find(|(key, _)| key == k)
    {
        Some(e) => e.1 = v.to_owned(),
        None => env.push((k.to_owned(), v.to_owned())),
    };
    let remove = |env: &mut Vec<(OsString, OsString)>, k: &str| env.retain(|(key, _)| key != k);
    for (k, v) in spec.identity.user_env.iter().chain(spec.env.iter()) {
        set(&mut env, OsStr::new(k), OsStr::new(v));
    }
    set(
        &mut env,
        OsStr::new(child_sdk::ENV_NAME),
        OsStr::new(&spec.name),
    );
    set(
        &mut env,
        OsStr::new(child_sdk::ENV_INSTANCE),
        OsStr::new(&instance.to_string()),
    );
    // systemd.io/MEMORY_PRESSURE: programs built on sd_event_add_memory_pressure() trim their
    // caches when it fires. A program's own setting (in `env`) wins.
    if let Some(w) =
        pressure.filter(|_| !spec.env.iter().any(|(k, _)| k == "MEMORY_PRESSURE_WATCH"))
    {
        set(
            &mut env,
            OsStr::new("MEMORY_PRESSURE_WATCH"),
            w.path.as_os_str(),
        );
        match &w.write {
            Some(b64) => set(
                &mut env,
                OsStr::new("MEMORY_PRESSURE_WRITE"),
                OsStr::new(b64),
            ),
            None => remove(&mut env, "MEMORY_PRESSURE_WRITE"),
        }
    }
    if let Some(path) = notify {
        set(&mut env, OsStr::new("NOTIFY_SOCKET"), path.as_os_str());
        // sd_watchdog_enabled(3): ping at least this often (no WATCHDOG_PID: it would have to be
        // set after the fork, which only async-signal-safe code may do; without it, the main
        // process is the one meant).
        match spec.heartbeat {
            Some(h) => set(
                &mut env,
                OsStr::new("WATCHDOG_USEC"),
                OsStr::new(&h.timeout.as_micros().to_string()),
            ),
            None => remove(&mut env, "WATCHDOG_USEC"),
        }
        remove(&mut env, "WATCHDOG_PID");
    }
    if ipc {
        set(
            &mut env,
            OsStr::new(child_sdk::ENV_CONTROL_FD),
            OsStr::new(&CHANNEL_FD.to_string()),
        );
        set(
            &mut env,
            OsStr::new(child_sdk::ENV_SEGMENT_FD),
            OsStr::new(&SEGMENT_FD.to_string()),
        );
    }
    env
}

/// The `RLIMIT_NOFILE` supervise started with, before [`raise_fd_limit`].
static ORIGINAL_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and remembers the limit as it was for
/// [`restore_fd_limit_in_child`]. Returns the new soft limit. For supervise's run mode and the
/// lifeline only: a client subcommand has no use for it.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(lim.rlim_cur);
    }
    let _ = ORIGINAL_NOFILE.set(lim);
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the rlimit we own; raising the soft limit up to the hard one
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(raised.rlim_cur)
}

/// Sets `O_NONBLOCK` on `fd`, keeping its other status flags.
pub(crate) fn set_nonblocking(fd: &impl std::os::fd::AsFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// The `pre_exec` of a command supervise runs for itself (a check, an alert): it dies with
/// supervise, and gets back the signal mask, stop signals and open-files limit supervise started
/// with, as a worker does. `parent` is supervise's pid, taken before the fork (`getpid` in the
/// parent): if supervise died before the death signal was set, nobody would ever kill the
/// command, so it does not run. Async-signal-safe (prctl, signal, sigprocmask, setrlimit,
/// getppid).
pub fn helper_child(parent: i32) -> io::Result<()> {
    // SAFETY: prctl(2) with constant arguments; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    crate::signals::restore_in_child()?;
    restore_fd_limit_in_child()?;
    // As for workers: after prctl, a parent that is gone already shows as another one (the
    // subreaper or init that adopted us). No message: building one would allocate.
    // SAFETY: getppid(2) has no preconditions and is async-signal-safe.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// [`helper_child`] for a command about to be spawned by this process.
pub fn helper_pre_exec(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions; it runs here, in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: runs in the forked child before exec; `helper_child` is async-signal-safe and
    // captures only an integer.
    unsafe { cmd.pre_exec(move || helper_child(parent)) };
}

/// Gives a child about to `exec` the `RLIMIT_NOFILE` supervise started with (nothing when it was
/// never raised). Async-signal-safe (one atomic load and one syscall): for `pre_exec`.
pub fn restore_fd_limit_in_child() -> io::Result<()> {
    let Some(lim) = ORIGINAL_NOFILE.get() else {
        return Ok(());
    };
    // SAFETY: setrlimit reads a valid rlimit; lowering the soft limit (the hard one is the same
    // as at start) needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the supervisor a child subreaper, so orphans of its workers are reparented to it rather
/// than to init: they stay visible, are attributed to their worker, and are reaped here.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Keeps `fd` open in the supervisor (on /dev/null, close-on-exec) if nothing holds it. Never
/// replaces an open fd (other threads open files too): `F_DUPFD_CLOEXEC` takes the lowest free
/// number from `fd` up, so it lands on `fd` only if `fd` is free.
fn reserve_fd(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFD only queries the fd.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
        return Ok(());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd, never one in use.
    let got = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, fd) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    if got != fd {
        // Someone took `fd` meanwhile: held either way.
        // SAFETY: `got` is the fd we just created and own.
        unsafe { libc::close(got) };
    }
    // A placeholder at `fd` stays open for the supervisor's life.
    Ok(())
}

/// Makes sure fds 0 to 4 are open (on /dev/null if they were not), so that no fd the supervisor
/// opens later lands on 0–2 (where a worker would inherit it as stdio) or on 3–4 (where std could
/// place its exec-error pipe in the child, under the channel and segment). Call first thing.
pub fn reserve_low_fds() -> io::Result<()> {
    for fd in 0..=SEGMENT_FD {
        // SAFETY: F_GETFD only queries the fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            let raw = null.as_raw_fd();
            if raw != fd {
                // SAFETY: dup2 onto a free fd number; `null` is closed when dropped.
                if unsafe { libc::dup2(raw, fd) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else {
                // Keep it open at `fd`: it is the placeholder.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_whose_parent_is_not_supervise_any_more_does_not_run() {
        // As if supervise had died between the fork and the death signal: the child's parent is
        // not the one it was forked by (getppid never answers -1).
        let mut orphaned = Command::new("true");
        // SAFETY: `helper_child` is async-signal-safe and captures nothing.
        unsafe { orphaned.pre_exec(|| helper_child(-1)) };
        let e = orphaned.spawn().expect_err("refused to run");
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e}");

        let mut cmd = Command::new("true");
        cmd.stdin(Stdio::null());
        helper_pre_exec(&mut cmd);
        let status = cmd.spawn().expect("runs").wait().expect("wait");
        assert!(status.success(), "{status}");
    }
}
