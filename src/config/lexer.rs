//! Character-level scanning of the nats-server config format: keys, strings, numbers with size
//! suffixes, booleans, datetimes and `$variable` references.
//!
//! Cold: config load only. Invariant: the cursor only ever stops on an ASCII byte or at the end,
//! so every slice it cuts out of the source is valid UTF-8; no input makes it panic, and every
//! loop advances the cursor. Wording of errors follows nats-server's `conf/lex.go` where it has one.

use crate::config::value::DateTime;

/// A scalar value as lexed, before variables are resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    DateTime(DateTime),
    /// `$NAME` (name without the `$`).
    Variable(String),
}

/// A position in the source with the current line number.
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
}

/// The bcrypt prefix nats-server special-cases: unquoted `$2a$...` is a literal string.
const BCRYPT_PREFIX: &str = "2a$";

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a str) -> Cursor<'a> {
        Cursor {
            src,
            pos: 0,
            line: 1,
        }
    }

    pub(crate) fn line(&self) -> u32 {
        self.line
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + ahead).copied()
    }

    /// Consumes one byte (or one whole char when not ASCII), counting newlines.
    pub(crate) fn bump(&mut self) {
        let Some(c) = self.src[self.pos..].chars().next() else {
            return;
        };
        if c == '\n' {
            self.line += 1;
        }
        self.pos += c.len_utf8();
    }

    pub(crate) fn skip_inline_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// True at `#` or `//`.
    pub(crate) fn at_comment(&self) -> bool {
        match self.peek() {
            Some(b'#') => true,
            Some(b'/') => self.peek_at(1) == Some(b'/'),
            _ => false,
        }
    }

    /// Skips to (not past) the end of the line.
    pub(crate) fn skip_to_eol(&mut self) {
        match self.src[self.pos..].find('\n') {
            Some(i) => self.pos += i,
            None => self.pos = self.src.len(),
        }
    }

    /// Skips whitespace, newlines and comments; with `separators` also `;` and `,`.
    pub(crate) fn skip_blank(&mut self, separators: bool) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.bump(),
                Some(b';' | b',') if separators => self.bump(),
                _ if self.at_comment() => self.skip_to_eol(),
                _ => return,
            }
        }
    }

    /// True at the end of the input or of the current line.
    pub(crate) fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n' | b'\r'))
    }

    /// A key: quoted, or a run of bytes up to whitespace, `:` or `=`.
    pub(crate) fn key(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'"') => self.double_quoted(),
            Some(b'\'') => self.single_quoted(),
            _ => {
                let start = self.pos;
                while !matches!(
                    self.peek(),
                    None | Some(b' ' | b'\t' | b'\n' | b'\r' | b':' | b'=')
                ) {
                    self.bump();
                }
                if self.pos == start {
                    return Err(format!("Expected a key but got {}", self.describe_next()));
                }
                Ok(self.src[start..self.pos].to_string())
            }
        }
    }

    /// The path after `include`: quoted, or a run up to whitespace or the line end.
    pub(crate) fn include_path(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'"') => self.double_quoted(),
            Some(b'\'') => self.single_quoted(),
            _ => {
                let start = self.pos;
                while !matches!(
                    self.peek(),
                    None | Some(b' ' | b'\t' | b'\n' | b'\r' | b';')
                ) {
                    self.bump();
                }
                if self.pos == start {
                    return Err("Expected a path after include".to_string());
                }
                Ok(self.src[start..self.pos].to_string())
            }
        }
    }

    /// A scalar value starting at the cursor (the caller handles `{` and `[`).
    pub(crate) fn scalar(&mut self) -> Result<Scalar, String> {
        match self.peek() {
            Some(b'"') => self.double_quoted().map(Scalar::Str),
            Some(b'\'') => self.single_quoted().map(Scalar::Str),
            Some(b'(') => self.block().map(Scalar::Str),
            Some(b'-' | b'0'..=b'9') => self.number_or_string(),
            Some(b';' | b',' | b'}' | b']' | b'\n' | b'\r') | None => {
                Err(format!("Expected value but found {}", self.describe_next()))
            }
            Some(_) => Ok(self.unquoted()),
        }
    }

    fn describe_next(&self) -> String {
        match self.src[self.pos..].chars().next() {
            None => "EOF".to_string(),
            Some('\n' | '\r') => "new line".to_string(),
            Some(c) => format!("'{c}'"),
        }
    }

    /// True where an unquoted value ends.
    fn at_value_end(&self) -> bool {
        matches!(
            self.peek(),
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b';' | b',' | b']' | b'}')
        )
    }

    fn run_to_value_end(&mut self) {
        while !self.at_value_end() {
            self.bump();
        }
    }

    /// An unquoted string, boolean or variable reference.
    fn unquoted(&mut self) -> Scalar {
        let start = self.pos;
        self.run_to_value_end();
        let text = &self.src[start..self.pos];
        classify_unquoted(text)
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.src[self.pos..].chars().next() else {
                return Err("Unexpected EOF processing quoted string.".to_string());
            };
            self.bump();
            match c {
                '"' => return Ok(out),
                '\\' => out.push(self.escape()?),
                _ => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let Some(c) = self.src[self.pos..].chars().next() else {
            return Err("Unexpected EOF processing escape.".to_string());
        };
        self.bump();
        match c {
            't' => Ok('\t'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            '"' => Ok('"'),
            '\\' => Ok('\\'),
            'x' => self.hex_escape(2),
            'u' => self.hex_escape(4),
            _ => Err(format!(
                "Invalid escape character '{c}'. Only the following escape characters are \
                 allowed: \\xXX, \\uXXXX, \\t, \\n, \\r, \\\", \\\\."
            )),
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, String> {
        let hex = self.src.get(self.pos..self.pos + digits).unwrap_or("");
        let code = if hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(hex, 16).ok()
        } else {
            None
        };
        let ch = code.and_then(char::from_u32);
        let Some(ch) = ch else {
            return Err(format!(
                "Expected {digits} hexadecimal digits in escape sequence"
            ));
        };
        for _ in 0..digits {
            self.bump();
        }
        Ok(ch)
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.bump(); // opening quote
        let start = self.pos;
        match self.src[start..].find('\'') {
            Some(len) => {
                while self.pos < start + len {
                    self.bump();
                }
                self.bump(); // closing quote
                Ok(self.src[start..start + len].to_string())
            }
            None => Err("Unexpected EOF processing quoted string.".to_string()),
        }
    }

    /// `( ... )` where the closing `)` stands alone at the start of a line, followed by a
    /// newline or the end (nats-server `lexBlock`). The text keeps its newlines.
    fn block(&mut self) -> Result<String, String> {
        self.bump(); // `(`
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = start;
        while let Some(rel) = self.src[i..].find("\n)") {
            let close = i + rel + 1;
            if matches!(bytes.get(close + 1), None | Some(b'\n' | b'\r')) {
                while self.pos <= close {
                    self.bump();
                }
                return Ok(self.src[start..close].to_string());
            }
            i = close;
        }
        Err("Unexpected EOF processing block.".to_string())
    }

    /// Integer (with size suffix), float, datetime, IP-like string or plain string.
    fn number_or_string(&mut self) -> Result<Scalar, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(format!(
                    "Expected a digit but got {}.",
                    self.describe_next()
                ));
            }
        }
        self.skip_digits();
        match self.peek() {
            Some(b'-') if self.pos - start == 4 => self.datetime(start),
            Some(b'.') => self.float_or_string(start),
            Some(c) if is_size_suffix(c) => self.sized_integer(start),
            _ if self.at_value_end() => parse_integer(&self.src[start..self.pos]),
            _ => Ok(self.string_from(start)),
        }
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.bump();
        }
    }

    fn string_from(&mut self, start: usize) -> Scalar {
        self.run_to_value_end();
        Scalar::Str(self.src[start..self.pos].to_string())
    }

    fn datetime(&mut self, start: usize) -> Result<Scalar, String> {
        self.run_to_value_end();
        let text = &self.src[start..self.pos];
        DateTime::parse_zulu(text)
            .map(Scalar::DateTime)
            .ok_or_else(|| {
                format!("Invalid datetime '{text}': all ISO8601 dates must be in full Zulu form")
            })
    }

    fn float_or_string(&mut self, start: usize) -> Result<Scalar, String> {
        self.bump(); // `.`
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(format!(
                "Floats must have a digit after the '.', but got {} instead.",
                self.describe_next()
            ));
        }
        self.skip_digits();
        if !self.at_value_end() {
            // `127.0.0.1`, `1.2.3:4222` and the like are strings.
            return Ok(self.string_from(start));
        }
        let text = &self.src[start..self.pos];
        text.parse()
            .map(Scalar::Float)
            .map_err(|_| format!("Invalid float value '{text}'"))
    }

    fn sized_integer(&mut self, start: usize) -> Result<Scalar, String> {
        self.bump(); // the suffix letter
        while matches!(self.peek(), Some(b'b' | b'B' | b'i' | b'I')) {
            self.bump();
        }
        if !self.at_value_end() {
            return Ok(self.string_from(start));
        }
        parse_integer(&self.src[start..self.pos])
    }
}

