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
        Self::run(dir, socket, "top", (160, 40), false)
    }

    /// Starts `supervise --admin SOCKET ARGS` in a new `size` session (columns, lines); with
    /// `stay`, the pane stays a minute once the command has ended, so that its output can be
    /// read.
    fn run(dir: &Path, socket: &Path, args: &str, size: (u16, u16), stay: bool) -> Self {
        let tmux = Tmux {
            socket: dir.join(unique("tmux")),
            session: unique("top"),
        };
        let command = format!(
            "{} --admin {} {args}{}",
            quote(Path::new(supervise_bin())),
            quote(socket),
            if stay { "; sleep 60" } else { "" }
        );
        let (x, y) = (size.0.to_string(), size.1.to_string());
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            &x,
            "-y",
            &y,
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
        screen.contains("PROGRAM") && screen.contains("MEM"),
        "{screen}"
    );
    // Both instances, once the first status answer is in, folded into the program's row.
    tmux.wait_for("2 instances", &sup);

    // Expanded, the program's row is followed by its instances: instance 0 is selected.
    tmux.keys("Enter");
    tmux.wait_for("\u{2514}", &sup);
    tmux.keys("Down");
    tmux.wait_for(&format!(" {name}/0 "), &sup);
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
         backoff = {{ first = \"10ms\" }}\nessential = false\n\
         [program.{ok}]\ncommand = [\"{leaky}\", \"--rate\", \"0\"]\n",
        crasher = example("crasher"),
        leaky = example("leaky"),
    ));
    sup.wait_event("fatal", Duration::from_secs(15));
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::top(dir.path(), &sup.socket());

    // Its row stays, in state fatal, beside the program that runs on.
    tmux.wait_for("2 instances", &sup);
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

/// Six instances of three programs, each printing lines: two that grow slowly under a limit,
/// two held to a PSS limit, two without one.
fn six_of_three() -> (Sup, [String; 3], [ProgramGuard; 3]) {
    let names = [unique("api"), unique("db"), unique("web")];
    let guards = names.clone().map(ProgramGuard);
    let leaky = example("leaky");
    let sup = Sup::with_config(&format!(
        "[program.{a}]\ncommand = [\"{leaky}\", \"--rate\", \"0.1\", \"--start\", \"4\"]\nreplicas = 2\n\
         memory = {{ max = \"256MiB\" }}\n\
         [program.{b}]\ncommand = [\"{leaky}\", \"--rate\", \"0\", \"--start\", \"8\"]\nreplicas = 2\n\
         memory = {{ max = \"1GiB\", measure = \"pss\" }}\n\
         [program.{c}]\ncommand = [\"{leaky}\", \"--rate\", \"0\"]\nreplicas = 2\n",
        a = names[0],
        b = names[1],
        c = names[2],
    ));
    sup.wait_nth(6, Duration::from_secs(15), "six starts", |e| {
        e["event"] == "started"
    });
    (sup, names, guards)
}

/// The cell under `title` in `row` of a table whose title line is `head`: a right-aligned
/// column's cell ends where its title ends, a left-aligned one starts where its title starts.
fn cell_under(head: &str, row: &str, title: &str, right: bool) -> String {
    let head: Vec<char> = head.chars().collect();
    let row: Vec<char> = row.chars().collect();
    let t: Vec<char> = title.chars().collect();
    let at = (0..head.len())
        .find(|&i| {
            head[i..].starts_with(&t)
                && (i == 0 || head[i - 1] == ' ')
                && head.get(i + t.len()).is_none_or(|&c| c == ' ')
        })
        .unwrap_or_else(|| {
            panic!(
                "no column {title:?} in {:?}",
                head.iter().collect::<String>()
            )
        });
    if right {
        let end = at + t.len();
        let mut start = end;
        while start > 0 && row.get(start - 1).is_some_and(|&c| c != ' ') {
            start -= 1;
        }
        let mut cell: String = row[start..end.min(row.len())].iter().collect();
        // A PSS figure is `12.3M pss`.
        if cell == "pss" {
            let mut s = start - 1;
            while s > 0 && row[s - 1] != ' ' {
                s -= 1;
            }
            cell = row[s..end].iter().collect();
        }
        cell
    } else {
        row[at..]
            .iter()
            .collect::<String>()
            .split(' ')
            .next()
            .unwrap_or("")
            .to_owned()
    }
}

/// A row of an expanded program's instance (`  └ api ...`, or `> └ ...` when selected).
fn is_instance_row(line: &str) -> bool {
    line.get(2..).is_some_and(|l| l.starts_with("\u{2514} "))
}

/// Whether a cell of the column `title` is whole: a number with its unit where it has one.
fn whole(title: &str, cell: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok();
    let unit = |s: &str, units: &[&str]| units.iter().any(|u| s.strip_suffix(u).is_some_and(&num));
    if cell == "-" {
        return title != "RST" && title != "STATE";
    }
    match title {
        "#" => cell.strip_prefix('\u{d7}').map_or_else(|| num(cell), num),
        "PID" | "RST" | "THR" | "FDS" => cell.parse::<u64>().is_ok(),
        "STATE" => [
            "ready", "running", "starting", "stopping", "backoff", "stopped", "fatal", "waiting",
            "draining",
        ]
        .contains(&cell),
        "UPTIME" => {
            let digits_then = |s: &str| {
                let d = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) && s.len() > d.len()
            };
            ["s", "m", "h", "d"].iter().any(|u| cell.ends_with(u))
                && cell
                    .split_inclusive(|c: char| c.is_ascii_alphabetic())
                    .all(digits_then)
        }
        "MEM" => unit(cell.strip_suffix(" pss").unwrap_or(cell), &["K", "M", "G"]),
        "LIMIT" => unit(cell, &["K", "M", "G"]),
        "%LIM" => unit(cell, &["%"]),
        "CPU%" => num(cell) && cell.contains('.'),
        _ => true,
    }
}

