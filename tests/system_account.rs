//! The system account (`system_account`): connect, disconnect and authentication-error
//! advisories, account connection counts, and every `$SYS.REQ.` request subject, with
//! nats-server 2.9.10's message shapes; and `$SYS` closed to other accounts.
//!
//! How: a raw client of the system account subscribes `$SYS.>` while application clients
//! connect, publish and close; bodies are compared field by field (names, nesting, JSON types)
//! with the captures in `tests/monitoring/sys_events.txt` (nats-server's messages for the same
//! steps) and, for the rules of other accounts, with a live nats-server. Guards: `nats server
//! list`, `nats server report connections` and audit tools subscribe to these subjects.

mod common;

use serde_json::Value;

use common::{Launch, RawConn, RawMsg, Server};

const SYS_CONFIG: &str = r#"
server_name: ref
accounts {
  SYS: { users: [ {user: sys, password: pw} ] }
  A: { users: [ {user: a, password: pw} ] }
}
system_account: SYS
"#;

fn login(port: u16, user: &str, pass: &str) -> RawConn {
    let mut conn = RawConn::connect(port);
    conn.send_connect(&format!(
        r#"{{"user":"{user}","pass":"{pass}","name":"app","lang":"python3","version":"2.16.0","verbose":false}}"#
    ));
    conn.ping_pong();
    conn
}

/// The next message on a subject that passes `wanted`, skipping others (periodic STATSZ).
fn next_on(conn: &mut RawConn, wanted: impl Fn(&str) -> bool) -> RawMsg {
    loop {
        let msg = conn.read_msg();
        if wanted(&msg.subject) {
            return msg;
        }
    }
}

fn body(msg: &RawMsg) -> Value {
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("{} body is not JSON ({e})", msg.subject))
}

/// The captured body of the first block of `sys_events.txt` whose subject line passes `pick`.
fn captured(pick: impl Fn(&str) -> bool) -> Value {
    let text = include_str!("monitoring/sys_events.txt");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if pick(line) {
            let json = lines
                .find(|l| l.starts_with('{'))
                .expect("a body after the subject");
            return serde_json::from_str(json).expect("captured JSON");
        }
    }
    panic!("no captured block");
}

fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::from("null"),
    }
}

