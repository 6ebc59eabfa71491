//! The identity a client certificate carries, and the names nats-server derives from it for
//! `verify_and_map` (auth.md §7).
//!
//! Cold: runs once per TLS connection, after the handshake. Invariant: `from_der` never
//! panics on any input; the subject is kept in certificate order (`subject_rdns`) and every
//! string form is derived from it, so the forms cannot disagree with each other.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

/// What a client certificate says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// Email (rfc822Name) subject alternative names, in certificate order.
    pub emails: Vec<String>,
    /// DNS subject alternative names, in certificate order.
    pub dns: Vec<String>,
    /// URI subject alternative names, in certificate order.
    pub uris: Vec<String>,
    /// The subject RDN sequence in certificate order (most general first, so `/O=Company/CN=x`
    /// is `[[("O","Company")], [("CN","x")]]`); each RDN is a list of (short attribute name,
    /// value). Known names: `CN O OU C L ST STREET POSTALCODE SERIALNUMBER DC UID
    /// emailAddress`; any other type is its dotted OID.
    pub subject_rdns: Vec<Vec<(String, String)>>,
}

/// How a configured user name, read as a DN, compares with the certificate subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnMatch {
    /// Same RDNs in the same order (go-ldap `DN.Equal`).
    Exact,
    /// Same RDNs in another order (nats-server's `DN.RDNsMatch`).
    Reordered,
    /// Not the same name, or the user name is not a DN.
    Different,
}

impl CertIdentity {
    /// Parses a DER certificate (the client's leaf).
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("error parsing client certificate: {e}"))?;
        let mut identity = CertIdentity {
            subject_rdns: subject_rdns(&cert),
            ..CertIdentity::default()
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("error parsing subject alternative names: {e}"))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::RFC822Name(s) => identity.emails.push((*s).to_string()),
                GeneralName::DNSName(s) => identity.dns.push((*s).to_string()),
                GeneralName::URI(s) => identity.uris.push((*s).to_string()),
                _ => {}
            }
        }
        Ok(identity)
    }

    /// The RFC 2253 string of the whole subject: RDNs in reverse certificate order, multi-valued
    /// RDNs joined by `+`, special characters escaped (`/O=Company/CN=alice` gives
    /// `CN=alice,O=Company`; `/CN=alice/O=Company` gives `O=Company,CN=alice`).
    pub fn subject_rfc2253(&self) -> String {
        rdns_to_string(self.subject_rdns.iter().rev().map(|rdn| rdn.as_slice()))
    }

    /// The subject as nats-server prints it for mapping (Go's
    /// `cert.Subject.ToRDNSequence().String()`): only C, ST, L, STREET, POSTALCODE, O, OU, CN
    /// and SERIALNUMBER, all values of one type in one RDN, in that fixed order, then reversed.
    /// So both `/O=Company/CN=alice` and `/CN=alice/O=Company` give `CN=alice,O=Company`, and
    /// DC parts are left out (see [`CertIdentity::subject_go_with_dcs`]).
    pub fn subject_go_string(&self) -> String {
        let mut rdns: Vec<Vec<(String, String)>> = Vec::new();
        for &short in GO_NAME_ORDER {
            let values: Vec<&String> = self.attribute_values(short).collect();
            // Go keeps only the last CommonName and SerialNumber (`FillFromRDNSequence`).
            let values = match (short, values.last()) {
                ("CN" | "SERIALNUMBER", Some(last)) => vec![*last],
                _ => values,
            };
            if !values.is_empty() {
                let rdn = values.into_iter().map(|v| (short.to_string(), v.clone()));
                rdns.push(rdn.collect());
            }
        }
        rdns_to_string(rdns.iter().rev().map(|rdn| rdn.as_slice()))
    }

    /// The DC values in certificate order (`/DC=org/DC=example/CN=carol` gives `org, example`).
    pub fn domain_components(&self) -> Vec<&str> {
        self.attribute_values("DC").map(String::as_str).collect()
    }

    /// nats-server's DC form (mapping step 5): [`CertIdentity::subject_go_string`] followed by
    /// `,DC=..` for each DC in certificate order; `None` when the subject has no DC.
    pub fn subject_go_with_dcs(&self) -> Option<String> {
        let dcs = self.domain_components();
        if dcs.is_empty() {
            return None;
        }
        let mut name = self.subject_go_string();
        for dc in dcs {
            name.push_str(",DC=");
            name.push_str(&escape_value(dc));
        }
        Some(name)
    }

    /// Compares the subject with `user_name` read as an RFC 2253 DN (mapping step 4). Attribute
    /// types compare case-insensitively, values exactly, attributes inside one RDN in any order.
    pub fn dn_match(&self, user_name: &str) -> DnMatch {
        let Some(user) = parse_dn(user_name) else {
            return DnMatch::Different;
        };
        // The certificate in DN (most specific first) order.
        let subject: Vec<&[(String, String)]> =
            self.subject_rdns.iter().rev().map(Vec::as_slice).collect();
        if user.len() != subject.len() || subject.is_empty() {
            return DnMatch::Different;
        }
        if user.iter().zip(&subject).all(|(u, s)| rdn_equal(u, s)) {
            return DnMatch::Exact;
        }
        let every_found = user.iter().all(|u| subject.iter().any(|s| rdn_equal(u, s)));
        if every_found {
            DnMatch::Reordered
        } else {
            DnMatch::Different
        }
    }

    /// The §7 search: the first configured user name that this certificate maps to, trying
    /// emails, DNS names, URIs, then a DN match (exact before reordered), then the DC form,
    /// then the plain subject string. `user_names` is in config order (nats-server walks a Go
    /// map here, so with ambiguous users its pick is random; ours is the first in the file).
    pub fn map_to_user<'u>(&self, user_names: &[&'u str]) -> Option<&'u str> {
        let literal = |candidate: &str| user_names.iter().copied().find(|u| *u == candidate);
        let sans = self.emails.iter().chain(&self.dns).chain(&self.uris);
        if let Some(user) = sans.into_iter().find_map(|san| literal(san)) {
            return Some(user);
        }
        for wanted in [DnMatch::Exact, DnMatch::Reordered] {
            let hit = user_names
                .iter()
                .copied()
                .find(|u| self.dn_match(u) == wanted);
            if hit.is_some() {
                return hit;
            }
        }
        if let Some(user) = self.subject_go_with_dcs().and_then(|name| literal(&name)) {
            return Some(user);
        }
        literal(&self.subject_go_string())
    }

    /// Values of one attribute type, in certificate order.
    fn attribute_values<'a>(&'a self, short: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.subject_rdns
            .iter()
            .flatten()
            .filter(move |(name, _)| name == short)
            .map(|(_, value)| value)
    }
}

