//! Worker output files (`--log-dir`): one per worker stream, rotated by size, written by the
//! "logs" thread. A failing write (a full disk) drops the file's lines for a second, then tries
//! again, and notes how many it dropped once it can write. An episode of failure is told once,
//! by a `log_error` event and its line on stderr, and its end once, by a `log_resumed`, when a
//! flush has reached the file: lines written into the buffer prove nothing, since a full disk
//! fails only the flush.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::{stamp, Notes, Source, Stream};
use crate::events::{Event, Kind};
use crate::plan::LogSpec;

struct LogFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    /// Set after a failure: lines are dropped until this instant, then opening is tried again.
    retry_at: Option<Instant>,
    dropped: u64,
    /// Failing since the last flush that reached the file: the episode has been told.
    failing: bool,
    /// Lines dropped since the episode began, for its end's `log_resumed`.
    episode_dropped: u64,
}

/// The log files of every worker stream, owned by the "logs" thread.
pub(super) struct LogFiles {
    spec: LogSpec,
    files: HashMap<(String, u32, Stream), LogFile>,
    /// Where a write failure is reported: the events, and supervise's own lines.
    events: Option<std::sync::mpsc::Sender<String>>,
    notes: Option<Notes>,
}

impl LogFiles {
    pub(super) fn new(
        spec: LogSpec,
        events: Option<std::sync::mpsc::Sender<String>>,
        notes: Option<Notes>,
    ) -> Self {
        Self {
            spec,
            files: HashMap::new(),
            events,
            notes,
        }
    }

    pub(super) fn flush_all(&mut self) {
        let mut failed = Vec::new();
        let mut resumed = Vec::new();
        for (key, f) in &mut self.files {
            if let Some(out) = f.out.as_mut() {
                match out.flush() {
                    Err(e) => failed.push((key.clone(), e)),
                    Ok(()) if f.failing => resumed.push(key.clone()),
                    Ok(()) => {}
                }
            }
        }
        for (key, e) in failed {
            self.failed(&key, &e);
        }
        for key in resumed {
            self.resumed(&key);
        }
    }

    pub(super) fn write(
        &mut self,
        src: &Source,
        stream: Stream,
        bytes: &[u8],
        read_at: Option<SystemTime>,
    ) {
        let spec = &self.spec;
        let key = (src.program.clone(), src.instance, stream);
        let f = self.files.entry(key.clone()).or_insert_with(|| LogFile {
            path: spec.dir.join(format!(
                "{}.{}.{}.log",
                src.program,
                src.instance,
                stream.as_str()
            )),
            out: None,
            size: 0,
            retry_at: None,
            dropped: 0,
            failing: false,
            episode_dropped: 0,
        });
        if let Some(t) = f.retry_at {
            if Instant::now() < t {
                f.dropped += 1;
                f.episode_dropped += 1;
                return;
            }
            f.retry_at = None;
        }
        if let Err(e) = f.append(spec, read_at.map(stamp).as_deref(), bytes) {
            f.dropped += 1;
            f.episode_dropped += 1;
            self.failed(&key, &e);
        }
    }

    /// A write failed (disk full, permissions): drop lines for a second, then retry; report it
    /// if an episode begins.
    fn failed(&mut self, key: &(String, u32, Stream), e: &io::Error) {
        let Some(f) = self.files.get_mut(key) else {
            return;
        };
        f.out = None;
        f.retry_at = Some(Instant::now() + Duration::from_secs(1));
        if f.failing {
            return;
        }
        f.failing = true;
        let ev = Event::now(
            &key.0,
            key.1,
            None,
            Kind::LogError {
                path: f.path.display().to_string(),
                error: e.to_string(),
            },
        );
        self.tell(&ev);
    }

    /// A flush reached the file after an episode of failure: report its end.
    fn resumed(&mut self, key: &(String, u32, Stream)) {
        let Some(f) = self.files.get_mut(key) else {
            return;
        };
        f.failing = false;
        let ev = Event::now(
            &key.0,
            key.1,
            None,
            Kind::LogResumed {
                path: f.path.display().to_string(),
                dropped: std::mem::take(&mut f.episode_dropped),
            },
        );
        self.tell(&ev);
    }

    /// An event to the events file and its line to stderr.
    fn tell(&self, ev: &Event<'_>) {
        if let Some(notes) = &self.notes {
            notes.event(ev);
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(ev.to_line());
        }
    }
}

impl LogFile {
    /// Appends one line (after its `stamp`, if any), rotating first when it would not fit.
    fn append(&mut self, spec: &LogSpec, stamp: Option<&str>, bytes: &[u8]) -> io::Result<()> {
        let stamp = stamp.unwrap_or_default().as_bytes();
        let need = (stamp.len() + bytes.len()) as u64 + 1;
        if self.out.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        if self.size > 0 && self.size + need > spec.max {
            if let Some(mut out) = self.out.take() {
                out.flush()?;
            }
            rotate(&self.path, spec.keep)?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if self.dropped > 0 {
            let note = format!(
                "supervise: {} lines dropped while this log could not be written\n",
                self.dropped
            );
            out.write_all(note.as_bytes())?;
            self.size += note.len() as u64;
            self.dropped = 0;
        }
        out.write_all(stamp)?;
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
        self.size += need;
        Ok(())
    }
}

/// Shifts `path.N` to `path.N+1` (dropping those past `keep`) and `path` to `path.1`.
pub(super) fn rotate(path: &std::path::Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.log");
        for i in 0..5 {
            std::fs::write(&p, format!("gen {i}")).expect("write");
            rotate(&p, 2).expect("rotate");
        }
        assert!(!p.exists());
        let read =
            |n: u32| std::fs::read_to_string(dir.path().join(format!("a.log.{n}"))).expect("read");
        assert_eq!(read(1), "gen 4");
        assert_eq!(read(2), "gen 3");
        assert!(!dir.path().join("a.log.3").exists());
    }

