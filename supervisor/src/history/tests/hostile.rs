//! Damaged and hostile files: skipped and counted, never a panic, bounded memory.

use super::*;
use proptest::prelude::*;

/// `leaky_run` (restarts, findings) and findings of the supervisor's own.
fn valid_file() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    d.own(&[("disk", 1)].into_iter().collect());
    leaky_run(&mut d, T0, 30);
    d.own(&[("disk", 2), ("notify_dropped", 1)].into_iter().collect());
    std::fs::read(&path).expect("read")
}

fn read_bytes(bytes: &[u8]) -> Series {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    std::fs::write(&path, bytes).expect("write");
    read(&path).expect("a damaged history is still a history")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damage_anywhere_is_skipped_without_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = valid_file();
        for (i, b) in flips {
            let at = codec::MAGIC.len() + i.index(bytes.len() - codec::MAGIC.len());
            bytes[at] = b;
        }
        let s = read_bytes(&bytes);
        prop_assert!(s.ignored_bytes <= bytes.len() as u64);
        // Whatever survives can be drawn.
        let _ = crate::report::render(&s, "h", None);
        for w in &s.workers {
            prop_assert!(w.points.len() <= MAX_POINTS);
            prop_assert!(w.restarts.len() <= MAX_MARKS);
            prop_assert!(w.findings.len() <= MAX_MARKS);
        }
        prop_assert!(s.findings.len() <= MAX_MARKS);
    }

    #[test]
    fn random_bytes_after_the_signature_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = codec::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let s = read_bytes(&bytes);
        prop_assert!(s.ignored_bytes <= bytes.len() as u64);
        let _ = crate::report::render(&s, "h", None);
    }
}

#[test]
fn a_signature_with_nothing_after_it_counts_only_its_own_bytes() {
    let bytes = codec::MAGIC.to_vec();
    assert_eq!(read_bytes(&bytes).ignored_bytes, bytes.len() as u64);
}

#[test]
fn a_huge_declared_length_allocates_nothing() {
    let mut bytes = codec::MAGIC.to_vec();
    codec::put_varint(&mut bytes, u64::MAX >> 1);
    bytes.extend_from_slice(&[0; 16]);
    let s = read_bytes(&bytes);
    assert_eq!(s.ignored_bytes, bytes.len() as u64);
    assert!(s.workers.is_empty());
}
