use std::time::Duration;

use super::*;

#[test]
fn the_oldest_still_reading_gives_way_else_the_oldest() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(victim(&[]), None);
    assert_eq!(victim(&[(at(1), false)]), Some(0));
    assert_eq!(
        victim(&[(at(2), true), (at(1), false), (at(3), true)]),
        Some(0)
    );
    assert_eq!(
        victim(&[(at(3), true), (at(1), false), (at(2), true)]),
        Some(2)
    );
    assert_eq!(victim(&[(at(2), false), (at(1), false)]), Some(1));
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
        let conns = Connections::new(2);
        let closed = Rc::new(RefCell::new(Vec::new()));
        // Connection `n` never ends on its own; `answering` ones have read their request.
        let open = |n: u32, answering: bool| {
            let closed = closed.clone();
            conns.spawn(move |conn| async move {
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
        let conns = Connections::new(4);
        for _ in 0..3 {
            conns.spawn(|conn| async move { conn.request_read() });
        }
        assert_eq!(conns.len(), 3);
        settle().await;
        assert!(conns.is_empty());
    });
}
