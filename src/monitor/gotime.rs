//! Times and durations printed the way nats-server's monitoring JSON prints them: RFC 3339
//! with nanoseconds (Go's `time.RFC3339Nano`, trailing zeros trimmed), Go's `Duration.String`
//! (`rtt`), and nats-server's `myUptime` (`uptime`, `idle`).
//!
//! Cold: runs per monitoring request. No clock is read here; callers pass the times.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-12-07T15:09:46.358258977Z`, as Go marshals a UTC `time.Time` (RFC3339Nano: the
/// fraction loses its trailing zeros and disappears when zero).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // One allocation: a `/connz` page prints two of these per connection.
    let mut out = String::with_capacity(RFC3339_NANO_LEN);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    let (mut frac, mut width) = (since.subsec_nanos(), 9);
    if frac > 0 {
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let _ = write!(out, ".{frac:0width$}");
    }
    out.push('Z');
    out
}

/// `2026-12-07T15:09:46.358258977Z`: the longest `rfc3339_nano` of a four-digit year.
const RFC3339_NANO_LEN: usize = 30;

/// Go's `time.Duration.String`: `0s`, `750ns`, `1.5µs`, `1.741214ms`, `2.5s`, `1m30s`,
/// `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 6));
    }
    let secs = d.as_secs();
    let mut out = String::new();
    let (hours, minutes) = (secs / 3600, (secs / 60) % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h{minutes}m");
    } else if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let in_minute = u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos());
    let _ = write!(out, "{}s", decimal(in_minute, 9));
    out
}

/// nats-server `myUptime`: whole seconds, as `5s`, `2m5s`, `1h2m5s`, `3d1h2m5s`, `1y3d1h2m5s`.
pub fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours) = (secs / 60, secs / 3600);
    let (days, years) = (hours / 24, hours / 24 / 365);
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// nats-server `getRTT`: under a millisecond an RTT is truncated to microseconds.
pub fn rtt(d: Duration) -> String {
    if d > Duration::from_micros(1) && d < Duration::from_millis(1) {
        go_duration(Duration::from_micros(d.as_micros() as u64))
    } else {
        go_duration(d)
    }
}

/// `value / 10^places` with the fraction's trailing zeros (and a bare point) dropped.
fn decimal(value: u128, places: u32) -> String {
    let scale = 10u128.pow(places);
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_rfc3339_nano() {
        let t = UNIX_EPOCH + Duration::new(1_796_656_186, 358_258_977);
        assert_eq!(rfc3339_nano(t), "2026-12-07T15:09:46.358258977Z");
        let t = UNIX_EPOCH + Duration::new(1_796_656_186, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2026-12-07T15:09:46.12Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 0);
        assert_eq!(rfc3339_nano(t), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn durations_print_as_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(750)), "750ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(1_741_214)), "1.741214ms");
        assert_eq!(go_duration(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(rtt(Duration::from_nanos(546_123)), "546µs");
        assert_eq!(rtt(Duration::from_nanos(1_741_214)), "1.741214ms");
    }

    #[test]
    fn uptime_prints_as_my_uptime() {
        assert_eq!(uptime(Duration::from_millis(999)), "0s");
        assert_eq!(uptime(Duration::from_secs(125)), "2m5s");
        assert_eq!(uptime(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(uptime(Duration::from_secs(90_000)), "1d1h0m0s");
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }
}