    #[test]
    fn writer_rotates_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = LogSpec {
            dir: dir.path().to_owned(),
            max: 1024,
            keep: 2,
        };
        let mut w = LogFiles::new(spec, None, None);
        let src = Source::new("p", 0, true);
        for i in 0..100 {
            w.write(
                &src,
                Stream::Stdout,
                format!("line {i:03} {}", "x".repeat(90)).as_bytes(),
                None,
            );
        }
        w.flush_all();
        let live = dir.path().join("p.0.stdout.log");
        let size = |p: &std::path::Path| std::fs::metadata(p).expect("exists").len();
        assert!(size(&live) <= 1024);
        assert!(size(&dir.path().join("p.0.stdout.log.1")) <= 1024);
        assert!(size(&dir.path().join("p.0.stdout.log.2")) <= 1024);
        assert!(!dir.path().join("p.0.stdout.log.3").exists());
        let last = std::fs::read_to_string(&live).expect("read");
        assert!(
            last.trim_end()
                .ends_with(&format!("line 099 {}", "x".repeat(90))),
            "{last}"
        );
    }

    #[test]
    fn stamped_lines_and_a_failure_told_once_per_episode() {
        use std::time::UNIX_EPOCH;
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = LogSpec {
            dir: dir.path().to_owned(),
            max: 1 << 20,
            keep: 1,
        };
        let (events, events_rx) = std::sync::mpsc::channel();
        let (tx, mut notes_rx) = tokio::sync::mpsc::unbounded_channel();
        let notes = Notes::new(tx, crate::events::human::Style::default(), false);
        let mut w = LogFiles::new(spec, Some(events), Some(notes));
        let src = Source::new("p", 0, true);
        let at = Some(UNIX_EPOCH + Duration::from_millis(1500));
        // A directory where the file should be: every open fails.
        let live = dir.path().join("p.0.stdout.log");
        std::fs::create_dir(&live).expect("mkdir");
        let key = ("p".to_owned(), 0, Stream::Stdout);
        let retry_now = |w: &mut LogFiles| {
            if let Some(f) = w.files.get_mut(&key) {
                f.retry_at = None;
            }
        };
        for _ in 0..3 {
            w.write(&src, Stream::Stdout, b"lost", at);
            retry_now(&mut w);
        }
        let events: Vec<String> = events_rx.try_iter().collect();
        assert_eq!(events.len(), 1, "one event per episode: {events:?}");
        assert!(events[0].contains("\"event\":\"log_error\""), "{events:?}");
        let mut told = Vec::new();
        while let Ok(super::super::Msg::Note(text)) = notes_rx.try_recv() {
            told.push(text);
        }
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains(" p[0] cannot write "), "{told:?}");
        std::fs::remove_dir(&live).expect("rmdir");
        w.write(&src, Stream::Stdout, b"kept", at);
        w.flush_all();
        assert_eq!(
            std::fs::read_to_string(&live).expect("read"),
            "supervise: 3 lines dropped while this log could not be written\n\
             1970-01-01T00:00:01.500Z kept\n"
        );
        // Its end, once.
        let events: Vec<String> = events_rx.try_iter().collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].contains("\"event\":\"log_resumed\"") && events[0].contains("\"dropped\":3"),
            "{events:?}"
        );
        assert!(matches!(
            notes_rx.try_recv(),
            Ok(super::super::Msg::Note(text)) if text.contains("writing ") && text.contains(" again; 3 lines were dropped")
        ));
        w.write(&src, Stream::Stdout, b"more", at);
        w.flush_all();
        assert_eq!(events_rx.try_iter().count(), 0);
        // A new episode is told again.
        std::fs::remove_file(&live).expect("rm");
        std::fs::create_dir(&live).expect("mkdir");
        w.files.get_mut(&key).expect("file").out = None;
        w.write(&src, Stream::Stdout, b"lost", None);
        assert!(matches!(
            notes_rx.try_recv(),
            Ok(super::super::Msg::Note(_))
        ));
    }

    #[test]
    fn a_disk_that_fails_only_the_flush_is_told_once_per_episode() {
        // /dev/full takes every write into the buffer and fails every flush, as a full disk
        // does with buffered lines.
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = LogSpec {
            dir: dir.path().to_owned(),
            max: 1 << 20,
            keep: 1,
        };
        let (events, events_rx) = std::sync::mpsc::channel();
        let mut w = LogFiles::new(spec, Some(events), None);
        let src = Source::new("p", 0, true);
        let live = dir.path().join("p.0.stdout.log");
        std::os::unix::fs::symlink("/dev/full", &live).expect("symlink");
        let key = ("p".to_owned(), 0, Stream::Stdout);
        for _ in 0..5 {
            w.write(&src, Stream::Stdout, b"lost", None);
            w.flush_all();
            if let Some(f) = w.files.get_mut(&key) {
                f.retry_at = None;
            }
        }
        let names = |rx: &std::sync::mpsc::Receiver<String>| -> Vec<String> {
            rx.try_iter()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(&l).expect("json");
                    v["event"].as_str().expect("event").to_owned()
                })
                .collect()
        };
        assert_eq!(names(&events_rx), ["log_error"]);
        std::fs::remove_file(&live).expect("rm");
        w.write(&src, Stream::Stdout, b"kept", None);
        w.flush_all();
        assert_eq!(names(&events_rx), ["log_resumed"]);
        assert!(std::fs::read_to_string(&live)
            .expect("read")
            .ends_with("kept\n"));
    }
}
