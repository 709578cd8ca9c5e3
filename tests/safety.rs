//! Safe by construction: `--min-age`, uploads in progress, the lock file,
//! the trash and `restore`, storage hygiene, and stopping on Ctrl-C.
//!
//! Every test works on a copy of the bundled fixture (`fixtures/registry`,
//! written by the real registry 2.8.2): `app:latest` pushed twice (an
//! untagged manifest in the tag's history), `tools/multi:1.0` (a two-platform
//! OCI index), a shared base layer, an orphan blob linked into `app` and one
//! linked nowhere. With `-m`, a sweep deletes 1 manifest, 1 tag history
//! entry, 3 layer links and 5 blobs. A copy is "aged" (every mtime two days
//! back) when a test means "nothing here is recent".

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tempfile::TempDir;
use walkdir::WalkDir;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/registry");
const UNTAGGED: &str = "b80eb9501d88812939972a4e47a9829bff4a6b11a3b0249d2f17d53896e18ad2";
const TWO_DAYS: Duration = Duration::from_secs(2 * 86_400);

// ---------------------------------------------------------------------------
// A small test environment
// ---------------------------------------------------------------------------

/// A copy of the fixture; `aged` sets every mtime two days back.
fn fixture(aged: bool) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    copy_tree(Path::new(FIXTURE), &root);
    if aged {
        set_mtimes(&root, SystemTime::now() - TWO_DAYS);
    }
    (dir, root)
}

