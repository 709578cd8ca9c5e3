//! A pull by tag before the tag was rolled back, against the real registry
//! (docker-registry 2.8) and its own logs.
//!
//! Tag `release` is set to image A, then to image B, which is pulled
//! through it, then back to A. Storage dates each history entry of a tag by
//! the LAST time the tag was set to that digest: the rollback rewrote A's
//! time to after the pull, so the pull may have served B (set last before
//! it) or A (set after it, and perhaps before too). `alias-a` and `alias-b`
//! point at A and B, pushed long ago and never pulled by their own names.
//!
//! - The access log gives no content type: both candidates count as
//!   pulled, so both aliases stay.
//! - The app log gives the size of what was served, B's (one layer more
//!   than A): `alias-b` stays, `alias-a` goes.
//! - A sweep with `-m` over the access log deletes nothing of A or B, and
//!   every tag can still be pulled.
//!
//! Skips (passes, printing `skipping: ...`) when the tools are missing,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registry_support::oci::{Image, Layout};
use registry_support::pulls::{assert_read_whole, backdate, gc_args, policy_tags, tag_links};
use registry_support::skopeo::{self, Format, push, push_unchecked};
use registry_support::{Registry, gc, require_tools, tree};
use serde_json::Value;

const APP: &str = "team/app";
const RELEASE: &str = "release"; // A, then B (pulled), then A again
const ALIAS_A: &str = "alias-a"; // A, never pulled by name
const ALIAS_B: &str = "alias-b"; // B, never pulled by name

/// What the registry went through.
struct Story {
    reg: Registry,
    image_a: Image,
    image_b: Image,
    /// When a pull window should start: after every check by tag that
    /// followed a push (each a HEAD, a pull of both A and B as the history
    /// tells), before the pull of `release`.
    window_start: SystemTime,
}

/// Sleeps until `t`, if it is still ahead.
fn sleep_until(t: SystemTime) {
    if let Ok(wait) = t.duration_since(SystemTime::now()) {
        sleep(wait);
    }
}

/// The start of the second after `t`: an access line, timed by the second,
/// counts to the end of the second it names.
fn next_second(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1)
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A registry logging in text: A and B pushed under their aliases and
/// `release` long ago, `release` pulled within the last seconds while it
/// pointed at B, then rolled back to A; returned stopped, its logs
/// complete.
fn rolled_back_registry() -> Story {
    let mut reg = Registry::start_logging("text");
    let started = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");

    // B has one layer more than A: a larger manifest of the same type.
    let image_a = layout.image(&[&base, &layout.layer("a")], "amd64");
    let image_b = layout.image(&[&base, &layout.layer("b"), &layout.layer("b2")], "amd64");
    assert_ne!(image_a.manifest.size, image_b.manifest.size);
    layout.tag("image-a", &image_a.manifest);
    layout.tag("image-b", &image_b.manifest);
    let a = push(&reg, &layout, "image-a", APP, RELEASE, Format::Oci);
    assert_eq!(a, image_a.digest());
    assert_eq!(push(&reg, &layout, "image-a", APP, ALIAS_A, Format::Oci), a);
    let b = push(&reg, &layout, "image-b", APP, ALIAS_B, Format::Oci);
    assert_eq!(b, image_b.digest());
    for (tag, digest) in [(RELEASE, &a), (ALIAS_A, &a), (ALIAS_B, &b)] {
        backdate(reg.root(), APP, tag, digest, 10);
    }
    // `release` moves to B 5 days ago: its history says A set 10 days ago,
    // B 5 days ago.
    assert_eq!(push(&reg, &layout, "image-b", APP, RELEASE, Format::Oci), b);
    backdate(reg.root(), APP, RELEASE, &b, 5);
    assert_eq!(
        tree::tag_index(reg.root(), APP, RELEASE),
        [a.clone(), b.clone()].into(),
        "{RELEASE} was set to A and to B"
    );

    // The window, which reaches up to a second before its start, begins
    // after the access lines of the checks above, timed to the end of
    // their second; and a few seconds after the logs' first line.
    let after_pushes = SystemTime::now();
    sleep_until((after_pushes + Duration::from_millis(2500)).max(started + Duration::from_secs(4)));
    let window_start = SystemTime::now();

    let got = skopeo::pull(&reg, &format!("{APP}:{RELEASE}"));
    assert!(got.contains(&b), "{RELEASE} served B: {got:?}");
    assert!(!got.contains(&a), "{RELEASE} served B: {got:?}");
    // The rollback, in a later second than the pull's access line names:
    // that line counts to the end of its second, so a push within it reads
    // as made before the pull.
    let pulled = SystemTime::now();
    sleep_until(next_second(pulled) + Duration::from_millis(200));
    push_unchecked(&reg, &layout, "image-a", (APP, RELEASE), Format::Oci);
    reg.stop();

    // Storage: `release` points at A again, A's entry dated after the pull
    // (its first time lost), B's still 5 days ago.
    let current = tree::v2(reg.root())
        .join("repositories")
        .join(APP)
        .join("_manifests/tags")
        .join(RELEASE)
        .join("current/link");
    assert_eq!(fs::read_to_string(&current).unwrap(), a, "rolled back to A");
    let [_, a_entry] = tag_links(reg.root(), APP, RELEASE, &a);
    let [_, b_entry] = tag_links(reg.root(), APP, RELEASE, &b);
    assert!(
        mtime(&a_entry) > next_second(pulled),
        "A set after the pull"
    );
    assert!(
        mtime(&b_entry) < window_start - Duration::from_secs(86_400),
        "B set days before the pull"
    );
    Story {
        reg,
        image_a,
        image_b,
        window_start,
    }
}

