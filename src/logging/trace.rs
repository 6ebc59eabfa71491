//! The `-V` protocol trace in nats-server's shape: `<<- [OP args]` for what a client sent,
//! `<<- MSG_PAYLOAD: ["…"]` for a payload, `->> [MSG …]`, `->> [OK]`, `->> [PONG]`,
//! `->> [-ERR …]` for what it was sent, `<-> [DELSUB sid]` when a subscription goes.
//!
//! Cold unless `-V` is on: callers check the shard's trace flag first, so no string is built
//! when it is off. Invariants: client text goes through [`escaped`] or [`quoted`] (one line
//! per trace entry, whatever the client sent); a CONNECT is traced with its secrets replaced by
//! `[REDACTED]` (nats-server `removeSecretsFromTrace`), and a CONNECT that is not a JSON object
//! is not shown at all, since its secrets could not be found in it.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};

use crate::conn::Conn;
use crate::logging::client::ClientLabel;
use crate::logging::{escaped, quoted};
use crate::protocol::Op;

/// What replaces a secret in a traced CONNECT (nats-server's word).
pub const REDACTED: &str = "[REDACTED]";

/// Traces one op received from `conn` (and, for PUB and HPUB, its payload).
pub fn op_in(conn: &Conn, op: &Op<'_>) {
    let label = ClientLabel::of(conn);
    match op {
        Op::Connect { json } => {
            tracing::trace!("{label} - <<- [CONNECT {}]", RedactedConnect(json));
        }
        Op::Pub {
            subject,
            reply,
            payload,
        } => {
            tracing::trace!(
                "{label} - <<- [PUB {}{} {}]",
                escaped(subject),
                Blank(reply),
                payload.len()
            );
            payload_in(&label, &[], payload);
        }
        Op::Hpub {
            subject,
            reply,
            headers,
            payload,
        } => {
            tracing::trace!(
                "{label} - <<- [HPUB {}{} {} {}]",
                escaped(subject),
                Blank(reply),
                headers.len(),
                headers.len() + payload.len()
            );
            payload_in(&label, headers, payload);
        }
        Op::Sub {
            subject,
            queue,
            sid,
        } => tracing::trace!(
            "{label} - <<- [SUB {}{} {}]",
            escaped(subject),
            Blank(queue),
            escaped(sid)
        ),
        Op::Unsub {
            sid,
            max: Some(max),
        } => {
            tracing::trace!("{label} - <<- [UNSUB {} {max}]", escaped(sid));
        }
        Op::Unsub { sid, max: None } => tracing::trace!("{label} - <<- [UNSUB {}]", escaped(sid)),
        Op::Ping => tracing::trace!("{label} - <<- [PING]"),
        Op::Pong => tracing::trace!("{label} - <<- [PONG]"),
        Op::Info { json } => tracing::trace!("{label} - <<- [INFO {}]", escaped(json)),
        Op::Ok => tracing::trace!("{label} - <<- [OK]"),
        Op::Err { text } => tracing::trace!("{label} - <<- [-ERR {}]", escaped(text)),
    }
}

/// `<<- MSG_PAYLOAD: ["…"]`: headers and payload as one `%q`-quoted string (nats-server
/// `traceMsg`, which shows the whole message when `max_traced_msg_len` is unset).
fn payload_in(label: &ClientLabel<'_>, headers: &[u8], payload: &[u8]) {
    if headers.is_empty() {
        tracing::trace!("{label} - <<- MSG_PAYLOAD: [{}]", quoted(payload));
    } else {
        let mut whole = Vec::with_capacity(headers.len() + payload.len());
        whole.extend_from_slice(headers);
        whole.extend_from_slice(payload);
        tracing::trace!("{label} - <<- MSG_PAYLOAD: [{}]", quoted(&whole));
    }
}

/// `->> [MSG subject sid [reply] size]`, or `HMSG … hdr_len total` when `headers_len` is set.
pub fn msg_out(
    conn: &Conn,
    subject: &[u8],
    sid: &[u8],
    reply: &[u8],
    headers_len: Option<usize>,
    total_len: usize,
) {
    let label = ClientLabel::of(conn);
    let (subject, sid, reply) = (escaped(subject), escaped(sid), Blank(reply));
    match headers_len {
        Some(h) => tracing::trace!("{label} - ->> [HMSG {subject} {sid}{reply} {h} {total_len}]"),
        None => tracing::trace!("{label} - ->> [MSG {subject} {sid}{reply} {total_len}]"),
    }
}

