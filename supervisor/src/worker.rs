//! One task per worker instance: it carries out what the instance's [`Lifecycle`] decides, and
//! feeds it every input (commands, the process's exit, sample verdicts, timers). The decisions
//! live in [`crate::lifecycle`]; this file only spawns, signals, waits and reports.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::events::{Event, Kind, Reason};
use crate::lifecycle::{self, Action, Input, Lifecycle};
use crate::logs::{Output, Source};
use crate::orphans;
use crate::plan::ProgramSpec;
use crate::policy::{self, History};
use crate::probe::tree::TreeSample;
use crate::reaper::{Exit, Reaper};
use crate::signals::Sig;
use crate::status::{Phase, Totals};

/// The sampling grid is the probes' (`probe::grid`).
pub(crate) use crate::probe::grid::on_grid;

/// What the engine can ask of a worker task. Every command is fed to the instance's lifecycle,
/// whatever phase it is in: none is ever dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Stop gracefully (stop signal or `Shutdown`, grace, SIGKILL) and do not start again;
    /// `signal` overrides the program's stop signal.
    Stop { signal: Option<Sig> },
    /// Stop at once with SIGKILL and do not start again (a second TERM/INT to the supervisor).
    Kill,
    /// Restart now, gracefully.
    Restart(Reason),
    /// Restart now, the tree SIGKILLed without a grace period.
    KillRestart(Reason),
    /// A reload changed only keys the running instance takes on as it is (see
    /// [`crate::plan::changes`]): from now on, this is its spec.
    Update(Rc<ProgramSpec>),
}

/// What the worker task is to do with a command: feed it to the lifecycle, or take on a spec.
enum Turn {
    Input(Input),
    Update(Rc<ProgramSpec>),
}

impl From<Command> for Turn {
    fn from(c: Command) -> Self {
        Turn::Input(match c {
            Command::Stop { signal } => Input::Stop { signal },
            Command::Kill => Input::Kill,
            Command::Restart(r) => Input::Restart(r),
            Command::KillRestart(r) => Input::KillRestart(r),
            Command::Update(spec) => return Turn::Update(spec),
        })
    }
}

/// How a worker task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The last exit of its process, if it ever ran.
    pub last_exit: Option<Exit>,
    /// The program exceeded its restart intensity.
    pub fatal: bool,
}

/// The counts of one instance (program and instance number) that the engine keeps for the
/// supervisor's whole life: restarts, findings, and [`Totals`] over every incarnation. None of
/// them ever goes backwards, across restarts, `stop`/`start` and reloads.
#[derive(Debug, Default)]
pub struct Counters {
    pub restarts: Cell<u32>,
    /// The same, by reason (indexed by [`Reason::index`]).
    pub by: Cell<[u64; Reason::ALL.len()]>,
    /// Findings raised about the instance, by kind (the history draws each rise).
    findings: RefCell<BTreeMap<&'static str, u64>>,
    /// The totals of the incarnations that ended.
    carried: RefCell<Totals>,
    /// The totals last shown.
    shown: RefCell<Totals>,
    /// Not a count, but kept as long: the instance's last exit and when it was seen, so an
    /// instance without a process (fatal, stopped) still tells how it ended.
    last_exit: Cell<Option<(Exit, SystemTime)>>,
}

impl Counters {
    fn count(&self, reason: Reason) {
        self.restarts.set(self.restarts.get().saturating_add(1));
        let mut by = self.by.get();
        by[reason.index()] = by[reason.index()].saturating_add(1);
        self.by.set(by);
    }

    /// Findings raised about the instance, by kind, as the status shows them.
    pub fn findings(&self) -> BTreeMap<String, u64> {
        self.findings
            .borrow()
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect()
    }

    fn found(&self, kind: &'static str) {
        count_finding(&mut self.findings.borrow_mut(), kind);
    }

    /// The lifetime totals, given the running incarnation's own (zero when none runs).
    pub fn totals(&self, current: &Totals) -> Totals {
        let mut t = self.carried.borrow().clone();
        t.add(current);
        t.at_least(&self.shown.borrow());
        self.shown.replace(t.clone());
        t
    }

