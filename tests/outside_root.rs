//! regsweep never reads or writes outside the storage root, whatever the
//! tree, a trash journal or a lock file holds: links on the way to
//! `docker/registry/v2`, journal paths and storage roots that lead
//! elsewhere, what a restore would bring back under a tag or repository
//! deleted since the sweep, torn journals, and lock files or journals that
//! are FIFOs or links to devices.
//!
//! Runs that could hang or fill memory if this regressed go through
//! [`bounded`]: a time limit and an address-space limit on the child.

mod layout_support;
mod registry_support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use layout_support::*;

/// Runs `regsweep` with `args`, killed after 20 s or when it maps more than
/// 4 GiB: a FIFO or `/dev/zero` read as a file makes a test fail, never
/// hang the suite or exhaust the machine. (Not less: the reading threads'
/// allocator arenas reserve 64 MiB of address space each, up to 8 per CPU.)
fn bounded<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    const LIMIT: Duration = Duration::from_secs(20);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(4 << 30),
                maximum: Some(4 << 30),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().expect("run regsweep");
    let started = Instant::now();
    while child.try_wait().expect("wait for regsweep").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap regsweep");
            panic!(
                "regsweep did not finish within {LIMIT:?} (blocked on a FIFO?): {}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("read regsweep's output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// `gc -y -m --trash <trash> <root>`: the new batch's name.
fn sweep_into(root: &Path, trash: &Path) -> String {
    let out = regsweep(["gc", "--json", "-y", "-m", "--trash", s(trash), s(root)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["trash"]["batch"]
        .as_str()
        .unwrap_or_else(|| panic!("no batch: {report:#}"))
        .to_owned()
}

fn journal_path(trash: &Path, batch: &str) -> PathBuf {
    trash.join(batch).join("journal.jsonl")
}

fn journal_lines(trash: &Path, batch: &str) -> Vec<String> {
    fs::read_to_string(journal_path(trash, batch))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_journal(trash: &Path, batch: &str, lines: &[String]) {
    fs::write(journal_path(trash, batch), lines.join("\n") + "\n").unwrap();
}

/// The journal with `line` inserted before its `end` line.
fn add_journal_line(trash: &Path, batch: &str, line: Value) {
    let mut lines = journal_lines(trash, batch);
    let end = lines.len() - 1;
    lines.insert(end, line.to_string());
    write_journal(trash, batch, &lines);
}

/// A storage with one live image in `app:v1` and one orphan blob.
fn storage_with_garbage() -> (LayoutBuilder, Desc) {
    let mut b = LayoutBuilder::new();
    let image = b.simple_image("live", &[]);
    b.push("app", "v1", &image);
    let orphan = b.orphan_blob("garbage");
    (b, orphan)
}

// ---------------------------------------------------------------------------
// Links on the way to docker/registry/v2
// ---------------------------------------------------------------------------

#[test]
fn a_link_at_docker_registry_or_v2_is_refused_naming_the_root_to_pass() {
    let (b, orphan) = storage_with_garbage();
    let real = fs::canonicalize(b.root()).unwrap();
    let before = snapshot_contents(&real);
    let linked = b.scratch().join("linked");
    for (depth, name) in ["docker", "registry", "v2"].iter().enumerate() {
        let _ = fs::remove_dir_all(&linked);
        let above: PathBuf = ["docker", "registry"][..depth].iter().collect();
        fs::create_dir_all(linked.join(&above)).unwrap();
        let link = linked.join(&above).join(name);
        std::os::unix::fs::symlink(real.join(&above).join(name), &link).unwrap();
        let out = regsweep(["gc", "-y", "-m", s(&linked)]);
        assert_eq!(code(&out), 2, "{name}: {}", describe(&out));
        let err = stderr(&out);
        let link = fs::canonicalize(&linked).unwrap().join(&above).join(name);
        assert!(err.contains(&link.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("resolves to instead: {}", real.display())),
            "{err}"
        );
        assert_unchanged(&real, &before, format!("refused through {name}"));
    }
    // TARGET itself may be a link: that is where the operator points.
    let alias = b.scratch().join("alias");
    std::os::unix::fs::symlink(&real, &alias).unwrap();
    let out = regsweep(["gc", "-y", "-m", s(&alias)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_blob_gone(&real, &orphan.digest);
}

// ---------------------------------------------------------------------------
// Journal paths and storage roots
// ---------------------------------------------------------------------------

#[test]
fn restore_refuses_journal_paths_that_leave_the_storage_and_restores_the_rest() {
    let (b, orphan) = storage_with_garbage();
    let trash = b.scratch().join("trash");
    let batch = sweep_into(b.root(), &trash);
    // What a `..` path would move: the batch's parent's file, to the
    // storage root's parent.
    fs::write(trash.join("bait"), b"not registry data").unwrap();
    add_journal_line(
        &trash,
        &batch,
        json!({"op": "move", "kind": "blob", "path": "docker/registry/v2/../../../../bait"}),
    );
    let made = b.scratch().join("made-by-restore");
    add_journal_line(&trash, &batch, json!({"op": "rmdir", "path": s(&made)}));
    add_journal_line(
        &trash,
        &batch,
        json!({"op": "rmdir", "path": "docker/registry/v2/repositories/./x"}),
    );

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    assert!(!b.scratch().join("bait").exists(), "moved outside: {err}");
    assert!(trash.join("bait").exists());
    assert!(!made.exists(), "created outside: {err}");
    assert!(!b.v2().join("repositories/x").exists());
    for why in ["a `..` component", "an absolute path", "a `.` component"] {
        assert!(err.contains(why), "{why}: {err}");
    }
    assert!(err.contains("line "), "names the journal line: {err}");
    assert_blob_kept(b.root(), &orphan.digest);
    assert!(trash.join(&batch).exists(), "a batch with refusals stays");
}

#[test]
fn restore_refuses_a_batch_whose_storage_root_is_not_where_it_came_from() {
    let (mut b, first) = storage_with_garbage();
    let trash = b.scratch().join("trash");
    let kept_batch = sweep_into(b.root(), &trash);
    let second = b.orphan_blob("more garbage");
    // Batch names have a one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));
    let forged_batch = sweep_into(b.root(), &trash);
    assert_ne!(kept_batch, forged_batch);

    let elsewhere = b.scratch().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let mut lines = journal_lines(&trash, &forged_batch);
    let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
    header["storage_root"] = s(&elsewhere).into();
    lines[0] = header.to_string();
    write_journal(&trash, &forged_batch, &lines);

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing written into the foreign root: {err}"
    );
    assert!(
        err.contains(&journal_path(&trash, &forged_batch).display().to_string())
            && err.contains("nothing of this batch was restored"),
        "{err}"
    );
    assert_blob_kept(b.root(), &first.digest);
    assert!(
        !trash.join(&kept_batch).exists(),
        "the good batch is restored"
    );
    assert_blob_gone(b.root(), &second.digest);
    assert!(trash.join(&forged_batch).join("docker").is_dir());
}

#[test]
fn restore_never_follows_a_link_planted_in_the_storage_since_the_sweep() {
    let (mut b, _) = storage_with_garbage();
    // An orphan alone in its shard directory: the sweep removes the shard.
    let shards = b.v2().join("blobs/sha256");
    let orphan = (0..50)
        .map(|i| b.orphan_blob(&format!("alone {i}")))
        .find(|d| fs::read_dir(shards.join(&d.hex()[..2])).unwrap().count() == 1)
        .expect("an orphan alone in its shard");
    let shard = shards.join(&orphan.hex()[..2]);
    let trash = b.scratch().join("trash");
    sweep_into(b.root(), &trash);
    assert!(!shard.exists());
    let outside = b.scratch().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, &shard).unwrap();

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "restored through the link: {}",
        describe(&out)
    );
    assert!(stderr(&out).contains("symbolic link"), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// Tags and repositories deleted since the sweep
// ---------------------------------------------------------------------------

/// `app:v1` pushed twice: the first image is untagged, in `v1`'s history.
fn retagged() -> (LayoutBuilder, Manifest) {
    let mut b = LayoutBuilder::new();
    let old = b.simple_image("old", &[]);
    b.push("app", "v1", &old);
    let new = b.simple_image("new", &[]);
    b.push("app", "v1", &new);
    b.push("keep", "v1", &new);
    (b, old)
}

#[test]
fn restore_skips_the_history_of_a_tag_deleted_since_the_sweep() {
    let (mut b, old) = retagged();
    let trash = b.scratch().join("trash");
    sweep_into(b.root(), &trash);
    assert!(!b.has_tag_index("app", "v1", &old.digest));
    b.untag("app", "v1");

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        !tag_dir(b.root(), "app", "v1").exists(),
        "a phantom tag came back: {err}"
    );
    assert!(err.contains("tag `v1` of `app` no longer exists"), "{err}");
    // The rest comes back: the revision, its blobs and links.
    assert_manifest_intact(b.root(), "app", &old);
}

/// The real registry lists a tag directory that has history entries and no
/// `current/link`, and does not serve it: restoring the history of a tag
/// deleted since the sweep must not make such a tag.
#[test]
fn restore_after_a_tag_was_deleted_makes_no_tag_the_real_registry_lists() {
    use registry_support::oci::Layout as OciLayout;
    use registry_support::skopeo::{Format, push};
    if !registry_support::require_tools() {
        return;
    }
    let mut reg = registry_support::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new(&dir.path().join("layout"));
    let mut image = |label: &str| {
        let layer = layout.layer(label);
        let image = layout.image(&[&layer], "amd64");
        layout.tag(label, &image.manifest);
        image
    };
    let (old, new) = (image("old"), image("new"));
    push(&reg, &layout, "old", "app", "v1", Format::Oci);
    push(&reg, &layout, "new", "app", "v1", Format::Oci);
    reg.stop();
    let trash = dir.path().join("trash");
    sweep_into(reg.root(), &trash);
    reg.restart();
    // Deleting the manifest the tag points at deletes the tag.
    assert_eq!(reg.delete_manifest("app", &new.digest()), 202);
    reg.stop();

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    reg.restart();
    let mut reply = registry_support::http::agent(Duration::from_secs(30))
        .get(reg.url("/v2/app/tags/list"))
        .call()
        .expect("GET tags/list");
    let tags = reply.body_mut().read_to_string().unwrap_or_default();
    assert!(
        !tags.contains("v1"),
        "the registry lists a phantom tag: {tags}"
    );
    assert_eq!(reg.manifest_status("app", "v1"), 404);
    // What did come back is served.
    assert_eq!(reg.manifest_status("app", &old.digest()), 200);
}

#[test]
fn restore_does_not_recreate_part_of_a_repository_deleted_since_the_sweep() {
    let (b, old) = retagged();
    let trash = b.scratch().join("trash");
    sweep_into(b.root(), &trash);
    fs::remove_dir_all(repo_dir(b.root(), "app")).unwrap();

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        !repo_dir(b.root(), "app").exists(),
        "part of a deleted repository came back: {err}"
    );
    assert!(err.contains("repository `app` no longer exists"), "{err}");
    // Blobs need no repository: they come back.
    assert!(b.has_blob(&old.digest));
}

// ---------------------------------------------------------------------------
// Torn and unreadable journals
// ---------------------------------------------------------------------------

#[test]
fn a_journal_torn_in_the_middle_restores_every_whole_entry() {
    let (mut b, _) = storage_with_garbage();
    let orphans: Vec<Desc> = (0..4).map(|i| b.orphan_blob(&format!("o{i}"))).collect();
    let trash = b.scratch().join("trash");
    let batch = sweep_into(b.root(), &trash);
    let mut lines = journal_lines(&trash, &batch);
    // A write cut short by a full disk, then the next line once space came
    // back: the second move's line begins with half an entry.
    let torn = &lines[1][..lines[1].len() / 2];
    lines[2] = format!("{torn}{}", lines[2]);
    lines.insert(
        3,
        "{\"op\":\"mo".to_owned() + "ve\",\"kind\":\"blob\"\u{0}}",
    );
    write_journal(&trash, &batch, &lines);

    let out = regsweep(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    for orphan in &orphans {
        assert_blob_kept(b.root(), &orphan.digest);
    }
    assert!(
        err.contains("line 3: begins with an entry cut short"),
        "{err}"
    );
    assert!(err.contains("line 4: not a journal entry"), "{err}");
    assert!(trash.join(&batch).exists(), "a batch with bad lines stays");
}

#[test]
fn an_unreadable_journal_blocks_no_other_batch_nor_trash_list_or_empty() {
    let (mut b, _) = storage_with_garbage();
    let trash = b.scratch().join("trash");
    let good = sweep_into(b.root(), &trash);
    // Three batch directories whose journal is no file to read.
    let fifo = trash.join("20240101T000000Z-1");
    fs::create_dir(&fifo).unwrap();
    mkfifo(&fifo.join("journal.jsonl"));
    let zero = trash.join("20240101T000000Z-2");
    fs::create_dir(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("journal.jsonl")).unwrap();
    let garbled = trash.join("20240101T000000Z-3");
    fs::create_dir(&garbled).unwrap();
    fs::write(garbled.join("journal.jsonl"), "not a header\n").unwrap();

    let out = bounded(["trash", "list", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    // The header, then the one batch that can be read.
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert!(rows[0].starts_with(&good), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("not a regular file: a FIFO"), "{err}");
    assert!(err.contains("not a regular file: a symbolic link"), "{err}");
    assert!(err.contains("line 1 is not a journal header"), "{err}");

    let out = bounded(["restore", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(!trash.join(&good).exists(), "the good batch is restored");

    b.orphan_blob("again");
    let again = sweep_into(b.root(), &trash);
    let out = bounded(["trash", "empty", s(&trash)]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(!trash.join(&again).exists(), "the good batch is emptied");
    for dir in [&fifo, &zero, &garbled] {
        assert!(dir.exists(), "{} is left alone", dir.display());
    }
}

// ---------------------------------------------------------------------------
// Lock files that are not regular files
// ---------------------------------------------------------------------------

#[test]
fn a_lock_file_that_is_a_fifo_or_a_link_to_a_device_is_refused_without_blocking() {
    let (b, orphan) = storage_with_garbage();
    let lock = b.root().join("regsweep.lock");
    let real_lock = fs::canonicalize(b.root()).unwrap().join("regsweep.lock");
    mkfifo(&lock);
    let out = bounded(["gc", "--min-age", "0", "-y", "-m", s(b.root())]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains(&real_lock.display().to_string()), "{err}");
    assert!(err.contains("not a regular file: a FIFO"), "{err}");
    assert_blob_kept(b.root(), &orphan.digest);
    // A dry run does not block either; it names the lock in its warning.
    let out = bounded(["gc", "--min-age", "0", "--dry-run", s(b.root())]);
    assert!(
        stderr(&out).contains("not a regular file: a FIFO"),
        "{}",
        describe(&out)
    );

    fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
    let out = bounded(["gc", "--min-age", "0", "-y", "-m", s(b.root())]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("not a regular file: a symbolic link"),
        "{}",
        describe(&out)
    );
    assert_blob_kept(b.root(), &orphan.digest);

    // The trash's lock too.
    fs::remove_file(&lock).unwrap();
    let trash = b.scratch().join("trash");
    fs::create_dir(&trash).unwrap();
    mkfifo(&trash.join("regsweep.lock"));
    for args in [
        vec!["restore", s(&trash)],
        vec!["trash", "empty", s(&trash)],
    ] {
        let out = bounded(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains("a FIFO"), "{}", describe(&out));
    }
}
