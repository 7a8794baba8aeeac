use std::fs::File;
use std::path::Path;

use super::*;

/// A sink for `path` whose first writes go to /dev/full (ENOSPC, as on a full disk).
fn full_then(path: &Path) -> EventsFile {
    let full = OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .expect("/dev/full");
    EventsFile::new(EventsTarget::File(path.to_owned()), Box::new(full))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn lost_events_are_counted_and_said_first_when_writing_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut sink = full_then(&path);
    let t0 = Instant::now();
    sink.write("{\"n\":1}\n", t0);
    // Within the second after the failure: not even tried.
    sink.write("{\"n\":2}\n", t0 + Duration::from_millis(500));
    assert!(!path.exists(), "nothing reopened yet");
    sink.write("{\"n\":3}\n", t0 + Duration::from_millis(1100));
    sink.write("{\"n\":4}\n", t0 + Duration::from_millis(1200));
    let got = lines(&path);
    assert_eq!(got.len(), 3, "{got:?}");
    let lost = json(&got[0]);
    assert_eq!(lost["event"], "events_lost");
    assert_eq!(lost["program"], "supervise");
    assert_eq!(lost["count"], 2);
    assert_eq!(got[1..], ["{\"n\":3}", "{\"n\":4}"]);
}

#[test]
fn the_count_is_written_when_the_retry_comes_even_without_new_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut sink = full_then(&path);
    let t0 = Instant::now();
    sink.write("{\"n\":1}\n", t0);
    assert_eq!(sink.retry_at, Some(t0 + RETRY));
    assert!(sink.resume(t0 + RETRY));
    let got = lines(&path);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(json(&got[0])["count"], 1);
    assert!(sink.retry_at.is_none() && sink.lost == 0);
}

#[test]
fn a_retry_that_fails_again_keeps_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where the file should be: every reopen fails.
    let path = dir.path().join("events.jsonl");
    std::fs::create_dir(&path).expect("mkdir");
    let mut sink = full_then(&path);
    let t0 = Instant::now();
    for i in 0..5u32 {
        sink.write("{}\n", t0 + Duration::from_millis(u64::from(i) * 600));
    }
    assert_eq!(sink.lost, 5);
    assert!(sink
        .retry_at
        .is_some_and(|at| at > t0 + Duration::from_secs(2)));
    // Room again: the count covers every one of them.
    std::fs::remove_dir(&path).expect("rmdir");
    sink.write("{}\n", t0 + Duration::from_secs(10));
    let got = lines(&path);
    assert_eq!(json(&got[0])["count"], 5);
    assert_eq!(got[1], "{}");
}

#[test]
fn a_torn_line_is_ended_before_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, "{\"n\":1}\n{\"cut sho").expect("write");
    let mut sink = full_then(&path);
    let t0 = Instant::now();
    sink.write("{\"n\":2}\n", t0);
    sink.write("{\"n\":3}\n", t0 + RETRY);
    let got = lines(&path);
    assert_eq!(got[..2], ["{\"n\":1}", "{\"cut sho"]);
    assert_eq!(json(&got[2])["event"], "events_lost");
    assert_eq!(got[3], "{\"n\":3}");
}

/// A writer that takes `room` bytes, then fails with ENOSPC.
struct Short {
    file: File,
    room: usize,
}

impl Write for Short {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.file.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_line_cut_short_by_a_full_disk_does_not_spoil_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let mut sink = EventsFile::new(
        EventsTarget::File(path.clone()),
        Box::new(Short { file, room: 4 }),
    );
    let t0 = Instant::now();
    sink.write("{\"n\":1}\n", t0);
    sink.write("{\"n\":2}\n", t0 + RETRY);
    let got = lines(&path);
    assert_eq!(got[0], "{\"n\"");
    assert_eq!(json(&got[1])["count"], 1);
    assert_eq!(got[2], "{\"n\":2}");
}

#[test]
fn a_file_is_rotated_before_a_line_would_take_it_past_its_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    // Written before: counted against the bound.
    std::fs::write(&path, "{\"n\":0}\n").expect("write");
    let rotation = EventsRotation { max: 64, keep: 2 };
    let mut sink = EventsFile::open(EventsTarget::File(path.clone()), rotation).expect("open");
    let t0 = Instant::now();
    for n in 1..=40 {
        sink.write(&format!("{{\"n\":{n:02}}}\n"), t0);
    }
    let rotated = |k: u32| dir.path().join(format!("events.jsonl.{k}"));
    let mut numbers = Vec::new();
    for p in [rotated(2), rotated(1), path.clone()] {
        let size = std::fs::metadata(&p).expect("exists").len();
        assert!(size <= 64, "{}: {size} bytes", p.display());
        numbers.extend(lines(&p).iter().map(|l| json(l)["n"].as_u64().expect("n")));
    }
    assert!(!rotated(3).exists(), "kept 2");
    // The newest lines, in order, none lost or torn.
    assert_eq!(*numbers.last().expect("lines"), 40);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    // Each rotated file as full as whole lines of 9 bytes make it.
    assert_eq!(lines(&rotated(1)).len(), 64 / 9);
    assert_eq!(lines(&rotated(2)).len(), 64 / 9);
}

#[test]
fn a_bound_of_zero_never_rotates_and_nor_is_anything_but_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let never = EventsRotation { max: 0, keep: 1 };
    let mut sink = EventsFile::open(EventsTarget::File(path.clone()), never).expect("open");
    for _ in 0..100 {
        sink.write("{\"n\":1}\n", Instant::now());
    }
    assert_eq!(lines(&path).len(), 100);
    assert!(!dir.path().join("events.jsonl.1").exists());
    // A link to a device: written through, never renamed.
    let link = dir.path().join("null.jsonl");
    std::os::unix::fs::symlink("/dev/null", &link).expect("symlink");
    let small = EventsRotation { max: 1024, keep: 1 };
    let mut sink = EventsFile::open(EventsTarget::File(link.clone()), small).expect("open");
    for _ in 0..1000 {
        sink.write("{\"n\":1}\n", Instant::now());
    }
    assert!(sink.lost == 0 && !sink.failing);
    assert!(std::fs::symlink_metadata(&link)
        .expect("still there")
        .file_type()
        .is_symlink());
    assert!(!dir.path().join("null.jsonl.1").exists());
}
