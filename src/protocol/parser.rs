//! Client-side protocol parser: the bytes a client sends, turned into [`Op`]s.
//!
//! Hot: `Parser::parse` runs once per op. It does not allocate and does not copy: every `Op`
//! borrows the caller's read buffer. Line ends are found with `memchr`, a partially received
//! control line is never searched twice (the parser remembers how far it looked), and once a
//! `PUB`/`HPUB` line is parsed the parser remembers it as offsets into the buffer and only waits
//! until `len` payload bytes are there, without scanning them.
//!
//! Invariant (split invariance): feeding a byte stream in any chunking, where the caller keeps the
//! unconsumed bytes and appends new ones, gives exactly the same ops and the same error as feeding
//! it whole. `protocol::fuzz_parse` checks this.
//!
//! The accepted grammar and every error follow nats-server 2.9.10 (`server/parser.go`,
//! `processPub`, `processHeaderPub`, `parseSub`, `processUnsub`, `parseSize`) for CLIENT
//! connections. Behaviour checked against a live nats-server 2.9.10 over a raw socket is marked
//! `[live]` below:
//!
//! - Op names are ASCII case-insensitive; a wrong byte in an op name is
//!   `-ERR 'Unknown Protocol Operation'` as soon as that byte arrives (`PUBX`, `PIN\r\n`, a
//!   leading blank, an empty line, `MSG`/`HMSG` from a client) [live].
//! - `PUB`, `HPUB`, `SUB`, `UNSUB` and `-ERR` need a blank (space or tab) right after the name,
//!   else Unknown Protocol Operation (`PUB\r\n`) [live]. `CONNECT` and `INFO` do not
//!   (`CONNECT{}`) [live].
//! - After the blanks, the first byte of any kind starts the argument, even `\r` or `\n`; the
//!   argument ends at the next `\n` (so `PUB \nfoo 0\r\n\r\n` publishes to subject "\nfoo") [live].
//!   If a `\r` occurs in the argument after its first byte, the byte before the `\n` is dropped
//!   (nats-server's `drop`): normally that is the `\r` of `\r\n`; a bare `\n` is accepted [live].
//! - `PING`, `PONG` and `+OK` ignore anything up to the `\n` (`PINGxyz\r\n` is a PING) [live].
//! - The argument (not the op name or blanks) may be at most `max_control_line` bytes, else
//!   `-ERR 'maximum control line exceeded'` [live: 4096 ok, 4097 error, with `\r\n` or `\n`].
//! - Wrong argument count, or a size that is not 1 to 9 ASCII digits (`-1`, `+2`, `0000000002`,
//!   `99999999999999999999999`): close without `-ERR` [live].
//! - `PUB`/`HPUB` total size over `max_payload`: `-ERR 'Maximum Payload Violation'` before the
//!   payload is read [live]. `HPUB` header size over total size: close without `-ERR`, checked
//!   before the payload limit (`HPUB foo 3000000 2000000`) [live].
//! - `HPUB` on a connection that did not send `headers:true`: close without `-ERR`, before the
//!   arguments are looked at (`HPUB foo 2000000 2000001`) [live].
//! - Payload not followed by `\r\n` (`\n` alone too): Unknown Protocol Operation [live].
//!
//! Two deliberate differences, both to bound the bytes buffered for one op: nats-server accepts
//! any amount of junk between `PING`/`PONG`/`+OK` and `\n`, and any number of blanks between an
//! op name and its argument; here each is limited to `max_control_line` bytes
//! (`ControlLineTooLong`).

use memchr::memchr;

/// Per-connection limits the parser enforces.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ParserLimits {
    /// Longest argument of a control line (`max_control_line`, default 4096).
    pub max_control_line: usize,
    /// Largest `PUB` size or `HPUB` total size (`max_payload`, default 1 MiB).
    pub max_payload: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// One complete client operation, borrowing the read buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Op<'a> {
    /// `CONNECT <json>`; `json` is the raw argument (may be malformed or empty: nats-server then
    /// closes without `-ERR`).
    Connect {
        json: &'a [u8],
    },
    /// `PUB <subject> [reply] <#bytes>`; `reply` is empty when absent.
    Pub {
        subject: &'a [u8],
        reply: &'a [u8],
        payload: &'a [u8],
    },
    /// `HPUB <subject> [reply] <#hdr> <#total>`; `headers` is the first `#hdr` bytes, `payload`
    /// the remaining `#total - #hdr`.
    Hpub {
        subject: &'a [u8],
        reply: &'a [u8],
        headers: &'a [u8],
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue] <sid>`; `queue` is empty when absent.
    Sub {
        subject: &'a [u8],
        queue: &'a [u8],
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max]`. `max` is `None` when absent or not a valid size (nats-server's
    /// `parseSize` gives -1 and the subscription is removed at once, like `Some(0)`).
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `INFO <json>` sent by a client: ignored by nats-server when the JSON is an object or
    /// `null`, else the connection is closed without `-ERR` (see `connect::check_client_info`).
    Info {
        json: &'a [u8],
    },
    /// `+OK` sent by a client: ignored.
    Ok,
    /// `-ERR <text>` sent by a client: nats-server logs it and closes the connection without
    /// sending anything [live].
    Err {
        text: &'a [u8],
    },
}

/// A protocol error; the connection is closed after sending [`ProtocolError::err_line`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown protocol operation")]
    UnknownOp,
    #[error("maximum control line exceeded")]
    ControlLineTooLong,
    #[error("maximum payload violation")]
    PayloadTooLarge,
    /// Wrong argument count or a bad size: nats-server logs a parse error and closes silently.
    #[error("bad protocol arguments")]
    BadArgs,
    #[error("payload not followed by CRLF")]
    BadPayloadTerminator,
    /// `HPUB` before the client sent `headers:true`.
    #[error("headers not supported by this connection")]
    HeadersNotSupported,
    /// An op other than CONNECT while [`Parser::set_connect_required`] is on.
    #[error("authorization violation")]
    AuthorizationViolation,
}

impl ProtocolError {
    /// The exact `-ERR '...'\r\n` line nats-server 2.9.10 sends before closing, or `None` when it
    /// closes without `-ERR`.
    pub fn err_line(self) -> Option<&'static [u8]> {
        match self {
            ProtocolError::UnknownOp | ProtocolError::BadPayloadTerminator => {
                Some(b"-ERR 'Unknown Protocol Operation'\r\n")
            }
            ProtocolError::ControlLineTooLong => Some(b"-ERR 'maximum control line exceeded'\r\n"),
            ProtocolError::PayloadTooLarge => Some(b"-ERR 'Maximum Payload Violation'\r\n"),
            ProtocolError::AuthorizationViolation => Some(b"-ERR 'Authorization Violation'\r\n"),
            ProtocolError::BadArgs | ProtocolError::HeadersNotSupported => None,
        }
    }
}

/// Resumable parser for one client connection.
#[derive(Clone, Debug)]
pub struct Parser {
    limits: ParserLimits,
    headers: bool,
    connect_required: bool,
    state: State,
}

