//! Reloads (`supervise reload`, SIGHUP): the config is loaded on a thread of its own, and the new
//! plan applied on the engine's thread once it has arrived.
//!
//! Loading reads files the config names and looks up users and groups (NSS, which may ask a
//! network directory): none of that may hold up the engine, which must keep answering `status`,
//! sampling, reaping and stopping meanwhile. The files are read without waiting (see
//! [`crate::plan::file`]), but a regular file on a hung file system still blocks its reader, so
//! the reader is a thread the engine does not wait for: at most one at a time, answered within
//! [`LOAD_TIMEOUT`], and left behind if it never returns (the process ends without it).
//!
//! What a reload asked while another loads gets is decided by [`Reloads`], a pure machine over
//! asks, loads, the deadline and stops, table-tested below. A reload asked while one loads is
//! answered by the load that follows (it may have been asked because of an edit the running load
//! read too early), so a burst of reloads costs two loads; a stop wins over a reload under way.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Engine;
use crate::admin::Response;
use crate::plan::{self, Plan, ProgramSpec};
use crate::worker::Command;

/// How long a load may take before its reload is answered as failed. Loading a config takes
/// milliseconds; this is a file system or a user directory that does not answer. Below the
/// client's own wait (10 s), so `supervise reload` gets the reason.
pub(super) const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Most reloads waiting for one load at once (the control socket serves 32 connections).
pub(super) const MAX_WAITING: usize = 8;

/// Where reloads stand. `W` is who asked (a reply to send; a SIGHUP asks with `None` and is told
/// nothing); the actions carry the loaded plan, `P`.
#[derive(Debug)]
pub(super) struct Reloads<W> {
    loading: Option<Loading<W>>,
}

impl<W> Default for Reloads<W> {
    fn default() -> Self {
        Self { loading: None }
    }
}

#[derive(Debug)]
struct Loading<W> {
    since: Instant,
    /// Answered with this load's outcome.
    waiting: Vec<W>,
    /// Asked while this load ran: another load follows, and these get its outcome. `Some`
    /// (perhaps empty, for a SIGHUP) when one is to follow.
    again: Option<Vec<W>>,
    /// Answered already (its deadline passed, or a stop came): its outcome is dropped.
    dropped: bool,
}

/// What the engine is to do.
#[derive(Debug, PartialEq)]
pub(super) enum Action<W, P> {
    /// Start loading the config on a thread.
    Load,
    /// Apply the plan, and tell these it was.
    Apply(P, Vec<W>),
    /// Tell these the reload failed, and why (the running config is kept).
    Fail(Vec<W>, String),
    /// A load's outcome came after its reload was answered: say it was dropped.
    Drop,
}

impl<W> Reloads<W> {
    /// A reload is asked for (by `who`, or by SIGHUP with `None`).
    pub(super) fn ask<P>(
        &mut self,
        who: Option<W>,
        now: Instant,
        stopping: bool,
    ) -> Vec<Action<W, P>> {
        if stopping {
            return vec![Action::Fail(
                who.into_iter().collect(),
                "supervise is stopping; reload refused".into(),
            )];
        }
        let Some(l) = &mut self.loading else {
            self.loading = Some(Loading {
                since: now,
                waiting: who.into_iter().collect(),
                again: None,
                dropped: false,
            });
            return vec![Action::Load];
        };
        if l.dropped {
            return vec![Action::Fail(
                who.into_iter().collect(),
                format!(
                    "the last reload has been reading the config for {}s and has not returned \
                     (a file system or user directory that does not answer?); try again once it \
                     has",
                    now.saturating_duration_since(l.since).as_secs()
                ),
            )];
        }
        let again = l.again.get_or_insert_with(Vec::new);
        if let Some(w) = who {
            if l.waiting.len() + again.len() >= MAX_WAITING {
                return vec![Action::Fail(
                    vec![w],
                    format!("{MAX_WAITING} reloads are waiting already; try again"),
                )];
            }
            again.push(w);
        }
        Vec::new()
    }

