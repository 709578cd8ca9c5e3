//! The same storage on a filesystem and in a bucket gets the same verdicts.
//! Each case is a registry tree written once on disk (the builders of the
//! filesystem suite: moved tags, multi-arch, referrers, schema1 signatures,
//! uploads, nested names, damaged links and manifests, odd entries), then
//! copied file by file into one moto bucket under a prefix of its own, with
//! each file's bytes at `<prefix>/<relative path>`. `regsweep gc --dry-run`
//! (with and without `-m`) on the directory and on `s3://bucket/<prefix>`
//! must list the same candidates, count the same and warn of the same
//! things at the same (relative) paths; a real `gc -m` on both must then
//! leave the same files as keys.
//!
//! Left out, because a bucket cannot hold them: symbolic links, FIFOs,
//! unreadable directories, names that are not UTF-8, and empty
//! directories (a revision directory whose link the registry's API removed
//! is just nothing on S3, so the filesystem's "deleted through the API"
//! revision has no counterpart there).

mod layout_support;
// Only its S3 server and its bounded runs are used here.
#[allow(unused_imports)]
mod registry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use layout_support::{
    ApiDeleted, LayoutBuilder, Manifest, docker_list, layer_link, oci_index, push_mixed,
    revision_link, schema1, sha256, tag_current_link, tag_index_link,
};
use registry_support::s3::{S3Server, S3Storage, require_s3};
use serde_json::{Value, json};
use walkdir::WalkDir;

/// The lock object a run leaves beside `docker/` (on both backends it is
/// regsweep's own, not the registry's).
const LOCK: &str = "regsweep.lock";

/// How long one run may take before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

type Build = fn(&mut LayoutBuilder);

/// Every case: a name (also its prefix in the bucket) and its builder.
fn cases() -> Vec<(&'static str, Build)> {
    vec![
        ("mixed", mixed),
        ("moved-tags", moved_tags),
        ("multi-arch-pushed-twice", multi_arch_pushed_twice),
        ("untagged-index", untagged_index),
        ("referrers", referrers),
        ("schema1-signatures", schema1_signatures),
        ("foreign-layers", foreign_layers),
        ("nested-names", nested_names),
        ("shared-across-repositories", shared_across_repositories),
        ("sha512-links", sha512_links),
        ("uploads", uploads),
        ("revision-link-damaged", revision_link_damaged),
        ("revision-link-names-another", revision_link_names_another),
        ("tag-current-damaged", tag_current_damaged),
        ("tag-current-outside-history", tag_current_outside_history),
        ("tag-names-missing-manifest", tag_names_missing_manifest),
        ("manifest-not-json", manifest_not_json),
        ("manifest-unknown-type", manifest_unknown_type),
        ("manifest-blob-gone", manifest_blob_gone),
        ("missing-layer", missing_layer),
        ("dangling-links", dangling_links),
        ("odd-entries", odd_entries),
        ("blob-directory-is-a-file", blob_directory_is_a_file),
    ]
}

/// Cases whose verdicts differ between the two backends today (see
/// [`known_differences_between_s3_and_a_filesystem`]).
fn differing_cases() -> Vec<(&'static str, Build)> {
    vec![
        ("blob-directory-without-data", blob_directory_without_data),
        (
            "file-in-a-repository-directory",
            file_in_a_repository_directory,
        ),
        ("unknown-key-under-layers", unknown_key_under_layers),
        ("unknown-key-under-manifests", unknown_key_under_manifests),
        ("tag-current-is-a-file", tag_current_is_a_file),
        ("link-with-keys-below", link_with_keys_below),
    ]
}

/// A clean tagged image in a repository of its own: every case has one, so
/// a case that keeps too much or too little elsewhere shows against it.
fn bystander(b: &mut LayoutBuilder) {
    let m = b.simple_image("bystander", &[]);
    b.push("bystander", "stable", &m);
    let old = b.simple_image("bystander-old", &[]);
    b.push_untagged("bystander", &old);
}

/// The bystander and `app:v1`, where most cases of damage start. Returns
/// `app:v1`.
fn app_v1(b: &mut LayoutBuilder) -> Manifest {
    bystander(b);
    let m = b.simple_image("app", &[]);
    b.push("app", "v1", &m);
    m
}

/// [`app_v1`], and an untagged image in `app` (which only `-m` deletes).
fn app_v1_and_untagged(b: &mut LayoutBuilder) -> Manifest {
    let m = app_v1(b);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
    m
}

/// The filesystem suite's mixed tree but for its manifest deleted through
/// the API, whose empty revision directory a bucket cannot hold.
fn mixed(b: &mut LayoutBuilder) {
    push_mixed(b, ApiDeleted::No);
}

