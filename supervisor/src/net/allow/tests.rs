//! The allow-list patterns and the violations they find, without sockets.

use std::net::SocketAddr;

use super::*;
use crate::net::Remote;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn rule(s: &str) -> AllowRule {
    parse_rule(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cidr(s: &str) -> Cidr {
    let (a, p) = s.split_once('/').expect("cidr");
    Cidr {
        addr: a.parse().expect("addr"),
        prefix: p.parse().expect("prefix"),
    }
}

#[test]
fn patterns_parse_to_blocks_and_ports() {
    let any = Ports::ANY;
    let cases: &[(&str, Option<&str>, Ports)] = &[
        ("*", None, any),
        ("*:*", None, any),
        ("127.0.0.0/8", Some("127.0.0.0/8"), any),
        ("10.1.2.3", Some("10.1.2.3/32"), any),
        (
            "10.1.2.3:5432",
            Some("10.1.2.3/32"),
            Ports { lo: 5432, hi: 5432 },
        ),
        ("[::1]:*", Some("::1/128"), any),
        ("::1", Some("::1/128"), any),
        ("fd00::/8", Some("fd00::/8"), any),
        (
            "[fd00::/8]:443",
            Some("fd00::/8"),
            Ports { lo: 443, hi: 443 },
        ),
        ("*:443", None, Ports { lo: 443, hi: 443 }),
        (
            "0.0.0.0/0:80-89",
            Some("0.0.0.0/0"),
            Ports { lo: 80, hi: 89 },
        ),
        ("  10.0.0.0/8:0-65535 ", Some("10.0.0.0/8"), any),
        ("[1.2.3.4]:7", Some("1.2.3.4/32"), Ports { lo: 7, hi: 7 }),
    ];
    for &(text, net, ports) in cases {
        let r = rule(text);
        assert_eq!(r.net, net.map(cidr), "{text}");
        assert_eq!(r.ports, ports, "{text}");
    }
}

#[test]
fn bad_patterns_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("10.1.2.3/8", "host bits set (the network is 10.0.0.0)"),
        ("fd00::1/8", "host bits set (the network is fd00::)"),
        ("10.0.0.0/33", "prefix `/33` is not 0..=32"),
        ("::/129", "prefix `/129` is not 0..=128"),
        ("10.0.0.0/-1", "prefix `/-1`"),
        ("10.0.0.0/+8", "prefix `/+8`"),
        ("10.0.0.0/", "prefix `/`"),
        ("localhost:80", "`localhost` is not an IP address"),
        ("10.0.0.1:", "`` is not a port number"),
        ("10.0.0.1:http", "`http` is not a port number"),
        ("10.0.0.1:70000", "port 70000 is above 65535"),
        ("10.0.0.1:90-80", "range 90-80 is empty"),
        ("10.0.0.1:-5", "`` is not a port number"),
        ("10.0.0.1:+5", "`+5` is not a port number"),
        (":80", "missing address before `:`"),
        ("::1:80:x", "needs brackets"),
        ("[::1]", "expected `:PORTS` after `]`"),
        ("[::1:80", "`[` without `]`"),
        ("[::1]80", "expected `:PORTS` after `]`"),
        ("[nope]:80", "`nope` is not an IP address"),
        ("300.1.1.1", "`300.1.1.1` is not an IP address"),
        ("*:*:*", "needs brackets"),
    ];
    for &(text, want) in cases {
        let e = parse_rule(text).expect_err(text);
        assert_eq!(e.pattern, text);
        assert!(e.to_string().contains(want), "{text}: {e} lacks {want:?}");
    }
}