    /// The load finished with `outcome`.
    pub(super) fn loaded<P>(
        &mut self,
        outcome: Result<P, String>,
        now: Instant,
    ) -> Vec<Action<W, P>> {
        let Some(l) = self.loading.take() else {
            return Vec::new();
        };
        if l.dropped {
            return vec![Action::Drop];
        }
        let mut out = vec![match outcome {
            Ok(plan) => Action::Apply(plan, l.waiting),
            Err(e) => Action::Fail(l.waiting, e),
        }];
        if let Some(waiting) = l.again {
            self.loading = Some(Loading {
                since: now,
                waiting,
                again: None,
                dropped: false,
            });
            out.push(Action::Load);
        }
        out
    }

    /// A load is under way and its outcome will be applied.
    pub(super) fn pending(&self) -> bool {
        self.loading.as_ref().is_some_and(|l| !l.dropped)
    }

    /// When the load under way is to be given up on, if one is and it is not yet.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.loading
            .as_ref()
            .filter(|l| !l.dropped)
            .map(|l| l.since + LOAD_TIMEOUT)
    }

    /// The deadline passed: every reload waiting fails; the load's outcome will be dropped.
    pub(super) fn overdue<P>(&mut self, now: Instant) -> Vec<Action<W, P>> {
        match &self.loading {
            Some(l) if !l.dropped && now >= l.since + LOAD_TIMEOUT => self.drop_all(format!(
                "reading the config took more than {}s (a file system or user directory that \
                 does not answer?)",
                LOAD_TIMEOUT.as_secs()
            )),
            _ => Vec::new(),
        }
    }

    /// Supervise is stopping: every reload waiting fails, and nothing loaded is applied.
    pub(super) fn stop<P>(&mut self) -> Vec<Action<W, P>> {
        self.drop_all("supervise is stopping; reload abandoned".into())
    }

    fn drop_all<P>(&mut self, why: String) -> Vec<Action<W, P>> {
        let Some(l) = self.loading.as_mut().filter(|l| !l.dropped) else {
            return Vec::new();
        };
        l.dropped = true;
        let mut all = std::mem::take(&mut l.waiting);
        all.extend(l.again.take().unwrap_or_default());
        vec![Action::Fail(all, why)]
    }
}

/// Dry runs reading the config at once, at most: each is a thread of its own, which a file
/// system that does not answer could hold for ever.
const MAX_DRY_RUNS: usize = 2;

/// The reloads, and the load under way, of the engine.
#[derive(Debug, Default)]
pub(super) struct Reload {
    machine: Reloads<oneshot::Sender<Response>>,
    /// Dry runs under way (`reload --dry-run`).
    dry_runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The loading thread's outcome, while one runs.
    rx: Option<oneshot::Receiver<Result<Box<Plan>, String>>>,
}

/// What happened to a load.
pub(super) enum Progress {
    Loaded(Result<Box<Plan>, String>),
    Overdue,
}

impl Reload {
    /// A load is under way and its outcome will be applied.
    pub(super) fn pending(&self) -> bool {
        self.machine.pending()
    }

    /// The next thing to happen to the load under way; never, without one.
    pub(super) async fn next(&mut self) -> Progress {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        let deadline = self.machine.deadline();
        tokio::select! {
            got = rx => {
                self.rx = None;
                // The thread ended without an answer: it panicked.
                Progress::Loaded(got.unwrap_or_else(|_| Err("the config loader failed".into())))
            }
            () = super::sleep_until_some(deadline.map(tokio::time::Instant::from_std)) => {
                Progress::Overdue
            }
        }
    }
}

impl Engine {
    /// `supervise reload` (with its reply) or SIGHUP (`None`).
    pub(super) fn ask_reload(&mut self, reply: Option<oneshot::Sender<Response>>) {
        if self.plan.source.is_none() {
            if let Some(r) = reply {
                let _ = r.send(Response::Error {
                    message: "nothing to reload: not started with -c".into(),
                });
            }
            return;
        }
        let actions = self
            .reload
            .machine
            .ask(reply, Instant::now(), self.stopping > 0);
        self.carry_out(actions);
    }

