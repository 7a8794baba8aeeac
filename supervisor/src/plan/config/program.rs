//! One `[program.NAME]` table to a [`ProgramSpec`], and the checks across programs (`after`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::lines::{program_key_line, program_line, sub_key};
use crate::plan::values::{
    Command, Dur, Factor, Hysteresis, Jitter, Leak, MemSize, NonZeroDur, Replicas, SigName, WarnAt,
};
use crate::plan::{
    check_name, Backoff, HeartbeatSpec, Intensity, LeakPolicy, Measure, MemorySpec, NetPolicy,
    OnLeak, OnViolation, PlanError, ProgramSpec, RestartMode, StopMode, StopSpec,
    DEFAULT_HEARTBEAT_GRACE, DEFAULT_HEARTBEAT_SIGNAL, DEFAULT_HYSTERESIS, DEFAULT_MEMORY_FOR,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProgram {
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_file: Option<PathBuf>,
    #[serde(default)]
    clear_env: bool,
    #[serde(default)]
    user: Option<crate::plan::identity::raw::UserName>,
    #[serde(default)]
    group: Option<crate::plan::identity::raw::GroupName>,
    #[serde(default)]
    umask: Option<toml::Spanned<crate::plan::identity::raw::Umask>>,
    #[serde(default)]
    nice: Option<crate::plan::identity::raw::Nice>,
    #[serde(default)]
    oom_score_adj: Option<crate::plan::identity::raw::OomScoreAdj>,
    #[serde(default)]
    rlimits: Option<crate::plan::identity::raw::RawRlimits>,
    #[serde(default)]
    replicas: Replicas,
    #[serde(default)]
    restart: Option<RestartMode>,
    #[serde(default)]
    backoff: Option<RawBackoff>,
    #[serde(default)]
    intensity: Option<RawIntensity>,
    #[serde(default)]
    stop: Option<RawStop>,
    #[serde(default)]
    memory: Option<RawMemory>,
    #[serde(default)]
    heartbeat: Option<RawHeartbeat>,
    #[serde(default)]
    net: Option<RawNet>,
    #[serde(default)]
    ready: Option<crate::plan::checks::RawReady>,
    #[serde(default)]
    health: Option<crate::plan::checks::RawHealth>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    recycle: Option<RawRecycle>,
    #[serde(default)]
    oom: Option<crate::plan::OomPolicy>,
    #[serde(default)]
    essential: Option<bool>,
    #[serde(default)]
    reload: Option<RawReload>,
}

/// `[program.NAME.reload]`: what `supervise reload-program` does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    #[serde(default)]
    signal: Option<SigName>,
    #[serde(default)]
    exec: Option<Command>,
    #[serde(default)]
    settle: Option<Dur>,
    #[serde(default)]
    timeout: Option<NonZeroDur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    first: Option<Dur>,
    max: Option<Dur>,
    factor: Option<Factor>,
    jitter: Option<Jitter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntensity {
    max: Option<u32>,
    within: Option<NonZeroDur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    signal: Option<SigName>,
    grace: Option<Dur>,
    mode: Option<StopMode>,
    drain: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    #[serde(default)]
    max: Option<MemSize>,
    #[serde(default)]
    measure: Option<Measure>,
    #[serde(default, rename = "for")]
    count: Option<NonZeroU32>,
    #[serde(default)]
    hysteresis: Option<Hysteresis>,
    #[serde(default)]
    warn_at: Option<WarnAt>,
    #[serde(default)]
    leak: Option<Leak>,
    #[serde(default)]
    on_leak: Option<OnLeak>,
    #[serde(default)]
    min_uptime: Option<Dur>,
    #[serde(default)]
    max_unavailable: Option<u32>,
    #[serde(default)]
    ceiling: Option<MemSize>,
    #[serde(default)]
    recycle: Option<crate::plan::RecycleScope>,
    #[serde(default)]
    recycle_before: Option<Dur>,
}

/// `[program.NAME.recycle]`: recycling on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecycle {
    #[serde(default)]
    every: Option<Dur>,
    #[serde(default)]
    jitter: Option<Dur>,
    #[serde(default)]
    requests: Option<u64>,
    #[serde(default)]
    requests_jitter: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    timeout: NonZeroDur,
    #[serde(default)]
    signal: Option<SigName>,
    #[serde(default)]
    grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    listen_allow: Option<Vec<String>>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    on_violation: Option<OnViolation>,
}

