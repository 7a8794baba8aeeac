use super::*;

fn push(b: &Buffer, stream: Stream, text: &str) {
    b.push(stream, &Arc::from(text.as_bytes()), None);
}

fn texts(lines: &[RecentLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            format!(
                "{}/{} {}",
                l.instance,
                if l.stream == Stream::Stderr { "e" } else { "o" },
                String::from_utf8_lossy(&l.bytes)
            )
        })
        .collect()
}

fn buffers() -> Rc<Buffers> {
    let b = Buffers::new(4096);
    b.sync([("api", 2)]);
    b
}

#[test]
fn lines_of_several_instances_interleave_in_the_order_they_were_read() {
    let all = buffers();
    let (a, b) = (all.buffer("api", 0), all.buffer("api", 1));
    push(&a, Stream::Stdout, "one");
    push(&b, Stream::Stderr, "two");
    push(&a, Stream::Stderr, "three");
    push(&b, Stream::Stdout, "four");
    let both = all.select("api", None).expect("api");
    assert_eq!(
        texts(&Buffers::recent(&both, 3)),
        ["1/e two", "0/e three", "1/o four"]
    );
    let one = all.select("api", Some(0)).expect("api/0");
    assert_eq!(texts(&Buffers::recent(&one, 50)), ["0/o one", "0/e three"]);
    assert!(Buffers::recent(&both, 0).is_empty());
}

#[test]
fn unknown_programs_and_instances_are_refused() {
    let all = buffers();
    assert_eq!(
        all.select("db", None).err().as_deref(),
        Some("no program named db")
    );
    assert_eq!(
        all.select("api", Some(2)).err().as_deref(),
        Some("api has no instance 2 (its instances are 0 to 1)")
    );
}

#[test]
fn a_buffer_outlives_its_incarnations_but_not_its_place_in_the_config() {
    let all = buffers();
    push(&all.buffer("api", 1), Stream::Stdout, "last words");
    // A new incarnation (or a stop and start) gets the same buffer.
    let again = all.select("api", Some(1)).expect("api/1");
    assert_eq!(texts(&Buffers::recent(&again, 5)), ["1/o last words"]);
    all.sync([("api", 1)]);
    assert!(all.select("api", Some(1)).is_err());
    all.sync([("api", 2)]);
    let fresh = all.select("api", Some(1)).expect("api/1");
    assert!(Buffers::recent(&fresh, 5).is_empty());
}

#[test]
fn a_follower_gets_new_lines_and_a_count_of_those_it_could_not_take() {
    let all = buffers();
    let sel = all.select("api", None).expect("api");
    let f = all.follow("api", None, &sel);
    push(&sel[1], Stream::Stdout, "hello");
    let Some(Item::Line(l)) = f.pop() else {
        panic!("a line")
    };
    assert_eq!((l.instance, &*l.bytes), (1, &b"hello"[..]));
    assert!(f.pop().is_none());
    // Nobody reads: the queue fills, then lines are counted, in one place.
    let line = "x".repeat(1000);
    for _ in 0..1000 {
        push(&sel[0], Stream::Stdout, &line);
    }
    let (mut lines, mut skipped, mut markers) = (0, 0, 0);
    while let Some(item) = f.pop() {
        match item {
            Item::Line(_) => {
                assert_eq!(markers, 0, "lines after the marker");
                lines += 1;
            }
            Item::Skipped(n) => {
                skipped += n;
                markers += 1;
            }
        }
    }
    assert_eq!(lines + skipped, 1000);
    assert_eq!(markers, 1);
    assert_eq!(lines, (FOLLOW_BUDGET / (1000 + ITEM_COST)) as u64);
    // Once read, it takes lines again.
    push(&sel[0], Stream::Stdout, "again");
    assert!(matches!(f.pop(), Some(Item::Line(_))));
}

#[test]
fn a_follower_of_a_program_gets_the_instances_it_gains_and_hears_when_it_goes() {
    let all = Buffers::new(4096);
    all.sync([("api", 1)]);
    let sel = all.select("api", None).expect("api");
    let f = all.follow("api", None, &sel);
    let one = all.follow("api", Some(0), &sel[..1]);
    all.sync([("api", 2)]);
    push(&all.buffer("api", 1), Stream::Stdout, "new instance");
    assert!(matches!(f.pop(), Some(Item::Line(l)) if l.instance == 1));
    assert!(one.pop().is_none());
    assert_eq!(all.followers(), 2);
    all.sync([("web", 1)]);
    assert_eq!(
        f.closed().as_deref(),
        Some("api was removed from the config")
    );
    drop((f, one));
    assert_eq!(all.followers(), 0);
}

