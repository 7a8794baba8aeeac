//! What a reload changes in a program, and what each change needs of the running instances.
//!
//! Every key of a [`ProgramSpec`] is classified once, here: a key that shapes the process itself
//! (its argv, directory, environment, credentials, limits, readiness notification) needs a new
//! process, so the replicas are replaced one at a time; any other key is read by the supervisor
//! as the instance runs, so the running instances take it on at once (a new memory limit at the
//! next sample, a new intensity at the next exit). The spec is destructured without `..` below:
//! a key added to it does not compile until it is classified.

use std::fmt::Debug;
use std::time::Duration;

use super::{Identity, ProgramSpec, ReadySpec};

/// What a changed key needs of the running instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Applied to the running instances as they are.
    Live,
    /// Replaced one at a time (a new process is the only way the change can take effect).
    Restart,
    /// Instances added or removed (`replicas`).
    Count,
}

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// As the config writes it (`memory.max`, `identity.user`, `ready`).
    pub key: String,
    pub old: String,
    pub new: String,
    pub needs: Needs,
}

/// What a reload does to one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changed.
    Unchanged,
    /// New in the config: started.
    Added,
    /// Gone from the config: stopped.
    Removed,
    /// Changed keys all apply to the running instances (replicas added or removed as needed).
    Live,
    /// A key needs a new process: the replicas are replaced one at a time.
    Rolling,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Added => "added",
            Outcome::Removed => "removed",
            Outcome::Live => "live",
            Outcome::Rolling => "rolling",
        }
    }
}

/// What the changes of one program amount to.
#[must_use]
pub fn outcome(changes: &[Change]) -> Outcome {
    if changes.iter().any(|c| c.needs == Needs::Restart) {
        Outcome::Rolling
    } else if changes.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Live
    }
}

fn dur(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "none".into(), f)
}

fn dbg<T: Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// A choice as the config spells it (`on-failure`, `never`).
fn word<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(|| "?".into(), |p| p.get_name().to_owned())
}

fn size(b: u64) -> String {
    bytesize::ByteSize(b).to_string()
}

/// Collects changes.
struct Diff(Vec<Change>);

impl Diff {
    fn key<T: PartialEq>(
        &mut self,
        key: &str,
        old: &T,
        new: &T,
        needs: Needs,
        show: impl Fn(&T) -> String,
    ) {
        if old != new {
            self.0.push(Change {
                key: key.to_owned(),
                old: show(old),
                new: show(new),
                needs,
            });
        }
    }
}

