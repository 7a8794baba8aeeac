//! The worker's handle on its supervisor: the channel (fd 3) and the segment (fd 4).
//!
//! [`Client::from_env`] takes both fds, says hello, waits for the welcome and starts one small
//! thread that listens on the channel (shutdown requests, limits, memory pressure, pings). Hot-path
//! calls — [`Client::heartbeat`], [`Counter::inc`], [`Gauge::set`] — touch only the shared page:
//! one atomic operation each (the heartbeat also reads the vDSO clock), no syscall, no lock.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::proto::{self, ChildMsg, Level, Limits, SupervisorMsg, PROTO_VERSION};
use crate::segment::{self, Counter, Gauge, Writer};

/// Why the SDK could not connect although the supervisor's environment was there.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The environment names an fd that is not a usable channel or segment.
    BadEnvironment(String),
    /// The channel failed (the supervisor went away, or answered nonsense).
    Io(io::Error),
    /// The supervisor did not welcome us in time, or spoke out of turn.
    Handshake(String),
    /// The segment could not be attached.
    Segment(segment::SegmentError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadEnvironment(s) => write!(f, "bad supervise environment: {s}"),
            Error::Io(e) => write!(f, "supervise channel: {e}"),
            Error::Handshake(s) => write!(f, "supervise handshake: {s}"),
            Error::Segment(e) => write!(f, "supervise segment: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Called with `(tree bytes, limit)` on the SDK's listener thread when a warning arrives.
type PressureCallback = Box<dyn Fn(u64, u64) + Send + Sync>;

/// What the listener thread learns, shared with the application.
#[derive(Default)]
struct Inbox {
    /// Set once a `Shutdown` arrives; the deadline in ms (0 = none given).
    shutdown: AtomicBool,
    deadline_ms: AtomicU64,
    /// Latest memory pressure: bytes and limit (0 = none yet), and a count of warnings.
    pressure_bytes: AtomicU64,
    pressure_limit: AtomicU64,
    pressure_count: AtomicU64,
    limits: Mutex<Limits>,
    on_pressure: Mutex<Option<PressureCallback>>,
    wake: Condvar,
    woken: Mutex<bool>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("shutdown", &self.shutdown)
            .field("pressure_count", &self.pressure_count)
            .finish_non_exhaustive()
    }
}

/// A connection to the supervisor. Cheap to share by reference across threads.
#[derive(Debug)]
pub struct Client {
    channel: Arc<OwnedFd>,
    segment: Writer,
    name: String,
    instance: u32,
    heartbeat_timeout: Option<Duration>,
    inbox: Arc<Inbox>,
}

fn env_fd(var: &str) -> Result<Option<RawFd>, Error> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(Error::BadEnvironment(format!("{var}: {e}"))),
        Ok(s) => s
            .parse::<RawFd>()
            .ok()
            .filter(|&fd| fd > 2)
            .map(Some)
            .ok_or_else(|| {
                Error::BadEnvironment(format!("{var}={s:?} is not an fd number above 2"))
            }),
    }
}