fn moved_tags(b: &mut LayoutBuilder) {
    bystander(b);
    for i in 0..4 {
        let m = b.simple_image(&format!("latest-{i}"), &[]);
        b.push("app", "latest", &m);
        if i == 1 {
            b.push("app", "pinned", &m);
        }
    }
    // `_manifests` is a valid tag name, not a reserved directory here.
    let odd = b.simple_image("odd-tag", &[]);
    b.push("app", "_manifests", &odd);
}

fn multi_arch_pushed_twice(b: &mut LayoutBuilder) {
    bystander(b);
    let amd = b.simple_image("amd64", &[]);
    let arm1 = b.simple_image("arm64-1", &[]);
    let arm2 = b.simple_image("arm64-2", &[]);
    for (tag, children) in [("v1", [&amd, &arm1]), ("v1", [&amd, &arm2])] {
        for child in children {
            b.push_untagged("multi", child);
        }
        let list = docker_list(&children);
        b.push("multi", tag, &list);
    }
    let o1 = b.simple_oci_image("oci-a");
    let o2 = b.simple_oci_image("oci-b");
    b.push_untagged("multi", &o1);
    b.push_untagged("multi", &o2);
    let idx = oci_index(&[&o1, &o2], None);
    b.push("multi", "oci", &idx);
}

fn untagged_index(b: &mut LayoutBuilder) {
    bystander(b);
    let shared = b.simple_image("shared-child", &[]);
    let own = b.simple_image("own-child", &[]);
    b.push_untagged("app", &shared);
    b.push_untagged("app", &own);
    let dead = oci_index(&[&shared, &own], None);
    b.push_untagged("app", &dead);
    let live = oci_index(&[&shared], None);
    b.push("app", "v1", &live);
}

fn referrers(b: &mut LayoutBuilder) {
    bystander(b);
    let live = b.simple_image("live", &[]);
    b.push("app", "v1", &live);
    let dead = b.simple_image("dead", &[]);
    b.push_untagged("app", &dead);
    for (subject, label) in [(&live, "of-live"), (&dead, "of-dead")] {
        let sig = b.signature_for(subject, label);
        b.push_untagged("app", &sig);
        let sig_of_sig = b.signature_for(&sig, &format!("{label}-2"));
        b.push_untagged("app", &sig_of_sig);
    }
    // An index with a subject, itself a referrer of the live image.
    let child = b.simple_oci_image("sbom");
    b.push_untagged("app", &child);
    let idx = oci_index(&[&child], Some(&live));
    b.push_untagged("app", &idx);
    // A cosign-style signature tag: an ordinary live tag.
    let tagged_sig = b.signature_for(&live, "tagged");
    let tag = format!("sha256-{}.sig", live.hex());
    b.push("app", &tag, &tagged_sig);
}

fn schema1_signatures(b: &mut LayoutBuilder) {
    bystander(b);
    for (i, tagged) in [true, false, false].into_iter().enumerate() {
        let layer = b.layer(&format!("s1-{i}"));
        let m = schema1("legacy", "v1", &[&layer, &layer], true);
        if tagged {
            b.push("legacy", "v1", &m);
        } else {
            b.push_untagged("legacy", &m);
        }
        let signature = b.blob_with("application/octet-stream", format!("jws {i}").as_bytes());
        b.link_signature("legacy", &m.digest, &signature.digest);
    }
}

fn foreign_layers(b: &mut LayoutBuilder) {
    bystander(b);
    let config = b.config("win");
    let foreign = b.foreign_layer("windows-base");
    let own = b.layer("win-app");
    let m = layout_support::docker_image(&config, &[&foreign, &own]);
    b.push("win", "ltsc", &m);
    let config2 = b.config("win-old");
    let m2 = layout_support::docker_image(&config2, &[&foreign]);
    b.push_untagged("win", &m2);
}

fn nested_names(b: &mut LayoutBuilder) {
    bystander(b);
    // A repository inside another's directory, both with content.
    for (repo, label) in [
        ("team", "t"),
        ("team/app", "ta"),
        ("team/app/x-1.y_z", "deep"),
    ] {
        let tagged = b.simple_image(label, &[]);
        b.push(repo, "v1", &tagged);
        let untagged = b.simple_image(&format!("{label}-old"), &[]);
        b.push_untagged(repo, &untagged);
        b.orphan_linked_blob(repo, label);
    }
}

fn shared_across_repositories(b: &mut LayoutBuilder) {
    bystander(b);
    let shared = b.layer("shared");
    let here = b.simple_image("here", &[&shared]);
    b.push_untagged("a", &here);
    let there = b.simple_image("there", &[&shared]);
    b.push("b", "v1", &there);
    // The same manifest in two repositories, tagged only in one.
    let both = b.simple_image("both", &[]);
    b.push("a", "v2", &both);
    b.push_untagged("c", &both);
}

