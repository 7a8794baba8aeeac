//! The host memory-pressure policy, carried out ([`crate::pressure`] decides): each tick reads
//! the host, feeds the gate, tells workers when pressure begins, and, when the gate opens,
//! restarts the tree that explains it (or only says which, with `on = "warn"`), one at a time.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Engine;
use crate::events::{Event, Kind, Reason};
use crate::plan::{PressureOn, PressureSpec};
use crate::pressure::{
    self, source, Candidate, Gate, GateState, HostSample, Pacer, Verdict, Watch, PRESSURE_WRITE,
};
use crate::worker::Command;

/// How long each tree's memory is remembered, for its growth.
const GROWTH_WINDOW: Duration = Duration::from_secs(60);
/// How long the host's available memory is remembered, for its rate of fall.
const FALL_WINDOW: Duration = Duration::from_secs(20);
/// Last lines of the victim's output carried by the `pressure` event.
const EVIDENCE_LINES: usize = 10;

/// The policy's state between ticks.
#[derive(Debug)]
pub(super) struct Host {
    spec: PressureSpec,
    gate: Gate,
    state: GateState,
    pacer: Pacer,
    source: source::Source,
    /// The latest reading, for `status` and the metrics.
    pub(super) last: Option<HostSample>,
    available: VecDeque<(Instant, u64)>,
    trees: HashMap<u64, VecDeque<(Instant, u64)>>,
    /// The last victim: its slot, its pid then, and when SIGKILL replaces its grace.
    victim: Option<(u64, i32, Instant)>,
    /// A FIFO workers watch (replayed traces, where the kernel's PSI would not fire): a byte
    /// per worker is written into it when pressure begins.
    fifo: Option<(PathBuf, OwnedFd)>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some((path, _)) = &self.fifo {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Host {
    /// The policy with its source: the trace to replay, else the kernel (an error if it keeps
    /// no PSI). `dir` is where a replay's FIFO goes.
    pub(super) fn open(spec: PressureSpec, dir: &Path) -> Result<Self, String> {
        let (source, fifo) = match &spec.replay {
            Some(path) => {
                let trace = source::Trace::load(path)?;
                let fifo =
                    make_fifo(&dir.join(format!("supervise-pressure.{}.fifo", std::process::id())))
                        .map_err(|e| format!("the pressure FIFO: {e}"))?;
                (source::Source::Trace(trace), Some(fifo))
            }
            None => {
                (
                    source::Source::Kernel(source::Kernel::open().map_err(|e| {
                        format!("{}: {e} (a kernel without PSI)", source::PSI_MEMORY)
                    })?),
                    None,
                )
            }
        };
        Ok(Self {
            gate: Gate {
                full: spec.full,
                available: spec.available / 100.0,
                hold: spec.hold,
            },
            spec,
            state: GateState::default(),
            pacer: Pacer::default(),
            source,
            last: None,
            available: VecDeque::new(),
            trees: HashMap::new(),
            victim: None,
            fifo,
        })
    }

    /// What workers should watch: the replay's FIFO, else the kernel's PSI file.
    pub(super) fn watch(&self) -> Watch {
        match &self.fifo {
            Some((path, _)) => Watch {
                path: path.clone(),
                write: None,
            },
            None => Watch {
                path: PathBuf::from(source::PSI_MEMORY),
                write: Some(PRESSURE_WRITE),
            },
        }
    }
}

/// A FIFO at `path`, readable by every worker, held open (read and write, non-blocking) so that
/// writes never block and never fail for want of a reader.
fn make_fifo(path: &Path) -> std::io::Result<(PathBuf, OwnedFd)> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644))?;
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok((path.to_owned(), fd))
}

impl Engine {
    /// One tick of the policy.
    pub(super) fn probe_pressure(&mut self) {
        let Some(mut host) = self.pressure.take() else {
            return;
        };
        self.pressure_tick(&mut host, Instant::now());
        self.pressure = Some(host);
    }

    fn pressure_tick(&mut self, host: &mut Host, now: Instant) {
        let Some(sample) = host.source.read(now) else {
            return;
        };
        host.last = Some(sample);
        remember(&mut host.available, now, sample.mem_available, FALL_WINDOW);
        host.trees.retain(|id, _| self.slots.contains_key(id));
        for (&id, slot) in &self.slots {
            if let Some(s) = slot.shared.sample() {
                let ring = host.trees.entry(id).or_default();
                remember(ring, now, s.pss.unwrap_or(s.rss), GROWTH_WINDOW);
            }
        }
        let gone = host.victim.is_some_and(|(id, pid, _)| {
            self.slots
                .get(&id)
                .is_none_or(|s| s.shared.pid.get() != Some(pid))
        });
        if let Some((id, _, kill_at)) = host.victim {
            if gone {
                host.victim = None;
            } else if now >= kill_at {
                // The grace the host could afford has run out.
                if let Some(s) = self.slots.get(&id) {
                    let _ = s.cmds.send(Command::KillRestart(Reason::Pressure));
                }
                host.victim = Some((id, 0, Instant::now() + Duration::from_secs(3600)));
            }
        }
        host.pacer.reading(host.victim.is_none());
        match host.gate.observe(&mut host.state, now, &sample) {
            Verdict::Calm | Verdict::Building { first: false, .. } => {}
            Verdict::Building { first: true, .. } => self.pressure_begins(host, &sample),
            Verdict::Act if host.pacer.may_act() => self.pressure_act(host, &sample, now),
            Verdict::Act => {}
        }
    }

