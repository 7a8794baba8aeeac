//! Fork and exec one worker.
//!
//! The worker gets its own process group (so a stop reaches its whole group), stdin on /dev/null,
//! stdout and stderr on pipes to the supervisor, `SUPERVISE_NAME` and `SUPERVISE_INSTANCE`, and
//! `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the supervisor even when the supervisor is
//! SIGKILLed. The death signal fires when the *thread* that forked exits (prctl(2)), which is why
//! workers are only ever spawned from the main thread.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::plan::ProgramSpec;

/// A worker just started.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts one instance of `spec`. Errors are the exec's own (not found, permission denied, bad
/// cwd), reported by std through its close-on-exec error pipe.
pub fn spawn(spec: &ProgramSpec, instance: u32) -> io::Result<Spawned> {
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
    // SAFETY: getpid is async-signal-safe; it runs here in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid); std resets the signal mask and SIGPIPE itself.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl: then nobody would ever kill us.
            if libc::getppid() != parent {
                return Err(io::Error::other("supervisor exited during spawn"));
            }
            Ok(())
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
