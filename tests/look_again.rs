//! What a sweep does when the tree is not what the plan saw: something it
//! cannot remove keeps what depends on it, a change since the index began
//! stops it, and a repository with nothing but an upload is a repository.
//! Trees written by the layout builder; the races against the real registry
//! are in `real_registry_races.rs`.

mod layout_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use layout_support::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Makes `dir` a directory nothing can be removed from: immutable (root,
/// through `chattr +i`), or without write permission (anyone else). `None`
/// when neither works here.
struct Pinned(PathBuf, bool);

impl Pinned {
    fn new(dir: &Path) -> Option<Pinned> {
        if is_root() {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            return ok.then(|| Pinned(dir.to_path_buf(), true));
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).ok()?;
        Some(Pinned(dir.to_path_buf(), false))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        }
    }
}

/// Repository `app`: tag `v1` → a live image; `old`, an untagged image with
/// its own config and layer, plus a layer shared with `v1`.
fn app_with_untagged_image() -> (LayoutBuilder, Manifest, Manifest) {
    let mut b = LayoutBuilder::new();
    let shared = b.layer("shared");
    let live = b.simple_image("live", &[&shared]);
    let old = b.simple_image("old", &[&shared]);
    b.push("app", "v1", &live);
    b.push_untagged("app", &old);
    (b, live, old)
}

