//! The metrics server (`--metrics ADDR`): the Prometheus text format 0.0.4 or OpenMetrics at
//! `/metrics` (as the scrape's `Accept` header asks, see [`format`](mod@format)), and `/healthz`
//! and `/readyz` for liveness and readiness probes, over HTTP/1.x; and the dashboard at `/`
//! (see [`web`]).
//!
//! # Theory of operation
//! The server is a local task on the engine's single-threaded runtime. Each scrape asks the engine
//! for the same snapshot `supervise status` shows (a [`Call`] on the engine's channel, so
//! no locks), then encodes it here with `prometheus-client`, off the engine's loop.
//!
//! Every series is labelled `program` and `replica` (the instance number): not `instance`, which
//! Prometheus sets on every series to the scraped target and would keep ours as
//! `exported_instance`.
//!
//! HTTP is a small hand-written responder rather than hyper: a few fixed paths, one request per
//! connection and `Connection: close` need none of a general server, and every limit is plain to
//! see: the request head is read for at most [`READ_TIMEOUT`] and [`MAX_HEAD`] bytes (then
//! `408`/`431`), a whole exchange is cut after [`EXCHANGE_TIMEOUT`] (but the dashboard's live
//! stream, which keeps its own limits), at most [`MAX_CONNECTIONS`] are served at once, only
//! the dashboard's actions read a body (of at most 4 KiB, see [`web`]), and anything that
//! is not a well-formed request line gets `400`. At the cap a new connection is still served:
//! the one that has waited longest for its request head is closed instead, else the oldest
//! being answered (a live stream; see [`crate::connections`]), so clients that trickle their
//! heads or hold streams open cannot starve the health probes.
//!
//! # Caveats
//! No TLS: the default address is loopback; bind `0.0.0.0` only where the network is trusted (a
//! pod's own network namespace). `/metrics`, the probes and the dashboard's views need no
//! token; the dashboard's actions do (`--http-token`).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::admin::{Call, Request, Response};
use crate::connections::{Conn, Connections};
use crate::events::Reason;
use crate::status::Phase;
use crate::status::{SupervisorStatus, WorkerStatus};

/// Longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Time one whole exchange may take (a client that does not read its answer is cut off).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; past it, the one that has waited longest for its request head
/// is closed to make room.
pub const MAX_CONNECTIONS: usize = 64;

pub use format::{Format, OPENMETRICS, TEXT};
#[cfg(test)]
use http::find_end;
pub(crate) use http::{header, send, Answer, Asked, Method, SAFE_HEADERS};
use http::{parse_request_line, read_head};

/// Whether the engine is alive and sampling: the engine stamps each turn of its sampling
/// interval; `/healthz` fails once the stamp is older than `stale_after`.
#[derive(Debug)]
pub struct Health {
    last_tick: Cell<Instant>,
    stale_after: Duration,
}

impl Health {
    /// `sample_every` is the engine's sampling period: a few periods (at least 5 s) without a
    /// tick is a stalled engine.
    #[must_use]
    pub fn new(sample_every: Duration) -> Self {
        Self {
            last_tick: Cell::new(Instant::now()),
            stale_after: (sample_every * 3).max(Duration::from_secs(5)),
        }
    }

    /// The engine sampled now.
    pub fn tick(&self) {
        self.last_tick.set(Instant::now());
    }

    /// `Err` with the age of the last tick when it is too old.
    pub fn check(&self) -> Result<(), Duration> {
        let age = self.last_tick.get().elapsed();
        if age > self.stale_after {
            Err(age)
        } else {
            Ok(())
        }
    }
}

/// Binds the listener (before any worker starts, so a bad address changes nothing).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// Serves the listener until the runtime ends: `/metrics`, the probes, and the dashboard.
pub async fn serve(
    listener: TcpListener,
    calls: mpsc::UnboundedSender<Call>,
    health: Rc<Health>,
    dashboard: web::Dashboard,
) {
    let conns = Connections::new(MAX_CONNECTIONS, 0);
    let server = Rc::new(Server {
        calls,
        health,
        dashboard,
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds or similar: do not spin on the error.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let server = server.clone();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        conns.spawn(fd, move |conn| async move {
            let mut stream = stream;
            let asked =
                tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut stream, &server, &conn)).await;
            // The live stream keeps its own limits (see `web::stream`).
            if let Ok(Ok(Some(ask))) = asked {
                web::stream::run(stream, &server.calls, &server.dashboard, ask).await;
            }
        });
    }
}

/// What every connection's task shares.
pub(crate) struct Server {
    pub calls: mpsc::UnboundedSender<Call>,
    health: Rc<Health>,
    pub dashboard: web::Dashboard,
}