/// Blobs linked under their sha512 name too, as a `PUT ...digest=sha512:`
/// upload leaves them; one live, one orphan.
fn sha512_links(b: &mut LayoutBuilder) {
    let m = app_v1(b);
    let orphan = b.orphan_linked_blob("app", "orphan-512");
    for (i, digest) in [m.blobs[0].digest.clone(), orphan.digest]
        .iter()
        .enumerate()
    {
        let hex512 = format!("{:0128x}", i + 1);
        b.write_raw(
            format!("repositories/app/_layers/sha512/{hex512}/link"),
            digest.as_bytes(),
        );
    }
    // A revision under another algorithm: the repository is kept whole.
    let other = b.simple_image("other", &[]);
    b.push("other", "v1", &other);
    let untagged = b.simple_image("other-old", &[]);
    b.push_untagged("other", &untagged);
    b.write_raw(
        format!(
            "repositories/other/_manifests/revisions/sha512/{}/link",
            "c".repeat(128)
        ),
        format!("sha512:{}", "c".repeat(128)).as_bytes(),
    );
}

fn uploads(b: &mut LayoutBuilder) {
    app_v1(b);
    b.upload("app");
    b.upload("app");
    b.upload("team/new");
}

fn revision_link_damaged(b: &mut LayoutBuilder) {
    let m = app_v1(b);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
    let newline = b.simple_image("newline", &[]);
    b.push_untagged("app", &newline);
    let root = b.root().to_path_buf();
    b.overwrite(&revision_link(&root, "app", &untagged.digest), b"");
    b.overwrite(
        &revision_link(&root, "app", &newline.digest),
        format!("{}\n", newline.digest).as_bytes(),
    );
    // Layer links and history entries are decided from their paths.
    b.overwrite(&layer_link(&root, "app", &m.blobs[1].digest), b"garbage");
    b.overwrite(&tag_index_link(&root, "app", "v1", &m.digest), b"");
}

fn revision_link_names_another(b: &mut LayoutBuilder) {
    bystander(b);
    let tagged = b.simple_image("tagged", &[]);
    b.push("app", "v1", &tagged);
    let a = b.simple_image("a", &[]);
    let c = b.simple_image("c", &[]);
    b.push_untagged("app", &a);
    b.push_untagged("app", &c);
    let root = b.root().to_path_buf();
    b.overwrite(&revision_link(&root, "app", &a.digest), c.digest.as_bytes());
    b.overwrite(
        &revision_link(&root, "app", &tagged.digest),
        a.digest.as_bytes(),
    );
}

fn tag_current_damaged(b: &mut LayoutBuilder) {
    bystander(b);
    for (tag, content) in [("empty", ""), ("newline", "\n"), ("junk", "sha256:nothex")] {
        let old = b.simple_image(&format!("{tag}-old"), &[]);
        b.push("app", tag, &old);
        let new = b.simple_image(&format!("{tag}-new"), &[]);
        b.push("app", tag, &new);
        let root = b.root().to_path_buf();
        let content = if content == "\n" {
            format!("{}\n", new.digest)
        } else {
            content.to_owned()
        };
        b.overwrite(&tag_current_link(&root, "app", tag), content.as_bytes());
    }
    let fine = b.simple_image("fine", &[]);
    b.push("app", "fine", &fine);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
}

/// `current/link` naming a stored manifest the tag's history never held:
/// its content cannot be told from the ETag, so it must be read.
fn tag_current_outside_history(b: &mut LayoutBuilder) {
    bystander(b);
    let h1 = b.simple_image("history-1", &[]);
    b.push("app", "v1", &h1);
    let h2 = b.simple_image("history-2", &[]);
    b.push("app", "v1", &h2);
    let elsewhere = b.simple_image("elsewhere", &[]);
    b.push_untagged("app", &elsewhere);
    let root = b.root().to_path_buf();
    b.overwrite(
        &tag_current_link(&root, "app", "v1"),
        elsewhere.digest.as_bytes(),
    );
    // And one moved back to an older entry of its history.
    let b1 = b.simple_image("back-1", &[]);
    b.push("app", "back", &b1);
    let b2 = b.simple_image("back-2", &[]);
    b.push("app", "back", &b2);
    b.overwrite(
        &tag_current_link(&root, "app", "back"),
        b1.digest.as_bytes(),
    );
}

fn tag_names_missing_manifest(b: &mut LayoutBuilder) {
    app_v1_and_untagged(b);
    b.tag("app", "ghost", &sha256(b"a manifest never pushed"));
    b.orphan_linked_blob("app", "linked");
}

/// A tagged manifest of `repo` whose bytes are `bytes`, with one linked
/// layer only it could reference, and an untagged image beside it.
fn odd_manifest(b: &mut LayoutBuilder, bytes: Vec<u8>) {
    bystander(b);
    let layer = b.layer("of the odd manifest");
    let m = Manifest::from_bytes(
        layout_support::DOCKER_MANIFEST,
        bytes,
        vec![layer],
        Vec::new(),
        None,
    );
    b.push("app", "v1", &m);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
    b.orphan_linked_blob("app", "linked");
}