    /// An incarnation ended with these totals: they are carried into every later figure.
    fn carry(&self, last: &Totals) {
        self.carried.borrow_mut().add(last);
    }

    /// The instance's latest process exited now (or could not be started: code 127).
    pub(crate) fn exited(&self, exit: Exit) {
        self.last_exit.set(Some((exit, SystemTime::now())));
    }

    /// The instance's last exit and when it was seen, if it ever ran.
    #[must_use]
    pub fn last_exit(&self) -> Option<(Exit, SystemTime)> {
        self.last_exit.get()
    }
}

/// State shared between a worker task and the engine (single-threaded: `Rc` + `Cell`).
#[derive(Debug, Default)]
pub struct Shared {
    /// Pid of the running worker process (its process group id too), while it is unreaped.
    pub pid: Cell<Option<i32>>,
    /// Orphans the engine attributed to this worker, to be tracked from the next sample on.
    pub adopt: RefCell<Vec<i32>>,
    /// Last sample of the tree.
    pub last: Cell<Option<TreeSample>>,
    /// Pids of the tree's live members as of the last sample (empty when not running): what the
    /// engine's per-tick probes (sockets, deleted files, block I/O) attribute to this worker.
    pub members: RefCell<Vec<i32>>,
    /// The open fds of each of `members` (same order), as of the last sample: the socket probe
    /// reads them instead of asking the kernel again.
    pub member_fds: RefCell<Vec<u64>>,
    /// Disk figures of this incarnation's tree (deleted-but-open files, I/O rates, block-I/O
    /// delay), written by the engine's probes.
    pub disk: Cell<crate::disk::WorkerDisk>,
    /// Sockets of this incarnation's tree as of the engine's last dump.
    pub net: RefCell<Option<crate::net::NetSample>>,
    /// The worker said `Ready` (this incarnation).
    pub ready: Cell<bool>,
    /// The worker said hello: it speaks the protocol (this incarnation).
    pub speaks: Cell<bool>,
    /// The worker's latest self-report from its segment (this incarnation, SDK workers only).
    pub report: RefCell<Option<crate::events::Report>>,
    /// Where in its lifecycle the instance is.
    pub phase: Cell<Phase>,
    /// A stop for good was received: restarts are refused.
    pub for_good: Cell<bool>,
    /// When the running process was started.
    pub started: Cell<Option<Instant>>,
    /// The argv the latest process was started with, templates expanded.
    pub argv: RefCell<Vec<String>>,
    /// The pid of the latest process, running or not (for the events that follow its exit).
    pub last_pid: Cell<Option<i32>>,
    /// What the worker said on the notify socket (this incarnation).
    pub notified: RefCell<Notified>,
    /// Restarts of this instance during the supervisor's life.
    pub counters: Rc<Counters>,
    /// This instance's restarts still in the intensity window: what its backoff grows with.
    pub restarts: RefCell<crate::policy::History>,
    /// Kinds of the findings raised about this instance, latest last (at most 8 kept).
    pub findings: RefCell<Vec<&'static str>>,
    /// The incarnation that ended was stopped for memory too soon (`limit_too_low`): kept for
    /// the restart decision that follows its end.
    pub too_soon: Cell<bool>,
    /// The tree's members as of the last sample, when it has more than one.
    pub member_status: RefCell<Vec<crate::status::MemberStatus>>,
}

/// What a worker said on the notify socket, this incarnation.
#[derive(Debug, Default, Clone)]
pub struct Notified {
    /// `STATUS=`.
    pub status: Option<String>,
    /// `MAINPID=`, if that process is in the tree.
    pub main_pid: Option<i32>,
    /// `ERRNO=`.
    pub errno: Option<i32>,
    /// The last `WATCHDOG=1`, CLOCK_MONOTONIC ns (0: never).
    pub watchdog_ns: u64,
    /// `WATCHDOG=trigger` came.
    pub triggered: bool,
    /// `EXTEND_TIMEOUT_USEC=`: the start timeout does not run out before this.
    pub extended_until: Option<Instant>,
    /// `RELOADING=1` said so far (where its readiness is `notify`): a program reload waits for
    /// the `READY=1` after it.
    pub reloadings: u64,
}

