//! Properties: any message survives encode then decode; no bytes make a decoder panic.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// Text of any length up to the limit, weighted towards short, with any characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>().prop_map(|s| clip_text(&s).to_owned()),
        1 => vec(any::<char>(), 0..2 * MAX_TEXT)
            .prop_map(|chars| clip_text(&chars.into_iter().collect::<String>()).to_owned()),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::Debug),
        Just(Level::Info),
        Just(Level::Warn),
        Just(Level::Error),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        prop_oneof![Just(Measure::Rss), Just(Measure::Pss)],
    )
        .prop_map(|(memory_max, memory_warn_at, measure)| Limits {
            memory_max,
            memory_warn_at,
            measure,
        })
}

pub(super) fn child_msg() -> impl Strategy<Value = ChildMsg> {
    prop_oneof![
        (any::<u16>(), any::<u32>(), text()).prop_map(|(proto, pid, sdk_version)| {
            ChildMsg::Hello {
                proto,
                pid,
                sdk_version,
            }
        }),
        Just(ChildMsg::Ready),
        text().prop_map(|text| ChildMsg::Status { text }),
        (level(), text()).prop_map(|(level, text)| ChildMsg::Event { level, text }),
        Just(ChildMsg::Goodbye),
        any::<u64>().prop_map(|seq| ChildMsg::Pong { seq }),
    ]
}

pub(super) fn supervisor_msg() -> impl Strategy<Value = SupervisorMsg> {
    prop_oneof![
        (text(), any::<u32>(), any::<Option<u64>>(), limits()).prop_map(
            |(name, instance, heartbeat_timeout_ms, limits)| SupervisorMsg::Welcome {
                name,
                instance,
                heartbeat_timeout_ms,
                limits,
            }
        ),
        any::<u64>().prop_map(|seq| SupervisorMsg::Ping { seq }),
        any::<u64>().prop_map(|deadline_ms| SupervisorMsg::Shutdown { deadline_ms }),
        limits().prop_map(SupervisorMsg::Limits),
        (any::<u64>(), any::<u64>())
            .prop_map(|(bytes, limit)| SupervisorMsg::MemoryPressure { bytes, limit }),
    ]
}

/// Up to 70 KiB of anything: past `MAX_PACKET` too.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..70 * 1024)
}

/// A plausible tag, then a short random body: reaches the fields, not only the tag check.
fn tagged_bytes() -> impl Strategy<Value = Vec<u8>> {
    (0u8..8, vec(any::<u8>(), 0..64)).prop_map(|(tag, mut body)| {
        body.insert(0, tag);
        body
    })
}

/// One change to a valid packet: a byte replaced, the packet cut, or bytes appended.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Cut(prop::sample::Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Cut),
        1 => vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn mutate(mut packet: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Set(i, b) if !packet.is_empty() => {
                let at = i.index(packet.len());
                packet[at] = *b;
            }
            Mutation::Set(..) => {}
            Mutation::Cut(i) => packet.truncate(i.index(packet.len() + 1)),
            Mutation::Append(tail) => packet.extend_from_slice(tail),
        }
    }
    packet
}

/// What any successful decode promises: a valid message whose own encoding is no longer than
/// the packet (postcard accepts non-minimal varints, so it may be shorter).
fn assert_sound<M: Message>(msg: &M, packet: &[u8]) {
    assert_eq!(msg.check(), Ok(()));
    let canonical = encode_vec(msg).expect("a decoded message encodes");
    assert!(canonical.len() <= packet.len());
}

proptest! {
    #[test]
    fn child_messages_round_trip(msg in child_msg()) {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let packet = encode(&msg, &mut buf).expect("encode").to_vec();
        prop_assert_eq!(&encode_vec(&msg).expect("encode_vec"), &packet);
        prop_assert_eq!(decode_child(&packet), Ok(msg));
    }

    #[test]
    fn supervisor_messages_round_trip(msg in supervisor_msg()) {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let packet = encode(&msg, &mut buf).expect("encode").to_vec();
        prop_assert_eq!(&encode_vec(&msg).expect("encode_vec"), &packet);
        prop_assert_eq!(decode_supervisor(&packet), Ok(msg));
    }

    #[test]
    fn decoders_never_panic_on_any_bytes(bytes in any_bytes()) {
        if let Ok(m) = decode_child(&bytes) {
            assert_sound(&m, &bytes);
        }
        if let Ok(m) = decode_supervisor(&bytes) {
            assert_sound(&m, &bytes);
        }
        if bytes.len() > MAX_PACKET {
            prop_assert_eq!(decode_child(&bytes), Err(ProtoError::TooLarge));
        }
    }

    #[test]
    fn decoders_never_panic_on_tagged_bytes(bytes in tagged_bytes()) {
        if let Ok(m) = decode_child(&bytes) {
            assert_sound(&m, &bytes);
        }
        if let Ok(m) = decode_supervisor(&bytes) {
            assert_sound(&m, &bytes);
        }
    }

    #[test]
    fn mutated_child_packets_never_panic(
        msg in child_msg(),
        mutations in vec(mutation(), 1..4),
    ) {
        let packet = mutate(encode_vec(&msg).expect("encode"), &mutations);
        if let Ok(m) = decode_child(&packet) {
            assert_sound(&m, &packet);
        }
    }

    #[test]
    fn mutated_supervisor_packets_never_panic(
        msg in supervisor_msg(),
        mutations in vec(mutation(), 1..4),
    ) {
        let packet = mutate(encode_vec(&msg).expect("encode"), &mutations);
        if let Ok(m) = decode_supervisor(&packet) {
            assert_sound(&m, &packet);
        }
    }
}
