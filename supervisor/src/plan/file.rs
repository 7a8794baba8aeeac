//! The files a plan is read from (the config, env files), read so that nothing they name can make
//! supervise wait or swallow memory.
//!
//! A path in a config may name anything: a FIFO (opening it for reading waits for a writer, and
//! reading it waits for data), a device (`/dev/zero` never ends), a directory, or a file far larger
//! than any config. So the file is opened with `O_NONBLOCK` (an open that would wait returns at
//! once instead), checked with fstat(2) on the open descriptor (so what is checked is what is
//! read), refused unless it is a regular file no larger than a bound, and read no further than
//! that bound (a file that grows while it is read, or one under /proc that says it is empty, is
//! still cut short). `O_NONBLOCK` changes nothing for a regular file: reads of one never wait on
//! it (see open(2)). A regular file on a file system that hangs (a dead NFS server) can still
//! block the read: the engine loads configs off its own thread for that reason.

use std::fmt;
use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use bytesize::ByteSize;

/// The largest config file read. A hand-written config is a few KiB; a generated one of a
/// thousand programs with a dozen keys each is 320 KiB, so 1 MiB holds some 3,000 programs, more
/// than the supervisor is built for (and than most open-file limits let it run). Parsing costs
/// about 35 times the text in memory while it lasts (measured: 1.3 MiB took 45 MiB and 0.15 s,
/// 4 MiB 120 MiB and 1.4 s), so a bound far past any real config is still a mistake caught (a
/// wrong path, a log file) before it costs much.
pub const MAX_CONFIG: u64 = 1 << 20;
/// The largest env file read: docker and systemd read theirs without a bound, but an env file of
/// more than 1 MiB is not a list of variables (Linux itself refuses an environment and arguments
/// of more than a quarter of the stack limit, 2 MiB by default, at exec).
pub const MAX_ENV_FILE: u64 = 1 << 20;

/// What a path turned out to be, when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Other,
}

impl Kind {
    #[must_use]
    pub fn of(t: FileType) -> Self {
        if t.is_file() {
            Kind::Regular
        } else if t.is_dir() {
            Kind::Directory
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Other
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Fifo => "a FIFO (named pipe)",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Socket => "a socket",
            Kind::Other => "something else",
        }
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// It could not be opened or read.
    Io(io::Error),
    /// It is not a regular file.
    NotRegular(Kind),
    /// It is larger than the bound (`size` as fstat(2) said, or more than the bound read).
    TooLarge { size: u64, max: u64 },
    /// It is not UTF-8; `at` is the offset of the first bad byte.
    NotText { at: usize },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular(Kind::Other) => write!(f, "is not a regular file"),
            ReadError::NotRegular(kind) => {
                write!(f, "is {}, not a regular file", kind.describe())
            }
            ReadError::TooLarge { size, max } if size > max => write!(
                f,
                "is {}, more than the {} it may be",
                ByteSize(*size),
                ByteSize(*max)
            ),
            ReadError::TooLarge { max, .. } => {
                write!(f, "holds more than the {} it may be", ByteSize(*max))
            }
            ReadError::NotText { at } => write!(f, "is not UTF-8 text (byte {at})"),
        }
    }
}

/// Whether a file of this kind and size may be read: a regular file of at most `max` bytes.
pub fn check(kind: Kind, size: u64, max: u64) -> Result<(), ReadError> {
    if kind != Kind::Regular {
        return Err(ReadError::NotRegular(kind));
    }
    if size > max {
        return Err(ReadError::TooLarge { size, max });
    }
    Ok(())
}

/// Reads `path` as UTF-8 text if it is a regular file of at most `max` bytes; never waits on a
/// FIFO or a device, never reads past `max`.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    check(Kind::of(meta.file_type()), meta.len(), max)?;
    read_bounded(file, meta.len(), max)
}

fn read_bounded(file: File, size: u64, max: u64) -> Result<String, ReadError> {
    let mut buf = Vec::with_capacity(usize::try_from(size.min(max)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge {
            size: buf.len() as u64,
            max,
        });
    }
    String::from_utf8(buf).map_err(|e| ReadError::NotText {
        at: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound() {
        use Kind::{BlockDevice, CharDevice, Directory, Fifo, Other, Regular, Socket};
        for (kind, size, max, ok) in [
            (Regular, 0, 10, true),
            (Regular, 10, 10, true),
            (Regular, 11, 10, false),
            (Regular, u64::MAX, MAX_CONFIG, false),
            (Directory, 0, 10, false),
            (Fifo, 0, 10, false),
            (CharDevice, 0, 10, false),
            (BlockDevice, 0, 10, false),
            (Socket, 0, 10, false),
            (Other, 0, 10, false),
        ] {
            assert_eq!(check(kind, size, max).is_ok(), ok, "{kind:?} {size} {max}");
        }
        assert_eq!(
            check(Fifo, 0, 10).map_err(|e| e.to_string()),
            Err("is a FIFO (named pipe), not a regular file".into())
        );
        assert_eq!(
            check(Regular, 2 << 20, 1 << 20).map_err(|e| e.to_string()),
            Err("is 2.0 MiB, more than the 1.0 MiB it may be".into())
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_a_device_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // With no writer, a blocking open would never return.
        assert!(matches!(
            read_text(&fifo, 10),
            Err(ReadError::NotRegular(Kind::Fifo))
        ));
        assert!(matches!(
            read_text(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular(Kind::CharDevice))
        ));
        assert!(matches!(
            read_text(dir.path(), 10),
            Err(ReadError::NotRegular(Kind::Directory))
        ));
        assert!(matches!(
            read_text(&dir.path().join("none"), 10),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn sizes_and_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "0123456789").expect("write");
        assert_eq!(read_text(&path, 10).expect("fits"), "0123456789");
        assert!(matches!(
            read_text(&path, 9),
            Err(ReadError::TooLarge { size: 10, max: 9 })
        ));
        // A sparse file: large to fstat, costing nothing on disk.
        File::create(&path)
            .and_then(|f| f.set_len(MAX_ENV_FILE + 1))
            .expect("sparse");
        assert!(matches!(
            read_text(&path, MAX_ENV_FILE),
            Err(ReadError::TooLarge { .. })
        ));
        std::fs::write(&path, b"ok\xffno").expect("write");
        assert!(matches!(
            read_text(&path, 10),
            Err(ReadError::NotText { at: 2 })
        ));
        // What fstat says is not trusted: a /proc file says it is empty and is read all the
        // same, but no further than the bound.
        assert!(!read_text(Path::new("/proc/self/status"), 1 << 16)
            .expect("read")
            .is_empty());
        assert!(matches!(
            read_text(Path::new("/proc/self/status"), 8),
            Err(ReadError::TooLarge { size: 9, max: 8 })
        ));
    }
}
