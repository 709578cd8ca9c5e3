//! Durations on the command line: a whole number and one unit, `90d`, `4w`,
//! `12h`, `30m`, `45s`; a bare `0` means none.
//!
//! Deliberately small: one number and one unit, no fractions, no
//! combinations (`1h30m` is `90m`), no months or years (their length is
//! ambiguous). What it prints reads back the same.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration given as `<n><unit>`; displays in the largest exact unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Age(Duration);

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 24 * 3600),
    ('d', 24 * 3600),
    ('h', 3600),
    ('m', 60),
    ('s', 1),
];

impl Age {
    /// No duration at all: everything is old enough.
    pub const ZERO: Age = Age(Duration::ZERO);

    /// The longest duration read: 100 years (`36500d`). Longer ones are
    /// refused rather than left to wrap or overflow a time computation.
    pub const MAX: Age = Age(Duration::from_secs(36_500 * 86_400));

    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Age {
        Age(Duration::from_secs(secs))
    }

    /// As a standard duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for Age {
    fn from(d: Duration) -> Age {
        Age(d)
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (examples: 90d, 4w, 12h, 30m, 45s, 0)")]
pub struct ParseAgeError {
    text: String,
    reason: &'static str,
}

impl FromStr for Age {
    type Err = ParseAgeError;

    fn from_str(text: &str) -> Result<Age, ParseAgeError> {
        let err = |reason| ParseAgeError {
            text: text.to_owned(),
            reason,
        };
        let (number, unit) = match text.char_indices().last() {
            None => return Err(err("empty")),
            Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], Some(c)),
            Some(_) => (text, None),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected a whole number followed by one unit"));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| err("too large: at most 36500d (100 years)"))?;
        let seconds = match unit {
            None if n == 0 => 0,
            None => return Err(err("a unit is required: s, m, h, d or w")),
            Some(unit) => {
                let (_, factor) = UNITS
                    .iter()
                    .find(|(u, _)| *u == unit)
                    .ok_or_else(|| err("unknown unit; use s, m, h, d or w"))?;
                n.checked_mul(*factor)
                    .filter(|secs| *secs <= Age::MAX.as_secs())
                    .ok_or_else(|| err("too large: at most 36500d (100 years)"))?
            }
        };
        Ok(Age::from_secs(seconds))
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            return write!(f, "0");
        }
        let (unit, factor) = UNITS
            .iter()
            .find(|(_, factor)| secs % factor == 0)
            .copied()
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", secs / factor)
    }
}

/// A span of time for people: `45s`, `12m`, `3h`, `2d`, rounded down to one unit.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (unit, factor) = match secs {
        0..60 => ('s', 1),
        60..3600 => ('m', 60),
        3600..86_400 => ('h', 3600),
        _ => ('d', 86_400),
    };
    format!("{}{unit}", secs / factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u64, ParseAgeError> {
        text.parse::<Age>().map(Age::as_secs)
    }

    #[test]
    fn units_from_seconds_to_weeks() {
        assert_eq!(parse("90d"), Ok(90 * 86_400));
        assert_eq!(parse("4w"), Ok(4 * 7 * 86_400));
        assert_eq!(parse("12h"), Ok(12 * 3600));
        assert_eq!(parse("30m"), Ok(1800));
        assert_eq!(parse("45s"), Ok(45));
    }

    #[test]
    fn zero_needs_no_unit() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0s"), Ok(0));
        assert_eq!(parse("0d"), Ok(0));
        assert!("0".parse::<Age>().unwrap().is_zero());
    }

    #[test]
    fn rejects_what_it_cannot_read_exactly() {
        for bad in [
            "", "h", "12", "1.5h", "-1h", "1h30m", " 1h", "1H", "1y", "10mo", "1 h", "+1h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse("9999999999999999w").is_err(), "overflow");
        assert_eq!(parse("36500d"), Ok(Age::MAX.as_secs()));
        for too_long in ["36501d", "5215w", "200000000000000d", "3153600001s"] {
            let message = parse(too_long).unwrap_err().to_string();
            assert!(message.contains("at most 36500d"), "{too_long}: {message}");
        }
        let message = parse("1y").unwrap_err().to_string();
        assert!(
            message.contains("\"1y\"") && message.contains("90d"),
            "{message}"
        );
    }

    #[test]
    fn displays_in_the_largest_exact_unit_and_reads_back() {
        for (text, shown) in [
            ("0", "0"),
            ("0s", "0"),
            ("60s", "1m"),
            ("90m", "90m"),
            ("24h", "1d"),
            ("14d", "2w"),
            ("90d", "90d"),
            ("61s", "61s"),
        ] {
            let age: Age = text.parse().unwrap();
            assert_eq!(age.to_string(), shown);
            assert_eq!(shown.parse::<Age>().unwrap(), age);
        }
    }

    #[test]
    fn human_spans_round_down_to_one_unit() {
        assert_eq!(human(Duration::from_secs(59)), "59s");
        assert_eq!(human(Duration::from_secs(61)), "1m");
        assert_eq!(human(Duration::from_secs(7300)), "2h");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 5)), "3d");
    }
}
