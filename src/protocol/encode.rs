//! Server-to-client protocol lines, appended to a connection's out buffer.
//!
//! Hot: `msg` and `hmsg` run once per delivered message. Each function reserves the exact length
//! once and appends; besides growing `out` it does not allocate (numbers go through `itoa`'s
//! stack buffer). Invariant: every function appends one complete protocol line (plus payload),
//! byte-identical to what nats-server 2.9.10 sends.

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`, sent only to `verbose` clients.
pub const OK: &[u8] = b"+OK\r\n";
/// Header block of the 503 status message delivered for no responders (16 bytes).
pub const NO_RESPONDERS_HEADER: &[u8] = b"NATS/1.0 503\r\n\r\n";

const CRLF: &[u8] = b"\r\n";

/// `MSG <subject> <sid> [reply] <#bytes>\r\n<payload>\r\n`; `reply` empty means none.
pub fn msg(out: &mut Vec<u8>, subject: &[u8], sid: &[u8], reply: &[u8], payload: &[u8]) {
    let mut len_buf = itoa::Buffer::new();
    let len = len_buf.format(payload.len()).as_bytes();
    out.reserve(control_len(b"MSG ", subject, sid, reply) + len.len() + payload.len() + 4);
    put_prefix(out, b"MSG ", subject, sid, reply);
    out.extend_from_slice(len);
    out.extend_from_slice(CRLF);
    out.extend_from_slice(payload);
    out.extend_from_slice(CRLF);
}

/// `HMSG <subject> <sid> [reply] <#hdr> <#total>\r\n<headers><payload>\r\n`; `reply` empty
/// means none.
pub fn hmsg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: &[u8],
    headers: &[u8],
    payload: &[u8],
) {
    let mut hdr_buf = itoa::Buffer::new();
    let mut total_buf = itoa::Buffer::new();
    let hdr = hdr_buf.format(headers.len()).as_bytes();
    let total = total_buf.format(headers.len() + payload.len()).as_bytes();
    let body_len = headers.len() + payload.len();
    out.reserve(
        control_len(b"HMSG ", subject, sid, reply) + hdr.len() + total.len() + body_len + 5,
    );
    put_prefix(out, b"HMSG ", subject, sid, reply);
    out.extend_from_slice(hdr);
    out.push(b' ');
    out.extend_from_slice(total);
    out.extend_from_slice(CRLF);
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(CRLF);
}

/// `-ERR '<text>'\r\n`.
pub fn err(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 9);
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

/// `INFO <json> \r\n`: nats-server 2.9.10 joins the three parts with spaces, so there is a space
/// before the CRLF.
pub fn info(out: &mut Vec<u8>, json: &[u8]) {
    out.reserve(json.len() + 8);
    out.extend_from_slice(b"INFO ");
    out.extend_from_slice(json);
    out.extend_from_slice(b" \r\n");
}

/// Bytes of `<op><subject> <sid> [reply ]`.
fn control_len(op: &[u8], subject: &[u8], sid: &[u8], reply: &[u8]) -> usize {
    let reply_len = if reply.is_empty() { 0 } else { reply.len() + 1 };
    op.len() + subject.len() + 1 + sid.len() + 1 + reply_len
}