/// One exchange: the request head, then its answer; or, for the dashboard's live stream, what
/// the stream is to carry (its head not written yet).
async fn exchange(
    stream: &mut TcpStream,
    server: &Server,
    conn: &Conn,
) -> io::Result<Option<web::stream::Ask>> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(stream)).await;
    conn.request_read();
    let answer = match head {
        Err(_) => Answer::text(408, "request timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => Answer::text(431, "request head too large"),
        Ok(Ok(Some((bytes, end)))) => match parse_request_line(&bytes[..end]) {
            Err(answer) => answer,
            Ok((method, target)) => {
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let asked = Asked {
                    method,
                    path,
                    query,
                    head: &bytes[..end],
                    rest: &bytes[end..],
                };
                match path {
                    "/metrics" | "/healthz" | "/readyz" if method == Method::Post => {
                        Answer::text(405, "method not allowed")
                    }
                    "/metrics" | "/healthz" | "/readyz" => {
                        let accept = header(asked.head, "accept");
                        let mut a =
                            route(path, accept.as_deref(), &server.calls, &server.health).await;
                        a.head_only = method == Method::Head;
                        a
                    }
                    _ => match web::route(server, &asked, stream).await? {
                        web::Outcome::Answer(mut a) => {
                            a.head_only = method == Method::Head;
                            a
                        }
                        web::Outcome::Stream(ask) => return Ok(Some(ask)),
                    },
                }
            }
        },
    };
    send(stream, &answer).await?;
    Ok(None)
}

async fn route(
    path: &str,
    accept: Option<&str>,
    calls: &mpsc::UnboundedSender<Call>,
    health: &Health,
) -> Answer {
    match path {
        "/metrics" => match ask(calls, Request::Status).await {
            Some(Response::Status {
                workers,
                supervisor,
            }) => {
                let format = Format::negotiate(accept);
                Answer {
                    status: 200,
                    content_type: format.content_type(),
                    body: render_all(&workers, &supervisor, format)
                        .into_bytes()
                        .into(),
                    head_only: false,
                    varies: true,
                    headers: Vec::new(),
                }
            }
            _ => Answer::text(503, "the supervisor is shutting down"),
        },
        "/healthz" => match health.check() {
            Ok(()) => Answer::text(200, "ok"),
            Err(age) => Answer::text(
                503,
                format!("not sampling: last tick {:.1}s ago", age.as_secs_f64()),
            ),
        },
        "/readyz" => match ask(calls, Request::Ready).await {
            Some(Response::Ok { message }) => Answer::text(200, message),
            Some(Response::Error { message }) => Answer::text(503, message),
            _ => Answer::text(503, "the supervisor is shutting down"),
        },
        _ => Answer::text(404, "not found"),
    }
}

/// A request to the engine, as the control socket makes it.
pub(crate) async fn ask(calls: &mpsc::UnboundedSender<Call>, request: Request) -> Option<Response> {
    let (reply, rx) = oneshot::channel();
    calls.send(Call { request, reply }).ok()?;
    rx.await.ok()
}

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type GaugeU = Gauge<u64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;
type CounterU = Counter<u64, AtomicU64>;

/// The families of one exposition, filled from a snapshot.
#[derive(Default)]
struct Families {
    up: Family<Labels, GaugeU>,
    state: Family<Labels, GaugeU>,
    ready: Family<Labels, GaugeU>,
    speaks: Family<Labels, GaugeU>,
    uptime: Family<Labels, GaugeF>,
    restarts: Family<Labels, CounterU>,
    rss: Family<Labels, GaugeU>,
    pss: Family<Labels, GaugeU>,
    heap: Family<Labels, GaugeU>,
    cpu: Family<Labels, CounterF>,
    threads: Family<Labels, GaugeU>,
    fds: Family<Labels, GaugeU>,
    processes: Family<Labels, GaugeU>,
    heartbeat_age: Family<Labels, GaugeF>,
    sdk_counter: Family<Labels, CounterU>,
    sdk_gauge: Family<Labels, GaugeU>,
    status_text: Family<Labels, GaugeU>,
}

/// The snapshot as a text exposition: OpenMetrics (ending in `# EOF`) or the Prometheus text
/// format 0.0.4.
#[must_use]
pub fn render(workers: &[WorkerStatus], format: Format) -> String {
    render_all(workers, &SupervisorStatus::default(), format)
}

