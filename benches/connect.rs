//! The CONNECT path of a `.creds` client, in the pieces a shard runs per connection: decoding the
//! CONNECT JSON nats.go sends (`connect/parse/creds`), and the operator-mode check of a user JWT
//! already in the verified cache (`connect/verify/jwt_cached`: the nonce signature plus the
//! time, revocation and limit checks; spec jwt.md §6).
//!
//! Fixtures are the spec vectors (`src/auth/jwt/testdata/vectors.json`): operator, system
//! account, account A and its user u1, whose seed signs the nonce.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use nkeys::KeyPair;
use ringnats::auth::{AuthConfig, Verdict};
use ringnats::protocol::ConnectOptions;

const NONCE: &str = "XHJzqXOFQGGxAnI";

fn vector(name: &str) -> String {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../src/auth/jwt/testdata/vectors.json"))
            .expect("vectors.json parses");
    vectors[name].as_str().expect("a string vector").to_string()
}

/// What nats.go 1.22 sends for a `.creds` login (field order and values as it writes them).
fn creds_connect_json() -> Vec<u8> {
    let key = KeyPair::from_seed(&vector("u1_seed")).expect("u1 seed");
    let sig = URL_SAFE_NO_PAD.encode(key.sign(NONCE.as_bytes()).expect("sign"));
    format!(
        r#"{{"verbose":false,"pedantic":false,"jwt":"{}","sig":"{sig}","tls_required":false,"name":"natsbench-connect","lang":"go","version":"1.22.1","protocol":1,"echo":true,"headers":true,"no_responders":true}}"#,
        vector("u1_jwt")
    )
    .into_bytes()
}

fn operator_auth() -> AuthConfig {
    let text = format!(
        "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
        vector("op_jwt"),
        vector("sys_pub"),
        vector("sys_pub"),
        vector("sys_jwt"),
        vector("acc_pub"),
        vector("acc_jwt"),
    );
    let opts = ringnats::config::load_str(&text, Path::new("bench.conf")).expect("config loads");
    AuthConfig::from_options(&opts).expect("operator mode loads")
}

fn bench_connect(c: &mut Criterion) {
    let json = creds_connect_json();
    let mut group = c.benchmark_group("connect");
    group.bench_function("parse/creds", |b| {
        b.iter(|| black_box(ConnectOptions::parse(black_box(&json)).expect("valid CONNECT")));
    });
    let auth = operator_auth();
    let connect = ConnectOptions::parse(&json).expect("valid CONNECT");
    let peer = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let verify = || auth.verify_from(&connect, Some(NONCE), None, peer, SystemTime::now());
    assert!(
        matches!(verify(), Verdict::Done(Ok(_))),
        "the vector user logs in"
    );
    group.bench_function("verify/jwt_cached", |b| {
        b.iter(|| black_box(verify()));
    });
    group.finish();
}

criterion_group!(benches, bench_connect);
criterion_main!(benches);