fn manifest_not_json(b: &mut LayoutBuilder) {
    odd_manifest(b, b"this is not JSON {".to_vec());
}

fn manifest_unknown_type(b: &mut LayoutBuilder) {
    let layer = sha256(b"somewhere");
    let bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.example.future+json","layers":[{{"digest":"{layer}","size":5}}]}}"#
    );
    odd_manifest(b, bytes.into_bytes());
}

fn manifest_blob_gone(b: &mut LayoutBuilder) {
    app_v1(b);
    let lost = b.simple_image("lost", &[]);
    b.push_untagged("app", &lost);
    let data = layout_support::blob_dir(b.root(), &lost.digest);
    fs::remove_dir_all(data).unwrap();
}

fn missing_layer(b: &mut LayoutBuilder) {
    let m = app_v1(b);
    fs::remove_dir_all(layout_support::blob_dir(b.root(), &m.blobs[1].digest)).unwrap();
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
}

/// Layer links and history entries naming blobs that are not stored:
/// garbage, not damage.
fn dangling_links(b: &mut LayoutBuilder) {
    app_v1(b);
    b.link_layer("app", &sha256(b"never uploaded"));
    let ghost = sha256(b"never pushed");
    let root = b.root().to_path_buf();
    b.overwrite(
        &tag_index_link(&root, "app", "v1", &ghost),
        ghost.as_bytes(),
    );
}

/// Things the registry does not write, in blob storage and at the top.
fn odd_entries(b: &mut LayoutBuilder) {
    app_v1_and_untagged(b);
    b.write_raw("blobs/sha256/ab/not-a-digest/data", b"odd");
    b.write_raw("blobs/sha256/README", b"odd");
    b.write_raw("stray-top-level", b"odd");
}

/// A blob directory holding no `data`, only a file the registry never
/// writes.
fn blob_directory_without_data(b: &mut LayoutBuilder) {
    app_v1(b);
    b.write_raw(
        format!("blobs/sha256/ab/ab{}/extra", "1".repeat(62)),
        b"odd",
    );
}

/// A file directly in a repository's directory, next to `_manifests`.
fn file_in_a_repository_directory(b: &mut LayoutBuilder) {
    app_v1_and_untagged(b);
    b.write_raw("repositories/app/notes.txt", b"odd");
}

/// A link under `_layers/sha256/` whose directory is not a digest.
fn unknown_key_under_layers(b: &mut LayoutBuilder) {
    app_v1_and_untagged(b);
    b.write_raw("repositories/app/_layers/sha256/xyz/link", b"odd");
}

/// Keys under `_manifests/` the registry never writes: the repository is
/// kept whole.
fn unknown_key_under_manifests(b: &mut LayoutBuilder) {
    bystander(b);
    let m = b.simple_image("x", &[]);
    b.push("x", "v1", &m);
    let untagged = b.simple_image("x-old", &[]);
    b.push_untagged("x", &untagged);
    b.orphan_linked_blob("x", "linked");
    b.write_raw("repositories/x/_manifests/extra/thing", b"odd");
    b.write_raw(
        format!(
            "repositories/x/_manifests/revisions/sha256/{}/extra",
            m.hex()
        ),
        b"odd",
    );
}

/// A blob directory that is a file: on S3 a key with no keys below it.
fn blob_directory_is_a_file(b: &mut LayoutBuilder) {
    let m = app_v1_and_untagged(b);
    let dir = layout_support::blob_dir(b.root(), &m.blobs[1].digest);
    fs::remove_dir_all(&dir).unwrap();
    fs::write(&dir, b"not a directory").unwrap();
}

/// A tag's `current` that is a file: on S3 a key `.../current` and no
/// `.../current/link`.
fn tag_current_is_a_file(b: &mut LayoutBuilder) {
    bystander(b);
    let t = b.simple_image("t", &[]);
    b.push("app", "v1", &t);
    let t_old = b.simple_image("t-old", &[]);
    b.push_untagged("app", &t_old);
    let current = tag_current_link(b.root(), "app", "v1");
    let current = current.parent().unwrap();
    fs::remove_dir_all(current).unwrap();
    fs::write(current, b"not a directory").unwrap();
}

/// A revision link that is a directory with a file inside: on S3, a key
/// below the link's key and no link.
fn link_with_keys_below(b: &mut LayoutBuilder) {
    app_v1(b);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
    let link = revision_link(b.root(), "app", &untagged.digest);
    fs::remove_file(&link).unwrap();
    fs::create_dir_all(&link).unwrap();
    fs::write(link.join("inside"), b"kept").unwrap();
}

// ---------------------------------------------------------------------------
// Running and comparing
// ---------------------------------------------------------------------------

/// One built case: its tree on disk and its prefix in the bucket.
struct Built {
    name: &'static str,
    builder: LayoutBuilder,
}

impl Built {
    fn root(&self) -> &Path {
        self.builder.root()
    }
}