fn put_prefix(out: &mut Vec<u8>, op: &[u8], subject: &[u8], sid: &[u8], reply: &[u8]) {
    out.extend_from_slice(op);
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if !reply.is_empty() {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
}

/// `bytes` quoted as Go's `%q` (`strconv.Quote`) writes it, which nats-server uses for the
/// subjects in its permission errors: printable text as is, `"` and `\\` escaped, control
/// characters as `\n`, `\t`, `\xNN`..., and bytes that are not UTF-8 as `\xNN`.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote(b"foo.bar"), r#""foo.bar""#);
        assert_eq!(go_quote(b"a\"b"), r#""a\"b""#);
        assert_eq!(go_quote(b"a\\b"), r#""a\\b""#);
        assert_eq!(go_quote(b"caf\xc3"), r#""caf\xc3""#);
        assert_eq!(go_quote(b"\x01\x7f"), r#""\x01\x7f""#);
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
        assert_eq!(go_quote(b"\t\n"), r#""\t\n""#);
    }

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn msg_without_reply() {
        let out = encoded(|o| msg(o, b"foo", b"1", b"", b"hello"));
        assert_eq!(out, b"MSG foo 1 5\r\nhello\r\n");
    }

    #[test]
    fn msg_with_reply() {
        let out = encoded(|o| msg(o, b"bar", b"2", b"rep.x", b"hi"));
        assert_eq!(out, b"MSG bar 2 rep.x 2\r\nhi\r\n");
    }

    #[test]
    fn msg_empty_payload() {
        assert_eq!(
            encoded(|o| msg(o, b"a", b"9", b"", b"")),
            b"MSG a 9 0\r\n\r\n"
        );
    }

    #[test]
    fn msg_appends_after_existing_bytes() {
        let mut out = b"PONG\r\n".to_vec();
        msg(&mut out, b"a", b"1", b"", b"x");
        assert_eq!(out, b"PONG\r\nMSG a 1 1\r\nx\r\n");
    }

    /// An empty `Vec` grows to exactly what `reserve` asks (for 8 bytes or more), so capacity ==
    /// length proves the reservation was exact: too small would have doubled, too big shows.
    #[test]
    fn msg_reserves_exactly() {
        let out = encoded(|o| msg(o, b"subject.long", b"12345", b"_INBOX.abc", &[7u8; 1000]));
        assert_eq!(out.capacity(), out.len());
        let out = encoded(|o| msg(o, b"s", b"1", b"", b"x"));
        assert_eq!(out.capacity(), out.len());
    }

    #[test]
    fn hmsg_with_reply() {
        let headers = b"NATS/1.0\r\nAb: defg\r\n\r\n";
        assert_eq!(headers.len(), 22);
        let out = encoded(|o| hmsg(o, b"h", b"7", b"r", headers, b"hi"));
        assert_eq!(
            out,
            b"HMSG h 7 r 22 24\r\nNATS/1.0\r\nAb: defg\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn hmsg_no_responders_vector() {
        let out = encoded(|o| hmsg(o, b"inbox", b"1", b"", NO_RESPONDERS_HEADER, b""));
        assert_eq!(out, b"HMSG inbox 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
    }

    #[test]
    fn hmsg_reserves_exactly() {
        let out = encoded(|o| hmsg(o, b"h", b"7", b"r", b"NATS/1.0\r\nAb: defg\r\n\r\n", b"hi"));
        assert_eq!(out.capacity(), out.len());
        let out = encoded(|o| hmsg(o, b"h", b"7", b"", NO_RESPONDERS_HEADER, b""));
        assert_eq!(out.capacity(), out.len());
    }

    #[test]
    fn err_line_quotes_text() {
        let out = encoded(|o| err(o, "Permissions Violation for Publish to \"foo\""));
        assert_eq!(
            out,
            b"-ERR 'Permissions Violation for Publish to \"foo\"'\r\n"
        );
        assert_eq!(
            encoded(|o| err(o, "Unknown Protocol Operation")),
            b"-ERR 'Unknown Protocol Operation'\r\n"
        );
    }

    #[test]
    fn info_has_trailing_space() {
        let out = encoded(|o| info(o, br#"{"proto":1}"#));
        assert_eq!(out, b"INFO {\"proto\":1} \r\n");
        assert_eq!(out.capacity(), out.len());
    }

    #[test]
    fn constants() {
        assert_eq!(PING, b"PING\r\n");
        assert_eq!(PONG, b"PONG\r\n");
        assert_eq!(OK, b"+OK\r\n");
        assert_eq!(NO_RESPONDERS_HEADER.len(), 16);
    }
}