impl Parser {
    /// A parser for a new connection: headers off, CONNECT not required.
    pub fn new(limits: ParserLimits) -> Self {
        Parser {
            limits,
            headers: false,
            connect_required: false,
            state: State::LINE_START,
        }
    }

    /// Change the payload limit (e.g. a user or account JWT limit after CONNECT).
    pub fn set_max_payload(&mut self, n: usize) {
        self.limits.max_payload = n;
    }

    /// Allow `HPUB`; call with the `headers` field of each processed CONNECT.
    /// Until then `HPUB` is [`ProtocolError::HeadersNotSupported`], as in nats-server.
    pub fn set_headers(&mut self, enabled: bool) {
        self.headers = enabled;
    }

    /// While on, an op whose first byte is not `C`/`c` is
    /// [`ProtocolError::AuthorizationViolation`] (nats-server checks the first byte of each op
    /// while auth is pending). Turn on at accept when auth is required and there is no
    /// `no_auth_user`; turn off once a CONNECT has been accepted.
    pub fn set_connect_required(&mut self, required: bool) {
        self.connect_required = required;
    }

    /// Whether only a CONNECT is accepted next (see `set_connect_required`).
    pub fn is_connect_required(&self) -> bool {
        self.connect_required
    }

    /// The limits in force.
    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Parse the next op from `buf`, all the not-yet-consumed bytes of the connection.
    ///
    /// Returns `Ok(Some((op, consumed)))` for one complete op (`consumed > 0`; the caller then
    /// removes that prefix), `Ok(None)` when more bytes are needed (the caller appends to `buf`
    /// and calls again), or `Err` on a protocol error (the caller sends
    /// [`ProtocolError::err_line`] and closes). The caller may move `buf` in memory between calls.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Op<'a>, usize)>, ProtocolError> {
        let result = match self.state {
            State::Payload(pending) => self.finish_payload(buf, pending),
            State::Line { scanned: 0 } if !self.connect_required => {
                match self.parse_pub_fast(buf) {
                    Some(op) => return Ok(Some(op)),
                    None => self.parse_line(buf, 0),
                }
            }
            State::Line { scanned } => self.parse_line(buf, scanned),
        };
        if result.is_err() {
            self.state = State::LINE_START;
        }
        result
    }

    /// Total length of `buf` needed before the pending op can complete, when known (a `PUB` or
    /// `HPUB` line is parsed and its payload is awaited): lets the caller reserve buffer space.
    pub fn bytes_needed(&self) -> Option<usize> {
        match self.state {
            State::Payload(pending) => Some(pending.payload_end() + CRLF_LEN),
            State::Line { .. } => None,
        }
    }

    /// The one op that dominates traffic, whole in `buf` and in the shape every client writes
    /// (`PUB <subject> [reply] <size>\r\n<payload>\r\n`, upper case, single spaces), parsed in
    /// one pass without touching the parser state. Anything else (other ops, odd spacing,
    /// partial input, any error) returns `None` and goes through `parse_line`, which gives the
    /// same answer the long way.
    #[inline]
    fn parse_pub_fast<'a>(&self, buf: &'a [u8]) -> Option<(Op<'a>, usize)> {
        if buf.len() < 8 || &buf[..4] != b"PUB " {
            return None;
        }
        let window_end = buf.len().min(4 + self.limits.max_control_line + 2);
        let nl = 4 + memchr(b'\n', &buf[4..window_end])?;
        if buf[nl - 1] != b'\r' || nl - 1 - 4 > self.limits.max_control_line {
            return None;
        }
        let arg = &buf[4..nl - 1];
        let (subject, reply, total_len) = split_pub_fast(arg)?;
        if total_len > self.limits.max_payload {
            return None;
        }
        let payload_start = nl + 1;
        let end = payload_start + total_len;
        if buf.get(end..end + CRLF_LEN)? != b"\r\n" {
            return None;
        }
        let op = Op::Pub {
            subject: subject.of(arg),
            reply: reply.of(arg),
            payload: &buf[payload_start..end],
        };
        Some((op, end + CRLF_LEN))
    }

    fn parse_line<'a>(
        &mut self,
        buf: &'a [u8],
        scanned: usize,
    ) -> Result<Option<(Op<'a>, usize)>, ProtocolError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if self.connect_required && !matches!(first, b'C' | b'c') {
            return Err(ProtocolError::AuthorizationViolation);
        }
        let Some(kind) = match_op_name(buf)? else {
            return Ok(None);
        };
        let name_end = kind.name().len();
        let line = if kind.has_arg() {
            find_arg_line(buf, name_end, kind.needs_blank(), scanned, self.limits)?
        } else {
            find_bare_line(buf, name_end, scanned, self.limits)?
        };
        let line = match line {
            LineScan::Complete(line) => line,
            LineScan::Partial { scanned } => {
                self.state = State::Line { scanned };
                return Ok(None);
            }
        };
        self.state = State::LINE_START;
        let arg = &buf[line.arg_start..line.arg_end];
        let consumed = line.next;
        let op = match kind {
            OpKind::Ping => Op::Ping,
            OpKind::Pong => Op::Pong,
            OpKind::Ok => Op::Ok,
            OpKind::Connect => Op::Connect { json: arg },
            OpKind::Info => Op::Info { json: arg },
            OpKind::Err => Op::Err { text: arg },
            OpKind::Sub => parse_sub(arg)?,
            OpKind::Unsub => parse_unsub(arg)?,
            OpKind::Pub => return self.start_pub(buf, line),
            OpKind::Hpub => return self.start_hpub(buf, line),
        };
        Ok(Some((op, consumed)))
    }

    fn start_pub<'a>(
        &mut self,
        buf: &'a [u8],
        line: Line,
    ) -> Result<Option<(Op<'a>, usize)>, ProtocolError> {
        let arg = &buf[line.arg_start..line.arg_end];
        let (subject, reply, total_len) = match split_pub_fast(arg) {
            Some(split) => split,
            None => {
                let mut fields = [Field::EMPTY; MAX_FIELDS];
                let (subject, reply, size) = match split_fields(arg, is_pub_separator, &mut fields)
                {
                    2 => (fields[0], Field::EMPTY, fields[1]),
                    3 => (fields[0], fields[1], fields[2]),
                    _ => return Err(ProtocolError::BadArgs),
                };
                let total_len = parse_size(size.of(arg)).ok_or(ProtocolError::BadArgs)?;
                (subject, reply, total_len)
            }
        };
        if total_len > self.limits.max_payload {
            return Err(ProtocolError::PayloadTooLarge);
        }
        let pending = PendingPub {
            subject: subject.shift(line.arg_start),
            reply: reply.shift(line.arg_start),
            header_len: None,
            payload_start: line.next,
            total_len,
        };
        self.state = State::Payload(pending);
        self.finish_payload(buf, pending)
    }

    fn start_hpub<'a>(
        &mut self,
        buf: &'a [u8],
        line: Line,
    ) -> Result<Option<(Op<'a>, usize)>, ProtocolError> {
        // nats-server `processHeaderPub` refuses before looking at the arguments.
        if !self.headers {
            return Err(ProtocolError::HeadersNotSupported);
        }
        let arg = &buf[line.arg_start..line.arg_end];
        let mut fields = [Field::EMPTY; MAX_FIELDS];
        let (subject, reply, hdr, size) = match split_fields(arg, is_pub_separator, &mut fields) {
            3 => (fields[0], Field::EMPTY, fields[1], fields[2]),
            4 => (fields[0], fields[1], fields[2], fields[3]),
            _ => return Err(ProtocolError::BadArgs),
        };
        let header_len = parse_size(hdr.of(arg)).ok_or(ProtocolError::BadArgs)?;
        let total_len = parse_size(size.of(arg)).ok_or(ProtocolError::BadArgs)?;
        if header_len > total_len {
            return Err(ProtocolError::BadArgs);
        }
        if total_len > self.limits.max_payload {
            return Err(ProtocolError::PayloadTooLarge);
        }
        let pending = PendingPub {
            subject: subject.shift(line.arg_start),
            reply: reply.shift(line.arg_start),
            header_len: Some(header_len),
            payload_start: line.next,
            total_len,
        };
        self.state = State::Payload(pending);
        self.finish_payload(buf, pending)
    }

    fn finish_payload<'a>(
        &mut self,
        buf: &'a [u8],
        pending: PendingPub,
    ) -> Result<Option<(Op<'a>, usize)>, ProtocolError> {
        let end = pending.payload_end();
        // Check each terminator byte as soon as it arrives, like nats-server's MSG_END_R/N.
        match buf.get(end) {
            None => return Ok(None),
            Some(b'\r') => {}
            Some(_) => return Err(ProtocolError::BadPayloadTerminator),
        }
        match buf.get(end + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(ProtocolError::BadPayloadTerminator),
        }
        self.state = State::LINE_START;
        let subject = pending.subject.of(buf);
        let reply = pending.reply.of(buf);
        let body = &buf[pending.payload_start..end];
        let op = match pending.header_len {
            None => Op::Pub {
                subject,
                reply,
                payload: body,
            },
            Some(header_len) => {
                let (headers, payload) = body.split_at(header_len);
                Op::Hpub {
                    subject,
                    reply,
                    headers,
                    payload,
                }
            }
        };
        Ok(Some((op, end + CRLF_LEN)))
    }
}

