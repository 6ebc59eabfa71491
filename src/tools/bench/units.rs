//! Units of the `ringnats bench` command line and report: sizes (`16b`, `16kb`, `1mb`),
//! durations (`5s`, `250ms`, `1m30s`), and the number formats `nats bench` prints
//! (`1,234,567`, `18.84 MB`).
//!
//! Cold: parsed once, formatted once per report. Invariant: parsers never panic and never
//! overflow (every multiplication is checked); formatters take any finite or infinite value.

use std::time::Duration;

/// The largest `--size` accepted: nats-server caps `max_payload` at 64 MB, so anything larger
/// could never be published.
pub const SIZE_MAX: usize = 64 * 1024 * 1024;

/// Parses a message size: a whole number with an optional unit `b`, `k`/`kb`/`kib`,
/// `m`/`mb`/`mib` (any case, 1024-based as `nats bench` reads them).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits_len = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, unit) = trimmed.split_at(digits_len);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected a number such as 16, 16kb or 1mb"
        ));
    }
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?}")),
    };
    let value: usize = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    let bytes = value
        .checked_mul(multiplier)
        .filter(|&bytes| bytes <= SIZE_MAX)
        .ok_or_else(|| format!("invalid size {text:?}: at most 64mb"))?;
    Ok(bytes)
}

/// Parses a duration the way Go's `time.ParseDuration` writes them (`5s`, `1.5s`, `250ms`,
/// `1m30s`, units `ns us µs ms s m h`); a bare number is seconds. Must be above zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || format!("invalid duration {text:?}: expected e.g. 5s, 500ms or 1m30s");
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = trimmed.parse::<f64>() {
        return positive(secs_to_duration(secs).ok_or_else(bad)?, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let unit_len = rest[number_len..]
            .chars()
            .take_while(|c| c.is_alphabetic())
            .map(char::len_utf8)
            .sum::<usize>();
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        let unit = &rest[number_len..number_len + unit_len];
        let secs = number * unit_seconds(unit).ok_or_else(bad)?;
        total = total
            .checked_add(secs_to_duration(secs).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        rest = &rest[number_len + unit_len..];
    }
    positive(total, text)
}

/// `n` with thousands separators, as `nats bench` prints counts and rates: `1,234,567`.
pub fn comma(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in 1024-based units with two decimals, as nats.go `bench.HumanBytes(x, false)`:
/// `512.00 B`, `18.84 MB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if !bytes.is_finite() || bytes < 1024.0 {
        return format!("{bytes:.2} B");
    }
    let exp = ((bytes.ln() / 1024f64.ln()) as usize).clamp(1, UNITS.len());
    let scaled = bytes / 1024f64.powi(exp as i32);
    format!("{scaled:.2} {}", UNITS[exp - 1])
}

/// A latency for the report: `850ns`, `37.89us`, `1.21ms`, `2.50s`.
pub fn latency(nanos: u64) -> String {
    let value = nanos as f64;
    match nanos {
        0..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{:.2}us", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", value / 1e6),
        _ => format!("{:.2}s", value / 1e9),
    }
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    })
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

fn positive(duration: Duration, text: &str) -> Result<Duration, String> {
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be above zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("16b"), Ok(16));
        assert_eq!(parse_size("16B"), Ok(16));
        assert_eq!(parse_size("16kb"), Ok(16 * 1024));
        assert_eq!(parse_size("16KB"), Ok(16 * 1024));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("1mb"), Ok(1024 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size(" 64mb "), Ok(SIZE_MAX));
    }

    #[test]
    fn bad_sizes() {
        for text in [
            "",
            "kb",
            "-1",
            "1.5kb",
            "16 gb",
            "16xb",
            "65mb",
            "99999999999999999999999",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("invalid size"), "{text:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for text in ["", "0s", "5x", "s", "-1s", "1..2s", "0", "1e400"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn comma_groups_thousands() {
        assert_eq!(comma(0), "0");
        assert_eq!(comma(999), "999");
        assert_eq!(comma(1000), "1,000");
        assert_eq!(comma(1_234_567), "1,234,567");
        assert_eq!(comma(-1_234), "-1,234");
        assert_eq!(comma(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn human_bytes_like_nats_go() {
        assert_eq!(human_bytes(512.0), "512.00 B");
        assert_eq!(human_bytes(1024.0), "1.00 KB");
        assert_eq!(human_bytes(19_755_000.0), "18.84 MB");
        assert_eq!(human_bytes(f64::INFINITY), "inf B");
        assert_eq!(human_bytes(1e30), "867361737988.40 EB");
    }

    #[test]
    fn latency_units() {
        assert_eq!(latency(850), "850ns");
        assert_eq!(latency(37_891), "37.89us");
        assert_eq!(latency(1_210_000), "1.21ms");
        assert_eq!(latency(2_500_000_000), "2.50s");
    }
}
