use std::time::{Duration, Instant};

use super::{Action, Reloads, LOAD_TIMEOUT, MAX_WAITING};

type A = Action<u32, &'static str>;

fn failed(actions: &[A]) -> Vec<(Vec<u32>, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fail(w, why) => Some((w.clone(), why.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn one_reload_loads_then_applies() {
    let t = Instant::now();
    let mut r = Reloads::default();
    assert!(!r.pending());
    assert_eq!(r.ask::<&str>(Some(1), t, false), [A::Load]);
    assert!(r.pending());
    assert_eq!(r.deadline(), Some(t + LOAD_TIMEOUT));
    assert_eq!(r.loaded(Ok("new"), t), [A::Apply("new", vec![1])]);
    assert_eq!(r.deadline(), None);
    assert!(!r.pending());
    // A load that failed answers why; the next ask loads again.
    assert_eq!(r.ask::<&str>(Some(2), t, false), [A::Load]);
    assert_eq!(
        r.loaded::<&str>(Err("bad".into()), t),
        [A::Fail(vec![2], "bad".into())]
    );
    assert_eq!(r.ask::<&str>(None, t, false), [A::Load]);
    assert_eq!(r.loaded(Ok("p"), t), [A::Apply("p", vec![])]);
}

#[test]
fn reloads_asked_during_a_load_share_the_load_that_follows() {
    let t = Instant::now();
    let mut r = Reloads::default();
    assert_eq!(r.ask::<&str>(Some(1), t, false), [A::Load]);
    assert!(r.ask::<&str>(Some(2), t, false).is_empty());
    assert!(r.ask::<&str>(None, t, false).is_empty());
    assert!(r.ask::<&str>(Some(3), t, false).is_empty());
    let later = t + Duration::from_millis(10);
    assert_eq!(
        r.loaded(Ok("first"), later),
        [A::Apply("first", vec![1]), A::Load]
    );
    // The second load has its own deadline.
    assert_eq!(r.deadline(), Some(later + LOAD_TIMEOUT));
    assert_eq!(
        r.loaded(Ok("second"), later),
        [A::Apply("second", vec![2, 3])]
    );
    assert_eq!(r.deadline(), None);
    // A SIGHUP alone during a load is a load after it too.
    assert_eq!(r.ask::<&str>(Some(4), t, false), [A::Load]);
    assert!(r.ask::<&str>(None, t, false).is_empty());
    assert_eq!(r.loaded(Ok("a"), t), [A::Apply("a", vec![4]), A::Load]);
    assert_eq!(r.loaded(Ok("b"), t), [A::Apply("b", vec![])]);
}

#[test]
fn waiting_reloads_are_bounded() {
    let t = Instant::now();
    let mut r = Reloads::default();
    assert_eq!(r.ask::<&str>(Some(0), t, false), [A::Load]);
    for w in 1..MAX_WAITING {
        assert!(r
            .ask::<&str>(Some(u32::try_from(w).expect("small")), t, false)
            .is_empty());
    }
    let refused = r.ask::<&str>(Some(99), t, false);
    assert_eq!(failed(&refused).len(), 1);
    assert_eq!(failed(&refused)[0].0, [99]);
    assert!(failed(&refused)[0]
        .1
        .contains("reloads are waiting already"));
    // SIGHUP asks for nothing to be answered: never refused for room.
    assert!(r.ask::<&str>(None, t, false).is_empty());
}

#[test]
fn a_load_past_its_deadline_is_answered_and_its_outcome_dropped() {
    let t = Instant::now();
    let mut r = Reloads::default();
    assert_eq!(r.ask::<&str>(Some(1), t, false), [A::Load]);
    assert!(r.ask::<&str>(Some(2), t, false).is_empty());
    assert!(r
        .overdue::<&str>(t + LOAD_TIMEOUT - Duration::from_millis(1))
        .is_empty());
    let over = r.overdue::<&str>(t + LOAD_TIMEOUT);
    let f = failed(&over);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, [1, 2]);
    assert!(f[0].1.contains("took more than 5s"), "{}", f[0].1);
    assert_eq!(r.deadline(), None);
    assert!(!r.pending(), "what it reads will not be applied");
    assert!(r.overdue::<&str>(t + LOAD_TIMEOUT * 2).is_empty());
    // While the stuck load has not returned, no second loader is started.
    let busy = r.ask::<&str>(Some(3), t + Duration::from_secs(7), false);
    assert_eq!(failed(&busy)[0].0, [3]);
    assert!(failed(&busy)[0].1.contains("for 7s and has not returned"));
    assert!(!busy.contains(&A::Load));
    // When it does, what it read is dropped; the next reload loads afresh.
    assert_eq!(r.loaded(Ok("late"), t), [A::Drop]);
    assert_eq!(r.ask::<&str>(Some(4), t, false), [A::Load]);
}

#[test]
fn a_stop_wins_over_a_reload_under_way() {
    let t = Instant::now();
    let mut r = Reloads::default();
    assert!(r.stop::<&str>().is_empty(), "nothing under way");
    assert!(r.loaded::<&str>(Ok("stray"), t).is_empty());
    assert_eq!(r.ask::<&str>(Some(1), t, false), [A::Load]);
    assert!(r.ask::<&str>(Some(2), t, false).is_empty());
    let stopped = r.stop::<&str>();
    assert_eq!(
        stopped,
        [A::Fail(
            vec![1, 2],
            "supervise is stopping; reload abandoned".into()
        )]
    );
    assert!(r.stop::<&str>().is_empty(), "answered once");
    assert_eq!(r.deadline(), None);
    // Loaded after the stop: not applied.
    assert_eq!(r.loaded(Ok("new"), t), [A::Drop]);
    // Asked while stopping: refused at once, nothing loaded.
    assert_eq!(
        r.ask::<&str>(Some(3), t, true),
        [A::Fail(
            vec![3],
            "supervise is stopping; reload refused".into()
        )]
    );
    assert_eq!(
        r.ask::<&str>(None, t, true),
        [A::Fail(
            vec![],
            "supervise is stopping; reload refused".into()
        )]
    );
}
