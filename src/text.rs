//! Text for people and for reports, used everywhere: counts with
//! separators, byte sizes, paths that may not be UTF-8. Kept apart from
//! [`crate::report`], which imports the modules that use these.

use indicatif::HumanCount;
use serde::Serializer;

/// Serializes a path as a string, replacing what is not UTF-8 with U+FFFD:
/// a stray file name that is not UTF-8 must not stop the report from being
/// written (the human output shows the same lossy form).
pub(crate) fn lossy_path<P: AsRef<std::path::Path>, S: Serializer>(
    path: &P,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.as_ref().to_string_lossy())
}

/// [`lossy_path`] for an optional path.
pub(crate) fn lossy_optional_path<P: AsRef<std::path::Path>, S: Serializer>(
    path: &Option<P>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => lossy_path(path, s),
        None => s.serialize_none(),
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    HumanCount(n).to_string()
}

/// `1 blob`, `2 blobs`, `1,234 blobs`.
pub fn counted(n: u64, singular: &str, plural: &str) -> String {
    format!("{} {}", count(n), if n == 1 { singular } else { plural })
}

/// Bytes in IEC units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
