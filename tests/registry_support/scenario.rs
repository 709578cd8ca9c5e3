//! The common second half of every end-to-end scenario: given a registry
//! into which a test pushed content, and what the test knows should happen,
//! sweep copies of the tree with and without `-m` and check everything
//! against the expectation, against upstream's garbage collector and against
//! the real registry restarted on the swept storage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::gc::{
    RECLAIM_KEYS, UpstreamPlan, assert_nothing_reclaimable, candidate_digests, candidate_pairs,
    count, regsweep_json, upstream_gc,
};
use super::oci::{Layer, Layout};
use super::registry::Registry;
use super::skopeo::{self, Format};
use super::{digest_like, sha256_digest, tree};

/// A manifest in a repository, and the blobs fetching it needs (by sha256,
/// or by sha512 to check a blob uploaded under that name stays reachable).
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub repo: String,
    pub digest: String,
    /// Config and layers (not child manifests).
    pub blobs: Vec<String>,
}

impl Manifest {
    pub fn new(repo: &str, digest: &str, blobs: &[String]) -> Manifest {
        Manifest {
            repo: repo.to_string(),
            digest: digest.to_string(),
            blobs: blobs.to_vec(),
        }
    }

    fn pair(&self) -> (String, String) {
        (self.repo.clone(), self.digest.clone())
    }
}

/// What a test pushed, as far as garbage collection is concerned. Every
/// set is written by the test from the digests it pushed.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// `repo:tag` that must pull completely after any sweep, with digests
    /// the pull must bring.
    pub tags: Vec<(String, Vec<String>)>,
    /// Manifest revisions kept in both modes (served by digest after).
    pub live: Vec<Manifest>,
    /// Untagged revisions: kept without `-m`, deleted with it.
    pub untagged: Vec<Manifest>,
    /// Manifests deleted through the API before the sweep: 404 throughout.
    pub api_deleted: Vec<(String, String)>,
    /// Blobs garbage in both modes.
    pub garbage: Vec<String>,
    /// Blobs garbage only with `-m`.
    pub untagged_garbage: Vec<String>,
    /// Revisions upstream 2.8's `-m` deletes although they are live.
    pub upstream_m_extra_manifests: Vec<(String, String)>,
    /// Blobs upstream 2.8's `-m` deletes although they are live.
    pub upstream_m_extra_blobs: Vec<String>,
    /// Repository for the image pushed after each sweep.
    pub push_after_repo: String,
    /// Pushed again after each sweep (`Format::Oci`): layout tag, `repo:tag`,
    /// digests the pull must then bring.
    pub repush: Vec<(String, String, Vec<String>)>,
}

impl Expect {
    /// Nothing expected yet; the image pushed after each sweep goes to `repo`.
    pub fn pushing_after(repo: &str) -> Expect {
        Expect {
            push_after_repo: repo.into(),
            ..Expect::default()
        }
    }

    /// The blobs a sweep (with `-m` when `delete_untagged`) must delete.
    pub fn blob_garbage(&self, delete_untagged: bool) -> BTreeSet<String> {
        let mut blobs = set(&self.garbage);
        if delete_untagged {
            blobs.extend(self.untagged_garbage.iter().cloned());
        }
        blobs
    }

    /// The revisions a sweep (with `-m` when `delete_untagged`) must delete,
    /// as (repository, digest).
    pub fn manifest_garbage(&self, delete_untagged: bool) -> BTreeSet<(String, String)> {
        if delete_untagged {
            self.untagged.iter().map(Manifest::pair).collect()
        } else {
            BTreeSet::new()
        }
    }
}

/// Upstream's `garbage-collect` (with `-m` when `delete_untagged`) deletes
/// what `e` says a sweep must, plus with `-m` what upstream 2.8 wrongly
/// deletes.
pub fn assert_upstream_follows_the_model(
    upstream: &UpstreamPlan,
    e: &Expect,
    delete_untagged: bool,
    mode: &str,
) {
    let mut blobs = e.blob_garbage(delete_untagged);
    let mut manifests = e.manifest_garbage(delete_untagged);
    if delete_untagged {
        blobs.extend(e.upstream_m_extra_blobs.iter().cloned());
        manifests.extend(e.upstream_m_extra_manifests.iter().cloned());
    }
    assert_eq!(
        upstream.blobs, blobs,
        "[{mode}] upstream garbage-collect blobs differ from the test's model"
    );
    assert_eq!(
        upstream.manifests, manifests,
        "[{mode}] upstream garbage-collect manifests differ from the test's model"
    );
}