/// `->> [OK]`, `->> [PONG]`, `->> [PING]`, `->> [-ERR …]`: a fixed protocol line sent to
/// `conn` (`line` with or without its `+` and CRLF).
pub fn line_out(conn: &Conn, line: &[u8]) {
    let op = line.strip_prefix(b"+").unwrap_or(line);
    let op = op.strip_suffix(b"\r\n").unwrap_or(op);
    let err_text = op
        .strip_prefix(b"-ERR '")
        .and_then(|t| t.strip_suffix(b"'"));
    match err_text {
        Some(text) => err_out_bytes(conn, text),
        None => tracing::trace!("{} - ->> [{}]", ClientLabel::of(conn), escaped(op)),
    }
}

/// `->> [-ERR text]`: nats-server (`sendErr`) traces the text without the quotes it sends.
pub fn err_out(conn: &Conn, text: &str) {
    err_out_bytes(conn, text.as_bytes());
}

fn err_out_bytes(conn: &Conn, text: &[u8]) {
    tracing::trace!("{} - ->> [-ERR {}]", ClientLabel::of(conn), escaped(text));
}

/// `<-> [DELSUB sid]`: a subscription removed (UNSUB, its max reached, or its connection gone).
pub fn delsub(conn: &Conn, sid: &[u8]) {
    tracing::trace!("{} - <-> [DELSUB {}]", ClientLabel::of(conn), escaped(sid));
}

/// An optional argument with its leading blank, or nothing.
struct Blank<'a>(&'a [u8]);

impl fmt::Display for Blank<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " {}", escaped(self.0))
        }
    }
}

/// A CONNECT's JSON with its secrets redacted: the fields in the client's order, written back
/// compactly, every secret's value replaced by `"[REDACTED]"` wherever it is nested.
struct RedactedConnect<'a>(&'a [u8]);

impl fmt::Display for RedactedConnect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut de = serde_json::Deserializer::from_slice(self.0);
        let Ok(fields) = de.deserialize_map(FieldsVisitor) else {
            return write!(f, "<not a JSON object, {} bytes, not shown>", self.0.len());
        };
        f.write_str("{")?;
        for (i, (key, mut value)) in fields.into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if is_secret_key(&key) {
                value = serde_json::Value::String(REDACTED.to_owned());
            } else {
                redact_nested(&mut value);
            }
            // serde_json escapes control characters in strings; `escaped` covers the rest
            // (U+2028 and friends, which JSON allows raw).
            let key = serde_json::to_string(&key).map_err(|_| fmt::Error)?;
            let value = serde_json::to_string(&value).map_err(|_| fmt::Error)?;
            write!(
                f,
                "{}:{}",
                escaped(key.as_bytes()),
                escaped(value.as_bytes())
            )?;
        }
        f.write_str("}")
    }
}

/// CONNECT fields whose values are secrets or proofs: `pass` and `auth_token` (and any field
/// starting so, as nats-server's pattern), the nonce signature `sig`, and the user `jwt`.
fn is_secret_key(key: &str) -> bool {
    key.starts_with("pass") || key.starts_with("auth_token") || key == "sig" || key == "jwt"
}

fn redact_nested(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_nested(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_nested),
        _ => {}
    }
}

/// Reads a JSON object as its (key, value) pairs in the order sent (`serde_json::Map` would
/// sort them).
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, serde_json::Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
            fields.push(entry);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(json: &str) -> String {
        RedactedConnect(json.as_bytes()).to_string()
    }

    #[test]
    fn connect_secrets_are_redacted_in_the_client_order() {
        let json = r#"{"verbose":false,"user":"a","pass":"p1","password":"p2","auth_token":"t",
            "sig":"s","jwt":"j","nkey":"UABC","name":"n","x":{"pass":"deep"}}"#;
        let out = shown(json);
        assert_eq!(
            out,
            r#"{"verbose":false,"user":"a","pass":"[REDACTED]","password":"[REDACTED]","auth_token":"[REDACTED]","sig":"[REDACTED]","jwt":"[REDACTED]","nkey":"UABC","name":"n","x":{"pass":"[REDACTED]"}}"#
        );
        for secret in ["p1", "p2", "\"t\"", "\"s\"", "\"j\"", "deep"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
    }

    #[test]
    fn a_connect_that_is_not_an_object_is_not_shown() {
        let out = shown(r#"{"pass":"hunter2""#);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!shown(r#"["pass","hunter2"]"#).contains("hunter2"));
    }

    #[test]
    fn connect_text_stays_on_one_line() {
        let out = shown("{\"name\":\"a\\nb\u{2028}c\"}");
        assert_eq!(out, r#"{"name":"a\nb\u2028c"}"#);
    }
}
