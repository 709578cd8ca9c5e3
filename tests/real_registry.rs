//! End to end against the real registry (docker-registry 2.8) and a real
//! client (skopeo): push content, sweep the storage with regsweep (with and
//! without `-m`), compare with upstream's `garbage-collect`, restart the
//! registry on the swept tree and pull everything that must survive.
//!
//! Each test writes down, from the digests it pushed, which blobs and
//! manifests must go; see `registry_support::scenario` for the checks run
//! on each. Tests skip (pass, printing `skipping: ...`) when the tools are
//! missing, unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use registry_support::images::{image_on, index_on, layout, manifest, push_oci, rebuild_arm64};
use registry_support::oci::Image;
use registry_support::scenario::{Expect, check_both_modes, copy_storage};
use registry_support::scenarios::{self, ZeroByteBlob};
use registry_support::skopeo::{self, Format, push};
use registry_support::{Registry, gc, random_hex, require_tools, sha256_digest, tree};

#[test]
fn retagged_history_second_tag_and_orphan_blob() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let mut expect = Expect::pushing_after("app");
    let latest = scenarios::retagged_history(&reg, &mut layout, &base, &mut expect);
    assert_eq!(tree::uploads(reg.root()).len(), 1, "an upload in progress");
    assert_eq!(
        tree::tag_index(reg.root(), "app", "latest"),
        latest.into_iter().collect(),
        "the tag index keeps the history of `latest`"
    );
    check_both_modes(reg, &mut layout, &base, &expect);
}

#[test]
fn multi_arch_index_and_manifest_list_pushed_twice() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let mut expect = Expect::pushing_after("multi");
    scenarios::multi_arch_pushed_twice(&reg, &mut layout, &base, &mut expect);
    // Nothing tagged but the indexes uses the base here: upstream's -m takes
    // it with their children.
    expect.upstream_m_extra_blobs.push(base.digest());
    check_both_modes(reg, &mut layout, &base, &expect);
}

/// Upstream 2.8's `garbage-collect -m` deletes the child manifests of a
/// tagged multi-arch index (and everything below them): the tag no longer
/// pulls. regsweep marks recursively: after its `gc -m` the tag pulls.
#[test]
fn upstream_2_8_delete_untagged_breaks_multi_arch_regsweep_does_not() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let index = index_on(&mut layout, &base, "multi");
    assert_eq!(
        push(&reg, &layout, "multi", "multi", "latest", Format::Oci),
        index.digest()
    );
    skopeo::pull_complete(&reg, "multi:latest", &index.images[0].all());
    reg.stop();

    // Upstream, for real, on one copy.
    let (_up_dir, up_root) = copy_storage(reg.root());
    let mut upstream = Registry::stopped_on(&up_root);
    let (plan, _) = gc::upstream_gc(&upstream.config(), false, true);
    let children: Vec<(String, String)> = index
        .images
        .iter()
        .map(|i| ("multi".to_string(), i.digest()))
        .collect();
    assert_eq!(
        plan.manifests,
        children.iter().cloned().collect(),
        "upstream -m deletes the children"
    );
    upstream.restart();
    let pulled = skopeo::try_pull(&upstream, "multi:latest");
    match pulled {
        Err(e) => assert!(
            e.contains("manifest unknown"),
            "pull failed, but not on a missing child: {e}"
        ),
        Ok(blobs) => panic!(
            "upstream 2.8 garbage-collect -m was expected to break the multi-arch tag, yet it pulls: {blobs:?}"
        ),
    }
    for (repo, digest) in &children {
        assert_eq!(
            upstream.manifest_status(repo, digest),
            404,
            "child {digest} after upstream -m"
        );
    }

    // regsweep on another copy.
    let (_rs_dir, rs_root) = copy_storage(reg.root());
    let mut swept = Registry::stopped_on(&rs_root);
    let args = ["gc", "-y", "-m", rs_root.to_str().unwrap()];
    let report = gc::regsweep_json(&args);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(gc::count(&report, "deleted", "manifests"), 0, "{report:#}");
    assert_eq!(gc::count(&report, "deleted", "blobs"), 0, "{report:#}");
    swept.restart();
    let mut must = vec![index.digest()];
    for image in &index.images {
        must.extend(image.all());
    }
    skopeo::pull_complete(&swept, "multi:latest", &must);
    for (repo, digest) in &children {
        assert_eq!(
            swept.manifest_status(repo, digest),
            200,
            "child {digest} after regsweep -m"
        );
    }
}

