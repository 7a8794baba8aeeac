//! Disk through the real `supervise` binary: the space a worker holds in deleted-but-open files
//! (`holder`), shown in `status --json` for that worker only; watched directories over their
//! `max` reported as one `disk` finding per crossing, and a `cleared` when back under; and bad
//! `[[watch.dir]]` values refused; a deleted file that keeps growing shown within two sampling
//! periods, and reported as `deleted_growing`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{example, unique, ProgramGuard, Sup, MIB};

/// Starts `supervise -c` on `config` (sampled every 200 ms); returns it once its control socket
/// answers, and the socket.
fn start(config: &str) -> (Sup, PathBuf) {
    let sup = Sup::with_config(&format!("[sample]\nevery = \"200ms\"\n\n{config}"));
    sup.wait_socket(Duration::from_secs(10));
    let socket = sup.socket();
    (sup, socket)
}

/// `[program.NAME]` running `example` with `args`.
fn program(name: &str, example_name: &str, args: &[&str]) -> String {
    let mut argv = vec![format!("{:?}", example(example_name))];
    argv.extend(args.iter().map(|a| format!("{a:?}")));
    format!("[program.{name}]\ncommand = [{}]\n\n", argv.join(", "))
}

fn disk_u64(w: &Value, key: &str) -> u64 {
    w["disk"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("disk.{key} missing in {w}"))
}

#[test]
fn status_shows_deleted_files_held_by_that_worker_only() {
    const SIZE: u64 = 8 * MIB;
    let holder = unique("holder");
    let other = unique("noholder");
    let _g = (ProgramGuard(holder.clone()), ProgramGuard(other.clone()));
    let data = tempfile::tempdir().expect("data dir");
    let (sup, socket) = start(&format!(
        "{}{}",
        program(
            &holder,
            "holder",
            &[
                "--dir",
                data.path().to_str().expect("utf-8"),
                "--size",
                "8MiB"
            ]
        ),
        program(&other, "netpeer", &[])
    ));
    // The scan runs at once for a new worker, then every 10 s per process: the file written
    // just after the first scan shows within about 10 s.
    let end = Instant::now() + Duration::from_secs(20);
    let (h, o) = loop {
        let all = common::status_json(&socket);
        let find = |n: &str| all.iter().find(|w| w["program"] == n).cloned();
        if let (Some(h), Some(o)) = (find(&holder), find(&other)) {
            // Once the holder has written it all (a scan may catch it half written).
            if h["disk"]["deleted_bytes"].as_u64() >= Some(SIZE) && o["disk"].is_object() {
                break (h, o);
            }
        }
        assert!(
            Instant::now() < end,
            "no deleted file in status: {all:?}\n{}",
            sup.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Allocated blocks: at least the data, at most twice it plus 1 MiB (filesystem overhead).
    assert_eq!(disk_u64(&h, "deleted_files"), 1, "{h}");
    let held = disk_u64(&h, "deleted_bytes");
    assert!(
        (SIZE..=2 * SIZE + MIB).contains(&held),
        "deleted_bytes {held} for {SIZE} bytes held\n{h}"
    );
    // The directory shows nothing: the space is only in the worker's fd table.
    assert_eq!(std::fs::read_dir(data.path()).expect("read_dir").count(), 0);
    assert_eq!(
        (disk_u64(&o, "deleted_files"), disk_u64(&o, "deleted_bytes")),
        (0, 0),
        "{o}"
    );
}

/// The fd through which `pid` holds a deleted file of `dir`, and the space that file holds now
/// (what `stat -L /proc/PID/fd/N` says).
fn deleted_fd(pid: i64, dir: &Path) -> Option<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for e in fds.flatten() {
        let link = std::fs::read_link(e.path()).ok()?;
        if link.starts_with(dir) && link.to_string_lossy().ends_with(" (deleted)") {
            let meta = std::fs::metadata(e.path()).ok()?;
            return Some((e.path(), meta.blocks() * 512));
        }
    }
    None
}

#[test]
fn a_deleted_file_growing_1_mib_a_second_shows_within_two_sampling_periods() {
    const PERIOD: Duration = Duration::from_secs(1);
    let name = unique("grower");
    let _g = ProgramGuard(name.clone());
    let data = tempfile::tempdir().expect("data dir");
    let sup = Sup::with_config(&format!(
        "[sample]\nevery = \"1s\"\n\n{}",
        program(
            &name,
            "holder",
            &[
                "--dir",
                data.path().to_str().expect("utf-8"),
                "--size",
                "1MiB",
                "--grow",
                "1MiB"
            ]
        )
    ));
    sup.wait_socket(Duration::from_secs(10));
    let socket = sup.socket();
    let worker = || {
        common::status_json(&socket)
            .into_iter()
            .find(|w| w["program"] == name.as_str())
    };
    // Found by the first scan of the new worker.
    let mut pid = 0;
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            let Some(w) = worker() else { return false };
            pid = w["pid"].as_i64().unwrap_or(0);
            w["disk"]["deleted_files"] == 1
        }),
        "the deleted file never showed\n{}",
        sup.dump()
    );
    // Three times: what the file held at some moment shows in status two periods later at the
    // latest. (A rescan every 10 s alone would pass each round only one time in five.)
    for round in 0..3 {
        let (fd, then) = deleted_fd(pid, data.path()).expect("the holder's deleted file");
        std::thread::sleep(2 * PERIOD);
        let w = worker().expect("status");
        let shown = disk_u64(&w, "deleted_bytes");
        let (_, now) = deleted_fd(pid, data.path()).expect("the holder's deleted file");
        // Above: a block or so of slack, as a filesystem's count of a file's blocks moves a
        // little as its writes are flushed.
        assert!(
            shown >= then && shown <= now + 64 * 1024,
            "round {round}: {} held {then} bytes, then {now}; status showed {shown} two \
             periods after\n{w}",
            fd.display()
        );
    }
    // 1 MiB/s is over the default 256 KiB/s: one finding, naming the file.
    let f = sup.wait_nth(1, Duration::from_secs(20), "deleted_growing", |e| {
        e["event"] == "finding" && e["kind"] == "deleted_growing"
    });
    let detail = f["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&data.path().display().to_string()), "{f}");
    let rate = f["bytes_per_s"].as_u64().unwrap_or(0);
    assert!((512 * 1024..=2 * MIB).contains(&rate), "{f}");
    std::thread::sleep(2 * PERIOD);
    assert_eq!(
        sup.of("finding")
            .iter()
            .filter(|e| e["kind"] == "deleted_growing")
            .count(),
        1,
        "reported once\n{}",
        sup.dump()
    );
    let w = worker().expect("status");
    assert!(w["findings"].to_string().contains("deleted_growing"), "{w}");
}

