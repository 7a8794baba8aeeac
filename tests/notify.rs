//! systemd's notify protocol from unmodified programs: the real `systemd-notify`, a Python
//! worker speaking the protocol by hand, and `redis-server --supervised systemd`; and a notify
//! socket that hostile datagrams cannot abuse.

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    example, fd_count, fd_limit, is_root, nobody, nobodys_dir, pid_of, runnable_by_others,
    status_json, unique, wait_until, ProgramGuard, Sup,
};

const LONG: Duration = Duration::from_secs(15);

/// Where `sup` put its notify socket (beside its control socket).
fn notify_socket(sup: &Sup) -> PathBuf {
    sup.path(&format!("supervise-notify.{}.sock", sup.pid()))
}

/// The path of `tool` on PATH, or `None` (then the test says it is skipped).
fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn config(name: &str, command: &[&str], extra: &str) -> String {
    let argv: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!("[program.{name}]\ncommand = [{}]\n{extra}", argv.join(", "))
}

#[test]
fn systemd_notify_from_a_shell_worker() {
    let Some(notify) = tool("systemd-notify") else {
        eprintln!("skipped: systemd-notify is not installed");
        return;
    };
    let name = unique("sdnotify");
    let _guard = ProgramGuard(name.clone());
    let script = format!(
        "sleep 1; {} --ready --status='serving 3 clients'; echo notify-exit=$?; exec sleep 1000",
        notify.display()
    );
    let sup = Sup::with_config(&config(
        &name,
        &["/bin/sh", "-c", &script],
        "ready = { notify = true }\n",
    ));
    sup.wait_socket(LONG);
    // Not ready before it says so.
    assert!(status_json(&sup.socket())
        .iter()
        .all(|w| w["ready"] == false));
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "notify", "{}", sup.dump());
    // systemd-notify waited for its barrier and left with 0.
    sup.wait_stdout("notify-exit=", 1, LONG);
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(stdout.contains("notify-exit=0"), "{stdout}");
    assert!(wait_until(LONG, || status_json(&sup.socket()).iter().any(
        |w| w["ready"] == true && w["status_text"] == "serving 3 clients"
    )));
}

/// With another readiness rule, that rule alone decides: a `READY=1` does not make the worker
/// ready (its `STATUS=` is still taken).
#[test]
fn ready_from_notify_does_not_override_another_rule() {
    let Some(notify) = tool("systemd-notify") else {
        eprintln!("skipped: systemd-notify is not installed");
        return;
    };
    let name = unique("sdnotrule");
    let _guard = ProgramGuard(name.clone());
    let script = format!(
        "{} --ready --status='told ready'; exec sleep 1000",
        notify.display()
    );
    // Nothing listens on port 1: the tcp rule never passes.
    let sup = Sup::with_config(&config(
        &name,
        &["/bin/sh", "-c", &script],
        "ready = { tcp = \"127.0.0.1:1\" }\n",
    ));
    sup.wait_socket(LONG);
    assert!(
        wait_until(LONG, || status_json(&sup.socket())
            .iter()
            .any(|w| w["status_text"] == "told ready")),
        "{}",
        sup.dump()
    );
    assert!(
        status_json(&sup.socket())
            .iter()
            .all(|w| w["ready"] == false),
        "{}",
        sup.dump()
    );
    assert!(sup.of("ready").is_empty(), "{}", sup.dump());
}

/// A worker in Python that speaks the protocol with a plain socket, as many programs do.
const PYTHON_WORKER: &str = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m):
    s.sendto(m.encode(), addr)
print("watchdog_usec=" + os.environ.get("WATCHDOG_USEC", "-"), flush=True)
say("STATUS=warming up")
time.sleep(0.5)
say("READY=1\nSTATUS=ready")
end = time.time() + 1.5
while time.time() < end:
    say("WATCHDOG=1")
    time.sleep(0.2)
print("pings stopped", flush=True)
time.sleep(1000)
"#;

