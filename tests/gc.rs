//! `regsweep gc` end to end: the real binary on small storage trees written
//! the way docker-registry 2.8 writes them. Expectations come from the
//! garbage rules of `storage-layout.md` and the CLI contract, not from the
//! implementation.

mod layout_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use layout_support::*;

const MODES: [bool; 2] = [false, true];

fn mode_args(delete_untagged: bool) -> Vec<&'static str> {
    if delete_untagged { vec!["-m"] } else { vec![] }
}

fn with(mut args: Vec<&'static str>, more: &[&'static str]) -> Vec<&'static str> {
    args.extend_from_slice(more);
    args
}

fn canon(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
}

/// The path as the report names it: under the canonical storage root.
fn reported(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).expect("path under root");
    canon(root).join(rel).display().to_string()
}

fn has_warning(report: &Value, kinds: &[&str], path: &str) -> bool {
    warnings(report)
        .iter()
        .any(|(k, p)| kinds.contains(&k.as_str()) && p == path)
}

fn assert_exit(report: &Value, expected: i64) {
    assert_eq!(
        report["exit_code"].as_i64(),
        Some(expected),
        "exit code: {report:#}"
    );
}

fn assert_no_warnings(report: &Value) {
    assert!(
        warnings(report).is_empty(),
        "unexpected warnings: {:#}",
        report["warnings"]
    );
}

fn all_blobs_of(m: &Manifest) -> Vec<String> {
    let mut v = vec![m.digest.clone()];
    v.extend(m.stored_blobs().map(|d| d.digest.clone()));
    v
}

/// Every tag's `current/link`, relative to `root`, with its content.
fn current_links(root: &Path) -> BTreeMap<PathBuf, String> {
    link_files(root)
        .into_iter()
        .filter(|(p, _)| p.ends_with("current/link"))
        .map(|(p, c)| (p.strip_prefix(root).unwrap().to_path_buf(), c))
        .collect()
}

fn assert_tags_unchanged(before: &BTreeMap<PathBuf, String>, root: &Path) {
    for (path, content) in before {
        assert_eq!(
            fs::read_to_string(root.join(path)).ok().as_ref(),
            Some(content),
            "tag link {} was removed or changed",
            path.display()
        );
    }
}

/// Every link file names a blob whose data exists: the registry serves
/// nothing that is gone.
fn assert_no_dangling_links(root: &Path) {
    for (path, content) in link_files(root) {
        assert!(
            content.starts_with("sha256:") && blob_data(root, &content).is_file(),
            "{} names {content:?}, whose blob is gone",
            path.display()
        );
    }
}