#[test]
fn watched_directories_show_allocated_and_apparent_sizes_in_status_and_metrics() {
    let name = unique("watchshow");
    let _g = ProgramGuard(name.clone());
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("logs");
    std::fs::create_dir(&dir).expect("mkdir");
    // 1 MiB of data in a file of 1 GiB: the rest is a hole, allocated nowhere.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("sparse")).expect("create");
        f.write_all(&vec![0x5a; MIB as usize]).expect("write");
        f.set_len(1 << 30).expect("set_len");
        f.sync_all().expect("fsync");
    }
    let sup = Sup::with_config(&format!(
        "metrics = \"127.0.0.1:0\"\n\n{}[[watch.dir]]\npath = {:?}\nevery = \"1s\"\n",
        program(&name, "netpeer", &[]),
        dir.display().to_string()
    ));
    sup.wait_socket(Duration::from_secs(10));
    let socket = sup.socket();
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    let mut d = Value::Null;
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            d = common::supervisor_json(&socket)["watched_dirs"][0].clone();
            d["bytes"].is_u64()
        }),
        "never measured: {d}\n{}",
        sup.dump()
    );
    assert_eq!(d["path"], dir.display().to_string(), "{d}");
    let bytes = d["bytes"].as_u64().expect("bytes");
    // Allocated: the data and the directory's own blocks, never the hole.
    assert!((MIB..=2 * MIB).contains(&bytes), "{d}");
    assert!(d["apparent_bytes"].as_u64() >= Some(1 << 30), "{d}");
    assert_eq!(d["partial"], false, "{d}");
    assert!(d["fs_total_bytes"].as_u64() > Some(0), "{d}");
    let (ok, table) = common::ctl(&socket, &["status"]);
    assert!(
        ok && table.contains(&format!("watched {}: ", dir.display())),
        "{table}"
    );
    let (code, text) = common::peers::http(&addr, "GET", "/metrics", None).expect("scrape");
    assert_eq!(code, 200);
    let line = text
        .lines()
        .find(|l| l.starts_with("supervise_watched_dir_bytes{"))
        .unwrap_or_else(|| panic!("no watched_dir_bytes\n{text}"));
    assert!(
        line.contains(&format!("path=\"{}\"", dir.display())),
        "{line}"
    );
    let shown: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!((MIB..=2 * MIB).contains(&shown), "{line}");
}

