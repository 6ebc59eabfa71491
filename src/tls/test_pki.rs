//! Test support: a throw-away PKI (CA, server and client certificates) written as PEM files.
//!
//! Cold, test-only: compiled for unit tests and, behind the `test-pki` cargo feature, for
//! integration tests. Invariant: every certificate is made fresh with `rcgen` at test time;
//! nothing secret is checked in. Panics on I/O failure, which is what a test wants.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SigningKey,
};

/// A client certificate on disk and in memory.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// PEM certificate file.
    pub cert: PathBuf,
    /// PEM (PKCS#8) private key file.
    pub key: PathBuf,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

/// Everything [`write_test_pki`] made.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA that signed the server and the client certificates (`ca.pem`).
    pub ca_cert: PathBuf,
    pub ca_der: Vec<u8>,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server: TestCert,
    /// Subject `/O=Company/CN=alice`.
    pub alice_o_cn: TestCert,
    /// Subject `/CN=alice/O=Company`.
    pub alice_cn_o: TestCert,
    /// Email SAN `bob@example.com`, subject `/CN=bob`.
    pub bob_email: TestCert,
    /// DNS SAN `dave.example.com`, subject `/CN=dave`.
    pub dave_dns: TestCert,
    /// Subject `/DC=org/DC=example/CN=carol`.
    pub carol_dc: TestCert,
    /// URI SAN `nats://erin.example.com`, subject `/CN=erin`.
    pub erin_uri: TestCert,
    /// Subject `/O=Company/CN=alice` but signed by another CA (`other-ca.pem`): must be refused.
    pub rogue_alice: TestCert,
    /// The other CA's certificate.
    pub other_ca_cert: PathBuf,
}

/// Writes a fresh PKI into `dir` (created if missing) and returns where everything is.
pub fn write_test_pki(dir: &Path) -> TestPki {
    fs::create_dir_all(dir).expect("create test PKI directory");
    let (ca_params, ca_key) = ca("Test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let ca_der = ca_cert.der().to_vec();
    let ca_path = dir.join("ca.pem");
    fs::write(&ca_path, ca_cert.pem()).expect("write ca.pem");
    let issuer = Issuer::new(ca_params, ca_key);

    let (other_params, other_key) = ca("Other CA");
    let other_cert = other_params
        .self_signed(&other_key)
        .expect("self-sign other CA");
    let other_ca_cert = dir.join("other-ca.pem");
    fs::write(&other_ca_cert, other_cert.pem()).expect("write other-ca.pem");
    let other_issuer = Issuer::new(other_params, other_key);

    let server_sans = vec![
        SanType::DnsName("localhost".try_into().expect("ia5")),
        SanType::IpAddress([127, 0, 0, 1].into()),
    ];
    let server = leaf(
        dir,
        "server",
        &[(DnType::CommonName, "localhost")],
        server_sans,
        &issuer,
    );
    let alice = [
        (DnType::OrganizationName, "Company"),
        (DnType::CommonName, "alice"),
    ];
    let alice_rev = [
        (DnType::CommonName, "alice"),
        (DnType::OrganizationName, "Company"),
    ];
    TestPki {
        ca_cert: ca_path,
        ca_der,
        server,
        alice_o_cn: leaf(dir, "alice-o-cn", &alice, vec![], &issuer),
        alice_cn_o: leaf(dir, "alice-cn-o", &alice_rev, vec![], &issuer),
        bob_email: leaf(
            dir,
            "bob",
            &[(DnType::CommonName, "bob")],
            san_email(),
            &issuer,
        ),
        dave_dns: leaf(
            dir,
            "dave",
            &[(DnType::CommonName, "dave")],
            san_dns(),
            &issuer,
        ),
        carol_dc: carol(dir, &issuer),
        erin_uri: leaf(
            dir,
            "erin",
            &[(DnType::CommonName, "erin")],
            san_uri(),
            &issuer,
        ),
        rogue_alice: leaf(dir, "rogue-alice", &alice, vec![], &other_issuer),
        other_ca_cert,
    }
}

const DC_OID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];
/// Same encoded length as `DC_OID`, last arc differs by one; patched to DC after signing.
const PLACEHOLDER_OID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 26];

