//! The generic config tree: `Value`, `Map`, `Entry` and `Pos`.
//!
//! Cold: built once per config load by `parser`, then walked by `model` (and later by `auth`).
//! Invariant: every value and every map entry carries the (file, line) it was read from, so any
//! error found while walking the tree can name where it came from. Typed accessors
//! (`expect_*`) turn a wrong type into a `ConfigError::Invalid` at that position.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::ConfigError;
use crate::config::duration::parse_go_duration;

/// Where a value or key was read: the file (as given) and the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    pub file: Arc<Path>,
    pub line: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One config value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub pos: Pos,
}

/// The value types of the nats-server config format.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// Double-quoted (escapes applied), single-quoted (raw), unquoted or block string.
    String(String),
    /// Integer, size suffix already applied (`512k` is 512000).
    Integer(i64),
    Float(f64),
    /// `true/false`, `yes/no`, `on/off`, case-insensitive, unquoted only.
    Bool(bool),
    /// Unquoted Zulu datetime `2006-01-02T15:04:05Z`.
    DateTime(DateTime),
    Array(Vec<Value>),
    Map(Map),
}

/// A UTC instant with second precision (what the config format can express).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// Seconds since the Unix epoch (may be negative).
    pub unix_seconds: i64,
}

/// A map (the document itself, or `{ ... }`). Keeps entries in file order; duplicates are kept
/// and lookups return the last one, as nats-server's Go map assignment does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<Entry>,
}

/// One `key: value` entry of a map.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key as written (case kept); match it case-insensitively.
    pub key: String,
    /// Position of the key.
    pub pos: Pos,
    pub value: Value,
    pub(crate) used_as_variable: bool,
}

impl Entry {
    /// True when some `$KEY` reference used this entry as a variable. nats-server skips such
    /// entries when it reports unknown fields (`IsUsedVariable`).
    pub fn is_used_variable(&self) -> bool {
        self.used_as_variable
    }

    /// The key in lower case, as nats-server matches option names.
    pub fn key_lower(&self) -> String {
        self.key.to_ascii_lowercase()
    }