/// Where an instance stands for whoever waits for it to be up (a roll, `/readyz`, a program
/// that starts after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    Yes,
    /// Running, not ready yet (by its readiness rule, or its `Ready` if it speaks the protocol).
    NotReady,
    No,
}

/// A worker that has not said hello this long after it started is taken as not speaking the
/// protocol, and ready when running (it has no readiness rule).
pub const HELLO_GRACE: Duration = Duration::from_secs(1);

impl Shared {
    /// Whether the instance is up; `rule` tells whether its program has a readiness rule (then
    /// the rule alone decides).
    #[must_use]
    pub fn up(&self, rule: bool) -> Up {
        let Some(started) = self.started.get() else {
            return Up::No;
        };
        if self.phase.get() != Phase::Running {
            return Up::No;
        }
        let ready = if rule || self.speaks.get() {
            self.ready.get()
        } else {
            started.elapsed() >= HELLO_GRACE
        };
        if ready {
            Up::Yes
        } else {
            Up::NotReady
        }
    }

    /// The running incarnation's latest sample of its tree: none before its first one (until
    /// then `last` still holds the previous process's final sample, whose figures are not this
    /// process's).
    #[must_use]
    pub fn sample(&self) -> Option<TreeSample> {
        let started = self.started.get()?;
        self.last.get().filter(|s| s.at >= started)
    }