#[test]
fn blocks_match_by_prefix_and_family() {
    let r = rule("10.1.0.0/16");
    assert!(r.matches(sa("10.1.255.7:1")));
    assert!(!r.matches(sa("10.2.0.1:1")));
    assert!(!r.matches(sa("[::1]:1")));
    // An IPv6 socket's view of an IPv4 peer.
    assert!(r.matches(sa("[::ffff:10.1.2.3]:5")));
    assert!(rule("0.0.0.0/0").matches(sa("1.2.3.4:9")));
    assert!(!rule("0.0.0.0/0").matches(sa("[2001:db8::1]:9")));
    assert!(rule("::/0").matches(sa("[2001:db8::1]:9")));
    assert!(rule("2001:db8::/32").matches(sa("[2001:db8:ffff::1]:9")));
    assert!(!rule("2001:db8::/32").matches(sa("[2001:db9::1]:9")));
    assert!(rule("*").matches(sa("[2001:db8::1]:9")));
    let one = rule("192.168.1.1");
    assert!(one.matches(sa("192.168.1.1:1")) && !one.matches(sa("192.168.1.2:1")));
}

#[test]
fn ports_match_inclusively() {
    let r = rule("*:80-89");
    for (port, ok) in [(79, false), (80, true), (85, true), (89, true), (90, false)] {
        assert_eq!(
            r.matches(SocketAddr::new([1, 1, 1, 1].into(), port)),
            ok,
            "{port}"
        );
    }
    let list = PortList::parse(&["8080", "9000-9100", " 22 "]).expect("ports");
    for (port, ok) in [
        (8080, true),
        (8081, false),
        (9000, true),
        (9100, true),
        (9101, false),
        (22, true),
    ] {
        assert_eq!(list.allows(port), ok, "{port}");
    }
    assert!(PortList::parse(&["*"]).expect("any").allows(1));
    let e = PortList::parse(&["8080", "x"]).expect_err("x");
    assert_eq!(e.pattern, "x");
    assert!(PortList::parse(&["1-"]).is_err());
    assert!(PortList::parse(&["65536"]).is_err());
    assert!(PortList::parse::<&str>(&[]).expect("empty").0.is_empty());
}

fn sample() -> NetSample {
    NetSample {
        listening: 2,
        established: 4,
        other: 1,
        listen: vec![sa("127.0.0.1:8080"), sa("[::]:9999")],
        remotes: vec![
            Remote {
                proto: Proto::Tcp,
                addr: sa("10.0.0.5:5432"),
            },
            Remote {
                proto: Proto::Tcp,
                addr: sa("93.184.216.34:443"),
            },
            Remote {
                proto: Proto::Udp,
                addr: sa("8.8.8.8:53"),
            },
        ],
        ..NetSample::default()
    }
}

#[test]
fn violations_name_each_offender() {
    let s = sample();
    assert!(
        violations(&s, None, None, None).is_empty(),
        "nothing set, nothing checked"
    );
    let allow = AllowList::parse(&["10.0.0.0/8:5432", "*:443"]).expect("allow");
    let listen = PortList::parse(&["8080"]).expect("listen");
    let v = violations(&s, Some(&allow), Some(&listen), Some(4));
    assert_eq!(
        v,
        [
            Violation::UnexpectedConnection {
                proto: Proto::Udp,
                remote: sa("8.8.8.8:53"),
            },
            Violation::UnexpectedListener {
                local: sa("[::]:9999"),
            },
            Violation::TooManyConnections { count: 5, max: 4 },
        ]
    );
    assert_eq!(
        v[0].to_string(),
        "udp connection to 8.8.8.8:53 is outside net.allow"
    );
    assert_eq!(
        v[1].to_string(),
        "listening on [::]:9999: port 9999 is outside net.listen_allow"
    );
    assert_eq!(
        v[2].to_string(),
        "5 TCP connections, more than net.max_connections = 4"
    );
    assert_eq!(v[0].finding(), "unexpected_connection");
    assert_eq!(v[1].finding(), "unexpected_connection");
    assert_eq!(v[2].finding(), "too_many_connections");
}

#[test]
fn limits_are_inclusive_and_empty_lists_allow_nothing() {
    let s = sample();
    assert!(violations(&s, None, None, Some(5)).is_empty());
    let none = AllowList::default();
    let v = violations(&s, Some(&none), Some(&PortList::default()), None);
    assert_eq!(v.len(), 5, "every remote and every listener: {v:?}");
    let all = AllowList::parse(&["*"]).expect("all");
    let any_port = PortList::parse(&["*"]).expect("any");
    assert!(violations(&s, Some(&all), Some(&any_port), Some(u32::MAX)).is_empty());
}
