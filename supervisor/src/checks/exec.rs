//! A command check (`exec`): run without a shell or stdio, in its own process group, and
//! tracked as a tree, as a worker is: its members are found through /proc as they fork, the
//! orphans it leaves (reparented to the supervisor) are attributed back to it (see
//! [`super::trees`]), and the lifeline is told of each. When its try ends, whether it exited,
//! timed out or was cancelled with its worker's incarnation, every process of the tree is
//! SIGKILLed, including those that left its group with `setsid` or double-forked away, and the
//! try's result comes once they are gone: a check leaves nothing running.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::trees::{self, Claim, MARK};
use super::Env;
use crate::orphans;
use crate::probe::tree::Tree;
use crate::reaper::Exit;

/// While a tree is being killed, how often it is looked at again (for what was forked or
/// reparented meanwhile), as for a worker's.
const KILL_LOOK: Duration = Duration::from_millis(20);
/// Processes that SIGKILL has not ended after this long (stuck in the kernel) are no longer
/// waited for.
const GIVE_UP: Duration = Duration::from_secs(5);
/// A child of the supervisor whose environment reads empty (mid-`execve`, or empty indeed) is
/// looked at this many times at most, [`KILL_LOOK`] apart, before it is taken for no check's.
const UNKNOWN_LOOKS: u8 = 3;

/// Runs `argv`; Ok if it exits 0 within `timeout`. Returns once nothing of it is left.
pub(super) async fn exec(
    argv: &[String],
    vars: &[(String, String)],
    timeout: Duration,
    env: &Env,
    cancel: &mut oneshot::Receiver<()>,
) -> Result<(), String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "empty command".to_owned())?;
    let mark = trees::new_mark();
    let mut cmd = Command::new(program);
    cmd.args(args)
        // Where supervise itself runs under a supervisor, these are its own, not the check's:
        // they would attribute the check's orphans to a worker.
        .env_remove(child_sdk::ENV_NAME)
        .env_remove(child_sdk::ENV_INSTANCE)
        .env_remove(child_sdk::ENV_CONTROL_FD)
        .env_remove(child_sdk::ENV_SEGMENT_FD)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env(MARK, &mark)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    crate::spawn::helper_pre_exec(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    // A pid_t, always positive: never 0, which `killpg` would take for our own group.
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    // `child` is dropped without wait(): the reaper owns every exit status.
    drop(child);
    let mut run = Run::start(pid, &mark, env);
    let ended = run.wait(timeout, cancel).await;
    run.finish().await;
    match ended {
        Ended::Exited(Exit::Code(0)) => Ok(()),
        Ended::Exited(Exit::Code(c)) => Err(format!("{program} exited with code {c}")),
        Ended::Exited(Exit::Signal(s)) => Err(format!("{program} died of signal {s}")),
        Ended::Lost => Err(format!("{program}: exit status lost")),
        Ended::TimedOut => Err(format!("{program} did not finish within {timeout:?}")),
        Ended::Cancelled => Err("cancelled".to_owned()),
    }
}

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(Exit),
    Lost,
    TimedOut,
    Cancelled,
}

/// One command under way, and its tree.
struct Run<'a> {
    env: &'a Env,
    pid: i32,
    /// The command's exit, until it is reaped.
    exit_rx: Option<oneshot::Receiver<Exit>>,
    tree: Tree,
    /// At the last look, a child of the supervisor could not be told to be the check's or not
    /// (its environment read empty: mid-`execve`): the check is not over until it can, or it
    /// has been looked at [`UNKNOWN_LOOKS`] times.
    unsure: bool,
    /// Those children (pid, start time), and how many looks each has had.
    unknown: Vec<((i32, u64), u8)>,
    /// Killed and gone (or given up on): nothing is left to do when dropped.
    done: bool,
}

impl<'a> Run<'a> {
    /// Registers the command just spawned: its exit (its group SIGKILLed at that instant), the
    /// roots and the checks under way (so the orphan scan leaves it alone and hands it what it
    /// leaves), and its tree, of which the lifeline is told. Before anything can yield: the
    /// reaper must not reap it unseen.
    fn start(pid: i32, mark: &str, env: &'a Env) -> Self {
        let exit_rx = env.reaper.watch_group(pid);
        env.roots.borrow_mut().insert(pid);
        // Unreadable only if it is gone already: then anything may be the check's.
        let start = orphans::stat_of(pid).map_or(0, |s| s.starttime);
        env.trees.borrow_mut().add(pid, start, mark);
        Self {
            env,
            pid,
            exit_rx: Some(exit_rx),
            tree: crate::lifeline::watched_tree(pid, env.lifeline.clone()),
            unsure: false,
            unknown: Vec::new(),
            done: false,
        }
    }

