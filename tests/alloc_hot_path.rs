//! A warm PUB → MSG round through the shard core allocates nothing (STYLE.md §2, issues 4
//! and 13).
//!
//! A counting global allocator wraps the system one. The test drives the real `Shard`s of a
//! two-shard server through their event/action boundary, as `tests/sim.rs` does, with the
//! minimal kernel of `support/shard_world.rs`: bytes read on a connection go in through
//! `on_recv`, the `Action::Send`s that come out are copied and completed through `on_send` on
//! the next turn, and the shards' mesh rings carry batches between them. No socket, no ring,
//! no thread.
//! So the rounds run the shard's own parsing, permission checks, routing, queue choice,
//! delivery, flushing, forwarding into a mesh batch and delivery from a received batch.
//!
//! Each test sets up the connections and subscriptions (cold, may allocate), runs warm-up
//! rounds so every buffer, cache and batch reaches its steady size, then counts this thread's
//! allocations over `ROUNDS` more rounds and requires zero. A round publishes `BURSTS`:
//! turns with one message, a few, and many, so a cost paid once per turn (a fresh buffer per
//! turn or per batch) shows as well as one paid per message. After each round the test checks
//! that every subscriber got every message, so an empty round cannot pass.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/shard_world.rs"]
mod shard_world;

use counting_alloc::allocations;
use shard_world::{HEADERS, PAYLOAD, World, count, pub_op};

/// Messages per turn of one round: alone, a few, many.
const BURSTS: [usize; 3] = [1, 7, 64];
/// Messages of one round.
const ROUND_MESSAGES: usize = 1 + 7 + 64;
/// Rounds before counting: caches, buffers and batches reach their steady size.
const WARM_ROUNDS: usize = 8;
/// Two turns of this many messages start the warm-up, so that both halves of every out
/// buffer outgrow any round (a queue member's share of a burst varies from round to round).
const WARM_BURST: usize = 4 * 64;
/// Rounds counted.
const ROUNDS: usize = 50;

/// Warms up, then counts allocations over `ROUNDS` rounds of `message` from `publisher`;
/// `check` sees the output of each round (it must not allocate).
fn assert_rounds_do_not_allocate(
    world: &mut World,
    publisher: usize,
    message: &[u8],
    what: &str,
    check: impl Fn(&World),
) {
    world.round(publisher, message, &[WARM_BURST, WARM_BURST]);
    world.clear_output();
    for _ in 0..WARM_ROUNDS {
        world.round(publisher, message, &BURSTS);
        check(world);
        world.clear_output();
    }
    let mut counted = 0;
    for _ in 0..ROUNDS {
        let before = allocations();
        world.round(publisher, message, &BURSTS);
        counted += allocations() - before;
        check(world);
        world.clear_output();
    }
    assert_eq!(
        counted,
        0,
        "{what}: {counted} allocations in {} warm messages",
        ROUNDS * ROUND_MESSAGES
    );
}

#[test]
fn pub_to_a_plain_subscriber_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    let sub = w.connect(0, "plain", true);
    w.subscribe(sub, "SUB events.plain 1");
    let expected = {
        let mut m = format!("MSG events.plain 1 {}\r\n", PAYLOAD.len()).into_bytes();
        m.extend_from_slice(PAYLOAD);
        m.extend_from_slice(b"\r\n");
        m.repeat(ROUND_MESSAGES)
    };
    let op = pub_op("events.plain");
    assert_rounds_do_not_allocate(&mut w, publisher, &op, "plain subscriber", |w| {
        assert!(
            w.socks[sub].got == expected,
            "the subscriber got every message"
        );
        assert!(
            w.socks[publisher].got.is_empty(),
            "nothing back to the publisher"
        );
    });
}

