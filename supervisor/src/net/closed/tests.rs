//! Attribution of destroy messages, without sockets: a table and listeners built by hand, and
//! messages as the kernel would send them.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::net::diag::Proto;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn msg(local: &str, cookie: u64, acked: u64, received: u64) -> Destroyed {
    Destroyed {
        proto: Proto::Tcp,
        state: 7,
        local: addr(local),
        remote: addr("10.9.9.9:40000"),
        cookie,
        acked: Some(acked),
        received: Some(received),
    }
}

fn held(worker: u32, cookie: u64, acked: u64, received: u64) -> Held {
    Held {
        worker,
        pid: 100,
        cookie,
        acked,
        received,
        seen: 1,
        inert: false,
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    To(&'static str),
    Ambiguous,
    Nobody,
}

/// (listeners as (address, worker index), the connection's local address, whose it is).
type Case = (&'static [(&'static str, u32)], &'static str, Want);

#[test]
fn an_unseen_connection_goes_to_the_listener_that_owns_its_local_address() {
    let keys = ["a", "b"];
    let cases: &[Case] = &[
        (&[("127.0.0.1:8080", 0)], "127.0.0.1:8080", Want::To("a")),
        // A wildcard listener owns every local address on its port, IPv4-mapped ones too.
        (&[("0.0.0.0:8080", 1)], "10.0.0.1:8080", Want::To("b")),
        (
            &[("[::]:8080", 0)],
            "[::ffff:127.0.0.1]:8080",
            Want::To("a"),
        ),
        // The exact address wins over the wildcard, as in the kernel's lookup.
        (
            &[("0.0.0.0:8080", 0), ("127.0.0.1:8080", 1)],
            "127.0.0.1:8080",
            Want::To("b"),
        ),
        (
            &[("0.0.0.0:8080", 0), ("127.0.0.1:8080", 1)],
            "10.0.0.1:8080",
            Want::To("a"),
        ),
        // One listener held by two processes of one worker (a pre-forked server): one owner.
        (
            &[("0.0.0.0:8080", 0), ("0.0.0.0:8080", 0)],
            "10.0.0.1:8080",
            Want::To("a"),
        ),
        // SO_REUSEPORT listeners of two workers: the kernel's pick is unknown.
        (
            &[("0.0.0.0:8080", 0), ("0.0.0.0:8080", 1)],
            "10.0.0.1:8080",
            Want::Ambiguous,
        ),
        // Another port, another address on the port: an outbound socket, nobody's.
        (&[("127.0.0.1:8080", 0)], "127.0.0.1:40001", Want::Nobody),
        (&[("127.0.0.1:8080", 0)], "10.0.0.1:8080", Want::Nobody),
        (&[], "127.0.0.1:8080", Want::Nobody),
    ];
    for (i, (listeners, local, want)) in cases.iter().enumerate() {
        let mut c: Closed<&str> = Closed::default();
        let found: Vec<(SocketAddr, u32)> = listeners.iter().map(|&(a, w)| (addr(a), w)).collect();
        c.set_listeners(&found, &keys);
        c.destroyed(&msg(local, 9, 1000, 2000), &mut Table::default(), &keys);
        let st = c.stats();
        let got = match (c.take(&"a"), c.take(&"b")) {
            (Some(p), None) => {
                assert_eq!(p, (1000, 2000), "case {i}");
                Want::To("a")
            }
            (None, Some(p)) => {
                assert_eq!(p, (1000, 2000), "case {i}");
                Want::To("b")
            }
            (None, None) if st.ambiguous == 1 => Want::Ambiguous,
            (None, None) => Want::Nobody,
            other => panic!("case {i}: credited twice: {other:?}"),
        };
        assert_eq!(&got, want, "case {i}: {st:?}");
        let counted = u64::from(matches!(want, Want::To(_)));
        assert_eq!(
            (st.by_listener, st.unattributed, st.events),
            (counted, 1 - counted, 1),
            "case {i}"
        );
        if counted == 0 {
            assert_eq!(
                (st.unattributed_acked, st.unattributed_received),
                (1000, 2000),
                "case {i}"
            );
        }
    }
}

#[test]
fn a_socket_seen_by_a_dump_counts_only_what_it_moved_since() {
    let keys = ["a", "b"];
    let mut table = Table::default();
    table.map.insert(5, held(0, 77, 100, 200));
    let mut c: Closed<&str> = Closed::default();
    c.shown(5, None, 77, || Some("a"));
    // A listener of b on the same address must not take it: the cookie comes first.
    c.set_listeners(&[(addr("0.0.0.0:8080"), 1)], &keys);
    c.destroyed(&msg("10.0.0.1:8080", 77, 150, 260), &mut table, &keys);
    assert_eq!(c.take(&"a"), Some((50, 60)));
    assert_eq!(c.take(&"b"), None);
    // The table holds the final counters: a rebuild dropping the entry adds nothing.
    let h = table.map[&5];
    assert_eq!((h.acked, h.received), (150, 260));
    c.dropped(&h, "a", Instant::now());
    assert_eq!(c.known(), (0, 0));
    assert_eq!((c.stats().by_cookie, c.stats().by_listener), (1, 0));

    // Held by a worker, then let go of (the fd cache dropped it), then closed: departed.
    let mut c: Closed<&str> = Closed::default();
    c.shown(6, None, 88, || Some("b"));
    c.dropped(&held(1, 88, 1000, 10), "b", Instant::now());
    assert_eq!(c.known(), (0, 1));
    c.destroyed(&msg("10.0.0.1:40000", 88, 1500, 10), &mut table, &keys);
    assert_eq!(c.take(&"b"), Some((500, 0)));
    assert_eq!(c.known(), (0, 0));

    // A new socket on a reused inode number: the old one departs with its last counters.
    let mut c: Closed<&str> = Closed::default();
    c.shown(7, None, 1, || Some("a"));
    c.shown(7, Some(held(0, 1, 40, 4)), 2, || Some("a"));
    c.destroyed(
        &msg("10.0.0.1:40000", 1, 45, 4),
        &mut Table::default(),
        &keys,
    );
    assert_eq!(c.take(&"a"), Some((5, 0)));
}

#[test]
fn what_moved_nothing_is_ignored_and_credits_of_workers_gone_are_unattributed() {
    let keys = ["a"];
    let mut c: Closed<&str> = Closed::default();
    // A listener closing, a refused connection: nothing moved.
    c.destroyed(
        &msg("127.0.0.1:8080", 3, 0, 0),
        &mut Table::default(),
        &keys,
    );
    assert_eq!((c.stats().empty, c.stats().unattributed), (1, 0));
    // A credit for a worker that is not ticked again (its process ended first).
    c.set_listeners(&[(addr("127.0.0.1:8080"), 0)], &keys);
    c.destroyed(
        &msg("127.0.0.1:8080", 4, 10, 20),
        &mut Table::default(),
        &keys,
    );
    c.settle();
    let st = c.stats();
    assert_eq!(
        (
            st.late,
            st.unattributed,
            st.unattributed_acked,
            st.unattributed_received
        ),
        (1, 1, 10, 20)
    );
    assert_eq!(c.take(&"a"), None);
    // A message without a tcp_info (too short) counts as having moved nothing.
    let mut bare = msg("127.0.0.1:8080", 5, 0, 0);
    (bare.acked, bare.received) = (None, None);
    c.destroyed(&bare, &mut Table::default(), &keys);
    assert_eq!(c.stats().empty, 2);
}

#[test]
fn departed_sockets_are_forgotten_past_their_time_or_number() {
    let mut c: Closed<&str> = Closed::default();
    let t0 = Instant::now();
    for cookie in 0..3 {
        c.shown(1, None, cookie, || Some("a"));
        c.dropped(&held(0, cookie, 1, 1), "a", t0);
    }
    assert_eq!(c.known(), (0, 3));
    c.expire(t0 + DEPARTED_TTL);
    assert_eq!((c.known(), c.stats().expired), ((0, 0), 3));
}
