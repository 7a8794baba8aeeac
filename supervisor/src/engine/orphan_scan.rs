//! Orphans of the workers, reparented to the supervisor (a child subreaper): attributed to the
//! worker they belong to and held by the lifeline as soon as they are seen (at each tick, and
//! within moments of any orphan's exit), and, at the end, swept. What an exec check left is the
//! check's (see [`crate::checks::trees`]): handed to it, never reported.

use std::collections::HashSet;
use std::time::Duration;

use super::Engine;
use crate::checks::trees::Claim;
use crate::events::{Event, Kind};
use crate::orphans;

impl Engine {
    pub(super) fn kill_strays(&mut self, sig: i32) {
        for &pid in &self.strays {
            // SAFETY: strays are our own unreaped children, so the pid cannot have been reused.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Orphans reparented to us (we are a subreaper) are handed to the worker they belong to
    /// (see [`orphans`]); those no worker claims are reported once and killed at shutdown.
    pub(super) fn scan_orphans(&mut self) {
        let children = self.main_children.read();
        self.orphans_seen
            .retain(|p| children.binary_search(p).is_ok());
        self.strays.retain(|p| children.binary_search(p).is_ok());
        // An orphan that led a group or session is gone: the lifeline no longer needs them
        // for it (what it left in them was reparented to us, and is looked at below).
        let lifeline = self.lifeline.clone();
        self.orphan_leaders.retain(|&p| {
            let here = children.binary_search(&p).is_ok();
            if let (false, Some(l)) = (here, &lifeline) {
                l.forget(p);
            }
            here
        });
        let mut roots: HashSet<i32> = self
            .slots
            .values()
            .filter_map(|s| s.shared.pid.get())
            .collect();
        // An alert command (and its process group) is the alerter's to wait for.
        let alert_group = self.alerter.as_ref().and_then(|a| a.child_pid());
        roots.extend(alert_group);
        // The lifeline is a child of ours but nobody's orphan.
        roots.extend(self.lifeline.as_ref().map(|l| l.pid));
        // Nor is an exec check's command.
        let checks = self.check_trees.clone();
        roots.extend(checks.borrow().roots());
        for &pid in &children {
            if roots.contains(&pid) || self.orphans_seen.contains(&pid) {
                continue;
            }
            // A zombie, or a process exiting, is nobody's orphan. (What a check or a tree
            // being stopped just killed is one, for a moment after the check or the stop is
            // over.)
            let Some(stat) = orphans::living_stat_of(pid) else {
                self.orphans_seen.insert(pid);
                continue;
            };
            let pgid = stat.pgrp;
            // Left by an exec check? Caught mid-`execve` (its environment reads empty), it
            // cannot be told yet: looked at again at the next scan, rather than taken for a
            // stray. (One whose environment is empty indeed waits only while a check that
            // started before it is under way.)
            let check = checks
                .borrow()
                .claimant(pgid, stat.starttime, || crate::checks::trees::mark_of(pid));
            if check == Claim::Later {
                continue;
            }
            self.orphans_seen.insert(pid);
            if alert_group == Some(pgid) {
                continue;
            }
            // Whoever claims it, the lifeline holds it from now on, not from the next sample,
            // with the group and session it leads (it may have called setsid to get there).
            if let Some(l) = &self.lifeline {
                l.watch_process(pid, stat.starttime);
                let joined = crate::probe::tree::Joined {
                    pid,
                    starttime: stat.starttime,
                    pgid,
                    sid: stat.session,
                };
                if l.watch_leader(&joined) {
                    self.orphan_leaders.insert(pid);
                }
            }
            // The check kills it with the rest of its tree.
            if let Claim::Check(root) = check {
                checks.borrow_mut().hand(root, pid);
                continue;
            }
            let owner = self.slots.values().find(|s| {
                orphans::Owner {
                    root: s.shared.pid.get(),
                    name: &s.spec.name,
                    instance: s.instance,
                }
                .claims(pid, pgid)
            });
            match owner {
                Some(s) => s.shared.adopt.borrow_mut().push(pid),
                // Its environment may have been unreadable because it was exiting meanwhile: a
                // process that is dying is nobody's orphan either.
                None if orphans::living_stat_of(pid).is_none() => {}
                None => {
                    self.strays.insert(pid);
                    self.output
                        .event(&Event::now("supervise", 0, Some(pid), Kind::Orphan));
                }
            }
        }
    }

    /// Before exiting: nothing we started may outlive us. Kill every child left (strays, and
    /// orphans reparented during the last stops) until none is left, for at most two seconds.
    pub(super) async fn sweep(&mut self) {
        let end = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let mut left = orphans::our_children();
            // A running alert command (its process group) is delivering the last alerts: the
            // alerter waits for it, with its own deadline, after the engine is done.
            if let Some(group) = self.alerter.as_ref().and_then(|a| a.child_pid()) {
                left.retain(|&p| orphans::pgid_of(p) != Some(group));
            }
            if left.is_empty() || tokio::time::Instant::now() >= end {
                return;
            }
            for pid in left {
                // SAFETY: our own unreaped children: the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
