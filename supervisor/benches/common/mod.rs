//! Shared by the benchmarks that drive example workers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example `name` next to the `supervise` binary (`supervise` is the path cargo gives the
/// bench in `CARGO_BIN_EXE_supervise`), built on demand: `cargo bench` builds a package's
/// binaries for its benchmarks, not its examples.
pub fn example(supervise: &str, name: &str) -> PathBuf {
    let dir = Path::new(supervise).parent().expect("target dir");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = if dir.ends_with("debug") {
            &[][..]
        } else {
            &["--release"][..]
        };
        let ok = Command::new(cargo)
            .args(["build", "-q", "-p", "supervisor", "--example", name])
            .args(profile)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && path.exists(),
            "cannot build the {name} example at {}",
            path.display()
        );
    }
    path
}
