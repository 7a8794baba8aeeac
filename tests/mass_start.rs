//! Mass starts yield to stops: a TERM that arrives while thousands of replicas are still being
//! started ends the run within seconds, without first starting the rest.

mod common;

use std::time::{Duration, Instant};

use common::{example, pids_of_program, unique, wait_until, ProgramGuard, Sup};

/// Open files one one-process instance costs the supervisor, and its own with what clients and
/// a notify datagram may hold (see `plan::fd_budget`: a config that cannot all run is refused).
const PER_INSTANCE: u64 = supervisor::plan::FDS_PER_INSTANCE;
const BASE: u64 =
    supervisor::plan::FDS_BASE + supervisor::plan::FDS_CLIENTS + supervisor::plan::FDS_NOTIFY;

#[test]
fn term_during_a_mass_start_stops_starting() {
    // As many replicas as this machine's open-files limit allows, up to 3000.
    let (_, hard) = common::open_files();
    let replicas = usize::try_from(hard.saturating_sub(BASE) / PER_INSTANCE)
        .unwrap_or(usize::MAX)
        .min(3000);
    if replicas < 1000 {
        eprintln!(
            "skipped: a mass start wants 1000 replicas or more; the hard open-files limit here \
             ({hard}) allows {replicas}"
        );
        return;
    }
    let name = unique("mass");
    let _guard = ProgramGuard(name.clone());
    // crasher prints one line and sleeps: cheap to start, dies of TERM at once.
    let mut sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--after\", \"1000000\"]\nreplicas = {replicas}\n\
         stop = {{ grace = \"2s\" }}\n",
        example("crasher")
    ));
    sup.wait_event("started", Duration::from_secs(30));
    let t0 = Instant::now();
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    let started = sup.of("started").len();
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).is_empty()),
        "{} processes left",
        pids_of_program(&name).len()
    );
    assert!(
        started < replicas,
        "all {started} replicas were started before the stop ({took:?} to exit)"
    );
}
