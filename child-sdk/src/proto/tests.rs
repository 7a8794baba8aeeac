//! Round trips, the spec's examples, and every way a packet is rejected.

use std::fmt::Write as _;

use super::*;

/// The module's own source: the spec's hex examples must appear in it verbatim.
const SOURCE: &str = include_str!("../proto.rs");

/// Lower-case hex bytes separated by spaces, as the spec writes them.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A varint as postcard writes it: the shortest LEB128 form.
pub(super) fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

/// A string field as the wire carries it: length prefix, then bytes.
fn string_field(len: usize, fill: u8) -> Vec<u8> {
    let mut out = varint(len as u64);
    out.resize(out.len() + len, fill);
    out
}

fn full_text() -> String {
    "x".repeat(MAX_TEXT)
}

/// Every variant, with small, empty, multi-byte and maximal values.
pub(super) fn child_samples() -> Vec<ChildMsg> {
    vec![
        ChildMsg::Hello {
            proto: PROTO_VERSION,
            pid: 4242,
            sdk_version: "child-sdk 0.1.0".into(),
        },
        ChildMsg::Hello {
            proto: u16::MAX,
            pid: u32::MAX,
            sdk_version: full_text(),
        },
        ChildMsg::Ready,
        ChildMsg::Status {
            text: String::new(),
        },
        ChildMsg::Status {
            text: "serving 12 requests — ünïcødé ✓".into(),
        },
        ChildMsg::Event {
            level: Level::Debug,
            text: "d".into(),
        },
        ChildMsg::Event {
            level: Level::Info,
            text: "started".into(),
        },
        ChildMsg::Event {
            level: Level::Warn,
            text: "low disk".into(),
        },
        ChildMsg::Event {
            level: Level::Error,
            text: full_text(),
        },
        ChildMsg::Goodbye,
        ChildMsg::Pong { seq: 0 },
        ChildMsg::Pong { seq: u64::MAX },
    ]
}

/// Every variant, with small, empty and maximal values.
pub(super) fn supervisor_samples() -> Vec<SupervisorMsg> {
    vec![
        SupervisorMsg::Welcome {
            name: "api".into(),
            instance: 0,
            heartbeat_timeout_ms: None,
            limits: Limits::default(),
        },
        largest_welcome(),
        SupervisorMsg::Ping { seq: 1 },
        SupervisorMsg::Ping { seq: u64::MAX },
        SupervisorMsg::Shutdown { deadline_ms: 0 },
        SupervisorMsg::Shutdown {
            deadline_ms: 10_000,
        },
        SupervisorMsg::Limits(Limits {
            memory_max: Some(100 << 20),
            memory_warn_at: Some(80 << 20),
            measure: Measure::Rss,
        }),
        SupervisorMsg::Limits(Limits::default()),
        SupervisorMsg::MemoryPressure {
            bytes: 90 << 20,
            limit: 100 << 20,
        },
    ]
}

fn largest_welcome() -> SupervisorMsg {
    SupervisorMsg::Welcome {
        name: full_text(),
        instance: u32::MAX,
        heartbeat_timeout_ms: Some(u64::MAX),
        limits: Limits {
            memory_max: Some(u64::MAX),
            memory_warn_at: Some(u64::MAX),
            measure: Measure::Pss,
        },
    }
}

fn round_trip<M: Message + PartialEq>(msg: &M, decode: fn(&[u8]) -> Result<M, ProtoError>) {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let packet = encode(msg, &mut buf).expect("encode").to_vec();
    assert_eq!(encode_vec(msg).expect("encode_vec"), packet, "{msg:?}");
    assert!(
        !packet.is_empty(),
        "no message may encode to an empty packet"
    );
    assert_eq!(decode(&packet).as_ref(), Ok(msg));
}

#[test]
fn every_message_round_trips() {
    for m in child_samples() {
        round_trip(&m, decode_child);
    }
    for m in supervisor_samples() {
        round_trip(&m, decode_supervisor);
    }
}