    /// Until the command exits, its timeout runs out or the check is cancelled; its tree is
    /// looked at every sampling period meanwhile, so the lifeline knows of what it forks.
    async fn wait(&mut self, timeout: Duration, cancel: &mut oneshot::Receiver<()>) -> Ended {
        let deadline = Instant::now() + timeout;
        let mut look = crate::probe::grid::on_grid(self.env.sample_every);
        loop {
            let Some(exit_rx) = self.exit_rx.as_mut() else {
                return Ended::Lost;
            };
            // `None`: time for a look.
            let ended = tokio::select! {
                biased;
                exit = exit_rx => Some(exit.map_or(Ended::Lost, Ended::Exited)),
                () = tokio::time::sleep_until(deadline) => Some(Ended::TimedOut),
                _ = &mut *cancel => Some(Ended::Cancelled),
                () = tokio::time::sleep_until(look) => None,
            };
            match ended {
                Some(e) => {
                    if matches!(e, Ended::Exited(_) | Ended::Lost) {
                        self.reaped();
                    }
                    return e;
                }
                None => {
                    self.look(false);
                    look = crate::probe::grid::on_grid(self.env.sample_every);
                }
            }
        }
    }

    /// SIGKILLs the whole tree, on fresh looks, until nothing of it is left.
    async fn finish(&mut self) {
        let give_up = Instant::now() + GIVE_UP;
        loop {
            self.poll_exit();
            self.look(true);
            self.tree.kill();
            if self.exit_rx.is_none() && self.tree.is_empty() && !self.unsure {
                break;
            }
            if Instant::now() >= give_up {
                tracing::warn!(
                    pid = self.pid,
                    processes = self.tree.pids().count(),
                    "processes of an exec check outlived SIGKILL (stuck in the kernel?); no longer waited for"
                );
                break;
            }
            let next = Instant::now() + KILL_LOOK;
            let exited = match self.exit_rx.as_mut() {
                Some(rx) => tokio::select! {
                    _ = rx => true,
                    () = tokio::time::sleep_until(next) => false,
                },
                None => {
                    tokio::time::sleep_until(next).await;
                    false
                }
            };
            if exited {
                self.reaped();
            }
        }
        self.done = true;
        self.release();
    }

    /// Takes the command's exit if the reaper has it: from then on its pid (and group id) is no
    /// longer ours. No reap can come between this and the next yield (the reaper runs on this
    /// thread), so a `killpg` before then reaches the command's own group.
    fn poll_exit(&mut self) {
        if let Some(rx) = self.exit_rx.as_mut() {
            match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {}
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => self.reaped(),
            }
        }
    }

    fn reaped(&mut self) {
        self.exit_rx = None;
        self.tree.root_reaped();
        self.env.roots.borrow_mut().remove(&self.pid);
        self.env.trees.borrow_mut().reaped(self.pid);
    }

    /// Adopts the orphans handed over by the scan and, with `claim`, those among the
    /// supervisor's children that belong to the check; then samples the tree, which finds
    /// what its members forked.
    fn look(&mut self, claim: bool) {
        let handed = self.env.trees.borrow_mut().take_handed(self.pid);
        for pid in handed {
            self.tree.adopt(pid);
        }
        if claim {
            self.unsure = false;
            for pid in orphans::orphans(&self.env.roots) {
                if self.tree.contains(pid) {
                    continue;
                }
                // A zombie, or a process exiting, is only waiting for the reaper.
                let Some(stat) = orphans::living_stat_of(pid) else {
                    continue;
                };
                let claim =
                    self.env
                        .trees
                        .borrow()
                        .claims(self.pid, stat.pgrp, stat.starttime, || trees::mark_of(pid));
                match claim {
                    Claim::Check(_) => {
                        self.tree.adopt(pid);
                    }
                    Claim::Later => self.unsure |= self.unknown_again((pid, stat.starttime)),
                    Claim::No => {}
                }
            }
        }
        self.tree.sample(false);
    }

    /// One more look at a process that could not be told: true while it is worth another.
    fn unknown_again(&mut self, who: (i32, u64)) -> bool {
        let i = match self.unknown.iter().position(|(w, _)| *w == who) {
            Some(i) => i,
            None => {
                self.unknown.push((who, 0));
                self.unknown.len() - 1
            }
        };
        let looks = &mut self.unknown[i].1;
        *looks = looks.saturating_add(1);
        *looks <= UNKNOWN_LOOKS
    }

    /// The check is no longer under way.
    fn release(&self) {
        self.env.roots.borrow_mut().remove(&self.pid);
        self.env.trees.borrow_mut().remove(self.pid);
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before it was finished with (the runtime is going away): one last
            // SIGKILL of everything found. The supervisor's final sweep kills the rest of its
            // children.
            self.poll_exit();
            self.look(true);
            self.tree.kill();
        }
        self.release();
    }
}
