//! What a worker does to itself between fork and exec: OOM score, nice value, umask, resource
//! limits, groups and user, working directory.
//!
//! [`Setup::new`] prepares every value in the supervisor (C strings, the group list, the OOM
//! score's digits); [`Setup::apply`] runs in the forked child and only makes system calls on
//! them (no allocation, no lock: signal-safety(7)). A step that fails writes which one it was to
//! a pipe before the child gives up, because std's spawn carries back only the errno:
//! [`Setup::describe`] turns the two into "cannot switch to user nobody: Operation not
//! permitted".

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::plan::{ProgramSpec, Rlimit};

/// The steps, as the byte the child reports.
mod step {
    pub const OOM: u8 = 1;
    pub const NICE: u8 = 2;
    pub const RLIMIT: u8 = 3;
    pub const GROUPS: u8 = 4;
    pub const GID: u8 = 5;
    pub const UID: u8 = 6;
    pub const REGAIN: u8 = 7;
    pub const CWD: u8 = 8;
}

/// Everything the child does to itself, prepared before the fork.
#[derive(Debug, Default)]
pub(super) struct Setup {
    /// `oom_score_adj` as the decimal digits to write.
    oom: Option<Vec<u8>>,
    nice: Option<i32>,
    umask: Option<libc::mode_t>,
    rlimits: Vec<Rlimit>,
    /// setgroups, setgid, and setuid if a user was given.
    switch: Option<(Vec<libc::gid_t>, libc::gid_t, Option<libc::uid_t>)>,
    cwd: Option<CString>,
}

impl Setup {
    pub(super) fn new(spec: &ProgramSpec) -> io::Result<Self> {
        let id = &spec.identity;
        let cwd = spec
            .cwd
            .as_ref()
            .map(|p| {
                CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "cwd holds a NUL byte")
                })
            })
            .transpose()?;
        Ok(Self {
            oom: id.oom_score_adj.map(|n| n.to_string().into_bytes()),
            nice: id.nice,
            umask: id.umask,
            rlimits: id.rlimits.clone(),
            switch: id.switch.as_ref().map(|s| (s.groups.clone(), s.gid, s.uid)),
            cwd,
        })
    }

    /// Whether there is anything to do (and so anything that can fail).
    pub(super) fn any(&self) -> bool {
        self.oom.is_some()
            || self.nice.is_some()
            || self.umask.is_some()
            || !self.rlimits.is_empty()
            || self.switch.is_some()
            || self.cwd.is_some()
    }

    /// Whether the child must be a `fork` (see `spawn/vm.rs`): it switches user or group, and
    /// glibc's `setuid` family signals every thread of what it takes for a threaded process.
    pub(super) fn needs_fork(&self) -> bool {
        self.switch.is_some()
    }

    /// In the child: every step in order, stopping at the first failure, which is reported as
    /// `[step, index]` on `report`. The order matters: limits, nice value and OOM score before
    /// giving up root (raising a hard limit, a negative nice value and a lower OOM score need
    /// privileges), setgroups and setgid before setuid (after it they would be refused), and
    /// the working directory as the user. Only system calls on values prepared in [`Setup::new`].
    pub(super) fn apply(&self, report: RawFd) -> io::Result<()> {
        let fail = |step: u8, index: usize| -> io::Error {
            let err = io::Error::last_os_error();
            let code = [step, u8::try_from(index).unwrap_or(u8::MAX)];
            // SAFETY: write(2) from a local array to an fd this child inherited; a failed
            // report only costs the message its detail.
            unsafe { libc::write(report, code.as_ptr().cast(), code.len()) };
            err
        };
        if let Some(digits) = &self.oom {
            // SAFETY: open/write/close on a NUL-terminated literal and a prepared buffer.
            unsafe {
                let fd = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return Err(fail(step::OOM, 0));
                }
                let n = libc::write(fd, digits.as_ptr().cast(), digits.len());
                if n < 0 {
                    let e = fail(step::OOM, 0);
                    libc::close(fd);
                    return Err(e);
                }
                libc::close(fd);
            }
        }
        if let Some(nice) = self.nice {
            // SAFETY: setpriority(2) on this process.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
                return Err(fail(step::NICE, 0));
            }
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask(2) cannot fail.
            unsafe { libc::umask(mask) };
        }
        for (i, r) in self.rlimits.iter().enumerate() {
            // nix's setrlimit builds the struct on the stack and makes the one system call.
            if nix::sys::resource::setrlimit(r.resource, r.soft, r.hard).is_err() {
                return Err(fail(step::RLIMIT, i));
            }
        }
        if let Some((groups, gid, uid)) = &self.switch {
            // SAFETY: setgroups(2) with a prepared array and its length.
            if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
                return Err(fail(step::GROUPS, 0));
            }
            // SAFETY: setgid(2).
            if unsafe { libc::setgid(*gid) } != 0 {
                return Err(fail(step::GID, 0));
            }
            if let Some(uid) = *uid {
                // SAFETY: setuid(2).
                if unsafe { libc::setuid(uid) } != 0 {
                    return Err(fail(step::UID, 0));
                }
                // A process that can take root back has not given it up (setuid(2): only a
                // privileged caller sets all three ids).
                // SAFETY: setuid(2); expected to fail.
                if uid != 0 && unsafe { libc::setuid(0) } == 0 {
                    // SAFETY: errno is thread-local; setting it makes the report say EPERM.
                    unsafe { *libc::__errno_location() = libc::EPERM };
                    return Err(fail(step::REGAIN, 0));
                }
            }
        }
        if let Some(cwd) = &self.cwd {
            // SAFETY: chdir(2) on a prepared C string.
            if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
                return Err(fail(step::CWD, 0));
            }
        }
        Ok(())
    }

    /// The message for a step the child reported (`code`), with the errno std carried back.
    pub(super) fn describe(spec: &ProgramSpec, code: [u8; 2], err: &io::Error) -> String {
        let id = &spec.identity;
        let user = id.switch.as_ref().map_or("?", |s| s.user.as_str());
        let group = id.switch.as_ref().map_or("?", |s| s.group.as_str());
        match code[0] {
            step::OOM => format!(
                "cannot set oom_score_adj to {}: {err}",
                id.oom_score_adj.unwrap_or_default()
            ),
            step::NICE => format!("cannot set nice to {}: {err}", id.nice.unwrap_or_default()),
            step::RLIMIT => match id.rlimits.get(usize::from(code[1])) {
                Some(r) => format!("cannot set rlimit {} to {}: {err}", r.name(), r.value()),
                None => format!("cannot set a resource limit: {err}"),
            },
            step::GROUPS => format!("cannot set the supplementary groups of user {user}: {err}"),
            step::GID => format!("cannot switch to group {group}: {err}"),
            step::UID => format!("cannot switch to user {user}: {err}"),
            step::REGAIN => {
                format!("switched to user {user} but could take root back; refusing to run it")
            }
            step::CWD => format!(
                "cannot change to directory {}: {err}",
                spec.cwd
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"))
                    .display()
            ),
            _ => format!("cannot set up the worker: {err}"),
        }
    }
}

/// Reads the step a failed child reported, if any: the pipe's read end is non-blocking, and
/// the child wrote before it gave up, so whatever is there is there by now.
pub(super) fn reported(read: RawFd) -> Option<[u8; 2]> {
    let mut code = [0u8; 2];
    // SAFETY: read(2) into a local array of that length.
    let n = unsafe { libc::read(read, code.as_mut_ptr().cast(), code.len()) };
    (n == 2).then_some(code)
}
