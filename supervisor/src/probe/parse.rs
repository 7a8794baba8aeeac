//! Parsers for the three files read on every tick: /proc/PID/stat, statm and io (proc(5)).
//!
//! statm is read although stat has a resident-set field (24): on Linux 6.18 stat's comes from the
//! mm's per-CPU counters read without their per-CPU parts, statm's from their exact sum, and the
//! two differed by 27 pages on an idle `sleep` here. The lag grows with the number of CPUs (a
//! batch per CPU), which a memory limit cannot afford.
//!
//! Why not procfs: profiling an idle supervisor of 20 workers (`valgrind --tool=callgrind`, 20 s)
//! put 85 % of its user-space instructions in procfs-core's `Stat` and `Io` parsers, which build
//! every field, a `String` for `comm` and a `HashMap` for io. These pick the handful of fields a
//! sample needs straight out of the bytes. procfs-core stays for the rest (smaps_rollup), and the
//! tests below check both parsers agree on real files.
//!
//! Every input is untrusted: `comm` is chosen by the process (any bytes, spaces and parentheses
//! included), so fields are counted from the *last* `)`; nothing indexes unchecked, and a number
//! too large for its type fails the parse rather than wrapping.

/// The fields of /proc/PID/stat that a sample uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    pub starttime: u64,
    pub vsize: u64,
    /// Field 42, aggregated block-I/O delay in clock ticks: non-zero only when the kernel keeps
    /// task delay accounting (`kernel.task_delayacct`); 0 when the kernel does not have the field.
    pub blkio_ticks: u64,
}

/// Parses /proc/PID/stat. Fields are numbered as in proc(5): 1 pid, 2 (comm), 3 state, ...
#[must_use]
pub fn stat(bytes: &[u8]) -> Option<Stat> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let rest = bytes.get(close + 1..)?;
    let mut out = Stat::default();
    let mut state = None;
    // One pass over the bytes, fields cut at spaces as they come: the iterator chain this
    // replaces (split, filter, zip) cost about 4,700 instructions a line under callgrind, a third
    // of an idle supervisor's user-space instructions.
    let (mut i, mut n) = (0, 2u32);
    while i < rest.len() {
        if rest[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < rest.len() && rest[i] != b' ' {
            i += 1;
        }
        let f = &rest[start..i];
        n += 1;
        match n {
            3 => state = f.first().copied(),
            4 => out.ppid = int(f)?,
            5 => out.pgrp = int(f)?,
            6 => out.session = int(f)?,
            14 => out.utime = int(f)?,
            15 => out.stime = int(f)?,
            20 => out.num_threads = int(f)?,
            22 => out.starttime = int(f)?,
            23 => out.vsize = int(f)?,
            42 => {
                out.blkio_ticks = int(f)?;
                break;
            }
            _ => {}
        }
    }
    out.state = state?;
    // A line cut before vsize is not a stat file.
    (out.starttime > 0 || out.vsize > 0 || out.num_threads > 0).then_some(out)
}

/// Resident pages from /proc/PID/statm (its second number).
#[must_use]
pub fn statm_resident(bytes: &[u8]) -> Option<u64> {
    int(bytes.split(|&b| b == b' ').nth(1)?)
}

/// `read_bytes` and `write_bytes` from /proc/PID/io (storage-layer I/O), 0 for a missing line.
#[must_use]
pub fn io(bytes: &[u8]) -> Option<(u64, u64)> {
    let (mut read, mut write) = (None, None);
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"read_bytes: ") {
            read = Some(int(v)?);
        } else if let Some(v) = line.strip_prefix(b"write_bytes: ") {
            write = Some(int(v)?);
        }
    }
    (read.is_some() || write.is_some()).then(|| (read.unwrap_or(0), write.unwrap_or(0)))
}

