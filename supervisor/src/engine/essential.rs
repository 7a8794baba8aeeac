//! What a program's giving up means for the whole run: an essential program's `fatal` ends it
//! (the others stopped gracefully, exit 1); one that is not essential leaves the run, its exit
//! code and `/readyz` as they were. See "Essential programs" in docs/lifecycle.md.

/// What the engine does when an instance ends with its program given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OnFatal {
    /// Stop every program gracefully and end the run.
    pub end_run: bool,
    /// The verdict counts toward the exit code (1).
    pub counts: bool,
}

/// Decides it from whether the program is essential, whether the verdict is about the program
/// as it runs now (`current`: not about one a reload or `start` has since replaced), and whether
/// the run is already stopping (a TERM, or an essential program's earlier verdict: nothing more
/// to start, and the first verdict's exit stands).
pub(super) fn on_fatal(essential: bool, current: bool, stopping: bool) -> OnFatal {
    let counts = essential && current;
    OnFatal {
        end_run: counts && !stopping,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (essential, current, stopping) -> (end_run, counts)
        let rows = [
            ((true, true, false), (true, true)),
            // Stopping already (TERM, or a second essential program fatal at once): nothing
            // more to do, but the run still fails.
            ((true, true, true), (false, true)),
            // About an incarnation a reload or `start` replaced: its successor runs.
            ((true, false, false), (false, false)),
            ((true, false, true), (false, false)),
            // Not essential: never ends the run nor changes its exit code.
            ((false, true, false), (false, false)),
            ((false, true, true), (false, false)),
            ((false, false, false), (false, false)),
            ((false, false, true), (false, false)),
        ];
        for ((essential, current, stopping), (end_run, counts)) in rows {
            assert_eq!(
                on_fatal(essential, current, stopping),
                OnFatal { end_run, counts },
                "essential {essential}, current {current}, stopping {stopping}"
            );
        }
    }
}
