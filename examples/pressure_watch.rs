//! `pressure_watch`: a test worker that waits for memory pressure as systemd.io/MEMORY_PRESSURE
//! describes, what `sd_event_add_memory_pressure()` does for programs built on sd-event.
//!
//! It reads `MEMORY_PRESSURE_WATCH`. A FIFO (or socket) is waited on for `POLLIN` and what
//! arrives is read and discarded; any other file (the kernel's PSI file, `/proc/pressure/memory`
//! or a cgroup's `memory.pressure`) gets the trigger `MEMORY_PRESSURE_WRITE` decodes to (base64)
//! written into it, and is waited on for `POLLPRI`. It prints `pressure_watch watching <path>`
//! once set up, then `pressure_watch memory pressure` each time it is woken (at most once a
//! second), flushed line by line. Without `MEMORY_PRESSURE_WATCH` it says so and exits 2.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::time::Duration;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pressure_watch {line}");
    let _ = out.flush();
}

/// Standard base64 (with `=` padding) to bytes; `None` for anything else.
fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let t = text.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in t {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn main() {
    let Some(path) = std::env::var_os("MEMORY_PRESSURE_WATCH") else {
        eprintln!("pressure_watch: no MEMORY_PRESSURE_WATCH");
        std::process::exit(2);
    };
    let fifo = std::fs::metadata(&path)
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(!fifo)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap_or_else(|e| {
            eprintln!("pressure_watch: {}: {e}", path.to_string_lossy());
            std::process::exit(1);
        });
    let events = if fifo {
        libc::POLLIN
    } else {
        let trigger = std::env::var("MEMORY_PRESSURE_WRITE")
            .ok()
            .and_then(|w| base64(&w))
            .unwrap_or_else(|| b"some 200000 2000000\0".to_vec());
        if let Err(e) = file.write_all(&trigger) {
            eprintln!("pressure_watch: writing the trigger: {e}");
            std::process::exit(1);
        }
        libc::POLLPRI
    };
    say(&format!("watching {}", path.to_string_lossy()));
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd; no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n <= 0 {
            continue;
        }
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 && !fifo {
            eprintln!("pressure_watch: the watch failed");
            std::process::exit(1);
        }
        if fifo {
            let mut buf = [0u8; 4096];
            // SAFETY: read(2) into a buffer we own, of its length.
            let _ = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
        }
        say("memory pressure");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_systemds_default_trigger() {
        assert_eq!(
            super::base64("c29tZSAyMDAwMDAgMjAwMDAwMAA=").as_deref(),
            Some(&b"some 200000 2000000\0"[..])
        );
        assert_eq!(super::base64("!!"), None);
    }
}