/// A decimal integer (optionally negative), with trailing whitespace allowed; `None` for
/// anything else, or for a value out of range for `T`.
fn int<T: TryFrom<i128>>(field: &[u8]) -> Option<T> {
    let field = field.trim_ascii_end();
    let (neg, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i128::from(d - b'0');
    }
    T::try_from(if neg { -v } else { v }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs_core::FromRead;

    const LINE: &[u8] = b"42 (a b) (c)) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 5 0 99 1000 25 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 12\n";

    #[test]
    fn odd_comm_is_skipped_by_the_last_paren() {
        let s = stat(LINE).expect("parses");
        assert_eq!(
            s,
            Stat {
                state: b'S',
                ppid: 1,
                pgrp: 42,
                session: 42,
                utime: 7,
                stime: 3,
                num_threads: 5,
                starttime: 99,
                vsize: 1000,
                blkio_ticks: 0,
            }
        );
    }

    #[test]
    fn field_42_is_the_block_io_delay() {
        let mut line = b"7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 4096 1".to_vec();
        // Fields 25..=41, then 42.
        for _ in 25..=41 {
            line.extend_from_slice(b" 0");
        }
        line.extend_from_slice(b" 314 0 0\n");
        assert_eq!(stat(&line).map(|s| s.blkio_ticks), Some(314));
    }

    #[test]
    fn cut_or_garbage_stat_is_refused() {
        assert_eq!(stat(b""), None);
        assert_eq!(stat(b"42 (x"), None);
        assert_eq!(stat(b"42 (x) S"), None);
        assert_eq!(stat(b"42 (x) S 1 2 3 zz"), None);
        assert_eq!(stat(b"42 (x) S 1 99999999999999999999999 3"), None);
    }

    #[test]
    fn statm_and_io() {
        assert_eq!(statm_resident(b"1000 250 30 4 0 100 0\n"), Some(250));
        assert_eq!(statm_resident(b"1000"), None);
        assert_eq!(statm_resident(b"1000 -4 1"), None);
        let io_text = b"rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(io(io_text), Some((4096, 8192)));
        assert_eq!(io(b"rchar: 1\n"), None);
        assert_eq!(io(b"read_bytes: x\n"), None);
    }

    #[test]
    fn agrees_with_procfs_on_this_process() {
        // Burn a little CPU so utime is not trivially zero on both sides.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let raw = std::fs::read("/proc/self/stat").expect("stat");
        let ours = stat(&raw).expect("ours");
        let theirs = procfs_core::process::Stat::from_read(&raw[..]).expect("procfs");
        assert_eq!(ours.state, u8::try_from(theirs.state).expect("ascii"));
        assert_eq!(ours.ppid, theirs.ppid);
        assert_eq!(ours.pgrp, theirs.pgrp);
        assert_eq!(ours.session, theirs.session);
        assert_eq!((ours.utime, ours.stime), (theirs.utime, theirs.stime));
        assert_eq!(
            ours.num_threads,
            u64::try_from(theirs.num_threads).expect("n")
        );
        assert_eq!(
            (ours.starttime, ours.vsize),
            (theirs.starttime, theirs.vsize)
        );
        assert_eq!(
            Some(ours.blkio_ticks),
            theirs.delayacct_blkio_ticks.or(Some(0))
        );

        let raw = std::fs::read("/proc/self/statm").expect("statm");
        let theirs = procfs_core::process::StatM::from_read(&raw[..]).expect("procfs");
        assert_eq!(statm_resident(&raw), Some(theirs.resident));

        if let Ok(raw) = std::fs::read("/proc/self/io") {
            let theirs = procfs_core::process::Io::from_read(&raw[..]).expect("procfs");
            assert_eq!(io(&raw), Some((theirs.read_bytes, theirs.write_bytes)));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = stat(&bytes);
            let _ = statm_resident(&bytes);
            let _ = io(&bytes);
        }

        #[test]
        fn any_comm_parses(comm in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut line = b"42 (".to_vec();
            line.extend_from_slice(&comm);
            line.push(b')');
            line.extend_from_slice(&LINE[13..]);
            proptest::prop_assert_eq!(stat(&line).map(|s| (s.ppid, s.starttime)), Some((1, 99)));
        }
    }
}
