//! The families for what a worker tree holds beyond memory and CPU: its sockets and traffic, the
//! space held by its deleted-but-open files, its storage I/O and block-I/O delay.

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{CounterF, CounterU, GaugeF, GaugeU, Labels};
use crate::status::WorkerStatus;

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
        // the instance on: one not yet probed has no such series.
        let t = &w.totals;
        if w.disk.is_some() || t.read_bytes > 0 || t.write_bytes > 0 || t.blkio_delay_s > 0.0 {
            f.io_read.get_or_create(&base).inc_by(t.read_bytes);
            f.io_write.get_or_create(&base).inc_by(t.write_bytes);
            f.blkio
                .get_or_create(&base)
                .inc_by(t.blkio_delay_s.max(0.0));
        }
        if w.net.is_some() || t.sent_bytes > 0 || t.received_bytes > 0 {
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