/// Every regular file under `root`, relative, `/`-separated.
fn files(root: &Path) -> BTreeSet<String> {
    WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .map(|e| e.expect("walk tree"))
        .filter(|e| {
            assert!(
                !e.file_type().is_symlink(),
                "{}: a bucket cannot hold a symbolic link",
                e.path().display()
            );
            e.file_type().is_file()
        })
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .expect("UTF-8 path")
                .to_owned()
        })
        .collect()
}

/// PUTs every file under `root` at `<prefix>/<relative path>`.
fn upload(s3: &S3Server, root: &Path, prefix: &str) -> usize {
    let all = files(root);
    for rel in &all {
        s3.put(
            &format!("{prefix}/{rel}"),
            &fs::read(root.join(rel)).unwrap(),
        );
    }
    all.len()
}

/// What a run printed.
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "regsweep {:?}: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// `regsweep gc --min-age 0 ARGS TARGET` with no `AWS_*` or `REGSWEEP_*`
/// variable but `env`, killed after [`RUN_LIMIT`].
fn gc(args: &[&str], target: &str, env: &[(&'static str, String)]) -> Run {
    let mut all: Vec<String> = vec!["gc".into(), "--min-age".into(), "0".into()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.push(target.to_owned());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(&all);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("REGSWEEP_") || key.starts_with("REGISTRY_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = registry_support::gc::Run::bounded(&mut cmd, RUN_LIMIT);
    let run = Run {
        args: all,
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    assert!(!run.stderr.contains("panicked"), "{run}");
    run
}

/// The JSON report of `run`, whose `exit_code` must be the process's.
fn report(run: &Run) -> Value {
    let report: Value = serde_json::from_str(run.stdout.trim_end())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{run}"));
    assert_eq!(
        report["exit_code"].as_i64().map(|c| c as i32),
        run.code,
        "exit_code in the report vs the process:\n{run}"
    );
    report
}

/// The two places a case lives, and how each names a path of it.
struct Targets<'a> {
    root: &'a Path,
    storage: S3Storage,
}

impl Targets<'_> {
    fn dir(&self) -> String {
        self.root.to_str().unwrap().to_owned()
    }

    /// `path` relative to the storage root, from either report; unchanged
    /// (and so bound to differ) when it is under neither.
    fn relative(&self, path: &str) -> String {
        let fs_root = format!("{}/", self.dir());
        let url_root = format!("{}/", self.storage.url());
        let key_root = format!("{}/", self.storage.rootdirectory);
        path.strip_prefix(&fs_root)
            .or_else(|| path.strip_prefix(&url_root))
            .or_else(|| path.strip_prefix(&key_root))
            .unwrap_or(path)
            .trim_end_matches('/')
            .to_owned()
    }

    /// What must agree between the two reports: candidates (with paths made
    /// relative), counts, warnings as (kind, relative path, repository).
    fn verdict(&self, report: &Value) -> Value {
        let mut candidates: Vec<Value> = report["candidates"]
            .as_array()
            .unwrap_or_else(|| panic!("no candidates listed: {report}"))
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(p) = c.get("path").and_then(Value::as_str) {
                    c["path"] = json!(self.relative(p));
                }
                c
            })
            .collect();
        candidates.sort_by_key(Value::to_string);
        let mut warnings: Vec<Value> = report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .map(|w| {
                json!({
                    "kind": w["kind"],
                    "path": self.relative(w["path"].as_str().expect("warning path")),
                    "repository": w["repository"],
                })
            })
            .collect();
        warnings.sort_by_key(Value::to_string);
        let mut summary = serde_json::Map::new();
        for key in [
            "exit_code",
            "dry_run",
            "delete_untagged",
            "before",
            "after",
            "reclaimable",
            "deleted",
            "repositories",
            "kept_too_recent",
            "uploads_in_progress",
            "interrupted",
            "failures",
        ] {
            summary.insert(key.to_owned(), report[key].clone());
        }
        json!({"candidates": candidates, "warnings": warnings, "summary": summary})
    }
}

/// Names S3's warnings as the filesystem's where they are about the same
/// thing: a bucket has no directories, so where the filesystem names a
/// directory (a revision under another algorithm, an odd blob directory)
/// S3 names a key inside it. Same kind, same repository, and the S3 path
/// below the filesystem's.
fn align_warnings(fs: &Value, s3: &mut Value) {
    let on_disk = fs["warnings"].as_array().unwrap().clone();
    for w in s3["warnings"].as_array_mut().unwrap() {
        let path = w["path"].as_str().unwrap().to_owned();
        let same = on_disk.iter().find(|d| {
            d["kind"] == w["kind"]
                && d["repository"] == w["repository"]
                && path.starts_with(&format!("{}/", d["path"].as_str().unwrap()))
        });
        if let Some(d) = same {
            w["path"] = d["path"].clone();
        }
    }
    s3["warnings"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(Value::to_string);
}

/// What differs between two verdicts, line by line, for the failure message.
fn differences(fs: &Value, s3: &Value) -> String {
    let mut out = String::new();
    for section in ["candidates", "warnings"] {
        let a: BTreeSet<String> = fs[section]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        let b: BTreeSet<String> = s3[section]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        for only in a.difference(&b) {
            out.push_str(&format!("  {section} only on the filesystem: {only}\n"));
        }
        for only in b.difference(&a) {
            out.push_str(&format!("  {section} only on S3:             {only}\n"));
        }
    }
    for (key, value) in fs["summary"].as_object().unwrap() {
        if s3["summary"][key] != *value {
            out.push_str(&format!(
                "  {key}: filesystem {value}\n  {key}: S3         {}\n",
                s3["summary"][key]
            ));
        }
    }
    out
}

/// Dry runs in both modes, then a real `-m` sweep, on both targets of one
/// case; every difference found, as text (empty: the same verdicts).
fn compare(case: &Built, s3: &S3Server) -> String {
    let targets = Targets {
        root: case.root(),
        storage: s3.storage(case.name),
    };
    let env = targets.storage.aws_env();
    let url = targets.storage.url();
    let mut found = String::new();
    // The runs in order: the dry runs must leave both targets as they are.
    for mode in [&["--dry-run"][..], &["--dry-run", "-m"], &["-m", "-y"]] {
        let mut args = vec!["--json", "-v"];
        args.extend_from_slice(mode);
        let on_disk = gc(&args, &targets.dir(), &[]);
        let on_s3 = gc(&args, &url, &env);
        let a = targets.verdict(&report(&on_disk));
        let mut b = targets.verdict(&report(&on_s3));
        align_warnings(&a, &mut b);
        if a != b {
            found.push_str(&format!(
                "{} gc {mode:?}: verdicts differ\n{}  filesystem stderr:\n{}  S3 stderr:\n{}",
                case.name,
                differences(&a, &b),
                indent(&on_disk.stderr),
                indent(&on_s3.stderr),
            ));
        }
    }
    let prefix = format!("{}/", case.name);
    let left_on_disk: BTreeSet<String> = files(case.root())
        .into_iter()
        .filter(|p| p != LOCK)
        .collect();
    let left_in_bucket: BTreeSet<String> = s3
        .keys(&prefix)
        .into_iter()
        .map(|k| k[prefix.len()..].to_owned())
        .filter(|p| p != LOCK)
        .collect();
    if left_on_disk != left_in_bucket {
        found.push_str(&format!("{} gc -m -y: what remains differs\n", case.name));
        for p in left_on_disk.difference(&left_in_bucket) {
            found.push_str(&format!("  only on the filesystem: {p}\n"));
        }
        for p in left_in_bucket.difference(&left_on_disk) {
            found.push_str(&format!("  only in the bucket:     {p}\n"));
        }
    }
    found
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Each of `cases` written on disk.
fn build_all(cases: Vec<(&'static str, Build)>) -> Vec<Built> {
    cases
        .into_iter()
        .map(|(name, build)| {
            let mut builder = LayoutBuilder::new();
            build(&mut builder);
            Built { name, builder }
        })
        .collect()
}

/// Builds `cases` on disk, uploads them to one bucket, compares each;
/// panics listing every difference.
fn check_cases(cases: Vec<(&'static str, Build)>) {
    let started = Instant::now();
    let built = build_all(cases);
    let s3 = S3Server::start();
    let mut objects = 0;
    for case in &built {
        objects += upload(&s3, case.root(), case.name);
    }
    eprintln!(
        "{} cases, {objects} objects uploaded in {:.1} s",
        built.len(),
        started.elapsed().as_secs_f64()
    );
    let findings: Mutex<BTreeMap<&str, String>> = Mutex::default();
    let next = Mutex::new(0usize);
    // Cases are independent (a prefix each); a few at once keep moto busy.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = built.get(i) else { break };
                    let found = compare(case, &s3);
                    if !found.is_empty() {
                        findings.lock().unwrap().insert(case.name, found);
                    }
                }
            });
        }
    });
    eprintln!("compared in {:.1} s", started.elapsed().as_secs_f64());
    let findings = findings.into_inner().unwrap();
    assert!(
        findings.is_empty(),
        "{} of {} cases differ between S3 and the filesystem:\n{}",
        findings.len(),
        built.len(),
        findings.values().cloned().collect::<String>()
    );
}