/// Takes ownership of an inherited fd, after checking it is open, and marks it close-on-exec so
/// programs this worker runs do not inherit it.
fn take_fd(fd: RawFd, var: &str) -> Result<OwnedFd, Error> {
    // SAFETY: F_GETFD/F_SETFD only query and set the fd's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(Error::BadEnvironment(format!("{var}: fd {fd} is not open")));
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: the supervisor passed this fd to us for our exclusive use (the contract of
    // SUPERVISE_CONTROL_FD / SUPERVISE_SEGMENT_FD), it is open, and `from_env` takes it once:
    // the variables are removed once taken.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Client {
    /// Connects to the supervisor named by the environment. `Ok(None)` when the process does not
    /// run under `supervise` (or under one too old to give it a channel), so a program can link
    /// the SDK unconditionally and behave the same standalone.
    ///
    /// Call it early in `main`, before starting threads: it removes `SUPERVISE_CONTROL_FD` and
    /// `SUPERVISE_SEGMENT_FD` from the environment (the fds are close-on-exec from then on, and a
    /// program this worker runs must not believe it owns them).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), child_sdk::client::Error> {
    /// if let Some(client) = child_sdk::Client::from_env()? {
    ///     let requests = client.counter("requests").expect("room for a counter");
    ///     client.ready()?;
    ///     while !client.shutdown_requested() {
    ///         client.heartbeat();
    ///         requests.inc();
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Option<Self>, Error> {
        let (Some(ch), Some(seg)) = (
            env_fd(crate::ENV_CONTROL_FD)?,
            env_fd(crate::ENV_SEGMENT_FD)?,
        ) else {
            return Ok(None);
        };
        let channel = take_fd(ch, crate::ENV_CONTROL_FD)?;
        let segment = take_fd(seg, crate::ENV_SEGMENT_FD)?;
        // SAFETY (std): removing variables is only racy with other threads reading the
        // environment; this is documented to run before the program starts threads.
        std::env::remove_var(crate::ENV_CONTROL_FD);
        std::env::remove_var(crate::ENV_SEGMENT_FD);
        Self::connect(channel, segment)
    }

    /// Connects over a given channel and segment (what `from_env` does after taking the fds).
    pub fn connect(channel: OwnedFd, segment: OwnedFd) -> Result<Option<Self>, Error> {
        let segment = Writer::from_fd(segment).map_err(Error::Segment)?;
        // With the counting allocator installed, heap numbers flow into the segment from now on
        // (a no-op when it is not this program's global allocator).
        #[cfg(feature = "alloc")]
        crate::alloc::attach(&segment);
        set_recv_timeout(&channel, Some(Duration::from_secs(10)))?;
        proto::send(
            channel.as_fd(),
            &ChildMsg::Hello {
                proto: PROTO_VERSION,
                pid: std::process::id(),
                sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        )?;
        let mut buf = vec![0u8; proto::MAX_PACKET];
        let n = proto::recv(channel.as_fd(), &mut buf)?;
        if n == 0 {
            return Err(Error::Handshake("the supervisor closed the channel".into()));
        }
        let (name, instance, heartbeat_timeout, limits) = match proto::decode_supervisor(&buf[..n])
            .map_err(|e| Error::Handshake(e.to_string()))?
        {
            SupervisorMsg::Welcome {
                name,
                instance,
                heartbeat_timeout_ms,
                limits,
            } => (
                name,
                instance,
                heartbeat_timeout_ms.map(Duration::from_millis),
                limits,
            ),
            other => {
                return Err(Error::Handshake(format!(
                    "expected a welcome, got {other:?}"
                )))
            }
        };
        set_recv_timeout(&channel, None)?;
        let inbox = Arc::new(Inbox {
            limits: Mutex::new(limits),
            ..Inbox::default()
        });
        let channel = Arc::new(channel);
        let (ch, ib) = (channel.clone(), inbox.clone());
        std::thread::Builder::new()
            .name("supervise-sdk".into())
            .spawn(move || listen(&ch, &ib, buf))
            .map_err(Error::Io)?;
        let client = Self {
            channel,
            segment,
            name,
            instance,
            heartbeat_timeout,
            inbox,
        };
        client.heartbeat();
        Ok(Some(client))
    }

    /// The program name the supervisor runs this worker under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The replica number.
    #[must_use]
    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// How stale the heartbeat may get before the supervisor restarts this worker as hung, if it
    /// watches heartbeats.
    #[must_use]
    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        self.heartbeat_timeout
    }

    /// Tells the supervisor the worker is ready to serve.
    pub fn ready(&self) -> io::Result<()> {
        self.send(&ChildMsg::Ready)
    }

    /// A short human-readable status line, shown by the supervisor.
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.send(&ChildMsg::Status {
            text: proto::clip_text(text).to_owned(),
        })
    }

    /// An event for the supervisor's event log.
    pub fn event(&self, level: Level, text: &str) -> io::Result<()> {
        self.send(&ChildMsg::Event {
            level,
            text: proto::clip_text(text).to_owned(),
        })
    }

    fn send(&self, msg: &ChildMsg) -> io::Result<()> {
        proto::send(self.channel.as_fd(), msg)
    }

    /// Proof of progress: call it from the work loop. One vDSO clock read and one atomic store.
    #[inline]
    pub fn heartbeat(&self) {
        self.segment.heartbeat();
    }

    /// A named counter in the segment (created on first use; the same name gives the same one).
    pub fn counter(&self, name: &str) -> Result<Counter, segment::SegmentError> {
        self.segment.counter(name)
    }

    /// A named gauge in the segment.
    pub fn gauge(&self, name: &str) -> Result<Gauge, segment::SegmentError> {
        self.segment.gauge(name)
    }

    /// The segment, for the fixed slots (requests, errors, in-flight, heap).
    #[must_use]
    pub fn segment(&self) -> &Writer {
        &self.segment
    }

    /// True once the supervisor asked this worker to stop.
    #[must_use]
    pub fn shutdown_requested(&self) -> bool {
        self.inbox.shutdown.load(Ordering::Acquire)
    }

    /// The stop deadline the supervisor gave, once it asked.
    #[must_use]
    pub fn shutdown_deadline(&self) -> Option<Duration> {
        self.shutdown_requested()
            .then(|| Duration::from_millis(self.inbox.deadline_ms.load(Ordering::Acquire)))
    }

    /// Blocks until a shutdown is requested, a memory-pressure warning arrives, or `timeout`
    /// passes; returns [`Client::shutdown_requested`].
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self
            .inbox
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut guard, _) = self
            .inbox
            .wake
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = false;
        self.shutdown_requested()
    }

    /// The limits the supervisor enforces on this worker (updated when it sends new ones).
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.inbox
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The latest memory-pressure warning, `(tree bytes, limit)`, and how many have arrived.
    #[must_use]
    pub fn memory_pressure(&self) -> Option<(u64, u64, u64)> {
        let count = self.inbox.pressure_count.load(Ordering::Acquire);
        (count > 0).then(|| {
            (
                self.inbox.pressure_bytes.load(Ordering::Acquire),
                self.inbox.pressure_limit.load(Ordering::Acquire),
                count,
            )
        })
    }
}