/// Compares shapes, ignoring the listed dotted paths (fields nats-server only sometimes has).
fn assert_shape(ours: &Value, reference: &Value, ignore: &[&str], at: &str) {
    match (ours, reference) {
        (Value::Object(a), Value::Object(b)) => {
            let keep = |k: &&String| !ignore.contains(&format!("{at}.{k}").as_str());
            let keys_a: Vec<_> = a.keys().filter(keep).collect();
            let keys_b: Vec<_> = b.keys().filter(keep).collect();
            assert_eq!(keys_a, keys_b, "field names at {at}");
            for k in keys_a {
                assert_shape(&a[k], &b[k], ignore, &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_shape(x, y, ignore, &format!("{at}[]"));
            }
        }
        _ => assert_eq!(shape(ours), shape(reference), "type at {at}"),
    }
}

fn start() -> Server {
    Launch::ringnats().config(SYS_CONFIG).start()
}

#[test]
fn connect_and_disconnect_advisories_have_the_captured_shape() {
    let server = start();
    let mut sys = login(server.port(), "sys", "pw");
    sys.send(b"SUB $SYS.> 1\r\n");
    sys.ping_pong();
    let mut app = login(server.port(), "a", "pw");
    let cid = app.client_id();
    app.send(b"PUB foo 1\r\nx\r\n");
    app.ping_pong();
    let connect = next_on(&mut sys, |s| s == "$SYS.ACCOUNT.A.CONNECT");
    let event = body(&connect);
    assert_shape(
        &event,
        &captured(|l| l == "$SYS.ACCOUNT.A.CONNECT"),
        &[],
        "CONNECT",
    );
    assert_eq!(event["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(event["client"]["id"], cid);
    assert_eq!(event["client"]["acc"], "A");
    assert_eq!(event["client"]["user"], "a");
    let conns = body(&next_on(&mut sys, |s| s == "$SYS.ACCOUNT.A.SERVER.CONNS"));
    assert_shape(
        &conns,
        &captured(|l| l == "$SYS.ACCOUNT.A.SERVER.CONNS"),
        &[],
        "SERVER.CONNS",
    );
    assert_eq!(conns["conns"], 1);
    app.shutdown_write();
    app.expect_closed();
    let disconnect = body(&next_on(&mut sys, |s| s == "$SYS.ACCOUNT.A.DISCONNECT"));
    // nats-server has an RTT by then (it PINGs a client it delivers to); ringnats shows one
    // once a server PING was answered.
    assert_shape(
        &disconnect,
        &captured(|l| l == "$SYS.ACCOUNT.A.DISCONNECT"),
        &["DISCONNECT.client.rtt"],
        "DISCONNECT",
    );
    assert_eq!(disconnect["reason"], "Client Closed");
    assert_eq!(
        disconnect["sent"],
        serde_json::json!({"msgs": 1, "bytes": 1})
    );
    assert!(disconnect["client"]["stop"].is_string());
    let seq_connect = event["server"]["seq"].as_u64().unwrap();
    let seq_disconnect = disconnect["server"]["seq"].as_u64().unwrap();
    assert!(seq_disconnect > seq_connect, "server.seq grows");
    let after = body(&next_on(&mut sys, |s| s == "$SYS.ACCOUNT.A.SERVER.CONNS"));
    assert_eq!(after["conns"], 0);
    assert_eq!(
        after["received"],
        serde_json::json!({"msgs": 1, "bytes": 1})
    );
}

#[test]
fn authentication_errors_are_published() {
    let server = start();
    let mut sys = login(server.port(), "sys", "pw");
    let id = sys.info()["server_id"].as_str().unwrap().to_string();
    sys.send(b"SUB $SYS.SERVER.*.CLIENT.AUTH.ERR 1\r\n");
    sys.ping_pong();
    let mut bad = RawConn::connect(server.port());
    bad.send_connect(r#"{"user":"a","pass":"wrong","verbose":false}"#);
    bad.expect_err("Authorization Violation");
    let msg = next_on(&mut sys, |_| true);
    assert_eq!(msg.subject, format!("$SYS.SERVER.{id}.CLIENT.AUTH.ERR"));
    let event = body(&msg);
    assert_eq!(
        event["type"],
        "io.nats.server.advisory.v1.client_disconnect"
    );
    assert_eq!(event["reason"], "Authentication Failure");
    assert_eq!(event["client"]["id"], bad.client_id());
}

/// Sends a request on `subject` and returns the reply's body.
fn request(conn: &mut RawConn, subject: &str, payload: &str) -> Value {
    conn.send(format!("PUB {subject} _INBOX.r {}\r\n{payload}\r\n", payload.len()).as_bytes());
    body(&next_on(conn, |s| s == "_INBOX.r"))
}

#[test]
fn every_request_subject_answers_with_the_envelope() {
    let server = start();
    let mut sys = login(server.port(), "sys", "pw");
    let id = sys.info()["server_id"].as_str().unwrap().to_string();
    let _app = login(server.port(), "a", "pw");
    sys.send(b"SUB _INBOX.r 9\r\n");
    sys.ping_pong();
    let ping = request(&mut sys, "$SYS.REQ.SERVER.PING", "");
    assert_shape(
        &ping,
        &captured(|l| l == "REPLY $SYS.REQ.SERVER.PING"),
        &[],
        "PING",
    );
    assert_eq!(ping["statsz"]["connections"], 2);
    for (kind, reply) in [
        ("VARZ", "REPLY $SYS.REQ.SERVER.PING.VARZ"),
        ("CONNZ", "REPLY $SYS.REQ.SERVER.PING.CONNZ"),
        ("HEALTHZ", "REPLY $SYS.REQ.SERVER.PING.HEALTHZ"),
    ] {
        let ours = request(&mut sys, &format!("$SYS.REQ.SERVER.PING.{kind}"), "");
        assert_shape(&ours, &captured(|l| l == reply), &[], kind);
        let by_id = request(&mut sys, &format!("$SYS.REQ.SERVER.{id}.{kind}"), "");
        assert!(by_id["data"].is_object(), "{kind} by id: {by_id}");
    }
    for kind in ["SUBSZ", "ACCOUNTZ", "JSZ", "ROUTEZ", "LEAFZ", "GATEWAYZ"] {
        let reply = request(&mut sys, &format!("$SYS.REQ.SERVER.PING.{kind}"), "");
        assert_eq!(reply["server"]["id"], id.as_str(), "{kind}");
        assert!(reply["data"].is_object(), "{kind}: {reply}");
    }
    let statsz = request(&mut sys, "$SYS.REQ.SERVER.PING.STATSZ", "");
    assert!(statsz["statsz"]["mem"].as_u64().unwrap() > 0);
    let connz = request(&mut sys, "$SYS.REQ.ACCOUNT.A.CONNZ", "");
    assert_eq!(connz["data"]["num_connections"], 1, "{connz}");
    let subsz = request(&mut sys, "$SYS.REQ.ACCOUNT.A.SUBSZ", "");
    assert!(subsz["data"].is_object(), "{subsz}");
    let conns = request(&mut sys, "$SYS.REQ.ACCOUNT.A.CONNS", "");
    assert_eq!(
        (conns["acc"].as_str(), conns["conns"].as_u64()),
        (Some("A"), Some(1))
    );
    let info = request(&mut sys, "$SYS.REQ.ACCOUNT.A.INFO", "");
    assert_eq!(info["data"]["account_name"], "A", "{info}");
    let mine = request(&mut sys, "$SYS.REQ.ACCOUNT.PING.CONNZ", "");
    assert_eq!(
        mine["data"]["num_connections"], 1,
        "the system account's own: {mine}"
    );
    let user = request(&mut sys, "$SYS.REQ.USER.INFO", "");
    assert_eq!(
        (
            user["data"]["user"].as_str(),
            user["data"]["account"].as_str()
        ),
        (Some("sys"), Some("SYS"))
    );
    // Options in the request body are honoured.
    let filtered = request(
        &mut sys,
        "$SYS.REQ.SERVER.PING.CONNZ",
        r#"{"acc":"A","auth":true}"#,
    );
    assert_eq!(
        filtered["data"]["connections"][0]["account"], "A",
        "{filtered}"
    );
    let payload = r#"{"server_name":"nobody"}"#;
    let publish = format!(
        "PUB $SYS.REQ.SERVER.PING.STATSZ _INBOX.r {}\r\n{payload}\r\n",
        payload.len()
    );
    sys.send(publish.as_bytes());
    assert_no_reply_before_the_next(&mut sys, "$SYS.REQ.SERVER.PING.HEALTHZ");
}

/// Asks `probe` on `_INBOX.s` and reads up to its answer: requests are answered in order, so
/// an answer on `_INBOX.r` to an earlier request would have come first.
fn assert_no_reply_before_the_next(conn: &mut RawConn, probe: &str) {
    conn.send(format!("SUB _INBOX.s 10\r\nPUB {probe} _INBOX.s 0\r\n\r\n").as_bytes());
    loop {
        let msg = conn.read_msg();
        assert_ne!(
            msg.subject,
            "_INBOX.r",
            "answered: {}",
            String::from_utf8_lossy(&msg.payload)
        );
        assert!(
            !msg.subject.starts_with("$SYS.ACCOUNT.") && !msg.subject.starts_with("$SYS.SERVER."),
            "an advisory reached a client: {}",
            msg.subject
        );
        if msg.subject == "_INBOX.s" {
            return;
        }
    }
}

/// In another account `$SYS.>` is that account's own namespace: no advisories reach it, and
/// only the requests nats-server imports into every account are answered, about that account.
fn sys_closed_to_other_accounts(broker: &Launch) {
    let server = broker.config(SYS_CONFIG).start();
    let mut a = login(server.port(), "a", "pw");
    a.send(b"SUB $SYS.> 1\r\nSUB _INBOX.r 9\r\n");
    a.ping_pong();
    let other = login(server.port(), "a", "pw");
    drop(other);
    let connz = request(&mut a, "$SYS.REQ.SERVER.PING.CONNZ", "");
    let conns = connz["data"]["connections"]
        .as_array()
        .expect("connections");
    assert!(!conns.is_empty());
    // Statistics of the whole server are the system account's: no answer in A.
    a.send(b"PUB $SYS.REQ.SERVER.PING _INBOX.r 0\r\n\r\n");
    assert_no_reply_before_the_next(&mut a, "$SYS.REQ.ACCOUNT.PING.CONNZ");
    // What A's `$SYS.>` saw: its own requests only, never an advisory.
    a.send(b"UNSUB 1\r\n");
    let lines = a.ping_pong();
    let text: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        text.iter()
            .all(|l| !l.contains("$SYS.ACCOUNT") && !l.contains("$SYS.SERVER")),
        "account A saw system traffic: {text:?}"
    );
}

#[test]
fn sys_is_closed_to_other_accounts() {
    sys_closed_to_other_accounts(&Launch::ringnats());
}

#[test]
fn sys_is_closed_to_other_accounts_nats_server() {
    if let Some(nats_server) = Launch::nats_server() {
        sys_closed_to_other_accounts(&nats_server);
    }
}
