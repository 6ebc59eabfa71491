//! Frame scanner for what a NATS server sends a client: `MSG`, `HMSG`, `PING`, `PONG`, `+OK`,
//! `-ERR`, `INFO`.
//!
//! Hot: `scan` runs once per received message in every bench subscriber. It finds the line end
//! with `memchr`, reads the size from the end of the control line and skips the payload without
//! looking at it; it never allocates and never copies. Invariant: a frame is reported only when
//! all of its bytes (payload and trailing `\r\n` included) are in the buffer, and the byte count
//! it reports is exactly the frame's length, so the caller can advance by it.

/// Longest control line accepted (nats-server's `MAX_CONTROL_LINE_SIZE` is 4096).
pub const CONTROL_LINE_MAX: usize = 4096;

/// One complete frame, borrowing from the read buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Frame<'a> {
    Msg(Msg<'a>),
    Ping,
    Pong,
    Ok,
    /// The text after `-ERR `, quotes kept.
    Err(&'a [u8]),
    /// The JSON after `INFO `.
    Info(&'a [u8]),
}

/// A delivered message (`MSG` or `HMSG`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Msg<'a> {
    /// The control line after the op: `subject sid [reply] [hdr_len] total_len`.
    pub args: &'a [u8],
    /// Header and payload bytes as sent (headers first for `HMSG`).
    pub payload: &'a [u8],
    pub has_headers: bool,
}

impl<'a> Msg<'a> {
    /// The reply subject, if the message carries one.
    pub fn reply(&self) -> Option<&'a [u8]> {
        let mut tokens = self.args.split(|&b| b == b' ').filter(|t| !t.is_empty());
        let count = tokens.clone().count();
        let with_reply = if self.has_headers { 5 } else { 4 };
        if count == with_reply {
            tokens.nth(2)
        } else {
            None
        }
    }
}

/// What `scan` found at the start of the buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Scan<'a> {
    /// A whole frame and its length in bytes.
    Frame(Frame<'a>, usize),
    /// Not yet a whole frame; once the control line is known, the frame's full length.
    Incomplete(Option<usize>),
}

/// Why the bytes cannot be a server frame.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ScanError {
    ControlLineTooLong,
    UnknownOp,
    BadMsgLine,
}

impl ScanError {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanError::ControlLineTooLong => "control line too long",
            ScanError::UnknownOp => "unknown protocol operation",
            ScanError::BadMsgLine => "malformed MSG frame",
        }
    }
}

/// Scans one frame at the start of `buf`.
pub fn scan(buf: &[u8]) -> Result<Scan<'_>, ScanError> {
    let Some(nl) = memchr::memchr(b'\n', &buf[..buf.len().min(CONTROL_LINE_MAX)]) else {
        if buf.len() >= CONTROL_LINE_MAX {
            return Err(ScanError::ControlLineTooLong);
        }
        return Ok(Scan::Incomplete(None));
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let after_line = nl + 1;
    if let Some(args) = line.strip_prefix(b"MSG ") {
        return scan_msg(buf, args, after_line, false);
    }
    if let Some(args) = line.strip_prefix(b"HMSG ") {
        return scan_msg(buf, args, after_line, true);
    }
    let frame = match line {
        b"PING" => Frame::Ping,
        b"PONG" => Frame::Pong,
        b"+OK" => Frame::Ok,
        _ => {
            if let Some(text) = line.strip_prefix(b"-ERR ") {
                Frame::Err(text)
            } else if let Some(json) = line.strip_prefix(b"INFO ") {
                Frame::Info(json)
            } else {
                return Err(ScanError::UnknownOp);
            }
        }
    };
    Ok(Scan::Frame(frame, after_line))
}

