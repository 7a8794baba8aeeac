//! Mass starts yield to stops: a TERM that arrives while thousands of replicas are still being
//! started ends the run within seconds, without first starting the rest.

mod common;

use std::time::{Duration, Instant};

use common::{example, pids_of_program, unique, wait_until, ProgramGuard, Sup};

const REPLICAS: usize = 3000;

#[test]
fn term_during_a_mass_start_stops_starting() {
    let name = unique("mass");
    let _guard = ProgramGuard(name.clone());
    // crasher prints one line and sleeps: cheap to start, dies of TERM at once.
    let mut sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--after\", \"1000000\"]\nreplicas = {REPLICAS}\n\
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
        started < REPLICAS,
        "all {started} replicas were started before the stop ({took:?} to exit)"
    );
}