#[test]
fn every_case_gets_the_same_verdicts_on_s3_as_on_a_filesystem() {
    if !require_s3() {
        return;
    }
    check_cases(cases());
}

/// What each case shows (`cargo test --test s3_same_verdicts -- --ignored`
/// prints both sides):
/// - blob-directory-without-data: the filesystem lists the blob (0 bytes)
///   as a candidate and its sweep then fails on the unknown file; S3 warns
///   `unexpected_entry` at `.../extra` and counts no blob.
/// - file-in-a-repository-directory: S3 warns `unexpected_entry` at
///   `repositories/app/notes.txt`; the filesystem says nothing.
/// - unknown-key-under-layers: both warn, but S3 keeps the repository
///   whole and the filesystem only the entry, collecting the rest (`-m`).
/// - unknown-key-under-manifests: S3 warns and keeps the repository whole;
///   the filesystem says nothing and collects it.
/// - tag-current-is-a-file: the filesystem keeps the tag's history and
///   collects the rest of the repository; S3 adds `unexpected_entry` on
///   `current` and keeps the repository whole.
/// - link-with-keys-below: both warn `invalid_link` and keep the manifest
///   by the digest in its path; with `-m` both plan it as untagged, keep it
///   in the sweep (the unknown entry below `link`) with what it references,
///   and leave the same files; only the failure's message differs ("Is a
///   directory" on disk, "holds keys the registry does not write there").
///
/// In every one of them S3 keeps at least what the filesystem keeps:
/// [`s3_never_deletes_what_a_filesystem_keeps`] holds that.
#[test]
#[ignore = "S3 and filesystem verdicts differ on these layouts (entries the registry never writes, a file or directory in the wrong place)"]
fn known_differences_between_s3_and_a_filesystem() {
    if !require_s3() {
        return;
    }
    check_cases(differing_cases());
}

