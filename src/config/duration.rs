//! Go duration strings (`time.ParseDuration`): `"30s"`, `"1h30m"`, `"1.5s"`, `"500ms"`.
//!
//! Cold: config load only. Invariant: error texts are worded as Go's (`time: unknown unit "x"
//! in duration "30x"`) because nats-server passes them through and users search for them.
//! Negative durations are rejected: no option we read can use one.

use std::time::Duration;

/// Parses a Go duration string. Units: `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = parse_component(rest, text)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(invalid)?;
        rest = after;
    }
    if negative && total_nanos > 0 {
        return Err(format!(
            "time: negative duration \"{text}\" is not allowed here"
        ));
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| invalid())?;
    // The remainder of a division by 10^9 always fits in u32.
    let sub_nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub_nanos))
}

/// One `<number>[.<fraction>]<unit>` component; returns its nanoseconds and the rest.
fn parse_component<'a>(rest: &'a str, text: &str) -> Result<(u128, &'a str), String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, mut after) = rest.split_at(int_len);
    let mut frac_part = "";
    if let Some(f) = after.strip_prefix('.') {
        let frac_len = f.bytes().take_while(u8::is_ascii_digit).count();
        (frac_part, after) = f.split_at(frac_len);
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(invalid());
    }
    let unit_len = after
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(after.len());
    let (unit, after) = after.split_at(unit_len);
    if unit.is_empty() {
        return Err(format!("time: missing unit in duration \"{text}\""));
    }
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "time: unknown unit \"{unit}\" in duration \"{text}\""
            ));
        }
    };
    let whole: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| invalid())?
    };
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
    nanos = nanos
        .checked_add(fraction_nanos(frac_part, unit_nanos))
        .ok_or_else(invalid)?;
    Ok((nanos, after))
}

/// The fraction digits scaled by the unit, truncated toward zero like Go.
fn fraction_nanos(frac: &str, unit_nanos: u128) -> u128 {
    let mut scale = unit_nanos;
    let mut nanos: u128 = 0;
    for digit in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos += u128::from(digit - b'0') * scale;
    }
    nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_go_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("+1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1.9s"), Ok(Duration::from_millis(1900)));
    }

    #[test]
    fn invalid_durations_use_go_wording() {
        assert_eq!(
            parse_go_duration("30x"),
            Err("time: unknown unit \"x\" in duration \"30x\"".to_string())
        );
        assert_eq!(
            parse_go_duration("30"),
            Err("time: missing unit in duration \"30\"".to_string())
        );
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".to_string())
        );
        assert_eq!(
            parse_go_duration("zzzq"),
            Err("time: invalid duration \"zzzq\"".to_string())
        );
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("99999999999999999999999h").is_err());
    }
}
