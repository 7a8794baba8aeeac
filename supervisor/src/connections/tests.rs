use std::time::Duration;

use super::*;

#[test]
fn the_oldest_still_reading_gives_way_else_the_oldest_answering_never_one_waiting() {
    use Stage::{Answering as A, Reading as R, Waiting as W};
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(victim(&[]), None);
    assert_eq!(victim(&[(at(1), A)]), Some(0));
    assert_eq!(victim(&[(at(2), R), (at(1), A), (at(3), R)]), Some(0));
    assert_eq!(victim(&[(at(3), R), (at(1), A), (at(2), R)]), Some(2));
    assert_eq!(victim(&[(at(2), A), (at(1), A)]), Some(1));
    assert_eq!(victim(&[(at(1), W), (at(3), A), (at(2), A)]), Some(2));
    assert_eq!(victim(&[(at(1), W), (at(3), A), (at(2), R)]), Some(2));
    assert_eq!(victim(&[(at(1), W), (at(2), W)]), None);
}

/// Notes, when a task's future is dropped (it ended, or was aborted), which one it was.
struct Ends(u32, Rc<RefCell<Vec<u32>>>);

impl Drop for Ends {
    fn drop(&mut self) {
        self.1.borrow_mut().push(self.0);
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn at_the_cap_a_newcomer_is_let_in_and_the_slowest_closed() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let conns = Connections::new(2, 0);
        let closed = Rc::new(RefCell::new(Vec::new()));
        // Connection `n` never ends on its own; `answering` ones have read their request.
        let open = |n: u32, answering: bool| {
            let closed = closed.clone();
            conns.spawn(-1, move |conn| async move {
                let _end = Ends(n, closed);
                if answering {
                    conn.request_read();
                }
                std::future::pending::<()>().await;
            });
        };
        open(0, false);
        open(1, true);
        settle().await;
        assert_eq!(conns.len(), 2);
        // 0 is still reading: it goes.
        open(2, true);
        settle().await;
        assert_eq!(*closed.borrow(), [0]);
        assert_eq!(conns.len(), 2);
        // Everyone is answering: the oldest goes.
        open(3, false);
        settle().await;
        assert_eq!(*closed.borrow(), [0, 1]);
        // 3 is reading, 2 answering, though older: 3 goes.
        open(4, true);
        settle().await;
        assert_eq!(*closed.borrow(), [0, 1, 3]);
        assert_eq!(conns.len(), 2);
    });
}

#[test]
fn a_connection_that_ends_leaves_the_list() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let conns = Connections::new(4, 0);
        for _ in 0..3 {
            conns.spawn(-1, |conn| async move { conn.request_read() });
        }
        assert_eq!(conns.len(), 3);
        settle().await;
        assert!(conns.is_empty());
    });
}

#[test]
fn waiting_connections_are_never_closed_and_one_too_many_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let conns = Connections::new(3, 2);
        let closed = Rc::new(RefCell::new(Vec::new()));
        let refused = Rc::new(RefCell::new(Vec::new()));
        // Connection `n` asks to wait, and never ends on its own.
        let open = |n: u32| {
            let (closed, refused) = (closed.clone(), refused.clone());
            conns.spawn(-1, move |conn| async move {
                let _end = Ends(n, closed);
                conn.request_read();
                if !conn.wait() {
                    refused.borrow_mut().push(n);
                    return;
                }
                std::future::pending::<()>().await;
            });
        };
        open(0);
        open(1);
        settle().await;
        assert_eq!((conns.len(), conns.waiting()), (2, 2));
        // A third may not wait: refused, and gone.
        open(2);
        settle().await;
        assert_eq!(*refused.borrow(), [2]);
        assert_eq!(*closed.borrow(), [2]);
        assert_eq!((conns.len(), conns.waiting()), (2, 2));
        // At the cap, the newcomer still reading gives way, never a waiting one.
        let reader = |n: u32| {
            let closed = closed.clone();
            conns.spawn(-1, move |_conn| async move {
                let _end = Ends(n, closed);
                std::future::pending::<()>().await;
            });
        };
        reader(3);
        settle().await;
        reader(4);
        settle().await;
        assert_eq!(*closed.borrow(), [2, 3]);
        assert_eq!((conns.len(), conns.waiting()), (3, 2));
        // Once one waiting ends, another may wait.
        let first = conns.live.borrow_mut().remove(0);
        first.task.abort();
        settle().await;
        assert_eq!(*closed.borrow(), [2, 3, 0]);
        open(5);
        settle().await;
        assert_eq!(*refused.borrow(), [2]);
        assert_eq!((conns.len(), conns.waiting()), (3, 2));
        assert_eq!(*closed.borrow(), [2, 3, 0]);
        reader(6);
        settle().await;
        assert_eq!(*closed.borrow(), [2, 3, 0, 4]);
        assert_eq!((conns.len(), conns.waiting()), (3, 2));
    });
}

#[test]
fn fewer_may_wait_than_the_cap() {
    let conns = Connections::new(2, 5);
    assert_eq!(conns.waiting, 1);
    let conns = Connections::new(0, 0);
    assert_eq!((conns.cap, conns.waiting), (1, 0));
}

#[test]
fn one_closed_while_reading_is_sent_the_farewell_first() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let conns = Connections::with_farewell(1, 0, b"busy\n".to_vec());
        let (mut first, ours) = std::os::unix::net::UnixStream::pair().expect("pair");
        conns.spawn(ours.as_raw_fd(), move |_conn| async move {
            let _socket = ours;
            std::future::pending::<()>().await;
        });
        settle().await;
        // One answering is closed without a word: it may be halfway through its answer.
        let (mut second, ours) = std::os::unix::net::UnixStream::pair().expect("pair");
        conns.spawn(ours.as_raw_fd(), move |conn| async move {
            let _socket = ours;
            conn.request_read();
            std::future::pending::<()>().await;
        });
        settle().await;
        conns.spawn(-1, |_conn| std::future::pending::<()>());
        settle().await;
        let mut said = String::new();
        first.read_to_string(&mut said).expect("read");
        assert_eq!(said, "busy\n");
        said.clear();
        second.read_to_string(&mut said).expect("read");
        assert_eq!(said, "");
    });
}