    /// Both signals hold: workers are told, before anyone is stopped.
    fn pressure_begins(&mut self, host: &Host, sample: &HostSample) {
        self.host_pressure
            .set(self.host_pressure.get().wrapping_add(1));
        if let Some((_, fd)) = &host.fifo {
            let bytes = vec![b'!'; self.slots.len().clamp(1, 4096)];
            // SAFETY: write(2) from a buffer we own, of its length, to an fd we hold; a full
            // FIFO (nobody reads) just takes fewer bytes.
            let _ = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        }
        self.own_finding(
            "memory_pressure",
            "the host is short of memory: workers told (MemoryPressure, their pressure watch)"
                .into(),
            host_numbers(sample),
        );
    }

    /// The gate is open: the best victim goes (or is named).
    fn pressure_act(&mut self, host: &mut Host, sample: &HostSample, now: Instant) {
        let candidates: Vec<(u64, Candidate)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.shared.pid.get().is_some() && !s.doomed)
            .map(|(&id, s)| {
                let ring = host.trees.get(&id);
                let samples: Vec<(Instant, u64)> = ring
                    .map(|r| r.iter().copied().collect())
                    .unwrap_or_default();
                let program = self.programs.get(&s.spec.name);
                let siblings = program.is_some_and(|p| {
                    p.others_out(s.instance, s.spec.ready.is_some())
                        < s.spec.replicas.saturating_sub(1)
                });
                (
                    id,
                    Candidate {
                        program: s.spec.name.clone(),
                        instance: s.instance,
                        bytes: samples.last().map_or(0, |&(_, b)| b),
                        growth: pressure::growth(&samples),
                        oom: s.spec.oom,
                        ready_siblings: siblings,
                    },
                )
            })
            .collect();
        let just: Vec<Candidate> = candidates.iter().map(|(_, c)| c.clone()).collect();
        let ranked = pressure::rank(&just, sample.mem_total);
        let Some(victim) = ranked.first() else {
            return;
        };
        let Some(&(id, _)) = candidates
            .iter()
            .find(|(_, c)| c.program == victim.program && c.instance == victim.instance)
        else {
            return;
        };
        host.pacer.acted();
        host.state.reset();
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        let fall = fall_rate(&host.available);
        let grace = pressure::grace(slot.spec.stop.grace, sample.mem_available, fall);
        let pid = slot.shared.pid.get().unwrap_or(0);
        let lines = crate::logs::Buffers::recent(
            &[self.buffers.buffer(&victim.program, victim.instance)],
            EVIDENCE_LINES,
        )
        .into_iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
        let heap = slot.shared.report.borrow().as_ref().map(|r| r.heap_bytes);
        let restart = host.spec.on == PressureOn::Restart;
        self.output.event(&Event::now(
            &victim.program,
            victim.instance,
            Some(pid),
            Kind::Pressure {
                action: if restart { "restart" } else { "warn" },
                bytes: victim.bytes,
                growth_bytes_per_s: victim.growth.max(0.0) as u64,
                oom: victim.oom.as_str(),
                mem_available: sample.mem_available,
                mem_total: sample.mem_total,
                full_avg10: sample.psi.full_avg10,
                some_avg10: sample.psi.some_avg10,
                grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                heap_bytes: heap,
                last_lines: lines,
            },
        ));
        if restart {
            let _ = slot.cmds.send(Command::Restart(Reason::Pressure));
            host.victim = Some((id, pid, now + grace));
        }
    }

    /// The host memory-pressure policy as `status` shows it, when on.
    pub(super) fn pressure_policy(&self) -> Option<crate::status::PressurePolicy> {
        let spec = &self.pressure.as_ref()?.spec;
        Some(crate::status::PressurePolicy {
            on: match spec.on {
                PressureOn::Restart => "restart".into(),
                PressureOn::Warn => "warn".into(),
            },
            full: spec.full,
            available: spec.available,
            hold_s: spec.hold.as_secs_f64(),
        })
    }

    /// A finding about the supervisor as a whole.
    fn own_finding(
        &mut self,
        kind: &'static str,
        detail: String,
        numbers: std::collections::BTreeMap<&'static str, u64>,
    ) {
        crate::worker::count_finding(&mut self.own_findings, kind);
        self.output.event(&Event::now(
            "supervise",
            0,
            i32::try_from(std::process::id()).ok(),
            Kind::Finding {
                kind,
                detail,
                numbers,
            },
        ));
    }
}

/// The host figures a finding carries.
fn host_numbers(s: &HostSample) -> std::collections::BTreeMap<&'static str, u64> {
    [
        ("mem_available", s.mem_available),
        ("mem_total", s.mem_total),
        ("full_avg10_permille", (s.psi.full_avg10 * 10.0) as u64),
        ("some_avg10_permille", (s.psi.some_avg10 * 10.0) as u64),
    ]
    .into()
}

/// Keeps `(now, value)`, and what is younger than `window`.
fn remember(ring: &mut VecDeque<(Instant, u64)>, now: Instant, value: u64, window: Duration) {
    ring.push_back((now, value));
    while ring
        .front()
        .is_some_and(|&(t, _)| now.saturating_duration_since(t) > window)
    {
        ring.pop_front();
    }
}

/// How fast the host's available memory falls, bytes a second (negative: it rises).
fn fall_rate(available: &VecDeque<(Instant, u64)>) -> f64 {
    let v: Vec<(Instant, u64)> = available.iter().copied().collect();
    -pressure::growth(&v)
}
