use super::*;
use child_sdk::proto::encode_vec;

const WORKER: i32 = 4242;

fn session() -> Session {
    Session::new(
        Welcome {
            name: "api".into(),
            instance: 1,
            heartbeat_timeout: Some(Duration::from_secs(5)),
            limits: Limits {
                memory_max: Some(100),
                memory_warn_at: Some(80),
                measure: child_sdk::proto::Measure::Rss,
            },
        },
        Instant::now(),
    )
}

fn hello(pid: u32) -> Vec<u8> {
    encode_vec(&ChildMsg::Hello {
        proto: PROTO_VERSION,
        pid,
        sdk_version: "test".into(),
    })
    .expect("encode")
}

fn feed(s: &mut Session, bytes: &[u8], sender: i32) -> Vec<Action> {
    s.on_packet(
        &Packet::Data {
            bytes,
            sender: Some(sender),
        },
        |p| p == WORKER || p == WORKER + 1,
        Instant::now(),
    )
}

fn msg(m: &ChildMsg) -> Vec<u8> {
    encode_vec(m).expect("encode")
}

fn errors(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(Kind::ProtocolError { error, .. }) => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn hello_is_welcomed_then_ready_is_an_event() {
    let mut s = session();
    let out = feed(&mut s, &hello(WORKER as u32), WORKER);
    assert!(
        matches!(&out[..], [Action::Reply(SupervisorMsg::Welcome { name, instance: 1, heartbeat_timeout_ms: Some(5000), .. })] if name == "api"),
        "{out:?}"
    );
    assert!(s.speaks());
    assert_eq!(
        feed(&mut s, &msg(&ChildMsg::Ready), WORKER),
        [Action::Event(Kind::Ready { by: "sdk" })]
    );
    assert!(s.ready);
    feed(
        &mut s,
        &msg(&ChildMsg::Status {
            text: "warming".into(),
        }),
        WORKER,
    );
    assert_eq!(s.status.as_deref(), Some("warming"));
    assert_eq!(s.errors, 0);
}

#[test]
fn out_of_order_messages_are_errors() {
    let mut s = session();
    assert_eq!(
        errors(&feed(&mut s, &msg(&ChildMsg::Ready), WORKER)),
        ["ready before hello"]
    );
    feed(&mut s, &hello(WORKER as u32), WORKER);
    feed(&mut s, &msg(&ChildMsg::Ready), WORKER);
    assert_eq!(
        errors(&feed(&mut s, &msg(&ChildMsg::Ready), WORKER)),
        ["unexpected ready"]
    );
    assert_eq!(
        errors(&feed(&mut s, &hello(WORKER as u32), WORKER)),
        ["unexpected hello"]
    );
    assert_eq!(s.errors, 3);
}

#[test]
fn a_lying_hello_is_a_finding_and_not_welcomed() {
    let mut s = session();
    let out = feed(&mut s, &hello(1), WORKER);
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Event(Kind::Finding {
                kind: "implausible_report",
                ..
            })
        )),
        "{out:?}"
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Reply(_))));
    assert!(!s.speaks());
}

#[test]
fn strangers_and_garbage_are_errors() {
    let mut s = session();
    assert_eq!(
        errors(&feed(&mut s, &hello(99), 99)).len(),
        1,
        "sender outside the tree"
    );
    assert!(errors(&feed(&mut s, b"\xff\xff\xff", WORKER))[0].starts_with("undecodable packet"));
    let out = s.on_packet(&Packet::Oversized, |_| true, Instant::now());
    assert_eq!(errors(&out).len(), 1);
    let out = s.on_packet(
        &Packet::Data {
            bytes: b"x",
            sender: None,
        },
        |_| true,
        Instant::now(),
    );
    // The fourth error is past the events budget: counted, not reported.
    assert!(errors(&out).is_empty());
    assert_eq!(s.errors, 4);
}

#[test]
fn budget_exhausted_closes_the_channel() {
    let mut s = session();
    let mut all = Vec::new();
    for _ in 0..ERROR_BUDGET {
        all.extend(feed(
            &mut s,
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff",
            WORKER,
        ));
    }
    assert!(s.closed());
    assert_eq!(all.last(), Some(&Action::Close));
    // Events: the first few, then the closing one; the rest are only counted.
    let events = all.iter().filter(|a| matches!(a, Action::Event(_))).count();
    assert_eq!(events, 4);
    assert!(
        feed(&mut s, &hello(WORKER as u32), WORKER).is_empty(),
        "nothing after closing"
    );
}

#[test]
fn a_flood_closes_the_channel() {
    let mut s = session();
    feed(&mut s, &hello(WORKER as u32), WORKER);
    let status = msg(&ChildMsg::Status { text: "x".into() });
    let now = Instant::now();
    let mut all = Vec::new();
    for _ in 0..(MAX_RATE + 100) {
        all.extend(s.on_packet(
            &Packet::Data {
                bytes: &status,
                sender: Some(WORKER),
            },
            |_| true,
            now,
        ));
    }
    assert!(s.closed());
    assert_eq!(
        errors(&all),
        [format!("more than {MAX_RATE} packets per second")]
    );
    assert_eq!(all.last(), Some(&Action::Close));
    // The same rate spread over more than a second is fine.
    let mut s = session();
    feed(&mut s, &hello(WORKER as u32), WORKER);
    for i in 0..(MAX_RATE * 2) {
        let t = now + Duration::from_millis(u64::from(i)); // 1000 packets per second
        s.on_packet(
            &Packet::Data {
                bytes: &status,
                sender: Some(WORKER),
            },
            |_| true,
            t,
        );
    }
    assert!(!s.closed());
    assert_eq!(s.errors, 0);
}

#[test]
fn goodbye_then_close() {
    let mut s = session();
    feed(&mut s, &hello(WORKER as u32), WORKER);
    assert!(feed(&mut s, &msg(&ChildMsg::Goodbye), WORKER).is_empty());
    assert!(s.speaks());
    assert!(s
        .on_packet(&Packet::Closed, |_| true, Instant::now())
        .is_empty());
    assert!(s.closed());
}
