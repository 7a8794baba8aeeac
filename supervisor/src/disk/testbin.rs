//! Test helpers shared by the disk and alert tests: the example binaries they spawn, and polls
//! with deadlines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The example `name`, next to this test binary (`target/<profile>/examples/`). `cargo test`
/// builds the examples; `cargo test --lib` does not, so a missing one is built here.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/supervisor-HASH -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "supervisor", "--example", name]);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().is_ok_and(|s| s.success());
        assert!(
            ok && path.exists(),
            "cannot build the {name} example at {}",
            path.display()
        );
    }
    path
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True while `pid` exists (a zombie included: it still needs reaping).
pub(crate) fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