fn is_size_suffix(c: u8) -> bool {
    matches!(
        c.to_ascii_lowercase(),
        b'k' | b'm' | b'g' | b't' | b'p' | b'e'
    )
}

/// An unquoted word: boolean, `$variable` (except the `$2a$` bcrypt case) or string.
fn classify_unquoted(text: &str) -> Scalar {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Scalar::Bool(true),
        "false" | "no" | "off" => return Scalar::Bool(false),
        _ => {}
    }
    match text.strip_prefix('$') {
        Some(name) if name.starts_with(BCRYPT_PREFIX) => Scalar::Str(text.to_string()),
        Some(name) => Scalar::Variable(name.to_string()),
        None => Scalar::Str(text.to_string()),
    }
}

/// `-?digits` plus an optional size suffix (`k`=10^3, `kb`/`ki`/`kib`=2^10, ... `e`, `eb`).
fn parse_integer(text: &str) -> Result<Scalar, String> {
    let digits_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'-')
        .count();
    let (digits, suffix) = text.split_at(digits_len);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("integer '{text}' is out of the range"))?;
    let multiplier = size_multiplier(&suffix.to_ascii_lowercase())
        .ok_or_else(|| format!("invalid size suffix in '{text}'"))?;
    n.checked_mul(multiplier)
        .map(Scalar::Int)
        .ok_or_else(|| format!("integer '{text}' is out of the range"))
}