#[test]
fn same_layers_in_nested_repositories() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let mut expect = Expect::pushing_after("team/x/y");
    scenarios::nested_repositories(&reg, &mut layout, &base, &mut expect);
    check_both_modes(reg, &mut layout, &base, &expect);
}

#[test]
fn schema1_next_to_schema2_and_oci() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let mut expect = Expect::pushing_after("s1");
    let schema1 = scenarios::schema1_next_to_schema2(&reg, &mut layout, &base, &mut expect);
    for digest in &schema1.revisions {
        let stored = std::fs::read(tree::blob_data(reg.root(), digest)).unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(stored["schemaVersion"], 1, "{digest} is a schema1 manifest");
    }
    assert!(
        !tree::blob_data(reg.root(), &schema1.config_not_uploaded).exists(),
        "a schema1 push uploads no config"
    );
    check_both_modes(reg, &mut layout, &base, &expect);
}

#[test]
fn signatures_and_sboms_with_live_and_deleted_subjects() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let mut expect = Expect::pushing_after("sig");
    scenarios::referrers_and_cosign(&reg, &mut layout, &base, &mut expect, ZeroByteBlob::Pushed);
    check_both_modes(reg, &mut layout, &base, &expect);
}

#[test]
fn manifests_deleted_through_the_api() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    // del2 has neither tags nor revisions left.
    let mut expect = Expect::pushing_after("del2");
    let still_indexed = scenarios::deleted_through_the_api(&reg, &mut layout, &base, &mut expect);
    for (repo, digest) in &expect.api_deleted {
        let revision = tree::revision_dir(reg.root(), repo, digest);
        assert!(
            revision.is_dir() && !revision.join("link").exists(),
            "the registry leaves an empty revision directory {}",
            revision.display()
        );
    }
    assert!(
        tree::tag_index(reg.root(), "del", "t3").contains(&still_indexed),
        "t3's index still names the deleted r1"
    );
    check_both_modes(reg, &mut layout, &base, &expect);
}

/// A blob uploaded under its sha512 name (`PUT ...&digest=sha512:...`) is
/// stored under its sha256 and linked into the repository twice:
/// `_layers/sha256/<hex>` and `_layers/sha512/<hex>` (holding the sha256
/// digest). Referenced by nothing, it is garbage: upstream deletes it, and so
/// must regsweep, with both links.
#[test]
fn orphan_uploaded_under_sha512_is_collected_like_upstream() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let image = image_on(&mut layout, &base, "v1");
    push_oci(&reg, &layout, "v1", "app", "v1", &image);
    let orphan = random_hex(100).into_bytes();
    let orphan_512 = reg.upload_blob_sha512("app", &orphan);
    let sha512_link = tree::v2(reg.root())
        .join("repositories/app/_layers/sha512")
        .join(orphan_512.trim_start_matches("sha512:"))
        .join("link");
    assert_eq!(
        std::fs::read_to_string(&sha512_link).unwrap(),
        sha256_digest(&orphan),
        "the registry links the sha512 name to the sha256 blob"
    );

    let expect = Expect {
        tags: vec![("app:v1".into(), image.all())],
        live: vec![manifest("app", &image)],
        garbage: vec![sha256_digest(&orphan)],
        push_after_repo: "app".into(),
        ..Expect::default()
    };
    check_both_modes(reg, &mut layout, &base, &expect);
}