/// Names of the digest directories right under `dir` (`<dir>/<hex>`).
fn digest_dirs(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

fn revision_set(root: &Path, repo: &str) -> BTreeSet<String> {
    digest_dirs(&repo_dir(root, repo).join("_manifests/revisions/sha256"))
}

fn layer_link_set(root: &Path, repo: &str) -> BTreeSet<String> {
    digest_dirs(&repo_dir(root, repo).join("_layers/sha256"))
}

fn tag_index_set(root: &Path, repo: &str, tag: &str) -> BTreeSet<String> {
    digest_dirs(&tag_dir(root, repo, tag).join("index/sha256"))
}

fn tags_of(root: &Path, repo: &str) -> Vec<String> {
    fs::read_dir(repo_dir(root, repo).join("_manifests/tags"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// A registry with a bit of everything
// ---------------------------------------------------------------------------

/// [`push_mixed`]'s tree, with its API-deleted manifest.
struct Mixed {
    b: LayoutBuilder,
    pushed: MixedPushes,
}

impl Mixed {
    fn new() -> Mixed {
        let mut b = LayoutBuilder::new();
        let pushed = push_mixed(&mut b, ApiDeleted::Yes);
        Mixed { b, pushed }
    }

    fn root(&self) -> &Path {
        self.b.root()
    }

    fn live(&self, delete_untagged: bool) -> Vec<(&'static str, Manifest)> {
        let mut live = self.pushed.always_live.clone();
        if !delete_untagged {
            live.extend(self.pushed.untagged.iter().cloned());
        }
        live
    }

    fn live_blobs(&self, delete_untagged: bool) -> BTreeSet<String> {
        self.live(delete_untagged)
            .iter()
            .flat_map(|(_, m)| all_blobs_of(m))
            .collect()
    }

    /// Checks that `root` (a tree of this fixture after a complete run) is
    /// exactly what the rules leave.
    fn assert_collected(&self, root: &Path, delete_untagged: bool, before: &Path) {
        let live = self.live(delete_untagged);
        for (repo, m) in &live {
            assert_manifest_intact(root, repo, m);
        }
        for (repo, m) in &self.pushed.deleted {
            assert_revision_gone(root, repo, &m.digest);
        }
        let live_blobs = self.live_blobs(delete_untagged);
        let remaining: BTreeSet<String> = blob_sizes(root).into_keys().collect();
        assert_eq!(remaining, live_blobs, "blobs left after the run");
        for repo in ["app", "lib", "team/x/y"] {
            let live_here: BTreeSet<String> = live
                .iter()
                .filter(|(r, _)| r == &repo)
                .map(|(_, m)| m.digest.clone())
                .collect();
            assert_eq!(
                revision_set(root, repo),
                live_here,
                "revisions left in {repo}"
            );
            let links: BTreeSet<String> = layer_link_set(before, repo)
                .intersection(&live_blobs)
                .cloned()
                .collect();
            assert_eq!(
                layer_link_set(root, repo),
                links,
                "_layers links left in {repo}"
            );
            for tag in tags_of(before, repo) {
                let kept: BTreeSet<String> = tag_index_set(before, repo, &tag)
                    .intersection(&live_here)
                    .cloned()
                    .collect();
                assert_eq!(
                    tag_index_set(root, repo, &tag),
                    kept,
                    "history of tag {repo}:{tag}"
                );
            }
        }
        assert_tags_unchanged(&current_links(before), root);
        assert_no_dangling_links(root);
    }
}

fn copy_of(root: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("storage");
    copy_tree(root, &dest);
    (dir, dest)
}

// ---------------------------------------------------------------------------
// Roots and liveness
// ---------------------------------------------------------------------------

#[test]
fn mixed_registry_is_collected_exactly_as_the_rules_say() {
    for m in MODES {
        let fx = Mixed::new();
        let (_keep, pristine) = copy_of(fx.root());
        let report = gc_json(fx.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_eq!(report["dry_run"], false);
        assert_eq!(report["delete_untagged"], m);
        fx.assert_collected(fx.root(), m, &pristine);
    }
}

#[test]
fn orphan_blobs_with_and_without_layer_links_are_deleted_in_both_modes() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let img = b.simple_image("app", &[]);
        b.push("app", "v1", &img);
        let other = b.simple_image("other", &[]);
        b.push("other", "v1", &other);
        let unlinked = b.orphan_blob("unlinked");
        let linked = b.orphan_linked_blob("app", "linked");
        let twice = b.orphan_linked_blob("app", "twice");
        b.link_layer("other", &twice.digest);

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_manifest_intact(b.root(), "app", &img);
        assert_manifest_intact(b.root(), "other", &other);
        for d in [&unlinked, &linked, &twice] {
            assert_blob_gone(b.root(), &d.digest);
        }
        assert!(!layer_link_dir(b.root(), "app", &linked.digest).exists());
        assert!(!layer_link_dir(b.root(), "app", &twice.digest).exists());
        assert!(!layer_link_dir(b.root(), "other", &twice.digest).exists());
        assert_eq!(
            blob_candidates(&report),
            [&unlinked, &linked, &twice]
                .iter()
                .map(|d| d.digest.clone())
                .collect::<BTreeSet<_>>()
        );
        assert_eq!(
            candidates(&report, "layer_link"),
            [
                ("app".to_owned(), linked.digest.clone()),
                ("app".to_owned(), twice.digest.clone()),
                ("other".to_owned(), twice.digest.clone()),
            ]
            .into_iter()
            .collect()
        );
        assert!(candidates(&report, "manifest").is_empty());
    }
}

/// Tag moved from m1 to m2, m3 pushed by digest only.
fn moved_tag_and_untagged_push() -> (LayoutBuilder, Desc, Manifest, Manifest, Manifest) {
    let mut b = LayoutBuilder::new();
    let base = b.layer("base");
    let m1 = b.simple_image("v1", &[&base]);
    b.push("app", "latest", &m1);
    let m2 = b.simple_image("v2", &[&base]);
    b.push("app", "latest", &m2);
    let m3 = b.simple_image("by-digest", &[&base]);
    b.push_untagged("app", &m3);
    (b, base, m1, m2, m3)
}

#[test]
fn without_delete_untagged_every_revision_is_a_root() {
    let (b, _base, m1, m2, m3) = moved_tag_and_untagged_push();
    let before = snapshot_contents(b.root());
    let report = gc_json(b.root(), &[]);
    assert_exit(&report, 0);
    assert_nothing_reclaimable(&report);
    assert_unchanged(b.root(), &before, "nothing may change");
    for m in [&m1, &m2, &m3] {
        assert_manifest_intact(b.root(), "app", m);
    }
    assert!(b.has_tag_index("app", "latest", &m1.digest));
}

#[test]
fn delete_untagged_removes_untagged_revisions_their_history_and_exclusive_blobs() {
    let (b, base, m1, m2, m3) = moved_tag_and_untagged_push();
    let report = gc_json(b.root(), &["--delete-untagged"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    let root = b.root();

    assert_manifest_intact(root, "app", &m2);
    assert_eq!(
        b.tag_current("app", "latest").as_deref(),
        Some(m2.digest.as_str())
    );
    assert!(b.has_tag_index("app", "latest", &m2.digest));
    assert!(!tag_index_dir(root, "app", "latest", &m1.digest).exists());
    for m in [&m1, &m3] {
        assert_revision_gone(root, "app", &m.digest);
        assert_blob_gone(root, &m.digest);
        for blob in m.stored_blobs().filter(|d| d.digest != base.digest) {
            assert_blob_gone(root, &blob.digest);
            assert!(!layer_link_dir(root, "app", &blob.digest).exists());
        }
    }
    assert_blob_kept(root, &base.digest);
    assert!(b.has_layer_link("app", &base.digest));

    let app = |d: &str| ("app".to_owned(), d.to_owned());
    assert_eq!(
        candidates(&report, "manifest"),
        [app(&m1.digest), app(&m3.digest)].into_iter().collect()
    );
    assert_eq!(
        candidates(&report, "tag_index_entry"),
        [app(&m1.digest)].into_iter().collect()
    );
    let entry = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "tag_index_entry")
        .unwrap();
    assert_eq!(entry["tag"], "latest");
}

#[test]
fn api_deleted_revision_directory_goes_with_its_history_entries_in_both_modes() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let d = b.simple_image("deleted-while-beta", &[]);
        b.push("app", "beta", &d);
        let b2 = b.simple_image("beta-2", &[]);
        b.push("app", "beta", &b2);
        b.api_delete("app", &d.digest);
        let e = b.simple_image("deleted-while-tagged", &[]);
        b.push("app", "gone", &e);
        b.api_delete("app", &e.digest);
        assert!(b.has_revision_dir("app", &d.digest) && !b.has_revision_link("app", &d.digest));
        assert!(!tag_dir(b.root(), "app", "gone").exists());

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        let root = b.root();
        for gone in [&d, &e] {
            assert_revision_gone(root, "app", &gone.digest);
            for blob in all_blobs_of(gone) {
                assert_blob_gone(root, &blob);
                assert!(!layer_link_dir(root, "app", &blob).exists());
            }
        }
        assert!(!tag_index_dir(root, "app", "beta", &d.digest).exists());
        assert!(b.has_tag_index("app", "beta", &b2.digest));
        assert_eq!(
            b.tag_current("app", "beta").as_deref(),
            Some(b2.digest.as_str())
        );
        assert_manifest_intact(root, "app", &b2);
    }
}

#[test]
fn tag_current_links_are_never_removed() {
    for m in MODES {
        let fx = Mixed::new();
        let tags = current_links(fx.root());
        assert_eq!(tags.len(), 5);
        let report = gc_json(fx.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_tags_unchanged(&tags, fx.root());
        assert_eq!(num(&report, "before", "tags"), 5);
        assert_eq!(num(&report, "after", "tags"), 5);
    }
}

#[test]
fn blob_live_in_another_repository_stays_when_its_only_user_here_goes() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let base = b.layer("shared base");
        let ma = b.simple_image("a", &[&base]);
        b.push("a", "v1", &ma);
        let mb = b.simple_image("b", &[&base]);
        b.push("b", "v1", &mb);
        // The very same manifest in two repositories.
        let mx = b.simple_image("x", &[]);
        b.push("a", "x", &mx);
        b.push("c", "x", &mx);
        if m {
            b.untag("a", "v1");
            b.untag("a", "x");
        } else {
            b.api_delete("a", &ma.digest);
            b.api_delete("a", &mx.digest);
        }

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        let root = b.root();
        assert_blob_kept(root, &base.digest);
        assert_manifest_intact(root, "b", &mb);
        assert_manifest_intact(root, "c", &mx);
        assert_revision_gone(root, "a", &ma.digest);
        assert_revision_gone(root, "a", &mx.digest);
        assert_blob_gone(root, &ma.digest);
        for blob in ma.stored_blobs().filter(|d| d.digest != base.digest) {
            assert_blob_gone(root, &blob.digest);
        }
        assert!(!blob_candidates(&report).contains(&base.digest));
        assert!(!blob_candidates(&report).contains(&mx.digest));
    }
}

// ---------------------------------------------------------------------------
// Indexes, referrers, cosign tags
// ---------------------------------------------------------------------------

#[test]
fn upstream_2_8_multiarch_bug_delete_untagged_keeps_children_of_tagged_index() {
    let mut b = LayoutBuilder::new();
    // Docker manifest list of two docker images.
    let d1 = b.simple_image("amd64", &[]);
    let d2 = b.simple_image("arm64", &[]);
    b.push_untagged("app", &d1);
    b.push_untagged("app", &d2);
    let list = docker_list(&[&d1, &d2]);
    b.push("app", "latest", &list);
    // OCI index whose child is another index (nested), whose child is an image.
    let o1 = b.simple_oci_image("oci-amd64");
    let o2 = b.simple_oci_image("oci-arm64");
    let deep = b.simple_oci_image("deep");
    for c in [&o1, &o2, &deep] {
        b.push_untagged("oci", c);
    }
    let inner = oci_index(&[&deep], None);
    b.push_untagged("oci", &inner);
    let outer = oci_index(&[&o1, &o2, &inner], None);
    b.push("oci", "1.0", &outer);
    let before = snapshot_contents(b.root());

    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    assert_nothing_reclaimable(&report);
    assert_unchanged(
        b.root(),
        &before,
        "children of a tagged index must all stay",
    );
    for m in [&d1, &d2, &list] {
        assert_manifest_intact(b.root(), "app", m);
    }
    for m in [&o1, &o2, &deep, &inner, &outer] {
        assert_manifest_intact(b.root(), "oci", m);
    }
}

#[test]
fn untagged_index_goes_with_its_exclusive_children_under_delete_untagged() {
    let mut b = LayoutBuilder::new();
    let old_only = b.simple_oci_image("old-only");
    let shared = b.simple_oci_image("shared");
    let new_only = b.simple_oci_image("new-only");
    for c in [&old_only, &shared, &new_only] {
        b.push_untagged("app", c);
    }
    let old = oci_index(&[&old_only, &shared], None);
    b.push("app", "latest", &old);
    let new = oci_index(&[&shared, &new_only], None);
    b.push("app", "latest", &new);
    let (_keep, pristine) = copy_of(b.root());

    let report = gc_json(b.root(), &[]);
    assert_exit(&report, 0);
    assert_nothing_reclaimable(&report);

    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    let root = b.root();
    for m in [&new, &shared, &new_only] {
        assert_manifest_intact(root, "app", m);
    }
    for m in [&old, &old_only] {
        assert_revision_gone(root, "app", &m.digest);
        for blob in all_blobs_of(m) {
            assert_blob_gone(root, &blob);
        }
    }
    assert!(!tag_index_dir(root, "app", "latest", &old.digest).exists());
    assert!(tag_index_dir(&pristine, "app", "latest", &old.digest).exists());
}

#[test]
fn delete_untagged_keeps_referrers_of_live_manifests_and_drops_those_of_dead_ones() {
    let mut b = LayoutBuilder::new();
    let image = b.simple_image("image", &[]);
    b.push("app", "v1", &image);
    // A signature of the tagged image, and a signature of that signature.
    let sig = b.signature_for(&image, "sig");
    b.push_untagged("app", &sig);
    let sig_of_sig = b.signature_for(&sig, "sig-of-sig");
    b.push_untagged("app", &sig_of_sig);
    // An SBOM artifact with an unusual layer media type.
    let empty = b.empty_config();
    let sbom_layer = b.blob_with("application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#);
    let sbom = oci_artifact(
        "application/spdx+json",
        &empty,
        &[&sbom_layer],
        Some(&image),
    );
    b.push_untagged("app", &sbom);
    // An attestation index about the image, with a child of its own.
    let att_layer = b.blob_with(
        "application/vnd.in-toto+json",
        br#"{"_type":"https://in-toto.io/Statement/v1"}"#,
    );
    let att = oci_artifact("application/vnd.in-toto+json", &empty, &[&att_layer], None);
    b.push_untagged("app", &att);
    let att_index = oci_index(&[&att], Some(&image));
    b.push_untagged("app", &att_index);
    // A multi-arch image; its child is signed.
    let child = b.simple_oci_image("child");
    b.push_untagged("app", &child);
    let multi = oci_index(&[&child], None);
    b.push("app", "multi", &multi);
    let child_sig = b.signature_for(&child, "child-sig");
    b.push_untagged("app", &child_sig);
    // A dead image and its referrers.
    let dead = b.simple_image("dead", &[]);
    b.push_untagged("app", &dead);
    let dead_sig = b.signature_for(&dead, "dead-sig");
    b.push_untagged("app", &dead_sig);
    let dead_sig_sig = b.signature_for(&dead_sig, "dead-sig-sig");
    b.push_untagged("app", &dead_sig_sig);

    let live = [
        &image,
        &sig,
        &sig_of_sig,
        &sbom,
        &att,
        &att_index,
        &child,
        &multi,
        &child_sig,
    ];
    let dead_all = [&dead, &dead_sig, &dead_sig_sig];

    // Without -m every revision is a root.
    let before = snapshot_contents(b.root());
    let report = gc_json(b.root(), &[]);
    assert_exit(&report, 0);
    assert_nothing_reclaimable(&report);
    assert_unchanged(b.root(), &before, "");

    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    let root = b.root();
    for m in live {
        assert_manifest_intact(root, "app", m);
    }
    assert_blob_kept(root, &empty.digest);
    let live_blobs: BTreeSet<String> = live.iter().flat_map(|m| all_blobs_of(m)).collect();
    for m in dead_all {
        assert_revision_gone(root, "app", &m.digest);
        for blob in all_blobs_of(m)
            .into_iter()
            .filter(|d| !live_blobs.contains(d))
        {
            assert_blob_gone(root, &blob);
        }
    }
    assert_eq!(
        candidates(&report, "manifest"),
        dead_all
            .iter()
            .map(|m| ("app".to_owned(), m.digest.clone()))
            .collect()
    );
}

#[test]
fn cosign_style_signature_tag_is_an_ordinary_live_tag() {
    let mut b = LayoutBuilder::new();
    let image = b.simple_image("image", &[]);
    b.push("app", "v1", &image);
    // Cosign's older scheme: no subject, tagged sha256-<hex>.sig / .att.
    let empty = b.empty_config();
    let payload = b.blob_with(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(
            r#"{{"critical":{{"image":{{"docker-manifest-digest":"{}"}}}}}}"#,
            image.digest
        )
        .as_bytes(),
    );
    // Signing again moves the .sig tag to a manifest with both signatures.
    let old_payload = b.blob_with(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"{\"first signature\":true}",
    );
    let old_sig = oci_image(&empty, &[&old_payload]);
    let sig_tag = format!("sha256-{}.sig", image.hex());
    b.push("app", &sig_tag, &old_sig);
    let sig = oci_image(&empty, &[&old_payload, &payload]);
    b.push("app", &sig_tag, &sig);
    let att_payload = b.blob_with(
        "application/vnd.dsse.envelope.v1+json",
        b"{\"payload\":\"x\"}",
    );
    let att = oci_image(&empty, &[&att_payload]);
    b.push("app", &format!("sha256-{}.att", image.hex()), &att);
    // A signature tag naming a digest that is not in the repository.
    let stray_payload = b.blob_with("application/vnd.dev.cosign.simplesigning.v1+json", b"{}x");
    let stray = oci_image(&empty, &[&stray_payload]);
    b.push("app", &format!("sha256-{}.sig", "ab".repeat(32)), &stray);
    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    for m in [&image, &sig, &att, &stray] {
        assert_manifest_intact(b.root(), "app", m);
    }
    assert_eq!(num(&report, "before", "tags"), 4);
    // The superseded signature manifest is an ordinary untagged manifest.
    assert_revision_gone(b.root(), "app", &old_sig.digest);
    assert_blob_gone(b.root(), &old_sig.digest);
    assert!(!tag_index_dir(b.root(), "app", &sig_tag, &old_sig.digest).exists());
    assert!(b.has_tag_index("app", &sig_tag, &sig.digest));
    assert_eq!(
        candidates(&report, "manifest"),
        BTreeSet::from([("app".to_owned(), old_sig.digest.clone())])
    );
    assert_eq!(
        blob_candidates(&report),
        BTreeSet::from([old_sig.digest.clone()])
    );
}

// ---------------------------------------------------------------------------
// Schema1 and foreign layers
// ---------------------------------------------------------------------------

#[test]
fn schema1_signed_and_unsigned_fs_layers_are_live() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let a = b.layer("a");
        let shared = b.layer("shared");
        let signed = schema1("legacy", "signed", &[&a, &shared, &a], true);
        b.push("legacy", "signed", &signed);
        let u = b.layer("u");
        let unsigned = schema1("legacy", "unsigned", &[&u, &shared], false);
        b.push("legacy", "unsigned", &unsigned);
        let old_layer = b.layer("old");
        let old = schema1("legacy", "old", &[&old_layer, &shared], true);
        b.push_untagged("legacy", &old);

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        let root = b.root();
        assert_manifest_intact(root, "legacy", &signed);
        assert_manifest_intact(root, "legacy", &unsigned);
        for d in [&a, &shared, &u] {
            assert!(!blob_candidates(&report).contains(&d.digest));
        }
        if m {
            assert_revision_gone(root, "legacy", &old.digest);
            assert_blob_gone(root, &old.digest);
            assert_blob_gone(root, &old_layer.digest);
            assert!(!layer_link_dir(root, "legacy", &old_layer.digest).exists());
        } else {
            assert_manifest_intact(root, "legacy", &old);
            assert_nothing_reclaimable(&report);
        }
    }
}