fn scan_msg<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    after_line: usize,
    has_headers: bool,
) -> Result<Scan<'a>, ScanError> {
    let size = last_number(args).ok_or(ScanError::BadMsgLine)?;
    let payload_end = after_line.checked_add(size).ok_or(ScanError::BadMsgLine)?;
    let frame_len = payload_end + 2;
    if buf.len() < frame_len {
        return Ok(Scan::Incomplete(Some(frame_len)));
    }
    if &buf[payload_end..frame_len] != b"\r\n" {
        return Err(ScanError::BadMsgLine);
    }
    let msg = Msg {
        args,
        payload: &buf[after_line..payload_end],
        has_headers,
    };
    Ok(Scan::Frame(Frame::Msg(msg), frame_len))
}

/// The decimal number that ends `args` (the total size of a `MSG` or `HMSG`).
fn last_number(args: &[u8]) -> Option<usize> {
    let trimmed = args.trim_ascii_end();
    let start = trimmed
        .iter()
        .rposition(|&b| b == b' ' || b == b'\t')
        .map_or(0, |i| i + 1);
    let digits = &trimmed[start..];
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `pieces` fed one after another, returning every frame seen (as text).
    fn scan_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while let Scan::Frame(frame, len) = scan(&buf).unwrap() {
                out.push(format!("{frame:?}"));
                buf.drain(..len);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn every_split_gives_the_same_frames() {
        let input: &[u8] = b"INFO {\"a\":1}\r\nMSG foo 1 5\r\nhello\r\nPING\r\n\
            MSG foo 1 _INBOX.x 0\r\n\r\nHMSG foo 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n+OK\r\n\
            PONG\r\n-ERR 'Slow Consumer'\r\n";
        let whole = scan_pieces([input]);
        assert_eq!(whole.len(), 8, "{whole:?}");
        for split in 0..input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(scan_pieces([a, b]), whole, "split at {split}");
        }
        assert_eq!(scan_pieces(input.chunks(1)), whole, "one byte at a time");
    }

    #[test]
    fn msg_fields_and_reply() {
        let Scan::Frame(Frame::Msg(msg), len) = scan(b"MSG foo 1 bar 3\r\nabc\r\nX").unwrap()
        else {
            panic!("expected a MSG");
        };
        assert_eq!(len, 22);
        assert_eq!(msg.payload, b"abc");
        assert_eq!(msg.reply(), Some(&b"bar"[..]));
        let Scan::Frame(Frame::Msg(msg), _) = scan(b"MSG foo 1 3\r\nabc\r\n").unwrap() else {
            panic!("expected a MSG");
        };
        assert_eq!(msg.reply(), None);
        let Scan::Frame(Frame::Msg(msg), _) = scan(b"HMSG f 1 r 2 2\r\nxy\r\n").unwrap() else {
            panic!("expected an HMSG");
        };
        assert!(msg.has_headers);
        assert_eq!(msg.reply(), Some(&b"r"[..]));
    }

    #[test]
    fn incomplete_reports_the_frame_length_once_known() {
        assert_eq!(scan(b"MSG foo 1 10\r\nabc"), Ok(Scan::Incomplete(Some(26))));
        assert_eq!(scan(b"MSG foo 1 1"), Ok(Scan::Incomplete(None)));
        assert_eq!(scan(b""), Ok(Scan::Incomplete(None)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(scan(b"WHAT\r\n"), Err(ScanError::UnknownOp));
        assert_eq!(scan(b"MSG foo 1 x\r\n"), Err(ScanError::BadMsgLine));
        assert_eq!(
            scan(b"MSG foo 1 99999999999\r\n"),
            Err(ScanError::BadMsgLine)
        );
        assert_eq!(scan(b"MSG foo 1 2\r\nabXY"), Err(ScanError::BadMsgLine));
        assert_eq!(scan(b"MSG\r\n"), Err(ScanError::UnknownOp));
        let long = vec![b'a'; CONTROL_LINE_MAX];
        assert_eq!(scan(&long), Err(ScanError::ControlLineTooLong));
    }
}
