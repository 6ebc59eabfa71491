//! Messages through the shard cores of a two-shard server in one thread, no sockets, for
//! callgrind (perf/results/20261207-shard-core/README.md): a publisher on shard 0 and a
//! subscriber on shard 1 (`cross`: each message crosses in a mesh batch) or on shard 0
//! (`local`), 128-byte payloads, 64 messages per publisher turn. Runs the real `Shard` code
//! through `tests/support/shard_world.rs`, so the count covers the core's routing, delivery,
//! forwarding and flushing plus that harness's copying (the same in every build compared).
//!
//! Usage: shard_core_msgs cross|local WARM MESSAGES
//! Ir per message = (Ir of a run with MESSAGES = b) - (Ir with MESSAGES = a), over b - a.

#[path = "../../../../tests/support/shard_world.rs"]
mod shard_world;

use shard_world::{World, count};

const BURST: usize = 64;
const SIZE: usize = 128;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: shard_core_msgs cross|local WARM MESSAGES";
    let scenario = args.get(1).expect(usage).as_str();
    let warm: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let messages: usize = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let sub_shard = match scenario {
        "cross" => 1,
        "local" => 0,
        _ => panic!("{usage}"),
    };
    let mut w = World::new(2);
    let publisher = w.connect(0, "plain", true);
    let sub = w.connect(sub_shard, "plain", true);
    w.subscribe(sub, "SUB bench 1");
    let mut op = format!("PUB bench {SIZE}\r\n").into_bytes();
    op.extend((0..SIZE).map(|i| b'a' + (i % 26) as u8));
    op.extend_from_slice(b"\r\n");
    let header = format!("MSG bench 1 {SIZE}\r\n");
    let mut delivered = 0;
    for _ in 0..(warm + messages) / BURST {
        w.round(publisher, &op, &[BURST]);
        delivered += count(&w.socks[sub].got, header.as_bytes());
        w.clear_output();
    }
    assert_eq!(
        delivered,
        (warm + messages) / BURST * BURST,
        "every message delivered"
    );
    println!("{scenario}: {delivered} messages delivered");
}
