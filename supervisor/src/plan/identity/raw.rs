//! The config's raw identity values. Each validates (and looks names up) while deserializing,
//! so that errors carry the key and the line.

use serde::{de, Deserialize, Deserializer};

use super::{
    check_nice, check_oom_score_adj, check_order, check_umask, credentials, limit_value,
    parse_umask, resolve_group, resolve_user, resource, Credentials, Identity, Key, ResolvedUser,
    Resource, Rlimit, Who,
};

/// The identity keys of a `[program.NAME]` table, as read.
#[derive(Debug, Default)]
pub(in crate::plan) struct RawIdentity {
    pub user: Option<UserName>,
    pub group: Option<GroupName>,
    pub umask: Option<u32>,
    pub nice: Option<Nice>,
    pub oom_score_adj: Option<OomScoreAdj>,
    pub rlimits: Option<RawRlimits>,
    pub clear_env: bool,
}

/// The [`Identity`] of a program's keys, for a supervisor running as `euid`/`egid`; `Err` names
/// the key (`user` or `group`) the trouble is with.
pub(in crate::plan) fn from_config(
    raw: RawIdentity,
    euid: u32,
    egid: u32,
) -> Result<Identity, (Key, String)> {
    let Credentials { switch, env } = credentials(
        raw.user.as_ref().map(|u| &u.0),
        raw.group.as_ref().map(|g| (g.0, g.1.as_str())),
        euid,
        egid,
    )?;
    Ok(Identity {
        switch,
        user_env: env,
        umask: raw.umask,
        nice: raw.nice.map(|n| n.0),
        oom_score_adj: raw.oom_score_adj.map(|o| o.0),
        rlimits: raw.rlimits.map(|r| r.0).unwrap_or_default(),
        clear_env: raw.clear_env,
    })
}

/// `user = "nobody"` or `user = 65534`, looked up at load.
#[derive(Debug)]
pub(in crate::plan) struct UserName(pub ResolvedUser);

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let who = who(d, "a user name or a numeric uid")?;
        resolve_user(&who).map(UserName).map_err(de::Error::custom)
    }
}

/// `group = "nogroup"` or `group = 65534`, looked up at load: (gid, as written).
#[derive(Debug)]
pub(in crate::plan) struct GroupName(pub u32, pub String);

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let who = who(d, "a group name or a numeric gid")?;
        resolve_group(&who)
            .map(|gid| GroupName(gid, who.to_string()))
            .map_err(de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrStr {
    Int(i64),
    Str(String),
}

fn who<'de, D: Deserializer<'de>>(d: D, expecting: &str) -> Result<Who, D::Error> {
    match IntOrStr::deserialize(d)
        .map_err(|_| de::Error::custom(format!("expected {expecting}")))?
    {
        IntOrStr::Int(n) => u32::try_from(n)
            .map(Who::Id)
            .map_err(|_| de::Error::custom(format!("invalid id {n}"))),
        IntOrStr::Str(s) if s.is_empty() => Err(de::Error::custom(format!("expected {expecting}"))),
        IntOrStr::Str(s) => Ok(Who::parse(&s)),
    }
}

/// `umask = "027"` (octal digits in a string), or a TOML integer, as read. Which integer was
/// meant depends on how it was written (see [`umask_int`]), which only the config's text tells.
#[derive(Debug, Clone, Copy)]
pub(in crate::plan) enum Umask {
    Octal(u32),
    Int(i64),
}

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrStr::deserialize(d)
            .map_err(|_| de::Error::custom("expected octal digits such as \"027\""))?
        {
            IntOrStr::Int(n) => Ok(Umask::Int(n)),
            IntOrStr::Str(s) => parse_umask(&s).map(Umask::Octal).map_err(de::Error::custom),
        }
    }
}

/// The umask of `umask = …`, `src` being the config's text.
pub(in crate::plan) fn umask(raw: &toml::Spanned<Umask>, src: &str) -> Result<u32, String> {
    match *raw.get_ref() {
        Umask::Octal(m) => Ok(m),
        Umask::Int(n) => umask_int(n, src.get(raw.span()).unwrap_or_default()),
    }
}

/// A umask given as a TOML integer `n`, written as `written`. TOML reads `27` as decimal, the
/// umask 0o033, where whoever wrote it meant 027 as chmod(1) and umask(1) read it: a decimal
/// integer is refused (but 0, the same in any base), and an octal one (`0o027`) taken.
pub(in crate::plan) fn umask_int(n: i64, written: &str) -> Result<u32, String> {
    let written = written.trim();
    if n == 0 || written.starts_with("0o") {
        return check_umask(n);
    }
    let suggest = if parse_umask(written).is_ok() {
        format!("{written:0>3}")
    } else {
        "027".to_owned()
    };
    Err(format!(
        "{written} is a decimal number in TOML ({n:#o} as a umask); write the octal digits as a \
         string: umask = \"{suggest}\""
    ))
}

macro_rules! checked_int {
    ($name:ident, $check:expr) => {
        #[derive(Debug, Clone, Copy)]
        pub(in crate::plan) struct $name(pub i32);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let check: fn(i64) -> Result<i32, String> = $check;
                check(i64::deserialize(d)?)
                    .map($name)
                    .map_err(de::Error::custom)
            }
        }
    };
}

checked_int!(Nice, check_nice);
checked_int!(OomScoreAdj, check_oom_score_adj);

/// `rlimits = { nofile = 65536, core = 0, stack = { soft = 8388608, hard = "unlimited" } }`.
#[derive(Debug, Default)]
pub(in crate::plan) struct RawRlimits(pub Vec<Rlimit>);

impl<'de> Deserialize<'de> for RawRlimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = RawRlimits;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of limits, e.g. { nofile = 65536, core = 0 }")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawRlimits, A::Error> {
                let mut out: Vec<Rlimit> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    // Checked as the value, so that errors name the limit's own key.
                    let limit = map.next_value_seed(LimitSeed(resource(&name)))?;
                    out.retain(|l| l.resource != limit.resource);
                    out.push(limit);
                }
                Ok(RawRlimits(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// One limit's value, for the resource its key named (or the error its name is).
struct LimitSeed(Result<Resource, String>);

impl<'de> de::DeserializeSeed<'de> for LimitSeed {
    type Value = Rlimit;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Rlimit, D::Error> {
        let resource = self.0.map_err(de::Error::custom)?;
        let LimitPair(soft, hard) = LimitPair::deserialize(d)?;
        check_order(resource, soft, hard).map_err(de::Error::custom)
    }
}

/// A limit: one value for both, or `{ soft, hard }`.
struct LimitPair(u64, u64);

impl<'de> Deserialize<'de> for LimitPair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(OneLimit),
            Both { soft: OneLimit, hard: OneLimit },
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected a number, \"unlimited\", or { soft = …, hard = … } of those",
            )
        })? {
            Raw::One(OneLimit(v)) => Ok(LimitPair(v, v)),
            Raw::Both {
                soft: OneLimit(s),
                hard: OneLimit(h),
            } => Ok(LimitPair(s, h)),
        }
    }
}

/// A number or `"unlimited"`.
struct OneLimit(u64);

impl<'de> Deserialize<'de> for OneLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrStr::deserialize(d)? {
            IntOrStr::Int(n) => u64::try_from(n)
                .map(OneLimit)
                .map_err(|_| de::Error::custom(format!("a limit cannot be negative, got {n}"))),
            IntOrStr::Str(s) => limit_value(&s).map(OneLimit).map_err(de::Error::custom),
        }
    }
}