const CRLF_LEN: usize = 2;

/// nats-server `parseSize` accepts at most 9 digits ("999M"), so sizes never overflow.
const SIZE_DIGITS_MAX: usize = 9;

/// Most fields any op takes (`HPUB subject reply hdr total`); one more means "too many".
const MAX_FIELDS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum State {
    /// Reading a control line; `buf[..scanned]` was already searched for its `\n`.
    Line { scanned: usize },
    /// A `PUB`/`HPUB` line is parsed; waiting for its payload and `\r\n`.
    Payload(PendingPub),
}

impl State {
    const LINE_START: State = State::Line { scanned: 0 };
}

/// A parsed `PUB`/`HPUB` line, as offsets from the start of the caller's buffer. They stay valid
/// because the caller only appends, and removes the consumed prefix only after an op is returned.
#[derive(Clone, Copy, Debug)]
struct PendingPub {
    subject: Field,
    reply: Field,
    /// `None` for `PUB`.
    header_len: Option<usize>,
    payload_start: usize,
    total_len: usize,
}

impl PendingPub {
    fn payload_end(&self) -> usize {
        // Cannot overflow: payload_start <= buf.len() and total_len has at most 9 digits.
        self.payload_start + self.total_len
    }
}

/// A byte range `start..end` of some slice.
#[derive(Clone, Copy, Debug)]
struct Field {
    start: usize,
    end: usize,
}

impl Field {
    const EMPTY: Field = Field { start: 0, end: 0 };

    fn of(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start..self.end]
    }

    fn shift(self, by: usize) -> Field {
        if self.start == self.end {
            return Field::EMPTY;
        }
        Field {
            start: self.start + by,
            end: self.end + by,
        }
    }
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum OpKind {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Connect,
    Info,
    Ok,
    Err,
}

impl OpKind {
    /// The name in upper case, as matched case-insensitively.
    fn name(self) -> &'static [u8] {
        match self {
            OpKind::Pub => b"PUB",
            OpKind::Hpub => b"HPUB",
            OpKind::Sub => b"SUB",
            OpKind::Unsub => b"UNSUB",
            OpKind::Ping => b"PING",
            OpKind::Pong => b"PONG",
            OpKind::Connect => b"CONNECT",
            OpKind::Info => b"INFO",
            OpKind::Ok => b"+OK",
            OpKind::Err => b"-ERR",
        }
    }

    fn has_arg(self) -> bool {
        !matches!(self, OpKind::Ping | OpKind::Pong | OpKind::Ok)
    }

    /// Whether a blank must follow the name (nats-server's `OP_PUB` etc. states); `CONNECT` and
    /// `INFO` go straight to their argument.
    fn needs_blank(self) -> bool {
        !matches!(self, OpKind::Connect | OpKind::Info)
    }
}

/// Where a complete control line's parts are in the buffer.
#[derive(Clone, Copy, Debug)]
struct Line {
    arg_start: usize,
    /// End of the argument, after nats-server's `drop` of the byte before `\n`.
    arg_end: usize,
    /// Index just past the `\n`.
    next: usize,
}

enum LineScan {
    Complete(Line),
    Partial { scanned: usize },
}

/// Recognise the op name at the start of `buf`: `Ok(None)` when the bytes so far are a prefix
/// of a name, `UnknownOp` as soon as a byte cannot continue one.
fn match_op_name(buf: &[u8]) -> Result<Option<OpKind>, ProtocolError> {
    let kind = match buf[0].to_ascii_uppercase() {
        b'P' => match buf.get(1).map(u8::to_ascii_uppercase) {
            None => return Ok(None),
            Some(b'U') => OpKind::Pub,
            Some(b'I') => OpKind::Ping,
            Some(b'O') => OpKind::Pong,
            Some(_) => return Err(ProtocolError::UnknownOp),
        },
        b'H' => OpKind::Hpub,
        b'S' => OpKind::Sub,
        b'U' => OpKind::Unsub,
        b'C' => OpKind::Connect,
        b'I' => OpKind::Info,
        b'+' => OpKind::Ok,
        b'-' => OpKind::Err,
        _ => return Err(ProtocolError::UnknownOp),
    };
    let name = kind.name();
    let seen = buf.len().min(name.len());
    if !buf[..seen].eq_ignore_ascii_case(&name[..seen]) {
        return Err(ProtocolError::UnknownOp);
    }
    Ok((seen == name.len()).then_some(kind))
}

