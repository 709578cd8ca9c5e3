//! UTC timestamps without a calendar library: RFC 3339 out (lock files,
//! trash batches) and in (`_uploads/<uuid>/startedat`, which the registry
//! writes as Go's `time.RFC3339`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Seconds since the epoch (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

fn parts(t: SystemTime) -> (i64, u32, u32, i64, i64, i64) {
    let secs = unix_seconds(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, mo, d, s / 3600, s % 3600 / 60, s % 60)
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20240501T120000Z`: sorts like the time it names, and is a file name.
pub fn compact(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Reads `2024-05-01T12:00:00Z`, with optional fractional seconds and a
/// `Z` or `±HH:MM` offset, as Go's `time.RFC3339` writes it.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let sign = if &rest[..1] == "-" { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(i64::from(y), mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(s)
        - offset;
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// How long ago `t` was, as of `now`; zero for a time in the future.
pub fn age(now: SystemTime, t: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or_default()
}

/// `now - age`: the time before which something is `age` old. An age
/// reaching back past the earliest time the system can represent gives that
/// earliest time, never "no cutoff": nothing is then old enough.
pub fn cutoff(now: SystemTime, age: Duration) -> SystemTime {
    now.checked_sub(age).unwrap_or_else(|| {
        // Halve the step until it fits: the earliest time is platform-defined.
        let mut earliest = now;
        let mut step = age;
        while !step.is_zero() {
            match earliest.checked_sub(step) {
                Some(t) => earliest = t,
                None => step /= 2,
            }
        }
        earliest
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cutoff_too_far_back_is_the_earliest_time_not_none() {
        let now = SystemTime::now();
        assert_eq!(
            cutoff(now, Duration::from_secs(3600)),
            now - Duration::from_secs(3600)
        );
        let far = cutoff(now, Duration::MAX);
        assert!(far < UNIX_EPOCH, "{far:?}");
        let files_of_1970 = UNIX_EPOCH;
        assert!(
            files_of_1970 > far,
            "anything a filesystem holds is more recent: kept"
        );
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_714_564_800)), "2024-05-01T12:00:00Z");
        assert_eq!(compact(at(951_782_400)), "20000229T000000Z");
    }

    #[test]
    fn parses_what_the_registry_writes_and_round_trips() {
        let t = at(1_714_564_800);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789123Z"),
            Some(t + Duration::from_nanos(123_456_789))
        );
        for secs in [0, 59, 86_399, 951_782_400, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(at(secs))), Some(at(secs)));
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-13-01T12:00:00Z",
            "2024-05-01T25:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "yyyy-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
