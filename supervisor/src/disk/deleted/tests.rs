use super::*;
use crate::disk::testbin::{example, wait_until};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};

const MIB: u64 = 1 << 20;

/// Kills and reaps a child on drop, so a failing test leaves nothing behind.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
impl Reaped {
    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid")
    }
}

/// A file in `dir` with `len` bytes of real data, unlinked and still open.
fn deleted_file(dir: &std::path::Path, len: usize) -> File {
    let path = dir.join("gone.dat");
    let mut f = File::create(&path).expect("create");
    f.write_all(&vec![0x5a; len]).expect("write");
    f.sync_all().expect("fsync");
    std::fs::remove_file(&path).expect("unlink");
    f
}

fn me() -> i32 {
    i32::try_from(std::process::id()).expect("pid")
}

#[test]
fn link_texts() {
    assert!(is_deleted_file_link(b"/var/log/app.log (deleted)"));
    assert!(is_deleted_file_link(b"/tmp/#123 (deleted)"));
    assert!(!is_deleted_file_link(b"/var/log/app.log"));
    assert!(!is_deleted_file_link(b"/memfd:segment (deleted)"));
    assert!(!is_deleted_file_link(b"socket:[1234]"));
    assert!(!is_deleted_file_link(b"anon_inode:[eventfd] (deleted)"));
}

#[test]
fn own_deleted_file_is_seen_with_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = deleted_file(dir.path(), MIB as usize);
    let meta = f.metadata().expect("fstat");
    let mut out = Vec::new();
    scan_pid(me(), &mut out).expect("scan self");
    // Other tests in this process may hold deleted files too: find ours by inode.
    let ours: Vec<_> = out
        .iter()
        .filter(|h| (h.dev, h.ino) == (meta.dev(), meta.ino()))
        .collect();
    assert_eq!(ours.len(), 1, "{out:?}");
    let h = ours[0];
    assert_eq!(h.size, MIB);
    assert_eq!(h.allocated, meta.blocks() * 512);
    assert!(h.allocated >= MIB, "{h:?}");
    assert!(h.path.ends_with("gone.dat"), "{h:?}");
    assert_eq!(h.fd, f.as_raw_fd());
}

#[test]
fn a_file_open_in_two_processes_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = deleted_file(dir.path(), 2 * MIB as usize);
    let blocks = f.metadata().expect("fstat").blocks() * 512;
    // Two `sleep`s with the deleted file as their stdin: nothing else deleted is open there.
    let spawn = || {
        Reaped(
            Command::new("sleep")
                .arg("30")
                .stdin(f.try_clone().expect("dup"))
                .spawn()
                .expect("spawn sleep"),
        )
    };
    let (a, b) = (spawn(), spawn());
    drop(f);
    let mut scan = DeletedScan::new(Duration::from_secs(3600));
    let t0 = Instant::now();
    let d = scan.update([a.pid(), b.pid()], t0);
    assert_eq!(
        (d.files, d.size, d.allocated),
        (1, 2 * MIB, blocks),
        "{d:?}"
    );
    assert!(!d.partial && d.scanned == 2 && d.pids == 2, "{d:?}");
    // A member that exited is no error, only nothing held.
    let mut scan = DeletedScan::new(Duration::from_secs(10));
    let gone = scan.update([i32::MAX], t0);
    assert_eq!(
        (gone.files, gone.partial, gone.scanned),
        (0, false, 1),
        "{gone:?}"
    );
}

#[test]
fn cache_and_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = deleted_file(dir.path(), 64 * 1024);
    let child = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(f.try_clone().expect("dup"))
            .spawn()
            .expect("spawn sleep"),
    );
    let other = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    drop(f);
    let every = Duration::from_secs(10);
    let mut scan = DeletedScan::new(every).with_budget(1);
    let t0 = Instant::now();
    let tree = [child.pid(), other.pid()];
    // One fd per call: each `sleep` has at least stdin, stdout and stderr, so the first
    // call finishes nothing, and it takes at least six calls to finish both.
    let first = scan.update(tree, t0);
    assert_eq!(
        (first.scanned, first.files, first.pids),
        (0, 0, 2),
        "{first:?}"
    );
    let mut calls = 1;
    while scan.update(tree, t0).scanned < 2 {
        calls += 1;
        assert!(calls < 1000, "the scans never finish");
    }
    assert!(calls >= 6, "{calls} calls");
    let done = scan.update(tree, t0);
    assert_eq!((done.files, done.allocated > 0), (1, true), "{done:?}");
    // Not due yet: the file is re-measured through its fd, not rescanned.
    let cached = scan.update(tree, t0 + every / 2);
    assert_eq!(cached.files, 1);
    drop(child);
    // Still not due, but the fd is gone with the process: the file with it.
    let gone = scan.update(tree, t0 + every / 2);
    assert_eq!((gone.files, gone.allocated), (0, 0), "{gone:?}");
    // Due: rescanned, and the dead member holds nothing.
    let fresh = scan.update(tree, t0 + every);
    assert_eq!((fresh.files, fresh.allocated), (0, 0), "{fresh:?}");
}

#[test]
fn holder_is_attributed_to_its_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 8 * MIB;
    let mut holder = Reaped(
        Command::new(example("holder"))
            .args(["--size", "8MiB", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder"),
    );
    let stdout = holder.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("holder says what it holds");
    assert_eq!(line.trim(), format!("holding {size} bytes"));
    let mut out = Vec::new();
    scan_pid(holder.pid(), &mut out).expect("scan holder");
    assert_eq!(out.len(), 1, "{out:?}");
    // Tolerance: at least the data written; at most twice that plus 1 MiB, for filesystems
    // that preallocate past the end of a file still open for writing (XFS does).
    assert_eq!(out[0].size, size);
    assert!(
        out[0].allocated >= size && out[0].allocated <= 2 * size + MIB,
        "{out:?}"
    );
    let key = (out[0].dev, out[0].ino);
    let mut mine = Vec::new();
    scan_pid(me(), &mut mine).expect("scan self");
    assert!(mine.iter().all(|h| (h.dev, h.ino) != key), "not ours");
    let pid = holder.pid();
    drop(holder);
    assert!(wait_until(Duration::from_secs(10), || {
        scan_pid(pid, &mut out).is_err()
    }));
}

#[test]
fn a_found_file_is_re_measured_at_every_call_until_its_fd_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = deleted_file(dir.path(), 64 * 1024);
    let child = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(f.try_clone().expect("dup"))
            .spawn()
            .expect("spawn sleep"),
    );
    // A rescan only every hour: what changes below is seen by re-measuring alone.
    let mut scan = DeletedScan::new(Duration::from_secs(3600));
    let t0 = Instant::now();
    let first = scan.update([child.pid()], t0);
    assert_eq!(first.files, 1, "{first:?}");
    assert!(first.allocated < MIB, "{first:?}");
    f.write_all(&vec![0x33; 2 * MIB as usize]).expect("write");
    f.sync_all().expect("fsync");
    let grown = scan.update([child.pid()], t0 + Duration::from_secs(1));
    let want = f.metadata().expect("fstat").blocks() * 512;
    assert_eq!((grown.files, grown.allocated), (1, want), "{grown:?}");
    assert!(scan.refreshed() >= 1);
    assert_eq!(scan.files().count(), 1);
    // The holder exits: its fd names nothing any more, and the file is dropped at once.
    drop(child);
    let pid_gone = scan.update([i32::MAX], t0 + Duration::from_secs(2));
    assert_eq!(pid_gone.files, 0);
}
