//! Cross-shard guarantees of ringnats (skipped against nats-server, which has no shards).
//!
//! ringnats puts the shard of a connection in its INFO `client_id`: `client_id % shards` is the
//! shard index. Each test starts ringnats with `--shards 2`, opens raw connections until every
//! shard holds the ones it needs (bounded attempts), and checks, across shards: (a) flush means
//! visible: after the PONG for a PING sent after SUB (or the verbose `+OK`), a publish from the
//! other shard arrives, in both directions, for many subjects; (b) one publisher's messages
//! reach a subscriber on another shard complete and in order (10 000 sequenced messages, both
//! directions); (c) 32 connections spread over the shards, each subscribed to a shared subject and
//! its own, each publishing: every connection receives every message meant for it; (d) a queue
//! group with members on both shards, fed by publishers on both shards, delivers each message
//! exactly once overall; (e) one subscriber with 300 queue groups and a plain subscription on
//! one subject gets every message from a publisher on the other shard once per group and once
//! plain, payload and reply intact (the forwarded record once carried the group count in a
//! byte). Guards DESIGN.md invariants 3 to 6 (mesh, replicated interest, flush-visibility,
//! per-publisher order).

mod common;

use std::collections::HashSet;

use common::{Launch, RawConn, Server};

const SHARDS: usize = 2;
/// Connections opened at most while looking for one on each shard.
const ATTEMPTS_MAX: usize = 64;

/// Starts ringnats with `SHARDS` shards, or returns `None` (with a note) for nats-server.
fn start_sharded() -> Option<Server> {
    Launch::under_test()
        .shards(SHARDS)
        .start()
        .ringnats_only("shards.rs")
}

fn shard_of(conn: &RawConn) -> usize {
    (conn.client_id() % SHARDS as u64) as usize
}

/// Opens connections until each shard has `per_shard` of them; returns them by shard.
fn conns_by_shard(server: &Server, per_shard: usize) -> Vec<Vec<RawConn>> {
    let mut by_shard: Vec<Vec<RawConn>> = (0..SHARDS).map(|_| Vec::new()).collect();
    for _ in 0..ATTEMPTS_MAX * per_shard {
        if by_shard.iter().all(|conns| conns.len() >= per_shard) {
            return by_shard;
        }
        let conn = RawConn::connect_quiet(server.port());
        let shard = shard_of(&conn);
        if by_shard[shard].len() < per_shard {
            by_shard[shard].push(conn);
        }
    }
    let counts: Vec<usize> = by_shard.iter().map(Vec::len).collect();
    panic!("connections per shard {counts:?}, wanted {per_shard} each");
}

/// One connection on shard 0 and one on shard 1.
fn pair(server: &Server) -> (RawConn, RawConn) {
    let mut by_shard = conns_by_shard(server, 1);
    let one = by_shard[1].pop().expect("shard 1 connection");
    let zero = by_shard[0].pop().expect("shard 0 connection");
    (zero, one)
}

#[test]
fn flushed_subscription_is_visible_to_publishers_on_other_shards() {
    let Some(server) = start_sharded() else {
        return;
    };
    let (mut zero, mut one) = pair(&server);
    for round in 0..20 {
        let subject = format!("vis.{round}");
        let sid = round.to_string();
        let (sub, publisher) = if round % 2 == 0 {
            (&mut zero, &mut one)
        } else {
            (&mut one, &mut zero)
        };
        sub.send(format!("SUB {subject} {sid}\r\n").as_bytes());
        sub.expect_open();
        publisher.send(format!("PUB {subject} 2\r\nr{}\r\n", round % 10).as_bytes());
        sub.expect_msg(&subject, &sid, None, format!("r{}", round % 10).as_bytes());
    }
}

#[test]
fn verbose_ok_after_sub_means_visible_on_other_shards() {
    let Some(server) = start_sharded() else {
        return;
    };
    let (mut sub, mut publisher) = pair(&server);
    sub.send(b"CONNECT {\"verbose\":true}\r\n");
    sub.expect_line(b"+OK");
    for round in 0..10 {
        sub.send(format!("SUB ok.{round} {round}\r\n").as_bytes());
        sub.expect_line(b"+OK");
        publisher.send(format!("PUB ok.{round} 1\r\nx\r\n").as_bytes());
        sub.expect_msg(&format!("ok.{round}"), &round.to_string(), None, b"x");
    }
    // And the other direction.
    let (mut zero, mut one) = pair(&server);
    one.send(b"CONNECT {\"verbose\":true}\r\n");
    one.expect_line(b"+OK");
    one.send(b"SUB back 1\r\n");
    one.expect_line(b"+OK");
    zero.send(b"PUB back 1\r\ny\r\n");
    one.expect_msg("back", "1", None, b"y");
}

#[test]
fn one_publisher_keeps_order_across_shards() {
    const COUNT: usize = 10_000;
    let Some(server) = start_sharded() else {
        return;
    };
    for direction in 0..SHARDS {
        let (zero, one) = pair(&server);
        let (mut sub, mut publisher) = if direction == 0 {
            (zero, one)
        } else {
            (one, zero)
        };
        sub.send(b"SUB seq 1\r\n");
        sub.expect_open();
        let mut batch = Vec::with_capacity(COUNT * 24);
        for seq in 0..COUNT {
            let payload = seq.to_string();
            batch.extend_from_slice(
                format!("PUB seq {}\r\n{payload}\r\n", payload.len()).as_bytes(),
            );
        }
        // Write from another thread so neither side's socket buffer can stall the other.
        let writer = std::thread::spawn(move || {
            publisher.send(&batch);
            publisher
        });
        for seq in 0..COUNT {
            sub.expect_msg("seq", "1", None, seq.to_string().as_bytes());
        }
        let mut publisher = writer.join().expect("writer thread");
        publisher.expect_open();
        sub.expect_open();
    }
}

