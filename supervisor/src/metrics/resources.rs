//! The families for what a worker tree holds beyond memory and CPU: its sockets and traffic, the
//! space held by its deleted-but-open files, its storage I/O and block-I/O delay.

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{CounterF, CounterU, GaugeF, GaugeU, Labels};
use crate::status::{SupervisorStatus, WorkerStatus};

#[derive(Default)]
struct Families {
    deleted: Family<Labels, GaugeU>,
    io_read: Family<Labels, CounterU>,
    io_write: Family<Labels, CounterU>,
    blkio: Family<Labels, CounterF>,
    sockets: Family<Labels, GaugeU>,
    sent: Family<Labels, CounterU>,
    received: Family<Labels, CounterU>,
    rtt: Family<Labels, GaugeF>,
    rtt_max: Family<Labels, GaugeF>,
}

/// Fills and registers the families from a snapshot.
pub(super) fn register(reg: &mut Registry, workers: &[WorkerStatus]) {
    let f = Families::default();
    for w in workers {
        let base: Labels = vec![
            ("program".into(), w.program.clone()),
            ("replica".into(), w.instance.to_string()),
        ];
        // Counters over every incarnation (they never go backwards), from the first probe of
        // the instance on: one not yet probed has no such series. One whose process ended
        // (fatal, stopped) keeps them, at zero too: a series that vanishes is no counter.
        let t = &w.totals;
        let ran = w.last_exit.is_some();
        if ran || w.disk.is_some() || t.read_bytes > 0 || t.write_bytes > 0 || t.blkio_delay_s > 0.0
        {
            f.io_read.get_or_create(&base).inc_by(t.read_bytes);
            f.io_write.get_or_create(&base).inc_by(t.write_bytes);
            f.blkio
                .get_or_create(&base)
                .inc_by(t.blkio_delay_s.max(0.0));
        }
        if ran || w.net.is_some() || t.sent_bytes > 0 || t.received_bytes > 0 {
            f.sent.get_or_create(&base).inc_by(t.sent_bytes);
            f.received.get_or_create(&base).inc_by(t.received_bytes);
        }
        if let Some(d) = &w.disk {
            f.deleted.get_or_create(&base).set(d.deleted_bytes);
        }
        if let Some(n) = &w.net {
            for (state, count) in [
                ("listening", n.listening),
                ("established", n.established),
                ("other", n.other),
                ("udp", n.udp),
            ] {
                let mut l = base.clone();
                l.push(("state".into(), state.into()));
                f.sockets.get_or_create(&l).set(u64::from(count));
            }
            if let (Some(mean), Some(max)) = (n.rtt_ms, n.rtt_max_ms) {
                f.rtt.get_or_create(&base).set(mean / 1000.0);
                f.rtt_max.get_or_create(&base).set(max / 1000.0);
            }
        }
    }
    let bytes = |reg: &mut Registry, name: &str, help: &str, fam: &Family<Labels, CounterU>| {
        reg.register_with_unit(name, help, Unit::Bytes, fam.clone());
    };
    reg.register_with_unit(
        "worker_deleted_open",
        "space held by files the tree deleted but keeps open (invisible to du)",
        Unit::Bytes,
        f.deleted.clone(),
    );
    bytes(
        reg,
        "worker_io_read",
        "bytes the tree's live members read from storage",
        &f.io_read,
    );
    bytes(
        reg,
        "worker_io_write",
        "bytes the tree's live members wrote to storage",
        &f.io_write,
    );
    reg.register_with_unit(
        "worker_blkio_delay",
        "time the tree's threads waited for block I/O (needs kernel delay accounting)",
        Unit::Seconds,
        f.blkio.clone(),
    );
    reg.register(
        "worker_sockets",
        "TCP sockets of the tree by state, and UDP sockets",
        f.sockets.clone(),
    );
    bytes(
        reg,
        "worker_net_sent",
        "TCP bytes the tree sent and the peers acknowledged, closed sockets included",
        &f.sent,
    );
    bytes(
        reg,
        "worker_net_received",
        "TCP bytes the tree received, closed sockets included",
        &f.received,
    );
    reg.register_with_unit(
        "worker_net_rtt",
        "mean smoothed round-trip time over the tree's established TCP sockets",
        Unit::Seconds,
        f.rtt.clone(),
    );
    reg.register_with_unit(
        "worker_net_rtt_max",
        "worst smoothed round-trip time over the tree's established TCP sockets",
        Unit::Seconds,
        f.rtt_max.clone(),
    );
}