/// `--keep-pulled-within` reaching back to `start` (a second earlier at
/// most) from now: computed for each run, whose own `now` is a little later.
fn window_from(start: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(start).unwrap().as_secs() + 1;
    format!("{secs}s")
}

/// The policy's verdicts in `team/app` over `log` (in `format`, read whole):
/// the tags deleted, the reasons of those kept, and how many pulls by tag
/// the log's responses narrowed. `extra` goes after the gc arguments.
fn verdicts(
    story: &Story,
    log: &Path,
    format: &str,
    dry_run: bool,
    extra: &[&str],
) -> (Vec<String>, BTreeMap<String, String>, u64, Value) {
    let root = story.reg.root().to_str().unwrap();
    let path = log.to_str().unwrap();
    let window = window_from(story.window_start);
    let args = [&gc_args(root, &window, path, dry_run)[..], extra].concat();
    let report = gc::regsweep_json(&args);
    assert_eq!(report["exit_code"], 0, "{path}: {report:#}");

    assert_read_whole(&report, path, format);

    let deleted = policy_tags(&report, APP, "deleted").into_keys().collect();
    let kept = policy_tags(&report, APP, "kept");
    let narrowed = report["pull_logs"]["narrowed"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pull_logs.narrowed: {report:#}"));
    (deleted, kept, narrowed, report)
}

#[test]
fn a_pull_before_a_rollback_keeps_both_images_the_tag_may_have_served() {
    if !require_tools() {
        return;
    }
    let story = rolled_back_registry();
    let by_release = format!("GET by tag `{RELEASE}`");

    // The access log: the pull may have served B (set last before it) or A
    // (set after it), so both aliases count as pulled.
    let access_log = story.reg.access_log();
    let (deleted, kept, narrowed, _) = verdicts(&story, &access_log, "combined", true, &[]);
    assert_eq!(narrowed, 0);
    assert_eq!(deleted, Vec::<String>::new(), "kept {kept:#?}");
    for alias in [ALIAS_A, ALIAS_B] {
        assert!(kept[alias].contains(&by_release), "{alias}: {kept:#?}");
    }
    assert!(kept[RELEASE].contains("(GET by tag, skopeo"), "{kept:#?}");

    // The app log: the response's size is B's, so the pull is narrowed to
    // B and `alias-a` goes. `release` stays, pulled by name (its push of A
    // within the window would keep it too), but that keeps only `release`:
    // the window counts a tag's own push, not another tag's push of the same
    // image. A itself stays, `release` points at it.
    let app_log = story.reg.app_log();
    let (deleted, kept, narrowed, _) = verdicts(&story, &app_log, "distribution-text", true, &[]);
    assert!(narrowed >= 1, "the pull of `{RELEASE}`: {narrowed}");
    assert_eq!(deleted, [ALIAS_A], "kept {kept:#?}");
    assert!(kept[ALIAS_B].contains(&by_release), "{kept:#?}");
    assert!(kept[RELEASE].contains("(GET by tag, skopeo"), "{kept:#?}");

    // The sweep over the access log, untagged manifests included: A and B
    // are both tagged and both kept, so nothing of them goes.
    let blobs_before = tree::blob_set(story.reg.root());
    let (deleted, kept, _, swept) = verdicts(&story, &access_log, "combined", false, &["-m"]);
    assert_eq!(deleted, Vec::<String>::new(), "kept {kept:#?}");
    assert_eq!(swept["deleted"]["tags"], 0, "{swept:#}");
    assert_eq!(swept["deleted"]["manifests"], 0, "{swept:#}");
    assert_eq!(tree::blob_set(story.reg.root()), blobs_before, "{swept:#}");
    for image in [&story.image_a, &story.image_b] {
        let revision = tree::revision_dir(story.reg.root(), APP, &image.digest());
        assert!(revision.exists(), "{}", revision.display());
        for digest in image.all() {
            assert!(blobs_before.contains(&digest), "{digest}");
        }
    }

    let mut reg = story.reg;
    reg.restart();
    for (tag, image) in [
        (RELEASE, &story.image_a),
        (ALIAS_A, &story.image_a),
        (ALIAS_B, &story.image_b),
    ] {
        skopeo::pull_complete(&reg, &format!("{APP}:{tag}"), &image.all());
    }
}
