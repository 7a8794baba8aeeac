//! Who a worker runs as and what the kernel lets it do: `user`, `group`, `umask`, `nice`,
//! `oom_score_adj` and `rlimits` (and their flags), parsed into an [`Identity`].
//!
//! Names are resolved here, when the config is loaded: the code between fork and exec may only
//! make system calls (getpwnam(3) reads files and allocates), so everything it needs — ids, the
//! supplementary groups, the limits — is a plain number by then.

use nix::sys::resource::Resource;
use nix::unistd::{Gid, Group, Uid, User};

/// `RLIM_INFINITY`: what `"unlimited"` means.
pub const UNLIMITED: u64 = libc::RLIM_INFINITY;

/// How a worker is started besides its command and environment. The default changes nothing:
/// the worker runs as supervise does, with its umask, nice value and limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The credentials to take between fork and exec; `Some` only when supervise runs as root.
    pub switch: Option<Switch>,
    /// `HOME`, `USER`, `LOGNAME` and `SHELL` of `user`, set in the worker's environment.
    pub user_env: Vec<(String, String)>,
    pub umask: Option<u32>,
    /// -20 (most favoured) to 19.
    pub nice: Option<i32>,
    /// -1000 (never chosen by the OOM killer) to 1000 (chosen first).
    pub oom_score_adj: Option<i32>,
    pub rlimits: Vec<Rlimit>,
    /// Start from an empty environment instead of supervise's own.
    pub clear_env: bool,
}

/// Credentials to switch to: `setgroups(groups)`, `setgid(gid)`, then `setuid(uid)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// `None` when only `group` was given: the uid stays.
    pub uid: Option<u32>,
    pub gid: u32,
    /// Supplementary groups: the user's (getgrouplist(3)), none without a user.
    pub groups: Vec<u32>,
    /// The user as configured, for messages (`nobody`, `1000`).
    pub user: String,
    /// The group as configured, for messages.
    pub group: String,
}

/// One resource limit; [`UNLIMITED`] for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// Every `RLIMIT_*` Linux has, by the name the config uses (getrlimit(2)).
pub const RLIMITS: [(&str, Resource); 16] = [
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

impl Rlimit {
    /// The config's name for it (`nofile`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        RLIMITS
            .iter()
            .find(|(_, r)| *r == self.resource)
            .map_or("?", |(n, _)| n)
    }

    /// `65536`, `unlimited`, or `1024:4096` when soft and hard differ.
    #[must_use]
    pub fn value(&self) -> String {
        let one = |v: u64| {
            if v == UNLIMITED {
                "unlimited".to_owned()
            } else {
                v.to_string()
            }
        };
        if self.soft == self.hard {
            one(self.soft)
        } else {
            format!("{}:{}", one(self.soft), one(self.hard))
        }
    }
}

/// A user or group as written: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Name(String),
    Id(u32),
}

impl Who {
    /// `nobody` is a name, `65534` an id.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(id) => Who::Id(id),
            Err(_) => Who::Name(s.to_owned()),
        }
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Name(n) => f.write_str(n),
            Who::Id(id) => write!(f, "{id}"),
        }
    }
}

/// A user looked up in the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    /// The primary group; `None` for a numeric id with no entry.
    pub gid: Option<u32>,
    /// As configured, for messages.
    pub given: String,
    /// The database's entry: name, home, shell.
    pub entry: Option<(String, String, String)>,
}

/// Looks `who` up in the user database. A name must exist; an id need not (then the worker
/// gets no supplementary groups, and `group` must be given).
pub fn resolve_user(who: &Who) -> Result<ResolvedUser, String> {
    let found = match who {
        Who::Name(n) => User::from_name(n),
        Who::Id(id) => User::from_uid(Uid::from_raw(*id)),
    }
    .map_err(|e| format!("cannot look up user {who}: {e}"))?;
    match (found, who) {
        (Some(u), _) => Ok(ResolvedUser {
            uid: u.uid.as_raw(),
            gid: Some(u.gid.as_raw()),
            given: who.to_string(),
            entry: Some((
                u.name,
                u.dir.to_string_lossy().into_owned(),
                u.shell.to_string_lossy().into_owned(),
            )),
        }),
        (None, Who::Id(id)) => Ok(ResolvedUser {
            uid: *id,
            gid: None,
            given: who.to_string(),
            entry: None,
        }),
        (None, Who::Name(n)) => Err(format!("no user named {n:?} on this system")),
    }
}

/// Looks `who` up in the group database: its gid. A name must exist; an id need not.
pub fn resolve_group(who: &Who) -> Result<u32, String> {
    match who {
        Who::Id(id) => Ok(*id),
        Who::Name(n) => match Group::from_name(n) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!("no group named {n:?} on this system")),
            Err(e) => Err(format!("cannot look up group {n:?}: {e}")),
        },
    }
}

/// Which key an identity error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    User,
    Group,
}

impl Key {
    /// The config key (the flag is `--` and this).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Key::User => "user",
            Key::Group => "group",
        }
    }
}

/// What `user` and `group` come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// What to switch to (none when not root, or nothing was asked for).
    pub switch: Option<Switch>,
    /// `HOME`, `USER`, `LOGNAME`, `SHELL` of the user.
    pub env: Vec<(String, String)>,
}