    /// The running incarnation's own totals (zero when none runs).
    #[must_use]
    pub fn current_totals(&self) -> Totals {
        let mut t = Totals::default();
        if self.started.get().is_none() {
            return t;
        }
        if let Some(s) = self.sample() {
            t.cpu_seconds = s.cpu_seconds;
        }
        let d = self.disk.get();
        t.read_bytes = d.read_bytes;
        t.write_bytes = d.write_bytes;
        t.blkio_delay_s = d.blkio_delay_s;
        if let Some(n) = self.net.borrow().as_ref() {
            t.sent_bytes = n.acked_total;
            t.received_bytes = n.received_total;
        }
        if let Some(r) = self.report.borrow().as_ref() {
            t.counters = r
                .metrics
                .iter()
                .filter(|(k, _)| !r.gauges.contains(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
        }
        t
    }
}

/// State of a program shared by its replicas.
#[derive(Debug, Default)]
pub struct ProgramState {
    pub history: RefCell<History>,
    pub fatal: Cell<bool>,
    /// The program's instances, for the capacity guard (who else is out).
    pub instances: RefCell<BTreeMap<u32, std::rc::Weak<Shared>>>,
}

impl ProgramState {
    /// How many of the program's instances other than `me` are not up.
    #[must_use]
    pub fn others_out(&self, me: u32, rule: bool) -> u32 {
        let n = self
            .instances
            .borrow()
            .iter()
            .filter(|(&i, _)| i != me)
            .filter_map(|(_, s)| s.upgrade())
            .filter(|s| s.up(rule) != Up::Yes)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// Everything a worker task needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub spec: Rc<ProgramSpec>,
    pub instance: u32,
    pub program: Rc<ProgramState>,
    pub shared: Rc<Shared>,
    pub reaper: Rc<Reaper>,
    pub output: Output,
    pub sample_every: Duration,
    pub roots: orphans::Roots,
    /// The exec checks under way, where the orphan scan finds them.
    pub check_trees: crate::checks::Trees,
    /// Kills the trees' escaped descendants if the supervisor is SIGKILLed.
    pub lifeline: Option<Rc<crate::lifeline::Lifeline>>,
    /// The supervisor's notify socket, given to the worker as `NOTIFY_SOCKET`.
    pub notify: Option<Rc<std::path::Path>>,
    /// What the worker watches for memory pressure (`MEMORY_PRESSURE_WATCH`).
    pub pressure_watch: Option<crate::pressure::Watch>,
    /// Bumped each time the host comes under memory pressure: SDK workers are then sent
    /// `MemoryPressure`.
    pub host_pressure: Rc<Cell<u64>>,
    /// Where the instance's recent lines are kept (`supervise logs`), across incarnations.
    pub kept: Rc<crate::logs::Buffer>,
    /// Where its fds 0, 1 and 2 go, and whether its lines are prefixed.
    pub stdio: crate::spawn::stdio::Stdio,
}

/// Remembers a finding's kind among the instance's latest (at most 8 kept), and counts it.
pub(crate) fn note_finding(shared: &Shared, kind: &'static str) {
    shared.counters.found(kind);
    let mut findings = shared.findings.borrow_mut();
    if findings.len() == 8 {
        findings.remove(0);
    }
    findings.push(kind);
}

impl Ctx {
    fn event(&self, pid: Option<i32>, kind: Kind) {
        if let Kind::Finding { kind: f, .. } = &kind {
            note_finding(&self.shared, f);
        }
        self.output
            .event(&Event::now(&self.spec.name, self.instance, pid, kind));
    }

    /// What the lifecycle needs of the program's policies.
    fn lifecycle_config(&self) -> lifecycle::Config {
        let hb = self.spec.heartbeat;
        lifecycle::Config {
            stop_signal: self.spec.stop.signal,
            grace: self.spec.stop.grace,
            mode: self.spec.stop.mode,
            hung_signal: hb.map_or(crate::plan::DEFAULT_HEARTBEAT_SIGNAL, |h| h.signal),
            hung_grace: hb.map_or(crate::plan::DEFAULT_HEARTBEAT_GRACE, |h| h.grace),
            within: self.spec.intensity.within,
            drain: self.spec.stop.drain,
        }
    }

    /// Runs the instance until it is stopped for good, ends as its restart mode allows, or the
    /// program goes fatal.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>) -> End {
        let src = Source::new(&self.spec.name, self.instance, self.stdio.prefix);
        let mut life = Lifecycle::new(self.lifecycle_config());
        self.program
            .instances
            .borrow_mut()
            .insert(self.instance, Rc::downgrade(&self.shared));
        let mut inc: Option<running::Incarnation> = None;
        // A stop queued before the first start (a TERM during a mass start) comes first.
        let mut inputs = VecDeque::new();
        while let Ok(cmd) = cmds.try_recv() {
            match Turn::from(cmd) {
                Turn::Input(i) => inputs.push_back(i),
                Turn::Update(spec) => self.update(spec, &mut life, &mut inc),
            }
        }
        inputs.push_back(Input::Begin);
        loop {
            while let Some(input) = inputs.pop_front() {
                let mut actions: VecDeque<Action> = life.on(input, Instant::now()).into();
                while let Some(action) = actions.pop_front() {
                    // Spawn and Decide are answered at once, before anything else is fed.
                    if let Some(answer) = self.execute(action, &mut inc, &src).await {
                        for a in life.on(answer, Instant::now()).into_iter().rev() {
                            actions.push_front(a);
                        }
                    }
                }
                self.shared.phase.set(life.status());
                self.shared.for_good.set(life.for_good());
            }
            if life.finished() {
                let mut instances = self.program.instances.borrow_mut();
                if instances
                    .get(&self.instance)
                    .is_some_and(|s| std::ptr::eq(s.as_ptr(), Rc::as_ptr(&self.shared)))
                {
                    instances.remove(&self.instance);
                }
                return End {
                    last_exit: life.last_exit(),
                    fatal: life.status() == Phase::Fatal,
                };
            }
            match self.next_input(&life, &mut inc, &mut cmds).await {
                Turn::Input(i) => inputs.push_back(i),
                Turn::Update(spec) => self.update(spec, &mut life, &mut inc),
            }
        }
    }

    /// Takes on a spec that differs only in keys read while the instance runs: the lifecycle's
    /// next stop, restart decision and timers use it, and the running incarnation's samples,
    /// checks and limits follow it. A stop under way keeps the grace it began with.
    fn update(
        &mut self,
        spec: Rc<ProgramSpec>,
        life: &mut Lifecycle,
        inc: &mut Option<running::Incarnation>,
    ) {
        let old = std::mem::replace(&mut self.spec, spec);
        life.configure(self.lifecycle_config());
        if let Some(i) = inc.as_mut() {
            self.updated(i, &old);
        }
    }

    /// Carries out one action; returns the answer the lifecycle asked for, if any.
    async fn execute(
        &self,
        action: Action,
        inc: &mut Option<running::Incarnation>,
        src: &std::sync::Arc<Source>,
    ) -> Option<Input> {
        // A tree given up on (stragglers that SIGKILL could not end in time) is finished with
        // before the decision about it is carried out.
        if matches!(action, Action::Decide { .. } | Action::Event(Kind::Stopped)) {
            self.ended(inc).await;
        }
        let pid = self.shared.last_pid.get();
        match action {
            Action::Spawn => Some(match self.spawn(src) {
                Ok(i) => {
                    *inc = Some(i);
                    Input::Spawned
                }
                Err(e) => {
                    self.shared.counters.exited(Exit::Code(127));
                    self.event(None, Kind::SpawnFailed { error: e });
                    Input::SpawnFailed
                }
            }),
            Action::Shutdown { .. } => {
                let sent = inc.as_ref().is_some_and(|i| self.ask_to_stop(i));
                (!sent).then_some(Input::ShutdownUndelivered)
            }
            Action::Signal { sig, whom } => {
                if let Some(i) = inc.as_mut() {
                    self.stop_signal(i, sig, whom);
                }
                None
            }
            Action::Kill => {
                if let Some(i) = inc.as_mut() {
                    let root = i.root_unreaped().then_some(i.pid());
                    let processes = self.kill(i);
                    if processes > 0 {
                        self.event(root, Kind::Killed { processes });
                    }
                }
                None
            }
            Action::Event(kind) => {
                match &kind {
                    Kind::Restarting { reason, .. } => self.shared.counters.count(*reason),
                    Kind::Fatal { .. } => self.program.fatal.set(true),
                    _ => {}
                }
                self.event(pid, kind);
                None
            }
            Action::Decide { exit, requested } => {
                let rules = policy::Rules {
                    mode: self.spec.restart,
                    backoff: &self.spec.backoff,
                    intensity: &self.spec.intensity,
                    too_soon: self.shared.too_soon.take(),
                };
                Some(Input::Decided(rules.after_exit_of(
                    &mut self.program.history.borrow_mut(),
                    &mut self.shared.restarts.borrow_mut(),
                    exit,
                    requested,
                    Instant::now(),
                    rand01(),
                )))
            }
            Action::Finish => None,
        }
    }

    /// Waits for the next input: a command, the root's exit, a timer the lifecycle asked for, or
    /// what the running process's samples and channel say; during a stop, the end of the tree.
    async fn next_input(
        &self,
        life: &Lifecycle,
        inc: &mut Option<running::Incarnation>,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Turn {
        let deadline = life.deadline().map(tokio::time::Instant::from_std);
        let stopping = life.is_stopping();
        let running = life.status() == Phase::Running;
        // The first look at a tree being stopped is at once, without a timer (tokio rounds even
        // a zero-length sleep up to its next 1 ms tick): a root that just exited may have left
        // nothing behind, and the next start must not wait for a poll.
        if stopping {
            if let Some(i) = inc.as_mut() {
                if self.poll_stop(i) {
                    self.ended(inc).await;
                    return Turn::Input(Input::TreeGone);
                }
            }
        }
        // Kept across turns of the loop: a worker's packets must not put off the next look.
        let mut next_poll = tokio::time::Instant::now() + STOP_POLL;
        loop {
            let (exit_rx, watched) = running::parts(inc);
            tokio::select! {
                biased;
                cmd = cmds.recv() => {
                    // The engine dropped its end: it is going away, so is the worker.
                    return cmd.map_or(Turn::Input(Input::Stop { signal: None }), Turn::from);
                }
                exit = running::exit(exit_rx) => {
                    self.reaped(inc, exit);
                    return Turn::Input(Input::Exited(exit));
                }
                () = sleep_until_opt(deadline) => return Turn::Input(Input::Timer),
                input = self.watch(watched, running, life.held_to_ceiling().then_some(life.is_draining())), if running || stopping => {
                    if let Some(input) = input {
                        return Turn::Input(input);
                    }
                }
                () = tokio::time::sleep_until(next_poll), if stopping => {
                    next_poll += STOP_POLL;
                    if let Some(i) = inc.as_mut() {
                        if self.poll_stop(i) {
                            self.ended(inc).await;
                            return Turn::Input(Input::TreeGone);
                        }
                    } else {
                        return Turn::Input(Input::TreeGone);
                    }
                }
            }
        }
    }
}

/// How often a tree being stopped is looked at: for members that appeared (forks, orphans
/// reparented to the supervisor) and for its end.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Sleeps until `at`, or forever.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One more finding of `kind` in a count by kind (an instance's, or the supervisor's own).
pub(crate) fn count_finding(by: &mut BTreeMap<&'static str, u64>, kind: &'static str) {
    let n = by.entry(kind).or_default();
    *n = n.saturating_add(1);
}

/// A duration in whole milliseconds, as events carry them.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the SDK stamps heartbeats with.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A uniform number in [0, 1) for backoff jitter; quality does not matter, independence between
/// replicas does (they must not restart in lockstep).
fn rand01() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 32) | 1
        });
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

