use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use rustls::client::{ClientConfig, ClientConnection};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::test_pki::{TestCert, TestPki, write_test_pki};
use super::*;
use crate::config::parse_str;

/// One PKI per test process; certificate generation is the slow part.
fn pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringnats-tls-test-{}", std::process::id()));
        write_test_pki(&dir)
    })
}

fn settings(verify: bool, map: bool) -> TlsSettings {
    let p = pki();
    TlsSettings::from_files(&p.server.cert, &p.server.key, Some(&p.ca_cert), verify, map)
        .expect("settings from test PKI")
}

fn client_config(
    cert: Option<&TestCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki().ca_der.clone()))
        .expect("CA root");
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match cert {
        Some(c) => {
            let chain = vec![CertificateDer::from(c.cert_der.clone())];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone()));
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A client and a server session joined in memory.
struct Pair {
    client: ClientConnection,
    server: TlsSession,
    /// Plaintext the server decrypted.
    at_server: Vec<u8>,
    /// Plaintext the client decrypted.
    at_client: Vec<u8>,
}

#[derive(Debug)]
enum PumpError {
    Server(TlsError),
    Client(#[allow(dead_code)] rustls::Error),
}

impl Pair {
    fn new(server: &TlsSettings, client: Option<&TestCert>) -> Pair {
        Pair::with_versions(server, client, rustls::DEFAULT_VERSIONS)
    }

    fn with_versions(
        server: &TlsSettings,
        client: Option<&TestCert>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Pair {
        let name = ServerName::try_from("localhost").expect("server name");
        let mut client =
            ClientConnection::new(client_config(client, versions), name).expect("client");
        client.set_buffer_limit(None);
        Pair {
            client,
            server: server.new_session(),
            at_server: Vec::new(),
            at_client: Vec::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(&mut self) -> Result<(), PumpError> {
        for _ in 0..32 {
            let mut c2s = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut c2s).expect("client write_tls");
            }
            let mut s2c = Vec::new();
            let result = self.server.on_receive(&c2s, &mut self.at_server, &mut s2c);
            // The server's alert reaches the client too, but the server's verdict comes first.
            let at_client = self.client_receive(&s2c);
            result.map_err(PumpError::Server)?;
            at_client?;
            if c2s.is_empty() && s2c.is_empty() {
                return Ok(());
            }
        }
        panic!("pump did not settle");
    }

    fn client_receive(&mut self, mut s2c: &[u8]) -> Result<(), PumpError> {
        while !s2c.is_empty() {
            self.client.read_tls(&mut s2c).expect("client read_tls");
            let state = self
                .client
                .process_new_packets()
                .map_err(PumpError::Client)?;
            let ready = state.plaintext_bytes_to_read();
            let mut buf = vec![0; ready];
            self.client
                .reader()
                .read_exact(&mut buf)
                .expect("client read");
            self.at_client.extend_from_slice(&buf);
        }
        Ok(())
    }

    fn server_send(&mut self, data: &[u8]) {
        let mut s2c = Vec::new();
        self.server.encrypt(data, &mut s2c).expect("encrypt");
        self.client_receive(&s2c)
            .expect("client accepts server records");
    }
}

fn handshake(server: &TlsSettings, client: Option<&TestCert>) -> Result<Pair, PumpError> {
    let mut pair = Pair::new(server, client);
    pair.pump()?;
    Ok(pair)
}

#[test]
fn handshake_completes_and_data_flows_both_ways() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let mut pair = Pair::with_versions(&settings(false, false), None, versions);
        assert!(pair.server.is_handshaking());
        pair.pump().expect("handshake");
        assert!(!pair.server.is_handshaking());
        assert!(!pair.client.is_handshaking());
        assert!(pair.server.protocol_version().is_some());

        pair.client
            .writer()
            .write_all(b"CONNECT {}\r\nPING\r\n")
            .expect("client write");
        pair.pump().expect("client data");
        assert_eq!(pair.at_server, b"CONNECT {}\r\nPING\r\n");

        pair.server_send(b"PONG\r\n");
        assert_eq!(pair.at_client, b"PONG\r\n");
        assert_eq!(
            pair.server.peer_identity(),
            None,
            "no client cert was asked for"
        );
    }
}