/// Find the end of a `PING`/`PONG`/`+OK` line; the bytes between the name and `\n` are ignored.
fn find_bare_line(
    buf: &[u8],
    name_end: usize,
    scanned: usize,
    limits: ParserLimits,
) -> Result<LineScan, ProtocolError> {
    let window_end = buf.len().min(
        name_end
            .saturating_add(limits.max_control_line)
            .saturating_add(1),
    );
    let from = scanned.max(name_end);
    if from < window_end {
        if let Some(i) = memchr(b'\n', &buf[from..window_end]) {
            let nl = from + i;
            return Ok(LineScan::Complete(Line {
                arg_start: nl,
                arg_end: nl,
                next: nl + 1,
            }));
        }
    }
    if buf.len() - name_end > limits.max_control_line {
        // More than max_control_line bytes of junk without `\n` (bounded here, not in nats-server).
        return Err(ProtocolError::ControlLineTooLong);
    }
    Ok(LineScan::Partial {
        scanned: window_end.max(from),
    })
}

/// Find the argument and end of a line of an op that takes an argument.
fn find_arg_line(
    buf: &[u8],
    name_end: usize,
    needs_blank: bool,
    scanned: usize,
    limits: ParserLimits,
) -> Result<LineScan, ProtocolError> {
    let Some(&after_name) = buf.get(name_end) else {
        return Ok(LineScan::Partial { scanned: 0 });
    };
    if needs_blank && !is_blank(after_name) {
        return Err(ProtocolError::UnknownOp);
    }
    let Some(offset) = buf[name_end..].iter().position(|&b| !is_blank(b)) else {
        // Only blanks so far (bounded here, not in nats-server).
        if buf.len() - name_end > limits.max_control_line {
            return Err(ProtocolError::ControlLineTooLong);
        }
        return Ok(LineScan::Partial { scanned: 0 });
    };
    // The same bound as the partial case above, so a run of blanks is refused alike whether it
    // arrives in one read or in pieces (found by the `parser` fuzz target).
    if offset > limits.max_control_line {
        return Err(ProtocolError::ControlLineTooLong);
    }
    let arg_start = name_end + offset;
    let mcl = limits.max_control_line;
    // The first argument byte is taken as is, even a `\n`, so the search starts after it. An
    // argument of mcl + 2 bytes without `\n` is too long whatever comes next.
    let from = scanned.max(arg_start + 1);
    let window_end = buf
        .len()
        .min(arg_start.saturating_add(mcl).saturating_add(2));
    if from < window_end {
        if let Some(i) = memchr(b'\n', &buf[from..window_end]) {
            let nl = from + i;
            let arg_end = arg_end_before(buf, arg_start, nl);
            if arg_end - arg_start > mcl {
                return Err(ProtocolError::ControlLineTooLong);
            }
            return Ok(LineScan::Complete(Line {
                arg_start,
                arg_end,
                next: nl + 1,
            }));
        }
    }
    if window_end < buf.len() {
        return Err(ProtocolError::ControlLineTooLong);
    }
    // Partial argument: error as soon as it is over the limit whatever comes next, as
    // nats-server checks its split-buffer `argBuf` at the end of each read.
    let partial_len = buf.len() - arg_start;
    if partial_len > mcl && partial_len - cr_drop(&buf[arg_start..]) > mcl {
        return Err(ProtocolError::ControlLineTooLong);
    }
    Ok(LineScan::Partial {
        scanned: window_end.max(from),
    })
}

/// End of an argument that starts at `arg_start` and whose line ends with the `\n` at `nl`.
fn arg_end_before(buf: &[u8], arg_start: usize, nl: usize) -> usize {
    nl - cr_drop(&buf[arg_start..nl])
}

/// nats-server's `drop`: 1 when a `\r` appeared in the argument after its first byte (the first
/// byte is consumed by the blank-skipping state, which never sets `drop`).
fn cr_drop(arg: &[u8]) -> usize {
    let Some(tail) = arg.get(1..) else {
        return 0;
    };
    usize::from(tail.last() == Some(&b'\r') || memchr(b'\r', tail).is_some())
}

fn parse_sub(arg: &[u8]) -> Result<Op<'_>, ProtocolError> {
    let mut fields = [Field::EMPTY; MAX_FIELDS];
    match split_fields(arg, is_split_arg_separator, &mut fields) {
        2 => Ok(Op::Sub {
            subject: fields[0].of(arg),
            queue: &[],
            sid: fields[1].of(arg),
        }),
        3 => Ok(Op::Sub {
            subject: fields[0].of(arg),
            queue: fields[1].of(arg),
            sid: fields[2].of(arg),
        }),
        _ => Err(ProtocolError::BadArgs),
    }
}

fn parse_unsub(arg: &[u8]) -> Result<Op<'_>, ProtocolError> {
    let mut fields = [Field::EMPTY; MAX_FIELDS];
    match split_fields(arg, is_split_arg_separator, &mut fields) {
        1 => Ok(Op::Unsub {
            sid: fields[0].of(arg),
            max: None,
        }),
        2 => {
            let max = parse_size(fields[1].of(arg)).map(|n| n as u64);
            Ok(Op::Unsub {
                sid: fields[0].of(arg),
                max,
            })
        }
        _ => Err(ProtocolError::BadArgs),
    }
}

/// Split `arg` into fields; returns the field count (which may exceed `out.len()`, in which case
/// only the first `out.len()` fields are stored).
fn split_fields(
    arg: &[u8],
    is_separator: impl Fn(u8) -> bool,
    out: &mut [Field; MAX_FIELDS],
) -> usize {
    let mut count = 0;
    let mut i = 0;
    loop {
        let Some(skip) = arg[i..].iter().position(|&b| !is_separator(b)) else {
            return count;
        };
        let start = i + skip;
        let len = arg[start..].iter().position(|&b| is_separator(b));
        i = len.map_or(arg.len(), |len| start + len);
        if let Some(slot) = out.get_mut(count) {
            *slot = Field { start, end: i };
        }
        count += 1;
    }
}

/// The common `PUB` argument shapes, `<subject> <size>` and `<subject> <reply> <size>` with
/// single spaces, split with `memchr` instead of byte-by-byte. Anything else (tabs, runs of
/// blanks, odd sizes) returns `None` and takes the general path, which gives the same answer.
#[inline]
fn split_pub_fast(arg: &[u8]) -> Option<(Field, Field, usize)> {
    let digits_start = arg.iter().rposition(|b| !b.is_ascii_digit())? + 1;
    if arg[digits_start - 1] != b' ' || digits_start < 2 {
        return None;
    }
    let total_len = parse_size(&arg[digits_start..])?;
    let head_end = digits_start - 1;
    let head = &arg[..head_end];
    // Subjects are short: a plain loop beats memchr's set-up here.
    match head.iter().position(|&b| is_blank(b)) {
        None => Some((
            Field {
                start: 0,
                end: head_end,
            },
            Field::EMPTY,
            total_len,
        )),
        Some(blank) => {
            let reply_start = blank + 1;
            let reply_ok = head[blank] == b' '
                && blank > 0
                && reply_start < head_end
                && !head[reply_start..].iter().any(|&b| is_blank(b));
            reply_ok.then_some((
                Field {
                    start: 0,
                    end: blank,
                },
                Field {
                    start: reply_start,
                    end: head_end,
                },
                total_len,
            ))
        }
    }
}