    /// An `Invalid` error at this entry's position naming its key.
    pub fn error(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            pos: self.pos.clone(),
            key: self.key.clone(),
            msg: msg.into(),
        }
    }
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    /// The last entry whose key matches `key` case-insensitively.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// The value of the last entry whose key matches `key` case-insensitively.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    /// Entries in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry (used by the parser; public so tests and later code can build trees).
    pub fn push(&mut self, key: String, pos: Pos, value: Value) {
        self.entries.push(Entry {
            key,
            pos,
            value,
            used_as_variable: false,
        });
    }

    /// Variable lookup: exact (case-sensitive) key, last definition wins; marks it used.
    pub(crate) fn take_variable(&mut self, name: &str) -> Option<Value> {
        let entry = self.entries.iter_mut().rev().find(|e| e.key == name)?;
        entry.used_as_variable = true;
        Some(entry.value.clone())
    }

    pub(crate) fn append(&mut self, other: Map) {
        self.entries.extend(other.entries);
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl Value {
    /// A short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::String(_) => "string",
            ValueKind::Integer(_) => "integer",
            ValueKind::Float(_) => "float",
            ValueKind::Bool(_) => "boolean",
            ValueKind::DateTime(_) => "datetime",
            ValueKind::Array(_) => "array",
            ValueKind::Map(_) => "map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Integer(i) => Some(i),
            _ => None,
        }
    }

    /// A float, or an integer widened to a float.
    pub fn as_float(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Float(f) => Some(f),
            ValueKind::Integer(i) => Some(i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.kind {
            ValueKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An unquoted datetime, or a string in RFC 3339 form (`"2026-01-01T00:00:00Z"`,
    /// offsets and fractional seconds accepted, fraction dropped).
    pub fn as_datetime(&self) -> Option<DateTime> {
        match &self.kind {
            ValueKind::DateTime(d) => Some(*d),
            ValueKind::String(s) => DateTime::parse_rfc3339(s),
            _ => None,
        }
    }

    /// An `Invalid` error at this value's position naming `key`.
    pub fn error(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            pos: self.pos.clone(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn type_error(&self, key: &str, want: &str) -> ConfigError {
        self.error(key, format!("expected {want}, got {}", self.type_name()))
    }

    pub fn expect_str(&self, key: &str) -> Result<&str, ConfigError> {
        self.as_str()
            .ok_or_else(|| self.type_error(key, "a string"))
    }

    pub fn expect_int(&self, key: &str) -> Result<i64, ConfigError> {
        self.as_int()
            .ok_or_else(|| self.type_error(key, "an integer"))
    }

    pub fn expect_bool(&self, key: &str) -> Result<bool, ConfigError> {
        self.as_bool()
            .ok_or_else(|| self.type_error(key, "a boolean"))
    }

    pub fn expect_map(&self, key: &str) -> Result<&Map, ConfigError> {
        self.as_map().ok_or_else(|| self.type_error(key, "a map"))
    }

    pub fn expect_array(&self, key: &str) -> Result<&[Value], ConfigError> {
        self.as_array()
            .ok_or_else(|| self.type_error(key, "an array"))
    }

    /// A string or an array of strings (nats-server accepts both for subject lists, trusted
    /// keys and the like).
    pub fn expect_strings(&self, key: &str) -> Result<Vec<&str>, ConfigError> {
        match &self.kind {
            ValueKind::String(s) => Ok(vec![s.as_str()]),
            ValueKind::Array(items) => items.iter().map(|v| v.expect_str(key)).collect(),
            _ => Err(self.type_error(key, "a string or an array of strings")),
        }
    }

    /// A non-negative integer that fits in `usize`.
    pub fn expect_usize(&self, key: &str) -> Result<usize, ConfigError> {
        let n = self.expect_int(key)?;
        usize::try_from(n).map_err(|_| self.error(key, format!("{n} must not be negative")))
    }

    /// A Go duration string (`"2m"`, `"1h30m"`, `"500ms"`).
    pub fn expect_duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let s = self
            .as_str()
            .ok_or_else(|| self.type_error(key, "a duration string"))?;
        parse_go_duration(s).map_err(|e| self.error(key, e))
    }

    /// A number of seconds (integer or float) or a Go duration string, as
    /// `authorization.timeout` accepts.
    pub fn expect_seconds_or_duration(&self, key: &str) -> Result<Duration, ConfigError> {
        if let ValueKind::String(_) = self.kind {
            return self.expect_duration(key);
        }
        let secs = self
            .as_float()
            .ok_or_else(|| self.type_error(key, "seconds or a duration"))?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| self.error(key, format!("invalid number of seconds {secs}")))
    }
}

impl DateTime {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
    pub fn parse_rfc3339(s: &str) -> Option<DateTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b[10] != b'T' && b[10] != b't' {
            return None;
        }
        let date = civil_seconds(&b[..10], &b[11..19])?;
        let mut rest = &b[19..];
        if let Some(after_dot) = rest.strip_prefix(b".") {
            let digits = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            rest = &after_dot[digits..];
        }
        let offset = match rest {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = two_digits(*h1, *h2)?;
                let minutes = two_digits(*m1, *m2)?;
                let secs = i64::from(hours * 3600 + minutes * 60);
                if *sign == b'+' { -secs } else { secs }
            }
            _ => return None,
        };
        Some(DateTime {
            unix_seconds: date + offset,
        })
    }

    /// Parses exactly the unquoted Zulu form `2006-01-02T15:04:05Z`.
    pub(crate) fn parse_zulu(s: &str) -> Option<DateTime> {
        let b = s.as_bytes();
        if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
            return None;
        }
        civil_seconds(&b[..10], &b[11..19]).map(|unix_seconds| DateTime { unix_seconds })
    }

    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_secs(self.unix_seconds.unsigned_abs());
        if self.unix_seconds >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    if a.is_ascii_digit() && b.is_ascii_digit() {
        Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    } else {
        None
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS` to seconds since the epoch (proleptic Gregorian, UTC).
fn civil_seconds(date: &[u8], time: &[u8]) -> Option<i64> {
    if date.len() != 10 || date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    if time.len() != 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let year = i64::from(two_digits(date[0], date[1])? * 100 + two_digits(date[2], date[3])?);
    let month = two_digits(date[5], date[6])?;
    let day = two_digits(date[8], date[9])?;
    let hour = two_digits(time[0], time[1])?;
    let minute = two_digits(time[3], time[4])?;
    let second = two_digits(time[6], time[7])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zulu_datetimes() {
        assert_eq!(
            DateTime::parse_zulu("1970-01-01T00:00:00Z")
                .unwrap()
                .unix_seconds,
            0
        );
        assert_eq!(
            DateTime::parse_zulu("2006-01-02T15:04:05Z")
                .unwrap()
                .unix_seconds,
            1_136_214_245
        );
        assert_eq!(
            DateTime::parse_zulu("2026-01-01T00:00:00Z")
                .unwrap()
                .unix_seconds,
            1_767_225_600
        );
        assert!(DateTime::parse_zulu("2006-13-02T15:04:05Z").is_none());
        assert!(DateTime::parse_zulu("2006-01-02T15:04:05").is_none());
    }

    #[test]
    fn rfc3339_offsets_and_fractions() {
        let z = DateTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let plus = DateTime::parse_rfc3339("2026-01-01T02:00:00+02:00").unwrap();
        let frac = DateTime::parse_rfc3339("2026-01-01T00:00:00.123Z").unwrap();
        assert_eq!(z, plus);
        assert_eq!(z, frac);
        assert!(DateTime::parse_rfc3339("2026-01-01T00:00:00.Z").is_none());
        assert!(DateTime::parse_rfc3339("2026-01-01").is_none());
    }
}