#[test]
fn large_payloads_cross_intact() {
    let mut pair = handshake(&settings(false, false), None).expect("handshake");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    pair.client.writer().write_all(&big).expect("client write");
    pair.pump().expect("client data");
    assert_eq!(pair.at_server, big);
    pair.server_send(&big);
    assert_eq!(pair.at_client, big);
}

#[test]
fn data_written_during_handshake_is_sent_after_it() {
    let mut pair = Pair::new(&settings(false, false), None);
    let mut early = Vec::new();
    pair.server
        .encrypt(b"early", &mut early)
        .expect("encrypt while handshaking");
    assert!(
        early.is_empty(),
        "nothing can be encrypted before the handshake"
    );
    pair.pump().expect("handshake");
    assert_eq!(pair.at_client, b"early");
}

#[test]
fn ciphertext_fed_one_byte_at_a_time_gives_the_same_plaintext() {
    let mut pair = Pair::new(&settings(true, false), Some(&pki().alice_o_cn));
    pair.client
        .writer()
        .write_all(b"PUB a 1\r\nx\r\n")
        .expect("client write");
    for _ in 0..32 {
        let mut c2s = Vec::new();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut c2s).expect("write_tls");
        }
        let mut s2c = Vec::new();
        for byte in &c2s {
            let one = std::slice::from_ref(byte);
            pair.server
                .on_receive(one, &mut pair.at_server, &mut s2c)
                .expect("one byte");
        }
        pair.client_receive(&s2c).expect("client");
        if c2s.is_empty() && s2c.is_empty() {
            break;
        }
    }
    assert!(!pair.server.is_handshaking());
    assert_eq!(pair.at_server, b"PUB a 1\r\nx\r\n");
}

#[test]
fn verify_accepts_a_client_signed_by_the_ca() {
    let pair = handshake(&settings(true, false), Some(&pki().alice_o_cn)).expect("handshake");
    let identity = pair.server.peer_identity().expect("client identity");
    assert_eq!(identity.subject_rfc2253(), "CN=alice,O=Company");
}

#[test]
fn verify_accepts_every_test_client() {
    let p = pki();
    let clients = [
        &p.alice_cn_o,
        &p.bob_email,
        &p.dave_dns,
        &p.carol_dc,
        &p.erin_uri,
    ];
    for client in clients {
        let pair = handshake(&settings(true, true), Some(client));
        let pair = pair.unwrap_or_else(|e| panic!("{}: {e:?}", client.cert.display()));
        assert_eq!(pair.server.peer_identity(), Some(identity(client)));
    }
}

#[test]
fn verify_rejects_a_client_without_certificate() {
    let err = handshake(&settings(true, false), None)
        .err()
        .expect("must fail");
    assert!(
        matches!(err, PumpError::Server(TlsError::Rustls(_))),
        "{err:?}"
    );
}