fn size_multiplier(suffix: &str) -> Option<i64> {
    let (letter, rest) = match suffix.as_bytes() {
        [] => return Some(1),
        [letter, rest @ ..] => (*letter, rest),
    };
    let power: u32 = match letter {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        b'e' => 6,
        _ => return None,
    };
    match rest {
        [] => Some(1000_i64.pow(power)),
        b"b" | b"i" | b"ib" => Some(1024_i64.pow(power)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(src: &str) -> Result<Scalar, String> {
        Cursor::new(src).scalar()
    }

    #[test]
    fn size_suffixes() {
        assert_eq!(scalar("512k"), Ok(Scalar::Int(512_000)));
        assert_eq!(scalar("2MB"), Ok(Scalar::Int(2 * 1024 * 1024)));
        assert_eq!(scalar("1kb"), Ok(Scalar::Int(1024)));
        assert_eq!(scalar("1Ki"), Ok(Scalar::Int(1024)));
        assert_eq!(scalar("1KiB"), Ok(Scalar::Int(1024)));
        assert_eq!(scalar("3m"), Ok(Scalar::Int(3_000_000)));
        assert_eq!(scalar("1mib"), Ok(Scalar::Int(1 << 20)));
        assert_eq!(scalar("1g"), Ok(Scalar::Int(1_000_000_000)));
        assert_eq!(scalar("1GB"), Ok(Scalar::Int(1 << 30)));
        assert_eq!(scalar("1t"), Ok(Scalar::Int(1_000_000_000_000)));
        assert_eq!(scalar("1tb"), Ok(Scalar::Int(1 << 40)));
        assert_eq!(scalar("1p"), Ok(Scalar::Int(1_000_000_000_000_000)));
        assert_eq!(scalar("1pb"), Ok(Scalar::Int(1 << 50)));
        assert_eq!(scalar("1e"), Ok(Scalar::Int(1_000_000_000_000_000_000)));
        assert_eq!(scalar("1eb"), Ok(Scalar::Int(1 << 60)));
        assert!(scalar("16eb").unwrap_err().contains("out of the range"));
        assert!(scalar("5kbb").unwrap_err().contains("invalid size suffix"));
        assert_eq!(scalar("-2k"), Ok(Scalar::Int(-2000)));
    }

    #[test]
    fn numbers_and_number_like_strings() {
        assert_eq!(scalar("4222"), Ok(Scalar::Int(4222)));
        assert_eq!(scalar("-1"), Ok(Scalar::Int(-1)));
        assert_eq!(scalar("1.5"), Ok(Scalar::Float(1.5)));
        assert_eq!(
            scalar("127.0.0.1:4222"),
            Ok(Scalar::Str("127.0.0.1:4222".into()))
        );
        assert_eq!(scalar("1.2.3"), Ok(Scalar::Str("1.2.3".into())));
        assert_eq!(scalar("0x10"), Ok(Scalar::Str("0x10".into())));
        assert_eq!(scalar("5x"), Ok(Scalar::Str("5x".into())));
        assert!(
            scalar("5.")
                .unwrap_err()
                .starts_with("Floats must have a digit")
        );
        assert!(
            scalar("-x")
                .unwrap_err()
                .starts_with("Expected a digit but got 'x'")
        );
        assert!(
            scalar("99999999999999999999")
                .unwrap_err()
                .contains("out of the range")
        );
    }

    #[test]
    fn datetimes() {
        let Ok(Scalar::DateTime(d)) = scalar("2006-01-02T15:04:05Z") else {
            panic!()
        };
        assert_eq!(d.unix_seconds, 1_136_214_245);
        assert!(scalar("2006-01-02").is_err());
        assert!(scalar("2006-01-02T15:04:05+01:00").is_err());
    }

    #[test]
    fn booleans_any_case() {
        for t in ["true", "TRUE", "yes", "Yes", "on", "ON"] {
            assert_eq!(scalar(t), Ok(Scalar::Bool(true)), "{t}");
        }
        for f in ["false", "False", "no", "NO", "off", "Off"] {
            assert_eq!(scalar(f), Ok(Scalar::Bool(false)), "{f}");
        }
        assert_eq!(scalar("\"true\""), Ok(Scalar::Str("true".into())));
    }

    #[test]
    fn strings() {
        assert_eq!(
            scalar(r#""a\tb\n\"\\\x41\u00e9""#),
            Ok(Scalar::Str("a\tb\n\"\\Aé".into()))
        );
        assert_eq!(scalar(r"'a\nb'"), Ok(Scalar::Str(r"a\nb".into())));
        assert_eq!(scalar("abc def"), Ok(Scalar::Str("abc".into())));
        assert_eq!(scalar("a$b"), Ok(Scalar::Str("a$b".into())));
        assert!(
            scalar(r#""\q""#)
                .unwrap_err()
                .starts_with("Invalid escape character 'q'")
        );
        assert!(scalar("\"abc").unwrap_err().contains("Unexpected EOF"));
        assert!(scalar("'abc").unwrap_err().contains("Unexpected EOF"));
        assert!(scalar(r#""\u00""#).is_err());
    }

    #[test]
    fn block_strings() {
        assert_eq!(scalar("(\nabc\n)"), Ok(Scalar::Str("\nabc\n".into())));
        assert_eq!(scalar("(\nabc)\n)\n"), Ok(Scalar::Str("\nabc)\n".into())));
        assert_eq!(
            scalar("( abc )").unwrap_err(),
            "Unexpected EOF processing block."
        );
        assert_eq!(
            scalar("(\nabc\n) x").unwrap_err(),
            "Unexpected EOF processing block."
        );
    }

    #[test]
    fn variables_and_bcrypt() {
        assert_eq!(scalar("$FOO"), Ok(Scalar::Variable("FOO".into())));
        assert_eq!(scalar("$2a$11$abc"), Ok(Scalar::Str("$2a$11$abc".into())));
        assert_eq!(
            scalar("$2b$11$abc"),
            Ok(Scalar::Variable("2b$11$abc".into()))
        );
        assert_eq!(scalar("\"$FOO\""), Ok(Scalar::Str("$FOO".into())));
    }
}