#[test]
fn a_python_worker_says_ready_and_status_then_its_watchdog_pings_stop() {
    let Some(python) = tool("python3") else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let name = unique("pynotify");
    let _guard = ProgramGuard(name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("worker.py");
    std::fs::write(&script, PYTHON_WORKER).expect("script");
    let python = python.display().to_string();
    let script = script.display().to_string();
    let sup = Sup::with_config(&config(
        &name,
        &[&python, &script],
        "ready = { notify = true }\nheartbeat = { timeout = \"1s\", grace = \"1s\" }\n",
    ));
    sup.wait_socket(LONG);
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "notify");
    let stdout = || std::fs::read_to_string(sup.path("stdout")).unwrap_or_default();
    assert!(stdout().contains("watchdog_usec=1000000"), "{}", stdout());
    assert!(wait_until(LONG, || status_json(&sup.socket())
        .iter()
        .any(|w| w["status_text"] == "ready")));
    // While it pings, it is not hung; once it stops, it is.
    let hung = sup.wait_nth(1, LONG, "hung", |e| {
        e["event"] == "finding" && e["kind"] == "hung"
    });
    assert!(
        stdout().contains("pings stopped"),
        "hung while pinging\n{}",
        sup.dump()
    );
    assert_eq!(hung["timeout_ms"], 1000);
    let r = sup.wait_nth(1, LONG, "restart", |e| e["event"] == "restarting");
    assert_eq!(r["reason"], "hung", "{}", sup.dump());
}

#[test]
fn redis_supervised_by_systemd_protocol_is_seen_ready() {
    let Some(redis) = tool("redis-server") else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let name = unique("redis");
    let _guard = ProgramGuard(name.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = redis.display().to_string();
    let sup = Sup::with_config(&config(
        &name,
        &[
            &redis,
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--supervised",
            "systemd",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.path().to_str().expect("utf-8"),
        ],
        "ready = { notify = true, start_timeout = \"10s\" }\n",
    ));
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "notify", "{}", sup.dump());
    // Ready means it answers.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
        .expect("connect");
    use std::io::{Read, Write};
    conn.write_all(b"PING\r\n").expect("ping");
    let mut buf = [0u8; 7];
    conn.read_exact(&mut buf).expect("pong");
    assert_eq!(&buf, b"+PONG\r\n");
}

/// fds open in `pid`.
fn send_with_fd(socket: &Path, text: &[u8]) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let fds = [r.as_raw_fd(), w.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let addr = UnixAddr::new(socket).expect("addr");
    let _ = sendmsg(
        client.as_raw_fd(),
        &[std::io::IoSlice::new(text)],
        &cmsg,
        MsgFlags::empty(),
        Some(&addr),
    );
}

#[test]
fn hostile_datagrams_change_nothing() {
    let name = unique("notifyhostile");
    let _guard = ProgramGuard(name.clone());
    let sleeper = example("crasher");
    let sup = Sup::with_config(&config(
        &name,
        &[&sleeper, "--after", "1000000"],
        "ready = { notify = true }\n",
    ));
    sup.wait_socket(LONG);
    sup.wait_event("started", LONG);
    let socket = notify_socket(&sup);
    assert!(socket.exists(), "{}", socket.display());
    let before = fd_count(sup.pid());
    // From this test process: in no worker's tree. Garbage, oversized, fd-carrying.
    let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
    for _ in 0..50 {
        let _ = client.send_to(b"READY=1\nSTATUS=i am not your worker", &socket);
        let _ = client.send_to(b"\xff\xfe\x00garbage", &socket);
        let _ = client.send_to(&vec![b'A'; 70_000], &socket);
        send_with_fd(&socket, b"FDSTORE=1\nREADY=1");
    }
    // Dropped and counted, once.
    let f = sup.wait_nth(1, LONG, "notify_dropped", |e| {
        e["event"] == "finding" && e["kind"] == "notify_dropped"
    });
    assert_eq!(f["program"], "supervise");
    std::thread::sleep(Duration::from_millis(500));
    // Nobody was made ready, no status was taken, and no fd stayed with the supervisor.
    assert!(sup.of("ready").is_empty(), "{}", sup.dump());
    assert!(status_json(&sup.socket())
        .iter()
        .all(|w| w["ready"] == false && w["status_text"].is_null()));
    let after = fd_count(sup.pid());
    assert!(after <= before + 2, "fds {before} -> {after}");
}