#[test]
fn verify_rejects_a_client_signed_by_another_ca() {
    let err = handshake(&settings(true, false), Some(&pki().rogue_alice))
        .err()
        .expect("fail");
    let PumpError::Server(TlsError::Rustls(e)) = err else {
        panic!("server must refuse: {err:?}");
    };
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn verify_and_map_implies_verify() {
    let s = settings(false, true);
    assert!(s.verify);
    assert!(s.map);
    assert!(handshake(&s, None).is_err());
    assert!(handshake(&s, Some(&pki().bob_email)).is_ok());
}

#[test]
fn without_verify_a_client_certificate_is_not_requested() {
    let pair = handshake(&settings(false, false), Some(&pki().alice_o_cn)).expect("handshake");
    assert_eq!(pair.server.peer_identity(), None);
}

#[test]
fn close_notify_both_ways() {
    let mut pair = handshake(&settings(false, false), None).expect("handshake");
    assert!(!pair.server.is_peer_closed());
    pair.client.send_close_notify();
    pair.pump().expect("close_notify");
    assert!(pair.server.is_peer_closed());

    let mut out = Vec::new();
    pair.server.send_close_notify(&mut out);
    assert!(!out.is_empty());
    pair.client_receive(&out)
        .expect("client reads close_notify");
    let state = pair.client.process_new_packets().expect("state");
    assert!(state.peer_has_closed());
}

#[test]
fn plaintext_nats_client_is_refused_without_reply() {
    for first in [
        &b"CONNECT {\"verbose\":false}\r\n"[..],
        b"PING\r\n",
        b"GET / HTTP/1.1\r\n",
    ] {
        let mut session = settings(false, false).new_session();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let err = session.on_receive(first, &mut plain, &mut out).err();
        assert!(matches!(err, Some(TlsError::NotTls)), "{first:?}");
        assert!(out.is_empty(), "nats-server sends nothing back");
        assert!(plain.is_empty());
    }
}

#[test]
fn looks_like_plaintext_follows_go_first_record_check() {
    assert!(looks_like_plaintext(b"CONNECT {}"));
    assert!(looks_like_plaintext(b"P"));
    assert!(looks_like_plaintext(b"\r\n"));
    assert!(
        looks_like_plaintext(&[0x16, 0x10, 0x00]),
        "version >= 0x1000"
    );
    assert!(
        looks_like_plaintext(&[0x17, 0x03, 0x03]),
        "application data first"
    );
    assert!(!looks_like_plaintext(&[0x16, 0x03, 0x01, 0x00, 0x10]));
    assert!(
        !looks_like_plaintext(&[0x15, 0x03, 0x03]),
        "alert is a TLS record"
    );
    assert!(!looks_like_plaintext(&[0x16]));
    assert!(!looks_like_plaintext(b""));
}

#[test]
fn empty_input_is_not_judged() {
    let mut session = settings(false, false).new_session();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    session
        .on_receive(b"", &mut plain, &mut out)
        .expect("nothing yet");
    assert!(out.is_empty());
    let mut pair = Pair::new(&settings(false, false), None);
    pair.server = session;
    pair.pump().expect("handshake after an empty read");
}

#[test]
fn bad_record_after_handshake_start_is_an_error_with_alert() {
    let mut session = settings(false, false).new_session();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    // A handshake record whose body is not a ClientHello.
    let record = [0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00];
    let err = session.on_receive(&record, &mut plain, &mut out);
    assert!(matches!(err, Err(TlsError::Rustls(_))), "{err:?}");
    assert!(!out.is_empty(), "a fatal alert is queued");
    assert_eq!(out[0], 0x15);
    let again = session.on_receive(&record, &mut plain, &mut out);
    assert!(again.is_err(), "a failed session stays failed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                            tls_header in any::<bool>()) {
        let mut data = data;
        if tls_header && data.len() >= 3 {
            data[0] = 0x16;
            data[1] = 0x03;
            data[2] = 0x01;
        }
        let mut session = settings(true, false).new_session();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let result = session.on_receive(&data, &mut plain, &mut out);
        prop_assert!(plain.is_empty(), "no plaintext before a handshake");
        if looks_like_plaintext(&data) {
            prop_assert!(matches!(result, Err(TlsError::NotTls)));
            prop_assert!(out.is_empty(), "plaintext clients get no reply");
        }
        let _ = session.encrypt(b"x", &mut out);
        let _ = session.peer_identity();
        let _ = session.is_handshaking();
    }

    #[test]
    fn garbage_after_handshake_is_an_error(data in proptest::collection::vec(any::<u8>(), 1..512)) {
        let mut pair = handshake(&settings(false, false), None).expect("handshake");
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let mut record = vec![0x17, 0x03, 0x03];
        record.extend_from_slice(&(data.len() as u16).to_be_bytes());
        record.extend_from_slice(&data);
        let result = pair.server.on_receive(&record, &mut plain, &mut out);
        prop_assert!(result.is_err(), "forged application data must not decrypt");
        prop_assert!(plain.is_empty());
    }

    #[test]
    fn identity_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = CertIdentity::from_der(&data);
    }

    #[test]
    fn identity_parser_survives_corrupted_certificates(at in any::<usize>(), byte in any::<u8>()) {
        let mut der = pki().carol_dc.cert_der.clone();
        let at = at % der.len();
        der[at] = byte;
        let _ = CertIdentity::from_der(&der);
    }

    #[test]
    fn parse_dn_never_panics(text in ".{0,64}") {
        let _ = parse_dn(&text);
    }
}

// --- CertIdentity ---------------------------------------------------------------------------