/// The keys that differ between `old` and `new` (same program), each with what it needs.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn changes(old: &ProgramSpec, new: &ProgramSpec) -> Vec<Change> {
    use Needs::{Count, Live, Restart};
    let mut d = Diff(Vec::new());
    // Without `..`: a new key must be classified before this compiles.
    let ProgramSpec {
        name: _,
        command,
        cwd,
        env,
        identity,
        replicas,
        restart,
        backoff,
        intensity,
        stop,
        memory,
        heartbeat,
        leak,
        net,
        ready,
        health,
        after,
        handling,
        oom,
        essential,
        reload,
    } = old;
    d.key("command", command, &new.command, Restart, dbg);
    d.key("cwd", cwd, &new.cwd, Restart, |c| {
        opt(c.as_ref(), |p| p.display().to_string())
    });
    // `env_file`'s variables are in `env`: a changed file is a changed `env`.
    d.key("env", env, &new.env, Restart, |e| {
        e.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    identity_changes(&mut d, identity, &new.identity);
    d.key("replicas", replicas, &new.replicas, Count, u32::to_string);
    d.key("restart", restart, &new.restart, Live, word);
    d.key("backoff", backoff, &new.backoff, Live, |b| {
        format!(
            "first {} max {} factor {} jitter {}",
            dur(b.first),
            dur(b.max),
            b.factor,
            b.jitter
        )
    });
    d.key("intensity", intensity, &new.intensity, Live, |i| {
        format!("max {} within {}", i.max, dur(i.within))
    });
    // Compared field by field below: destructured so that a new field must be named here.
    let super::StopSpec {
        signal: _,
        grace: _,
        mode: _,
        drain: _,
    } = stop;
    if let Some(super::MemorySpec {
        max: _,
        measure: _,
        count: _,
        hysteresis: _,
        warn_at: _,
    }) = memory
    {}
    if let Some(ReadySpec {
        how: _,
        every: _,
        timeout: _,
        start_timeout: _,
    }) = ready
    {}
    // Read when a stop begins: a stop already under way keeps the grace it began with.
    d.key("stop.signal", &stop.signal, &new.stop.signal, Live, |s| {
        s.to_string()
    });
    d.key("stop.grace", &stop.grace, &new.stop.grace, Live, |g| {
        dur(*g)
    });
    d.key("stop.mode", &stop.mode, &new.stop.mode, Live, |m| {
        m.as_str().into()
    });
    d.key("stop.drain", &stop.drain, &new.stop.drain, Live, |g| {
        dur(*g)
    });
    // Read at each sample.
    d.key(
        "memory.max",
        &memory.map(|m| m.max),
        &new.memory.map(|m| m.max),
        Live,
        |m| opt(*m, size),
    );
    d.key(
        "memory.measure",
        &memory.map(|m| m.measure),
        &new.memory.map(|m| m.measure),
        Live,
        |m| opt(*m, |m| m.as_str().into()),
    );
    d.key(
        "memory.for",
        &memory.map(|m| m.count),
        &new.memory.map(|m| m.count),
        Live,
        |m| opt(*m, |c| c.to_string()),
    );
    d.key(
        "memory.hysteresis",
        &memory.map(|m| m.hysteresis),
        &new.memory.map(|m| m.hysteresis),
        Live,
        |m| opt(*m, |c| c.to_string()),
    );
    d.key(
        "memory.warn_at",
        &memory.and_then(|m| m.warn_at),
        &new.memory.and_then(|m| m.warn_at),
        Live,
        |m| opt(*m, |c| c.to_string()),
    );
    d.key("heartbeat", heartbeat, &new.heartbeat, Live, |h| {
        opt(h.as_ref(), |h| {
            format!(
                "timeout {} signal {} grace {}",
                dur(h.timeout),
                h.signal,
                dur(h.grace)
            )
        })
    });
    d.key("memory.leak", leak, &new.leak, Live, |l| {
        opt(l.as_ref(), |l| {
            format!(
                "growth {} within {} on_leak {}",
                size(l.spec.growth),
                dur(l.spec.within),
                word(&l.on_leak)
            )
        })
    });
    d.key("net", net, &new.net, Live, dbg);
    ready_changes(&mut d, ready.as_ref(), new.ready.as_ref());
    d.key("health", health, &new.health, Live, |h| {
        opt(h.as_ref(), |h| {
            format!(
                "{:?} every {} timeout {} failures {}",
                h.check,
                dur(h.every),
                dur(h.timeout),
                h.failures
            )
        })
    });
    // Only the order of starts and stops.
    d.key("after", after, &new.after, Live, |a| a.join(", "));
    handling_changes(&mut d, handling, &new.handling);
    // The order of host-pressure victims. (What `never` sets at exec as root is the identity's
    // `oom_score_adj`, classified with it.)
    d.key("oom", oom, &new.oom, Live, word);
    // What a fatal verdict means, and what `reload-program` does: the engine reads them from
    // the program's spec when it needs them, so the running instances take them on as they are.
    d.key(
        "essential",
        essential,
        &new.essential,
        Live,
        bool::to_string,
    );
    d.key("reload", reload, &new.reload, Live, |r| {
        let action = match &r.action {
            super::ReloadAction::Signal(sig) => format!("signal {sig}"),
            super::ReloadAction::Exec(argv) => format!("exec {argv:?}"),
        };
        format!(
            "{action} settle {} timeout {}",
            dur(r.settle),
            dur(r.timeout)
        )
    });
    d.0
}

fn handling_changes(d: &mut Diff, old: &super::Handling, new: &super::Handling) {
    use Needs::Live;
    let super::Handling {
        min_uptime,
        max_unavailable,
        ceiling,
        recycle,
        recycle_before,
        schedule,
    } = old;
    d.key(
        "memory.min_uptime",
        min_uptime,
        &new.min_uptime,
        Live,
        |g| dur(*g),
    );
    d.key(
        "memory.max_unavailable",
        max_unavailable,
        &new.max_unavailable,
        Live,
        u32::to_string,
    );
    d.key("memory.ceiling", ceiling, &new.ceiling, Live, |c| {
        opt(*c, size)
    });
    d.key("memory.recycle", recycle, &new.recycle, Live, word);
    d.key(
        "memory.recycle_before",
        recycle_before,
        &new.recycle_before,
        Live,
        |r| opt(*r, dur),
    );
    // Drawn at each start: an instance running keeps the time it drew.
    d.key("recycle", schedule, &new.schedule, Live, dbg);
}

fn identity_changes(d: &mut Diff, old: &Identity, new: &Identity) {
    use Needs::Restart;
    // All of it is taken between fork and exec.
    let Identity {
        switch,
        user_env,
        umask,
        nice,
        oom_score_adj,
        rlimits,
        clear_env,
    } = old;
    let user = |s: &Option<super::Switch>| s.as_ref().map(|s| (s.user.clone(), s.uid));
    d.key("user", &user(switch), &user(&new.switch), Restart, |s| {
        opt(s.as_ref(), |(u, _)| u.clone())
    });
    let group = |s: &Option<super::Switch>| {
        s.as_ref()
            .map(|s| (s.group.clone(), s.gid, s.groups.clone()))
    };
    d.key("group", &group(switch), &group(&new.switch), Restart, |s| {
        opt(s.as_ref(), |(g, _, _)| g.clone())
    });
    // The user's HOME, USER, LOGNAME and SHELL: follows `user`, or its passwd entry changed.
    d.key(
        "user's environment",
        user_env,
        &new.user_env,
        Restart,
        |e| {
            e.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
    );
    d.key("umask", umask, &new.umask, Restart, |u| {
        opt(*u, |u| format!("{u:04o}"))
    });
    d.key("nice", nice, &new.nice, Restart, |n| {
        opt(*n, |n| n.to_string())
    });
    d.key(
        "oom_score_adj",
        oom_score_adj,
        &new.oom_score_adj,
        Restart,
        |n| opt(*n, |n| n.to_string()),
    );
    d.key("rlimits", rlimits, &new.rlimits, Restart, dbg);
    d.key(
        "clear_env",
        clear_env,
        &new.clear_env,
        Restart,
        bool::to_string,
    );
}

fn ready_changes(d: &mut Diff, old: Option<&ReadySpec>, new: Option<&ReadySpec>) {
    use Needs::{Live, Restart};
    // How the worker tells (a notification fd is a pipe made at spawn; a check, the socket it
    // is given): a new rule is a new process. Its timings are the supervisor's.
    d.key(
        "ready",
        &old.map(|r| &r.how),
        &new.map(|r| &r.how),
        Restart,
        |h| opt(h.as_ref(), dbg),
    );
    let timings = |r: Option<&ReadySpec>| r.map(|r| (r.every, r.timeout, r.start_timeout));
    d.key("ready timings", &timings(old), &timings(new), Live, |t| {
        opt(*t, |(every, timeout, start)| {
            format!(
                "every {} timeout {} start_timeout {}",
                dur(every),
                dur(timeout),
                opt(start, dur)
            )
        })
    });
}

/// The spec a running instance of `running` takes on when the config becomes `new` without a
/// key that needs a new process: what the process was started with, `new`'s for the rest.
#[must_use]
pub fn live(running: &ProgramSpec, new: &ProgramSpec) -> ProgramSpec {
    // Without `..`, as in [`changes`].
    let ProgramSpec {
        name: _,
        command,
        cwd,
        env,
        identity,
        replicas: _,
        restart: _,
        backoff: _,
        intensity: _,
        stop: _,
        memory: _,
        heartbeat: _,
        leak: _,
        net: _,
        ready,
        health: _,
        after: _,
        handling: _,
        oom: _,
        essential: _,
        reload: _,
    } = running;
    let ready = match (ready, &new.ready) {
        (Some(r), Some(n)) if r.how == n.how => Some(n.clone()),
        _ => ready.clone(),
    };
    ProgramSpec {
        name: new.name.clone(),
        command: command.clone(),
        cwd: cwd.clone(),
        env: env.clone(),
        identity: identity.clone(),
        replicas: new.replicas,
        restart: new.restart,
        backoff: new.backoff,
        intensity: new.intensity,
        stop: new.stop,
        memory: new.memory,
        heartbeat: new.heartbeat,
        leak: new.leak,
        net: new.net.clone(),
        ready,
        health: new.health.clone(),
        after: new.after.clone(),
        handling: new.handling,
        oom: new.oom,
        essential: new.essential,
        reload: new.reload.clone(),
    }
}

/// One program's part in a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramChanges {
    pub name: String,
    pub outcome: Outcome,
    pub changes: Vec<Change>,
}

/// What reloading from `old` to `new` does to each program, in `new`'s order, then the removed
/// ones in `old`'s.
#[must_use]
pub fn plan_changes(old: &[ProgramSpec], new: &[ProgramSpec]) -> Vec<ProgramChanges> {
    let mut out: Vec<ProgramChanges> = new
        .iter()
        .map(|n| match old.iter().find(|o| o.name == n.name) {
            None => ProgramChanges {
                name: n.name.clone(),
                outcome: Outcome::Added,
                changes: Vec::new(),
            },
            Some(o) => {
                let changes = changes(o, n);
                ProgramChanges {
                    name: n.name.clone(),
                    outcome: outcome(&changes),
                    changes,
                }
            }
        })
        .collect();
    out.extend(
        old.iter()
            .filter(|o| !new.iter().any(|n| n.name == o.name))
            .map(|o| ProgramChanges {
                name: o.name.clone(),
                outcome: Outcome::Removed,
                changes: Vec::new(),
            }),
    );
    out
}

/// `supervise reload --dry-run`'s answer: one line per program, what the reload does to it,
/// then one line per changed key. `fatal` names the programs given up on: a change starts them
/// afresh.
#[must_use]
pub fn render(programs: &[ProgramChanges], fatal: &[String]) -> String {
    let mut out = String::new();
    for p in programs {
        let was_fatal = fatal.contains(&p.name);
        let how = match p.outcome {
            Outcome::Unchanged => "unchanged".to_owned(),
            Outcome::Added => "added: started".to_owned(),
            Outcome::Removed => "removed: stopped".to_owned(),
            _ if was_fatal => "fatal: started afresh".to_owned(),
            Outcome::Live => {
                let count = p.changes.iter().find(|c| c.needs == Needs::Count);
                match count {
                    Some(c) => format!(
                        "live: no instance restarted; replicas {} → {}",
                        c.old, c.new
                    ),
                    None => "live: no instance restarted".to_owned(),
                }
            }
            Outcome::Rolling => {
                "rolling: instances replaced one at a time, each up before the next".to_owned()
            }
        };
        out.push_str(&format!("{}: {how}\n", p.name));
        for c in &p.changes {
            let needs = match c.needs {
                Needs::Live => "live",
                Needs::Restart => "restart",
                Needs::Count => "replicas",
            };
            out.push_str(&format!("  {}: {} → {} ({needs})\n", c.key, c.old, c.new));
        }
    }
    if out.is_empty() {
        out.push_str("no programs\n");
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests;