/// Validates the table of program `name` into its [`ProgramSpec`], for a supervisor running as
/// `euid`/`egid`. `src` and `path` are the config's text and file (an `env_file` is relative to
/// the file's directory); `at` makes an error point into the file.
pub(super) fn program(
    name: String,
    p: RawProgram,
    src: &str,
    path: Option<&Path>,
    (euid, egid): (u32, u32),
    at: &dyn Fn(Option<usize>, String, String) -> PlanError,
) -> Result<ProgramSpec, PlanError> {
    // Looked for only on an error: it scans the text, and a scan per program would make
    // loading a config of many programs quadratic.
    let line = || program_line(src, &name);
    check_name(&name).map_err(|m| at(line(), format!("program.{name}"), m))?;
    let Some(command) = p.command else {
        return Err(at(
            line(),
            format!("program.{name}.command"),
            "missing: every program needs a command".into(),
        ));
    };
    let d = Backoff::default();
    let backoff = match p.backoff {
        None => d,
        Some(b) => Backoff {
            first: b.first.map_or(d.first, |x| x.0),
            max: b.max.map_or(d.max, |x| x.0),
            factor: b.factor.map_or(d.factor, |x| x.0),
            jitter: b.jitter.map_or(d.jitter, |x| x.0),
        },
    };
    if backoff.max < backoff.first {
        return Err(at(
            line(),
            format!("program.{name}.backoff.max"),
            "must not be shorter than backoff.first".into(),
        ));
    }
    let di = Intensity::default();
    let intensity = p.intensity.map_or(di, |i| Intensity {
        max: i.max.unwrap_or(di.max),
        within: i.within.map_or(di.within, |x| x.0),
    });
    let ds = StopSpec::default();
    let stop = p.stop.map_or(ds, |s| StopSpec {
        signal: s.signal.map_or(ds.signal, |x| x.0),
        grace: s.grace.map_or(ds.grace, |x| x.0),
        mode: s.mode.unwrap_or(ds.mode),
        drain: s.drain.map_or(ds.drain, |x| x.0),
    });
    let mut memory = None;
    let mut leak = None;
    let mut given = crate::plan::handling::Given::default();
    if let Some(r) = &p.recycle {
        given.schedule = crate::plan::Schedule {
            every: r.every.map(|x| x.0),
            jitter: r.jitter.map_or(Duration::ZERO, |x| x.0),
            requests: r.requests,
            requests_jitter: r.requests_jitter.unwrap_or(0),
        };
    }
    if let Some(m) = p.memory {
        given.min_uptime = m.min_uptime.map(|x| x.0);
        given.max_unavailable = m.max_unavailable;
        given.ceiling = m.ceiling.map(|x| x.0);
        given.recycle = m.recycle;
        given.recycle_before = m.recycle_before.map(|x| x.0);
        let key = format!("program.{name}.memory");
        let measure = m.measure.unwrap_or(Measure::Rss);
        if m.max.is_none() && m.leak.is_none() {
            return Err(at(line(), key, "needs `max`, `leak` or both".into()));
        }
        if m.max.is_none() && (m.warn_at.is_some() || m.count.is_some()) {
            return Err(at(
                line(),
                format!("{key}.max"),
                "missing: `for` and `warn_at` need a limit".into(),
            ));
        }
        if m.leak.is_none() && m.on_leak.is_some() {
            return Err(at(
                line(),
                format!("{key}.leak"),
                "missing: `on_leak` needs `leak`".into(),
            ));
        }
        memory = m.max.map(|max| MemorySpec {
            max: max.0,
            measure,
            count: m.count.map_or(DEFAULT_MEMORY_FOR, NonZeroU32::get),
            hysteresis: m.hysteresis.map_or(DEFAULT_HYSTERESIS, |h| h.0),
            warn_at: m.warn_at.map(|w| w.0),
        });
        leak = m.leak.map(|l| LeakPolicy {
            spec: l.0,
            on_leak: m.on_leak.unwrap_or(OnLeak::Restart),
        });
    }
    let handling = given.build(memory.map(|m| m.max)).map_err(|(key, m)| {
        let section = if key.starts_with("recycle.") {
            "recycle"
        } else {
            "memory"
        };
        at(
            program_key_line(src, &name, section),
            format!("program.{name}.{key}"),
            m,
        )
    })?;
    let net = p
        .net
        .map(|n| net_policy(n, &format!("program.{name}.net")))
        .transpose()
        .map_err(|(key, m)| at(line(), key, m))?;
    let ready = p
        .ready
        .map(crate::plan::checks::RawReady::spec)
        .transpose()
        .map_err(|(sub, m)| {
            at(
                program_key_line(src, &name, "ready"),
                sub_key(&format!("program.{name}.ready"), &sub),
                m,
            )
        })?;
    let health = p
        .health
        .map(crate::plan::checks::RawHealth::spec)
        .transpose()
        .map_err(|(sub, m)| {
            at(
                program_key_line(src, &name, "health"),
                sub_key(&format!("program.{name}.health"), &sub),
                m,
            )
        })?;
    let umask = p
        .umask
        .map(|u| crate::plan::identity::raw::umask(&u, src))
        .transpose()
        .map_err(|m| {
            at(
                program_key_line(src, &name, "umask"),
                format!("program.{name}.umask"),
                m,
            )
        })?;
    let mut identity = crate::plan::identity::raw::from_config(
        crate::plan::identity::raw::RawIdentity {
            user: p.user,
            group: p.group,
            umask,
            nice: p.nice,
            oom_score_adj: p.oom_score_adj,
            rlimits: p.rlimits,
            clear_env: p.clear_env,
        },
        euid,
        egid,
    )
    .map_err(|(key, m)| {
        at(
            program_key_line(src, &name, key.name()),
            format!("program.{name}.{}", key.name()),
            m,
        )
    })?;
    // The env file's variables, then `env`'s: a later one wins.
    let mut env: Vec<(String, String)> = match &p.env_file {
        Some(file) => {
            let file = match path.and_then(Path::parent) {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.clone(),
            };
            crate::plan::envfile::load(&file).map_err(|m| {
                at(
                    program_key_line(src, &name, "env_file"),
                    format!("program.{name}.env_file"),
                    m,
                )
            })?
        }
        None => Vec::new(),
    };
    // The file's values are taken as they are: escaped, they expand to themselves.
    for (_, v) in &mut env {
        *v = crate::plan::expand::escape(v);
    }
    // `command`, `cwd` and `env` are templates (`{instance}`, `{8000 + instance}`): checked for
    // every instance now, so that a bad one is refused here rather than at each start.
    let replicas = p.replicas.0;
    let template = |key: &str, t: &str| {
        crate::plan::expand::check(t, &name, replicas).map_err(|m| {
            at(
                program_key_line(src, &name, key),
                format!("program.{name}.{key}"),
                m,
            )
        })
    };
    for arg in &command.0 {
        template("command", arg)?;
    }
    if let Some(cwd) = p.cwd.as_ref().and_then(|c| c.to_str()) {
        template("cwd", cwd)?;
    }
    for v in p.env.values() {
        template("env", v)?;
    }
    env.extend(p.env);
    let oom = p.oom.unwrap_or_default();
    crate::plan::pressure::never_adj(oom, &mut identity, euid);
    let reload = p
        .reload
        .map(reload_spec)
        .transpose()
        .map_err(|(key, m)| {
            at(
                program_key_line(src, &name, "reload"),
                format!("program.{name}.reload.{key}"),
                m,
            )
        })?
        .unwrap_or_default();
    Ok(ProgramSpec {
        name,
        command: command.0,
        cwd: p.cwd,
        env: crate::plan::envfile::dedup_env(env),
        identity,
        replicas: p.replicas.0,
        restart: p.restart.unwrap_or(RestartMode::OnFailure),
        backoff,
        intensity,
        stop,
        memory,
        heartbeat: p.heartbeat.map(|h| HeartbeatSpec {
            timeout: h.timeout.0,
            signal: h.signal.map_or(DEFAULT_HEARTBEAT_SIGNAL, |x| x.0),
            grace: h.grace.map_or(DEFAULT_HEARTBEAT_GRACE, |x| x.0),
        }),
        leak,
        net,
        ready,
        health,
        after: p.after,
        handling,
        oom,
        // Default: a program that gave up ends the run, so a container's orchestrator sees it
        // (docs/lifecycle.md, "Essential programs").
        essential: p.essential.unwrap_or(true),
        reload,
    })
}