mod ready;
mod recycle;
mod running;
mod verdict;
mod watch;

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(cpu: f64, sent: u64, requests: u64) -> Totals {
        Totals {
            cpu_seconds: cpu,
            sent_bytes: sent,
            counters: [("requests".to_owned(), requests)].into(),
            ..Totals::default()
        }
    }

    #[test]
    fn lifetime_totals_never_go_backwards() {
        let c = Counters::default();
        assert_eq!(c.totals(&totals(1.0, 100, 5)), totals(1.0, 100, 5));
        // A member exits: the sum over live members drops; what was shown stays.
        assert_eq!(c.totals(&totals(0.5, 100, 5)), totals(1.0, 100, 5));
        assert_eq!(c.totals(&totals(1.5, 150, 7)), totals(1.5, 150, 7));
        // The incarnation ends; the next starts from zero on its own counts.
        c.carry(&totals(1.5, 150, 7));
        assert_eq!(c.totals(&Totals::default()), totals(1.5, 150, 7));
        assert_eq!(c.totals(&totals(0.25, 10, 1)), totals(1.75, 160, 8));
        c.count(Reason::Manual);
        c.count(Reason::Manual);
        assert_eq!(c.restarts.get(), 2);
        assert_eq!(c.by.get()[Reason::Manual.index()], 2);
    }

    fn sample_at(at: Instant, rss: u64, cpu_seconds: f64) -> TreeSample {
        TreeSample {
            at,
            procs: 1,
            rss,
            pss: None,
            cpu_seconds,
            cpu_percent: 0.0,
            threads: 1,
            fds: 3,
            read_bytes: 0,
            write_bytes: 0,
            io_at: at,
            vsize: 0,
            root_state: b'S',
        }
    }

    #[test]
    fn a_new_process_has_no_figures_until_its_first_sample() {
        let shared = Shared::default();
        let t0 = Instant::now();
        // The previous process's final sample, then a restart.
        shared.last.set(Some(sample_at(t0, 40 << 20, 7.0)));
        let started = t0 + Duration::from_millis(5);
        shared.started.set(Some(started));
        shared.pid.set(Some(1234));
        assert_eq!(
            shared.sample(),
            None,
            "the old figure is not the new process's"
        );
        assert!(shared.current_totals().cpu_seconds.abs() < f64::EPSILON);
        let first = sample_at(started + Duration::from_millis(1), 1 << 20, 0.01);
        shared.last.set(Some(first));
        assert_eq!(shared.sample(), Some(first));
        shared.started.set(None);
        assert_eq!(shared.sample(), None, "no incarnation, no figures");
    }

    #[test]
    fn noted_findings_are_counted_by_kind_and_outlast_the_latest_eight() {
        let shared = Shared::default();
        for _ in 0..10 {
            note_finding(&shared, "leak");
        }
        note_finding(&shared, "hung");
        assert_eq!(
            shared.findings.borrow().len(),
            8,
            "only the latest kinds are listed"
        );
        let by = shared.counters.findings();
        assert_eq!(by.get("leak"), Some(&10));
        assert_eq!(by.get("hung"), Some(&1));
        assert_eq!(by.len(), 2);
    }
}