#[test]
fn a_revision_that_cannot_be_removed_keeps_its_manifest_blob_layers_and_links() {
    let (b, live, old) = app_with_untagged_image();
    let revision = revision_dir(b.root(), "app", &old.digest);
    let Some(pinned) = Pinned::new(&revision) else {
        eprintln!(
            "skipped: cannot make a directory undeletable here (chattr +i needs root on ext4)"
        );
        return;
    };
    let report = gc_json(b.root(), &["-m", "-y"]);
    drop(pinned);

    assert_eq!(report["exit_code"], 1, "a failure is a warning: {report:#}");
    let failures = report["failures"].as_array().unwrap();
    assert!(
        failures.iter().any(
            |f| Path::new(f["path"].as_str().unwrap()).starts_with(&revision)
                && !f["message"].as_str().unwrap().starts_with("kept:")
        ),
        "the revision that stayed is reported: {failures:#?}"
    );
    // The revision still serves `old`: everything it needs stays with it.
    assert_manifest_intact(b.root(), "app", &old);
    assert_manifest_intact(b.root(), "app", &live);
    for blob in old.stored_blobs() {
        let kept = failures.iter().any(|f| {
            f["path"].as_str() == Some(blob_dir(b.root(), &blob.digest).to_str().unwrap())
                && f["message"]
                    .as_str()
                    .unwrap()
                    .contains("could not be removed")
        });
        let shared = live.blobs.iter().any(|l| l.digest == blob.digest);
        assert!(
            kept || shared,
            "blob {} is reported as kept for the revision",
            blob.digest
        );
    }
    assert_eq!(
        num(&report, "deleted", "blobs"),
        0,
        "nothing of `old` goes: {report:#}"
    );
    assert_eq!(num(&report, "deleted", "layer_links"), 0);

    // Once it can go, a re-run takes it all.
    let report = gc_json(b.root(), &["-m", "-y"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_revision_gone(b.root(), "app", &old.digest);
    for blob in old
        .stored_blobs()
        .filter(|o| !live.blobs.iter().any(|l| l.digest == o.digest))
    {
        assert_blob_gone(b.root(), &blob.digest);
    }
    assert_manifest_intact(b.root(), "app", &live);
}

#[test]
fn a_layer_link_that_cannot_be_removed_keeps_its_blob() {
    let mut b = LayoutBuilder::new();
    let live = b.simple_image("live", &[]);
    b.push("app", "v1", &live);
    let orphan = b.orphan_linked_blob("app", "orphan");
    let link_dir = layer_link_dir(b.root(), "app", &orphan.digest);
    let Some(pinned) = Pinned::new(&link_dir) else {
        eprintln!(
            "skipped: cannot make a directory undeletable here (chattr +i needs root on ext4)"
        );
        return;
    };
    let report = gc_json(b.root(), &["-y"]);
    drop(pinned);
    assert_eq!(report["exit_code"], 1, "{report:#}");
    assert!(
        layer_link(b.root(), "app", &orphan.digest).is_file(),
        "the link stayed"
    );
    assert_blob_kept(b.root(), &orphan.digest);
    assert_eq!(num(&report, "deleted", "blobs"), 0, "{report:#}");
}

#[test]
fn a_blob_whose_data_went_but_whose_directory_stayed_counts_its_bytes() {
    let mut b = LayoutBuilder::new();
    let live = b.simple_image("live", &[]);
    b.push("app", "v1", &live);
    let orphan = b.orphan_blob("orphan");
    // Something the registry never writes keeps the directory.
    fs::write(blob_dir(b.root(), &orphan.digest).join("notes"), b"x").unwrap();
    let report = gc_json(b.root(), &["-y"]);
    assert_eq!(report["exit_code"], 1, "{report:#}");
    assert!(!blob_data(b.root(), &orphan.digest).exists(), "data went");
    assert!(
        blob_dir(b.root(), &orphan.digest).is_dir(),
        "directory stayed"
    );
    assert_eq!(
        num(&report, "deleted", "blobs"),
        0,
        "the blob did not go whole"
    );
    assert_eq!(
        num(&report, "deleted", "bytes"),
        orphan.size,
        "its bytes were freed: {report:#}"
    );
}

/// The library's sweep, given the plan of a tree that changed after it was
/// made: stops before its first deletion.
#[test]
fn a_retag_after_the_plan_stops_the_sweep_before_any_deletion() {
    let (mut b, _live, old) = app_with_untagged_image();
    let config = regsweep::gc::GcConfig {
        delete_untagged: true,
        threads: Some(2),
        delete_threads: Some(4),
        min_age: regsweep::duration::Age::ZERO,
        ..regsweep::gc::GcConfig::new(regsweep::storage::target::storage_root(b.root()).unwrap())
    };
    let collector = regsweep::gc::Collector::new(config).unwrap();
    let index_began = SystemTime::now();
    let planned = collector.plan().unwrap();
    assert!(
        planned
            .plan
            .candidates
            .iter()
            .any(|c| c.digest.to_string() == old.digest),
        "`old` is planned to go"
    );
    // File times come from a clock that may lag the system's by a tick.
    sleep(Duration::from_millis(50));
    b.tag("app", "again", &old.digest);
    let before = snapshot_contents(b.root());
    let outcome = collector.sweep(
        &planned,
        regsweep::storage::fs::sweep::Disposal::Delete,
        true,
        index_began,
    );
    let change = outcome.changed.as_ref().expect("the re-tag is seen");
    assert!(
        change.path.starts_with(b.root()),
        "names what changed: {change}"
    );
    assert!(outcome.gone.iter().all(|g| !g), "nothing deleted");
    assert_unchanged(b.root(), &before, "stopped sweep");
    let report = collector.report(&planned, Some(outcome), None);
    assert_eq!(report.exit_code, regsweep::ExitStatus::Failed);
    assert!(report.registry_changed.is_some());
}

#[test]
fn a_first_push_into_a_new_repository_is_an_upload_in_progress() {
    let mut b = LayoutBuilder::new();
    let live = b.simple_image("live", &[]);
    b.push("app", "v1", &live);
    b.orphan_blob("orphan");
    // What a first push into `fresh` has written so far: its upload.
    let upload = b.upload("fresh");
    assert!(
        !b.root()
            .join("docker/registry/v2/repositories/fresh/_layers")
            .exists()
    );
    let before = snapshot_contents(b.root());
    let out = regsweep(["gc", "-y", "--min-age", "1h", b.root().to_str().unwrap()]);
    assert_eq!(code(&out), 2, "refused: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("taking pushes") && stderr.contains("fresh"),
        "says why and where: {stderr}"
    );
    assert_unchanged(b.root(), &before, "refused run");
    assert!(upload.is_dir());
}

/// `config.yml` for `root` with the given `storage` extras.
fn config_for(dir: &Path, root: &Path, storage_extra: &str) -> PathBuf {
    let path = dir.join("config.yml");
    fs::write(
        &path,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n{storage_extra}http:\n  addr: 127.0.0.1:5000\n",
            root.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_registry_config_says_whether_it_is_read_only_and_how_its_cache_forgets() {
    let cases = [
        (
            "  maintenance:\n    readonly:\n      enabled: true\n  cache:\n    blobdescriptor: inmemory\n",
            "readonly.enabled is true",
            "Restart the registry: its in-memory blob descriptor cache",
        ),
        (
            "  cache:\n    blobdescriptor: redis\n",
            "readonly.enabled is not true",
            "--pattern 'blobs::*'",
        ),
        (
            "",
            "readonly.enabled is not true",
            "keeps no blob descriptor cache",
        ),
    ];
    for (extra, readonly, advice) in cases {
        let mut b = LayoutBuilder::new();
        let live = b.simple_image("live", &[]);
        b.push("app", "v1", &live);
        let orphan = b.orphan_blob("orphan");
        let config = config_for(b.scratch(), b.root(), extra);
        let out = regsweep(["gc", "-y", config.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stderr.contains(readonly), "{extra:?}: {stderr}");
        assert!(stdout.contains(advice), "{extra:?}: {stdout}");
        assert_blob_gone(b.root(), &orphan.digest);
    }
    // A directory as TARGET: the cache is unknown, the advice covers both.
    let mut b = LayoutBuilder::new();
    b.orphan_blob("orphan");
    let out = regsweep(["gc", "-y", b.root().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Restart the registry") && stdout.contains("redis"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("readonly"));
}

/// The sweep's own removal of a nested repository changes its parent's
/// directory: that is no write of the registry's, and the emptied parent goes
/// too.
#[test]
fn removing_a_nested_empty_repository_does_not_look_like_a_registry_write() {
    let mut b = LayoutBuilder::new();
    let live = b.simple_image("live", &[]);
    b.push("kept", "v1", &live);
    let parent = b.simple_image("parent", &[]);
    let child = b.simple_image("child", &[]);
    b.push_untagged("ns", &parent);
    b.push_untagged("ns/child", &child);
    let report = gc_json(b.root(), &["-m", "-y", "--remove-empty-repos"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(num(&report, "deleted", "repositories"), 2, "{report:#}");
    assert!(!repo_dir(b.root(), "ns").exists());
    assert_manifest_intact(b.root(), "kept", &live);
}