/// Puts a file of `bytes` of non-zero data (allocated blocks, not a hole) at `path`, whole:
/// written and synced under `root` (not watched), then renamed into place, so that no walk sees
/// it half written.
fn fill(root: &Path, path: &Path, bytes: u64) {
    let tmp = root.join(".partial");
    let data = vec![0x5au8; usize::try_from(bytes).expect("size")];
    std::fs::write(&tmp, data).expect("write");
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .expect("fsync");
    std::fs::rename(&tmp, path).expect("rename");
}

/// `disk` findings naming `dir`.
fn disk_findings(sup: &Sup, dir: &Path) -> Vec<Value> {
    let needle = dir.display().to_string();
    sup.of("finding")
        .into_iter()
        .filter(|e| {
            e["kind"] == "disk"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("{needle} ")))
        })
        .collect()
}

fn wait_disk_finding(sup: &Sup, n: usize, dir: &Path) -> Value {
    let needle = format!("{} ", dir.display());
    sup.wait_nth(n, Duration::from_secs(10), &needle, |e| {
        e["event"] == "finding"
            && e["kind"] == "disk"
            && e["detail"].as_str().is_some_and(|d| d.contains(&needle))
    })
}

#[test]
fn a_watched_directory_over_max_is_one_finding_per_crossing() {
    let name = unique("watch");
    let _g = ProgramGuard(name.clone());
    let root = tempfile::tempdir().expect("tempdir");
    // `a` is the directory under test; `b` and `c` only show that later walks happened.
    let dirs: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|d| {
            let p = root.path().join(d);
            std::fs::create_dir(&p).expect("mkdir");
            p
        })
        .collect();
    let (a, b, c) = (&dirs[0], &dirs[1], &dirs[2]);
    // A directory with only a filesystem limit that any used filesystem is over.
    let fs_dir = root.path().join("fs");
    std::fs::create_dir(&fs_dir).expect("mkdir");
    let mut config = program(&name, "netpeer", &[]);
    for d in &dirs {
        config.push_str(&format!(
            "[[watch.dir]]\npath = {:?}\nevery = \"1s\"\nmax = \"1MiB\"\nfs_max_used = 99.9\n\n",
            d.display().to_string()
        ));
    }
    config.push_str(&format!(
        "[[watch.dir]]\npath = {:?}\nevery = \"1s\"\nfs_max_used = 0.001\n",
        fs_dir.display().to_string()
    ));
    let (sup, _socket) = start(&config);
    sup.wait_event("started", Duration::from_secs(10));

    fill(root.path(), &a.join("data"), 2 * MIB);
    let f = wait_disk_finding(&sup, 1, a);
    assert_eq!(
        (f["program"].as_str(), f["pid"].as_i64()),
        (Some("supervise"), None),
        "{f}"
    );
    assert_eq!(f["max"], MIB, "{f}");
    let bytes = f["bytes"].as_u64().expect("bytes");
    assert!((2 * MIB..=3 * MIB).contains(&bytes), "{f}");
    // The filesystem is far below 99.9% used: only the size is reported.
    assert!(f.get("fs_used_percent").is_none(), "{f}");

    // Later walks of `a` (`b` is walked with it, after `a` went over) report nothing new.
    fill(root.path(), &b.join("data"), 2 * MIB);
    wait_disk_finding(&sup, 1, b);
    assert_eq!(disk_findings(&sup, a).len(), 1, "{}", sup.dump());

    // Back under max, then over again: a new crossing, a new finding.
    std::fs::remove_file(a.join("data")).expect("rm");
    // Back under is said too, with how many directories are still over (`b` at least).
    let needle = format!("{} is back under its limits", a.display());
    let cleared = sup.wait_nth(1, Duration::from_secs(10), &needle, |e| {
        e["event"] == "cleared" && e["detail"] == needle.as_str()
    });
    assert_eq!(
        (cleared["kind"].as_str(), cleared["program"].as_str()),
        (Some("disk"), Some("supervise")),
        "{cleared}"
    );
    assert!(cleared["remaining"].as_u64() >= Some(1), "{cleared}");
    fill(root.path(), &c.join("data"), 2 * MIB);
    wait_disk_finding(&sup, 1, c);
    fill(root.path(), &a.join("data"), 2 * MIB);
    wait_disk_finding(&sup, 2, a);

    // The filesystem limit alone.
    let fs = wait_disk_finding(&sup, 1, &fs_dir);
    assert_eq!(fs["fs_max_used_percent"], 1, "{fs}");
    assert!(
        fs["fs_used_percent"].as_u64() >= Some(1) && fs.get("bytes").is_none(),
        "{fs}"
    );
    assert_eq!(disk_findings(&sup, &fs_dir).len(), 1, "{}", sup.dump());
    assert_eq!(disk_findings(&sup, b).len(), 1, "{}", sup.dump());
}