/// A pipe whose read end says, without waiting, when every copy of its write end is closed.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    nix::fcntl::fcntl(
        &r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    (r, w)
}

/// One datagram carrying as many fds as the kernel lets one carry (253), from outside every tree,
/// to a supervisor with fewer than that free: every one that arrived is closed, its fds come back
/// to where they were, and it goes on serving and restarting.
#[test]
fn a_datagram_full_of_fds_cannot_use_up_the_supervisors_fds() {
    let name = unique("notifyfds");
    let _guard = ProgramGuard(name.clone());
    let sleeper = example("crasher");
    // 11 one-process replicas under 256 fds (the start-up budget asks 246 of them): far fewer
    // than 253 are free.
    let sup = Sup::start_with(&[], |cmd, dir| {
        fd_limit(cmd, 256, 256);
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--name", &name, "--replicas", "11", "--", &sleeper])
            .args(["--after", "1000000"]);
    });
    sup.wait_socket(LONG);
    sup.wait_nth(11, LONG, "11 started", |e| e["event"] == "started");
    let socket = notify_socket(&sup);
    // Settled: the same count twice in a row.
    let mut before = fd_count(sup.pid());
    wait_until(LONG, || {
        std::thread::sleep(Duration::from_millis(200));
        let now = fd_count(sup.pid());
        std::mem::replace(&mut before, now) == now
    });
    let (r, w) = pipe();
    {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
        let fds = [w.as_raw_fd(); 253];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg(
            client.as_raw_fd(),
            &[std::io::IoSlice::new(b"FDSTORE=1")],
            &cmsg,
            MsgFlags::empty(),
            Some(&UnixAddr::new(&socket).expect("addr")),
        )
        .expect("sendmsg");
    }
    drop(w);
    // Every copy closed: the read end sees EOF.
    let closed = wait_until(LONG, || {
        let mut b = [0u8; 1];
        nix::unistd::read(&r, &mut b) == Ok(0)
    });
    let after = fd_count(sup.pid());
    assert!(
        closed,
        "supervise kept copies of the passed fd: {before} -> {after} fds\n{}",
        sup.dump()
    );
    assert!(after <= before + 2, "fds {before} -> {after}");
    let f = sup.wait_nth(1, LONG, "notify_dropped", |e| {
        e["event"] == "finding" && e["kind"] == "notify_dropped"
    });
    assert!(
        f.to_string().contains("fds_cut"),
        "the cut control data was counted: {f}"
    );
    // Still serving, and still able to restart a worker.
    assert_eq!(status_json(&sup.socket()).len(), 11);
    let victim = pid_of(&sup.of("started")[0]);
    // SAFETY: kill(2) on a worker of this test's supervisor.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    sup.wait_nth(12, LONG, "the killed worker started again", |e| {
        e["event"] == "started"
    });
    let errors = sup.stderr();
    assert!(!errors.contains("Too many open files"), "{errors}");
}