/// Parses an RFC 2253 / RFC 4514 DN (`CN=alice,O=Company`) into RDNs in written order (most
/// specific first). `None` if it is not a DN (no `=`, empty type, bad escape). Handles `\,`
/// style and `\2C` hex escapes, `+` multi-valued RDNs, `;` separators and spaces around
/// separators; a `#hex` value is kept as written.
pub fn parse_dn(text: &str) -> Option<Vec<Vec<(String, String)>>> {
    if text.trim().is_empty() {
        return None;
    }
    let mut rdns = Vec::new();
    for rdn_text in split_unescaped(text, &[',', ';']) {
        let mut rdn = Vec::new();
        for atv in split_unescaped(rdn_text, &['+']) {
            let (kind, value) = atv.split_once('=')?;
            let kind = kind.trim();
            if kind.is_empty() || kind.contains('\\') {
                return None;
            }
            rdn.push((kind.to_string(), unescape_value(value)?));
        }
        rdns.push(rdn);
    }
    Some(rdns)
}

/// The attribute names Go's `pkix.Name` knows, in `ToRDNSequence` order.
const GO_NAME_ORDER: &[&str] = &[
    "C",
    "ST",
    "L",
    "STREET",
    "POSTALCODE",
    "O",
    "OU",
    "CN",
    "SERIALNUMBER",
];

/// Dotted OID to short name.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

fn subject_rdns(cert: &X509Certificate<'_>) -> Vec<Vec<(String, String)>> {
    cert.subject()
        .iter()
        .map(|rdn| rdn.iter().map(attribute).collect())
        .collect()
}

/// One attribute as (short name or dotted OID, value). A value that is not a plain string
/// type (BMPString, ...) is kept as `#` and the hex of its content, as RFC 2253 writes
/// unknown encodings.
fn attribute(atv: &AttributeTypeAndValue<'_>) -> (String, String) {
    let oid = atv.attr_type().to_id_string();
    let name = SHORT_NAMES
        .iter()
        .find(|(dotted, _)| *dotted == oid)
        .map_or(oid.clone(), |(_, short)| (*short).to_string());
    let value = match atv.as_str() {
        Ok(s) => s.to_string(),
        Err(_) => {
            let hex: String = atv.as_slice().iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        }
    };
    (name, value)
}

fn rdns_to_string<'a>(rdns: impl Iterator<Item = &'a [(String, String)]>) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (name, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&escape_value(value));
        }
    }
    out
}

/// RFC 2253 escaping as Go's `RDNSequence.String` does it: `, + " \ < > ;` anywhere, a space
/// at either end, `#` at the start.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (k, c) in value.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == last,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn rdn_equal(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len()
        && a.iter().all(|(kind, value)| {
            b.iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(kind) && v == value)
        })
}

/// Splits at separators not preceded by a backslash escape.
fn split_unescaped<'a>(text: &'a str, separators: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if separators.contains(&c) {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Undoes RFC 2253 escapes and trims unescaped spaces at both ends.
fn unescape_value(raw: &str) -> Option<String> {
    let raw = raw.trim_start();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    // Length of `bytes` after the last escaped or non-space character: trailing unescaped
    // spaces beyond it are dropped.
    let mut keep = 0;
    while let Some((_, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            if c != ' ' {
                keep = bytes.len();
            }
            continue;
        }
        let (_, first) = chars.next()?;
        match chars.peek().copied() {
            Some((_, second)) if first.is_ascii_hexdigit() && second.is_ascii_hexdigit() => {
                chars.next();
                let hex = [first as u8, second as u8];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(first.encode_utf8(&mut buf).as_bytes());
            }
        }
        keep = bytes.len();
    }
    bytes.truncate(keep);
    String::from_utf8(bytes).ok()
}