    /// `supervise reload --dry-run`: the config is read on a thread of its own, as for a reload,
    /// and compared there with the running plan; the answer says what a reload would do. Nothing
    /// is applied, and the reloads' own machine is not involved.
    pub(super) fn dry_run(&mut self, reply: oneshot::Sender<Response>) {
        use std::sync::atomic::Ordering;
        let Some(path) = self.plan.source.clone() else {
            let _ = reply.send(Response::Error {
                message: "nothing to reload: not started with -c".into(),
            });
            return;
        };
        let count = self.reload.dry_runs.clone();
        if count.fetch_add(1, Ordering::SeqCst) >= MAX_DRY_RUNS {
            count.fetch_sub(1, Ordering::SeqCst);
            let _ = reply.send(Response::Error {
                message: format!(
                    "{MAX_DRY_RUNS} dry runs are reading the config already; try again"
                ),
            });
            return;
        }
        let running = self.plan.programs.clone();
        let fatal: Vec<String> = running
            .iter()
            .filter(|p| self.is_fatal(&p.name))
            .map(|p| p.name.clone())
            .collect();
        let spawned = std::thread::Builder::new()
            .name("reload-dry-run".into())
            .spawn(move || {
                let answer = match plan::load_config(&path) {
                    Ok(new) => Response::Ok {
                        message: plan::changes::render(
                            &plan::changes::plan_changes(&running, &new.programs),
                            &fatal,
                        ),
                    },
                    Err(e) => Response::Error {
                        message: format!("a reload would fail, the running config kept: {e}"),
                    },
                };
                count.fetch_sub(1, Ordering::SeqCst);
                let _ = reply.send(answer);
            });
        if let Err(e) = spawned {
            self.reload.dry_runs.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start a thread for a reload dry run");
        }
    }

    pub(super) fn on_reload(&mut self, got: Progress) {
        let now = Instant::now();
        let actions = match got {
            Progress::Loaded(outcome) => self.reload.machine.loaded(outcome, now),
            Progress::Overdue => self.reload.machine.overdue(now),
        };
        self.carry_out(actions);
    }

    /// A stop wins over a reload under way.
    pub(super) fn abandon_reload(&mut self) {
        let actions = self.reload.machine.stop();
        self.carry_out(actions);
    }

    fn carry_out(&mut self, actions: Vec<Action<oneshot::Sender<Response>, Box<Plan>>>) {
        let Some(path) = self.plan.source.clone() else {
            return;
        };
        for a in actions {
            match a {
                Action::Load => self.start_load(&path),
                Action::Apply(plan, replies) => {
                    let message = self.apply_reload(&path, *plan);
                    for r in replies {
                        let _ = r.send(Response::Ok {
                            message: message.clone(),
                        });
                    }
                }
                Action::Fail(replies, why) => {
                    tracing::error!(config = %path.display(), error = %why, "reload failed; keeping the running config");
                    let message = format!("reload failed, the running config is kept: {why}");
                    for r in replies {
                        let _ = r.send(Response::Error {
                            message: message.clone(),
                        });
                    }
                }
                Action::Drop => tracing::warn!(
                    config = %path.display(),
                    "a reload answered as failed has finished reading the config; what it read is dropped"
                ),
            }
        }
    }