/// Floods of `WATCHDOG=1` from another worker, then from outside every tree, next to a worker
/// that pings every 500 ms under a 1.5 s heartbeat timeout: its pings are all heard, so it is
/// never hung. (With one budget for all senders, a flood used it up early in each second, and a
/// ping was heard only if it came before that.)
#[test]
fn a_flood_from_anyone_never_crowds_out_a_workers_pings() {
    let pinger = unique("pinger");
    let flooder = unique("flooder");
    let _guards = [ProgramGuard(pinger.clone()), ProgramGuard(flooder.clone())];
    let notifier = example("notifier");
    const FLOOD_SECS: &str = "5";
    let sup = Sup::with_config(&format!(
        "[program.{pinger}]\ncommand = [\"{notifier}\", \"--ping\", \"500\"]\n\
         ready = {{ notify = true }}\nheartbeat = {{ timeout = \"1500ms\", grace = \"1s\" }}\n\
         [program.{flooder}]\ncommand = [\"{notifier}\", \"--flood\", \"{FLOOD_SECS}\"]\n"
    ));
    sup.wait_socket(LONG);
    sup.wait_event("ready", LONG);
    // The other worker's flood, then one from this test's own process tree.
    sup.wait_stdout("flooded", 1, LONG);
    let mut outside = std::process::Command::new(&notifier)
        .args(["--flood", FLOOD_SECS, "--socket"])
        .arg(notify_socket(&sup))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the outside flooder");
    let out = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(outside.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        line
    };
    let _ = outside.kill();
    let _ = outside.wait();
    // Both floods were floods (tens of thousands of datagrams), or this test proves nothing.
    let count = |line: &str| {
        line.trim()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let inside = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    let inside = inside
        .lines()
        .find(|l| l.contains("flooded"))
        .map_or(0, count);
    assert!(count(&out) > 20_000, "outside: {out:?}");
    assert!(inside > 20_000, "inside: {inside}");
    // A last look after a full heartbeat timeout.
    std::thread::sleep(Duration::from_millis(2000));
    let hung: Vec<_> = sup
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "hung" || e["event"] == "restarting")
        .collect();
    assert!(hung.is_empty(), "{hung:?}\n{}", sup.dump());
    let w = status_json(&sup.socket());
    assert!(
        w.iter()
            .any(|w| w["program"] == pinger.as_str() && w["ready"] == true),
        "{w:?}"
    );
}

/// The mode bits and owner of `path`.
fn mode_and_owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.permissions().mode() & 0o777, m.uid())
}

/// Each user that workers run as gets a socket of its own that only it can send to: a worker
/// running as nobody is told of nobody's socket (0600, owned by nobody) and is heard there; the
/// supervisor's own user's socket is 0600 too.
#[test]
fn each_worker_user_has_a_notify_socket_only_it_can_reach() {
    let mine = unique("notifymine");
    let theirs = unique("notifytheirs");
    let _guards = [ProgramGuard(mine.clone()), ProgramGuard(theirs.clone())];
    let shared = is_root().then(nobodys_dir);
    let notifier = match &shared {
        Some(d) => runnable_by_others(Path::new(&example("notifier")), d.path())
            .display()
            .to_string(),
        None => example("notifier"),
    };
    let other = if is_root() {
        format!(
            "[program.{theirs}]\ncommand = [{notifier:?}, \"--ping\", \"500\"]\n\
             user = \"nobody\"\nready = {{ notify = true }}\n"
        )
    } else {
        eprintln!("skipped in part: a worker of another user needs root");
        String::new()
    };
    let config = format!(
        "[program.{mine}]\ncommand = [{notifier:?}, \"--ping\", \"500\"]\n\
         ready = {{ notify = true }}\n{other}"
    );
    let sup = Sup::start_with(&[], |cmd, dir| {
        // Other users may pass through (not list) the directory of the sockets.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        let path = dir.join("supervise.toml");
        std::fs::write(&path, &config).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    let want = if is_root() { 2 } else { 1 };
    sup.wait_nth(want, LONG, "every worker ready", |e| e["event"] == "ready");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert_eq!(mode_and_owner(&notify_socket(&sup)), (0o600, me));
    if is_root() {
        let (uid, _) = nobody();
        let path = sup.path(&format!("supervise-notify.{}.u{uid}.sock", sup.pid()));
        assert_eq!(mode_and_owner(&path), (0o600, uid));
        let worker = sup
            .of("started")
            .into_iter()
            .find(|e| e["program"] == theirs.as_str())
            .map(|e| pid_of(&e))
            .expect("nobody's worker");
        let env = std::fs::read(format!("/proc/{worker}/environ")).expect("environ");
        let want = format!("NOTIFY_SOCKET={}", path.display());
        assert!(
            env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()),
            "{want} not in its environment"
        );
    }
}