impl Client {
    /// Runs `f(tree bytes, limit)` on the SDK's listener thread each time the supervisor warns
    /// that this worker's tree passed its `warn_at` mark: the place to drop caches or refuse
    /// work before the limit is reached. Keep it short; it delays the next message.
    pub fn on_memory_pressure(&self, f: impl Fn(u64, u64) + Send + Sync + 'static) {
        *self
            .inbox
            .on_pressure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(f));
    }

    /// Measures the heap growth of a code section, as Python's memory_profiler `@profile` does:
    /// the guard records live heap bytes when made and, when dropped, sets the gauge `name` to how
    /// much the heap grew in between (0 if it shrank). Needs the `alloc` feature with
    /// [`CountingAlloc`](crate::alloc::CountingAlloc) as the global allocator.
    #[cfg(feature = "alloc")]
    pub fn profile(&self, name: &str) -> Result<Profile, segment::SegmentError> {
        Ok(Profile {
            gauge: self.segment.gauge(name)?,
            start: crate::alloc::stats().bytes,
        })
    }
}

/// See [`Client::profile`].
#[cfg(feature = "alloc")]
#[derive(Debug)]
#[must_use = "the section is measured until the guard is dropped"]
pub struct Profile {
    gauge: Gauge,
    start: u64,
}

#[cfg(feature = "alloc")]
impl Drop for Profile {
    fn drop(&mut self) {
        self.gauge
            .set(crate::alloc::stats().bytes.saturating_sub(self.start));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.send(&ChildMsg::Goodbye);
    }
}

fn set_recv_timeout(fd: &OwnedFd, t: Option<Duration>) -> io::Result<()> {
    let tv = t.map_or(
        libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        |t| libc::timeval {
            tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(t.subsec_micros().min(999_999) as i32),
        },
    );
    // SAFETY: setsockopt with a valid fd and a pointer to a timeval of the right size.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The listener thread: applies what the supervisor sends until the channel closes.
fn listen(channel: &OwnedFd, inbox: &Inbox, mut buf: Vec<u8>) {
    loop {
        let n = match proto::recv(channel.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let Ok(msg) = proto::decode_supervisor(&buf[..n]) else {
            continue;
        };
        match msg {
            SupervisorMsg::Shutdown { deadline_ms } => {
                inbox.deadline_ms.store(deadline_ms, Ordering::Release);
                inbox.shutdown.store(true, Ordering::Release);
                notify(inbox);
            }
            SupervisorMsg::MemoryPressure { bytes, limit } => {
                inbox.pressure_bytes.store(bytes, Ordering::Release);
                inbox.pressure_limit.store(limit, Ordering::Release);
                inbox.pressure_count.fetch_add(1, Ordering::AcqRel);
                if let Some(f) = &*inbox
                    .on_pressure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                {
                    f(bytes, limit);
                }
                notify(inbox);
            }
            SupervisorMsg::Limits(l) => {
                *inbox
                    .limits
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = l;
            }
            SupervisorMsg::Ping { seq } => {
                let _ = proto::send(channel.as_fd(), &ChildMsg::Pong { seq });
            }
            SupervisorMsg::Welcome { .. } => {}
        }
    }
}

fn notify(inbox: &Inbox) {
    *inbox
        .woken
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    inbox.wake.notify_all();
}