#[test]
fn schema1_revision_signature_links_keep_their_signature_blobs() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let layer = b.layer("l");
        let signed = schema1("legacy", "v1", &[&layer], false);
        b.push("legacy", "v1", &signed);
        let sig = b.blob_with(
            "application/json",
            br#"{"signatures":[{"signature":"abc"}]}"#,
        );
        b.link_signature("legacy", &signed.digest, &sig.digest);
        let other_layer = b.layer("other");
        let other = schema1("legacy", "other", &[&other_layer], false);
        b.push_untagged("legacy", &other);
        let other_sig = b.blob_with(
            "application/json",
            br#"{"signatures":[{"signature":"def"}]}"#,
        );
        b.link_signature("legacy", &other.digest, &other_sig.digest);

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        let root = b.root();
        assert_manifest_intact(root, "legacy", &signed);
        assert_blob_kept(root, &sig.digest);
        assert!(signature_link(root, "legacy", &signed.digest, &sig.digest).is_file());
        if m {
            assert_revision_gone(root, "legacy", &other.digest);
            assert_blob_gone(root, &other_sig.digest);
        } else {
            assert_manifest_intact(root, "legacy", &other);
            assert_blob_kept(root, &other_sig.digest);
            assert!(signature_link(root, "legacy", &other.digest, &other_sig.digest).is_file());
        }
    }
}