fn ca(common_name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("CA key"))
}

fn leaf_params(subject: &[(DnType, &str)], sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    params.distinguished_name = DistinguishedName::new();
    for (kind, value) in subject {
        params.distinguished_name.push(kind.clone(), *value);
    }
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

fn leaf(
    dir: &Path,
    name: &str,
    subject: &[(DnType, &str)],
    sans: Vec<SanType>,
    issuer: &Issuer<'_, KeyPair>,
) -> TestCert {
    let key = KeyPair::generate().expect("leaf key");
    let params = leaf_params(subject, sans);
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    save(dir, name, cert.der().to_vec(), &key)
}

/// `/DC=org/DC=example/CN=carol`. rcgen keeps one value per attribute type, so the second DC
/// is written under a placeholder OID of the same length, patched in the DER, and the
/// certificate is signed again with the CA key.
fn carol(dir: &Path, issuer: &Issuer<'_, KeyPair>) -> TestCert {
    let subject = [
        (DnType::CustomDnType(DC_OID.to_vec()), "org"),
        (DnType::CustomDnType(PLACEHOLDER_OID.to_vec()), "example"),
        (DnType::CommonName, "carol"),
    ];
    let key = KeyPair::generate().expect("carol key");
    let cert = leaf_params(&subject, vec![])
        .signed_by(&key, issuer)
        .expect("sign carol");
    let der = resign_with_patched_oid(cert.der(), issuer.key());
    save(dir, "carol-dc", der, &key)
}

fn save(dir: &Path, name: &str, cert_der: Vec<u8>, key: &KeyPair) -> TestCert {
    let cert = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    fs::write(&cert, pem("CERTIFICATE", &cert_der)).expect("write cert");
    fs::write(&key_path, key.serialize_pem()).expect("write key");
    TestCert {
        cert,
        key: key_path,
        cert_der,
        key_der: key.serialize_der(),
    }
}

fn san_email() -> Vec<SanType> {
    vec![SanType::Rfc822Name(
        "bob@example.com".try_into().expect("ia5"),
    )]
}

fn san_dns() -> Vec<SanType> {
    vec![SanType::DnsName(
        "dave.example.com".try_into().expect("ia5"),
    )]
}

fn san_uri() -> Vec<SanType> {
    vec![SanType::URI(
        "nats://erin.example.com".try_into().expect("ia5"),
    )]
}

/// Replaces the placeholder OID with DC in the TBS part and signs it again.
fn resign_with_patched_oid(der: &[u8], ca_key: &KeyPair) -> Vec<u8> {
    let (outer_header, outer_len) = tlv(der).expect("certificate SEQUENCE");
    let body = &der[outer_header..outer_header + outer_len];
    let (tbs_header, tbs_len) = tlv(body).expect("TBS");
    let mut tbs = body[..tbs_header + tbs_len].to_vec();
    let rest = &body[tbs_header + tbs_len..];
    let (alg_header, alg_len) = tlv(rest).expect("signature algorithm");
    let alg = &rest[..alg_header + alg_len];

    let placeholder = encoded_oid(PLACEHOLDER_OID);
    let at = tbs
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_slice())
        .expect("placeholder OID in TBS");
    let last = at + placeholder.len() - 1;
    tbs[last] = 25;

    let signature = ca_key.sign(&tbs).expect("sign TBS");
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(&signature);
    let mut content = tbs;
    content.extend_from_slice(alg);
    content.extend(der_element(0x03, &bit_string));
    der_element(0x30, &content)
}

/// (header length, content length) of the DER element at the start of `input`.
fn tlv(input: &[u8]) -> Option<(usize, usize)> {
    let first = *input.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    let len = input
        .get(2..2 + count)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((2 + count, len))
}

fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The DER content bytes of an OID (base-128 arcs, first two combined).
fn encoded_oid(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push_arc = |mut arc: u64| {
        let mut chunk = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            chunk.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        chunk.reverse();
        out.extend(chunk);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push_arc(*arc);
    }
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
