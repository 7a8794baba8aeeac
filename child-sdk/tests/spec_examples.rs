//! The byte examples of `spec/examples.json`, which the Python package's tests read too: the
//! encoder writes them, the decoders accept or reject them as they say, and the segment holds
//! them at the offsets they name.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use child_sdk::proto::{self, ChildMsg, SupervisorMsg};
use child_sdk::segment::{self, HeapStats, Writer};
use serde_json::Value;

fn examples() -> Value {
    serde_json::from_str(include_str!("../spec/examples.json")).expect("examples.json is JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn messages_encode_and_decode_as_the_examples_say() {
    let ex = examples();
    for case in ex["child"].as_array().expect("child") {
        let msg: ChildMsg = serde_json::from_value(case["message"].clone()).expect("a ChildMsg");
        let bytes = case["bytes"].as_str().expect("bytes");
        assert_eq!(hex(&proto::encode_vec(&msg).expect("encode")), bytes);
        assert_eq!(proto::decode_child(&unhex(bytes)), Ok(msg));
    }
    for case in ex["supervisor"].as_array().expect("supervisor") {
        let msg: SupervisorMsg =
            serde_json::from_value(case["message"].clone()).expect("a SupervisorMsg");
        let bytes = case["bytes"].as_str().expect("bytes");
        assert_eq!(hex(&proto::encode_vec(&msg).expect("encode")), bytes);
        assert_eq!(proto::decode_supervisor(&unhex(bytes)), Ok(msg));
    }
    for case in ex["accepted_child"].as_array().expect("accepted_child") {
        let msg: ChildMsg = serde_json::from_value(case["message"].clone()).expect("a ChildMsg");
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        assert_eq!(proto::decode_child(&bytes), Ok(msg));
    }
}

#[test]
fn varints_are_as_the_examples_say() {
    for pair in examples()["varints"].as_array().expect("varints") {
        let v = pair[0].as_u64().expect("value");
        let msg = ChildMsg::Pong { seq: v };
        let packet = proto::encode_vec(&msg).expect("encode");
        assert_eq!(hex(&packet[1..]), pair[1].as_str().expect("hex"));
    }
}

#[test]
fn malformed_packets_are_rejected_for_the_reason_given() {
    let ex = examples();
    let check = |case: &Value, got: Result<(), proto::ProtoError>| {
        let why = case["error"].as_str().expect("error");
        let err = got.expect_err(case["bytes"].as_str().expect("bytes"));
        let text = err.to_string();
        let matches = match why {
            "trailing" => err == proto::ProtoError::Trailing,
            other => text.contains(other),
        };
        assert!(matches, "{}: {text}, expected {why}", case["bytes"]);
    };
    for case in ex["malformed_child"].as_array().expect("malformed_child") {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        check(case, proto::decode_child(&bytes).map(drop));
    }
    for case in ex["malformed_supervisor"]
        .as_array()
        .expect("malformed_supervisor")
    {
        let bytes = unhex(case["bytes"].as_str().expect("bytes"));
        check(case, proto::decode_supervisor(&bytes).map(drop));
    }
}

#[test]
fn segment_bytes_are_as_the_examples_say() -> Result<(), Box<dyn std::error::Error>> {
    let ex = examples();
    let seg = &ex["segment"];
    assert_eq!(seg["page_size"].as_u64(), Some(segment::SIZE as u64));
    assert_eq!(
        seg["process_pages"].as_u64(),
        Some(segment::PROCESS_PAGES as u64)
    );
    assert_eq!(seg["file_size"].as_u64(), Some(segment::FILE_SIZE as u64));
    for case in seg["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (fd, reader) = segment::create()?;
        let raw = std::fs::File::from(fd.try_clone()?);
        let keep = fd.try_clone()?;
        let mut writer = Writer::from_fd(fd)?;
        for op in case["ops"].as_array().expect("ops") {
            let n = |i: usize| op[i].as_u64().expect("number");
            match op[0].as_str().expect("op") {
                "counter" => writer.counter(op[1].as_str().expect("name"))?.add(n(2)),
                "gauge" => writer.gauge(op[1].as_str().expect("name"))?.set(n(2)),
                "requests" => writer.add_requests(n(1)),
                "errors" => writer.add_errors(n(1)),
                "in_flight" => writer.set_in_flight(n(1)),
                "heap" => writer.set_heap(HeapStats {
                    bytes: n(1),
                    peak: n(2),
                    allocations: n(3),
                    deallocations: n(4),
                }),
                "claim" => writer = Writer::claim(keep.as_fd())?,
                other => panic!("unknown op {other}"),
            }
        }
        for want in case["expect"].as_array().expect("expect") {
            let offset = want["offset"].as_u64().expect("offset");
            if want["u32"] == "pid" {
                let mut b = [0u8; 4];
                raw.read_exact_at(&mut b, offset)?;
                assert_eq!(
                    u32::from_le_bytes(b),
                    std::process::id(),
                    "{name} @{offset}"
                );
            } else {
                let expected = want["hex"].as_str().expect("hex");
                let mut b = vec![0u8; unhex(expected).len()];
                raw.read_exact_at(&mut b, offset)?;
                assert_eq!(hex(&b), expected, "{name} @{offset}");
            }
        }
        if let Some(read) = case.get("read") {
            let snap = reader.read()?;
            if let Some(r) = read.get("requests") {
                assert_eq!(Some(snap.requests), r.as_u64(), "{name}");
            }
            if let Some(p) = read.get("processes") {
                assert_eq!(Some(u64::from(snap.processes)), p.as_u64(), "{name}");
            }
            let got: BTreeMap<String, u64> = snap
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.value))
                .collect();
            let want: BTreeMap<String, u64> =
                serde_json::from_value(read["metrics"].clone()).expect("metrics");
            assert_eq!(got, want, "{name}");
        }
    }
    Ok(())
}
