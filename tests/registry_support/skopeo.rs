//! Pushing and pulling with the real client, skopeo.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::oci::Layout;
use super::registry::Registry;
use super::{SKOPEO_BIN, sha256_digest};

/// The manifest format skopeo writes to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI, exactly as in the layout (`--format oci --preserve-digests`).
    Oci,
    /// Docker schema 2 / manifest list (`--format v2s2`).
    V2s2,
    /// Docker schema 1, signed (`--format v2s1`).
    V2s1,
}

/// Runs skopeo with `args`: its stdout, or all it printed when it fails.
pub fn skopeo(args: &[&str]) -> Result<String, String> {
    let out = Command::new(SKOPEO_BIN)
        .args(["--insecure-policy", "--command-timeout", "120s"])
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SKOPEO_BIN}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "skopeo {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `skopeo copy --all` of `layout:tag` to `repo:dest_tag` in `format`.
/// Returns the digest of the manifest as pushed (after any conversion),
/// checked by a HEAD of the tag (which the registry logs as a pull).
pub fn push(
    reg: &Registry,
    layout: &Layout,
    tag: &str,
    repo: &str,
    dest_tag: &str,
    format: Format,
) -> String {
    let dest = reg.docker_ref(&format!("{repo}:{dest_tag}"));
    let digest = copy_with_digest(layout, tag, &dest, format)
        .unwrap_or_else(|e| panic!("push failed: {e}\nregistry log:\n{}", reg.log()));
    assert_eq!(
        reg.tag_digest(repo, dest_tag),
        digest,
        "{repo}:{dest_tag} after the push points at what skopeo pushed"
    );
    digest
}

/// [`push`] without the check by tag afterwards: that HEAD is a pull of
/// the new image, which a test of pull logs may not want.
pub fn push_unchecked(
    reg: &Registry,
    layout: &Layout,
    tag: &str,
    (repo, dest_tag): (&str, &str),
    format: Format,
) {
    let dest = reg.docker_ref(&format!("{repo}:{dest_tag}"));
    copy(layout, tag, &dest, format, &[])
        .unwrap_or_else(|e| panic!("push failed: {e}\nregistry log:\n{}", reg.log()));
}

/// `skopeo copy --all` of `layout:tag` to the `docker://` reference `dest`
/// in `format`; returns the digest of the manifest as pushed.
pub fn copy_with_digest(
    layout: &Layout,
    tag: &str,
    dest: &str,
    format: Format,
) -> Result<String, String> {
    let digest_file = layout.dir.join(format!(".digest-{}", super::random_hex(8)));
    let digest_file_arg = digest_file.to_str().unwrap().to_string();
    copy(
        layout,
        tag,
        dest,
        format,
        &["--digestfile", &digest_file_arg],
    )?;
    let digest = fs::read_to_string(&digest_file).expect("skopeo --digestfile");
    let _ = fs::remove_file(&digest_file);
    Ok(digest)
}

fn copy(
    layout: &Layout,
    tag: &str,
    dest: &str,
    format: Format,
    extra: &[&str],
) -> Result<(), String> {
    let source = layout.reference(tag);
    let mut args = vec!["copy", "-q", "--all", "--dest-tls-verify=false"];
    args.extend(extra);
    match format {
        Format::Oci => args.extend(["--format", "oci", "--preserve-digests"]),
        Format::V2s2 => args.extend(["--format", "v2s2"]),
        Format::V2s1 => args.extend(["--format", "v2s1"]),
    }
    args.extend([source.as_str(), dest]);
    skopeo(&args).map(|_| ())
}

/// Pulls `repo_ref` (`repo:tag` or `repo@digest`) with `skopeo copy --all`
/// into a `dir:` directory, which keeps manifests and blobs byte for byte
/// (an `oci:` destination would convert Docker manifests), and checks every
/// file there against its digest. Returns the digests of everything pulled:
/// manifests, configs and layers.
pub fn try_pull(reg: &Registry, repo_ref: &str) -> Result<BTreeSet<String>, String> {
    pull_reference(&reg.docker_ref(repo_ref))
}

/// [`try_pull`] of a whole `docker://` reference.
pub fn pull_reference(source: &str) -> Result<BTreeSet<String>, String> {
    let out = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", out.path().join("pulled").display());
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        source,
        &dest,
    ])?;
    verified_blobs(&out.path().join("pulled"))
}

/// [`try_pull`] that must succeed.
pub fn pull(reg: &Registry, repo_ref: &str) -> BTreeSet<String> {
    try_pull(reg, repo_ref).unwrap_or_else(|e| panic!("pull of {repo_ref} failed: {e}"))
}

/// [`pull`] that must also bring every digest in `must_contain`.
pub fn pull_complete(reg: &Registry, repo_ref: &str, must_contain: &[String]) {
    let pulled = pull(reg, repo_ref);
    let missing: Vec<&String> = must_contain
        .iter()
        .filter(|d| !pulled.contains(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "pull of {repo_ref} lacks {missing:?}; it brought {pulled:?}"
    );
}

/// The digests in a `dir:` copy: blobs are files named by their hex,
/// instance manifests `<hex>.manifest.json`, the top manifest
/// `manifest.json`. Each must hash to its name.
pub fn verified_blobs(dir: &Path) -> Result<BTreeSet<String>, String> {
    let mut digests = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let hex = name.strip_suffix(".manifest.json").unwrap_or(&name);
        let named = (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("sha256:{hex}"));
        let actual = sha256_digest(&fs::read(&path).map_err(|e| e.to_string())?);
        if named.as_ref().is_some_and(|digest| *digest != actual) {
            return Err(format!("pulled {name} has digest {actual}"));
        }
        if named.is_some() || name == "manifest.json" {
            digests.insert(actual);
        }
    }
    if !dir.join("manifest.json").exists() {
        return Err("pull wrote no manifest.json".into());
    }
    Ok(digests)
}