#[test]
fn spec_examples_are_true() {
    let examples = [
        (
            encode_vec(&ChildMsg::Hello {
                proto: 1,
                pid: 4242,
                sdk_version: "0.1.0".into(),
            }),
            "00 01 92 21 05 30 2e 31 2e 30",
        ),
        (
            encode_vec(&SupervisorMsg::Welcome {
                name: "api".into(),
                instance: 1,
                heartbeat_timeout_ms: Some(5000),
                limits: Limits {
                    memory_max: Some(512 << 20),
                    memory_warn_at: None,
                    measure: Measure::Pss,
                },
            }),
            "00 03 61 70 69 01 01 88 27 01 80 80 80 80 02 00 01",
        ),
        (
            encode_vec(&ChildMsg::Event {
                level: Level::Warn,
                text: "low disk".into(),
            }),
            "03 02 08 6c 6f 77 20 64 69 73 6b",
        ),
        (encode_vec(&SupervisorMsg::Ping { seq: 300 }), "01 ac 02"),
    ];
    for (packet, expected) in examples {
        let got = hex(&packet.expect("encode"));
        assert_eq!(got, expected);
        assert!(
            SOURCE.contains(&format!("`{got}`")),
            "the module doc must quote `{got}`"
        );
    }
    // The varints the spec lists as examples.
    for (v, expected) in [
        (0, "00"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (4242, "92 21"),
    ] {
        assert_eq!(hex(&varint(v)), expected);
        assert_eq!(
            hex(&encode_vec(&ChildMsg::Pong { seq: v }).expect("encode")[1..]),
            expected
        );
    }
}

#[test]
fn the_largest_message_is_max_message_len() {
    let longest = child_samples()
        .iter()
        .map(|m| encode_vec(m).expect("encode").len())
        .chain(
            supervisor_samples()
                .iter()
                .map(|m| encode_vec(m).expect("encode").len()),
        )
        .max();
    assert_eq!(longest, Some(MAX_MESSAGE_LEN));
    assert_eq!(
        encode_vec(&largest_welcome()).expect("encode").len(),
        MAX_MESSAGE_LEN
    );
}

#[test]
fn encode_reports_a_buffer_too_small() {
    let msg = ChildMsg::Status {
        text: "hello".into(),
    };
    let len = encode_vec(&msg).expect("encode").len();
    let mut buf = vec![0u8; len];
    assert_eq!(encode(&msg, &mut buf).map(|p| p.len()), Ok(len));
    assert_eq!(
        encode(&msg, &mut buf[..len - 1]),
        Err(ProtoError::BufferTooSmall)
    );
    assert_eq!(encode(&msg, &mut []), Err(ProtoError::BufferTooSmall));
}

#[test]
fn a_packet_over_max_packet_is_rejected_before_parsing() {
    // A valid message at the front: only the size check can reject it.
    let mut packet = encode_vec(&ChildMsg::Ready).expect("encode");
    packet.resize(MAX_PACKET + 1, 0);
    assert_eq!(decode_child(&packet), Err(ProtoError::TooLarge));
    assert_eq!(decode_supervisor(&packet), Err(ProtoError::TooLarge));
    // At exactly the limit it is parsed, and fails for what follows the message.
    packet.truncate(MAX_PACKET);
    assert_eq!(decode_child(&packet), Err(ProtoError::Trailing));
}

#[test]
fn trailing_bytes_are_rejected() {
    for m in child_samples() {
        let mut packet = encode_vec(&m).expect("encode");
        packet.push(0);
        assert_eq!(decode_child(&packet), Err(ProtoError::Trailing), "{m:?}");
    }
    for m in supervisor_samples() {
        let mut packet = encode_vec(&m).expect("encode");
        packet.extend_from_slice(&encode_vec(&m).expect("encode"));
        assert_eq!(
            decode_supervisor(&packet),
            Err(ProtoError::Trailing),
            "{m:?}"
        );
    }
}

#[test]
fn text_over_max_text_is_rejected_in_every_string_field() {
    for len in [MAX_TEXT, MAX_TEXT + 1, 60_000] {
        let text = string_field(len, b'a');
        let hello = [&[0x00, 0x01, 0x01][..], &text].concat();
        let status = [&[0x02][..], &text].concat();
        let event = [&[0x03, 0x02][..], &text].concat();
        let welcome = [&[0x00][..], &text, &[0x00, 0x00, 0x00, 0x00, 0x00]].concat();
        let results = [
            decode_child(&hello).map(drop),
            decode_child(&status).map(drop),
            decode_child(&event).map(drop),
            decode_supervisor(&welcome).map(drop),
        ];
        for r in results {
            if len <= MAX_TEXT {
                assert_eq!(r, Ok(()));
            } else {
                assert_eq!(r, Err(ProtoError::TextTooLong));
            }
        }
    }
}

#[test]
fn the_text_limit_counts_bytes_not_characters() {
    // 1366 three-byte characters: 4098 bytes, far fewer characters than MAX_TEXT.
    let long = "✓".repeat(MAX_TEXT / 3 + 1);
    assert!(long.chars().count() < MAX_TEXT && long.len() > MAX_TEXT);
    let packet = [&[0x02][..], &varint(long.len() as u64), long.as_bytes()].concat();
    assert_eq!(decode_child(&packet), Err(ProtoError::TextTooLong));
    let msg = ChildMsg::Status { text: long.clone() };
    assert_eq!(encode_vec(&msg), Err(ProtoError::TextTooLong));
    // Clipped, it fits, and ends on a character boundary.
    let clipped = clip_text(&long);
    assert_eq!(clipped.len(), MAX_TEXT / 3 * 3);
    round_trip(
        &ChildMsg::Status {
            text: clipped.to_owned(),
        },
        decode_child,
    );
}

#[test]
fn encode_refuses_text_over_max_text() {
    let long = "y".repeat(MAX_TEXT + 1);
    let mut buf = vec![0u8; MAX_PACKET];
    for m in [
        ChildMsg::Hello {
            proto: 1,
            pid: 1,
            sdk_version: long.clone(),
        },
        ChildMsg::Status { text: long.clone() },
        ChildMsg::Event {
            level: Level::Info,
            text: long.clone(),
        },
    ] {
        assert_eq!(encode(&m, &mut buf), Err(ProtoError::TextTooLong));
        assert_eq!(encode_vec(&m), Err(ProtoError::TextTooLong));
    }
    let welcome = SupervisorMsg::Welcome {
        name: long,
        instance: 0,
        heartbeat_timeout_ms: None,
        limits: Limits::default(),
    };
    assert_eq!(encode(&welcome, &mut buf), Err(ProtoError::TextTooLong));
}

#[test]
fn clip_text_keeps_short_text_and_cuts_long_text_at_a_boundary() {
    assert_eq!(clip_text("short"), "short");
    let exact = "z".repeat(MAX_TEXT);
    assert_eq!(clip_text(&exact), exact);
    let over = format!("{}é", "z".repeat(MAX_TEXT - 1)); // é straddles the limit
    assert_eq!(clip_text(&over), "z".repeat(MAX_TEXT - 1));
}

#[test]
fn every_truncation_is_malformed() {
    for m in child_samples() {
        let packet = encode_vec(&m).expect("encode");
        for cut in 0..packet.len() {
            assert!(
                matches!(decode_child(&packet[..cut]), Err(ProtoError::Malformed(_))),
                "{m:?} cut at {cut}"
            );
        }
    }
    for m in supervisor_samples() {
        let packet = encode_vec(&m).expect("encode");
        for cut in 0..packet.len() {
            assert!(
                matches!(
                    decode_supervisor(&packet[..cut]),
                    Err(ProtoError::Malformed(_))
                ),
                "{m:?} cut at {cut}"
            );
        }
    }
}

fn malformed(why: &str) -> Result<(), ProtoError> {
    Err(ProtoError::Malformed(why.to_owned()))
}

#[test]
fn unknown_tags_are_malformed() {
    let unknown = malformed("unknown tag");
    assert_eq!(decode_child(&[0x06]).map(drop), unknown);
    assert_eq!(decode_child(&[0x80, 0x01]).map(drop), unknown); // tag 128
    assert_eq!(
        decode_child(&[0xff, 0xff, 0xff, 0xff, 0x0f]).map(drop),
        unknown
    ); // u32::MAX
    assert_eq!(decode_supervisor(&[0x05]).map(drop), unknown);
    assert_eq!(decode_child(&[0x03, 0x04, 0x00]).map(drop), unknown); // Level 4
    assert_eq!(
        decode_supervisor(&[0x03, 0x00, 0x00, 0x02]).map(drop),
        unknown
    ); // Measure 2
       // A tag wider than u32 is a bad varint.
    assert_eq!(
        decode_child(&[0xff, 0xff, 0xff, 0xff, 0x1f]).map(drop),
        malformed("bad varint")
    );
}

#[test]
fn an_empty_packet_is_malformed() {
    assert!(matches!(decode_child(&[]), Err(ProtoError::Malformed(_))));
    assert!(matches!(
        decode_supervisor(&[]),
        Err(ProtoError::Malformed(_))
    ));
}

#[test]
fn a_bad_option_byte_is_malformed() {
    // Limits { memory_max: <2>, ... }
    assert_eq!(
        decode_supervisor(&[0x03, 0x02, 0x00, 0x00]).map(drop),
        malformed("option byte neither 0 nor 1")
    );
}

#[test]
fn invalid_utf8_is_malformed() {
    for bad in [&[0xff][..], &[0xc3], &[0xed, 0xa0, 0x80]] {
        let packet = [&[0x02][..], &varint(bad.len() as u64), bad].concat();
        assert_eq!(
            decode_child(&packet).map(drop),
            malformed("string is not UTF-8")
        );
    }
}

#[test]
fn overlong_varints_are_malformed() {
    let bad = malformed("bad varint");
    // proto: u16 takes at most 3 bytes, the third at most 0x03.
    assert_eq!(
        decode_child(&[0x00, 0xff, 0xff, 0x04, 0x01, 0x00]).map(drop),
        bad
    );
    assert_eq!(
        decode_child(&[0x00, 0x80, 0x80, 0x80, 0x00, 0x01, 0x00]).map(drop),
        bad
    );
    // seq: u64 takes at most 10 bytes, the tenth at most 0x01.
    let mut pong = vec![0x05];
    pong.extend([0xff; 9]);
    pong.push(0x02);
    assert_eq!(decode_child(&pong).map(drop), bad);
    let mut pong = vec![0x05];
    pong.extend([0x80; 10]);
    pong.push(0x00);
    assert_eq!(decode_child(&pong).map(drop), bad);
}

#[test]
fn non_minimal_varints_are_accepted_as_postcard_does() {
    // 1 written as `81 00`, and 0 padded to the full 10 bytes of a u64.
    assert_eq!(
        decode_child(&[0x05, 0x81, 0x00]),
        Ok(ChildMsg::Pong { seq: 1 })
    );
    let mut pong = vec![0x05];
    pong.extend([0x80; 9]);
    pong.push(0x00);
    assert_eq!(decode_child(&pong), Ok(ChildMsg::Pong { seq: 0 }));
    // A non-minimal tag too.
    assert_eq!(decode_child(&[0x81, 0x00]), Ok(ChildMsg::Ready));
}

/// Packets whose string claims `claimed` bytes but carries three.
fn huge_prefix_packets(claimed: u64) -> Vec<Vec<u8>> {
    let prefix = varint(claimed);
    vec![
        [&[0x02][..], &prefix, b"abc"].concat(),
        [&[0x00, 0x01, 0x01][..], &prefix, b"abc"].concat(),
        [&[0x03, 0x01][..], &prefix, b"abc"].concat(),
    ]
}

const HUGE_PREFIXES: [u64; 5] = [4, MAX_PACKET as u64, 1 << 30, 1 << 40, u64::MAX];

#[test]
fn a_huge_length_prefix_is_cut_short() {
    for claimed in HUGE_PREFIXES {
        for packet in huge_prefix_packets(claimed) {
            assert_eq!(
                decode_child(&packet).map(drop),
                malformed("cut short (a field or length runs past the end)"),
                "claimed {claimed}"
            );
        }
    }
    let welcome = [&[0x00][..], &varint(u64::MAX), b"abc"].concat();
    assert!(matches!(
        decode_supervisor(&welcome),
        Err(ProtoError::Malformed(_))
    ));
}

const PROBE_ENV: &str = "CHILD_SDK_PROTO_ALLOC_PROBE";

/// Reruns [`alloc_probe`] in a child process whose address space is capped: had postcard
/// allocated what a length prefix claims, the allocation would fail and the process abort.
#[test]
fn a_huge_length_prefix_allocates_nothing() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "proto::tests::alloc_probe", "--test-threads=1"])
        .env(PROBE_ENV, "1")
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "probe: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Does nothing unless run by [`a_huge_length_prefix_allocates_nothing`].
#[test]
fn alloc_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    // Room for the decoding itself, far less than any claimed length below but the first two.
    let cap = vm_kib * 1024 + (128 << 20);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill, then to read.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &raw mut limit), 0);
        limit.rlim_cur = cap.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &raw const limit), 0);
    }
    // The cap bites: a 1 GiB allocation fails now.
    assert!(Vec::<u8>::new().try_reserve_exact(1 << 30).is_err());
    for claimed in HUGE_PREFIXES {
        for packet in huge_prefix_packets(claimed) {
            assert!(matches!(
                decode_child(&packet),
                Err(ProtoError::Malformed(_))
            ));
        }
    }
}

#[test]
fn errors_read_well_and_become_invalid_data() {
    assert_eq!(
        ProtoError::TooLarge.to_string(),
        "packet longer than 65536 bytes"
    );
    assert_eq!(
        ProtoError::TextTooLong.to_string(),
        "text longer than 4096 bytes"
    );
    let io: io::Error = ProtoError::Trailing.into();
    assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    assert_eq!(io.to_string(), "bytes after a complete message");
}