#[test]
fn pub_to_wildcard_subscribers_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    let star = w.connect(0, "plain", true);
    let tail = w.connect(0, "plain", true);
    w.subscribe(star, "SUB events.* 7");
    w.subscribe(tail, "SUB > 8");
    let op = pub_op("events.wild");
    assert_rounds_do_not_allocate(&mut w, publisher, &op, "wildcard subscribers", |w| {
        assert_eq!(
            count(&w.socks[star].got, b"MSG events.wild 7 32\r\n"),
            ROUND_MESSAGES
        );
        assert_eq!(
            count(&w.socks[tail].got, b"MSG events.wild 8 32\r\n"),
            ROUND_MESSAGES
        );
    });
}

#[test]
fn pub_to_a_queue_group_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    let members: Vec<usize> = (0..3).map(|_| w.connect(0, "plain", true)).collect();
    for &m in &members {
        w.subscribe(m, "SUB jobs workers 3");
    }
    let op = pub_op("jobs");
    assert_rounds_do_not_allocate(&mut w, publisher, &op, "queue group", |w| {
        let got: usize = members
            .iter()
            .map(|&m| count(&w.socks[m].got, b"MSG jobs 3 32\r\n"))
            .sum();
        assert_eq!(got, ROUND_MESSAGES, "the group got each message once");
    });
}

#[test]
fn pub_by_a_permission_checked_user_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "checked", true);
    // A wildcard over a denied subject: every delivery to it is checked too.
    let sub = w.connect(0, "checked", true);
    w.subscribe(sub, "SUB events.* 5");
    let allowed = pub_op("events.checked");
    let denied = pub_op("events.secret");
    let mut message = allowed.clone();
    message.extend_from_slice(&denied);
    assert_rounds_do_not_allocate(&mut w, publisher, &message, "permission checks", |w| {
        let got = &w.socks[sub].got;
        assert_eq!(count(got, b"MSG events.checked 5 32\r\n"), ROUND_MESSAGES);
        assert_eq!(
            count(got, b"events.secret"),
            0,
            "the denied subject is filtered"
        );
        assert!(w.socks[publisher].got.is_empty(), "no permission error");
    });
}

#[test]
fn hpub_with_headers_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    let sub = w.connect(0, "plain", true);
    // A client without header support gets the payload alone.
    let bare = w.connect(0, "plain", false);
    w.subscribe(sub, "SUB hdr 2");
    w.subscribe(bare, "SUB hdr 4");
    let mut op = format!(
        "HPUB hdr {} {}\r\n",
        HEADERS.len(),
        HEADERS.len() + PAYLOAD.len()
    )
    .into_bytes();
    op.extend_from_slice(HEADERS);
    op.extend_from_slice(PAYLOAD);
    op.extend_from_slice(b"\r\n");
    let hmsg = format!(
        "HMSG hdr 2 {} {}\r\n",
        HEADERS.len(),
        HEADERS.len() + PAYLOAD.len()
    );
    assert_rounds_do_not_allocate(&mut w, publisher, &op, "headers", |w| {
        assert_eq!(count(&w.socks[sub].got, hmsg.as_bytes()), ROUND_MESSAGES);
        assert_eq!(count(&w.socks[sub].got, HEADERS), ROUND_MESSAGES);
        assert_eq!(
            count(&w.socks[bare].got, b"MSG hdr 4 32\r\n"),
            ROUND_MESSAGES
        );
    });
}

#[test]
fn pub_to_a_subscriber_on_another_shard_does_not_allocate() {
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    // Plain and queue interest on shard 1 only: each message crosses in shard 0's batch and
    // shard 1 delivers it from there.
    let far = w.connect(1, "plain", true);
    let worker = w.connect(1, "plain", true);
    w.subscribe(far, "SUB far.> 9");
    w.subscribe(worker, "SUB far.x remote 6");
    let op = pub_op("far.x");
    assert_rounds_do_not_allocate(&mut w, publisher, &op, "another shard", |w| {
        assert_eq!(
            count(&w.socks[far].got, b"MSG far.x 9 32\r\n"),
            ROUND_MESSAGES
        );
        assert_eq!(
            count(&w.socks[worker].got, b"MSG far.x 6 32\r\n"),
            ROUND_MESSAGES
        );
    });
}