/// At three sizes, `top` shows the host header, a table whose listed columns are whole for six
/// instances of three programs (folded, then one expanded), and a detail pane with the selected
/// instance's events and log lines.
#[test]
fn top_fits_80x24_120x40_and_200x50() {
    if tmux_missing() {
        return;
    }
    let (sup, names, _guards) = six_of_three();
    let socket = sup.socket();
    let statuses = common::status_json(&socket);
    let dir = tempfile::tempdir().expect("tempdir");
    for size in [(80u16, 24u16), (120, 40), (200, 50)] {
        let tmux = Tmux::run(dir.path(), &socket, "top", size, false);
        // The header: the host and the supervisor.
        let screen = tmux.wait_for("6 instances", &sup);
        for chip in ["load ", "mem avail ", "self: pid "] {
            assert!(screen.contains(chip), "{size:?}: {chip} missing\n{screen}");
        }
        // The detail pane about the first program's worst instance: its events and log lines.
        tmux.wait_for(" started", &sup);
        let screen = tmux.wait_for("leaky pid=", &sup);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines.len() <= usize::from(size.1), "{size:?}\n{screen}");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() <= usize::from(size.0)),
            "{size:?}\n{screen}"
        );
        let head = lines
            .iter()
            .find(|l| l.contains("PROGRAM"))
            .unwrap_or_else(|| panic!("{size:?}: no table\n{screen}"));
        let titles = [
            ("#", true),
            ("STATE", false),
            ("UPTIME", true),
            ("RST", true),
            ("MEM", true),
            ("%LIM", true),
            ("CPU%", true),
        ];
        for (title, _) in titles {
            assert!(head.contains(title), "{size:?}: {title}\n{screen}");
        }
        assert!(head.contains("FINDINGS"), "{size:?}\n{screen}");
        for name in &names {
            let row = lines
                .iter()
                .find(|l| l.contains(name.as_str()) && l.contains('\u{d7}'))
                .unwrap_or_else(|| panic!("{size:?}: no row of {name}\n{screen}"));
            for (title, right) in titles {
                let cell = cell_under(head, row, title, right);
                assert!(
                    whole(title, &cell),
                    "{size:?}: {title} {cell:?} in\n{row}\n{screen}"
                );
            }
        }
        // Expanded, the first program's instances each have a row of their own, with their pids
        // whole where the width has room for the column.
        tmux.keys("Enter");
        let mut screen = String::new();
        assert!(
            wait_until(Duration::from_secs(10), || {
                screen = tmux.screen();
                screen.lines().filter(|l| is_instance_row(l)).count() == 2
            }),
            "{size:?}: not expanded\n{screen}"
        );
        let lines: Vec<&str> = screen.lines().collect();
        let head = lines.iter().find(|l| l.contains("PROGRAM")).expect("head");
        let rows: Vec<&&str> = lines.iter().filter(|l| is_instance_row(l)).collect();
        assert_eq!(rows.len(), 2, "{size:?}\n{screen}");
        for row in rows {
            for (title, right) in titles {
                let cell = cell_under(head, row, title, right);
                assert!(whole(title, &cell), "{size:?}: {title} {cell:?}\n{screen}");
            }
            if head.contains("PID") {
                let pid = cell_under(head, row, "PID", true);
                assert!(
                    statuses
                        .iter()
                        .any(|w| w["pid"].as_i64().map(|p| p.to_string()) == Some(pid.clone())),
                    "{size:?}: pid {pid:?} is no instance's\n{screen}"
                );
            }
        }
        tmux.keys("q");
        assert!(
            wait_until(Duration::from_secs(10), || !tmux.alive()),
            "top did not quit on q:\n{}",
            tmux.screen()
        );
    }
}

/// `supervise status` in an 80-column terminal: no line wraps, the most important columns are
/// there, the PSS program shows PSS; `--wide` has every column.
#[test]
fn status_fits_the_terminal() {
    if tmux_missing() {
        return;
    }
    let (sup, names, _guards) = six_of_three();
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::run(dir.path(), &sup.socket(), "status", (80, 24), true);
    let screen = tmux.wait_for("closed sockets", &sup);
    let lines: Vec<&str> = screen.lines().collect();
    let head = lines[0];
    for title in ["PROGRAM", "STATE", "UPTIME", "RST", "MEM", "%LIM", "CPU%"] {
        assert!(head.contains(title), "{title}\n{screen}");
    }
    // Six rows, one line each (a wrapped row would start with something else).
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| names.iter().any(|n| l.starts_with(n.as_str())))
        .collect();
    assert_eq!(rows.len(), 6, "{screen}");
    assert_eq!(
        lines[7].split(':').next(),
        Some("closed sockets"),
        "{screen}"
    );
    for row in &rows {
        assert!(
            whole("MEM", &cell_under(head, row, "MEM", true)),
            "{row}\n{screen}"
        );
        assert!(
            whole("%LIM", &cell_under(head, row, "%LIM", true)),
            "{row}\n{screen}"
        );
    }
    let db = rows
        .iter()
        .find(|r| r.starts_with(names[1].as_str()))
        .expect("db row");
    assert!(db.contains(" pss "), "{screen}");
    let (ok, wide) = common::ctl(&sup.socket(), &["status", "--wide"]);
    assert!(ok, "{wide}");
    for title in [
        "PID", "LIMIT", "THR", "FDS", "CONN", "NET/S", "RTT", "HEAP", "HB AGE",
    ] {
        assert!(
            wide.lines().next().is_some_and(|h| h.contains(title)),
            "{title}\n{wide}"
        );
    }
}