/// The credentials to switch to and the user's environment, for a supervisor running with
/// `euid`/`egid`. Only root may switch: anyone else may name only itself.
pub fn credentials(
    user: Option<&ResolvedUser>,
    group: Option<(u32, &str)>,
    euid: u32,
    egid: u32,
) -> Result<Credentials, (Key, String)> {
    let mut env = Vec::new();
    if let Some(u) = user {
        let (name, home, shell) = u
            .entry
            .clone()
            .unwrap_or_else(|| (u.given.clone(), "/".to_owned(), String::new()));
        env.push(("HOME".to_owned(), home));
        env.push(("USER".to_owned(), name.clone()));
        env.push(("LOGNAME".to_owned(), name));
        if !shell.is_empty() {
            env.push(("SHELL".to_owned(), shell));
        }
    }
    if euid != 0 {
        if let Some(u) = user.filter(|u| u.uid != euid) {
            return Err((
                Key::User,
                format!(
                    "only root can run a program as another user: supervise runs as uid {euid}, \
                     not {} (uid {})",
                    u.given, u.uid
                ),
            ));
        }
        if let Some((gid, given)) = group.filter(|&(gid, _)| gid != egid) {
            return Err((
                Key::Group,
                format!(
                    "only root can run a program in another group: supervise runs as gid \
                     {egid}, not {given} (gid {gid})"
                ),
            ));
        }
        // Itself: nothing to switch.
        return Ok(Credentials { switch: None, env });
    }
    if user.is_none() && group.is_none() {
        return Ok(Credentials { switch: None, env });
    }
    let gid = match (group, user.and_then(|u| u.gid)) {
        (Some((gid, _)), _) | (None, Some(gid)) => gid,
        (None, None) => {
            return Err((
                Key::User,
                format!(
                "user {} has no entry in the user database, so no primary group: give `group` too",
                user.map_or_else(String::new, |u| u.given.clone())
            ),
            ))
        }
    };
    let groups = match user.and_then(|u| u.entry.as_ref()) {
        Some((name, _, _)) => {
            let c = std::ffi::CString::new(name.as_str())
                .map_err(|_| (Key::User, format!("invalid user name {name:?}")))?;
            nix::unistd::getgrouplist(&c, Gid::from_raw(gid))
                .map_err(|e| (Key::User, format!("cannot list the groups of {name}: {e}")))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        // A bare id, or no user: the primary group alone.
        None => vec![gid],
    };
    Ok(Credentials {
        switch: Some(Switch {
            uid: user.map(|u| u.uid),
            gid,
            groups,
            user: user.map_or_else(|| "root".to_owned(), |u| u.given.clone()),
            group: group.map_or_else(|| gid.to_string(), |(_, g)| g.to_owned()),
        }),
        env,
    })
}

/// The effective uid and gid of supervise.
#[must_use]
pub fn effective_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

// ---------------------------------------------------------------------------------------------
// Values.

/// A umask: octal digits (`"027"`, `"0o027"`), at most `0777`.
pub fn parse_umask(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty())
        .and_then(|m| check_umask(i64::from(m)).ok())
        .ok_or_else(|| format!("invalid umask {s:?}: use octal digits such as \"027\" or \"0022\""))
}

fn check_umask(m: i64) -> Result<u32, String> {
    u32::try_from(m)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or_else(|| format!("a umask is at most 0o777 (511), got {m}"))
}

pub fn check_nice(n: i64) -> Result<i32, String> {
    i32::try_from(n)
        .ok()
        .filter(|n| (-20..=19).contains(n))
        .ok_or_else(|| format!("must be between -20 and 19, got {n}"))
}

pub fn check_oom_score_adj(n: i64) -> Result<i32, String> {
    i32::try_from(n)
        .ok()
        .filter(|n| (-1000..=1000).contains(n))
        .ok_or_else(|| format!("must be between -1000 and 1000, got {n}"))
}

fn resource(name: &str) -> Result<Resource, String> {
    RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, r)| r)
        .ok_or_else(|| {
            let names: Vec<&str> = RLIMITS.iter().map(|(n, _)| *n).collect();
            format!("unknown limit {name:?}; one of {}", names.join(", "))
        })
}

fn limit_value(s: &str) -> Result<u64, String> {
    match s.trim() {
        "unlimited" | "infinity" => Ok(UNLIMITED),
        t => t
            .parse::<u64>()
            .ok()
            .filter(|&n| n != UNLIMITED)
            .ok_or_else(|| format!("invalid limit {s:?}: a number or \"unlimited\"")),
    }
}

fn check_order(resource: Resource, soft: u64, hard: u64) -> Result<Rlimit, String> {
    if soft > hard {
        let r = Rlimit {
            resource,
            soft,
            hard,
        };
        return Err(format!(
            "the soft limit is above the hard limit ({}); the kernel refuses that",
            r.value()
        ));
    }
    Ok(Rlimit {
        resource,
        soft,
        hard,
    })
}

/// `--rlimit NAME=VALUE`: VALUE is a number, `unlimited`, or `SOFT:HARD` (as prlimit(1)
/// writes them); a single value sets both.
pub fn parse_rlimit_flag(s: &str) -> Result<Rlimit, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, e.g. nofile=65536, got {s:?}"))?;
    let resource = resource(name.trim())?;
    let (soft, hard) = match value.split_once(':') {
        Some((soft, hard)) => (limit_value(soft)?, limit_value(hard)?),
        None => {
            let v = limit_value(value)?;
            (v, v)
        }
    };
    check_order(resource, soft, hard)
}

pub(super) mod raw;

#[cfg(test)]
mod tests;