/// The supervisor's own families: how closed sockets are counted and what no worker could be
/// given, and each watched directory (label `path`).
pub(super) fn register_supervisor(reg: &mut Registry, sup: &SupervisorStatus) {
    if let Some(h) = &sup.host {
        if let Some(p) = h.memory_pressure {
            let pressure = Family::<Labels, GaugeF>::default();
            for (kind, window, v) in [
                ("some", "10s", Some(p.some_avg10)),
                ("some", "60s", Some(p.some_avg60)),
                ("full", "10s", p.full_avg10),
                ("full", "60s", p.full_avg60),
            ] {
                if let Some(v) = v {
                    pressure
                        .get_or_create(&vec![
                            ("kind".into(), kind.into()),
                            ("window".into(), window.into()),
                        ])
                        .set(v / 100.0);
                }
            }
            reg.register(
                "host_memory_pressure_ratio",
                "share of time tasks stalled on memory (PSI): some of them, or all (full), averaged over the window",
                pressure,
            );
        }
        if let Some(bytes) = h.mem_available_bytes {
            let available = GaugeU::default();
            available.set(bytes);
            reg.register_with_unit(
                "host_memory_available",
                "the host's MemAvailable",
                Unit::Bytes,
                available,
            );
        }
    }
    let c = &sup.closed_sockets;
    let by_events = GaugeU::default();
    by_events.set(u64::from(c.mode == "events"));
    reg.register(
        "net_closed_by_events",
        "1 when closed TCP sockets are counted from the kernel's destroy messages, 0 when from samples only",
        by_events,
    );
    let counter = |reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: u64| {
        let m = CounterU::default();
        m.inc_by(v);
        match unit {
            Some(u) => reg.register_with_unit(name, help, u, m),
            None => reg.register(name, help, m),
        }
    };
    counter(
        reg,
        "net_unattributed_sockets",
        "closed TCP sockets that moved bytes no worker could be given",
        None,
        c.unattributed,
    );
    counter(
        reg,
        "net_unattributed_sent",
        "TCP bytes sent (acknowledged) by closed sockets no worker could be given",
        Some(Unit::Bytes),
        c.unattributed_sent_bytes,
    );
    counter(
        reg,
        "net_unattributed_received",
        "TCP bytes received by closed sockets no worker could be given",
        Some(Unit::Bytes),
        c.unattributed_received_bytes,
    );
    counter(
        reg,
        "net_destroy_lost",
        "socket destroy messages the kernel dropped (read too slowly): their bytes are missing",
        None,
        c.lost,
    );
    counter(
        reg,
        "net_destroy_malformed",
        "socket destroy messages that could not be read",
        None,
        c.malformed,
    );
    let (bytes, apparent, fs_size, fs_avail, partial) = (
        Family::<Labels, GaugeU>::default(),
        Family::<Labels, GaugeU>::default(),
        Family::<Labels, GaugeU>::default(),
        Family::<Labels, GaugeU>::default(),
        Family::<Labels, GaugeU>::default(),
    );
    for d in &sup.watched_dirs {
        let l: Labels = vec![("path".into(), super::label_value(&d.path))];
        if let Some(b) = d.bytes {
            bytes.get_or_create(&l).set(b);
            partial.get_or_create(&l).set(u64::from(d.partial));
        }
        if let Some(b) = d.apparent_bytes {
            apparent.get_or_create(&l).set(b);
        }
        if let (Some(t), Some(a)) = (d.fs_total_bytes, d.fs_available_bytes) {
            fs_size.get_or_create(&l).set(t);
            fs_avail.get_or_create(&l).set(a);
        }
    }
    reg.register_with_unit(
        "watched_dir",
        "space allocated to a watched directory's tree, as du -sx counts it (not apparent size)",
        Unit::Bytes,
        bytes,
    );
    reg.register_with_unit(
        "watched_dir_apparent",
        "sum of the apparent sizes in a watched directory's tree (du -sx --apparent-size)",
        Unit::Bytes,
        apparent,
    );
    reg.register(
        "watched_dir_partial",
        "1 when the last walk of a watched directory missed entries (its size is a lower bound)",
        partial,
    );
    reg.register_with_unit(
        "watched_dir_fs_size",
        "size of the filesystem a watched directory is on",
        Unit::Bytes,
        fs_size,
    );
    reg.register_with_unit(
        "watched_dir_fs_available",
        "space available to unprivileged users on a watched directory's filesystem",
        Unit::Bytes,
        fs_avail,
    );
}