/// Validates `[program.NAME.reload]`; an error names the key under `reload` and says why.
fn reload_spec(r: RawReload) -> Result<crate::plan::ReloadSpec, (&'static str, String)> {
    let d = crate::plan::ReloadSpec::default();
    let action = match (r.signal, r.exec) {
        (Some(_), Some(_)) => {
            return Err((
                "exec",
                "give `signal` or `exec`, not both: which one reloads the program?".into(),
            ))
        }
        (Some(sig), None) => crate::plan::ReloadAction::Signal(sig.0),
        (None, Some(cmd)) => crate::plan::ReloadAction::Exec(cmd.0),
        (None, None) => d.action,
    };
    Ok(crate::plan::ReloadSpec {
        action,
        settle: r.settle.map_or(d.settle, |x| x.0),
        timeout: r.timeout.map_or(d.timeout, |x| x.0),
    })
}

/// Every `after` names a program, none its own, and there is no cycle. `Err((program, message))`.
pub(super) fn check_order(programs: &[ProgramSpec]) -> Result<(), (String, String)> {
    // By name, so that a config of many programs is checked in linear time.
    let after: std::collections::HashMap<&str, &[String]> = programs
        .iter()
        .map(|p| (p.name.as_str(), p.after.as_slice()))
        .collect();
    for p in programs {
        for dep in &p.after {
            if dep == &p.name {
                return Err((p.name.clone(), "a program cannot start after itself".into()));
            }
            if !after.contains_key(dep.as_str()) {
                return Err((p.name.clone(), format!("no program named {dep:?}")));
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit<'a>(
        name: &'a str,
        after: &std::collections::HashMap<&'a str, &'a [String]>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), (String, String)> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(i) = path.iter().position(|&p| p == name) {
            let mut cycle: Vec<&str> = path[i..].to_vec();
            cycle.push(name);
            return Err((
                name.to_owned(),
                format!("a cycle: {}", cycle.join(" after ")),
            ));
        }
        path.push(name);
        for dep in after.get(name).copied().unwrap_or_default() {
            visit(dep, after, path, done)?;
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = std::collections::HashSet::new();
    for p in programs {
        visit(&p.name, &after, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// Validates `[program.NAME.net]`; errors name the key (under `key`) and say what is wrong.
fn net_policy(n: RawNet, key: &str) -> Result<NetPolicy, (String, String)> {
    let allow = n
        .allow
        .map(|a| crate::net::AllowList::parse(&a))
        .transpose()
        .map_err(|e| (format!("{key}.allow"), e.to_string()))?;
    let listen_allow = n
        .listen_allow
        .map(|a| crate::net::PortList::parse(&a))
        .transpose()
        .map_err(|e| (format!("{key}.listen_allow"), e.to_string()))?;
    if allow.is_none() && listen_allow.is_none() && n.max_connections.is_none() {
        return Err((
            key.to_owned(),
            "needs `allow`, `listen_allow` or `max_connections`".into(),
        ));
    }
    Ok(NetPolicy {
        allow,
        listen_allow,
        max_connections: n.max_connections,
        on_violation: n.on_violation.unwrap_or(OnViolation::Warn),
    })
}
