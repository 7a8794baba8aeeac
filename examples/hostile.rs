//! `hostile`: a worker that attacks its supervisor through everything it was given, to prove the
//! supervisor keeps running and keeps supervising everyone else.
//!
//! Through the channel (fd 3) it sends garbage, truncated, oversized and out-of-order packets,
//! lies about its pid, floods, and finally closes its end early; through the segment (fd 4) it
//! tries to truncate and to grow the memfd (both must fail: the supervisor sealed it) and then
//! scribbles random bytes over the whole page, forever. It prints one line per attack, e.g.
//! `hostile truncate=refused (Operation not permitted)`.
//!
//! Flags: `--rounds N` (default 3) rounds of channel attacks before it closes the channel;
//! `--seed N` for the random bytes.

use std::io::Write;
use std::time::{Duration, Instant};

use child_sdk::proto::{encode_vec, ChildMsg, PROTO_VERSION};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 0x9E37_79B9_7F4A_7C15)]
    seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const CHANNEL: i32 = 3;
const SEGMENT: i32 = 4;

fn send(bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: send(2) on fd 3 with a valid buffer; MSG_NOSIGNAL so a closed peer is an error.
    let r = unsafe {
        libc::send(
            CHANNEL,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hostile {line}");
    let _ = out.flush();
}

fn ftruncate_result(len: i64) -> String {
    // SAFETY: ftruncate(2) on fd 4: the attack itself; the seal must refuse it.
    if unsafe { libc::ftruncate(SEGMENT, len) } == 0 {
        "ALLOWED".to_owned()
    } else {
        format!("refused ({})", std::io::Error::last_os_error())
    }
}

fn main() {
    let args = Args::parse();
    let mut rng = Rng(args.seed | 1);
    let pid = std::process::id();
    say(&format!("pid={pid}"));
    let hello = |pid: u32| {
        encode_vec(&ChildMsg::Hello {
            proto: PROTO_VERSION,
            pid,
            sdk_version: "hostile".into(),
        })
        .unwrap_or_default()
    };
    let ready = encode_vec(&ChildMsg::Ready).unwrap_or_default();
    for round in 0..args.rounds {
        let _ = send(&ready); // out of order: before hello
        let _ = send(&hello(1)); // lies about its pid
        let _ = send(&rng.bytes(64)); // garbage
        let h = hello(pid);
        let _ = send(&h[..h.len() / 2]); // truncated
        let _ = send(&vec![0xAB; 70 * 1024]); // oversized
        let flood_until = Instant::now() + Duration::from_millis(200);
        let mut flooded = 0u64;
        while Instant::now() < flood_until {
            if send(&rng.bytes(8)).is_ok() {
                flooded += 1;
            }
        }
        say(&format!("round={round} flooded={flooded}"));
    }
    // SAFETY: closing our own fd 3: the last channel attack.
    unsafe { libc::close(CHANNEL) };
    say("channel=closed");
    say(&format!("truncate={}", ftruncate_result(0)));
    say(&format!("grow={}", ftruncate_result(1 << 20)));
    // SAFETY: a shared read-write mapping of fd 4's first page, which the supervisor sized to 4096
    // bytes and sealed against shrinking; we only write through it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            SEGMENT,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        say(&format!(
            "mmap=failed ({})",
            std::io::Error::last_os_error()
        ));
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    say("scribbling");
    loop {
        for i in 0..512 {
            // SAFETY: `page` maps 4096 bytes; i < 512 keeps each 8-byte write inside it.
            unsafe { page.cast::<u64>().add(i).write_volatile(rng.next()) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
