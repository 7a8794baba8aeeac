//! The engine: starts a task per worker instance, reaps, routes signals, attributes orphans,
//! reloads the config, and decides the exit code.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::signals::{self, Sig};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::admin;
use crate::events::{Event, Kind};
use crate::logs::Output;
use crate::metrics;
use crate::orphans;
use crate::plan::{Plan, ProgramSpec};
use crate::reaper::{Exit, Reaper};
use crate::spawn::become_subreaper;
use crate::worker::{Command, Counters, Ctx, End, ProgramState, Shared};
use resources::DestroyRead;

/// Exit code when a program went fatal.
pub const EXIT_FATAL: i32 = 1;

struct Slot {
    spec: Rc<ProgramSpec>,
    instance: u32,
    /// The program state its task shares with its siblings: a fatal verdict on a state that
    /// `start` or a reload has since replaced is about what they replaced.
    program: Rc<ProgramState>,
    cmds: mpsc::UnboundedSender<Command>,
    shared: Rc<Shared>,
    /// Stopped by a reload, to be replaced by `replacement` once it has ended.
    replacement: Option<Rc<ProgramSpec>>,
    /// A stop for good (or a kill) was sent to it: restarts are refused.
    doomed: bool,
    /// It runs in a session of its own, holding supervise's terminal (see `spawn::stdio`).
    own_session: bool,
}

struct Engine {
    plan: Plan,
    output: Output,
    reaper: Rc<Reaper>,
    slots: HashMap<u64, Slot>,
    programs: HashMap<String, Rc<ProgramState>>,
    tasks: JoinSet<(u64, End)>,
    next_id: u64,
    /// Orphans already looked at, so each is attributed (or reported) once.
    orphans_seen: HashSet<i32>,
    /// Orphans no worker could claim: killed at shutdown.
    strays: HashSet<i32>,
    /// Orphans that lead a group or session the lifeline watches for them, until they are gone.
    orphan_leaders: HashSet<i32>,
    /// Stop signals (TERM, INT, QUIT) received: the first stops, the second kills.
    stopping: u32,
    any_fatal: bool,
    /// The last exit of the instance that made its program fatal.
    fatal_exit: Option<Exit>,
    /// Restart counts per program and instance, for the supervisor's whole life.
    counters: HashMap<(String, u32), Rc<Counters>>,
    roots: orphans::Roots,
    /// The exec checks under way: their processes are no orphans.
    check_trees: crate::checks::Trees,
    /// Programs an operator stopped (`supervise stop`): kept stopped, and keeping the supervisor
    /// alive, until `supervise start`.
    held: HashSet<String>,
    lifeline: Option<Rc<crate::lifeline::Lifeline>>,
    /// The last exit of each instance (program, instance number), for the exit code.
    last_exits: std::collections::BTreeMap<(String, u32), Exit>,
    /// Stamped on each sampling turn of the loop, for `/healthz`.
    health: Rc<metrics::Health>,
    /// Programs whose replicas are being restarted or replaced one at a time.
    rolls: Vec<roll::Roll>,
    /// Cross-worker probes: disk held, I/O, watched directories.
    resources: resources::Resources,
    /// `--history`: every tick's status appended to a file.
    history: Option<crate::history::History>,
    /// `[alert]`: its running command is a child of ours but no orphan.
    alerter: Option<Arc<crate::alert::Alerter>>,
    /// Where the orphan scan reads our children each tick.
    main_children: orphans::MainChildren,
    /// Programs not started yet because what they start after is not up.
    waiting: std::collections::BTreeMap<String, Rc<ProgramSpec>>,
    /// On a stop of everything: programs left running until what depends on them is gone.
    stop_later: std::collections::BTreeSet<String>,
    /// The command that stop sends.
    stop_cmd: Command,
    /// The notify sockets, one per user workers run as; each worker is given its user's.
    notify: crate::notify::Sockets,
    /// Each notify sender's budget this second.
    notify_intake: crate::notify::Intake,
    /// The host memory-pressure policy, when on.
    pressure: Option<pressure::Host>,
    /// Bumped when host pressure begins (workers read it).
    host_pressure: Rc<std::cell::Cell<u64>>,
    /// What workers watch for memory pressure.
    pressure_watch: Option<crate::pressure::Watch>,
    /// What the notify sockets dropped.
    notify_dropped: notified::Dropped,
    /// Findings about the supervisor as a whole (watched directories, the notify socket) by
    /// kind, for the history.
    own_findings: std::collections::BTreeMap<&'static str, u64>,
    /// The service manager that runs supervise, when it asked to be told (`NOTIFY_SOCKET`).
    manager: Option<crate::notify::Manager>,
    /// Every instance's recent lines, for `supervise logs`.
    buffers: Rc<crate::logs::Buffers>,
    /// Replies kept until their `--wait` action has completed.
    waits: Vec<wait::Wait>,
    /// Rolls halted, per program, for the waits on them.
    roll_halts: HashMap<String, u64>,
    /// Reloads asked for, and the config being loaded for them.
    reload: reload::Reload,
    /// The host's figures for the status header (`top`, the dashboard).
    host: crate::host::HostProbe,
    /// The last hour of each instance's memory, for the charts of `top` and the dashboard.
    trail: crate::trail::Trail,
    /// `reload-program`s under way.
    program_reloads: Vec<reload_program::ProgramReload>,
}