#[test]
fn a_follower_of_an_instance_a_reload_removes_hears_it() {
    let all = Buffers::new(4096);
    all.sync([("api", 3)]);
    let sel = all.select("api", None).expect("api");
    let last = all.follow("api", Some(2), &sel[2..]);
    let first = all.follow("api", Some(0), &sel[..1]);
    let every = all.follow("api", None, &sel);
    all.sync([("api", 2)]);
    assert_eq!(
        last.closed().as_deref(),
        Some("api/2 was removed from the config (api now has 2)")
    );
    assert_eq!((first.closed(), every.closed()), (None, None));
    assert_eq!(all.followers(), 2);
}

#[test]
fn with_no_buffer_lines_are_followed_but_not_kept() {
    let all = Buffers::new(0);
    all.sync([("api", 1)]);
    let sel = all.select("api", None).expect("api");
    let f = all.follow("api", None, &sel);
    push(&sel[0], Stream::Stdout, "live");
    assert!(Buffers::recent(&sel, 10).is_empty());
    assert!(matches!(f.pop(), Some(Item::Line(_))));
}

/// How many followers a buffer offers its lines to.
fn offered(b: &Buffer) -> usize {
    b.followers
        .borrow()
        .iter()
        .filter(|w| w.strong_count() > 0)
        .count()
}

#[test]
fn an_overflowing_follower_is_offered_nothing_until_it_has_read_its_queue() {
    let all = buffers();
    let sel = all.select("api", None).expect("api");
    let stuck = all.follow("api", None, &sel);
    let reading = all.follow("api", None, &sel);
    let line = "y".repeat(1000);
    let fit = FOLLOW_BUDGET / (1000 + ITEM_COST);
    for k in 0..fit + 10 {
        push(&sel[k % 2], Stream::Stdout, &line);
        while reading.pop().is_some() {}
    }
    // Both buffers had a line it could not take: both leave it out, and only it.
    assert_eq!((offered(&sel[0]), offered(&sel[1])), (1, 1));
    for _ in 0..500 {
        push(&sel[0], Stream::Stderr, "more");
    }
    let mut lines = 0;
    while let Some(Item::Line(_)) = stuck.pop() {
        lines += 1;
    }
    // The pop that found the queue empty put it back, and said what it missed, once.
    assert_eq!(lines, fit);
    assert_eq!((offered(&sel[0]), offered(&sel[1])), (2, 2));
    push(&sel[1], Stream::Stdout, "back");
    let mut all_lines = Vec::new();
    while let Some(item) = stuck.pop() {
        all_lines.push(item);
    }
    assert!(
        matches!(&all_lines[..], [Item::Line(l)] if &*l.bytes == b"back"),
        "{all_lines:?}"
    );
}

#[test]
fn what_an_overflowing_follower_missed_is_counted_in_one_place() {
    let all = buffers();
    let sel = all.select("api", None).expect("api");
    let f = all.follow("api", None, &sel);
    let line = "z".repeat(1000);
    let fit = FOLLOW_BUDGET / (1000 + ITEM_COST);
    for k in 0..fit + 300 {
        push(&sel[k % 2], Stream::Stdout, &line);
    }
    let mut items = Vec::new();
    while let Some(item) = f.pop() {
        items.push(item);
    }
    assert_eq!(items.len(), fit + 1);
    assert!(
        matches!(items.last(), Some(Item::Skipped(300))),
        "{:?}",
        items.last()
    );
}

#[test]
fn a_line_larger_than_the_whole_queue_is_counted_and_the_follower_woken() {
    let all = buffers();
    let sel = all.select("api", Some(0)).expect("api/0");
    let f = all.follow("api", Some(0), &sel);
    push(&sel[0], Stream::Stdout, &"w".repeat(FOLLOW_BUDGET + 1));
    // Woken: a task waiting on it would look, and find the count.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(1), f.changed())
            .await
            .expect("woken");
    });
    assert!(matches!(f.pop(), Some(Item::Skipped(1))));
    push(&sel[0], Stream::Stdout, "small");
    assert!(matches!(f.pop(), Some(Item::Line(_))));
}
