//! Test environment around the real CNCF distribution registry (2.8) and
//! skopeo: start a registry per test on 127.0.0.1, write OCI layouts, push
//! and pull them, call the HTTP API, run upstream's garbage collector and
//! regsweep, and inspect the storage tree.
//!
//! Every test starts with [`require_tools`]: without `docker-registry` or
//! `skopeo` the test is skipped (it prints `skipping: <reason>` and passes),
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`, which turns a missing tool into a
//! failure (CI sets it where the tools are installed).
#![allow(dead_code)]

pub mod gc;
pub mod http;
pub mod images;
pub mod oci;
pub mod proxy;
pub mod pulls;
pub mod registry;
pub mod s3;
pub mod scenario;
pub mod scenarios;
pub mod skopeo;
pub mod tree;

use std::env;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha512};

pub use registry::Registry;

/// The registry binary (Debian's name for distribution's `registry`).
pub const REGISTRY_BIN: &str = "docker-registry";
/// The push/pull client.
pub const SKOPEO_BIN: &str = "skopeo";

/// True when the real registry and skopeo are installed. Otherwise prints
/// `skipping: <reason>` to stderr and returns false, or panics when
/// `REGSWEEP_REQUIRE_REGISTRY=1`.
#[must_use]
pub fn require_tools() -> bool {
    let missing: Vec<&str> = [REGISTRY_BIN, SKOPEO_BIN]
        .into_iter()
        .filter(|bin| !on_path(bin))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{} not found on PATH", missing.join(" and "));
    if env::var("REGSWEEP_REQUIRE_REGISTRY").as_deref() == Ok("1") {
        panic!("REGSWEEP_REQUIRE_REGISTRY=1 but {reason} (apt-get install docker-registry skopeo)");
    }
    eprintln!("skipping: {reason}");
    false
}

fn on_path(bin: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| is_executable(&dir.join(bin))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha512:<hex>` of `bytes`.
pub fn sha512_digest(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// The digest of `bytes` with the algorithm `digest` names (sha256 or
/// sha512).
pub fn digest_like(digest: &str, bytes: &[u8]) -> String {
    if digest.starts_with("sha512:") {
        sha512_digest(bytes)
    } else {
        sha256_digest(bytes)
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    hex::encode(buf)
}
