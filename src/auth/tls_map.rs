//! TLS certificate mapping (`tls { verify_and_map: true }`): which configured user name a client
//! certificate stands for.
//!
//! Cold: once per CONNECT of a TLS client. Pure: works on a [`CertIdentity`] the TLS layer
//! extracted, never on certificates. Invariant: the search order is nats-server's
//! (`checkClientTLSCertSubject`): email SANs, DNS SANs, URI SANs, the subject compared as a DN
//! (exact RDN order, then any order), the subject string with its `DC` parts appended, then the
//! subject string. The first name that exists wins.

use crate::auth::CertIdentity;

/// One RDN: its attributes as (type, value).
type Rdn = Vec<(String, String)>;

/// The user name `cert` maps to, if any. `exists` says whether a user name is configured (and
/// allowed to connect).
pub fn map_certificate<'a>(
    cert: &CertIdentity,
    user_names: impl Iterator<Item = &'a str> + Clone,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    let sans = cert.emails.iter().chain(&cert.dns).chain(&cert.uris);
    if let Some(hit) = sans.into_iter().find(|n| exists(n)) {
        return Some(hit.clone());
    }
    if let Some(hit) = match_dn(&cert.subject_rdns, user_names) {
        return Some(hit.to_string());
    }
    let (plain, dcs) = split_dc(&cert.subject_rdns);
    let plain_string = rfc2253(&plain);
    if !dcs.is_empty() {
        let parts: Vec<String> = dcs.iter().map(|v| format!("DC={}", escape(v))).collect();
        let with_dc = if plain_string.is_empty() {
            parts.join(",")
        } else {
            format!("{plain_string},{}", parts.join(","))
        };
        if exists(&with_dc) {
            return Some(with_dc);
        }
    }
    exists(&plain_string).then_some(plain_string)
}

/// Step 4: the configured name equal to the certificate subject as a DN, exact RDN order
/// first (nats-server `ldap.DN.Equal`), then any order (`RDNsMatch`).
fn match_dn<'a>(subject: &[Rdn], names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    if subject.is_empty() {
        return None;
    }
    // RFC 2253 lists the last RDN of the certificate's sequence first.
    let cert_dn: Vec<&Rdn> = subject.iter().rev().collect();
    let parsed = names.filter_map(|n| parse_dn(n).map(|dn| (n, dn)));
    let parsed: Vec<(&str, Vec<Rdn>)> = parsed.collect();
    let exact = parsed.iter().find(|(_, dn)| {
        dn.len() == cert_dn.len() && dn.iter().zip(&cert_dn).all(|(a, b)| rdn_eq(a, b))
    });
    if let Some((name, _)) = exact {
        return Some(name);
    }
    parsed
        .iter()
        .find(|(_, dn)| {
            dn.len() == cert_dn.len() && dn.iter().all(|a| cert_dn.iter().any(|b| rdn_eq(a, b)))
        })
        .map(|(name, _)| *name)
}

/// Attribute types compare case-insensitively, values exactly (go-ldap `Equal`).
fn rdn_eq(a: &Rdn, b: &Rdn) -> bool {
    a.len() == b.len()
        && a.iter().all(|(t, v)| {
            b.iter()
                .any(|(t2, v2)| t.eq_ignore_ascii_case(t2) && v == v2)
        })
}

/// The subject without `DC` RDNs, and the `DC` values in certificate order.
fn split_dc(subject: &[Rdn]) -> (Vec<Rdn>, Vec<String>) {
    let mut plain = Vec::new();
    let mut dcs = Vec::new();
    for rdn in subject {
        let (dc, rest): (Vec<_>, Vec<_>) = rdn
            .iter()
            .cloned()
            .partition(|(t, _)| t.eq_ignore_ascii_case("DC"));
        dcs.extend(dc.into_iter().map(|(_, v)| v));
        if !rest.is_empty() {
            plain.push(rest);
        }
    }
    (plain, dcs)
}

/// RFC 2253 string of an RDN sequence given in certificate order (Go `RDNSequence.String`).
pub fn rfc2253(subject: &[Rdn]) -> String {
    let rdns: Vec<String> = subject
        .iter()
        .rev()
        .map(|rdn| {
            let attrs: Vec<String> = rdn
                .iter()
                .map(|(t, v)| format!("{t}={}", escape(v)))
                .collect();
            attrs.join("+")
        })
        .collect();
    rdns.join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || edge_space
            || (i == 0 && c == '#')
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses an RFC 2253 DN (`CN=alice,O=Company`, `+` for multi-valued RDNs, `\` escapes,
/// quoted values). `None` if it is not a DN.
pub fn parse_dn(text: &str) -> Option<Vec<Rdn>> {
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut attr_type = String::new();
        let mut has_equals = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_equals = true;
                break;
            }
            attr_type.push(c);
        }
        let attr_type = attr_type.trim().to_string();
        if !has_equals || attr_type.is_empty() || attr_type.contains([',', '+', ';']) {
            return None;
        }
        let (value, end) = read_value(&mut chars)?;
        rdn.push((attr_type, value));
        match end {
            Some('+') => {}
            Some(_) => rdns.push(std::mem::take(&mut rdn)),
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
        }
    }
}

/// Reads one attribute value up to an unescaped `,`, `;` or `+`; returns it and the separator.
fn read_value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Option<(String, Option<char>)> {
    let mut value = String::new();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            '"' => quoted = !quoted,
            ',' | ';' | '+' if !quoted => return Some((value.trim().to_string(), Some(c))),
            _ => value.push(c),
        }
    }
    if quoted {
        return None;
    }
    Some((value.trim().to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdns(pairs: &[(&str, &str)]) -> Vec<Rdn> {
        pairs
            .iter()
            .map(|(t, v)| vec![(t.to_string(), v.to_string())])
            .collect()
    }

    #[test]
    fn parses_dns() {
        let dn = parse_dn("CN=alice,O=Company").unwrap();
        assert_eq!(dn, rdns(&[("CN", "alice"), ("O", "Company")]));
        let dn = parse_dn("CN=a\\,b+UID=7, O=\"x,y\"").unwrap();
        assert_eq!(dn[0].len(), 2);
        assert_eq!(dn[0][0].1, "a,b");
        assert_eq!(dn[1][0].1, "x,y");
        assert!(parse_dn("alice").is_none());
        assert!(parse_dn("bob@example.com").is_none());
        assert!(parse_dn("").is_none());
    }

    #[test]
    fn rfc2253_reverses_certificate_order() {
        let subject = rdns(&[("O", "Company"), ("CN", "alice")]);
        assert_eq!(rfc2253(&subject), "CN=alice,O=Company");
        assert_eq!(rfc2253(&rdns(&[("CN", "a,b")])), "CN=a\\,b");
    }
}
