//! Monitoring over HTTP (`-m` / `http_port`): every endpoint answers with nats-server 2.9.10's
//! shapes, counters move with traffic, closed connections keep their reason, and a scrape loop
//! runs beside message traffic without disturbing it.
//!
//! How: the broker runs as a process with a monitoring port; a raw HTTP/1.1 client reads the
//! endpoints; shapes (field names, nesting, JSON types) are compared with the captures in
//! `tests/monitoring/` (nats-server's answers to the same clients, from
//! `shared/spec/monitoring/`) and, where nats-server is installed, with a live nats-server run
//! through the same steps. Guards: operators' dashboards and probes (Prometheus exporter,
//! Kubernetes `/healthz`, `nats server report`) read these fields by name.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Launch, RawConn, Server, TIMEOUT, pick_port};

/// How long one monitoring answer may take before the test fails. Longer than `TIMEOUT`: the
/// monitoring thread runs at nice 19 (`monitor/http.rs`), so on a machine saturated by other
/// work a small `/connz` takes seconds (0.2 to 4 s measured at load 20 on two cores); this
/// bound only catches an answer that never comes.
const ANSWER_MAX: Duration = Duration::from_secs(60);

/// The accounts of `tests/monitoring/monitor.conf`, which the captures were taken with.
const ACCOUNTS: &str = r#"
server_name: ref
accounts {
  A: { users: [ {user: a, password: pw, permissions: {publish: ["orders.>"], subscribe: ["results.>", "_INBOX.>"]}} ] }
  B: { users: [ {user: b, password: pw} ] }
}
"#;

/// One HTTP response.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `GET path` on 127.0.0.1:`port`, HTTP/1.1 with `Connection: close`.
fn get(port: u16, path: &str) -> Reply {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to monitor port");
    stream.set_read_timeout(Some(ANSWER_MAX)).expect("timeout");
    get_on(stream, path)
}

/// `GET path` on an open stream (plain or TLS), reading the answer to the end.
fn get_on(mut stream: impl Read + Write, path: &str) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A TLS peer may close without close_notify once the answer is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => panic!("read response: {e} after {raw:?}"),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        content_type,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A JSON value's shape: objects keep their keys, arrays the union of their elements' shapes,
/// scalars become their type name.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => {
            let mut merged = serde_json::Map::new();
            let mut scalar = None;
            for item in items {
                match shape(item) {
                    Value::Object(m) => merged.extend(m),
                    other => scalar = Some(other),
                }
            }
            match scalar {
                Some(s) => Value::Array(vec![s]),
                None if merged.is_empty() => Value::Array(Vec::new()),
                None => Value::Array(vec![Value::Object(merged)]),
            }
        }
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::from("null"),
    }
}

/// Shapes compared leniently where a list was empty on one side (nothing to compare).
fn assert_same_shape(ours: &Value, reference: &Value, at: &str) {
    match (ours, reference) {
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: Vec<_> = a.keys().collect();
            let keys_b: Vec<_> = b.keys().collect();
            assert_eq!(keys_a, keys_b, "field names at {at}");
            for (k, v) in a {
                assert_same_shape(v, &b[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_same_shape(x, y, &format!("{at}[]"));
            }
        }
        _ => assert_eq!(ours, reference, "type at {at}"),
    }
}

/// The captures' client steps: `svc-a` (user a) queue-subscribes `results.x`, subscribes
/// `_INBOX.>` and publishes ten 100-byte messages to `orders.new`; `cli-b` (user b) subscribes
/// `foo.*` and publishes `hello` to `foo.bar`. Both stay connected.
fn run_capture_clients(port: u16) -> (RawConn, RawConn) {
    let mut a = RawConn::connect(port);
    a.send_connect(
        r#"{"user":"a","pass":"pw","name":"svc-a","lang":"python3","version":"2.16.0","verbose":false}"#,
    );
    a.send(b"SUB results.x q 1\r\nSUB _INBOX.> 2\r\n");
    for _ in 0..10 {
        a.send(format!("PUB orders.new 100\r\n{}\r\n", "x".repeat(100)).as_bytes());
    }
    a.ping_pong();
    let mut b = RawConn::connect(port);
    b.send_connect(
        r#"{"user":"b","pass":"pw","name":"cli-b","lang":"python3","version":"2.16.0","verbose":false}"#,
    );
    b.send(b"SUB foo.* 1\r\nPUB foo.bar 5\r\nhello\r\n");
    b.expect_msg("foo.bar", "1", None, b"hello");
    b.ping_pong();
    (a, b)
}

/// The endpoints of the captures, in the order they were taken (`/varz` first, so its
/// `http_req_stats` holds itself alone).
const CAPTURED: &[(&str, &str)] = &[
    ("/varz", "varz.json"),
    ("/connz", "connz.json"),
    ("/connz?subs=1&auth=1", "connz_subs-1_auth-1.json"),
    ("/subsz", "subsz.json"),
    ("/subsz?subs=1", "subsz_subs-1.json"),
    ("/healthz", "healthz.json"),
    ("/accountz", "accountz.json"),
    ("/accountz?acc=A", "accountz_acc-A.json"),
    ("/routez", "routez.json"),
    ("/leafz", "leafz.json"),
    ("/gatewayz", "gatewayz.json"),
    ("/jsz", "jsz.json"),
    ("/connz?state=closed", "connz_state-closed.json"),
];

/// Removes what nats-server has and ringnats, by design, does not: the `$SYS` service imports
/// nats-server adds to every account.
fn without_known_differences(path: &str, mut value: Value) -> Value {
    if path == "/accountz?acc=A" {
        if let Some(detail) = value
            .get_mut("account_detail")
            .and_then(Value::as_object_mut)
        {
            detail.remove("imports");
        }
    }
    value
}

/// Starts `broker` with the capture config and a monitoring port; returns it and that port.
fn start_monitored(broker: &Launch, extra: &str) -> (Server, u16) {
    let http = pick_port();
    let daemon = broker
        .config(&format!("{ACCOUNTS}\nhttp_port: {http}\n{extra}"))
        .start();
    (daemon, http)
}

/// Every captured endpoint's answer, after the captures' client steps.
fn answers(broker: &Launch) -> BTreeMap<&'static str, Value> {
    let (daemon, http) = start_monitored(broker, "");
    let _clients = run_capture_clients(daemon.port());
    CAPTURED
        .iter()
        .map(|(path, _)| {
            let reply = get(http, path);
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            assert_eq!(reply.content_type, "application/json", "{path}");
            (*path, without_known_differences(path, reply.json()))
        })
        .collect()
}

