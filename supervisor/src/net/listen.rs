//! Whether a worker's own tree listens on a port: the readiness rule `listen = PORT`. With
//! `SO_REUSEPORT` every replica of a program binds the same port, so a connection to it proves
//! nothing about *this* instance (a sibling answers); the kernel's listener table and the tree's
//! fds do: the instance is ready once one of its own processes holds a socket listening there.

use std::fs::File;

use super::diag::{Dumper, TCP_LISTEN};
use super::inodes::{scan, ScanStats};
use super::NetError;

/// The inodes of the TCP sockets listening on `port` (any address, IPv4 and IPv6).
pub fn listening_inodes(dumper: &mut Dumper, port: u16) -> Result<Vec<u32>, NetError> {
    let mut out = Vec::new();
    dumper.dump(
        |_| true,
        |rec| {
            if rec.state == TCP_LISTEN && rec.local.port() == port {
                out.push(rec.inode);
            }
        },
    )?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether one of `pids` holds one of the socket `inodes` (sorted): its fd links, read now.
/// Processes gone or unreadable hold nothing.
#[must_use]
pub fn holds_any(pids: &[i32], inodes: &[u32]) -> bool {
    if inodes.is_empty() {
        return false;
    }
    let mut held = Vec::new();
    let mut stats = ScanStats::default();
    pids.iter().any(|pid| {
        File::open(format!("/proc/{pid}/fd"))
            .and_then(|dir| scan(&dir, &mut held, &mut stats))
            .is_ok()
            && held.iter().any(|i| inodes.binary_search(i).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener of this test process is found by port and held by this process; one on
    /// another port is not, nor is a process that does not hold it.
    #[test]
    fn a_listener_is_found_by_port_and_held_by_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mut d = Dumper::listeners();
        let inodes = listening_inodes(&mut d, port).expect("dump");
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(holds_any(&[me], &inodes));
        assert!(!holds_any(&[1], &inodes) || me == 1);
        // A connected socket on that port is not a listener; nor is anything on another port.
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert_eq!(listening_inodes(&mut d, port).expect("dump"), inodes);
        drop(l);
        assert!(listening_inodes(&mut d, port).expect("dump").is_empty());
        assert!(!holds_any(&[me], &[]));
    }
}
