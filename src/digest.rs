//! Content digests.
//!
//! Every blob the registry stores lives under its sha256, so a digest is kept
//! as 32 raw bytes: it is the key of the hottest maps and sets, and a large
//! registry has tens of millions of them. Digests of other algorithms are rare
//! (a client may link a blob under `sha512`); the index keeps those aside and
//! never deletes what they name.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use sha2::{Digest as _, Sha256};

/// The only algorithm the registry stores blob data under.
pub const SHA256: &str = "sha256";

/// A sha256 content digest, `sha256:<64 lowercase hex>` as text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest as two big-endian integers: ordering them orders the
    /// bytes, without a `memcmp` call per comparison in the binary searches
    /// and sorts over millions of digests.
    #[inline]
    fn halves(&self) -> (u128, u128) {
        let (high, low) = self.0.split_at(16);
        (
            u128::from_be_bytes(high.try_into().unwrap_or_default()),
            u128::from_be_bytes(low.try_into().unwrap_or_default()),
        )
    }
}

impl Ord for Digest {
    #[inline]
    fn cmp(&self, other: &Digest) -> std::cmp::Ordering {
        self.halves().cmp(&other.halves())
    }
}

impl PartialOrd for Digest {
    #[inline]
    fn partial_cmp(&self, other: &Digest) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Digest {
    /// Parses the hex part as the registry writes it in paths: exactly 64
    /// lowercase hex characters. Anything else is not a path the registry
    /// would look up, so it is not accepted as a digest.
    pub fn from_hex(hex_str: &str) -> Option<Digest> {
        let bytes = hex_str.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        // Every directory name of a large registry passes here: a small
        // table beats the general decoder.
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let high = NIBBLE[usize::from(pair[0])];
            let low = NIBBLE[usize::from(pair[1])];
            if (high | low) & 0xf0 != 0 {
                return None;
            }
            *byte = high << 4 | low;
        }
        Some(Digest(out))
    }

    /// Parses `sha256:<hex>`, the form of link files and manifest descriptors.
    pub fn parse(text: &str) -> Option<Digest> {
        text.strip_prefix("sha256:").and_then(Digest::from_hex)
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 64-character lowercase hex form.
    pub fn hex(&self) -> String {
        self.hex_buf().as_str().to_owned()
    }

    /// The hex form without an allocation.
    pub fn hex_buf(&self) -> HexBuf {
        let mut buf = [0u8; 64];
        write_hex(&self.0, &mut buf);
        HexBuf(buf)
    }

    /// The first byte: the shard directory's name in hex.
    pub fn shard_byte(&self) -> u8 {
        self.0[0]
    }

    /// The two-character directory the registry shards blobs by.
    pub fn shard(&self) -> String {
        self.hex_buf().as_str()[..2].to_owned()
    }
}

/// The 64 hex characters of a digest, on the stack.
#[derive(Clone, Copy)]
pub struct HexBuf([u8; 64]);

impl HexBuf {
    /// As text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into the buffer.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
}

/// `bytes` as lowercase hex (an md5 as S3 shows it in an ETag, say).
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(bytes, &mut out);
    // Only ASCII hex digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Value of each byte as a lowercase hex digit; 0xff for anything else
/// (uppercase included: the registry writes lowercase only).
const NIBBLE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHA256)?;
        f.write_str(":")?;
        f.write_str(self.hex_buf().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // A digest is already uniformly distributed: eight of its bytes are a
        // perfect hash, and hashing all 32 again would only cost time.
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// Hasher for digest keys: passes the digest's own bytes through.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a `Digest` is hashed with this
        // hasher; fold the bytes in so it still works.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A set of digests with the pass-through hasher.
pub type DigestSet = HashSet<Digest, BuildHasherDefault<DigestHasher>>;
/// A map keyed by digests with the pass-through hasher.
pub type DigestMap<V> = HashMap<Digest, V, BuildHasherDefault<DigestHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_bytes_matches_known_sha256_of_empty_input() {
        assert_eq!(Digest::of_bytes(b"").hex(), EMPTY);
    }

    #[test]
    fn parse_round_trips_through_display() {
        let text = format!("sha256:{EMPTY}");
        let digest = Digest::parse(&text).unwrap();
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.shard(), "e3");
    }

    #[test]
    fn parse_rejects_what_the_registry_would_not_write() {
        assert!(Digest::parse(EMPTY).is_none(), "missing algorithm");
        assert!(
            Digest::parse(&format!("sha256:{EMPTY}\n")).is_none(),
            "trailing newline"
        );
        assert!(Digest::parse(&format!("sha256:{}", EMPTY.to_uppercase())).is_none());
        assert!(Digest::parse(&format!("sha512:{EMPTY}")).is_none());
        assert!(Digest::parse("sha256:abc").is_none());
        assert!(Digest::parse("").is_none());
        assert!(Digest::from_hex(&EMPTY.replace('e', "g")).is_none());
    }

    #[test]
    fn order_is_the_order_of_the_hex_text() {
        let mut digests: Vec<Digest> = ["ff", "00", "0f", "f0", "80"]
            .iter()
            .map(|b| Digest::from_hex(&format!("{}{}", "a".repeat(40), b.repeat(12))).unwrap())
            .collect();
        digests.push(Digest::from_hex(&format!("{}{}", "b".repeat(2), "0".repeat(62))).unwrap());
        digests.sort();
        let hex: Vec<String> = digests.iter().map(Digest::hex).collect();
        let mut sorted = hex.clone();
        sorted.sort();
        assert_eq!(hex, sorted);
    }

    #[test]
    fn hex_form_matches_a_reference_encoder_for_every_byte_value() {
        for start in (0..=255u8).step_by(32) {
            let bytes: [u8; 32] = std::array::from_fn(|i| start.wrapping_add(i as u8));
            let text = hex::encode(bytes);
            assert_eq!(Digest::from_bytes(bytes).hex(), text);
            assert_eq!(Digest::from_hex(&text), Some(Digest::from_bytes(bytes)));
        }
    }

    #[test]
    fn from_hex_rejects_each_non_hex_byte_in_any_position() {
        for bad in [b'g', b'A', b'F', b'/', b':', b'`', b' ', 0, 0x80, 0xff] {
            for position in [0, 1, 31, 62, 63] {
                let mut text = EMPTY.as_bytes().to_vec();
                text[position] = bad;
                let text = String::from_utf8_lossy(&text).into_owned();
                assert!(Digest::from_hex(&text).is_none(), "{text:?}");
            }
        }
    }

    #[test]
    fn digest_set_distinguishes_digests_sharing_a_prefix() {
        let a = Digest::from_hex(&format!("{}{}", "0".repeat(16), "1".repeat(48))).unwrap();
        let b = Digest::from_hex(&format!("{}{}", "0".repeat(16), "2".repeat(48))).unwrap();
        let set: DigestSet = [a, b].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&b));
    }
}
