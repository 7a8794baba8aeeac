//! `supervise top` in a real terminal: run it inside a private tmux server (its own socket) against a running
//! supervisor, read the screen with `capture-pane`, and drive it with `send-keys`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{example, supervise_bin, unique, wait_until, ProgramGuard, Sup};

/// A tmux server of our own, so the test never touches a user's: its socket (`-S`, a stricter
/// `-L`) lives in the test's temp dir, so nothing is left in `/tmp/tmux-UID`. Killed on drop,
/// pass or fail.
struct Tmux {
    socket: std::path::PathBuf,
    session: String,
}

impl Tmux {
    /// Starts `supervise --admin SOCKET top` in a new 160x40 session on a tmux server of its own
    /// (its socket in `dir`).
    fn top(dir: &Path, socket: &Path) -> Self {
        let tmux = Tmux {
            socket: dir.join("tmux"),
            session: unique("top"),
        };
        let command = format!(
            "{} --admin {} top",
            quote(Path::new(supervise_bin())),
            quote(socket)
        );
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", &self.session, keys])
            .status
            .success());
    }

    fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", &self.session])
            .status
            .success()
    }

    /// Waits until the screen contains `needle`; panics with the screen on timeout.
    fn wait_for(&self, needle: &str, sup: &Sup) -> String {
        let mut screen = String::new();
        let ok = wait_until(Duration::from_secs(10), || {
            screen = self.screen();
            screen.contains(needle)
        });
        assert!(ok, "{needle:?} never appeared:\n{screen}\n{}", sup.dump());
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// True (and says so) when there is no tmux to drive the terminal with.
fn tmux_missing() -> bool {
    let missing = !Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if missing {
        println!("skipped: tmux is not installed (`tmux -V` failed)");
    }
    missing
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.to_str().expect("utf-8").replace('\'', r"'\''"))
}

#[test]
fn top_shows_workers_and_restarts_one() {
    if tmux_missing() {
        return;
    }
    let name = unique("top");
    let _guard = ProgramGuard(name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let leaky = example("leaky");
    let sup = Sup::start(&[
        "--admin",
        socket.to_str().expect("utf-8"),
        "--replicas",
        "2",
        "--name",
        &name,
        "--",
        &leaky,
        "--rate",
        "0",
    ]);
    sup.wait_nth(2, Duration::from_secs(10), "two starts", |e| {
        e["event"] == "started"
    });

    let tmux = Tmux::top(dir.path(), &socket);

    let screen = tmux.wait_for(&name, &sup);
    assert!(
        screen.contains("PROGRAM") && screen.contains("RSS"),
        "{screen}"
    );
    // Both instances, once the first status answer is in.
    tmux.wait_for("2 workers", &sup);

    // The first row (instance 0) is selected: r asks, y restarts it.
    tmux.keys("r");
    tmux.wait_for(&format!("restart {name}/0? (y/n)"), &sup);
    tmux.keys("y");
    let r = sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(
        (r["reason"].as_str(), r["instance"].as_u64()),
        (Some("manual"), Some(0)),
        "{r}"
    );
    // The supervisor's answer shows in the status line, in place of the prompt.
    let screen = tmux.wait_for(&format!("restarting 1 instance(s) of {name}"), &sup);
    assert!(!screen.contains("(y/n)"), "{screen}");

    tmux.keys("q");
    assert!(
        wait_until(Duration::from_secs(10), || !tmux.alive()),
        "top did not quit on q:\n{}",
        tmux.screen()
    );
}

#[test]
fn top_survives_a_missing_supervisor() {
    if tmux_missing() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nobody.sock");
    let tmux = Tmux::top(dir.path(), &socket);
    let mut screen = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            screen = tmux.screen();
            screen.contains("disconnected, retrying")
        }),
        "{screen}"
    );
    tmux.keys("Escape");
    assert!(
        wait_until(Duration::from_secs(10), || !tmux.alive()),
        "top did not quit on Esc:\n{}",
        tmux.screen()
    );
}

#[test]
fn top_shows_a_fatal_program_and_why_it_cannot_be_restarted() {
    if tmux_missing() {
        return;
    }
    // Names in sort order: the fatal program's row comes first, and is selected.
    let (crash, ok) = (unique("af"), unique("ok"));
    let _guards = [ProgramGuard(crash.clone()), ProgramGuard(ok.clone())];
    let sup = Sup::with_config(&format!(
        "[program.{crash}]\ncommand = [\"{crasher}\", \"--after\", \"100\", \"--code\", \"3\"]\n\
         restart = \"always\"\nintensity = {{ max = 1, within = \"60s\" }}\n\
         backoff = {{ first = \"10ms\" }}\n\
         [program.{ok}]\ncommand = [\"{leaky}\", \"--rate\", \"0\"]\n",
        crasher = example("crasher"),
        leaky = example("leaky"),
    ));
    sup.wait_event("fatal", Duration::from_secs(15));
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::top(dir.path(), &sup.socket());

    // Its row stays, in state fatal, beside the program that runs on.
    tmux.wait_for("2 workers", &sup);
    let screen = tmux.wait_for(" fatal ", &sup);
    let row = screen
        .lines()
        .find(|l| l.contains(&crash))
        .unwrap_or_else(|| panic!("no row of {crash}:\n{screen}"));
    assert!(row.contains(" fatal "), "{screen}");
    assert!(screen.contains(&ok), "{screen}");

    // A restart of it is answered with what to do instead.
    tmux.keys("r");
    tmux.wait_for(&format!("restart {crash}/0? (y/n)"), &sup);
    tmux.keys("y");
    tmux.wait_for(&format!("`supervise start {crash}`"), &sup);
    tmux.keys("q");
    assert!(
        wait_until(Duration::from_secs(10), || !tmux.alive()),
        "top did not quit on q:\n{}",
        tmux.screen()
    );
}