#[test]
fn many_connections_on_all_shards_receive_everything() {
    const CLIENTS: usize = 32;
    let Some(server) = start_sharded() else {
        return;
    };
    let mut conns: Vec<RawConn> = Vec::new();
    for _ in 0..ATTEMPTS_MAX * 2 {
        let shards_used: HashSet<usize> = conns.iter().map(shard_of).collect();
        if conns.len() >= CLIENTS && shards_used.len() == SHARDS {
            break;
        }
        conns.push(RawConn::connect_quiet(server.port()));
    }
    let shards_used: HashSet<usize> = conns.iter().map(shard_of).collect();
    assert_eq!(
        shards_used.len(),
        SHARDS,
        "all {} connections on one shard",
        conns.len()
    );
    let n = conns.len();

    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("SUB all 1\r\nSUB own.{i} 2\r\n").as_bytes());
        conn.expect_open();
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let payload = format!("{i:03}");
        let next = (i + 1) % n;
        conn.send(
            format!("PUB all 3\r\n{payload}\r\nPUB own.{next} 3\r\n{payload}\r\n").as_bytes(),
        );
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let mut from_all = HashSet::new();
        let mut from_own = Vec::new();
        for _ in 0..n + 1 {
            let msg = conn.read_msg();
            let sender: usize = String::from_utf8_lossy(&msg.payload)
                .parse()
                .expect("sender");
            match msg.sid.as_str() {
                "1" => assert!(from_all.insert(sender), "client {i} got {sender} twice"),
                _ => from_own.push(sender),
            }
        }
        assert_eq!(from_all.len(), n, "client {i} on shard {}", shard_of(conn));
        assert_eq!(from_own, [(i + n - 1) % n], "client {i} own subject");
        conn.expect_open();
    }
}

#[test]
fn queue_group_across_shards_delivers_each_message_once() {
    const MEMBERS_PER_SHARD: usize = 2;
    const PER_PUBLISHER: usize = 200;
    let Some(server) = start_sharded() else {
        return;
    };
    let by_shard = conns_by_shard(&server, MEMBERS_PER_SHARD + 1);
    let mut members = Vec::new();
    let mut publishers = Vec::new();
    for (shard, mut conns) in by_shard.into_iter().enumerate() {
        publishers.push(conns.pop().expect("publisher"));
        for conn in conns {
            members.push((shard, conn));
        }
    }
    for (index, (_, member)) in members.iter_mut().enumerate() {
        member.send(format!("SUB qs workers 1\r\nSUB qm.{index} 2\r\n").as_bytes());
        member.expect_open();
    }

    for (p, publisher) in publishers.iter_mut().enumerate() {
        let mut batch = Vec::new();
        for seq in 0..PER_PUBLISHER {
            batch.extend_from_slice(format!("PUB qs 6\r\n{p}:{seq:04}\r\n").as_bytes());
        }
        // After its messages, each publisher marks the end on every member's own subject.
        for index in 0..members.len() {
            batch.extend_from_slice(format!("PUB qm.{index} 3\r\nend\r\n").as_bytes());
        }
        publisher.send(&batch);
    }

    let mut seen = HashSet::new();
    let mut per_shard = [0usize; SHARDS];
    for (shard, member) in members.iter_mut() {
        let mut markers = 0;
        while markers < publishers.len() {
            let msg = member.read_msg();
            if msg.sid == "2" {
                markers += 1;
                continue;
            }
            let payload = String::from_utf8_lossy(&msg.payload).into_owned();
            assert!(seen.insert(payload.clone()), "{payload} delivered twice");
            per_shard[*shard] += 1;
        }
    }
    assert_eq!(
        seen.len(),
        PER_PUBLISHER * publishers.len(),
        "messages lost"
    );
    assert!(
        per_shard.iter().all(|count| *count > 0),
        "a shard's members got nothing: {per_shard:?}"
    );
}

#[test]
fn many_queue_groups_cross_shards_intact() {
    /// More groups than a byte can count.
    const GROUPS: usize = 300;
    const MESSAGES: usize = 5;
    let Some(server) = start_sharded() else {
        return;
    };
    let (mut subscriber, mut publisher) = pair(&server);
    let mut subs = String::from("SUB fan 0\r\n");
    for group in 0..GROUPS {
        // Names of varied length, so a misread length shows as a wrong payload.
        subs.push_str(&format!(
            "SUB fan g{group}{} {}\r\n",
            "x".repeat(group % 7),
            group + 1
        ));
    }
    subscriber.send(subs.as_bytes());
    subscriber.expect_open();

    let mut batch = Vec::new();
    for seq in 0..MESSAGES {
        batch.extend_from_slice(format!("PUB fan reply.{seq} 7\r\nhello-{seq}\r\n").as_bytes());
    }
    publisher.send(&batch);
    publisher.expect_open();

    let mut got = vec![vec![false; MESSAGES]; GROUPS + 1];
    for _ in 0..MESSAGES * (GROUPS + 1) {
        let msg = subscriber.read_msg();
        assert_eq!(msg.subject, "fan");
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        let seq: usize = payload
            .strip_prefix("hello-")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("payload {payload:?} on sid {}", msg.sid));
        assert_eq!(msg.reply.as_deref(), Some(format!("reply.{seq}").as_str()));
        let sid: usize = msg.sid.parse().expect("sid");
        assert!(!got[sid][seq], "sid {sid} got message {seq} twice");
        got[sid][seq] = true;
    }
    // Nothing more than one copy per group and one plain.
    assert!(subscriber.ping_pong().is_empty(), "extra messages");
}
