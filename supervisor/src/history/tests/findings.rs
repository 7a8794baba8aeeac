//! Finding counts (an instance's and the supervisor's own) become marks; a new process is
//! flagged; frames this reader does not know are skipped.

use super::*;

#[test]
fn a_process_that_follows_another_between_two_ticks_is_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    let mut w = status("p", 0, Some(10), Some(40 * MIB));
    for i in 0..6 {
        if i == 3 {
            // Stopped, backed off and started again between two ticks: no tick without a pid.
            restart(&mut w, "memory");
            w.pid = Some(11);
            w.rss_bytes = Some(MIB);
        }
        d.tick(T0 + i * 1000, std::slice::from_ref(&w));
    }
    let s = read(&path).expect("read");
    let p = by_name(&s, "p");
    let flags: Vec<bool> = p.points.iter().map(|pt| pt.new_process).collect();
    assert_eq!(flags, [true, false, false, true, false, false]);
    assert_eq!(p.restarts.len(), 1);
}

#[test]
fn findings_of_the_supervisor_itself_are_marked_once_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    // Small enough to rotate several times: each new segment restates the counts.
    let mut d = Direct::open(&path, Some(300));
    let w = status("p", 0, Some(10), Some(MIB));
    let mut own = std::collections::BTreeMap::new();
    for i in 0..40u64 {
        d.tick(T0 + i * 1000, std::slice::from_ref(&w));
        if i == 12 || i == 30 {
            *own.entry("disk").or_insert(0) += 1;
        }
        d.own(&own);
    }
    assert!(rotated(&path).exists(), "rotated");
    let s = read(&path).expect("read");
    assert_eq!(s.ignored_bytes, 0);
    let marks: Vec<(u64, &str)> = s
        .findings
        .iter()
        .map(|m| (m.unix_ms, m.kind.as_str()))
        .collect();
    // What FILE.1 holds of the first one depends on the rotation; the second is in FILE.
    assert!(marks.ends_with(&[(T0 + 30_000, "disk")]), "{marks:?}");
    assert!(
        marks.len() <= 2,
        "restated counts are no new findings: {marks:?}"
    );
}

#[test]
fn a_new_run_counts_findings_from_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    for (run, start) in [T0, T0 + 3_600_000].into_iter().enumerate() {
        let h = History::open(&path, None).expect("open");
        let mut w = status(
            "p",
            0,
            Some(10 + i32::try_from(run).expect("small")),
            Some(MIB),
        );
        h.record(start, std::slice::from_ref(&w));
        found(&mut w, "hung");
        restart(&mut w, "hung");
        h.record(start + 1000, std::slice::from_ref(&w));
        let own = [("notify_dropped", 1)].into_iter().collect();
        h.own_findings(&own);
        h.close();
    }
    let s = read(&path).expect("read");
    let p = by_name(&s, "p");
    let times: Vec<u64> = p.findings.iter().map(|m| m.unix_ms).collect();
    assert_eq!(times, [T0 + 1000, T0 + 3_601_000]);
    assert!(p.findings.iter().all(|m| m.kind == "hung"));
    let own: Vec<u64> = s.findings.iter().map(|m| m.unix_ms).collect();
    assert_eq!(own, [T0 + 1000, T0 + 3_601_000]);
}

#[test]
fn frames_of_unknown_kind_are_skipped_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    leaky_run(&mut d, T0, 30);
    drop(d);
    let expected = read(&path).expect("read");
    // A later format's frame, between the header and the rest: what lets this version's
    // findings frames (6 and 7) pass through the first version-1 reader unseen.
    let bytes = std::fs::read(&path).expect("read");
    let header_end = {
        let body = &bytes[codec::MAGIC.len()..];
        let (len, n) = codec::get_varint(body).expect("varint").expect("len");
        codec::MAGIC.len() + n + usize::try_from(len).expect("small") + 4
    };
    let mut frame = Vec::new();
    codec::put_frame(&mut frame, &[200, 1, 2, 3, 0xff, 0xff]);
    let mut patched = bytes[..header_end].to_vec();
    patched.extend_from_slice(&frame);
    patched.extend_from_slice(&bytes[header_end..]);
    std::fs::write(&path, &patched).expect("write");
    let s = read(&path).expect("read");
    assert_eq!(s, expected);
}