/// On the layouts whose verdicts differ, a real `-m` sweep on S3 leaves
/// every file a sweep of the same tree on disk leaves: where the two
/// readings differ, S3's is the one that keeps more.
#[test]
fn s3_never_deletes_what_a_filesystem_keeps() {
    if !require_s3() {
        return;
    }
    let built = build_all(differing_cases());
    let s3 = S3Server::start();
    for case in &built {
        upload(&s3, case.root(), case.name);
    }
    let mut deleted_only_on_s3 = String::new();
    for case in &built {
        let storage = s3.storage(case.name);
        let args = ["--json", "-m", "-y"];
        gc(&args, case.root().to_str().unwrap(), &[]);
        gc(&args, &storage.url(), &storage.aws_env());
        let prefix = format!("{}/", case.name);
        let in_bucket: BTreeSet<String> = s3
            .keys(&prefix)
            .into_iter()
            .map(|k| k[prefix.len()..].to_owned())
            .collect();
        for path in files(case.root()) {
            if path != LOCK && !in_bucket.contains(&path) {
                deleted_only_on_s3.push_str(&format!("{}: {path}\n", case.name));
            }
        }
    }
    assert!(
        deleted_only_on_s3.is_empty(),
        "deleted on S3, kept on disk:\n{deleted_only_on_s3}"
    );
}

// ---------------------------------------------------------------------------
// What only a bucket can show
// ---------------------------------------------------------------------------

/// `regsweep gc --json -v ARGS s3://bucket/<prefix>`: the report.
fn gc_s3(s3: &S3Server, prefix: &str, args: &[&str]) -> Value {
    let storage = s3.storage(prefix);
    let mut all = vec!["--json", "-v"];
    all.extend_from_slice(args);
    report(&gc(&all, &storage.url(), &storage.aws_env()))
}

/// `(kind, path relative to the storage root)` of every warning.
fn warning_paths(report: &Value, prefix: &str) -> BTreeSet<(String, String)> {
    let root = format!("{prefix}/");
    report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let path = w["path"].as_str().unwrap();
            let path = path
                .strip_prefix("s3://regsweep-test/")
                .unwrap_or(path)
                .strip_prefix(&root)
                .unwrap_or(path);
            (w["kind"].as_str().unwrap().to_owned(), path.to_owned())
        })
        .collect()
}