/// The shortest time between two orphan scans that orphans' exits trigger.
const ORPHAN_SCAN_GAP: Duration = Duration::from_millis(10);

/// Runs the plan to its end and returns the process exit code.
pub fn run(plan: Plan) -> anyhow::Result<i32> {
    // Before any thread starts: it edits the environment.
    let manager = crate::notify::Manager::from_env();
    // Before any thread starts, so every thread inherits the mask (see `signals::block`).
    signals::block()?;
    let (mut output, thread) = Output::start(&plan)?;
    // Set before any worker starts, so every output handle offers its events.
    let alerter = plan
        .alert
        .clone()
        .map(|spec| Arc::new(crate::alert::Alerter::start(spec)));
    if let Some(a) = &alerter {
        output.alert_to(a.clone());
    }
    let engine_alerter = alerter.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Its blocking pool (a check's name lookup) is threads of ours too.
        .on_thread_start(signals::block_in_thread)
        .build()?;
    let local = tokio::task::LocalSet::new();
    let sample_every = plan.sample_every;
    let buffers = crate::logs::Buffers::new(usize::try_from(plan.log_buffer).unwrap_or(usize::MAX));
    buffers.sync(plan.programs.iter().map(|p| (p.name.as_str(), p.replicas)));
    let code = local.block_on(&rt, async move {
        let mut engine = Engine {
            plan,
            output,
            reaper: Rc::new(Reaper::default()),
            slots: HashMap::new(),
            programs: HashMap::new(),
            tasks: JoinSet::new(),
            next_id: 0,
            orphans_seen: HashSet::new(),
            strays: HashSet::new(),
            orphan_leaders: HashSet::new(),
            stopping: 0,
            any_fatal: false,
            fatal_exit: None,
            counters: HashMap::new(),
            roots: orphans::Roots::default(),
            check_trees: crate::checks::Trees::default(),
            held: HashSet::new(),
            lifeline: None,
            last_exits: std::collections::BTreeMap::new(),
            health: Rc::new(metrics::Health::new(sample_every)),
            rolls: Vec::new(),
            resources: resources::Resources::default(),
            history: None,
            alerter: engine_alerter,
            main_children: orphans::MainChildren::new(),
            waiting: std::collections::BTreeMap::new(),
            stop_later: std::collections::BTreeSet::new(),
            stop_cmd: Command::Stop { signal: None },
            notify: crate::notify::Sockets::default(),
            notify_intake: crate::notify::Intake::default(),
            pressure: None,
            host_pressure: Rc::default(),
            pressure_watch: None,
            notify_dropped: notified::Dropped::default(),
            own_findings: std::collections::BTreeMap::new(),
            manager,
            buffers,
            waits: Vec::new(),
            roll_halts: HashMap::new(),
            reload: reload::Reload::default(),
            host: crate::host::HostProbe::default(),
            trail: crate::trail::Trail::default(),
            program_reloads: Vec::new(),
        };
        engine.main().await
    });
    // Tasks still parked on the LocalSet (forwarders, the reaper) hold output handles: drop them
    // so the writer threads see their channels close, then wait for every line to be written.
    drop(local);
    drop(rt);
    thread.join(Duration::from_secs(5));
    // The last events (a `fatal`, say) are often the ones worth an alert: deliver what is
    // queued, for a bounded time.
    if let Some(a) = alerter.and_then(Arc::into_inner) {
        a.shutdown(Duration::from_secs(5));
    }
    code
}

impl Engine {
    async fn main(&mut self) -> anyhow::Result<i32> {
        if let Err(e) = become_subreaper() {
            tracing::warn!(error = %e, "cannot become a child subreaper; double-forked processes will escape");
        }
        // SIGCHLD must be handled before the first spawn, or an early exit is noticed late.
        let sigchld = signal(SignalKind::child())?;
        let intake = signals::Intake::open()?;
        // Its exit, if it dies before us (the reaper must know of it before it first reaps).
        let mut lifeline_exit = None;
        match crate::lifeline::Lifeline::start(self.output.clone()) {
            Ok((l, reports)) => {
                // A child of ours but no worker: orphan scans must leave it alone.
                self.roots.borrow_mut().insert(l.pid);
                lifeline_exit = Some(self.reaper.watch(l.pid));
                let l = Rc::new(l);
                tokio::task::spawn_local(l.clone().listen(reports));
                self.lifeline = Some(l);
            }
            Err(e) => {
                let detail = format!("cannot start the lifeline ({e}): processes that left their worker will outlive a SIGKILLed supervisor");
                tracing::warn!(%detail, "no lifeline");
                self.output.event(&Event::now(
                    "supervise",
                    0,
                    None,
                    Kind::LifelineError { detail },
                ));
            }
        }
        // An exit of a process nobody awaits is an orphan's: one was reparented to us, and its
        // own orphans may be now. They are looked for at once, not at the next tick.
        let orphan_exited = Rc::new(tokio::sync::Notify::new());
        let reaper = self.reaper.clone();
        let notify = orphan_exited.clone();
        tokio::task::spawn_local(async move {
            reaper.run(sigchld, |_| notify.notify_one()).await;
        });
        let (calls_tx, mut calls) = mpsc::unbounded_channel();
        // Bound before any worker starts: a bad or busy address changes nothing (exit 2).
        if let Some(addr) = self.plan.metrics {
            let listener = metrics::bind(addr)?;
            let bound = listener.local_addr()?;
            tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz and the dashboard");
            self.output.event(&Event::now(
                "supervise",
                0,
                i32::try_from(std::process::id()).ok(),
                Kind::Listening {
                    addr: bound.to_string(),
                },
            ));
            let dashboard = crate::metrics::web::Dashboard::new(
                self.output.recent(),
                self.buffers.clone(),
                self.plan.http_token.clone(),
                bound,
                self.plan.history.is_some(),
            );
            tokio::task::spawn_local(metrics::serve(
                listener,
                calls_tx.clone(),
                self.health.clone(),
                dashboard,
            ));
        }

        if let Some(h) = &self.plan.history {
            let history = crate::history::History::open(&h.path, Some(h.max))?;
            history.limits(
                self.plan
                    .programs
                    .iter()
                    .map(|p| (p.name.as_str(), p.memory.map(|m| m.max))),
            );
            self.history = Some(history);
            self.trail.seed_from(h.path.clone(), unix_ms());
        }
        self.resources.watch(self.plan.watch_dirs.clone());
        let mut destroy = self.resources.start_net(self.plan.destroy_events);
        if let Some(text) = self.resources.notice.take() {
            self.output.notice(&text);
        }
        // The destroy socket was found empty: look again after DESTROY_GAP, not at once.
        let mut destroy_rest: Option<tokio::time::Instant> = None;
        let admin_path = self.plan.admin.clone().unwrap_or_else(admin::default_path);
        // Beside the control socket; each worker's is bound as it first starts.
        self.notify = crate::notify::Sockets::new(
            admin_path
                .parent()
                .unwrap_or_else(|| std::path::Path::new("/tmp")),
        );
        if let Some(spec) = self.plan.pressure.clone() {
            let dir = admin_path
                .parent()
                .unwrap_or_else(|| std::path::Path::new("/tmp"));
            match pressure::Host::open(spec, dir) {
                Ok(h) => {
                    self.pressure_watch = Some(h.watch());
                    self.pressure = Some(h);
                }
                Err(e) => tracing::warn!(error = %e, "no host memory-pressure policy"),
            }
        }
        if self.pressure_watch.is_none() {
            self.pressure_watch = crate::pressure::kernel_watch();
        }
        for spec in self.plan.programs.clone() {
            self.start_program(Rc::new(spec));
        }
        let serving = match admin::bind(&admin_path) {
            Ok(listener) => {
                tokio::task::spawn_local(admin::serve(listener, calls_tx, self.buffers.clone()));
                Some(admin_path)
            }
            Err(e) if self.plan.admin.is_some() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "no control socket");
                None
            }
        };
        let scan_every = self.plan.sample_every.max(Duration::from_millis(200));
        let mut orphan_scan =
            tokio::time::interval_at(crate::worker::on_grid(scan_every), scan_every);
        orphan_scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // While a roll is under way, how often it looks whether its replacement is up.
        let mut roll_tick = tokio::time::interval(Duration::from_millis(50));
        roll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The service manager's watchdog, when it wants pings: the loop turning is the proof of
        // life.
        let mut watchdog = self
            .manager
            .as_ref()
            .and_then(|m| m.watchdog_every)
            .map(|every| tokio::time::interval(every.max(Duration::from_millis(10))));
        // While programs wait for what they start after, how often that is looked at.
        let mut order_tick = tokio::time::interval(Duration::from_millis(50));
        order_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // While clients wait for their actions to complete, how often that is looked at.
        let mut wait_tick = tokio::time::interval(wait::WAIT_TICK);
        wait_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Orphan scans on orphans' exits, at most one per ORPHAN_SCAN_GAP: a fork bomb of
        // orphans cannot make the loop spin.
        let mut last_scan = tokio::time::Instant::now();
        let mut ticks: u64 = 0;
        let mut scan_due: Option<tokio::time::Instant> = None;

        // A reload under way may start programs: it is waited for (until its deadline).
        while !self.tasks.is_empty()
            || ((!self.held.is_empty() || !self.waiting.is_empty() || self.reload.pending())
                && self.stopping == 0)
        {
            tokio::select! {
                Some(call) = calls.recv() => self.on_call(call.request, call.reply),
                Some(res) = self.tasks.join_next() => match res {
                    Ok((id, end)) => self.ended(id, end),
                    Err(e) => tracing::error!(error = %e, "worker task failed"),
                },
                got = intake.recv() => match got {
                    Ok(got) => self.on_signal(got),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read signals; stopping");
                        self.stop_all(Sig::TERM);
                    }
                },
                _ = tick_opt(watchdog.as_mut()) => {
                    if let Some(m) = &self.manager {
                        m.watchdog();
                    }
                }
                _ = orphan_scan.tick() => {
                    // Start-up done (the third tick), then every TRIM_EVERY ticks: give back the
                    // pages start-up and cold paths left resident (see `trim`).
                    ticks = ticks.wrapping_add(1);
                    if ticks % TRIM_EVERY == 3 {
                        crate::trim::resident();
                    }
                    self.health.tick();
                    self.tell_manager();
                    self.scan_orphans();
                    last_scan = tokio::time::Instant::now();
                    self.probe_resources();
                    self.probe_pressure();
                    let now_ms = unix_ms();
                    let trail_due = self.trail.due(now_ms);
                    if self.history.is_some() || trail_due {
                        let status = self.status();
                        if let Some(h) = &self.history {
                            h.record(now_ms, &status);
                            h.own_findings(&self.own_findings);
                        }
                        if trail_due {
                            self.trail.record(now_ms, &status);
                        }
                    }
                    if let Some(l) = &self.lifeline {
                        l.flush();
                    }
                }
                () = orphan_exited.notified(), if scan_due.is_none() => {
                    let now = tokio::time::Instant::now();
                    if now >= last_scan + ORPHAN_SCAN_GAP {
                        self.scan_orphans();
                        last_scan = now;
                    } else {
                        scan_due = Some(last_scan + ORPHAN_SCAN_GAP);
                    }
                }
                () = sleep_until_some(scan_due) => {
                    scan_due = None;
                    self.scan_orphans();
                    last_scan = tokio::time::Instant::now();
                }
                exit = until_exit(lifeline_exit.as_mut()) => {
                    lifeline_exit = None;
                    if let Some(l) = &self.lifeline {
                        l.exited(exit);
                    }
                }
                _ = roll_tick.tick(), if !self.rolls.is_empty() || !self.program_reloads.is_empty() => {
                    self.advance_rolls();
                    self.advance_program_reloads();
                }
                _ = order_tick.tick(), if !self.waiting.is_empty() => self.advance_order(),
                _ = wait_tick.tick(), if !self.waits.is_empty() => self.advance_waits(),
                () = sleep_until_some(destroy_rest) => destroy_rest = None,
                got = destroy_ready(destroy.as_ref()), if !self.resources.destroy_paused() && destroy_rest.is_none() => {
                    let read = self.resources.read_destroyed();
                    let gone = match got {
                        Ok(mut guard) => {
                            if matches!(read, DestroyRead::Empty | DestroyRead::Paused) {
                                guard.clear_ready();
                            }
                            read == DestroyRead::Gone
                        }
                        Err(_) => true,
                    };
                    if read == DestroyRead::Empty {
                        destroy_rest = Some(tokio::time::Instant::now() + resources::DESTROY_GAP);
                    }
                    if gone {
                        // The probe reads at each tick, or not at all.
                        destroy = None;
                    }
                }
                batch = self.notify.recv() => self.on_notify(batch),
                got = self.reload.next() => self.on_reload(got),
            }
        }
        // Reloads still waiting are answered: nothing loaded now will be applied.
        self.abandon_reload();
        // Alerts of the last events (a `fatal` that ends the run) go out before the sweep kills
        // every child left, for at most a few seconds.
        if let Some(a) = &self.alerter {
            let end = tokio::time::Instant::now() + Duration::from_secs(5);
            while a.pending() > 0 && tokio::time::Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Some(l) = &self.lifeline {
            l.closing();
        }
        self.sweep().await;
        if let Some(h) = self.history.take() {
            h.close();
        }
        // Waiting clients get their answer, followers their end, before the sockets close with
        // the runtime: at most a moment for the answers to be written.
        let answered = self.end_waits();
        self.buffers.close("the supervisor is exiting");
        let now = tokio::time::Instant::now();
        let (least, most) = (
            now + if answered {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            },
            now + Duration::from_millis(200),
        );
        while (self.buffers.followers() > 0 || tokio::time::Instant::now() < least)
            && tokio::time::Instant::now() < most
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(path) = serving {
            let _ = std::fs::remove_file(path);
        }
        Ok(self.exit_code())
    }

    fn exit_code(&self) -> i32 {
        // The instances of the config as it ends: not those a reload removed.
        let lasts: Vec<Exit> = self
            .last_exits
            .iter()
            .filter(|((program, instance), _)| {
                // Nor those of a program that is not essential: it never changes the code.
                self.plan
                    .programs
                    .iter()
                    .any(|p| p.name == *program && *instance < p.replicas && p.essential)
            })
            .map(|(_, &e)| e)
            .collect();
        exit_code::exit_code(exit_code::Ending {
            single: self.plan.single,
            stopped: self.stopping > 0,
            fatal: self.any_fatal.then_some(self.fatal_exit),
            lasts: &lasts,
        })
    }

    fn start(&mut self, spec: &Rc<ProgramSpec>, instance: u32) {
        let program = self.programs.entry(spec.name.clone()).or_default().clone();
        let counters = self
            .counters
            .entry((spec.name.clone(), instance))
            .or_default()
            .clone();
        let shared = Rc::new(Shared {
            counters,
            ..Shared::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let stdio = crate::spawn::stdio::for_plan(&self.plan, spec);
        let kept = self.buffers.buffer(&spec.name, instance);
        kept.set_unseen(stdio.unseen());
        let ctx = Ctx {
            spec: spec.clone(),
            instance,
            program: program.clone(),
            shared: shared.clone(),
            reaper: self.reaper.clone(),
            output: self.output.clone(),
            sample_every: self.plan.sample_every,
            roots: self.roots.clone(),
            check_trees: self.check_trees.clone(),
            lifeline: self.lifeline.clone(),
            notify: self.notify_for(spec),
            pressure_watch: self.pressure_watch.clone(),
            host_pressure: self.host_pressure.clone(),
            kept,
            stdio,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.tasks
            .spawn_local(async move { (id, ctx.run(rx).await) });
        self.slots.insert(
            id,
            Slot {
                spec: spec.clone(),
                instance,
                program,
                cmds: tx,
                shared,
                replacement: None,
                doomed: false,
                own_session: stdio.own_session,
            },
        );
    }

    /// The notify socket for the user `spec`'s workers start as.
    fn notify_for(&mut self, spec: &ProgramSpec) -> Option<Rc<std::path::Path>> {
        let (uid, gid) = match &spec.identity.switch {
            Some(s) => (
                s.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                s.gid,
            ),
            None => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        self.notify.path_for(uid, gid)
    }

    fn ended(&mut self, id: u64, end: End) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if let Some(e) = end.last_exit {
            // The instance's last: an incarnation an operator's `stop` ended is replaced by the
            // one after its `start`.
            self.last_exits
                .insert((slot.spec.name.clone(), slot.instance), e);
        }
        // A verdict on the program as it is now, not on one a reload or `start` replaced while
        // this task was ending.
        let current = self
            .programs
            .get(&slot.spec.name)
            .is_some_and(|p| Rc::ptr_eq(p, &slot.program));
        let verdict = end
            .fatal
            .then(|| essential::on_fatal(slot.spec.essential, current, self.stopping > 0));
        if verdict.is_some_and(|v| v.counts) {
            self.any_fatal = true;
            self.fatal_exit = self.fatal_exit.or(end.last_exit);
        }
        if end.fatal && current {
            // The program is given up on: a roll of it must not start what it has not reached,
            // and its other replicas stop too.
            self.rolls.retain(|r| r.program != slot.spec.name);
            for s in self
                .slots
                .values_mut()
                .filter(|s| s.spec.name == slot.spec.name)
            {
                s.doomed = true;
                let _ = s.cmds.send(Command::Stop { signal: None });
            }
        }
        if verdict.is_some_and(|v| v.end_run) {
            // An essential program gave up: the others are stopped as a TERM would, and the run
            // ends with 1.
            self.output.notice(&format!(
                "{} is essential and was given up on: stopping every program; exit status 1",
                slot.spec.name
            ));
            self.stop_all(Sig::TERM);
        } else if end.fatal && current && !slot.spec.essential {
            self.output.notice(&format!(
                "{} is not essential: the others run on, and the exit status is theirs",
                slot.spec.name
            ));
        }
        if self.stopping > 0 {
            // What this one started after may stop now.
            self.advance_stop();
        }
        if let Some(next) = slot.replacement {
            if self.stopping == 0 {
                // A fresh program state: a reloaded program starts with a clean restart history.
                if slot.instance == 0 {
                    self.programs.remove(&next.name);
                }
                // The roll moves to the next instance once this one is up.
                self.start(&next, slot.instance);
            }
        }
    }
}

/// The next readiness of an optional fd; never, without one.
async fn destroy_ready(
    fd: Option<&AsyncFd<OwnedFd>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

/// Engine ticks between two trims of the supervisor's resident memory (`trim::resident`): about
/// ten minutes at the default 1 s sampling.
const TRIM_EVERY: u64 = 600;

/// The next tick of an optional interval; never, without one.
async fn tick_opt(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Completes at `at`; never with `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A watched process's exit; never without one.
async fn until_exit(rx: Option<&mut tokio::sync::oneshot::Receiver<Exit>>) -> Exit {
    match rx {
        // The reaper dropped the sender: it has stopped, and so has the loop.
        Some(rx) => rx.await.unwrap_or(Exit::Signal(libc::SIGKILL)),
        None => std::future::pending().await,
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod control;
mod essential;
mod exit_code;
mod notified;
mod order;
mod orphan_scan;
mod pressure;
mod reload;
mod reload_program;
mod resources;
mod roll;
mod status;
mod wait;