/// [`render`] with the supervisor's own families (closed sockets, watched directories).
#[must_use]
pub fn render_all(workers: &[WorkerStatus], sup: &SupervisorStatus, format: Format) -> String {
    let f = Families::default();
    for w in workers {
        let base: Labels = vec![
            ("program".into(), w.program.clone()),
            ("replica".into(), w.instance.to_string()),
        ];
        let with = |key: &str, value: &str| {
            let mut l = base.clone();
            l.push((key.to_owned(), value.to_owned()));
            l
        };
        f.up.get_or_create(&base).set(u64::from(w.pid.is_some()));
        for phase in Phase::ALL {
            f.state
                .get_or_create(&with("state", phase.as_str()))
                .set(u64::from(w.state == phase));
        }
        f.ready.get_or_create(&base).set(u64::from(w.ready));
        f.speaks.get_or_create(&base).set(u64::from(w.speaks));
        if let Some(u) = w.uptime_s {
            f.uptime.get_or_create(&base).set(u);
        }
        for reason in Reason::ALL {
            let n = w
                .restarts_by_reason
                .get(reason.as_str())
                .copied()
                .unwrap_or(0);
            f.restarts
                .get_or_create(&with("reason", reason.as_str()))
                .inc_by(n);
        }
        let gauges = [
            (&f.rss, w.rss_bytes),
            (&f.pss, w.pss_bytes),
            (&f.heap, w.heap_bytes),
            (&f.threads, w.threads),
            (&f.fds, w.fds),
            (&f.processes, w.processes.map(u64::from)),
        ];
        for (family, value) in gauges {
            if let Some(v) = value {
                family.get_or_create(&base).set(v);
            }
        }
        f.cpu
            .get_or_create(&base)
            .inc_by(w.totals.cpu_seconds.max(0.0));
        if let Some(ms) = w.heartbeat_age_ms {
            f.heartbeat_age.get_or_create(&base).set(ms as f64 / 1000.0);
        }
        for (name, &value) in &w.counters {
            if w.gauges.contains(name) {
                let label = with("name", &label_value(name));
                f.sdk_gauge.get_or_create(&label).set(value);
            }
        }
        if let Some(text) = &w.status_text {
            f.status_text
                .get_or_create(&with("status", &label_value(text)))
                .set(1);
        }
        // Counters over every incarnation: they never go backwards.
        for (name, &value) in &w.totals.counters {
            let label = with("name", &label_value(name));
            f.sdk_counter.get_or_create(&label).inc_by(value);
        }
    }
    let mut reg = Registry::with_prefix("supervise");
    let gauge = |reg: &mut Registry, name: &str, help: &str, fam: &Family<Labels, GaugeU>| {
        reg.register(name, help, fam.clone());
    };
    gauge(
        &mut reg,
        "worker_up",
        "1 while the instance has a running process",
        &f.up,
    );
    gauge(
        &mut reg,
        "worker_state",
        "1 for the instance's lifecycle state, 0 for the others",
        &f.state,
    );
    gauge(
        &mut reg,
        "worker_ready",
        "1 once the worker said Ready (this incarnation)",
        &f.ready,
    );
    gauge(
        &mut reg,
        "worker_speaks",
        "1 once the worker said hello over its channel (SDK workers)",
        &f.speaks,
    );
    reg.register_with_unit(
        "worker_uptime",
        "time since the running process started",
        Unit::Seconds,
        f.uptime.clone(),
    );
    gauge(
        &mut reg,
        "worker_status_info",
        "what the worker last said with STATUS= on the notify socket, as a label",
        &f.status_text,
    );
    reg.register(
        "worker_restarts",
        "restarts of the instance, by reason",
        f.restarts.clone(),
    );
    reg.register_with_unit(
        "worker_rss",
        "resident memory of the worker's whole process tree",
        Unit::Bytes,
        f.rss.clone(),
    );
    reg.register_with_unit(
        "worker_pss",
        "proportional memory of the tree (only when measured: memory measure pss)",
        Unit::Bytes,
        f.pss.clone(),
    );
    reg.register_with_unit(
        "worker_heap",
        "heap the worker reports through the SDK",
        Unit::Bytes,
        f.heap.clone(),
    );
    reg.register_with_unit(
        "worker_cpu",
        "CPU time of the tree's live members",
        Unit::Seconds,
        f.cpu.clone(),
    );
    gauge(
        &mut reg,
        "worker_threads",
        "threads of the tree",
        &f.threads,
    );
    gauge(
        &mut reg,
        "worker_fds",
        "open file descriptors of the tree",
        &f.fds,
    );
    gauge(
        &mut reg,
        "worker_processes",
        "live processes of the tree",
        &f.processes,
    );
    reg.register_with_unit(
        "worker_heartbeat_age",
        "age of the worker's last SDK heartbeat",
        Unit::Seconds,
        f.heartbeat_age.clone(),
    );
    // Not `worker_sdk_counter` and `worker_sdk_gauge`: the linters (promtool, client_golang's
    // promlint) refuse a family whose name carries its type, as `_counter_total` and `_gauge`
    // did. One base with a suffix per kind keeps the two families apart in OpenMetrics, where a
    // counter's family name has no `_total`.
    reg.register(
        "worker_sdk",
        "named counters the worker publishes through the SDK",
        f.sdk_counter.clone(),
    );
    gauge(
        &mut reg,
        "worker_sdk_value",
        "named gauges the worker publishes through the SDK",
        &f.sdk_gauge,
    );
    resources::register(&mut reg, workers);
    resources::register_supervisor(&mut reg, sup);
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    match format {
        Format::OpenMetrics => out,
        Format::Text => format::to_text(&out),
    }
}

/// A worker-chosen name as a label value. The encoder escapes `\\`, `"` and newline, as
/// OpenMetrics defines; other control characters (a carriage return, which many readers take for a
/// line end, NUL, ...) have no escape and become U+FFFD (two names that differ only
/// there collapse into one series).
fn label_value(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

pub mod format;
mod http;
mod resources;
#[cfg(test)]
mod tests;
pub mod web;