/// A revision link and a tag's `current/link` overwritten in the bucket
/// with content their ETags cannot vouch for (the md5 of neither their
/// path's digest nor any entry of the tag's history): regsweep reads them
/// and decides as it does on disk, where the same bytes are written.
#[test]
fn links_whose_etag_shows_unexpected_content_are_read_and_judged_as_on_disk() {
    if !require_s3() {
        return;
    }
    let mut b = LayoutBuilder::new();
    bystander(&mut b);
    let h1 = b.simple_image("history-1", &[]);
    b.push("app", "v1", &h1);
    let h2 = b.simple_image("history-2", &[]);
    b.push("app", "v1", &h2);
    let elsewhere = b.simple_image("elsewhere", &[]);
    b.push_untagged("app", &elsewhere);
    let a = b.simple_image("a", &[]);
    let c = b.simple_image("c", &[]);
    b.push_untagged("app", &a);
    b.push_untagged("app", &c);
    let case = Built {
        name: "etag",
        builder: b,
    };
    let s3 = S3Server::start();
    upload(&s3, case.root(), case.name);

    // The same new bytes in the bucket (a PUT over the key) and on disk.
    let root = case.root().to_path_buf();
    let rel = |path: &Path| {
        path.strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let current = tag_current_link(&root, "app", "v1");
    let a_link = revision_link(&root, "app", &a.digest);
    let untouched = revision_link(&root, "app", &h1.digest);
    for (path, bytes) in [
        (&current, elsewhere.digest.as_bytes()),
        (&a_link, c.digest.as_bytes()),
    ] {
        fs::write(path, bytes).unwrap();
        s3.put(&format!("{}/{}", case.name, rel(path)), bytes);
    }

    // The two links are read (their ETags vouch for nothing); a link whose
    // ETag shows its content is not.
    let mark = s3.mark();
    let dry = gc_s3(&s3, case.name, &["--dry-run", "-m"]);
    let gets: Vec<String> = s3
        .request_lines_since(mark)
        .into_iter()
        .filter(|l| l.starts_with("GET ") && l.ends_with("/link"))
        .collect();
    for path in [&current, &a_link] {
        assert!(
            gets.iter().any(|l| l.ends_with(&rel(path))),
            "{} was not read, though its ETag does not show its content: {gets:#?}",
            rel(path)
        );
    }
    assert!(
        !gets.iter().any(|l| l.ends_with(&rel(&untouched))),
        "{} was read, though its ETag shows its content: {gets:#?}",
        rel(&untouched)
    );
    assert!(
        warning_paths(&dry, case.name).contains(&("invalid_link".to_owned(), rel(&a_link))),
        "no invalid_link warning for {}: {dry:#}",
        rel(&a_link)
    );
    // The tag names `elsewhere` now: it stays, with what it references.
    let manifests = candidates_of(&dry, "manifest");
    assert!(
        !manifests.contains(&elsewhere.digest),
        "the manifest the tag names is a candidate: {dry:#}"
    );
    assert!(
        manifests.contains(&h1.digest) && manifests.contains(&h2.digest),
        "the tag's old history is untagged now, garbage under -m: {dry:#}"
    );

    let found = compare(&case, &s3);
    assert!(found.is_empty(), "{found}");
    let left = s3.keys(&format!("{}/", case.name));
    let key = |path: &Path| format!("{}/{}", case.name, rel(path));
    assert!(left.contains(&key(&current)));
    assert!(left.contains(&key(&revision_link(&root, "app", &elsewhere.digest))));
    assert!(left.contains(&key(&layout_support::blob_data(&root, &elsewhere.digest))));
}

/// Digests of the candidates of `kind`.
fn candidates_of(report: &Value, kind: &str) -> BTreeSet<String> {
    report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// On S3, a key under `repositories/x/_manifests/` that the registry never
/// writes keeps repository `x` whole; a manifest that is not JSON keeps
/// its repository whole too, with every blob it might reference. (The
/// filesystem agrees on the second, not on the first: see
/// [`known_differences_between_s3_and_a_filesystem`].)
#[test]
fn a_bucket_keeps_a_repository_whole_for_an_unknown_key_or_an_unreadable_manifest() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    for (name, build, repo, kind) in [
        (
            "unknown-key",
            unknown_key_under_manifests as Build,
            "x",
            "unexpected_entry",
        ),
        ("not-json", manifest_not_json, "app", "unreadable_manifest"),
    ] {
        let mut b = LayoutBuilder::new();
        build(&mut b);
        upload(&s3, b.root(), name);
        let repo_prefix = format!("{name}/docker/registry/v2/repositories/{repo}/");
        let before = s3.keys(&repo_prefix);
        let named: BTreeSet<String> = before
            .iter()
            .filter_map(|k| {
                let hex = k.split('/').rev().nth(1)?;
                (hex.len() == 64 && (k.contains("/_layers/") || k.contains("/revisions/")))
                    .then(|| format!("sha256:{hex}"))
            })
            .collect();
        assert!(!named.is_empty(), "{name}: nothing linked in {repo}");
        let report = gc_s3(&s3, name, &["-m", "-y"]);
        assert_eq!(report["exit_code"], 1, "{name}: {report:#}");
        assert!(
            report["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["kind"] == kind && w["repository"] == repo),
            "{name}: no {kind} warning for {repo}: {report:#}"
        );
        assert_eq!(
            s3.keys(&repo_prefix),
            before,
            "{name}: repository {repo} was not kept whole"
        );
        let blobs = s3.keys(&format!("{name}/docker/registry/v2/blobs/"));
        for digest in &named {
            let hex = &digest["sha256:".len()..];
            let data = format!(
                "{name}/docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            );
            assert!(
                blobs.contains(&data),
                "{name}: {digest}, linked in {repo}, was deleted"
            );
        }
        // The bystander's untagged image went: the run did collect.
        assert!(
            candidates_of(&report, "manifest").len() == 1,
            "{name}: only the bystander's untagged manifest goes: {report:#}"
        );
    }
}