/// Revisions of one repository are deleted by name through one descriptor
/// of their directory; a revision holding schema1 signatures does not go
/// that way and must still go, with its signatures, by the full path.
#[test]
fn several_untagged_signed_schema1_revisions_of_one_repository_go_with_their_signatures() {
    let mut b = LayoutBuilder::new();
    let kept = schema1("legacy", "v1", &[&b.layer("kept")], false);
    b.push("legacy", "v1", &kept);
    let mut dead = Vec::new();
    for label in ["a", "b", "c"] {
        let layer = b.layer(label);
        let manifest = schema1("legacy", label, &[&layer], false);
        b.push_untagged("legacy", &manifest);
        let sig = b.blob_with(
            "application/json",
            format!(r#"{{"signatures":[{{"signature":"{label}"}}]}}"#).as_bytes(),
        );
        b.link_signature("legacy", &manifest.digest, &sig.digest);
        dead.push((manifest, sig));
    }
    // One without signatures among them: it goes by name.
    let plain = schema1("legacy", "plain", &[&b.layer("plain")], false);
    b.push_untagged("legacy", &plain);

    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_no_warnings(&report);
    let root = b.root();
    assert_manifest_intact(root, "legacy", &kept);
    assert_revision_gone(root, "legacy", &plain.digest);
    for (manifest, sig) in &dead {
        assert_revision_gone(root, "legacy", &manifest.digest);
        assert!(!revision_dir(root, "legacy", &manifest.digest).exists());
        assert_blob_gone(root, &sig.digest);
    }
    assert_eq!(report["deleted"]["manifests"], 4, "{report:#}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
}

#[test]
fn foreign_layers_missing_from_storage_are_neither_errors_nor_warnings() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let config = b.config("windows");
        let foreign = b.foreign_layer("windows base");
        let own = b.layer("app on windows");
        let img = docker_image(&config, &[&foreign, &own]);
        b.push("win", "ltsc", &img);
        let config2 = b.config("windows old");
        let own2 = b.layer("old app");
        let old = docker_image(&config2, &[&foreign, &own2]);
        b.push_untagged("win", &old);
        assert!(!b.has_blob(&foreign.digest));

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_manifest_intact(b.root(), "win", &img);
        if m {
            assert_revision_gone(b.root(), "win", &old.digest);
        } else {
            assert_manifest_intact(b.root(), "win", &old);
        }

        let out = regsweep(["gc", "-d", b.root().to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", describe(&out));
        assert!(out.stderr.is_empty(), "{}", describe(&out));
    }
}

// ---------------------------------------------------------------------------
// Repository names
// ---------------------------------------------------------------------------

#[test]
fn nested_repositories_are_found_and_collected_under_their_names() {
    for m in MODES {
        let mut b = LayoutBuilder::new();
        let names = ["a", "a/b", "team/x/y"];
        let mut tagged = Vec::new();
        let mut untagged = Vec::new();
        let mut orphans = Vec::new();
        for name in names {
            let t = b.simple_image(&format!("{name} tagged"), &[]);
            b.push(name, "v1", &t);
            let u = b.simple_image(&format!("{name} untagged"), &[]);
            b.push_untagged(name, &u);
            orphans.push(b.orphan_linked_blob(name, name));
            tagged.push(t);
            untagged.push(u);
        }

        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_eq!(num(&report, "before", "repositories"), 3);
        let root = b.root();
        for (i, name) in names.iter().enumerate() {
            assert_manifest_intact(root, name, &tagged[i]);
            assert!(!layer_link_dir(root, name, &orphans[i].digest).exists());
            if m {
                assert_revision_gone(root, name, &untagged[i].digest);
            } else {
                assert_manifest_intact(root, name, &untagged[i]);
            }
        }
        let links: BTreeSet<(String, String)> = names
            .iter()
            .zip(&orphans)
            .map(|(n, o)| (n.to_string(), o.digest.clone()))
            .collect();
        let expected_links: BTreeSet<(String, String)> = if m {
            let mut all = links.clone();
            for (n, u) in names.iter().zip(&untagged) {
                for d in u.stored_blobs() {
                    all.insert((n.to_string(), d.digest.clone()));
                }
            }
            all
        } else {
            links
        };
        assert_eq!(candidates(&report, "layer_link"), expected_links);
        let manifests: BTreeSet<(String, String)> = if m {
            names
                .iter()
                .zip(&untagged)
                .map(|(n, u)| (n.to_string(), u.digest.clone()))
                .collect()
        } else {
            BTreeSet::new()
        };
        assert_eq!(candidates(&report, "manifest"), manifests);
        let reported: BTreeSet<&str> = report["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(reported, names.into_iter().collect());
    }
}

#[test]
fn directories_starting_with_underscore_are_never_repositories() {
    let mut b = LayoutBuilder::new();
    // `_layers`, `_manifests`, `_uploads` are valid tag names ([\w][\w.-]*).
    let mut images = Vec::new();
    for tag in ["_layers", "_manifests", "_uploads"] {
        let img = b.simple_image(tag, &[]);
        b.push("a", tag, &img);
        images.push(img);
    }
    // The `_manifests` tag moved twice: its older manifests are untagged.
    let old = b.simple_image("old", &[]);
    b.push("a", "_manifests", &old);
    let new = b.simple_image("new", &[]);
    b.push("a", "_manifests", &new);
    b.upload("a");
    let before = snapshot_contents(b.root());

    for m in MODES {
        let report = gc_json(b.root(), &mode_args(m));
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_eq!(num(&report, "before", "repositories"), 1);
        assert_eq!(num(&report, "before", "tags"), 3);
        assert_eq!(num(&report, "before", "manifests"), 5);
        assert_eq!(num(&report, "before", "uploads"), 1);
        if m {
            for gone in [&images[1], &old] {
                assert_revision_gone(b.root(), "a", &gone.digest);
                assert!(!tag_index_dir(b.root(), "a", "_manifests", &gone.digest).exists());
            }
            assert_eq!(
                candidates(&report, "manifest"),
                BTreeSet::from([
                    ("a".to_owned(), images[1].digest.clone()),
                    ("a".to_owned(), old.digest.clone())
                ])
            );
        } else {
            assert_nothing_reclaimable(&report);
            assert_unchanged(b.root(), &before, "");
        }
    }
    assert_manifest_intact(b.root(), "a", &new);
    for img in [&images[0], &images[2]] {
        assert_manifest_intact(b.root(), "a", img);
    }
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

/// Everything a repository directory names (revisions, layer links, tag
/// history), as digests.
fn named_by_repository(root: &Path, repo: &str) -> BTreeSet<String> {
    let mut all = revision_set(root, repo);
    all.extend(layer_link_set(root, repo));
    for tag in tags_of(root, repo) {
        all.extend(tag_index_set(root, repo, &tag));
    }
    all
}

#[derive(Debug, Clone, Copy)]
enum BadManifest {
    MissingBlob,
    /// The blob of a child of a tagged index is missing.
    MissingChild,
    /// The manifest is tagged, and its blob is not JSON.
    TaggedNotJson,
    NotJson,
    Truncated,
    UnknownMediaType,
}

#[test]
fn unreadable_manifest_keeps_its_whole_repository_and_others_are_collected() {
    use BadManifest::*;
    for damage in [
        MissingBlob,
        MissingChild,
        NotJson,
        TaggedNotJson,
        Truncated,
        UnknownMediaType,
    ] {
        for m in MODES {
            let mut b = LayoutBuilder::new();
            // The damaged repository, with garbage of every kind.
            let good = b.simple_image("good", &[]);
            b.push("broken", "v1", &good);
            let untagged = b.simple_image("untagged", &[]);
            b.push_untagged("broken", &untagged);
            let deleted = b.simple_image("deleted", &[]);
            b.push("broken", "old", &deleted);
            b.api_delete("broken", &deleted.digest);
            b.orphan_linked_blob("broken", "broken orphan");
            let bad = match damage {
                MissingBlob | MissingChild | Truncated => b.simple_image("bad", &[]),
                NotJson | TaggedNotJson => Manifest::from_bytes(
                    OCI_MANIFEST,
                    b"this is not a manifest\n".to_vec(),
                    vec![],
                    vec![],
                    None,
                ),
                UnknownMediaType => {
                    let config = b.config("unknown");
                    let layer = b.layer("unknown");
                    Manifest::from_json(
                        "application/vnd.example.thing.v1+json",
                        &serde_json::json!({
                            "schemaVersion": 2,
                            "mediaType": "application/vnd.example.thing.v1+json",
                            "config": config.json(),
                            "layers": [layer.json()],
                        }),
                        vec![config, layer],
                        vec![],
                        None,
                    )
                }
            };
            b.push_untagged("broken", &bad);
            match damage {
                MissingChild => {
                    let sibling = b.simple_image("sibling", &[]);
                    b.push_untagged("broken", &sibling);
                    let list = docker_list(&[&bad, &sibling]);
                    b.push("broken", "multi", &list);
                }
                TaggedNotJson => b.tag("broken", "bad", &bad.digest),
                _ => {}
            }
            match damage {
                MissingBlob | MissingChild => {
                    fs::remove_dir_all(blob_dir(b.root(), &bad.digest)).unwrap()
                }
                Truncated => {
                    let half = bad.bytes[..bad.bytes.len() / 2].to_vec();
                    b.overwrite(&blob_data(b.root(), &bad.digest), &half);
                }
                NotJson | TaggedNotJson | UnknownMediaType => {}
            }
            // A healthy repository with garbage of every kind.
            let healthy = b.simple_image("healthy", &[]);
            b.push("healthy", "v1", &healthy);
            let h_untagged = b.simple_image("h-untagged", &[]);
            b.push_untagged("healthy", &h_untagged);
            let h_deleted = b.simple_image("h-deleted", &[]);
            b.push("healthy", "old", &h_deleted);
            b.api_delete("healthy", &h_deleted.digest);
            let h_orphan = b.orphan_linked_blob("healthy", "healthy orphan");
            let orphan = b.orphan_blob("nobody's");

            let root = b.root();
            let broken_before = snapshot_contents(&repo_dir(root, "broken"));
            let named = named_by_repository(root, "broken");
            let blobs_before = blob_sizes(root);

            let report = gc_json(root, &mode_args(m));
            let ctx = format!("{damage:?}, -m {m}");
            assert_exit(&report, 1);
            assert!(
                warnings(&report).iter().any(|(k, p)| p.contains(bad.hex())
                    && ["unreadable_manifest", "missing_blob"].contains(&k.as_str())),
                "{ctx}: no warning names the damaged manifest {}: {:#}",
                bad.digest,
                report["warnings"]
            );
            assert_unchanged(
                &repo_dir(root, "broken"),
                &broken_before,
                format!("{ctx}: nothing in the damaged repository may change"),
            );
            for d in &named {
                if blobs_before.contains_key(d) {
                    assert!(
                        b.has_blob(d),
                        "{ctx}: blob {d} named by the damaged repository was deleted"
                    );
                }
            }
            assert!(
                candidates(&report, "manifest")
                    .iter()
                    .all(|(r, _)| r != "broken"),
                "{ctx}"
            );
            // The healthy repository is still collected.
            assert_manifest_intact(root, "healthy", &healthy);
            assert_revision_gone(root, "healthy", &h_deleted.digest);
            assert_blob_gone(root, &h_deleted.digest);
            assert_blob_gone(root, &h_orphan.digest);
            assert_blob_gone(root, &orphan.digest);
            if m {
                assert_revision_gone(root, "healthy", &h_untagged.digest);
                assert_blob_gone(root, &h_untagged.digest);
            } else {
                assert_manifest_intact(root, "healthy", &h_untagged);
            }
        }
    }
}

#[test]
fn invalid_tag_current_link_keeps_every_manifest_in_the_tag_history() {
    type Damage = fn(&str) -> Vec<u8>;
    let damages: [(&str, Damage); 4] = [
        ("empty", |_| Vec::new()),
        ("trailing newline", |d| format!("{d}\n").into_bytes()),
        ("garbage", |_| b"\x00\xffnot a digest".to_vec()),
        ("short digest", |d| d.as_bytes()[..20].to_vec()),
    ];
    for (name, damage) in damages {
        for m in MODES {
            let mut b = LayoutBuilder::new();
            let base = b.layer("base");
            let history: Vec<Manifest> = (1..=3)
                .map(|i| {
                    let h = b.simple_image(&format!("h{i}"), &[&base]);
                    b.push("app", "latest", &h);
                    h
                })
                .collect();
            let stable = b.simple_image("stable", &[]);
            b.push("app", "stable", &stable);
            let other = b.simple_image("other", &[]);
            b.push("other", "v1", &other);
            let other_orphan = b.orphan_linked_blob("other", "o");
            let current = tag_current_link(b.root(), "app", "latest");
            let bytes = damage(&history[2].digest);
            b.overwrite(&current, &bytes);

            let report = gc_json(b.root(), &mode_args(m));
            let ctx = format!("{name}, -m {m}");
            assert_exit(&report, 1);
            assert!(
                has_warning(
                    &report,
                    &["invalid_tag_link"],
                    &reported(b.root(), &current)
                ),
                "{ctx}: no invalid_tag_link warning for {}: {:#}",
                current.display(),
                report["warnings"]
            );
            let root = b.root();
            for h in &history {
                assert_manifest_intact(root, "app", h);
                assert!(b.has_tag_index("app", "latest", &h.digest), "{ctx}");
            }
            assert_eq!(
                fs::read(&current).unwrap(),
                bytes,
                "{ctx}: current link changed"
            );
            assert_manifest_intact(root, "app", &stable);
            assert_manifest_intact(root, "other", &other);
            assert_blob_gone(root, &other_orphan.digest);
        }
    }
}

fn bad_link_contents(other: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("garbage", b"not a digest".to_vec()),
        ("other digest", other.as_bytes().to_vec()),
    ]
}

#[test]
fn revision_link_with_bad_content_counts_under_its_path() {
    for m in MODES {
        for i in 0..4 {
            let mut b = LayoutBuilder::new();
            let tagged = b.simple_image("tagged", &[]);
            b.push("app", "v1", &tagged);
            let untagged = b.simple_image("untagged", &[]);
            b.push_untagged("app", &untagged);
            let elsewhere = b.orphan_blob("elsewhere");
            let mut variants = bad_link_contents(&elsewhere.digest);
            variants.push((
                "trailing newline",
                format!("{}\n", tagged.digest).into_bytes(),
            ));
            let (name, bytes) = variants[i].clone();
            let ctx = format!("{name}, -m {m}");
            let t_link = revision_link(b.root(), "app", &tagged.digest);
            let u_link = revision_link(b.root(), "app", &untagged.digest);
            b.overwrite(&t_link, &bytes);
            b.overwrite(&u_link, &bytes);

            let report = gc_json(b.root(), &mode_args(m));
            assert_exit(&report, 1);
            assert!(
                has_warning(&report, &["invalid_link"], &reported(b.root(), &t_link)),
                "{ctx}: no invalid_link warning for {}: {:#}",
                t_link.display(),
                report["warnings"]
            );
            let root = b.root();
            let kept = if m {
                vec![&tagged]
            } else {
                vec![&tagged, &untagged]
            };
            for k in kept {
                assert_blob_kept(root, &k.digest);
                for blob in k.stored_blobs() {
                    assert_blob_kept(root, &blob.digest);
                    assert!(b.has_layer_link("app", &blob.digest), "{ctx}");
                }
                let link = revision_link(root, "app", &k.digest);
                assert_eq!(fs::read(&link).ok(), Some(bytes.clone()), "{ctx}");
            }
            assert_eq!(
                b.tag_current("app", "v1").as_deref(),
                Some(tagged.digest.as_str())
            );
        }
    }
}

#[test]
fn layer_link_with_bad_content_counts_under_its_path() {
    for m in MODES {
        for i in 0..4 {
            let mut b = LayoutBuilder::new();
            let img = b.simple_image("img", &[]);
            b.push("app", "v1", &img);
            let elsewhere = b.orphan_blob("elsewhere");
            let mut variants = bad_link_contents(&elsewhere.digest);
            let layer = img.blobs.last().unwrap().clone();
            variants.push((
                "trailing newline",
                format!("{}\n", layer.digest).into_bytes(),
            ));
            let (name, bytes) = variants[i].clone();
            let ctx = format!("{name}, -m {m}");
            let link = layer_link(b.root(), "app", &layer.digest);
            b.overwrite(&link, &bytes);

            // Deciding never reads a layer link: without --check-links the
            // plan is the same, and nothing is reported.
            let unchecked = gc_json(b.root(), &with(mode_args(m), &["-d"]));
            assert_exit(&unchecked, 0);
            let report = gc_json(b.root(), &with(mode_args(m), &["--check-links"]));
            assert_eq!(
                unchecked["candidates"], report["candidates"],
                "{ctx}: --check-links changed the plan"
            );
            assert_exit(&report, 1);
            assert!(
                has_warning(&report, &["invalid_link"], &reported(b.root(), &link)),
                "{ctx}: no invalid_link warning for {}: {:#}",
                link.display(),
                report["warnings"]
            );
            assert_blob_kept(b.root(), &layer.digest);
            assert_eq!(fs::read(&link).ok(), Some(bytes), "{ctx}: link changed");
            assert_blob_kept(b.root(), &img.digest);
            assert!(
                !candidates(&report, "layer_link")
                    .contains(&("app".to_owned(), layer.digest.clone())),
                "{ctx}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

#[test]
fn storage_without_repositories_is_an_empty_registry() {
    let b = LayoutBuilder::new();
    for extra in [&[][..], &["-m"][..], &["-d"][..]] {
        let report = gc_json(b.root(), extra);
        assert_exit(&report, 0);
        assert_no_warnings(&report);
        assert_nothing_reclaimable(&report);
        for key in ["repositories", "tags", "manifests", "blobs", "blob_bytes"] {
            assert_eq!(num(&report, "before", key), 0, "before.{key}");
        }
        assert_eq!(
            report["storage_root"],
            canon(b.root()).display().to_string()
        );
    }
    let out = regsweep(["gc", b.root().to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(b.v2().is_dir());
    // Empty blobs/ and repositories/ directories are just as empty.
    fs::create_dir_all(b.v2().join("repositories")).unwrap();
    fs::create_dir_all(b.v2().join("blobs")).unwrap();
    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert_nothing_reclaimable(&report);
}

#[test]
fn target_that_is_not_registry_storage_is_refused_with_exit_2() {
    // A directory of unrelated files.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::create_dir_all(dir.path().join("sha256/ab")).unwrap();
    let before = snapshot_contents(dir.path());
    let out = regsweep(["gc", "-m", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("regsweep: error:") && stderr.contains(dir.path().to_str().unwrap()),
        "the error must name the path: {stderr}"
    );
    assert_unchanged(dir.path(), &before, "");

    // The docker/registry/v2 directory itself, full of garbage: refused,
    // nothing deleted.
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push_untagged("app", &img);
    b.orphan_blob("garbage");
    let before = snapshot_contents(b.root());
    for args in [vec!["gc", "-m"], vec!["gc", "-m", "--json"]] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(b.v2().display().to_string());
        let out = regsweep(&args);
        assert_eq!(code(&out), 2, "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&b.v2().display().to_string()),
            "{}",
            describe(&out)
        );
        assert_unchanged(b.root(), &before, "");
    }

    // A path that does not exist.
    let missing = dir.path().join("no-such-dir");
    let out = regsweep(["gc", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing.to_str().unwrap()));
}

fn write_config(dir: &Path, storage: &str) -> PathBuf {
    let path = dir.join("config.yml");
    fs::write(
        &path,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn config_yml_target_collects_its_rootdirectory() {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push("app", "v1", &img);
    let orphan = b.orphan_blob("o");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        cfg_dir.path(),
        &format!("  filesystem:\n    rootdirectory: {}\n", b.root().display()),
    );
    let report = gc_json(&cfg, &[]);
    assert_exit(&report, 0);
    assert_eq!(
        report["storage_root"],
        canon(b.root()).display().to_string()
    );
    assert_blob_gone(b.root(), &orphan.digest);
    assert_manifest_intact(b.root(), "app", &img);

    // A config whose rootdirectory is not registry storage: refused.
    let empty = tempfile::tempdir().unwrap();
    let cfg = write_config(
        cfg_dir.path(),
        &format!(
            "  filesystem: {{rootdirectory: {}}}\n",
            empty.path().display()
        ),
    );
    let out = regsweep(["gc", cfg.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}

#[test]
fn environment_rootdirectory_overrides_the_config() {
    let mut real = LayoutBuilder::new();
    let real_orphan = real.orphan_blob("real");
    let mut decoy = LayoutBuilder::new();
    decoy.orphan_blob("decoy");
    let decoy_before = snapshot_contents(decoy.root());
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        cfg_dir.path(),
        &format!(
            "  filesystem:\n    rootdirectory: {}\n",
            decoy.root().display()
        ),
    );
    let (report, _) = gc_json_env(
        &cfg,
        &[],
        &[(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            real.root().to_str().unwrap(),
        )],
    );
    assert_exit(&report, 0);
    assert_eq!(
        report["storage_root"],
        canon(real.root()).display().to_string()
    );
    assert_blob_gone(real.root(), &real_orphan.digest);
    assert_unchanged(decoy.root(), &decoy_before, "");
}

#[test]
fn config_with_another_storage_driver_is_refused_with_exit_2() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(cfg_dir.path(), "  gcs:\n    bucket: registry\n");
    for json in [false, true] {
        let mut args = vec!["gc".to_owned()];
        if json {
            args.push("--json".to_owned());
        }
        args.push(cfg.display().to_string());
        let out = regsweep(&args);
        assert_eq!(code(&out), 2, "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("regsweep: error:"), "{stderr}");
        assert!(
            stderr.contains("gcs"),
            "the error should name the driver: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// Interrupted sweeps, re-runs
// ---------------------------------------------------------------------------

#[test]
fn interrupted_sweep_then_rerun_ends_like_one_uninterrupted_run() {
    for m in MODES {
        let fx = Mixed::new();
        let pristine = fx.root();
        let (_r, reference) = copy_of(pristine);
        let report = gc_json(&reference, &mode_args(m));
        assert_exit(&report, 0);
        let final_tree = snapshot_contents(&reference);
        let n = report["candidates"].as_array().unwrap().len() as u64;
        assert!(n >= 8, "the fixture should have garbage: {n}");
        // Stops at the start, the end, and around each change of kind
        // (tag history → revisions → layer links → blobs).
        let mut stops = BTreeSet::from([0, 1, n - 1, n]);
        let mut boundary = 0;
        for kind in ["tag_index_entries", "manifests", "layer_links"] {
            boundary += num(&report, "reclaimable", kind);
            stops.extend([boundary.saturating_sub(1), boundary, boundary + 1]);
        }
        stops.retain(|k| *k <= n);

        for k in stops {
            let (_c, copy) = copy_of(pristine);
            let k_text = k.to_string();
            let (stopped, out) = gc_json_env(
                &copy,
                &mode_args(m),
                &[("REGSWEEP_FAULT_STOP_AFTER", k_text.as_str())],
            );
            let ctx = format!("-m {m}, stopped after {k} of {n}");
            if k < n {
                assert_eq!(code(&out), 1, "{ctx}: {}", describe(&out));
                assert_eq!(stopped["interrupted"], true, "{ctx}");
                assert_eq!(total(&stopped, "deleted"), k, "{ctx}");
            } else {
                assert_eq!(code(&out), 0, "{ctx}: {}", describe(&out));
                assert_eq!(stopped["interrupted"], false, "{ctx}");
            }
            // At the stop: every live image is whole, nothing dangles, and
            // everything the complete run keeps is still there.
            for (repo, man) in fx.live(m) {
                assert_manifest_intact(&copy, repo, &man);
            }
            assert_tags_unchanged(&current_links(pristine), &copy);
            assert_no_dangling_links(&copy);
            let now = snapshot_contents(&copy);
            for (path, node) in &final_tree {
                assert_eq!(now.get(path), Some(node), "{ctx}: {} lost", path.display());
            }

            let rerun = gc_json(&copy, &mode_args(m));
            assert_exit(&rerun, 0);
            assert_eq!(rerun["interrupted"], false);
            assert_unchanged(
                &copy,
                &final_tree,
                format!("{ctx}: the re-run must end where one complete run ends"),
            );
        }
        fx.assert_collected(&reference, m, pristine);
    }
}

#[test]
fn second_run_after_a_complete_one_finds_nothing() {
    for m in MODES {
        let fx = Mixed::new();
        let first = gc_json(fx.root(), &mode_args(m));
        assert_exit(&first, 0);
        assert!(total(&first, "deleted") > 0);
        let tree = snapshot_contents(fx.root());
        let second = gc_json(fx.root(), &mode_args(m));
        assert_exit(&second, 0);
        assert_no_warnings(&second);
        assert_nothing_reclaimable(&second);
        assert_eq!(total(&second, "deleted"), 0);
        assert_unchanged(fx.root(), &tree, "");
    }
}

#[test]
fn after_counts_of_a_run_are_the_before_counts_of_the_next() {
    for m in MODES {
        let fx = Mixed::new();
        let dry = gc_json(fx.root(), &with(mode_args(m), &["-d"]));
        let first = gc_json(fx.root(), &mode_args(m));
        let second = gc_json(fx.root(), &mode_args(m));
        assert_eq!(
            dry["after"], first["after"],
            "-m {m}: dry run predicts the after counts"
        );
        assert_eq!(first["after"], second["before"], "-m {m}");
        assert_eq!(second["before"], second["after"], "-m {m}");
    }
}

#[test]
fn before_counts_describe_the_tree() {
    let fx = Mixed::new();
    let report = gc_json(fx.root(), &["-d"]);
    let root = fx.root();
    let sizes = blob_sizes(root);
    let layer_links: usize = ["app", "lib", "team/x/y"]
        .iter()
        .map(|r| layer_link_set(root, r).len())
        .sum();
    let expected = [
        ("repositories", 3),
        ("tags", 5),
        // With the revision directory the API deletion left empty: the
        // sweep removes it, so it counts as it counts in `reclaimable`.
        ("manifests", 12),
        ("tagged_manifests", 5),
        ("untagged_manifests", 7),
        ("layer_links", layer_links as u64),
        ("blobs", sizes.len() as u64),
        ("blob_bytes", sizes.values().sum()),
        ("uploads", 1),
    ];
    for (key, value) in expected {
        assert_eq!(num(&report, "before", key), value, "before.{key}");
    }
}

// ---------------------------------------------------------------------------
// Symbolic links
// ---------------------------------------------------------------------------

/// Sets up `placement` (a symlink inside the storage pointing at `outside`,
/// a directory outside the root with blob-like content), runs a real
/// collection with -m, and checks that nothing outside changed and that the
/// symlink is reported.
fn assert_symlink_not_followed(
    setup: impl FnOnce(&mut LayoutBuilder, &Path) -> PathBuf,
    kinds: &[&str],
) {
    assert_symlink_not_followed_with(setup, kinds, &[]);
}

fn assert_symlink_not_followed_with(
    setup: impl FnOnce(&mut LayoutBuilder, &Path) -> PathBuf,
    kinds: &[&str],
    extra_args: &[&str],
) {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("live", &[]);
    b.push("app", "v1", &img);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("app", &untagged);
    b.orphan_linked_blob("app", "orphan");
    let outside = b.scratch().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let link = setup(&mut b, &outside);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "setup must leave a symlink at {}",
        link.display()
    );
    let outside_before = snapshot_contents(&outside);
    assert!(!outside_before.is_empty());

    let storage_before = snapshot_contents(b.root());
    let mut args: Vec<&std::ffi::OsStr> = vec!["gc".as_ref(), "--json".as_ref(), "-m".as_ref()];
    args.extend(extra_args.iter().map(std::ffi::OsStr::new));
    args.push(b.root().as_os_str());
    let out = regsweep(args);
    assert_unchanged(
        &outside,
        &outside_before,
        format!(
            "regsweep followed the symlink {} out of the storage",
            link.display()
        ),
    );
    let shown = reported(b.root(), &link);
    match code(&out) {
        // Collected around the symlink, reporting it as a warning.
        1 => {
            let report: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(&out)));
            assert!(
                has_warning(&report, kinds, &shown),
                "the symlink {} is not reported as {kinds:?}: {:#}",
                link.display(),
                report["warnings"]
            );
        }
        // Or refused the whole run, naming the symlink, deleting nothing.
        2 => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&shown) || stderr.contains(&link.display().to_string()),
                "the refusal does not name the symlink {}: {}",
                link.display(),
                describe(&out)
            );
            assert_unchanged(b.root(), &storage_before, "a refused run deletes nothing");
        }
        _ => panic!(
            "the symlink {} must be reported (exit 1 with a warning, or exit 2): {}",
            link.display(),
            describe(&out)
        ),
    }
}

/// A blob (data file) under `dir/<hex>/data` whose content hashes to hex;
/// the first hex pair is not `avoid`-ed by anything in the storage.
fn outside_blob(b: &LayoutBuilder, dir: &Path, label: &str) -> String {
    let used: BTreeSet<String> = fs::read_dir(b.v2().join("blobs/sha256"))
        .map(|e| {
            e.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for i in 0.. {
        let content = format!("outside {label} {i}");
        let digest = sha256(content.as_bytes());
        if !used.contains(&hex_of(&digest)[..2]) {
            let data = dir
                .join(&hex_of(&digest)[..2])
                .join(hex_of(&digest))
                .join("data");
            fs::create_dir_all(data.parent().unwrap()).unwrap();
            fs::write(&data, content).unwrap();
            return digest;
        }
    }
    unreachable!()
}

fn symlink(target: &Path, link: &Path) {
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn symlinked_blob_shard_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let digest = outside_blob(b, outside, "shard");
            let shard = &hex_of(&digest)[..2];
            let link = b.v2().join("blobs/sha256").join(shard);
            symlink(&outside.join(shard), &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_blob_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let digest = outside_blob(b, outside, "blob dir");
            let hex = hex_of(&digest);
            let link = blob_dir(b.root(), &digest);
            symlink(&outside.join(&hex[..2]).join(hex), &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_blob_data_file_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let digest = outside_blob(b, outside, "data");
            let hex = hex_of(&digest);
            let link = blob_data(b.root(), &digest);
            symlink(&outside.join(&hex[..2]).join(hex).join("data"), &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_blobs_sha256_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            outside_blob(b, &outside.join("sha256"), "sha256");
            let link = b.v2().join("blobs/sha256");
            fs::rename(&link, outside.join("moved")).unwrap();
            symlink(&outside.join("sha256"), &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_blobs_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            // The storage's own blobs live outside, behind the symlink, with an
            // orphan among them.
            let link = b.v2().join("blobs");
            fs::rename(&link, outside.join("blobs")).unwrap();
            outside_blob(b, &outside.join("blobs/sha256"), "blobs");
            symlink(&outside.join("blobs"), &link);
            link
        },
        &["symlink"],
    );
}

/// A repository directory outside the storage, with garbage in it under -m:
/// an untagged revision and a dead layer link.
fn outside_repository(b: &mut LayoutBuilder, name: &str) -> PathBuf {
    let img = b.simple_image(&format!("{name} outside"), &[]);
    b.push_untagged(name, &img);
    b.orphan_linked_blob(name, "outside orphan");
    repo_dir(b.root(), name)
}

#[test]
fn symlinked_repository_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let dir = outside_repository(b, "ext");
            fs::rename(&dir, outside.join("ext")).unwrap();
            symlink(&outside.join("ext"), &dir);
            dir
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_repositories_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let link = b.v2().join("repositories");
            fs::rename(&link, outside.join("repositories")).unwrap();
            symlink(&outside.join("repositories"), &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_manifests_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let dir = outside_repository(b, "ext");
            let manifests = dir.join("_manifests");
            fs::rename(&manifests, outside.join("_manifests")).unwrap();
            symlink(&outside.join("_manifests"), &manifests);
            manifests
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_layer_link_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let orphan = b.orphan_blob("linked from outside");
            let target = outside.join(orphan.hex());
            fs::create_dir_all(&target).unwrap();
            fs::write(target.join("link"), &orphan.digest).unwrap();
            let link = layer_link_dir(b.root(), "app", &orphan.digest);
            symlink(&target, &link);
            link
        },
        &["symlink"],
    );
}

#[test]
fn symlinked_link_file_is_not_followed() {
    assert_symlink_not_followed_with(
        |b, outside| {
            // A dead layer link whose link file is a symlink to a file outside.
            let orphan = b.orphan_linked_blob("app", "link file");
            let target = outside.join("link");
            fs::write(&target, &orphan.digest).unwrap();
            let link = layer_link(b.root(), "app", &orphan.digest);
            fs::remove_file(&link).unwrap();
            symlink(&target, &link);
            link
        },
        &["symlink", "invalid_link"],
        &["--check-links"],
    );
}

#[test]
fn symlinked_dead_layer_link_file_is_removed_as_a_link_not_followed() {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("live", &[]);
    b.push("app", "v1", &img);
    let orphan = b.orphan_linked_blob("app", "link file");
    let outside = b.scratch().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = outside.join("link");
    fs::write(&target, &orphan.digest).unwrap();
    let link = layer_link(b.root(), "app", &orphan.digest);
    fs::remove_file(&link).unwrap();
    symlink(&target, &link);

    let report = gc_json(b.root(), &["-m"]);
    assert_exit(&report, 0);
    assert!(
        fs::symlink_metadata(&link).is_err(),
        "the dead link (a symlink) is removed"
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        orphan.digest.as_bytes(),
        "its target outside the storage is untouched"
    );
    assert_blob_kept(b.root(), &img.digest);
}

#[test]
fn symlinked_tag_directory_is_not_followed() {
    assert_symlink_not_followed(
        |b, outside| {
            let img = b.simple_image("outside tag", &[]);
            b.push("app", "ext", &img);
            let dir = tag_dir(b.root(), "app", "ext");
            fs::rename(&dir, outside.join("ext")).unwrap();
            symlink(&outside.join("ext"), &dir);
            dir
        },
        &["symlink"],
    );
}

// ---------------------------------------------------------------------------
// Dry run and output
// ---------------------------------------------------------------------------

#[test]
fn dry_run_deletes_nothing_and_reclaims_exactly_what_a_real_run_deletes() {
    for m in MODES {
        let fx = Mixed::new();
        let root = fx.root();
        let before = snapshot_contents(root);
        let dry = gc_json(root, &with(mode_args(m), &["-d"]));
        assert_exit(&dry, 0);
        assert_eq!(dry["dry_run"], true);
        assert_unchanged(root, &before, format!("-m {m}: dry run changed the tree"));
        for key in [
            "tag_index_entries",
            "manifests",
            "layer_links",
            "blobs",
            "bytes",
        ] {
            assert_eq!(num(&dry, "deleted", key), 0, "dry run deleted.{key}");
        }
        let out = regsweep(
            with(vec!["gc", "--dry-run"], &mode_args(m))
                .into_iter()
                .chain([root.to_str().unwrap()]),
        );
        assert_eq!(code(&out), 0, "{}", describe(&out));
        assert_unchanged(root, &before, "");

        let sizes_before = blob_sizes(root);
        let real = gc_json(root, &mode_args(m));
        let sizes_after = blob_sizes(root);
        let deleted: BTreeSet<String> = sizes_before
            .keys()
            .filter(|d| !sizes_after.contains_key(*d))
            .cloned()
            .collect();
        let expected: BTreeSet<String> = sizes_before
            .keys()
            .filter(|d| !fx.live_blobs(m).contains(*d))
            .cloned()
            .collect();
        assert_eq!(deleted, expected, "-m {m}: blobs deleted");
        let bytes: u64 = deleted.iter().map(|d| sizes_before[d]).sum();
        assert_eq!(num(&dry, "reclaimable", "bytes"), bytes, "-m {m}");
        assert_eq!(num(&dry, "reclaimable", "blobs"), deleted.len() as u64);
        assert_eq!(blob_candidates(&dry), deleted);
        assert_eq!(dry["reclaimable"], real["reclaimable"]);
        assert_eq!(real["deleted"], dry["reclaimable"]);
        assert_eq!(dry["candidates"], real["candidates"]);
    }
}

#[test]
fn json_report_has_every_documented_field_with_consistent_values() {
    let fx = Mixed::new();
    let root = fx.root();
    let sizes = blob_sizes(root);
    for extra in [vec!["-d", "-m"], vec!["-m"]] {
        let r = gc_json(root, &extra);
        let dry = extra.contains(&"-d");
        assert_eq!(r["regsweep_report"], 2);
        assert_eq!(r["storage_root"], canon(root).display().to_string());
        assert_eq!(r["dry_run"], dry);
        assert_eq!(r["delete_untagged"], true);
        for section in ["before", "after"] {
            let obj = r[section].as_object().expect(section);
            let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
            for k in [
                "repositories",
                "tags",
                "manifests",
                "tagged_manifests",
                "untagged_manifests",
                "layer_links",
                "blobs",
                "blob_bytes",
                "uploads",
            ] {
                assert!(keys.contains(k) && obj[k].is_u64(), "{section}.{k}");
            }
            assert_eq!(
                num(&r, section, "manifests"),
                num(&r, section, "tagged_manifests") + num(&r, section, "untagged_manifests")
            );
        }
        for section in ["reclaimable", "deleted"] {
            for k in [
                "tag_index_entries",
                "manifests",
                "layer_links",
                "blobs",
                "bytes",
            ] {
                assert!(r[section][k].is_u64(), "{section}.{k}");
            }
        }
        let cands = r["candidates"].as_array().unwrap();
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        let mut blob_bytes = 0;
        for c in cands {
            let kind = c["kind"].as_str().unwrap();
            assert!(
                ["tag_index_entry", "manifest", "layer_link", "blob"].contains(&kind),
                "{c}"
            );
            *by_kind.entry(kind).or_default() += 1;
            let digest = c["digest"].as_str().unwrap();
            let hex = digest.strip_prefix("sha256:").expect("sha256: digest");
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(c["reason"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
            assert!(c["bytes"].is_null() || c["bytes"].is_u64(), "{c}");
            match kind {
                "blob" => {
                    assert!(c["repository"].is_null(), "{c}");
                    assert!(c["tag"].is_null(), "{c}");
                    assert_eq!(c["bytes"].as_u64(), Some(sizes[digest]), "{c}");
                    blob_bytes += sizes[digest];
                }
                "tag_index_entry" => {
                    assert!(c["repository"].is_string() && c["tag"].is_string(), "{c}")
                }
                _ => {
                    assert!(c["repository"].is_string(), "{c}");
                    assert!(c["tag"].is_null(), "{c}");
                }
            }
        }
        let count = |k: &str| by_kind.get(k).copied().unwrap_or(0);
        assert_eq!(
            num(&r, "reclaimable", "tag_index_entries"),
            count("tag_index_entry")
        );
        assert_eq!(num(&r, "reclaimable", "manifests"), count("manifest"));
        assert_eq!(num(&r, "reclaimable", "layer_links"), count("layer_link"));
        assert_eq!(num(&r, "reclaimable", "blobs"), count("blob"));
        assert_eq!(num(&r, "reclaimable", "bytes"), blob_bytes);
        let repos = r["repositories"].as_array().unwrap();
        let mut sums = [0u64; 3];
        for repo in repos {
            assert!(repo["name"].is_string());
            for k in [
                "manifests",
                "tag_index_entries",
                "layer_links",
                "blobs",
                "bytes",
            ] {
                assert!(repo[k].is_u64(), "repositories[].{k}");
            }
            sums[0] += repo["manifests"].as_u64().unwrap();
            sums[1] += repo["tag_index_entries"].as_u64().unwrap();
            sums[2] += repo["layer_links"].as_u64().unwrap();
        }
        assert_eq!(sums[0], num(&r, "reclaimable", "manifests"));
        assert_eq!(sums[1], num(&r, "reclaimable", "tag_index_entries"));
        assert_eq!(sums[2], num(&r, "reclaimable", "layer_links"));
        assert!(r["warnings"].as_array().unwrap().is_empty());
        assert!(r["failures"].as_array().unwrap().is_empty());
        assert_eq!(r["interrupted"], false);
        assert_eq!(r["exit_code"], 0);
        if dry {
            assert_eq!(
                num(&r, "after", "blobs"),
                num(&r, "before", "blobs") - num(&r, "reclaimable", "blobs")
            );
            assert_eq!(
                num(&r, "after", "blob_bytes"),
                num(&r, "before", "blob_bytes") - num(&r, "reclaimable", "bytes")
            );
            assert_eq!(
                num(&r, "after", "layer_links"),
                num(&r, "before", "layer_links") - num(&r, "reclaimable", "layer_links")
            );
        } else {
            assert_eq!(r["deleted"], r["reclaimable"]);
        }
    }

    // Warnings carry kind, path, repository and message.
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push("app", "v1", &img);
    let current = tag_current_link(b.root(), "app", "v1");
    b.overwrite(&current, b"");
    let r = gc_json(b.root(), &[]);
    assert_exit(&r, 1);
    let w = &r["warnings"][0];
    assert!(
        [
            "invalid_link",
            "invalid_tag_link",
            "unreadable_manifest",
            "missing_blob",
            "unexpected_entry",
            "symlink",
            "unsupported_digest"
        ]
        .contains(&w["kind"].as_str().unwrap()),
        "{w}"
    );
    assert_eq!(w["path"], reported(b.root(), &current));
    assert!(w["repository"].is_string() || w["repository"].is_null());
    assert!(w["message"].as_str().is_some_and(|s| !s.is_empty()));
}

/// Candidate lines of `-v` output: (kind, repository, tag, digest).
fn verbose_lines(stdout: &str) -> (Vec<(String, String, String, String)>, usize) {
    let mut lines = Vec::new();
    let mut last = 0;
    for (i, line) in stdout.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 6 && ["tag_index_entry", "manifest", "layer_link", "blob"].contains(&f[0]) {
            lines.push((f[0].into(), f[1].into(), f[2].into(), f[3].into()));
            last = i;
        }
    }
    (lines, last)
}

fn json_lines(report: &Value) -> BTreeMap<(String, String, String, String), usize> {
    let mut out = BTreeMap::new();
    for c in report["candidates"].as_array().unwrap() {
        let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        *out.entry((
            s(&c["kind"]),
            s(&c["repository"]),
            s(&c["tag"]),
            s(&c["digest"]),
        ))
        .or_default() += 1;
    }
    out
}

#[test]
fn verbose_lists_every_candidate_before_the_summary() {
    for m in MODES {
        let fx = Mixed::new();
        let root = fx.root().to_str().unwrap().to_owned();
        let dry = gc_json(fx.root(), &with(mode_args(m), &["-d"]));
        let expected = json_lines(&dry);
        assert!(!expected.is_empty());
        for real in [false, true] {
            let mut args = vec!["gc", "-v"];
            if !real {
                args.push("-d");
            }
            args.extend(mode_args(m));
            args.push(&root);
            let out = regsweep(&args);
            assert_eq!(code(&out), 0, "{}", describe(&out));
            let stdout = String::from_utf8(out.stdout.clone()).unwrap();
            let (lines, last) = verbose_lines(&stdout);
            let mut got = BTreeMap::new();
            for l in lines {
                *got.entry(l).or_insert(0usize) += 1;
            }
            assert_eq!(got, expected, "-m {m}, real {real}: {stdout}");
            assert!(
                stdout.lines().skip(last + 1).any(|l| !l.trim().is_empty()),
                "a summary follows the candidate lines: {stdout}"
            );
        }
    }
}

#[test]
fn quiet_prints_nothing_on_stdout_without_warnings() {
    let fx = Mixed::new();
    let root = fx.root().to_str().unwrap();
    let out = regsweep(["gc", "-q", "-d", "-m", root]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let out = regsweep(["gc", "-q", "-m", root]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
    assert_blob_gone(fx.root(), &fx.pushed.orphan.digest);
    assert_blob_gone(fx.root(), &fx.pushed.orphan_linked.digest);
    assert_blob_kept(fx.root(), &fx.pushed.base.digest);
}

#[test]
fn warnings_go_to_stderr_naming_the_path() {
    let mut b = LayoutBuilder::new();
    let img = b.simple_image("img", &[]);
    b.push("app", "v1", &img);
    let current = tag_current_link(b.root(), "app", "v1");
    b.overwrite(&current, format!("{}\n", img.digest).as_bytes());
    let expected = format!("regsweep: warning: {}: ", reported(b.root(), &current));
    for quiet in [false, true] {
        let mut args = vec!["gc"];
        if quiet {
            args.push("-q");
        }
        let root = b.root().to_str().unwrap();
        args.push(root);
        let out = regsweep(&args);
        assert_eq!(code(&out), 1, "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.starts_with(&expected)),
            "expected a line starting with {expected:?}: {}",
            describe(&out)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("regsweep: warning:"));
        if quiet {
            assert!(out.stdout.is_empty(), "{}", describe(&out));
        }
    }
    assert_manifest_intact(b.root(), "app", &img);
}

#[test]
fn without_a_terminal_gc_proceeds_without_asking() {
    for yes in [false, true] {
        let mut b = LayoutBuilder::new();
        let img = b.simple_image("img", &[]);
        b.push("app", "v1", &img);
        let orphan = b.orphan_blob("o");
        let mut args = vec!["gc"];
        if yes {
            args.push("--yes");
        }
        let root = b.root().to_str().unwrap();
        args.push(root);
        let out = regsweep(&args);
        assert_eq!(code(&out), 0, "{}", describe(&out));
        assert_blob_gone(b.root(), &orphan.digest);
        assert_manifest_intact(b.root(), "app", &img);
    }
}

#[test]
fn thread_count_does_not_change_the_plan() {
    let fx = Mixed::new();
    let plans: Vec<Value> = ["1", "2", "8"]
        .iter()
        .map(|t| gc_json(fx.root(), &["-d", "-m", "--threads", t]))
        .collect();
    let sorted = |r: &Value| json_lines(r);
    assert_eq!(sorted(&plans[0]), sorted(&plans[1]));
    assert_eq!(sorted(&plans[0]), sorted(&plans[2]));
    assert_eq!(plans[0]["reclaimable"], plans[2]["reclaimable"]);
}