/// Crash consistency. Over a tree written by the real registry (untagged
/// history, a multi-arch index pushed twice, layers shared across
/// repositories, a linked and an unlinked orphan, an upload in progress),
/// `gc -m` is stopped after K deletions (the fault hook
/// `REGSWEEP_FAULT_STOP_AFTER`, which stops as a crash would: no clean-up
/// after it) for every K from 1 to the total. After each stop:
/// - no link names a missing blob, and (for a spread of K) the registry
///   restarted on the tree serves every live image completely: skopeo pulls
///   it and every file matches its digest;
/// - a re-run ends with exactly the tree one uninterrupted run leaves;
/// - with `--trash`, `restore` brings back the original byte for byte.
#[test]
fn a_sweep_stopped_after_any_deletion_leaves_a_working_registry_and_a_rerun_finishes_it() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let app: Vec<Image> = (0..3)
        .map(|i| {
            let label = format!("app-{i}");
            let image = image_on(&mut layout, &base, &label);
            push_oci(&reg, &layout, &label, "app", "latest", &image);
            image
        })
        .collect();
    let i1 = index_on(&mut layout, &base, "multi-1");
    let i2 = rebuild_arm64(&mut layout, &base, "multi-2", &i1.images[0]);
    for (label, index) in [("multi-1", &i1), ("multi-2", &i2)] {
        assert_eq!(
            push(&reg, &layout, label, "team/multi", "latest", Format::Oci),
            index.digest()
        );
    }
    let other = image_on(&mut layout, &base, "other");
    push_oci(&reg, &layout, "other", "other", "v1", &other);
    reg.upload_blob("app", random_hex(64).as_bytes());
    let unlinked = reg.upload_blob("other", random_hex(64).as_bytes());
    assert_eq!(reg.delete_blob("other", &unlinked), 202);
    reg.start_upload("app", b"partial layer");
    reg.stop();
    let pristine = reg.root().to_path_buf();
    let original = tree::snapshot(&pristine);

    let mut multi = vec![i2.digest()];
    for image in &i2.images {
        multi.extend(image.all());
    }
    let live: Vec<(&str, Vec<String>)> = vec![
        ("app:latest", app[2].all()),
        ("team/multi:latest", multi),
        ("other:v1", other.all()),
    ];

    // One uninterrupted run: the final tree every re-run must reach.
    let (_r, reference) = copy_storage(&pristine);
    let full = gc::regsweep_json(&["gc", "-y", "-m", reference.to_str().unwrap()]);
    assert_eq!(full["exit_code"], 0, "{full:#}");
    let total = full["candidates"].as_array().unwrap().len() as u64;
    assert!(
        total >= 15,
        "the tree should have garbage of every kind: {full:#}"
    );
    let final_tree = tree::snapshot(&reference);
    let deleted = |report: &serde_json::Value| -> u64 {
        ["tag_index_entries", "manifests", "layer_links", "blobs"]
            .iter()
            .map(|k| gc::count(report, "deleted", k))
            .sum()
    };
    assert_eq!(deleted(&full), total);

    // Registry checks at each change of kind and around the middle.
    let mut pull_at = std::collections::BTreeSet::from([1, total / 2, total - 1]);
    let mut boundary = 0;
    for kind in ["tag_index_entries", "manifests", "layer_links"] {
        boundary += gc::count(&full, "reclaimable", kind);
        pull_at.insert(boundary);
    }
    eprintln!("{total} deletions; the registry serves the tree stopped after {pull_at:?}");

    for k in 1..=total {
        let ctx = format!("stopped after {k} of {total}");
        let k_text = k.to_string();
        let stop = [("REGSWEEP_FAULT_STOP_AFTER", k_text.as_str())];

        let (_c, copy) = copy_storage(&pristine);
        let stopped = gc::regsweep_json_env(&["gc", "-y", "-m", copy.to_str().unwrap()], &stop);
        let cut_short = k < total;
        assert_eq!(
            stopped["exit_code"],
            i32::from(cut_short),
            "{ctx}: {stopped:#}"
        );
        assert_eq!(stopped["interrupted"], cut_short, "{ctx}");
        assert_eq!(deleted(&stopped), k, "{ctx}");
        let dangling = tree::dangling_links(&copy);
        assert!(
            dangling.is_empty(),
            "{ctx}: links to deleted blobs: {dangling:#?}"
        );
        if pull_at.contains(&k) {
            let (_s, served) = copy_storage(&copy);
            let registry = Registry::start_on(&served);
            for (reference, must) in &live {
                skopeo::pull_complete(&registry, reference, must);
            }
        }
        let rerun = gc::regsweep_json(&["gc", "-y", "-m", copy.to_str().unwrap()]);
        assert_eq!(rerun["exit_code"], 0, "{ctx}: re-run {rerun:#}");
        assert!(
            tree::snapshot(&copy) == final_tree,
            "{ctx}: the re-run does not end where one uninterrupted run ends"
        );

        let (t, copy) = copy_storage(&pristine);
        let trash = t.path().join("trash");
        let trash_arg = trash.to_str().unwrap();
        let args = [
            "gc",
            "-y",
            "-m",
            "--trash",
            trash_arg,
            copy.to_str().unwrap(),
        ];
        let stopped = gc::regsweep_json_env(&args, &stop);
        assert_eq!(deleted(&stopped), k, "{ctx} (trash)");
        let restored = gc::regsweep(&["restore", trash_arg]);
        assert_eq!(restored.code, Some(0), "{ctx}: restore\n{restored}");
        assert!(
            tree::snapshot(&copy) == original,
            "{ctx}: restore does not bring back the original tree"
        );
    }
}
