use super::*;
use crate::disk::testbin::wait_until;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

const KIB: usize = 1024;

fn write(path: &Path, len: usize) {
    let mut f = File::create(path).expect("create");
    f.write_all(&vec![0xa5; len]).expect("write");
    f.sync_all().expect("fsync");
}

/// `(allocated, apparent)` bytes of one inode, not following a symlink.
fn sizes(path: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(path).expect("lstat");
    (m.blocks() * 512, m.len())
}

fn no_stop() -> AtomicBool {
    AtomicBool::new(false)
}

/// root/{a/f1, a/b/f2, a/b/link2 (hard link to f2), a/sym -> outside/big, a/dirsym -> outside,
/// sparse}; returns the expected `du -sx` bytes (allocated, apparent), computed from our own
/// lstat of each inode.
fn tree(root: &Path, outside: &Path) -> (u64, u64) {
    write(&outside.join("big"), 4096 * KIB);
    let a = root.join("a");
    let b = a.join("b");
    fs::create_dir_all(&b).expect("mkdir");
    write(&a.join("f1"), 100 * KIB);
    write(&b.join("f2"), 300 * KIB);
    fs::hard_link(b.join("f2"), b.join("link2")).expect("hard link");
    std::os::unix::fs::symlink(outside.join("big"), a.join("sym")).expect("symlink");
    std::os::unix::fs::symlink(outside, a.join("dirsym")).expect("symlink");
    let sparse = File::create(root.join("sparse")).expect("create");
    sparse.set_len(8 << 20).expect("set_len");
    [
        root.to_path_buf(),
        a.clone(),
        b.clone(),
        a.join("f1"),
        b.join("f2"),
        a.join("sym"),
        a.join("dirsym"),
        root.join("sparse"),
    ]
    .iter()
    .map(|p| sizes(p))
    .fold((0, 0), |(b, a), (b1, a1)| (b + b1, a + a1))
}

#[test]
fn size_like_du_hard_links_once_symlinks_not_followed() {
    let root = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let (expected, apparent) = tree(root.path(), outside.path());
    let u = dir_usage(root.path(), DEFAULT_ENTRY_LIMIT, &no_stop()).expect("walk");
    assert_eq!((u.bytes, u.apparent), (expected, apparent), "{u:?}");
    assert!(u.bytes >= 400 * 1024 && u.bytes < 4096 * 1024, "{u:?}");
    // root + a, b, f1, f2, link2, sym, dirsym, sparse
    assert_eq!(u.entries, 9, "{u:?}");
    assert!(!u.partial(), "{u:?}");
    assert!(
        u.apparent >= (400 * 1024 + (8 << 20)) as u64,
        "sparse file's apparent size counts"
    );
    // The same as du itself (-x: one filesystem; hard links once; symlinks not followed).
    let du = std::process::Command::new("du")
        .args(["-s", "-x", "-B1"])
        .arg(root.path())
        .output()
        .expect("du");
    let du: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints bytes");
    assert_eq!(u.bytes, du);
}

#[test]
fn entry_limit_and_stop_make_a_partial_walk() {
    let root = tempfile::tempdir().expect("tempdir");
    for i in 0..10 {
        write(&root.path().join(format!("f{i}")), KIB);
    }
    let u = dir_usage(root.path(), 4, &no_stop()).expect("walk");
    assert!(u.truncated && u.partial() && u.entries == 4, "{u:?}");
    let stopped =
        dir_usage(root.path(), DEFAULT_ENTRY_LIMIT, &AtomicBool::new(true)).expect("walk");
    assert!(stopped.truncated && stopped.entries == 1, "{stopped:?}");
    let full = dir_usage(root.path(), DEFAULT_ENTRY_LIMIT, &no_stop()).expect("walk");
    assert!(!full.partial() && full.entries == 11, "{full:?}");
}

#[test]
fn missing_root_is_an_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let e = dir_usage(&root.path().join("nope"), 10, &no_stop()).expect_err("missing");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

