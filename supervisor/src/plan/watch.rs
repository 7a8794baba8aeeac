//! The `[watch]` table: directories whose size and filesystem are watched (`[[watch.dir]]`), and
//! the rate past which a deleted-but-open file's growth is a finding (`deleted_growth`).

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;

/// Shortest `every` of a watched directory: a walk is a real cost, and sizes change slowly.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Growth rate past which a deleted file is reported, bytes per second: 256 KiB/s is 21 GiB a
/// day into a file nobody can see.
pub const DEFAULT_RATE: u64 = 256 * 1024;

/// One `[[watch.dir]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchDir {
    pub path: PathBuf,
    /// How long a measured size is reused before the next walk.
    pub every: Duration,
    /// A `disk` finding once the directory holds more than this, bytes.
    pub max: Option<u64>,
    /// A `disk` finding once the filesystem the directory lives on is more than this percent
    /// used (df's Use%).
    pub fs_max_used: Option<f64>,
}

/// Why a `[[watch.dir]]` is invalid: the key at fault and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WatchDirError {
    pub key: &'static str,
    pub message: String,
}

impl WatchDir {
    /// Checks the values (the config parses sizes and durations before).
    pub fn new(
        path: PathBuf,
        every: Duration,
        max: Option<u64>,
        fs_max_used: Option<f64>,
    ) -> Result<Self, WatchDirError> {
        let bad = |key, message: String| WatchDirError { key, message };
        if path.as_os_str().is_empty() {
            return Err(bad("path", "empty path".into()));
        }
        if every < MIN_EVERY {
            return Err(bad(
                "every",
                format!("{every:?} is too often; at least 1s (e.g. \"60s\")"),
            ));
        }
        if let Some(p) = fs_max_used {
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad(
                    "fs_max_used",
                    format!("{p} is not a percentage above 0 and at most 100 (e.g. 90)"),
                ));
            }
        }
        Ok(Self {
            path,
            every,
            max,
            fs_max_used,
        })
    }
}

/// Parses a rate `SIZE/s` or `SIZE/DURATION` (`256KiB/s`, `10MiB/10s`) into bytes per second.
///
/// # Errors
/// A message naming what is wrong: no `/`, a side that does not parse, or a zero rate.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let form = "use SIZE/s or SIZE/DURATION, e.g. 256KiB/s or 10MiB/10s";
    let Some((size, per)) = s.split_once('/') else {
        return Err(format!("invalid rate {s:?}: no '/'; {form}"));
    };
    let bytes = size
        .trim()
        .parse::<ByteSize>()
        .map_err(|e| format!("invalid size {:?} ({e}); {form}", size.trim()))?
        .as_u64();
    let per = per.trim();
    let secs = if per == "s" {
        1.0
    } else {
        humantime::parse_duration(per)
            .map_err(|e| format!("invalid duration {per:?} ({e}); {form}"))?
            .as_secs_f64()
    };
    let rate = if secs > 0.0 {
        (bytes as f64 / secs).round()
    } else {
        0.0
    };
    if rate < 1.0 {
        return Err(format!("invalid rate {s:?}: must be at least 1 byte/s"));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn watch_dir_checks() {
        let ok = WatchDir::new("/srv".into(), Duration::from_secs(1), None, Some(100.0));
        assert!(ok.is_ok());
        let every = WatchDir::new("/srv".into(), Duration::from_millis(10), None, None);
        assert_eq!(every.expect_err("too often").key, "every");
        for p in [0.0, -1.0, 100.5, f64::NAN] {
            let e = WatchDir::new("/srv".into(), Duration::from_secs(60), None, Some(p));
            assert_eq!(e.expect_err("bad percent").key, "fs_max_used", "{p}");
        }
        let e = WatchDir::new(PathBuf::new(), Duration::from_secs(60), None, None);
        assert_eq!(e.expect_err("empty").key, "path");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("256KiB/s"), Ok(256 * 1024));
        assert_eq!(parse_rate("10MiB/10s"), Ok(MIB));
        assert_eq!(
            parse_rate(" 1 MiB / 1m "),
            Ok((MIB as f64 / 60.0).round() as u64)
        );
        for bad in ["1MiB", "x/s", "1MiB/x", "0/s", "1/0s", "1/1h"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