    /// Loads the config on a thread of its own; its outcome comes to [`Reload::next`].
    fn start_load(&mut self, path: &Path) {
        let (tx, rx) = oneshot::channel();
        let p = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let _ = tx.send(
                    plan::load_config(&p)
                        .map(Box::new)
                        .map_err(|e| e.to_string()),
                );
            });
        match spawned {
            Ok(_) => self.reload.rx = Some(rx),
            Err(e) => {
                let actions = self.reload.machine.loaded(
                    Err(format!("cannot start a thread to load it: {e}")),
                    Instant::now(),
                );
                self.carry_out(actions);
            }
        }
    }

    /// A program changed in keys its running instances take on as they are (see
    /// [`plan::changes`]): each instance, and each replacement a roll under way is to start, gets
    /// the new spec but for what its process was started with; the count grows or shrinks from
    /// `old_replicas`.
    fn update_live(&mut self, old_replicas: u32, spec: &Rc<ProgramSpec>) {
        for s in self.slots.values_mut().filter(|s| s.spec.name == spec.name) {
            let merged = plan::changes::live(&s.spec, spec);
            if merged != *s.spec {
                let merged = Rc::new(merged);
                s.spec = merged.clone();
                let _ = s.cmds.send(Command::Update(merged));
            }
            if let Some(r) = &mut s.replacement {
                *r = Rc::new(plan::changes::live(r, spec));
            }
        }
        for r in self.rolls.iter_mut().filter(|r| r.program == spec.name) {
            if let Some(to) = &mut r.replacement {
                *to = Rc::new(plan::changes::live(to, spec));
            }
        }
        for i in old_replicas..spec.replicas {
            if !self
                .slots
                .values()
                .any(|s| s.spec.name == spec.name && s.instance == i)
            {
                self.start(spec, i);
            }
        }
        for s in self
            .slots
            .values()
            .filter(|s| s.spec.name == spec.name && s.instance >= spec.replicas)
        {
            let _ = s.cmds.send(Command::Stop { signal: None });
        }
    }

    /// Applies a reloaded config. Removed programs stop, new ones start, changed ones take the
    /// change on as they run or, where a key needs a new process, are replaced one replica at a
    /// time; unchanged ones keep running.
    fn apply_reload(&mut self, path: &Path, new: Plan) -> String {
        tracing::info!(config = %path.display(), "reloading");
        if let Some(m) = &mut self.manager {
            // READY=1 again once every program is up (the next sampling tick looks).
            m.reloading();
        }
        let old: HashMap<String, ProgramSpec> = self
            .plan
            .programs
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let mut changed = Vec::new();
        // Fatal programs that changed: started once the plan is the new one.
        let mut fresh = Vec::new();
        for spec in &new.programs {
            let spec_rc = Rc::new(spec.clone());
            match old.get(&spec.name) {
                None => self.start_program(spec_rc),
                Some(o) if o == spec => {}
                Some(_) if self.is_fatal(&spec.name) => {
                    // Given up on, and changed (its replica count too): started afresh, as
                    // `supervise start` would, with its restart history forgotten. Instances
                    // still being stopped are replaced as they end.
                    self.programs.remove(&spec.name);
                    if self.slots.values().any(|s| s.spec.name == spec.name) {
                        changed.push(spec_rc);
                    } else {
                        fresh.push(spec_rc);
                    }
                }
                Some(o)
                    if plan::changes::outcome(&plan::changes::changes(o, spec))
                        != plan::changes::Outcome::Rolling =>
                {
                    // Nothing that needs a new process: the running instances take the change
                    // on as they are, and instances are added or removed for a new count.
                    self.update_live(o.replicas, &spec_rc);
                }
                Some(_) => {
                    self.programs
                        .entry(spec.name.clone())
                        .or_default()
                        .fatal
                        .set(false);
                    changed.push(spec_rc);
                }
            }
        }
        for name in old.keys() {
            if !new.programs.iter().any(|p| &p.name == name) {
                for s in self.slots.values().filter(|s| &s.spec.name == name) {
                    let _ = s.cmds.send(Command::Stop { signal: None });
                }
                // Out of the config, out of view; and should it come back, it starts afresh
                // rather than fatal already.
                if self.is_fatal(name) {
                    self.programs.remove(name);
                }
            }
        }
        self.plan.programs = new.programs;
        self.buffers.sync(
            self.plan
                .programs
                .iter()
                .map(|p| (p.name.as_str(), p.replicas)),
        );
        if self.plan.watch_dirs != new.watch_dirs {
            self.resources.watch(new.watch_dirs.clone());
            self.plan.watch_dirs = new.watch_dirs;
        }
        if let Some(h) = &self.history {
            h.limits(
                self.plan
                    .programs
                    .iter()
                    .map(|p| (p.name.as_str(), p.memory.map(|m| m.max))),
            );
        }
        for spec in fresh {
            self.start_program(spec);
        }
        // Rolled once the plan holds the new replica counts.
        for spec in changed {
            self.roll(&spec.name.clone(), Some(spec));
        }
        format!("reloaded {}", path.display())
    }
}

#[cfg(test)]
mod tests;