fn identity(cert: &TestCert) -> CertIdentity {
    CertIdentity::from_der(&cert.cert_der).expect("parse test cert")
}

fn rdns(list: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
    list.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn identity_subjects_in_certificate_order() {
    let p = pki();
    let o_cn = identity(&p.alice_o_cn);
    assert_eq!(
        o_cn.subject_rdns,
        rdns(&[&[("O", "Company")], &[("CN", "alice")]])
    );
    assert_eq!(o_cn.subject_rfc2253(), "CN=alice,O=Company");
    assert_eq!(o_cn.subject_go_string(), "CN=alice,O=Company");

    let cn_o = identity(&p.alice_cn_o);
    assert_eq!(
        cn_o.subject_rdns,
        rdns(&[&[("CN", "alice")], &[("O", "Company")]])
    );
    assert_eq!(cn_o.subject_rfc2253(), "O=Company,CN=alice");
    assert_eq!(
        cn_o.subject_go_string(),
        "CN=alice,O=Company",
        "Go uses a fixed order"
    );

    let carol = identity(&p.carol_dc);
    let want = rdns(&[&[("DC", "org")], &[("DC", "example")], &[("CN", "carol")]]);
    assert_eq!(carol.subject_rdns, want);
    assert_eq!(carol.subject_rfc2253(), "CN=carol,DC=example,DC=org");
    assert_eq!(carol.subject_go_string(), "CN=carol");
    assert_eq!(carol.domain_components(), ["org", "example"]);
    assert_eq!(
        carol.subject_go_with_dcs().as_deref(),
        Some("CN=carol,DC=org,DC=example")
    );
    assert_eq!(o_cn.subject_go_with_dcs(), None);
}

#[test]
fn identity_subject_alternative_names() {
    let p = pki();
    let bob = identity(&p.bob_email);
    assert_eq!(bob.emails, ["bob@example.com"]);
    assert!(bob.dns.is_empty());
    let dave = identity(&p.dave_dns);
    assert_eq!(dave.dns, ["dave.example.com"]);
    assert!(dave.emails.is_empty());
    let erin = identity(&p.erin_uri);
    assert_eq!(erin.uris, ["nats://erin.example.com"]);
    let server = identity(&p.server);
    assert_eq!(server.dns, ["localhost"], "IP SANs are not DNS names");
}

#[test]
fn identity_from_garbage_is_an_error() {
    assert!(CertIdentity::from_der(b"").is_err());
    assert!(CertIdentity::from_der(b"not a certificate").is_err());
}

#[test]
fn map_to_user_follows_the_nats_server_search_order() {
    let p = pki();
    let users = [
        "CN=alice,O=Company",
        "bob@example.com",
        "dave.example.com",
        "CN=carol,DC=example,DC=org",
        "nats://erin.example.com",
    ];
    assert_eq!(
        identity(&p.alice_o_cn).map_to_user(&users),
        Some("CN=alice,O=Company")
    );
    assert_eq!(
        identity(&p.alice_cn_o).map_to_user(&users),
        Some("CN=alice,O=Company")
    );
    assert_eq!(
        identity(&p.bob_email).map_to_user(&users),
        Some("bob@example.com")
    );
    assert_eq!(
        identity(&p.dave_dns).map_to_user(&users),
        Some("dave.example.com")
    );
    assert_eq!(
        identity(&p.erin_uri).map_to_user(&users),
        Some("nats://erin.example.com")
    );
    assert_eq!(
        identity(&p.carol_dc).map_to_user(&users),
        Some("CN=carol,DC=example,DC=org")
    );
    // Step 5: the Go string with the DCs appended in certificate order.
    let dc_form = ["CN=carol,DC=org,DC=example"];
    assert_eq!(
        identity(&p.carol_dc).map_to_user(&dc_form),
        Some(dc_form[0])
    );
    assert_eq!(
        identity(&p.alice_o_cn).map_to_user(&["CN=alice", "alice"]),
        None
    );
    assert_eq!(
        identity(&p.bob_email).map_to_user(&["CN=bob"]),
        Some("CN=bob")
    );
}

#[test]
fn map_prefers_an_exact_dn_over_a_reordered_one() {
    let cn_o = identity(&pki().alice_cn_o);
    assert_eq!(cn_o.dn_match("O=Company,CN=alice"), DnMatch::Exact);
    assert_eq!(cn_o.dn_match("cn=alice, o=Company"), DnMatch::Reordered);
    assert_eq!(
        cn_o.dn_match("CN=alice,O=company"),
        DnMatch::Different,
        "values are exact"
    );
    assert_eq!(cn_o.dn_match("CN=alice"), DnMatch::Different);
    assert_eq!(cn_o.dn_match("alice"), DnMatch::Different);
    let users = ["CN=alice,O=Company", "O=Company,CN=alice"];
    assert_eq!(cn_o.map_to_user(&users), Some("O=Company,CN=alice"));
}

#[test]
fn parse_dn_handles_escapes_and_multi_valued_rdns() {
    let dn = parse_dn(r"CN=Smith\, John+UID=js , O=Acme\2C Inc;C=US").expect("dn");
    let want = rdns(&[
        &[("CN", "Smith, John"), ("UID", "js")],
        &[("O", "Acme, Inc")],
        &[("C", "US")],
    ]);
    assert_eq!(dn, want);
    assert_eq!(parse_dn(r"CN=\ lead\ "), Some(rdns(&[&[("CN", " lead ")]])));
    assert_eq!(parse_dn("bob@example.com"), None);
    assert_eq!(parse_dn(""), None);
    assert_eq!(parse_dn("=x"), None);
    assert_eq!(parse_dn(r"CN=x\"), None, "dangling escape");
}

#[test]
fn rfc2253_escaping_matches_go() {
    let id = CertIdentity {
        subject_rdns: rdns(&[&[("O", " A,B+C")], &[("CN", "#x; ")], &[("L", "a #b")]]),
        ..CertIdentity::default()
    };
    assert_eq!(id.subject_rfc2253(), r"L=a #b,CN=\#x\;\ ,O=\ A\,B\+C");
    // The escaped form parses back to the same subject.
    let back = parse_dn(&id.subject_rfc2253()).expect("parse back");
    assert_eq!(
        back,
        id.subject_rdns.iter().rev().cloned().collect::<Vec<_>>()
    );
}

#[test]
fn go_string_groups_values_of_one_type() {
    let id = CertIdentity {
        subject_rdns: rdns(&[
            &[("C", "US")],
            &[("OU", "a")],
            &[("CN", "first")],
            &[("OU", "b")],
            &[("CN", "last")],
            &[("UID", "u1")],
        ]),
        ..CertIdentity::default()
    };
    assert_eq!(id.subject_go_string(), "CN=last,OU=a+OU=b,C=US");
}

// --- configuration --------------------------------------------------------------------------

fn tls_value(body: &str) -> Result<TlsSettings, ConfigError> {
    let text = format!("tls {{\n{body}\n}}\n");
    let map = parse_str(&text, Path::new("test.conf")).expect("config parses");
    TlsSettings::from_value(map.get("tls").expect("tls key"))
}

fn files_body(extra: &str) -> String {
    let p = pki();
    format!(
        "cert_file: \"{}\"\nkey_file: \"{}\"\nca_file: \"{}\"\n{extra}",
        p.server.cert.display(),
        p.server.key.display(),
        p.ca_cert.display()
    )
}

#[test]
fn config_block_compiles() {
    let s = tls_value(&files_body("verify: true\ntimeout: 0.5")).expect("valid");
    assert!(s.verify);
    assert!(!s.map);
    assert_eq!(s.timeout, Duration::from_millis(500));
    assert_eq!(s.ca_file.as_deref(), Some(pki().ca_cert.as_path()));
    let s = tls_value(&files_body("timeout: \"3s\"")).expect("valid");
    assert_eq!(s.timeout, Duration::from_secs(3));
    assert!(!s.verify);
    let s = tls_value(&files_body("")).expect("valid");
    assert_eq!(s.timeout, TIMEOUT_DEFAULT);
    for alias in ["verify_and_map", "map_and_verify"] {
        let s = tls_value(&files_body(&format!("{alias}: true"))).expect("valid");
        assert!(s.map, "{alias}");
        assert!(s.verify, "{alias}");
    }
    let compiled = tls_value(&files_body("")).expect("valid");
    assert!(handshake(&compiled, None).is_ok());
}

#[test]
fn config_ignored_keys_are_accepted() {
    let body = files_body(
        "cipher_suites: [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]\ncurve_preferences: \
         [\"CurveP256\"]\npinned_certs: []\nverify_cert_and_check_known_urls: true\ninsecure: \
         true\nconnection_rate_limit: 10",
    );
    assert!(tls_value(&body).is_ok());
}

#[test]
fn config_unknown_key_is_an_error_naming_it() {
    let err = tls_value(&files_body("handshake_first: true")).expect_err("refused");
    assert!(matches!(err, ConfigError::UnknownField { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("test.conf:5"), "{text}");
    assert!(text.contains("handshake_first"), "{text}");
}

#[test]
fn config_missing_cert_file_is_fatal_and_names_file_and_line() {
    let err = tls_value("cert_file: \"/nope/cert.pem\"\nkey_file: \"/nope/key.pem\"").err();
    let text = err.expect("refused").to_string();
    assert!(text.contains("test.conf:2"), "{text}");
    assert!(text.contains("cert_file"), "{text}");
    assert!(
        text.contains("/nope/cert.pem: no such file or directory"),
        "{text}"
    );
}

#[test]
fn config_missing_keys_and_wrong_types() {
    let p = pki();
    let only_cert = format!("cert_file: \"{}\"", p.server.cert.display());
    let text = tls_value(&only_cert).expect_err("refused").to_string();
    assert!(
        text.contains("missing 'key_file' in TLS configuration"),
        "{text}"
    );
    let text = tls_value("").expect_err("refused").to_string();
    assert!(
        text.contains("missing 'cert_file' in TLS configuration"),
        "{text}"
    );
    let text = tls_value(&files_body("verify: \"yes\""))
        .expect_err("refused")
        .to_string();
    assert!(text.contains("verify"), "{text}");
    let text = tls_value(&files_body("timeout: true"))
        .expect_err("refused")
        .to_string();
    assert!(text.contains("timeout"), "{text}");
    let text = tls_value("cert_file: 5\nkey_file: \"x\"")
        .expect_err("refused")
        .to_string();
    assert!(
        text.contains("expected 'cert_file' to be filename"),
        "{text}"
    );
    let bad_ca = format!(
        "cert_file: \"{}\"\nkey_file: \"{}\"\nca_file: \"/nope/ca.pem\"",
        p.server.cert.display(),
        p.server.key.display()
    );
    let text = tls_value(&bad_ca).expect_err("refused").to_string();
    assert!(
        text.contains("test.conf:4") && text.contains("/nope/ca.pem"),
        "{text}"
    );
}

fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringnats-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

#[test]
fn pem_loading_errors_name_the_file() {
    let p = pki();
    let empty = scratch_file("empty.pem", "no pem here\n");
    let err = TlsSettings::from_files(&empty, &p.server.key, None, false, false).err();
    let text = err.expect("refused");
    assert!(text.contains(&empty.display().to_string()), "{text}");
    assert!(text.contains("failed to find any PEM data"), "{text}");

    let err = TlsSettings::from_files(&p.server.cert, &empty, None, false, false).err();
    assert!(err.expect("refused").contains(&empty.display().to_string()));

    let missing = Path::new("/nope/server-key.pem");
    let err = TlsSettings::from_files(&p.server.cert, missing, None, false, false).err();
    assert!(err.expect("refused").contains("/nope/server-key.pem"));

    let err = TlsSettings::from_files(&p.server.cert, &p.server.key, Some(&empty), true, false);
    assert!(
        err.expect_err("refused")
            .contains(&empty.display().to_string())
    );

    let broken = scratch_file("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let err = TlsSettings::from_files(&broken, &p.server.key, None, false, false).err();
    assert!(
        err.expect("refused")
            .contains(&broken.display().to_string())
    );
}

#[test]
fn key_that_does_not_match_the_certificate_is_refused() {
    let p = pki();
    let err = TlsSettings::from_files(&p.server.cert, &p.bob_email.key, None, false, false).err();
    let text = err.expect("refused");
    assert!(
        text.contains("error parsing X509 certificate/key pair"),
        "{text}"
    );
}