/// nats-server `parseSize`: 1 to 9 ASCII digits, else `None`.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > SIZE_DIGITS_MAX {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
    })
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `processPub`/`processHeaderPub` split on blanks only.
fn is_pub_separator(b: u8) -> bool {
    SEPARATORS[usize::from(b)] & PUB_SEPARATOR != 0
}

/// nats-server `splitArg` (SUB, UNSUB) also splits on `\r` and `\n`.
fn is_split_arg_separator(b: u8) -> bool {
    SEPARATORS[usize::from(b)] & SPLIT_ARG_SEPARATOR != 0
}

const PUB_SEPARATOR: u8 = 1;
const SPLIT_ARG_SEPARATOR: u8 = 2;

/// One load per byte instead of up to four compares in the field-splitting loops.
static SEPARATORS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b' ' as usize] = PUB_SEPARATOR | SPLIT_ARG_SEPARATOR;
    table[b'\t' as usize] = PUB_SEPARATOR | SPLIT_ARG_SEPARATOR;
    table[b'\r' as usize] = SPLIT_ARG_SEPARATOR;
    table[b'\n' as usize] = SPLIT_ARG_SEPARATOR;
    table
};

#[cfg(test)]
mod tests {

    /// A run of blanks longer than the control line limit between an op name and its argument
    /// is refused the same way in one read and byte by byte (a fuzzer finding).
    #[test]
    fn long_blank_runs_are_refused_alike_whole_and_split() {
        let limits = ParserLimits {
            max_control_line: 32,
            max_payload: 64,
        };
        let mut input = b"PUB".to_vec();
        input.extend(std::iter::repeat_n(b'\t', 40));
        input.extend_from_slice(b" a 2\r\nhi\r\n");
        let mut whole = Parser::new(limits);
        assert_eq!(whole.parse(&input), Err(ProtocolError::ControlLineTooLong));
        let mut split = Parser::new(limits);
        let mut buf = Vec::new();
        let mut got = Ok(None);
        for &b in &input {
            buf.push(b);
            got = split.parse(&buf);
            if got.is_err() {
                break;
            }
        }
        assert_eq!(got, Err(ProtocolError::ControlLineTooLong));
    }

    /// The PUB fast path agrees with the general split wherever it answers.
    #[test]
    fn pub_fast_split_agrees_with_the_general_split() {
        use proptest::prelude::*;
        let alphabet = prop::sample::select(vec![b'a', b'.', b' ', b'\t', b'1', b'9', b'0', b'*']);
        proptest!(|(arg in prop::collection::vec(alphabet, 0..24))| {
            if let Some((subject, reply, len)) = super::split_pub_fast(&arg) {
                let mut fields = [super::Field::EMPTY; super::MAX_FIELDS];
                let n = super::split_fields(&arg, super::is_pub_separator, &mut fields);
                let (s, r, size) = match n {
                    2 => (fields[0], super::Field::EMPTY, fields[1]),
                    3 => (fields[0], fields[1], fields[2]),
                    _ => panic!("fast path accepted {:?} the general one refuses", arg),
                };
                prop_assert_eq!(subject.of(&arg), s.of(&arg));
                prop_assert_eq!(reply.of(&arg), r.of(&arg));
                prop_assert_eq!(Some(len), super::parse_size(size.of(&arg)));
            }
        });
        assert!(super::split_pub_fast(b"foo.bar 16").is_some());
        assert!(super::split_pub_fast(b"foo.bar _INBOX.x 16").is_some());
    }

    use super::*;
    use crate::protocol::replay::{OwnedOp, Replay, ReplayConfig, replay};

    const LIMITS: ParserLimits = ParserLimits {
        max_control_line: 4096,
        max_payload: 1024 * 1024,
    };

    fn config() -> ReplayConfig {
        ReplayConfig {
            limits: LIMITS,
            headers: true,
            connect_required: false,
        }
    }

    fn run(input: &[u8]) -> Replay {
        replay(config(), [input])
    }