/// Every blob of `expected` is among the `stored` ones (digest → size):
/// else the test's model is wrong, not the sweep.
pub fn assert_stored(expected: &BTreeSet<String>, stored: &BTreeMap<String, u64>, mode: &str) {
    let not_there: Vec<&String> = expected
        .iter()
        .filter(|d| !stored.contains_key(*d))
        .collect();
    assert!(
        not_there.is_empty(),
        "[{mode}] test bug: expected garbage {not_there:?} is not in storage"
    );
}

/// Every candidate, order aside.
pub fn candidate_set(report: &Value) -> BTreeSet<String> {
    let all = report["candidates"].as_array().expect("candidates[]");
    all.iter().map(Value::to_string).collect()
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

/// Stops `reg`, then for each mode (`gc`, `gc -m`) sweeps a copy of its tree
/// and checks it with [`sweep_and_check`]. `base` is a layer of the tree
/// that stays live; the image pushed after each sweep reuses it.
pub fn check_both_modes(mut reg: Registry, layout: &mut Layout, base: &Layer, expect: &Expect) {
    reg.stop();
    for delete_untagged in [false, true] {
        let (_copy, root) = copy_storage(reg.root());
        let mut swept = Registry::stopped_on(&root);
        sweep_and_check(&mut swept, delete_untagged, layout, base, expect);
    }
}

/// The checks of one mode on the (stopped) registry `reg`:
/// 1. upstream `garbage-collect --dry-run` deletes what the test expects,
///    plus, with `-m`, what upstream 2.8 wrongly deletes;
/// 2. `regsweep gc --dry-run` proposes exactly the expected blobs and
///    manifests, touches nothing, and reads a config.yml TARGET the same;
/// 3. `regsweep gc -y` deletes exactly those blobs, leaves no link to a
///    missing blob nor touches uploads in progress, and reports what it did;
/// 4. the registry restarted on the tree serves every tag completely, every
///    kept manifest by digest, and 404 for every deleted one;
/// 5. a new image pushes and pulls;
/// 6. a second `regsweep gc` finds nothing, and the registry still serves.
pub fn sweep_and_check(
    reg: &mut Registry,
    delete_untagged: bool,
    layout: &mut Layout,
    base: &Layer,
    e: &Expect,
) {
    let m = delete_untagged;
    let mode = if m { "gc -m" } else { "gc" };
    let root = reg.root().to_path_buf();
    let root_arg = root.to_str().unwrap().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["gc".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        if m {
            v.push("-m".into());
        }
        v.push(root_arg.clone());
        v
    };
    let run_json = |extra: &[&str]| -> Value {
        let a = args(extra);
        regsweep_json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let before = tree::blobs(&root);
    let uploads = tree::uploads(&root);
    let expected = e.blob_garbage(m);
    let expected_manifests = e.manifest_garbage(m);
    assert_stored(&expected, &before, mode);

    // 1. Upstream, as a check of the test's model and as the baseline.
    let (upstream, _) = upstream_gc(&reg.config(), true, m);
    assert_upstream_follows_the_model(&upstream, e, m, mode);

    // 2. regsweep dry run.
    let snapshot = tree::snapshot(&root);
    let dry = run_json(&["--dry-run"]);
    assert_eq!(dry["exit_code"], 0, "[{mode}] dry run exit code: {dry:#}");
    assert_eq!(
        dry["warnings"],
        Value::Array(vec![]),
        "[{mode}] dry run warnings"
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["delete_untagged"], m);
    let would = candidate_digests(&dry, "blob");
    let upstream_without_its_bug: BTreeSet<String> = upstream
        .blobs
        .difference(&set(&e.upstream_m_extra_blobs))
        .cloned()
        .collect();
    assert_eq!(
        would, upstream_without_its_bug,
        "[{mode}] differential: regsweep's deletable blobs vs upstream's (minus upstream 2.8's -m bug)"
    );
    assert_eq!(would, expected, "[{mode}] regsweep dry-run blob candidates");
    // Manifest candidates: the untagged revisions, and the revision
    // directories the registry left behind when manifests were deleted
    // through the API (regsweep removes them).
    let leftover_revisions: BTreeSet<(String, String)> = e
        .api_deleted
        .iter()
        .filter(|(repo, digest)| tree::revision_dir(&root, repo, digest).is_dir())
        .cloned()
        .collect();
    let manifest_candidates = candidate_pairs(&dry, "manifest");
    assert_eq!(
        manifest_candidates
            .difference(&leftover_revisions)
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected_manifests,
        "[{mode}] regsweep dry-run manifest candidates (besides leftover revision directories)"
    );
    assert!(
        manifest_candidates.is_superset(&leftover_revisions),
        "[{mode}] regsweep does not clean leftover revision directories {:?}",
        leftover_revisions
            .difference(&manifest_candidates)
            .collect::<Vec<_>>()
    );
    assert_eq!(count(&dry, "reclaimable", "blobs"), expected.len() as u64);
    let expected_bytes: u64 = expected.iter().map(|d| before[d]).sum();
    assert_eq!(
        count(&dry, "reclaimable", "bytes"),
        expected_bytes,
        "[{mode}] reclaimable.bytes = sum of the sizes of the blobs to delete"
    );
    for key in RECLAIM_KEYS {
        assert_eq!(
            count(&dry, "deleted", key),
            0,
            "[{mode}] dry run deleted.{key}"
        );
    }
    assert_eq!(
        count(&dry, "before", "blobs"),
        before.len() as u64,
        "[{mode}] before.blobs"
    );
    assert_eq!(
        count(&dry, "before", "uploads"),
        uploads.len() as u64,
        "[{mode}] before.uploads"
    );
    assert!(
        tree::snapshot(&root) == snapshot,
        "[{mode}] --dry-run changed the tree"
    );
    let canonical = root.canonicalize().unwrap();
    assert_eq!(
        dry["storage_root"],
        canonical.to_str().unwrap(),
        "[{mode}] storage_root"
    );

    // The registry's config.yml is an equivalent TARGET, and one thread
    // finds what the default pool finds.
    let config = reg.config();
    let mut via_config = vec!["gc", "--dry-run", "--threads", "1"];
    if m {
        via_config.push("-m");
    }
    via_config.push(config.to_str().unwrap());
    let dry_config = regsweep_json(&via_config);
    assert_eq!(
        dry_config["storage_root"],
        canonical.to_str().unwrap(),
        "[{mode}] TARGET=config.yml"
    );
    assert_eq!(
        candidate_set(&dry_config),
        candidate_set(&dry),
        "[{mode}] candidates with TARGET=config.yml --threads 1 vs TARGET=root"
    );

    // 3. The sweep.
    let report = run_json(&["-y"]);
    assert_eq!(
        report["exit_code"], 0,
        "[{mode}] sweep exit code: {report:#}"
    );
    assert_eq!(report["dry_run"], false);
    assert_eq!(
        report["failures"],
        Value::Array(vec![]),
        "[{mode}] failures"
    );
    for key in RECLAIM_KEYS {
        assert_eq!(
            count(&report, "deleted", key),
            count(&dry, "reclaimable", key),
            "[{mode}] deleted.{key} vs the dry run's reclaimable.{key}"
        );
    }
    let after = tree::blob_set(&root);
    let expected_after: BTreeSet<String> = before
        .keys()
        .filter(|d| !expected.contains(*d))
        .cloned()
        .collect();
    assert_eq!(
        after,
        expected_after,
        "[{mode}] blobs on disk after the sweep\n  wrongly deleted: {:?}\n  wrongly kept: {:?}",
        expected_after.difference(&after).collect::<Vec<_>>(),
        after.difference(&expected_after).collect::<Vec<_>>()
    );
    assert_eq!(
        count(&report, "after", "blobs"),
        after.len() as u64,
        "[{mode}] after.blobs"
    );
    assert_eq!(
        tree::uploads(&root),
        uploads,
        "[{mode}] uploads in progress are not garbage"
    );
    for (repo, digest) in &leftover_revisions {
        assert!(
            !tree::revision_dir(&root, repo, digest).exists(),
            "[{mode}] leftover revision directory of {repo}@{digest} still there"
        );
    }
    let dangling = tree::dangling_links(&root);
    assert!(
        dangling.is_empty(),
        "[{mode}] links to deleted blobs left: {dangling:#?}"
    );

    // 4. The registry on the swept tree.
    reg.restart();
    assert_every_tag_pulls(reg, e);
    let (kept, gone): (Vec<&Manifest>, Vec<&Manifest>) = if m {
        (e.live.iter().collect(), e.untagged.iter().collect())
    } else {
        (e.live.iter().chain(&e.untagged).collect(), Vec::new())
    };
    for man in kept {
        assert_served(reg, man, mode);
    }
    let gone = gone
        .into_iter()
        .map(Manifest::pair)
        .chain(e.api_deleted.iter().cloned());
    for (repo, digest) in gone {
        assert_eq!(
            reg.manifest_status(&repo, &digest),
            404,
            "[{mode}] {repo}@{digest} should be gone"
        );
    }

    // 5. A push after the sweep.
    let tag = format!("after-sweep-{}", if m { "m" } else { "plain" });
    let fresh = layout.layer(&tag);
    let image = layout.image(&[base, &fresh], "amd64");
    layout.tag(&tag, &image.manifest);
    skopeo::push(reg, layout, &tag, &e.push_after_repo, &tag, Format::Oci);
    let new_ref = format!("{}:{tag}", e.push_after_repo);
    skopeo::pull_complete(reg, &new_ref, &image.all());
    for (layout_tag, dest, must) in &e.repush {
        let (repo, tag) = dest.rsplit_once(':').expect("repo:tag");
        skopeo::push(reg, layout, layout_tag, repo, tag, Format::Oci);
        skopeo::pull_complete(reg, dest, must);
    }

    // 6. Nothing left to do.
    reg.stop();
    let on_disk = tree::blob_set(&root);
    let again = run_json(&["-y"]);
    assert_eq!(
        again["exit_code"], 0,
        "[{mode}] second sweep exit code: {again:#}"
    );
    assert_nothing_reclaimable(&again);
    assert_eq!(count(&again, "deleted", "blobs"), 0);
    assert_eq!(
        tree::blob_set(&root),
        on_disk,
        "[{mode}] second sweep deleted blobs"
    );
    reg.restart();
    skopeo::pull_complete(reg, &new_ref, &image.all());
    if let Some((tag, must)) = e.tags.first() {
        skopeo::pull_complete(reg, tag, must);
    }
}

/// Every tag of `e` pulls from `reg` with all it must bring, each file
/// matching its digest.
pub fn assert_every_tag_pulls(reg: &Registry, e: &Expect) {
    for (tag, must) in &e.tags {
        skopeo::pull_complete(reg, tag, must);
    }
}

const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// `repo@digest` answers 200 with the right bytes, and so does each of its
/// blobs.
pub fn assert_served(reg: &Registry, man: &Manifest, mode: &str) {
    let reply = reg.get_manifest(&man.repo, &man.digest);
    assert_eq!(
        reply.status, 200,
        "[{mode}] {}@{} should be served",
        man.repo, man.digest
    );
    // The registry stores a schema1 manifest unsigned and signs it afresh on
    // each GET, so only other kinds come back with their digest's bytes.
    let schema1 = reply.content_type.as_deref() == Some(SCHEMA1_SIGNED);
    if !schema1 {
        assert_eq!(
            sha256_digest(&reply.body),
            man.digest,
            "[{mode}] bytes of {}@{}",
            man.repo,
            man.digest
        );
    }
    for blob in &man.blobs {
        let reply = reg.get_blob(&man.repo, blob);
        assert_eq!(
            reply.status, 200,
            "[{mode}] blob {blob} of {}@{}",
            man.repo, man.digest
        );
        assert_eq!(&digest_like(blob, &reply.body), blob);
    }
}

/// Copies the storage tree `root` (whose registry should be stopped) into a
/// new tempdir; returns the tempdir and the copy's storage root.
pub fn copy_storage(root: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("data");
    tree::copy_tree(root, &copy);
    (dir, copy)
}
