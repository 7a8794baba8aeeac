//! The supervisor's exit code, decided from how the run ended (see "Exit codes" in
//! docs/lifecycle.md).

use crate::reaper::Exit;

use super::EXIT_FATAL;

/// How the run ended, as far as its exit code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ending<'a> {
    /// Single-command mode (else a config).
    pub single: bool,
    /// Whether a TERM, INT or QUIT to supervise stopped the run (else it ended by itself: no
    /// program left to run or restart).
    pub stopped: bool,
    /// Whether a program went fatal, and the last exit of the first one that did.
    pub fatal: Option<Option<Exit>>,
    /// The last exit of each instance of the config as it ends (of its last incarnation: not
    /// of one an operator's `stop` ended before a `start`).
    pub lasts: &'a [Exit],
}

/// The code supervise exits with.
///
/// - A program went fatal: in single-command mode its last status (as tini passes on its
///   child's), unless that was 0, for giving up is never a success; else 1.
/// - Single-command mode: the program's own status, 128+N for signal N (one instance); with
///   replicas, the status their last exits share, else 1. So `supervise --replicas 2 -- CMD`
///   stopped by TERM exits 143 when both died of the forwarded TERM, as one instance does (and
///   as tini passes on its child's), 0 when both exited 0 on it; a stop that one replica
///   answered otherwise (killed at the end of its grace, 137; its own code) exits 1.
/// - Config mode stopped by a signal to supervise: 0, whatever the programs' statuses (the
///   operator ended the run; the stop signal's own exits are no failures).
/// - Config mode that ended by itself: 1 if any instance's last exit was a failure (a non-zero
///   code or a signal), else 0, as single-command mode with replicas.
pub(super) fn exit_code(e: Ending<'_>) -> i32 {
    if let Some(last) = e.fatal {
        return match last.map(Exit::as_shell_code) {
            Some(code) if e.single && code != 0 => code,
            _ => EXIT_FATAL,
        };
    }
    let all_ok = e.lasts.iter().all(|x| x.success());
    match (e.single, e.lasts) {
        (true, [first, rest @ ..]) if rest.iter().all(|x| x == first) => first.as_shell_code(),
        (true, _) | (false, _) if all_ok => 0,
        (true, _) => 1,
        (false, _) if e.stopped => 0,
        (false, _) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = Exit::Code(0);
        let three = Exit::Code(3);
        let term = Exit::Signal(libc::SIGTERM);
        let end = |single, stopped, fatal, lasts| {
            exit_code(Ending {
                single,
                stopped,
                fatal,
                lasts,
            })
        };
        // (single, stopped by a signal, fatal, last exits) -> code
        type Row<'a> = (bool, bool, Option<Option<Exit>>, &'a [Exit], i32);
        let kill = Exit::Signal(libc::SIGKILL);
        let rows: [Row<'_>; 25] = [
            (true, false, None, &[], 0),
            (true, false, None, &[ok], 0),
            (true, false, None, &[three], 3),
            (true, true, None, &[term], 143),
            (true, false, None, &[Exit::Signal(32)], 160),
            (true, false, None, &[ok, ok], 0),
            (true, false, None, &[ok, three], 1),
            // Replicas stopped by TERM: as one instance, when they all answered it alike.
            (true, true, None, &[term, term], 143),
            (true, true, None, &[term, term, term, term], 143),
            (true, true, None, &[ok, ok], 0),
            (true, true, None, &[term, kill], 1),
            (true, true, None, &[term, ok], 1),
            (true, false, None, &[three, three], 3),
            (true, false, None, &[three, Exit::Code(4)], 1),
            (true, false, Some(Some(three)), &[three], 3),
            (true, false, Some(Some(ok)), &[ok], 1),
            (true, false, Some(None), &[], 1),
            (false, false, Some(Some(three)), &[three], 1),
            (false, true, Some(Some(three)), &[term], 1),
            (false, true, None, &[term, term], 0),
            (false, true, None, &[three, term], 0),
            (false, false, None, &[], 0),
            (false, false, None, &[ok, ok], 0),
            (false, false, None, &[ok, three], 1),
            (false, false, None, &[term], 1),
        ];
        for (single, stopped, fatal, lasts, want) in rows {
            assert_eq!(
                end(single, stopped, fatal, lasts),
                want,
                "single {single}, stopped {stopped}, fatal {fatal:?}, lasts {lasts:?}"
            );
        }
    }
}