/// Runs `supervise -c` on `config` (which must fail before spawning anything) and returns its
/// stderr, after checking the exit code 2.
fn refused(config: &str) -> String {
    let (path, stderr) = common::refused(config);
    assert!(
        stderr.contains(&format!("{path}:")),
        "no file named in {stderr:?}"
    );
    stderr
}

const PROGRAM: &str = "[program.a]\ncommand = [\"touch\", \"MARKER\"]\n\n";

#[test]
fn bad_watch_dir_values_are_refused_naming_the_key() {
    // (table, its bad key's line, key, message); the table starts on line 4.
    let cases = [
        (
            "[[watch.dir]]\npath = \"/tmp\"\nevery = \"10ms\"\n",
            6,
            "watch.dir[0].every: ",
            "at least 1s",
        ),
        (
            "[[watch.dir]]\npath = \"/tmp\"\nfs_max_used = 150\n",
            6,
            "watch.dir[0].fs_max_used: ",
            "150",
        ),
        (
            "[[watch.dir]]\npath = \"/tmp\"\nfs_max_used = 0\n",
            6,
            "watch.dir[0].fs_max_used: ",
            "percentage",
        ),
        (
            "[[watch.dir]]\nevery = \"1s\"\n",
            4,
            "watch.dir[0]",
            "missing field `path`",
        ),
        (
            "[[watch.dir]]\npath = \"/tmp\"\nmax = \"lots\"\n",
            6,
            "watch.dir[0].max: ",
            "invalid size",
        ),
    ];
    for (table, line, key, message) in cases {
        let stderr = refused(&format!("{PROGRAM}{table}"));
        assert!(
            stderr.contains(&format!(":4: {key}")) || stderr.contains(&format!(":{line}: {key}")),
            "expected {key:?} on line 4 or {line} in {stderr:?}"
        );
        assert!(
            stderr.contains(message),
            "expected {message:?} in {stderr:?}"
        );
    }
}

#[test]
fn an_error_in_the_second_watched_directory_points_at_that_table() {
    // The second [[watch.dir]] starts on line 7, its bad key is on line 9.
    let stderr = refused(&format!(
        "{PROGRAM}[[watch.dir]]\npath = \"/tmp\"\n\n[[watch.dir]]\npath = \"/var\"\nevery = \"10ms\"\n"
    ));
    assert!(
        stderr.contains(":7: watch.dir[1].every: ") || stderr.contains(":9: watch.dir[1].every: "),
        "expected watch.dir[1].every on line 7 or 9 in {stderr:?}"
    );
}