#[test]
fn every_endpoint_has_the_captured_shape() {
    let ours = answers(&Launch::ringnats());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitoring");
    for (path, file) in CAPTURED {
        let text = std::fs::read_to_string(dir.join(file)).expect("capture file");
        let reference: Value = serde_json::from_str(&text).expect("capture JSON");
        let reference = without_known_differences(path, reference);
        assert_same_shape(&shape(&ours[path]), &shape(&reference), path);
    }
    assert_eq!(ours["/healthz"], serde_json::json!({"status": "ok"}));
    assert_eq!(
        ours["/varz"]["http_req_stats"],
        serde_json::json!({"/varz": 1})
    );
    assert_eq!(ours["/varz"]["system_account"], "$SYS");
}

#[test]
fn every_endpoint_has_the_shape_nats_server_gives_live() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    let ours = answers(&Launch::ringnats());
    let theirs = answers(&nats_server);
    for (path, _) in CAPTURED {
        assert_same_shape(&shape(&ours[path]), &shape(&theirs[path]), path);
    }
}

#[test]
fn counters_move_with_traffic() {
    let (daemon, http) = start_monitored(&Launch::ringnats(), "");
    let before = get(http, "/varz").json();
    let (_a, _b) = run_capture_clients(daemon.port());
    let varz = get(http, "/varz").json();
    assert_eq!(before["in_msgs"], 0);
    assert!(varz["in_msgs"].as_u64().unwrap() >= 11, "{varz}");
    assert!(varz["in_bytes"].as_u64().unwrap() >= 1005, "{varz}");
    assert_eq!(varz["out_msgs"], 1, "cli-b got its own message");
    assert_eq!(varz["out_bytes"], 5);
    assert_eq!(varz["connections"], 2);
    assert_eq!(varz["subscriptions"], 3);
    assert!(varz["total_connections"].as_u64().unwrap() >= 2);
    assert!(
        varz["mem"].as_u64().unwrap() > 1024 * 1024,
        "mem is RSS bytes"
    );
    let connz = get(http, "/connz?auth=1").json();
    let conns = connz["connections"].as_array().unwrap();
    let by_name = |name: &str| {
        conns
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {connz}"))
    };
    let a = by_name("svc-a");
    assert_eq!(
        (a["in_msgs"].as_u64(), a["in_bytes"].as_u64()),
        (Some(10), Some(1000))
    );
    assert_eq!(
        (a["subscriptions"].as_u64(), a["account"].as_str()),
        (Some(2), Some("A"))
    );
    let b = by_name("cli-b");
    assert_eq!(
        (b["out_msgs"].as_u64(), b["out_bytes"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(b["authorized_user"], "b");
    let accstatz = get(http, "/accstatz").json();
    let a_stat = accstatz["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["acc"] == "A")
        .expect("account A has a connection");
    assert_eq!(
        a_stat["received"],
        serde_json::json!({"msgs": 10, "bytes": 1000})
    );
    assert_eq!(a_stat["conns"], 1);
}

#[test]
fn closed_connections_keep_their_reason() {
    let (daemon, http) = start_monitored(&Launch::ringnats(), "");
    let mut a = RawConn::connect(daemon.port());
    let cid = a.client_id();
    a.send_connect(r#"{"user":"a","pass":"pw","name":"gone","verbose":false}"#);
    a.send(b"SUB results.x 1\r\nPUB orders.new 3\r\nabc\r\n");
    a.ping_pong();
    a.shutdown_write();
    a.expect_closed();
    let mut bad = RawConn::connect(daemon.port());
    let bad_cid = bad.client_id();
    bad.send_connect(r#"{"user":"a","pass":"wrong","verbose":false}"#);
    bad.expect_err("Authorization Violation");
    let deadline = Instant::now() + ANSWER_MAX;
    let closed = loop {
        let closed = get(http, "/connz?state=closed&subs=1&auth=1").json();
        let list = closed["connections"].as_array().unwrap().clone();
        let found = |id: u64| list.iter().any(|c| c["cid"] == id);
        if found(cid) && found(bad_cid) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections not listed: {closed}"
        );
        // The close is handled by the shard a moment after the client sees EOF; nothing in the
        // HTTP answer can be waited on instead of asking again.
        std::thread::sleep(Duration::from_millis(20));
    };
    let gone = closed.iter().find(|c| c["cid"] == cid).unwrap();
    assert_eq!(gone["reason"], "Client Closed");
    assert_eq!(gone["name"], "gone");
    assert_eq!(gone["in_msgs"], 1);
    assert_eq!(gone["subscriptions_list"], serde_json::json!(["results.x"]));
    assert!(gone["stop"].as_str().unwrap().ends_with('Z'));
    let refused = closed.iter().find(|c| c["cid"] == bad_cid).unwrap();
    assert_eq!(refused["reason"], "Authentication Failure");
    let one = get(http, &format!("/connz?state=all&cid={cid}")).json();
    assert_eq!(one["connections"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["connections"][0]["cid"], cid);
    let open = get(http, "/connz").json();
    assert!(
        open["connections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["cid"] != cid),
        "a closed connection is not listed as open: {open}"
    );
}

#[test]
fn connz_sorts_pages_and_filters() {
    let (daemon, http) = start_monitored(&Launch::ringnats(), "");
    let (_a, _b) = run_capture_clients(daemon.port());
    let by_in = get(http, "/connz?sort=msgs_from").json();
    assert_eq!(
        by_in["connections"][0]["name"], "svc-a",
        "descending by messages in"
    );
    let page = get(http, "/connz?sort=cid&offset=1&limit=1").json();
    assert_eq!(
        (page["total"].as_u64(), page["num_connections"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (page["offset"].as_u64(), page["limit"].as_u64()),
        (Some(1), Some(1))
    );
    let all = get(http, "/connz?sort=cid").json();
    let cids: Vec<u64> = all["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cid"].as_u64().unwrap())
        .collect();
    assert!(cids.windows(2).all(|w| w[0] < w[1]), "ascending: {cids:?}");
    assert_eq!(
        page["connections"][0]["cid"], cids[1],
        "the second by client id"
    );
    let only_b = get(http, "/connz?auth=1&acc=B").json();
    assert_eq!(only_b["total"], 1);
    assert_eq!(only_b["connections"][0]["account"], "B");
    let user_a = get(http, "/connz?auth=1&user=a").json();
    assert_eq!(user_a["connections"][0]["name"], "svc-a");
    let detail = get(http, "/connz?subs=detail").json();
    let a = &detail["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "svc-a")
        .unwrap()
        .clone();
    let queue = a["subscriptions_list_detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == "results.x")
        .expect("the queue subscription");
    assert_eq!(
        (queue["qgroup"].as_str(), queue["sid"].as_str()),
        (Some("q"), Some("1"))
    );
    let tested = get(http, "/subsz?subs=1&test=foo.bar").json();
    let list = tested["subscriptions_list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tested}");
    assert_eq!(
        (list[0]["subject"].as_str(), list[0]["msgs"].as_u64()),
        (Some("foo.*"), Some(1))
    );
    for (path, text) in [
        ("/connz?sort=bogus", "invalid sorting option: bogus"),
        (
            "/connz?sort=stop",
            "sort by stop only valid on closed connections",
        ),
        ("/connz?state=maybe", "Error decoding state for maybe"),
        ("/connz?auth=yes", "Error decoding boolean for 'auth'"),
        ("/subsz?test=foo.*", "invalid test subject"),
        ("/accountz?acc=nobody", "Account nobody does not exist"),
    ] {
        let reply = get(http, path);
        assert_eq!(reply.status, 400, "{path}");
        assert!(reply.body.contains(text), "{path}: {}", reply.body);
    }
}

/// nanoseconds since the epoch of an RFC 3339 time as `/connz` prints it (the fraction has its
/// trailing zeros trimmed, so the text does not sort as the time does).
fn rfc3339_nanos(text: &str) -> u128 {
    let (clock, frac) = text
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((text, ""));
    let frac = format!("{frac:0<9}");
    let digits: String = clock.chars().filter(char::is_ascii_digit).collect();
    digits.parse::<u128>().unwrap() * 1_000_000_000 + frac.parse::<u128>().unwrap()
}

/// Every `sort` lists the connections in its order (ties by client id), and pages cut from the
/// top of that order agree with the whole list: with more connections than a page, the
/// shard chooses a page's connections by rank before copying them, and must choose the same
/// ones the whole list shows.
#[test]
fn connz_pages_agree_with_the_whole_sorted_list() {
    let (daemon, http) = start_open(&Launch::ringnats().shards(1));
    let mut clients = Vec::new();
    for i in 0..7usize {
        let mut c = RawConn::connect(daemon.port());
        c.send_connect(r#"{"verbose":false}"#);
        for k in 0..(i * 5 % 7) {
            c.send(format!("SUB s.{i}.{k} {k}\r\n").as_bytes());
        }
        for _ in 0..(i * 3 % 7 + 1) {
            let payload = "x".repeat(i % 3 * 10 + 1);
            c.send(format!("PUB x.none {}\r\n{payload}\r\n", payload.len()).as_bytes());
        }
        c.ping_pong();
        clients.push(c);
    }
    // One connection receives, so `msgs_to`/`bytes_to` are not all ties.
    clients[2].send(b"SUB s.to 99\r\n");
    clients[2].ping_pong();
    clients[5].send(b"PUB s.to 3\r\nabc\r\n");
    clients[5].ping_pong();
    clients[2].ping_pong();
    type Key = fn(&Value) -> i128;
    let sorts: [(&str, Key); 10] = [
        ("cid", |_| 0),
        ("subs", |c| {
            -i128::from(c["subscriptions"].as_u64().unwrap())
        }),
        ("pending", |c| {
            -i128::from(c["pending_bytes"].as_u64().unwrap())
        }),
        ("msgs_to", |c| -i128::from(c["out_msgs"].as_u64().unwrap())),
        ("msgs_from", |c| -i128::from(c["in_msgs"].as_u64().unwrap())),
        ("bytes_to", |c| {
            -i128::from(c["out_bytes"].as_u64().unwrap())
        }),
        ("bytes_from", |c| {
            -i128::from(c["in_bytes"].as_u64().unwrap())
        }),
        ("last", |c| {
            -(rfc3339_nanos(c["last_activity"].as_str().unwrap()) as i128)
        }),
        ("idle", |c| {
            rfc3339_nanos(c["last_activity"].as_str().unwrap()) as i128
        }),
        ("uptime", |c| {
            -(rfc3339_nanos(c["start"].as_str().unwrap()) as i128)
        }),
    ];
    for (sort, key) in sorts {
        let whole = get(http, &format!("/connz?sort={sort}&limit=100")).json();
        let list = whole["connections"].as_array().unwrap();
        assert_eq!(list.len(), 7, "{sort}: {whole}");
        let keyed: Vec<(i128, u64)> = list
            .iter()
            .map(|c| (key(c), c["cid"].as_u64().unwrap()))
            .collect();
        assert!(
            keyed.windows(2).all(|w| w[0] < w[1]),
            "{sort}: listed in its order, ties by cid: {keyed:?}"
        );
        let mut paged = Vec::new();
        for offset in (0..7).step_by(2) {
            let page = get(http, &format!("/connz?sort={sort}&offset={offset}&limit=2")).json();
            assert_eq!(page["total"], 7, "{sort}: {page}");
            let cids = page["connections"].as_array().unwrap().iter();
            paged.extend(cids.map(|c| c["cid"].as_u64().unwrap()));
        }
        let whole_cids: Vec<u64> = keyed.iter().map(|k| k.1).collect();
        assert_eq!(paged, whole_cids, "{sort}: pages agree with the whole list");
    }
    let subjects = get(http, "/connz?sort=subs&limit=1&subs=1").json();
    let top = &subjects["connections"][0];
    assert_eq!(top["subscriptions"], 6, "{subjects}");
    let list = top["subscriptions_list"].as_array().unwrap();
    assert_eq!(list.len(), 6, "subs=1 lists every subject: {subjects}");
    assert!(
        list.iter().all(|s| s.as_str().unwrap().starts_with("s.")),
        "{subjects}"
    );
    assert!(top.get("subscriptions_list_detail").is_none(), "{subjects}");
}

/// The default `/connz` (open connections by client id, the page a poll asks for) follows
/// connections that come and go between polls, and their counters move while the list does
/// not: the shard keeps that list between polls and must notice every change of members.
#[test]
fn the_default_connz_follows_connections_coming_and_going() {
    let (daemon, http) = start_open(&Launch::ringnats().shards(1));
    let cids_of = |connz: &Value| -> Vec<u64> {
        let list = connz["connections"].as_array().unwrap().iter();
        list.map(|c| c["cid"].as_u64().unwrap()).collect()
    };
    let mut first = RawConn::connect(daemon.port());
    first.send_connect(r#"{"verbose":false,"name":"first"}"#);
    first.ping_pong();
    let one = get(http, "/connz").json();
    assert_eq!(
        (one["total"].as_u64(), cids_of(&one).len()),
        (Some(1), 1),
        "{one}"
    );
    first.send(b"PUB x 2\r\nhi\r\n");
    first.ping_pong();
    let moved = get(http, "/connz").json();
    assert_eq!(
        moved["connections"][0]["in_msgs"], 1,
        "counters are read per poll: {moved}"
    );
    let mut second = RawConn::connect(daemon.port());
    second.send_connect(r#"{"verbose":false,"name":"second"}"#);
    second.ping_pong();
    let two = get(http, "/connz").json();
    assert_eq!(two["total"], 2, "{two}");
    let cids = cids_of(&two);
    assert_eq!(cids.len(), 2, "{two}");
    assert!(cids[0] < cids[1], "by client id: {two}");
    assert_eq!(two["connections"][1]["name"], "second", "{two}");
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = get(http, "/connz").json();
        if left["total"] == 1 {
            assert_eq!(cids_of(&left), vec![cids[1]], "{left}");
            assert_eq!(left["connections"][0]["name"], "second", "{left}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection is still listed: {left}"
        );
        // The close is handled by the shard a moment after the client's FIN; nothing in the
        // HTTP answer can be waited on instead of asking again.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/subsz` match statistics after three subscriptions on `foo.bar` (one plain, one
/// wildcard, one queue) and eleven publishes on two subjects, then an UNSUB. `exact`: the
/// figures ringnats gives with one shard (every publish is one index lookup; the cache holds
/// the two subjects); otherwise the ones nats-server must give too, whose per-client cache
/// answers repeats before its sublist is asked.
fn scenario_subsz_match_stats(http: u16, port: u16, exact: bool) {
    let mut c = RawConn::connect(port);
    c.send_connect(r#"{"verbose":false}"#);
    c.send(b"SUB foo.* 1\r\nSUB foo.bar 2\r\nSUB foo.bar q 3\r\n");
    for _ in 0..10 {
        c.send(b"PUB foo.bar 2\r\nhi\r\n");
    }
    c.send(b"PUB foo.baz 2\r\nhi\r\n");
    c.ping_pong();
    let stats = get(http, "/subsz").json();
    let number = |key: &str| {
        stats[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {stats}"))
    };
    assert!(number("num_inserts") >= 3.0, "{stats}");
    assert!(number("num_matches") >= 2.0, "{stats}");
    assert!(number("num_cache") >= 2.0, "{stats}");
    assert!(number("max_fanout") >= 3.0, "{stats}");
    assert!(number("avg_fanout") > 0.0, "{stats}");
    let hit_rate = number("cache_hit_rate");
    assert!((0.0..=1.0).contains(&hit_rate), "{stats}");
    if exact {
        assert_eq!(number("num_matches"), 11.0, "{stats}");
        assert_eq!(number("cache_hit_rate"), 9.0 / 11.0, "{stats}");
        assert_eq!(number("num_cache"), 2.0, "{stats}");
        assert_eq!(number("max_fanout"), 3.0, "{stats}");
        assert_eq!(number("avg_fanout"), 2.0, "(3 + 1) / 2: {stats}");
    }
    c.send(b"UNSUB 2\r\n");
    c.ping_pong();
    let after = get(http, "/subsz").json();
    assert!(after["num_removes"].as_u64().unwrap() >= 1, "{after}");
    if exact {
        assert_eq!(after["max_fanout"], 2, "{after}");
    }
}

/// Starts `broker` without accounts (clients need no credentials) and a monitoring port.
fn start_open(broker: &Launch) -> (Server, u16) {
    let http = pick_port();
    (broker.config(&format!("http_port: {http}")).start(), http)
}

#[test]
fn subsz_match_statistics_move_with_traffic() {
    let (daemon, http) = start_open(&Launch::ringnats().shards(1));
    scenario_subsz_match_stats(http, daemon.port(), true);
}

#[test]
fn subsz_match_statistics_move_with_traffic_nats_server() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    let (daemon, http) = start_open(&nats_server);
    scenario_subsz_match_stats(http, daemon.port(), false);
}

/// A Go duration string (`"1.5ms"`, `"2m3.1s"`, `"812µs"`, `"0s"`) as seconds.
fn go_duration(text: &str) -> f64 {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or_else(|| panic!("no unit in {text:?}"));
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().unwrap_or_else(|_| panic!("{text:?}"));
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "µs" | "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => panic!("unit {unit:?} in {text:?}"),
        };
        total += number * scale;
        rest = tail;
    }
    total
}

/// The `rtt` `/connz` shows for client `cid`, in seconds.
fn rtt_of(http: u16, cid: u64) -> f64 {
    let connz = get(http, &format!("/connz?cid={cid}")).json();
    let rtt = connz["connections"][0]["rtt"]
        .as_str()
        .unwrap_or_else(|| panic!("no rtt for {cid}: {connz}"));
    go_duration(rtt)
}

/// RTT as nats-server measures it (`processConnect`, `setFirstPingTimer`, `processPingTimer`):
/// the time from accept to CONNECT is the first estimate, shown at once; then a PING goes out
/// 2 s (plus up to a fifth) after CONNECT even on a busy connection, never sooner (a client
/// still in its handshake is not ready for one), and its PONG gives the measured RTT.
fn scenario_rtt_soon_after_connect(broker: &Launch) {
    const CONNECT_DELAY: Duration = Duration::from_millis(1000);
    let (daemon, http) = start_open(broker);
    let mut c = RawConn::connect(daemon.port());
    let cid = c.client_id();
    c.set_auto_pong(false);
    // The delay is the condition under test (a slow CONNECT gives a large first estimate),
    // not a wait for something to happen.
    std::thread::sleep(CONNECT_DELAY);
    let connected = Instant::now();
    c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    c.expect_line(b"PONG");
    let estimate = rtt_of(http, cid);
    assert!(
        estimate >= CONNECT_DELAY.as_secs_f64(),
        "the first RTT is accept to CONNECT: {estimate} s"
    );
    // Keep the connection busy (a publish whenever 100 ms pass without a line) until the
    // server's PING comes.
    let deadline = connected + TIMEOUT;
    loop {
        match c.try_read_line(Instant::now() + Duration::from_millis(100)) {
            Ok(line) if line == b"PING" => break,
            Ok(line) => panic!("unexpected line {}", common::show(&line)),
            Err(common::ReadEnd::Timeout) => {
                assert!(Instant::now() < deadline, "no RTT PING within {TIMEOUT:?}");
                c.send(b"PUB busy 1\r\nx\r\n");
            }
            Err(end) => panic!("connection ended: {end:?}"),
        }
    }
    let after = connected.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "RTT PING {after:?} after CONNECT"
    );
    c.send(b"PONG\r\n");
    c.expect_open();
    let measured = rtt_of(http, cid);
    assert!(
        measured > 0.0 && measured < CONNECT_DELAY.as_secs_f64(),
        "measured RTT {measured} s replaces the estimate {estimate} s"
    );
}

#[test]
fn rtt_shows_soon_after_connect() {
    scenario_rtt_soon_after_connect(&Launch::ringnats());
}

#[test]
fn rtt_shows_soon_after_connect_nats_server() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    scenario_rtt_soon_after_connect(&nats_server);
}

/// The monitoring thread runs at nice 19 and builds the heavy answers (`/connz`, `/subsz`) on
/// a thread under `SCHED_IDLE`, so a heavy poll takes its time rather than a shard's, while
/// `/healthz` stays on the nice-19 thread (`/proc/<pid>/task/<tid>/stat`: field 19 is the nice
/// value, field 41 the scheduling policy, 5 = `SCHED_IDLE`).
#[test]
fn the_monitoring_thread_yields_to_the_shards() {
    let (daemon, http) = start_open(&Launch::ringnats().shards(1));
    assert_eq!(get(http, "/healthz").status, 200);
    assert_eq!(get(http, "/connz?subs=1").status, 200);
    assert_eq!(get(http, "/subsz?subs=1").status, 200);
    let tasks = format!("/proc/{}/task", daemon.pid());
    let stat_field = |tid: &str, field: usize| -> i64 {
        let stat = std::fs::read_to_string(format!("{tasks}/{tid}/stat")).expect("stat");
        let after_name = stat.rsplit_once(')').expect("comm").1;
        // Fields are numbered from 1; the text after the name starts at field 3.
        let value = after_name.split_whitespace().nth(field - 3);
        value.expect("field").parse().unwrap()
    };
    let mut seen = BTreeMap::new();
    for entry in std::fs::read_dir(&tasks).expect("tasks") {
        let tid = entry.expect("task").file_name().into_string().unwrap();
        let comm = std::fs::read_to_string(format!("{tasks}/{tid}/comm")).unwrap_or_default();
        let nice_and_policy = (stat_field(&tid, 19), stat_field(&tid, 41));
        seen.insert(comm.trim().to_string(), nice_and_policy);
    }
    const SCHED_OTHER: i64 = 0;
    const SCHED_IDLE: i64 = 5;
    assert_eq!(seen.get("monitor"), Some(&(19, SCHED_OTHER)), "{seen:?}");
    assert_eq!(
        seen.get("monitor-render").map(|s| s.1),
        Some(SCHED_IDLE),
        "{seen:?}"
    );
    assert_eq!(seen.get("shard-0").map(|s| s.0), Some(0), "{seen:?}");
}

#[test]
fn unknown_paths_are_404_and_the_base_path_applies() {
    let (_daemon, http) = start_monitored(&Launch::ringnats().shards(1), "http_base_path: /nats");
    assert_eq!(get(http, "/nats/healthz").body, r#"{"status":"ok"}"#);
    assert_eq!(get(http, "/nats/varz").json()["http_base_path"], "/nats");
    for path in ["/varz", "/nats/bogus", "/nats/varz/", "/natsvarz"] {
        assert_eq!(get(http, path).status, 404, "{path}");
    }
    let jsonp = get(http, "/nats/healthz?callback=cb");
    assert_eq!(jsonp.body, r#"cb({"status":"ok"})"#);
    assert_eq!(jsonp.content_type, "application/javascript");
}

#[test]
fn healthz_fails_in_lame_duck_mode() {
    let (daemon, http) = start_monitored(
        &Launch::ringnats().shards(1),
        "lame_duck_duration: 30s\nlame_duck_grace_period: 20s",
    );
    assert_eq!(get(http, "/healthz").status, 200);
    daemon.signal("USR2");
    let deadline = Instant::now() + ANSWER_MAX;
    let reply = loop {
        let reply = get(http, "/healthz");
        if reply.status != 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still ok in lame-duck mode"
        );
        // The signal is handled by another process's thread; asking again is the only way to
        // see the change.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reply.status, 503);
    let body = reply.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"], "lame duck mode");
}

#[test]
fn the_m_flag_serves_monitoring() {
    let http = pick_port();
    let port_arg = http.to_string();
    let daemon = Launch::ringnats().shards(1).args(["-m", &port_arg]).start();
    let varz = get(http, "/varz").json();
    assert_eq!(varz["http_port"], http);
    assert_eq!(varz["port"], daemon.port());
    assert!(varz.get("system_account").is_some());
}

#[test]
fn a_taken_monitoring_port_stops_the_start() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = holder.local_addr().unwrap().port();
    let mut daemon = Launch::ringnats()
        .shards(1)
        .config(&format!("http: \"127.0.0.1:{http}\""))
        .spawn();
    let status = daemon.wait_exit(TIMEOUT);
    assert!(!status.success());
    let output = daemon.output();
    assert!(output.contains("monitor port"), "{output}");
    drop(holder);
}

/// A Prometheus-style scrape loop (varz, connz with subscriptions) beside a publisher and a
/// subscriber: every scrape answers, counters never go back, and every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_loop_beside_traffic() {
    let (daemon, http) = start_monitored(&Launch::ringnats(), "");
    let url = common::url_of(daemon.port());
    let opts = || async_nats::ConnectOptions::with_user_and_password("b".into(), "pw".into());
    let sub_client = opts().connect(&url).await.expect("connect subscriber");
    let mut sub = sub_client.subscribe("foo.x").await.expect("subscribe");
    sub_client.flush().await.expect("flush");
    let pub_client = opts().connect(&url).await.expect("connect publisher");
    const MESSAGES: usize = 20_000;
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            pub_client
                .publish("foo.x", format!("{i}").into())
                .await
                .expect("publish");
        }
        pub_client.flush().await.expect("flush");
    });
    let scraper = tokio::task::spawn_blocking(move || {
        let mut last_in = 0;
        for _ in 0..100 {
            let varz = get(http, "/varz");
            assert_eq!(varz.status, 200);
            let in_msgs = varz.json()["in_msgs"].as_u64().unwrap();
            assert!(
                in_msgs >= last_in,
                "in_msgs went back: {in_msgs} < {last_in}"
            );
            last_in = in_msgs;
            assert_eq!(get(http, "/connz?subs=1").status, 200);
        }
    });
    use futures::StreamExt;
    let mut received = 0;
    while received < MESSAGES {
        let msg = tokio::time::timeout(TIMEOUT, sub.next()).await;
        assert!(msg.expect("message in time").is_some());
        received += 1;
    }
    publisher.await.expect("publisher");
    scraper.await.expect("scraper");
    let varz = get(http, "/varz").json();
    assert!(varz["in_msgs"].as_u64().unwrap() >= MESSAGES as u64);
    assert!(varz["out_msgs"].as_u64().unwrap() >= MESSAGES as u64);
}

/// Once a client has its INFO, every endpoint answers: nats-server starts monitoring before it
/// accepts clients, and scripts (and test suites such as nats.py's) read `/varz` right after
/// connecting. Several starts, since the window was the few milliseconds between the shards'
/// first INFO and the monitoring thread learning of the running server.
fn scenario_ready_with_the_client_port(broker: &Launch) {
    for round in 0..30 {
        let (daemon, http) = start_open(broker);
        let varz = get(http, "/varz");
        assert_eq!(varz.status, 200, "round {round}: {}", varz.body);
        assert_eq!(varz.json()["port"], daemon.port(), "round {round}");
        let connz = get(http, "/connz");
        assert_eq!(connz.status, 200, "round {round}: {}", connz.body);
    }
}

#[test]
fn endpoints_answer_once_clients_are_served() {
    scenario_ready_with_the_client_port(&Launch::ringnats().shards(2));
}

#[test]
fn endpoints_answer_once_clients_are_served_nats_server() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    scenario_ready_with_the_client_port(&nats_server);
}

/// `https_port`: the endpoints over TLS with the server's `tls {}` certificate. As nats-server
/// 2.9.10 (`getMonitoringTLSConfig`: `ClientAuth = NoClientCert`), the monitoring port asks
/// no client certificate even when the client port verifies them.
#[cfg(feature = "test-pki")]
mod https {
    use std::net::TcpStream;
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, StreamOwned};

    use super::common::tls_client::{Admission, Pki, admission};
    use super::common::{Launch, TIMEOUT, pick_port};
    use super::{ACCOUNTS, ANSWER_MAX, Reply, get_on};

    /// `GET path` over TLS on 127.0.0.1:`port`.
    fn get_tls(port: u16, config: Arc<rustls::ClientConfig>, path: &str) -> Reply {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to monitor port");
        tcp.set_read_timeout(Some(ANSWER_MAX)).expect("timeout");
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let conn = ClientConnection::new(config, name).expect("client connection");
        get_on(StreamOwned::new(conn, tcp), path)
    }

    /// A client port that verifies client certificates, monitoring on `https_port`.
    fn scenario_https_port(broker: &Launch) {
        let pki = Pki::new();
        let https = pick_port();
        let config = format!(
            "{ACCOUNTS}\n{}\nhttps_port: {https}\n",
            pki.tls_block_with_ca("verify: true")
        );
        let daemon = broker.config(&config).start();
        let no_cert = pki.client(None);
        let varz = get_tls(https, no_cert.clone(), "/varz");
        assert_eq!(varz.status, 200, "{}", varz.body);
        assert_eq!(varz.content_type, "application/json");
        let varz = varz.json();
        assert_eq!(varz["https_port"], https, "{varz}");
        assert_eq!(varz["http_port"], 0, "{varz}");
        assert_eq!(varz["tls_verify"], true, "{varz}");
        let healthz = get_tls(https, no_cert.clone(), "/healthz");
        assert_eq!(healthz.body, r#"{"status":"ok"}"#);
        let with_cert = pki.client(Some(&pki.pki.alice_o_cn));
        assert_eq!(get_tls(https, with_cert, "/connz").status, 200);
        // The client port still refuses a client without a certificate.
        let refused = admission(daemon.port(), no_cert, r#"{"verbose":false}"#);
        assert!(
            !matches!(refused, Admission::Pong),
            "client port admitted a client without a certificate"
        );
    }

    #[test]
    fn https_port_serves_monitoring_without_client_certificates() {
        scenario_https_port(&Launch::ringnats());
    }

    #[test]
    fn https_port_serves_monitoring_without_client_certificates_nats_server() {
        let Some(nats_server) = Launch::nats_server() else {
            return;
        };
        scenario_https_port(&nats_server);
    }

    /// Starts `broker` with `config`, which must stop the start; returns its output.
    fn refused_start(broker: &Launch, config: &str) -> String {
        let mut daemon = broker.config(config).spawn();
        let status = daemon.wait_exit(TIMEOUT);
        assert!(!status.success(), "started with {config}");
        daemon.output()
    }

    fn scenario_https_refusals(broker: &Launch) {
        let pki = Pki::new();
        let out = refused_start(broker, &format!("https_port: {}", pick_port()));
        assert!(out.contains("TLS cert and key required for HTTPS"), "{out}");
        let both = format!(
            "{}\nhttp_port: {}\nhttps_port: {}",
            pki.tls_block(""),
            pick_port(),
            pick_port()
        );
        let out = refused_start(broker, &both);
        assert!(out.contains("can't specify both HTTP"), "{out}");
    }

    #[test]
    fn https_port_needs_tls_and_excludes_http_port() {
        scenario_https_refusals(&Launch::ringnats().shards(1));
    }

    #[test]
    fn https_port_needs_tls_and_excludes_http_port_nats_server() {
        let Some(nats_server) = Launch::nats_server() else {
            return;
        };
        scenario_https_refusals(&nats_server);
    }
}
