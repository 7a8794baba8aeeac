//! Fork and exec one worker.
//!
//! The worker gets its own process group (so a stop reaches its whole group), stdin on /dev/null,
//! stdout and stderr on pipes to the supervisor, its end of the channel at fd 3 and its
//! shared-memory segment at fd 4 (announced in `SUPERVISE_CONTROL_FD` and `SUPERVISE_SEGMENT_FD`),
//! `SUPERVISE_NAME` and `SUPERVISE_INSTANCE`, and `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the supervisor even when the supervisor is
//! SIGKILLed. The death signal fires when the *thread* that forked exits (prctl(2)), which is why
//! workers are only ever spawned from the main thread.
//!
//! Supervise raises its own soft `RLIMIT_NOFILE` to the hard limit (as systemd does for itself):
//! it holds a few fds per tracked process. Workers get back the soft limit supervise started
//! with, between fork and exec, so running under supervise changes nothing for them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::plan::ProgramSpec;

/// A worker just started.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The fds a worker inherits besides stdio: its channel end and its segment.
#[derive(Debug)]
pub struct Inherit {
    pub channel: OwnedFd,
    pub segment: OwnedFd,
}

/// The fd numbers the worker finds them at.
pub const CHANNEL_FD: i32 = 3;
pub const SEGMENT_FD: i32 = 4;

/// Starts one instance of `spec`. Errors are the exec's own (not found, permission denied, bad
/// cwd), reported by std through its close-on-exec error pipe.
pub fn spawn(spec: &ProgramSpec, instance: u32, inherit: Option<&Inherit>) -> io::Result<Spawned> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(child_sdk::ENV_NAME, &spec.name)
        .env(child_sdk::ENV_INSTANCE, instance.to_string())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let fds = inherit.map(|i| (i.channel.as_raw_fd(), i.segment.as_raw_fd()));
    if fds.is_some() {
        cmd.env(child_sdk::ENV_CONTROL_FD, CHANNEL_FD.to_string())
            .env(child_sdk::ENV_SEGMENT_FD, SEGMENT_FD.to_string());
    }
    // SAFETY: getpid is async-signal-safe; it runs here in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, sigprocmask, getppid, fcntl, dup2, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            crate::signals::restore_in_child()?;
            // The supervisor may have died between fork and prctl: then nobody would ever kill us.
            if libc::getppid() != parent {
                return Err(io::Error::other("supervisor exited during spawn"));
            }
            if let Some((channel, segment)) = fds {
                // Move both above the target numbers first, so that placing one cannot clobber
                // the other; dup2 then clears close-on-exec on the copies at 3 and 4.
                let high_channel = libc::fcntl(channel, libc::F_DUPFD_CLOEXEC, 10);
                let high_segment = libc::fcntl(segment, libc::F_DUPFD_CLOEXEC, 10);
                if high_channel < 0
                    || high_segment < 0
                    || libc::dup2(high_channel, CHANNEL_FD) < 0
                    || libc::dup2(high_segment, SEGMENT_FD) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // Last: the fd moves above need the raised limit when the supervisor's fds are high.
            restore_fd_limit_in_child()
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program:?}: {e}")))?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("pipes missing"));
    };
    // `child` is dropped without wait(): the reaper owns every exit status.
    Ok(Spawned {
        pid,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
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
    let _ = ORIGINAL_NOFILE.set(lim);
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(lim.rlim_cur);
    }
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
