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