/// setfsuid(2) on the calling thread only (the raw syscall: credentials are per thread); returns
/// the fsuid now in force.
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes a plain integer and changes only this thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) };
    // SAFETY: as above; an invalid uid (-1) changes nothing and returns the current fsuid.
    let now = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) };
    u32::try_from(now).unwrap_or(u32::MAX)
}

#[test]
fn unreadable_directory_is_partial_not_fatal() {
    let root = tempfile::tempdir().expect("tempdir");
    let open = root.path().join("open");
    let locked = root.path().join("locked");
    fs::create_dir(&open).expect("mkdir");
    fs::create_dir(&locked).expect("mkdir");
    write(&open.join("f"), 64 * KIB);
    write(&locked.join("secret"), 64 * KIB);
    let mode = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    mode(root.path(), 0o755);
    mode(&open, 0o755);
    mode(&open.join("f"), 0o644);
    mode(&locked, 0o000);
    let path = root.path().to_path_buf();
    // Root reads anything; walk as nobody, on a thread of its own, so the directory is denied.
    let u = std::thread::spawn(move || {
        // SAFETY: geteuid has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        if root_user {
            assert_eq!(set_fsuid(65534), 65534, "cannot drop the fsuid to nobody");
        }
        let u = dir_usage(&path, DEFAULT_ENTRY_LIMIT, &AtomicBool::new(false));
        if root_user {
            set_fsuid(0);
        }
        u
    })
    .join()
    .expect("walker thread")
    .expect("the root itself is readable");
    mode(&locked, 0o755);
    assert_eq!(u.errors, 1, "{u:?}");
    assert!(u.partial(), "{u:?}");
    let first = u.first_error.as_deref().expect("first error");
    assert!(first.contains("locked"), "{first}");
    assert!(u.bytes >= 64 * 1024, "the readable file counts: {u:?}");
}

#[test]
fn filesystem_usage() {
    let f = FsUsage::from_counts(4096, 1000, 100, 50);
    assert_eq!((f.total, f.available), (4096 * 1000, 4096 * 50));
    assert!((f.used_percent - 900.0 * 100.0 / 950.0).abs() < 1e-9);
    assert_eq!(FsUsage::from_counts(4096, 0, 0, 0).used_percent, 0.0);
    let root = tempfile::tempdir().expect("tempdir");
    let here = fs_usage(root.path()).expect("statvfs");
    assert!(here.total > 0 && here.available <= here.total, "{here:?}");
    assert!((0.0..=100.0).contains(&here.used_percent), "{here:?}");
    assert!(fs_usage(&root.path().join("nope")).is_err());
}

#[test]
fn watcher_measures_in_the_background_and_refreshes() {
    let root = tempfile::tempdir().expect("tempdir");
    write(&root.path().join("f"), 64 * KIB);
    let missing = root.path().join("missing");
    let dirs = vec![
        WatchDir::new(root.path().into(), Duration::from_secs(1), None, None).expect("dir"),
        WatchDir::new(missing.clone(), Duration::from_secs(3600), None, None).expect("dir"),
    ];
    let w = DirWatcher::start(dirs, DEFAULT_ENTRY_LIMIT).expect("start");
    let measured = |w: &DirWatcher| {
        let s = w.snapshot();
        (s[0].usage.as_ref().map(|u| u.bytes), s[1].error.is_some())
    };
    assert!(wait_until(Duration::from_secs(10), || {
        matches!(measured(&w), (Some(_), true))
    }));
    let s = w.snapshot();
    let first = s[0].usage.as_ref().expect("usage").bytes;
    assert_eq!(
        first,
        dir_usage(root.path(), 100, &no_stop()).expect("walk").bytes
    );
    assert!(s[0].fs.is_some() && s[0].error.is_none(), "{:?}", s[0]);
    assert!(s[1].usage.is_none(), "{:?}", s[1]);
    assert!(s[1].error.as_deref().is_some_and(|e| e.contains("missing")));
    // Grows; the next walk (every 1 s) sees it.
    let gen = w.generation();
    write(&root.path().join("g"), 256 * KIB);
    assert!(wait_until(Duration::from_secs(10), || {
        w.generation() > gen && measured(&w).0.is_some_and(|b| b >= first + 256 * 1024)
    }));
}
