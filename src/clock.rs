//! UTC timestamps: RFC 3339 out (lock files, trash batches, reports) and in
//! (`_uploads/<uuid>/startedat`, which the registry writes as Go's
//! `time.RFC3339`; trash batch headers), through `jiff`.

use std::time::{Duration, SystemTime};

use jiff::Timestamp;

/// A timestamp that cannot be read. Callers name the file or flag it came
/// from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 timestamp (such as 2024-05-01T12:00:00Z): {reason}")]
pub struct TimestampError {
    /// The text, as read.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// 0000-01-01T00:00:00Z: RFC 3339 writes no earlier year.
const EARLIEST: i64 = -62_167_219_200;

/// `t` as a calendar timestamp. A time outside what RFC 3339 and `jiff` can
/// write (a file's mtime may be anything) is clamped to the nearest end:
/// 0000-01-01T00:00:00Z or `jiff`'s last time, 9999-12-30T22:00:00Z.
fn timestamp(t: SystemTime) -> Timestamp {
    let earliest = Timestamp::from_second(EARLIEST).unwrap_or(Timestamp::MIN);
    match Timestamp::try_from(t) {
        Ok(ts) => ts.max(earliest),
        Err(_) if t < SystemTime::UNIX_EPOCH => earliest,
        Err(_) => Timestamp::MAX,
    }
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `20240501T120000Z`: sorts like the time it names, and is a file name.
pub fn compact(t: SystemTime) -> String {
    timestamp(t).strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Reads an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, with optional
/// fractional seconds and a `Z` or `±HH:MM` offset, as Go's `time.RFC3339`
/// writes it); surrounding whitespace is ignored. `jiff` also reads the
/// ISO 8601 forms RFC 9557 allows (`+0200`, a space for `T`, a `[zone]`
/// suffix); fractional seconds beyond nanoseconds are refused. A date that
/// does not exist (`2026-11-31`) is an error, as is a missing offset.
pub fn parse_timestamp(text: &str) -> Result<SystemTime, TimestampError> {
    let error = |reason: String| TimestampError {
        text: text.to_owned(),
        reason,
    };
    let ts: Timestamp = text
        .trim()
        .parse()
        .map_err(|e: jiff::Error| error(e.to_string()))?;
    SystemTime::try_from(ts).map_err(|e| error(e.to_string()))
}

/// [`parse_timestamp`], for callers that only need to know whether the text
/// is a time.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    parse_timestamp(text).ok()
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
    use std::time::UNIX_EPOCH;

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
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z\n"), Some(t));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z"),
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
            "yyyy-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_that_do_not_exist_are_refused_naming_the_value() {
        for bad in [
            "2026-11-31T00:00:00Z",
            "2026-02-29T12:00:00Z",
            "2026-04-31T12:00:00+02:00",
            "1900-02-29T00:00:00Z",
        ] {
            let err = parse_timestamp(bad).unwrap_err();
            assert_eq!(err.text, bad);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("`{bad}` is not an RFC 3339 timestamp")),
                "{message}"
            );
            assert!(message.contains("day"), "says what is wrong: {message}");
        }
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800)),
            "a leap day exists"
        );
    }

    #[test]
    fn times_beyond_what_rfc3339_writes_are_clamped_not_a_panic() {
        let far_future = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far_future), "9999-12-30T22:00:00Z");
        let far_past = UNIX_EPOCH - Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far_past), "0000-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(compact(far_future), "99991230T220000Z");
    }
}
