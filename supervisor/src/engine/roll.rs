//! Rolling replacement: the replicas of a program are restarted (an operator's `restart NAME`) or
//! replaced by a new spec (a reload) one at a time, and each waits for the one before it to be
//! up — running and, where it speaks the protocol, `Ready` — so the program never loses more than
//! one replica's capacity (DESIGN.md §6).
//!
//! A replacement that does not come up within [`ROLL_WAIT`] halts the roll with a `roll_halted`
//! event: restarting the next replica would only take more capacity away from a program whose new
//! instances are failing. One that runs but never says `Ready` in that time lets the roll go on,
//! with a warning: it is alive, and a worker that never sends `Ready` must not block restarts
//! forever.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::events::{Event, Kind, Reason};
use crate::plan::ProgramSpec;
use crate::worker::{Command, Up};

/// How long one replica has to come up before the roll stops.
pub(super) const ROLL_WAIT: Duration = Duration::from_secs(60);

/// One program being rolled.
#[derive(Debug)]
pub(super) struct Roll {
    pub program: String,
    /// The spec each instance is replaced with (a reload), or `None` to restart it as it is.
    pub replacement: Option<Rc<ProgramSpec>>,
    /// The next instance to act on.
    next: u32,
    /// The instance acted on last and when: it must be up before the next one is touched.
    waiting: Option<(u32, Instant)>,
}

impl Roll {
    pub fn new(program: String, replacement: Option<Rc<ProgramSpec>>) -> Self {
        Self {
            program,
            replacement,
            next: 0,
            waiting: None,
        }
    }
}

impl Engine {
    /// Starts a roll of `program` (replacing any roll of it already under way).
    pub(super) fn roll(&mut self, program: &str, replacement: Option<Rc<ProgramSpec>>) {
        self.rolls.retain(|r| r.program != program);
        // One thing at a time: a reload of the program under way ends here.
        self.end_program_reload(program, "a restart or replacement of it began");
        self.rolls.push(Roll::new(program.to_owned(), replacement));
        self.advance_rolls();
    }

    /// Moves every roll on as far as it can go now; called when one is started and on the
    /// engine's roll tick while any is under way.
    pub(super) fn advance_rolls(&mut self) {
        let mut rolls = std::mem::take(&mut self.rolls);
        rolls.retain_mut(|r| self.advance(r));
        // A roll started while these were advanced (none today) is kept too.
        rolls.append(&mut self.rolls);
        self.rolls = rolls;
    }

    /// One roll's step; false once it is over (done, halted, or moot).
    fn advance(&mut self, roll: &mut Roll) -> bool {
        if self.stopping > 0 || self.held.contains(&roll.program) {
            return false;
        }
        let Some(replicas) = self
            .plan
            .programs
            .iter()
            .find(|p| p.name == roll.program)
            .map(|p| p.replicas)
        else {
            return false;
        };
        if let Some((i, since)) = roll.waiting {
            match self.up(&roll.program, i, since) {
                Up::Yes => {}
                Up::NotReady if since.elapsed() >= ROLL_WAIT => tracing::warn!(
                    program = %roll.program,
                    instance = i,
                    "running but not ready after {ROLL_WAIT:?}; rolling on"
                ),
                Up::No if since.elapsed() >= ROLL_WAIT => {
                    *self.roll_halts.entry(roll.program.clone()).or_default() += 1;
                    self.output.event(&Event::now(
                        &roll.program,
                        i,
                        None,
                        Kind::RollHalted {
                            waited_s: since.elapsed().as_secs_f64().round(),
                            left: replicas.saturating_sub(i + 1),
                        },
                    ));
                    return false;
                }
                Up::NotReady | Up::No => return true,
            }
            roll.waiting = None;
        }
        while roll.next < replicas {
            let i = roll.next;
            roll.next += 1;
            let slot = self
                .slots
                .values_mut()
                .find(|s| s.spec.name == roll.program && s.instance == i);
            match (slot, &roll.replacement) {
                (Some(slot), None) => {
                    if slot.cmds.send(Command::Restart(Reason::Manual)).is_err() {
                        continue;
                    }
                }
                (Some(slot), Some(spec)) => {
                    // Started anew by `ended` once the old incarnation is gone.
                    slot.replacement = Some(spec.clone());
                    slot.doomed = true;
                    let _ = slot.cmds.send(Command::Stop { signal: None });
                }
                // Not running (stopped for good or never started): nothing to restart.
                (None, None) => continue,
                // The program grew on reload: start the new instance.
                (None, Some(spec)) => {
                    let spec = spec.clone();
                    self.start(&spec, i);
                }
            }
            roll.waiting = Some((i, Instant::now()));
            return true;
        }
        // Old instances beyond a reloaded program's new replica count.
        if roll.replacement.is_some() {
            for s in self
                .slots
                .values()
                .filter(|s| s.spec.name == roll.program && s.instance >= replicas)
            {
                let _ = s.cmds.send(Command::Stop { signal: None });
            }
        }
        false
    }

    /// Whether instance `i` of `program` has a process started after `since` that is up.
    fn up(&self, program: &str, i: u32, since: Instant) -> Up {
        let Some(s) = self
            .slots
            .values()
            .find(|s| s.spec.name == program && s.instance == i)
        else {
            return Up::No;
        };
        if s.shared.started.get().is_none_or(|t| t < since) {
            return Up::No;
        }
        s.shared.up(s.spec.ready.is_some())
    }
}