fn copy_tree(from: &Path, to: &Path) {
    for e in WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Sets the mtime of everything under `root` (deepest first, so that
/// setting a file's time does not touch its directory's afterwards).
fn set_mtimes(root: &Path, t: SystemTime) {
    for e in WalkDir::new(root).contents_first(true) {
        touch_at(e.unwrap().path(), t);
    }
}

fn touch_at(path: &Path, t: SystemTime) {
    fs::File::open(path).unwrap().set_modified(t).unwrap();
}

fn touch(path: &Path) {
    touch_at(path, SystemTime::now());
}

fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

fn repo(root: &Path, name: &str) -> PathBuf {
    v2(root).join("repositories").join(name)
}

fn blob_dir(root: &Path, hex: &str) -> PathBuf {
    v2(root).join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn regsweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .env_remove("REGSWEEP_FAULT_STOP_AFTER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `regsweep gc --json ARGS ROOT`: the report; its `exit_code` is the process's.
fn gc(root: &Path, args: &[&str]) -> (Value, Output) {
    let mut all = vec!["gc", "--json", "-v"];
    all.extend(args);
    all.push(root.to_str().unwrap());
    let out = regsweep(&all);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON report ({e}): {}", describe(&out)));
    assert_eq!(report["exit_code"].as_i64(), Some(code(&out).into()));
    (report, out)
}

fn n(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{key} in {report:#}"))
}

/// Every file (with content) and directory below `root`, the lock file aside.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "regsweep.lock")
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            let content = e.file_type().is_file().then(|| fs::read(e.path()).unwrap());
            (rel, content)
        })
        .collect()
}

fn assert_same_tree(
    a: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    b: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    context: &str,
) {
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let differ: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "{context}: trees differ\n  only before: {only_a:#?}\n  only after: {only_b:#?}\n  content differs: {differ:#?}"
    );
}

fn kept_reasons(report: &Value) -> Vec<(String, String)> {
    report["kept"]
        .as_array()
        .expect("kept[]")
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().unwrap().to_owned(),
                k["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Writes an upload in progress under `app`: `startedat` at `started`.
fn upload(root: &Path, uuid: &str, started: SystemTime) -> PathBuf {
    let dir = repo(root, "app").join("_uploads").join(uuid);
    fs::create_dir_all(dir.join("hashstates/sha256")).unwrap();
    fs::write(dir.join("data"), b"partial layer").unwrap();
    fs::write(dir.join("startedat"), regsweep::clock::rfc3339(started)).unwrap();
    for path in [dir.join("data"), dir.join("startedat"), dir.clone()] {
        touch_at(&path, started);
    }
    dir
}

// ---------------------------------------------------------------------------
// --min-age
// ---------------------------------------------------------------------------

/// A fresh checkout (every mtime now) is kept whole by the default
/// `--min-age 1h`: a push that raced the maintenance switch loses nothing.
#[test]
fn a_fresh_tree_is_kept_whole_by_the_default_min_age() {
    let (_d, root) = fixture(false);
    let before = snapshot(&root);
    let (report, out) = gc(&root, &["-m", "-y"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(report["min_age"], "1h");
    assert_eq!(report["min_age_seconds"], 3600);
    assert_eq!(report["candidates"], Value::Array(vec![]));
    assert_eq!(n(&report, "deleted", "blobs"), 0);
    assert_eq!(n(&report, "kept_too_recent", "blobs"), 5, "{report:#}");
    assert_eq!(n(&report, "kept_too_recent", "manifests"), 1);
    assert_eq!(n(&report, "kept_too_recent", "layer_links"), 3);
    assert_eq!(n(&report, "kept_too_recent", "tag_index_entries"), 1);
    assert!(
        kept_reasons(&report)
            .iter()
            .all(|(_, r)| r.starts_with("kept: too recent")),
        "{report:#}"
    );
    assert_same_tree(&before, &snapshot(&root), "nothing recent is deleted");

    let out = regsweep(&["gc", "-v", "-d", "-m", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\tkept: too recent (modified"),
        "-v names the reason: {text}"
    );
    assert!(text.contains("Kept, too recent (--min-age 1h)"), "{text}");
}

/// Two days old, the same tree is collected by the default `--min-age`,
/// exactly as with `--min-age 0`.
#[test]
fn an_old_tree_is_collected_as_with_min_age_zero() {
    let (_d, root) = fixture(true);
    let (dry, _) = gc(&root, &["-m", "-d", "--min-age", "0"]);
    let (report, out) = gc(&root, &["-m", "-y"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(report["candidates"], dry["candidates"]);
    assert_eq!(n(&report, "deleted", "blobs"), 5);
    assert_eq!(n(&report, "kept_too_recent", "blobs"), 0);
}

/// A recent untagged manifest revision is a root, not merely skipped: with
/// `-m`, its tag history entry, its config and its layers stay too.
#[test]
fn a_recent_revision_is_a_root_and_keeps_what_it_references() {
    let (_d, root) = fixture(true);
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob_dir(&root, UNTAGGED).join("data")).unwrap()).unwrap();
    let mut referenced: Vec<String> = vec![manifest["config"]["digest"].as_str().unwrap().into()];
    for layer in manifest["layers"].as_array().unwrap() {
        referenced.push(layer["digest"].as_str().unwrap().into());
    }
    let revision = repo(&root, "app")
        .join("_manifests/revisions/sha256")
        .join(UNTAGGED);
    touch(&revision.join("link"));

    let (report, out) = gc(&root, &["-m", "-y"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(n(&report, "deleted", "manifests"), 0, "{report:#}");
    assert_eq!(n(&report, "deleted", "tag_index_entries"), 0);
    assert!(revision.join("link").exists());
    for digest in &referenced {
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert!(
            blob_dir(&root, hex).join("data").exists(),
            "{digest}, referenced by the recent revision, was deleted"
        );
    }
    assert!(blob_dir(&root, UNTAGGED).join("data").exists());
    let reasons = kept_reasons(&report);
    assert!(
        reasons.iter().any(|(k, r)| k == "manifest"
            && r.starts_with("kept: too recent (modified ")
            && r.ends_with(" ago, within --min-age 1h)")),
        "the revision is too recent itself: {reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(k, r)| k == "blob" && r.contains("referenced by, or holding")),
        "{reasons:#?}"
    );
    // The orphans are still collected.
    assert_eq!(n(&report, "deleted", "blobs"), 2, "{report:#}");
}

/// A `_layers` link written within the window keeps its blob: a push may
/// have just linked it and be about to PUT the manifest that references it.
#[test]
fn a_recent_layer_link_keeps_its_blob() {
    let (_d, root) = fixture(true);
    let (dry, _) = gc(&root, &["-d", "--min-age", "0"]);
    let linked: Vec<String> = dry["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "layer_link")
        .map(|c| {
            c["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_owned()
        })
        .collect();
    assert_eq!(linked.len(), 1, "the fixture's linked orphan: {dry:#}");
    let link = repo(&root, "app").join("_layers/sha256").join(&linked[0]);
    touch(&link.join("link"));
    let (report, _) = gc(&root, &["-y"]);
    assert!(link.join("link").exists());
    assert!(blob_dir(&root, &linked[0]).join("data").exists());
    assert_eq!(
        n(&report, "deleted", "blobs"),
        1,
        "the unlinked orphan goes"
    );
    assert!(
        kept_reasons(&report)
            .iter()
            .any(|(k, r)| k == "blob" && r.contains("_layers link")),
        "{report:#}"
    );
}

/// A blob written within the window (its directory, and so its shard, are
/// recent) is kept; orphans in shards nobody wrote to since the cutoff go
/// without a stat each, and still go.
#[test]
fn a_blob_written_within_the_window_is_kept_and_old_orphans_still_go() {
    let (_d, root) = fixture(true);
    let data = b"a layer uploaded a minute ago, its manifest not yet pushed";
    let hex = regsweep::digest::Digest::of_bytes(data).hex();
    let fresh = blob_dir(&root, &hex);
    fs::create_dir_all(&fresh).unwrap();
    fs::write(fresh.join("data"), data).unwrap();

    let (report, out) = gc(&root, &["-y"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(fresh.join("data").exists(), "the fresh blob was deleted");
    assert!(
        kept_reasons(&report)
            .iter()
            .any(|(k, r)| k == "blob" && r.starts_with("kept: too recent")),
        "{report:#}"
    );
    assert_eq!(
        n(&report, "deleted", "blobs"),
        2,
        "the fixture's orphans: {report:#}"
    );
}

// ---------------------------------------------------------------------------
// Uploads in progress, stale uploads
// ---------------------------------------------------------------------------

#[test]
fn uploads_in_progress_refuse_a_sweep_unless_forced_and_a_dry_run_warns() {
    let (_d, root) = fixture(true);
    upload(
        &root,
        "0b9a3c1e-1111-4c1a-9e1d-000000000001",
        SystemTime::now(),
    );
    let before = snapshot(&root);

    let out = regsweep(&["gc", "-y", "-m", root.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("storage.maintenance.readonly.enabled: true"),
        "{err}"
    );
    assert!(err.contains("nothing was deleted"), "{err}");
    assert_same_tree(&before, &snapshot(&root), "a refused sweep");
    assert!(
        !root.join("regsweep.lock").exists(),
        "the lock goes on error too"
    );

    let (dry, out) = gc(&root, &["-d", "-m"]);
    assert_eq!(code(&out), 1, "a dry run only warns: {}", describe(&out));
    assert_eq!(dry["uploads_in_progress"], 1);
    assert!(
        dry["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "upload_in_progress")
    );

    let (forced, out) = gc(&root, &["-y", "-m", "--force"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert_eq!(n(&forced, "deleted", "blobs"), 5);
    assert!(
        repo(&root, "app")
            .join("_uploads")
            .read_dir()
            .unwrap()
            .count()
            == 1,
        "an upload in progress is never purged"
    );
}

#[test]
fn stale_uploads_are_purged_on_request_and_their_old_temporary_files_removed() {
    let (_d, root) = fixture(true);
    let stale = upload(&root, "stale-0000", SystemTime::now() - 10 * TWO_DAYS);
    let idle = upload(&root, "idle-0000", SystemTime::now() - TWO_DAYS);
    let old_tmp = idle.join("startedat.3f9c2b1e.tmp");
    let new_tmp = idle.join("startedat.8d4a4e7b.tmp");
    fs::write(&old_tmp, b"x").unwrap();
    fs::write(&new_tmp, b"x").unwrap();
    touch_at(&old_tmp, SystemTime::now() - TWO_DAYS);
    touch_at(&idle, SystemTime::now() - TWO_DAYS);

    let (report, out) = gc(&root, &["-y", "--purge-uploads-older-than", "7d"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!stale.exists(), "untouched for 20 days: purged");
    assert!(idle.join("data").exists(), "2 days: younger than 7d, kept");
    assert!(!old_tmp.exists(), "an old temporary file goes");
    assert!(new_tmp.exists(), "a recent temporary file stays");
    assert_eq!(n(&report, "deleted", "uploads"), 1);
    assert_eq!(n(&report, "deleted", "temporary_files"), 1);
    assert_eq!(n(&report, "after", "uploads"), 1);
    let kinds: Vec<&str> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"upload") && kinds.contains(&"temporary_file"));
}

/// A stray `*.tmp` in a directory the sweep deletes does not make the
/// deletion fail when it is old.
#[test]
fn a_stray_temporary_file_in_a_garbage_directory_goes_with_it() {
    let (_d, root) = fixture(true);
    let (dry, _) = gc(&root, &["-d"]);
    let orphan = dry["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "layer_link")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let link_dir = repo(&root, "app").join("_layers/sha256").join(&orphan);
    let tmp = link_dir.join("link.5b6c7d8e-9f00.tmp");
    fs::write(&tmp, b"sha256:").unwrap();
    set_mtimes(&link_dir, SystemTime::now() - TWO_DAYS);
    let (report, out) = gc(&root, &["-y"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!link_dir.exists());
    assert_eq!(n(&report, "deleted", "temporary_files"), 1, "{report:#}");
}

/// `--scan-temporary-files` finds stray `*.tmp` files next to live links
/// too: old ones go, recent ones stay; one inside a garbage directory moved
/// to the trash comes back with it on restore.
#[test]
fn scan_temporary_files_finds_them_next_to_live_links() {
    let (dir, root) = fixture(true);
    let current = repo(&root, "app").join("_manifests/tags/latest/current");
    let old_tmp = current.join("link.1a2b3c4d.tmp");
    let new_tmp = current.join("link.5e6f7a8b.tmp");
    fs::write(&old_tmp, b"sha256:").unwrap();
    fs::write(&new_tmp, b"sha256:").unwrap();
    touch_at(&old_tmp, SystemTime::now() - TWO_DAYS);
    let in_garbage = blob_dir(&root, UNTAGGED).join("data.9c0d1e2f.tmp");
    fs::write(&in_garbage, b"x").unwrap();
    for path in [&in_garbage, &current, &blob_dir(&root, UNTAGGED)] {
        touch_at(path, SystemTime::now() - TWO_DAYS);
    }

    let (plain, _) = gc(&root, &["-d", "-m"]);
    assert_eq!(
        n(&plain, "reclaimable", "temporary_files"),
        0,
        "not without the flag"
    );

    let original = snapshot(&root);
    let trash = dir.path().join("trash");
    let args = [
        "-y",
        "-m",
        "--scan-temporary-files",
        "--trash",
        trash.to_str().unwrap(),
    ];
    let (report, out) = gc(&root, &args);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(n(&report, "deleted", "temporary_files"), 2, "{report:#}");
    assert_eq!(n(&report, "kept_too_recent", "temporary_files"), 1);
    assert!(!old_tmp.exists() && new_tmp.exists());
    assert!(current.join("link").exists(), "the live link stays");
    let out = regsweep(&["restore", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_same_tree(&original, &snapshot(&root), "restore");

    let (report, out) = gc(&root, &["-y", "-m", "--scan-temporary-files"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(
        n(&report, "deleted", "temporary_files"),
        2,
        "counted once: {report:#}"
    );
    assert!(!in_garbage.exists() && !old_tmp.exists());
}

// ---------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------

#[test]
fn a_held_lock_refuses_a_sweep_and_a_leftover_one_does_not() {
    let (_d, root) = fixture(true);
    let lock = root.join("regsweep.lock");
    let before = snapshot(&root);

    let held = regsweep::storage::fs::lock::Lock::acquire(&root, "gc").unwrap();
    let out = regsweep(&["gc", "-y", "-m", root.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("another run holds the lock"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let (dry, out) = gc(&root, &["-d", "-m"]);
    assert_eq!(
        code(&out),
        1,
        "a dry run takes no lock, warns: {}",
        describe(&out)
    );
    assert!(
        dry["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "lock_held")
    );
    assert_same_tree(&before, &snapshot(&root), "refused runs delete nothing");
    drop(held);

    // What a killed run leaves: a file no process holds, naming a process
    // of a host that is gone.
    fs::write(
        &lock,
        "{\"pid\":2147483647,\"host\":\"gone-pod-7f9c\",\"started\":\"2024-05-01T12:00:00Z\",\"command\":\"gc\"}\n",
    )
    .unwrap();
    let (dry, out) = gc(&root, &["-d", "-m"]);
    assert_eq!(code(&out), 0, "not held, no warning: {}", describe(&out));
    assert_eq!(dry["warnings"], Value::Array(vec![]));
    let (_, out) = gc(&root, &["-y", "-m"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!lock.exists(), "the lock file is removed at exit");
}

// ---------------------------------------------------------------------------
// Trash and restore
// ---------------------------------------------------------------------------

/// `gc --trash` leaves the same registry as a deleting sweep; `restore`
/// brings back the original byte for byte, files and directories.
#[test]
fn trash_then_restore_is_byte_for_byte() {
    let (dir, root) = fixture(true);
    let original = snapshot(&root);
    let (_d2, deleted_root) = fixture(true);
    let (deleted, _) = gc(&deleted_root, &["-y", "-m"]);

    let trash = dir.path().join("trash");
    let (report, out) = gc(&root, &["-y", "-m", "--trash", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(report["deleted"], deleted["deleted"]);
    assert_same_tree(
        &snapshot(&deleted_root),
        &snapshot(&root),
        "a trash run leaves what a deleting run leaves",
    );
    let batch = report["trash"]["batch"].as_str().unwrap().to_owned();
    let journal = fs::read_to_string(trash.join(&batch).join("journal.jsonl")).unwrap();
    let lines: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["regsweep_trash"], 1);
    assert_eq!(lines.last().unwrap()["op"], "end");
    let moves = lines.iter().filter(|l| l["op"] == "move").count();
    assert_eq!(moves, 10, "1 + 1 + 3 + 5 candidate directories: {journal}");
    assert!(
        trash
            .join(&batch)
            .join("docker/registry/v2/blobs/sha256")
            .is_dir(),
        "paths are kept below the batch"
    );

    let out = regsweep(&["restore", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_same_tree(&original, &snapshot(&root), "restore");
    assert!(
        !trash.join(&batch).exists(),
        "a restored batch leaves the trash"
    );
    assert!(!root.join("regsweep.lock").exists());
}

/// Repositories, uploads and empty directories come back too.
#[test]
fn restore_brings_back_removed_repositories_uploads_and_empty_directories() {
    let (dir, root) = fixture(true);
    fs::remove_dir_all(repo(&root, "tools/multi").join("_manifests/tags")).unwrap();
    let stale = upload(&root, "stale-0000", SystemTime::now() - 10 * TWO_DAYS);
    fs::create_dir(v2(&root).join("blobs/sha256/00")).unwrap();
    set_mtimes(&root, SystemTime::now() - TWO_DAYS);
    let original = snapshot(&root);
    let trash = dir.path().join("trash");
    let (report, out) = gc(
        &root,
        &[
            "-y",
            "-m",
            "--remove-empty-repos",
            "--purge-uploads-older-than",
            "1d",
            "--trash",
            trash.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(n(&report, "deleted", "repositories"), 1, "{report:#}");
    assert_eq!(n(&report, "deleted", "uploads"), 1);
    assert!(!repo(&root, "tools").exists() && !stale.exists());
    assert!(!v2(&root).join("blobs/sha256/00").exists());

    let out = regsweep(&["restore", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_same_tree(&original, &snapshot(&root), "restore");
}

#[test]
fn restore_refuses_to_overwrite_what_exists_again() {
    let (dir, root) = fixture(true);
    let trash = dir.path().join("trash");
    gc(&root, &["-y", "-m", "--trash", trash.to_str().unwrap()]);
    // The untagged manifest is pushed again: its blob directory exists.
    fs::create_dir_all(blob_dir(&root, UNTAGGED)).unwrap();
    let swept = snapshot(&root);
    let trashed = snapshot(&trash);
    let out = regsweep(&["restore", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(stderr(&out).contains("exists again"), "{}", stderr(&out));
    assert_same_tree(&swept, &snapshot(&root), "nothing was restored");
    assert_same_tree(&trashed, &snapshot(&trash), "the batch is intact");
}

#[test]
fn the_trash_must_be_outside_the_registry_and_on_its_filesystem() {
    let (_d, root) = fixture(true);
    let before = snapshot(&root);
    let inside = v2(&root).join("trash");
    let out = regsweep(&[
        "gc",
        "-y",
        "--trash",
        inside.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("inside the registry"),
        "{}",
        stderr(&out)
    );
    assert!(!inside.exists(), "nothing is created inside the registry");
    assert_same_tree(&before, &snapshot(&root), "refused");

    use std::os::unix::fs::MetadataExt;
    let here = fs::metadata(&root).unwrap().dev();
    let elsewhere = ["/dev/shm", "/run", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| m.dev() != here) && tempfile::tempdir_in(p).is_ok()
        });
    let Some(elsewhere) = elsewhere else {
        eprintln!(
            "skipping the other-filesystem case: no writable directory on another filesystem"
        );
        return;
    };
    let other = tempfile::tempdir_in(elsewhere).unwrap();
    let out = regsweep(&[
        "gc",
        "-y",
        "--trash",
        other.path().to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(stderr(&out).contains("same filesystem"), "{}", stderr(&out));
    assert_same_tree(&before, &snapshot(&root), "refused");
}

#[test]
fn trash_empty_deletes_old_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    let trash = dir.path().join("trash");
    let mut batches = Vec::new();
    let mut roots = Vec::new();
    for _ in 0..2 {
        let root = dir.path().join(format!("storage{}", roots.len()));
        copy_tree(Path::new(FIXTURE), &root);
        set_mtimes(&root, SystemTime::now() - TWO_DAYS);
        let (report, _) = gc(&root, &["-y", "-m", "--trash", trash.to_str().unwrap()]);
        batches.push(report["trash"]["batch"].as_str().unwrap().to_owned());
        roots.push(root);
    }
    // Make the first batch 40 days old.
    let journal = trash.join(&batches[0]).join("journal.jsonl");
    let text = fs::read_to_string(&journal).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let mut header: Value = serde_json::from_str(header).unwrap();
    let old = SystemTime::now() - Duration::from_secs(40 * 86_400);
    header["started"] = regsweep::clock::rfc3339(old).into();
    fs::write(&journal, format!("{header}\n{rest}")).unwrap();

    let out = regsweep(&[
        "trash",
        "empty",
        trash.to_str().unwrap(),
        "--older-than",
        "30d",
    ]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!trash.join(&batches[0]).exists());
    assert!(trash.join(&batches[1]).exists());
    let out = regsweep(&["trash", "empty", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!trash.join(&batches[1]).exists());
    assert!(trash.exists(), "the trash directory itself stays");
}

// ---------------------------------------------------------------------------
// Empty directories and repositories
// ---------------------------------------------------------------------------

#[test]
fn empty_directories_left_behind_are_removed_but_never_what_makes_a_repository() {
    let (_d, root) = fixture(true);
    let shard = v2(&root).join("blobs/sha256/00");
    fs::create_dir(&shard).unwrap();
    // tools/multi loses every link: its `_layers/sha256` empties, `_layers` stays.
    let (report, out) = gc(&root, &["-y", "-m"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(!shard.exists(), "an empty shard directory goes");
    assert!(report["empty_directories_removed"].as_u64().unwrap() >= 1);
    for repo_name in ["app", "tools/multi"] {
        let r = repo(&root, repo_name);
        assert!(r.join("_layers").is_dir() && r.join("_manifests").is_dir());
    }
    let (again, _) = gc(&root, &["-y", "-m"]);
    assert_eq!(again["empty_directories_removed"], 0);
}

/// `--remove-empty-repos` removes a repository left with no tags and no
/// manifests; one with a nested repository below keeps its directory and
/// loses only its `_`-metadata. Without the flag, repositories stay.
#[test]
fn remove_empty_repos_spares_nested_repositories() {
    let (_d, root) = fixture(true);
    // Untag both repositories; nest a live copy of tools/multi under app.
    fs::remove_dir_all(repo(&root, "app").join("_manifests/tags")).unwrap();
    copy_tree(&repo(&root, "tools/multi"), &repo(&root, "app/inner"));
    fs::remove_dir_all(repo(&root, "tools/multi").join("_manifests/tags")).unwrap();
    set_mtimes(&root, SystemTime::now() - TWO_DAYS);

    let (_d2, plain) = fixture(false);
    fs::remove_dir_all(&plain).unwrap();
    copy_tree(&root, &plain);
    set_mtimes(&plain, SystemTime::now() - TWO_DAYS);
    let (report, _) = gc(&plain, &["-y", "-m"]);
    assert_eq!(n(&report, "deleted", "repositories"), 0);
    assert!(
        repo(&plain, "tools/multi").join("_manifests").is_dir(),
        "opt-in only"
    );

    let (report, out) = gc(&root, &["-y", "-m", "--remove-empty-repos"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(n(&report, "deleted", "repositories"), 2, "{report:#}");
    assert_eq!(n(&report, "after", "repositories"), 1);
    let links = WalkDir::new(v2(&root).join("repositories"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() == "link" && e.path().to_string_lossy().contains("/_layers/"))
        .count() as u64;
    assert_eq!(n(&report, "after", "layer_links"), links, "{report:#}");
    assert!(
        !repo(&root, "tools").exists(),
        "tools/multi and the empty tools/ went"
    );
    let app = repo(&root, "app");
    assert!(app.is_dir(), "app holds a nested repository");
    assert!(!app.join("_manifests").exists() && !app.join("_layers").exists());
    let inner = repo(&root, "app/inner");
    assert!(
        inner.join("_manifests/tags/1.0/current/link").exists(),
        "the nested repository is untouched"
    );
    let (again, _) = gc(&root, &["-y", "-m", "--remove-empty-repos", "-d"]);
    assert_eq!(again["candidates"], Value::Array(vec![]), "{again:#}");
}

// ---------------------------------------------------------------------------
// Ctrl-C
// ---------------------------------------------------------------------------

/// The quit flag the first signal sets is checked before each deletion: a
/// sweep started with it set deletes nothing and says it was interrupted.
#[test]
fn the_quit_flag_stops_the_sweep_between_deletions() {
    static QUIT: AtomicBool = AtomicBool::new(false);
    let (_d, root) = fixture(true);
    let before = snapshot(&root);
    let config = regsweep::gc::GcConfig {
        delete_untagged: true,
        threads: Some(2),
        delete_threads: Some(4),
        interrupt: regsweep::interrupt::Interrupt::new(&QUIT),
        min_age: regsweep::duration::Age::ZERO,
        ..regsweep::gc::GcConfig::new(regsweep::storage::target::storage_root(&root).unwrap())
    };
    let collector = regsweep::gc::Collector::new(config).unwrap();
    let planned = collector.plan().unwrap();
    assert!(!planned.plan.candidates.is_empty());
    QUIT.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = collector.sweep(
        &planned,
        regsweep::storage::fs::sweep::Disposal::Delete,
        true,
        planned.now,
    );
    assert!(outcome.interrupted);
    assert!(outcome.gone.iter().all(|g| !g));
    let report = collector.report(&planned, Some(outcome), None);
    assert!(report.interrupted);
    assert_eq!(report.exit_code, regsweep::ExitStatus::Warnings);
    assert_same_tree(
        &before,
        &snapshot(&root),
        "interrupted before the first deletion",
    );
}