    /// The ops of an input that must parse completely with no error.
    fn ops(input: &[u8]) -> Vec<OwnedOp> {
        let run = run(input);
        assert_eq!(
            run.error,
            None,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            run.unconsumed,
            0,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        run.ops
    }

    fn one(input: &[u8]) -> OwnedOp {
        let mut ops = ops(input);
        assert_eq!(ops.len(), 1, "input {:?}", String::from_utf8_lossy(input));
        ops.remove(0)
    }

    fn error_of(input: &[u8]) -> ProtocolError {
        run(input)
            .error
            .unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
    }

    fn publish(subject: &str, reply: &str, payload: &str) -> OwnedOp {
        OwnedOp::Pub {
            subject: subject.into(),
            reply: reply.into(),
            payload: payload.into(),
        }
    }

    fn hpublish(subject: &str, reply: &str, headers: &str, payload: &str) -> OwnedOp {
        OwnedOp::Hpub {
            subject: subject.into(),
            reply: reply.into(),
            headers: headers.into(),
            payload: payload.into(),
        }
    }

    fn sub(subject: &str, queue: &str, sid: &str) -> OwnedOp {
        OwnedOp::Sub {
            subject: subject.into(),
            queue: queue.into(),
            sid: sid.into(),
        }
    }

    fn unsub(sid: &str, max: Option<u64>) -> OwnedOp {
        OwnedOp::Unsub {
            sid: sid.into(),
            max,
        }
    }

    #[test]
    fn every_op() {
        let table: &[(&[u8], OwnedOp)] = &[
            (b"PUB foo 5\r\nhello\r\n", publish("foo", "", "hello")),
            (b"PUB foo rep.x 2\r\nhi\r\n", publish("foo", "rep.x", "hi")),
            (
                b"HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                hpublish("h", "", "NATS/1.0\r\n\r\n", "hi"),
            ),
            (
                b"HPUB h r 22 24\r\nNATS/1.0\r\nAb: defg\r\n\r\nhi\r\n",
                hpublish("h", "r", "NATS/1.0\r\nAb: defg\r\n\r\n", "hi"),
            ),
            (b"SUB foo 1\r\n", sub("foo", "", "1")),
            (b"SUB foo workers 22\r\n", sub("foo", "workers", "22")),
            (b"UNSUB 1\r\n", unsub("1", None)),
            (b"UNSUB 1 5\r\n", unsub("1", Some(5))),
            (b"PING\r\n", OwnedOp::Ping),
            (b"PONG\r\n", OwnedOp::Pong),
            (
                b"CONNECT {\"verbose\":false}\r\n",
                OwnedOp::Connect(b"{\"verbose\":false}".to_vec()),
            ),
            (b"INFO {}\r\n", OwnedOp::Info(b"{}".to_vec())),
            (b"+OK\r\n", OwnedOp::Ok),
            (b"-ERR 'Slow'\r\n", OwnedOp::Err(b"'Slow'".to_vec())),
        ];
        for (input, expected) in table {
            assert_eq!(
                &one(input),
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn op_names_are_case_insensitive() {
        assert_eq!(one(b"pub foo 1\r\nx\r\n"), publish("foo", "", "x"));
        assert_eq!(one(b"PuB foo 1\r\nx\r\n"), publish("foo", "", "x"));
        assert_eq!(one(b"hPuB foo 0 1\r\nx\r\n"), hpublish("foo", "", "", "x"));
        assert_eq!(one(b"sub foo 1\r\n"), sub("foo", "", "1"));
        assert_eq!(one(b"uNsUb 1\r\n"), unsub("1", None));
        assert_eq!(one(b"ping\r\n"), OwnedOp::Ping);
        assert_eq!(one(b"PoNg\r\n"), OwnedOp::Pong);
        assert_eq!(one(b"connect {}\r\n"), OwnedOp::Connect(b"{}".to_vec()));
        assert_eq!(one(b"info {}\r\n"), OwnedOp::Info(b"{}".to_vec()));
        assert_eq!(one(b"+ok\r\n"), OwnedOp::Ok);
        assert_eq!(one(b"-err x\r\n"), OwnedOp::Err(b"x".to_vec()));
    }

    #[test]
    fn blanks_between_and_around_arguments() {
        assert_eq!(
            one(b"PUB\tbar\trep.x\t2\r\nhi\r\n"),
            publish("bar", "rep.x", "hi")
        );
        assert_eq!(
            one(b"PUB   foo  \t r   2\r\nhi\r\n"),
            publish("foo", "r", "hi")
        );
        assert_eq!(one(b"PUB q 2 \r\nab\r\n"), publish("q", "", "ab"));
        assert_eq!(
            one(b"PUB foo bar 2 \t \r\nhi\r\n"),
            publish("foo", "bar", "hi")
        );
        assert_eq!(one(b"SUB\t foo \tq\t 1 \r\n"), sub("foo", "q", "1"));
        assert_eq!(one(b"UNSUB  7   9 \r\n"), unsub("7", Some(9)));
        assert_eq!(
            one(b"CONNECT \t {\"a\":1}  \r\n"),
            OwnedOp::Connect(b"{\"a\":1}  ".to_vec())
        );
        assert_eq!(
            one(b"HPUB  h \t r  0   0 \r\n\r\n"),
            hpublish("h", "r", "", "")
        );
    }

    #[test]
    fn connect_and_info_need_no_blank() {
        assert_eq!(one(b"CONNECT{}\r\n"), OwnedOp::Connect(b"{}".to_vec()));
        assert_eq!(one(b"INFO{}\r\n"), OwnedOp::Info(b"{}".to_vec()));
        // nats-server: `CONNECT\r\n` hands "\r" to the JSON decoder, which then fails [live].
        assert_eq!(one(b"CONNECT\r\n"), OwnedOp::Connect(b"\r".to_vec()));
        // The first argument byte may be `\n`: the line goes on to the next `\n` [live].
        assert_eq!(one(b"CONNECT\n{}\r\n"), OwnedOp::Connect(b"\n{}".to_vec()));
    }

    #[test]
    fn bare_newline_ends_lines() {
        assert_eq!(ops(b"PING\nPONG\n"), vec![OwnedOp::Ping, OwnedOp::Pong]);
        assert_eq!(one(b"PUB foo 2\nhi\r\n"), publish("foo", "", "hi"));
        assert_eq!(one(b"SUB foo 1\n"), sub("foo", "", "1"));
    }

    #[test]
    fn junk_after_ping_pong_ok_is_ignored() {
        assert_eq!(
            ops(b"PINGxyz\r\nPONG foo\r\n+OKjunk\r\n"),
            vec![OwnedOp::Ping, OwnedOp::Pong, OwnedOp::Ok]
        );
    }

    #[test]
    fn odd_carriage_returns_follow_nats_server_drop() {
        // `\r` mid-argument with a bare `\n`: nats-server drops the byte before `\n`, and SUB
        // splits on `\r` too, so this is SUB a with sid b [live: +OK].
        assert_eq!(one(b"SUB a\rb 1\n"), sub("a", "", "b"));
        // Argument starting with `\n` (after `PUB `) gives subject "\nfoo" [live: +OK].
        assert_eq!(one(b"PUB \nfoo 0\r\n\r\n"), publish("\nfoo", "", ""));
        // PUB splits on blanks only: `\r` stays in the size, which is then bad.
        assert_eq!(
            error_of(b"PUB foo 5\r\r\nhello\r\n"),
            ProtocolError::BadArgs
        );
    }

    #[test]
    fn zero_length_payloads() {
        assert_eq!(one(b"PUB foo 0\r\n\r\n"), publish("foo", "", ""));
        assert_eq!(one(b"HPUB foo 0 0\r\n\r\n"), hpublish("foo", "", "", ""));
        assert_eq!(
            one(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
            hpublish("foo", "", "NATS/1.0\r\n\r\n", "")
        );
    }

    #[test]
    fn payload_may_contain_crlf_and_op_names() {
        assert_eq!(
            ops(b"PUB a 8\r\nPING\r\n\r\n\r\nPING\r\n"),
            vec![publish("a", "", "PING\r\n\r\n"), OwnedOp::Ping]
        );
    }

    #[test]
    fn max_size_payloads() {
        let limits = ParserLimits {
            max_control_line: 4096,
            max_payload: 10,
        };
        let config = ReplayConfig {
            limits,
            headers: true,
            connect_required: false,
        };
        let ok = replay(
            config,
            [&b"PUB a 10\r\n0123456789\r\nHPUB a 4 10\r\n0123456789\r\n"[..]],
        );
        assert_eq!(ok.error, None);
        assert_eq!(
            ok.ops,
            vec![
                publish("a", "", "0123456789"),
                hpublish("a", "", "0123", "456789")
            ]
        );
        let over = replay(config, [&b"PUB a 11\r\n"[..]]);
        assert_eq!(over.error, Some(ProtocolError::PayloadTooLarge));
        // HPUB is checked on the total size, not the payload after the headers.
        let over = replay(config, [&b"HPUB a 5 11\r\n"[..]]);
        assert_eq!(over.error, Some(ProtocolError::PayloadTooLarge));
    }

    #[test]
    fn payload_limit_is_checked_before_the_payload_arrives() {
        let mut parser = Parser::new(LIMITS);
        assert_eq!(
            parser.parse(b"PUB foo 2000000\r\n"),
            Err(ProtocolError::PayloadTooLarge)
        );
    }

    #[test]
    fn set_max_payload_applies_to_the_next_op() {
        let mut parser = Parser::new(LIMITS);
        parser.set_max_payload(3);
        assert_eq!(parser.limits().max_payload, 3);
        assert_eq!(
            parser.parse(b"PUB a 4\r\n"),
            Err(ProtocolError::PayloadTooLarge)
        );
        let mut parser = Parser::new(LIMITS);
        parser.set_max_payload(4);
        assert!(matches!(
            parser.parse(b"PUB a 4\r\nabcd\r\n"),
            Ok(Some((Op::Pub { .. }, 15)))
        ));
    }

    #[test]
    fn unsub_max() {
        assert_eq!(one(b"UNSUB 1 0\r\n"), unsub("1", Some(0)));
        assert_eq!(one(b"UNSUB 1 999999999\r\n"), unsub("1", Some(999_999_999)));
        // parseSize gives -1 for these: nats-server then removes at once, like no max [live].
        assert_eq!(one(b"UNSUB 1 x\r\n"), unsub("1", None));
        assert_eq!(one(b"UNSUB 1 -3\r\n"), unsub("1", None));
        assert_eq!(one(b"UNSUB 1 1234567890\r\n"), unsub("1", None));
    }

    #[test]
    fn unknown_operations() {
        let inputs: &[&[u8]] = &[
            b"PUX",
            b"PUBX foo 2\r\n",
            b"PIN\r\n",
            b" PING\r\n",
            b"\r\n",
            b"\n",
            b"PUB\r\n",
            b"SUB\r\n",
            b"UNSUB\r\n",
            b"HPUB\r\n",
            b"-ERR\r\n",
            b"MSG foo 1 2\r\nhi\r\n",
            b"HMSG foo 1 2 2\r\n",
            b"M",
            b"RS+ foo\r\n",
            b"LS+ foo\r\n",
            b"A+ foo\r\n",
            b"PONX",
            b"\0",
            b"CONNEC\r\n",
            b"+O\r\n",
            b"-X",
            b"INF {}\r\n",
        ];
        for input in inputs {
            assert_eq!(
                error_of(input),
                ProtocolError::UnknownOp,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn unknown_op_is_reported_before_the_line_ends() {
        let mut parser = Parser::new(LIMITS);
        assert_eq!(parser.parse(b"PUBX"), Err(ProtocolError::UnknownOp));
        let mut parser = Parser::new(LIMITS);
        assert_eq!(parser.parse(b"PUB"), Ok(None));
        assert_eq!(parser.parse(b"PU"), Ok(None));
    }

    #[test]
    fn bad_payload_terminator() {
        for input in [
            &b"PUB foo 3\r\nhi\r\n"[..],
            b"PUB foo 2\r\nhiX\r\n",
            b"PUB foo 2\r\nhi\rX",
            b"PUB foo 0\r\n\n",
            b"PUB foo 0\r\n\r\r\n",
            b"HPUB foo 1 2\r\nhi\n",
        ] {
            assert_eq!(error_of(input), ProtocolError::BadPayloadTerminator);
        }
        assert_eq!(
            ProtocolError::BadPayloadTerminator.err_line(),
            Some(&b"-ERR 'Unknown Protocol Operation'\r\n"[..])
        );
    }

    #[test]
    fn bad_arguments_close_without_err() {
        let inputs: &[&[u8]] = &[
            b"PUB \r\n",
            b"PUB foo\r\n",
            b"PUB foo 1000000000\r\n",
            b"PUB foo 0000000002\r\n",
            b"PUB a 99999999999999999999999\r\n",
            b"PUB foo -1\r\n",
            b"PUB foo +2\r\n",
            b"PUB foo a b 2\r\n",
            b"PUB foo 2x\r\n",
            b"SUB foo\r\n",
            b"SUB foo q 1 x\r\n",
            b"SUB \r\n",
            b"UNSUB 1 2 3\r\n",
            b"UNSUB \r\n",
            b"HPUB foo 2 1\r\n",
            b"HPUB foo 3000000 2000000\r\n",
            b"HPUB foo 2\r\n",
            b"HPUB a b c 1 2 3\r\n",
            b"HPUB foo x 2\r\n",
            b"HPUB foo 1 x\r\n",
        ];
        for input in inputs {
            assert_eq!(
                error_of(input),
                ProtocolError::BadArgs,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(ProtocolError::BadArgs.err_line(), None);
    }

    #[test]
    fn hpub_needs_headers_enabled_before_anything_else() {
        let config = ReplayConfig {
            headers: false,
            ..config()
        };
        for input in [
            &b"HPUB foo 1 2\r\nhi\r\n"[..],
            b"HPUB foo 2000000 2000001\r\n",
            b"HPUB foo\r\n",
        ] {
            assert_eq!(
                replay(config, [input]).error,
                Some(ProtocolError::HeadersNotSupported)
            );
        }
        assert_eq!(ProtocolError::HeadersNotSupported.err_line(), None);
        // Still a control line first: an over-long HPUB line is the control line error.
        let long = [&b"HPUB "[..], &[b'a'; 5000]].concat();
        assert_eq!(
            replay(config, [&long[..]]).error,
            Some(ProtocolError::ControlLineTooLong)
        );
    }

    fn line_with_arg(op: &[u8], arg_len: usize, end: &[u8]) -> Vec<u8> {
        let mut line = op.to_vec();
        line.extend(std::iter::repeat_n(b'a', arg_len - 2));
        line.extend_from_slice(b" 1");
        line.extend_from_slice(end);
        line
    }

    #[test]
    fn control_line_limit_counts_the_argument_only() {
        // [live] `SUB ` + 4096 argument bytes is fine, 4097 is not, with `\r\n` or `\n`.
        for end in [&b"\r\n"[..], b"\n"] {
            assert_eq!(run(&line_with_arg(b"SUB ", 4096, end)).ops.len(), 1);
            assert_eq!(
                error_of(&line_with_arg(b"SUB ", 4097, end)),
                ProtocolError::ControlLineTooLong
            );
            assert_eq!(run(&line_with_arg(b"SUB \t  ", 4096, end)).ops.len(), 1);
        }
        assert_eq!(
            ProtocolError::ControlLineTooLong.err_line(),
            Some(&b"-ERR 'maximum control line exceeded'\r\n"[..])
        );
    }

    #[test]
    fn control_line_limit_without_line_end() {
        let mut parser = Parser::new(LIMITS);
        let partial = [&b"SUB "[..], &[b'a'; 4096]].concat();
        assert_eq!(
            parser.parse(&partial),
            Ok(None),
            "4096 bytes may still end in CRLF"
        );
        let partial_cr = [&partial[..], b"\r"].concat();
        assert_eq!(
            parser.parse(&partial_cr),
            Ok(None),
            "a trailing \\r is not counted"
        );
        let over = [&partial[..], b"a"].concat();
        assert_eq!(parser.parse(&over), Err(ProtocolError::ControlLineTooLong));
        let mut parser = Parser::new(LIMITS);
        assert_eq!(
            parser.parse(&[&b"SUB "[..], &[b'a'; 100_000]].concat()),
            Err(ProtocolError::ControlLineTooLong)
        );
    }

    #[test]
    fn junk_and_blank_runs_are_bounded() {
        // Deliberate difference from nats-server, which would buffer these without limit.
        let limits = ParserLimits {
            max_control_line: 8,
            max_payload: 10,
        };
        let config = ReplayConfig {
            limits,
            headers: true,
            connect_required: false,
        };
        assert_eq!(
            replay(config, [&b"PING1234567\r\n"[..]]).ops,
            vec![OwnedOp::Ping]
        );
        assert_eq!(
            replay(config, [&b"PING123456789"[..]]).error,
            Some(ProtocolError::ControlLineTooLong)
        );
        assert_eq!(
            replay(config, [&b"SUB         "[..]]).error,
            Some(ProtocolError::ControlLineTooLong)
        );
        assert_eq!(
            replay(config, [&b"SUB        a 1\r\n"[..]]).ops,
            vec![sub("a", "", "1")]
        );
    }

    #[test]
    fn authorization_violation_when_connect_required() {
        let config = ReplayConfig {
            connect_required: true,
            ..config()
        };
        assert_eq!(
            replay(config, [&b"PING\r\n"[..]]).error,
            Some(ProtocolError::AuthorizationViolation)
        );
        assert_eq!(
            replay(config, [&b"X"[..]]).error,
            Some(ProtocolError::AuthorizationViolation)
        );
        assert_eq!(
            replay(config, [&b"CX"[..]]).error,
            Some(ProtocolError::UnknownOp)
        );
        let ok = replay(config, [&b"connect {}\r\nPING\r\n"[..]]);
        assert_eq!(
            ok.ops,
            vec![OwnedOp::Connect(b"{}".to_vec()), OwnedOp::Ping]
        );
        assert_eq!(
            ProtocolError::AuthorizationViolation.err_line(),
            Some(&b"-ERR 'Authorization Violation'\r\n"[..])
        );
    }

    #[test]
    fn err_lines() {
        assert_eq!(
            ProtocolError::UnknownOp.err_line(),
            Some(&b"-ERR 'Unknown Protocol Operation'\r\n"[..])
        );
        assert_eq!(
            ProtocolError::PayloadTooLarge.err_line(),
            Some(&b"-ERR 'Maximum Payload Violation'\r\n"[..])
        );
    }

    #[test]
    fn bytes_needed_after_the_pub_line() {
        let mut parser = Parser::new(LIMITS);
        assert_eq!(parser.bytes_needed(), None);
        assert_eq!(parser.parse(b"PUB foo 5\r\nhe"), Ok(None));
        assert_eq!(parser.bytes_needed(), Some(11 + 5 + 2));
        assert_eq!(parser.parse(b"PUB foo 5\r\nhello\r"), Ok(None));
        let buf = b"PUB foo 5\r\nhello\r\nPING\r\n";
        assert_eq!(
            parser.parse(buf),
            Ok(Some((
                Op::Pub {
                    subject: b"foo",
                    reply: b"",
                    payload: b"hello"
                },
                18
            )))
        );
        assert_eq!(parser.bytes_needed(), None);
    }

    #[test]
    fn pending_pub_survives_the_buffer_moving() {
        let mut parser = Parser::new(LIMITS);
        let first = b"PUB foo bar 3\r\nab".to_vec();
        assert_eq!(parser.parse(&first), Ok(None));
        let moved = [&first[..], b"c\r\n"].concat();
        drop(first);
        let (op, consumed) = parser.parse(&moved).unwrap().unwrap();
        assert_eq!(
            op,
            Op::Pub {
                subject: b"foo",
                reply: b"bar",
                payload: b"abc"
            }
        );
        assert_eq!(consumed, moved.len());
    }

    #[test]
    fn ops_borrow_the_buffer() {
        let buf = b"PUB foo 5\r\nhello\r\n";
        let mut parser = Parser::new(LIMITS);
        let Ok(Some((
            Op::Pub {
                payload, subject, ..
            },
            _,
        ))) = parser.parse(buf)
        else {
            panic!("expected a PUB");
        };
        assert_eq!(
            payload.as_ptr(),
            buf[11..].as_ptr(),
            "payload is not copied"
        );
        assert_eq!(subject.as_ptr(), buf[4..].as_ptr(), "subject is not copied");
    }

    #[test]
    fn search_resumes_where_it_stopped() {
        // A long partial line fed a byte at a time: each call only looks at the new bytes, so
        // this stays fast (quadratic rescanning of 4 KiB x 4 KiB would still pass, but the
        // scanned offset is checked directly).
        let mut parser = Parser::new(LIMITS);
        let mut buf = b"SUB ".to_vec();
        for _ in 0..4000 {
            buf.push(b'a');
            assert_eq!(parser.parse(&buf), Ok(None));
        }
        assert!(matches!(parser.state, State::Line { scanned } if scanned == buf.len()));
        buf.extend_from_slice(b" 1\r\n");
        assert!(matches!(parser.parse(&buf), Ok(Some((Op::Sub { .. }, n))) if n == buf.len()));
    }

    fn mixed_script() -> Vec<u8> {
        let parts: &[&[u8]] = &[
            b"CONNECT {\"verbose\":false,\"headers\":true}\r\n",
            b"SUB foo 1\r\n",
            b"sub bar workers 2\r\n",
            b"PUB foo 5\r\nhello\r\n",
            b"PUB\tbar\trep.x\t2\r\nhi\r\n",
            b"HPUB h r 22 24\r\nNATS/1.0\r\nAb: defg\r\n\r\nhi\r\n",
            b"HPUB h 12 12\r\nNATS/1.0\r\n\r\n\r\n",
            b"PUB empty 0\r\n\r\n",
            b"PING\r\n",
            b"pong\n",
            b"+OK\r\n",
            b"INFO {\"server_id\":\"x\"}\r\n",
            b"UNSUB 1 10\r\n",
            b"UNSUB 2\r\n",
            b"PUB crlf 6\r\n\r\n\r\n\r\n\r\n",
            b"PUB   spaced   r   3  \r\nabc\r\n",
            b"-ERR 'bye'\r\n",
            b"PUB foo 3\r\nhi\r\n",
        ];
        parts.concat()
    }

    #[test]
    fn mixed_script_whole() {
        let run = run(&mixed_script());
        assert_eq!(run.ops.len(), 17);
        assert_eq!(
            run.ops[5],
            hpublish("h", "r", "NATS/1.0\r\nAb: defg\r\n\r\n", "hi")
        );
        assert_eq!(run.ops[14], publish("crlf", "", "\r\n\r\n\r\n"));
        assert_eq!(run.error, Some(ProtocolError::BadPayloadTerminator));
    }

    #[test]
    fn mixed_script_every_split_point() {
        let script = mixed_script();
        let whole = run(&script);
        for at in 0..=script.len() {
            let (head, tail) = script.split_at(at);
            assert_eq!(replay(config(), [head, tail]), whole, "split at {at}");
        }
    }

    #[test]
    fn mixed_script_one_byte_at_a_time() {
        let script = mixed_script();
        assert_eq!(replay(config(), script.chunks(1)), run(&script));
        for n in 2..16 {
            assert_eq!(
                replay(config(), script.chunks(n)),
                run(&script),
                "chunks of {n}"
            );
        }
    }

    #[test]
    fn parse_size_bounds() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        assert_eq!(parse_size(b"1000000000"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"1 "), None);
        assert_eq!(parse_size(b"-1"), None);
    }
}
