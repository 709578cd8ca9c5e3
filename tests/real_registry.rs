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

use registry_support::images::{
    blob, exclusive, image_on, index_on, layout, manifest, push_oci, put_oci_manifest,
    rebuild_arm64, referrer,
};
use registry_support::oci::{Descriptor, Image, Index, OCI_CONFIG, OCI_EMPTY, OCI_MANIFEST};
use registry_support::scenario::{Expect, Manifest, check_both_modes, copy_storage};
use registry_support::skopeo::{self, Format, push};
use registry_support::{Registry, gc, random_hex, require_tools, sha256_digest, tree};
use serde_json::json;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn retagged_history_second_tag_and_orphan_blob() {
    if !require_tools() {
        return;
    }
    let reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let x: Vec<Image> = (0..3)
        .map(|i| {
            let label = format!("latest-{i}");
            let image = image_on(&mut layout, &base, &label);
            push_oci(&reg, &layout, &label, "app", "latest", &image);
            image
        })
        .collect();
    let y = image_on(&mut layout, &base, "stable");
    push_oci(&reg, &layout, "stable", "app", "stable", &y);
    let orphan = reg.upload_blob("app", random_hex(100).as_bytes());
    reg.start_upload("app", random_hex(100).as_bytes());
    assert_eq!(tree::uploads(reg.root()).len(), 1, "an upload in progress");

    assert_eq!(
        tree::tag_index(reg.root(), "app", "latest"),
        x.iter().map(Image::digest).collect(),
        "the tag index keeps the history of `latest`"
    );
    let expect = Expect {
        tags: vec![
            ("app:latest".into(), x[2].all()),
            ("app:stable".into(), y.all()),
        ],
        live: vec![manifest("app", &x[2]), manifest("app", &y)],
        untagged: vec![manifest("app", &x[0]), manifest("app", &x[1])],
        garbage: vec![orphan],
        untagged_garbage: [exclusive(&x[0]), exclusive(&x[1])].concat(),
        push_after_repo: "app".into(),
        ..Expect::default()
    };
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

    // An OCI index pushed twice to multi:oci; only arm64 was rebuilt, so
    // the amd64 child of the first push is a child of the second too.
    let i1 = index_on(&mut layout, &base, "oci-1");
    let i2 = rebuild_arm64(&mut layout, &base, "oci-2", &i1.images[0]);
    for (label, index) in [("oci-1", &i1), ("oci-2", &i2)] {
        assert_eq!(
            push(&reg, &layout, label, "multi", "oci", Format::Oci),
            index.digest()
        );
    }
    // The same kind of index converted to a Docker manifest list, twice.
    let d1 = index_on(&mut layout, &base, "docker-1");
    let d2 = index_on(&mut layout, &base, "docker-2");
    let l1 = push(&reg, &layout, "docker-1", "multi", "docker", Format::V2s2);
    let l1_children = reg.index_children("multi", &l1);
    let l2 = push(&reg, &layout, "docker-2", "multi", "docker", Format::V2s2);
    let l2_children = reg.index_children("multi", &l2);

    // Child manifests: (digest as stored, image it was made from).
    let oci_children = |index: &Index| -> Vec<(String, Image)> {
        index
            .images
            .iter()
            .map(|i| (i.digest(), i.clone()))
            .collect()
    };
    // skopeo keeps configs and layers when converting to Docker schema 2,
    // and the order of the children.
    let converted = |children: &[String], from: &Index| -> Vec<(String, Image)> {
        assert_eq!(children.len(), from.images.len());
        for (digest, image) in children.iter().zip(&from.images) {
            let body = reg.get_manifest("multi", digest).body;
            let child: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(child["config"]["digest"], image.config_digest().as_str());
            assert_eq!(child["mediaType"], DOCKER_MANIFEST);
        }
        children
            .iter()
            .cloned()
            .zip(from.images.iter().cloned())
            .collect()
    };
    let c_i2 = oci_children(&i2);
    // The children of the first push that the second did not keep.
    let c_i1: Vec<(String, Image)> = oci_children(&i1)
        .into_iter()
        .filter(|(digest, _)| c_i2.iter().all(|(d, _)| d != digest))
        .collect();
    assert_eq!(c_i1.len(), 1, "only arm64 was replaced");
    let (c_l1, c_l2) = (converted(&l1_children, &d1), converted(&l2_children, &d2));

    let child_manifests = |children: &[(String, Image)]| -> Vec<Manifest> {
        children
            .iter()
            .map(|(digest, image)| Manifest::new("multi", digest, &image.blobs()))
            .collect()
    };
    let all_of = |top: &str, children: &[(String, Image)]| -> Vec<String> {
        let mut v = vec![top.to_string()];
        for (digest, image) in children {
            v.push(digest.clone());
            v.extend(image.blobs());
        }
        v
    };
    // What a child adds above the shared base: config and own layer.
    let above_base = |children: &[(String, Image)]| -> Vec<String> {
        children
            .iter()
            .flat_map(|(_, image)| [image.config_digest(), image.layer(1)])
            .collect()
    };

    let mut live = vec![
        Manifest::new("multi", &i2.digest(), &[]),
        Manifest::new("multi", &l2, &[]),
    ];
    live.extend(child_manifests(&c_i2));
    live.extend(child_manifests(&c_l2));
    let mut untagged = vec![
        Manifest::new("multi", &i1.digest(), &[]),
        Manifest::new("multi", &l1, &[]),
    ];
    untagged.extend(child_manifests(&c_i1));
    untagged.extend(child_manifests(&c_l1));

    // Upstream 2.8 -m treats the children of the tagged indexes as untagged:
    // it deletes their revisions and, since nothing marks below them, their
    // configs, own layers and the base they share.
    let upstream_m_extra_manifests = c_i2
        .iter()
        .chain(&c_l2)
        .map(|(digest, _)| ("multi".to_string(), digest.clone()))
        .collect();
    let mut upstream_m_extra_blobs = above_base(&c_i2);
    upstream_m_extra_blobs.extend(above_base(&c_l2));
    upstream_m_extra_blobs.push(base.digest());

    let expect = Expect {
        tags: vec![
            ("multi:oci".into(), all_of(&i2.digest(), &c_i2)),
            ("multi:docker".into(), all_of(&l2, &c_l2)),
        ],
        live,
        untagged,
        untagged_garbage: [all_of(&i1.digest(), &c_i1), all_of(&l1, &c_l1)]
            .concat()
            .into_iter()
            .filter(|d| *d != base.digest())
            .collect(),
        upstream_m_extra_manifests,
        upstream_m_extra_blobs,
        push_after_repo: "multi".into(),
        ..Expect::default()
    };
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
    // `a` and `a/b` are both repositories; names may hold `.`, `_`, `-`.
    let repos = ["a", "a/b", "team/x/y", "org-1/app_name.v2/web"];

    let s = image_on(&mut layout, &base, "shared");
    for repo in repos {
        push_oci(&reg, &layout, "shared", repo, "shared", &s);
    }
    let a1 = image_on(&mut layout, &base, "a1");
    let a2 = image_on(&mut layout, &base, "a2");
    push_oci(&reg, &layout, "a1", "a", "t", &a1);
    push_oci(&reg, &layout, "a2", "a", "t", &a2);
    push_oci(&reg, &layout, "a1", "a/b", "t", &a1);
    let t1 = image_on(&mut layout, &base, "t1");
    let t2 = image_on(&mut layout, &base, "t2");
    push_oci(&reg, &layout, "t1", "team/x/y", "t", &t1);
    push_oci(&reg, &layout, "t2", "team/x/y", "t", &t2);
    // t2 passes through a/b:tmp, which then moves to the shared image.
    push_oci(&reg, &layout, "t2", "a/b", "tmp", &t2);
    push_oci(&reg, &layout, "shared", "a/b", "tmp", &s);

    let mut tags: Vec<(String, Vec<String>)> = repos
        .iter()
        .map(|r| (format!("{r}:shared"), s.all()))
        .collect();
    tags.extend([
        ("a:t".into(), a2.all()),
        ("a/b:t".into(), a1.all()),
        ("a/b:tmp".into(), s.all()),
        ("team/x/y:t".into(), t2.all()),
    ]);
    let mut live: Vec<Manifest> = repos.iter().map(|r| manifest(r, &s)).collect();
    live.extend([
        manifest("a", &a2),
        manifest("a/b", &a1),
        manifest("team/x/y", &t2),
    ]);
    let expect = Expect {
        tags,
        live,
        // a1 is untagged in `a` but tagged in `a/b`; t2 untagged in `a/b`
        // but tagged in team/x/y: their blobs stay. Only t1's go.
        untagged: vec![
            manifest("a", &a1),
            manifest("team/x/y", &t1),
            manifest("a/b", &t2),
        ],
        untagged_garbage: exclusive(&t1),
        push_after_repo: "team/x/y".into(),
        ..Expect::default()
    };
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
    let p1 = image_on(&mut layout, &base, "p1");
    let p2 = image_on(&mut layout, &base, "p2");
    let q = image_on(&mut layout, &base, "q");
    // Schema 1 carries no config blob: only layers.
    let p1_s1 = push(&reg, &layout, "p1", "s1", "v", Format::V2s1);
    let p2_s1 = push(&reg, &layout, "p2", "s1", "v", Format::V2s1);
    let q_s2 = push(&reg, &layout, "q", "s2", "v", Format::V2s2);
    push_oci(&reg, &layout, "p2", "oci", "v", &p2);
    for digest in [&p1_s1, &p2_s1] {
        let stored = std::fs::read(tree::blob_data(reg.root(), digest)).unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(stored["schemaVersion"], 1, "{digest} is a schema1 manifest");
    }
    assert!(
        !tree::blob_data(reg.root(), &p1.config_digest()).exists(),
        "a schema1 push uploads no config"
    );

    let expect = Expect {
        tags: vec![
            (
                "s1:v".into(),
                p2.layers.iter().map(|l| l.digest.clone()).collect(),
            ),
            ("s2:v".into(), [vec![q_s2.clone()], q.blobs()].concat()),
            ("oci:v".into(), p2.all()),
        ],
        live: vec![
            Manifest::new("s1", &p2_s1, &[base.digest(), p2.layer(1)]),
            Manifest::new("s2", &q_s2, &q.blobs()),
            manifest("oci", &p2),
        ],
        untagged: vec![Manifest::new("s1", &p1_s1, &[base.digest(), p1.layer(1)])],
        untagged_garbage: vec![p1_s1.clone(), p1.layer(1)],
        push_after_repo: "s1".into(),
        ..Expect::default()
    };
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
    let image = image_on(&mut layout, &base, "v1");
    let doomed = image_on(&mut layout, &base, "v2");
    let multi = index_on(&mut layout, &base, "multi");
    push_oci(&reg, &layout, "v1", "app", "v1", &image);
    push_oci(&reg, &layout, "v2", "app", "v2", &doomed);
    assert_eq!(
        push(&reg, &layout, "multi", "app", "multi", Format::Oci),
        multi.digest()
    );

    const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
    const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    const SPDX: &str = "application/spdx+json";
    const INTOTO: &str = "application/vnd.in-toto+json";
    let payload = |kind: &str| format!(r#"{{"{kind}":"{}"}}"#, random_hex(16)).into_bytes();
    let empty = blob(&reg, "app", OCI_EMPTY, b"{}");
    // Referrers (OCI 1.1), pushed by digest: (digest, payload blob).
    let refer = |artifact_type: &str, media_type: &str, subject: &Descriptor| {
        let payload = blob(&reg, "app", media_type, &payload(artifact_type));
        let digest = referrer(&reg, "app", artifact_type, &empty, &payload, subject);
        (digest, payload.digest)
    };
    let sig = refer(SIG, SIMPLESIGNING, &image.manifest);
    let sbom = refer(SPDX, SPDX, &image.manifest);
    let sbom_desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: sbom.0.clone(),
        size: reg.get_manifest("app", &sbom.0).body.len() as u64,
    };
    // A signature of the SBOM: live through a chain of subjects.
    let sbom_sig = refer(SIG, SIMPLESIGNING, &sbom_desc);
    // An attestation of one platform of the tagged index.
    let child_att = refer(INTOTO, INTOTO, &multi.images[0].manifest);
    let dead_sig = refer(SIG, SIMPLESIGNING, &doomed.manifest);
    assert_eq!(reg.delete_manifest("app", &doomed.digest()), 202);
    assert_eq!(
        reg.manifest_status("app", "v2"),
        404,
        "deleting a manifest untags it"
    );

    // cosign's older scheme: a tag named after the image digest, re-pushed
    // with one more signature layer each time.
    let cosign_tag = format!(
        "sha256-{}.sig",
        image.digest().trim_start_matches("sha256:")
    );
    let s1 = blob(&reg, "app", SIMPLESIGNING, &payload("critical"));
    let s2 = blob(&reg, "app", SIMPLESIGNING, &payload("critical"));
    let cosign = |layers: &[&Descriptor]| {
        let config = blob(&reg, "app", OCI_CONFIG, &payload("rootfs"));
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(|l| l.json()).collect::<Vec<_>>(),
        });
        (
            put_oci_manifest(&reg, "app", Some(&cosign_tag), body),
            config.digest,
        )
    };
    let (c1, c1_config) = cosign(&[&s1]);
    let (c2, c2_config) = cosign(&[&s1, &s2]);
    assert_eq!(reg.tag_digest("app", &cosign_tag), c2);

    // A tagged image with a foreign (non-distributable) layer: the blob is
    // not in storage, and that is no reason to warn or to delete anything.
    // Its config goes up under its sha512 name; the manifest names it by
    // sha256, and both links must keep working.
    let foreign_config_bytes = payload("config");
    let foreign_config_512 = reg.upload_blob_sha512("app", &foreign_config_bytes);
    let foreign_config = Descriptor {
        media_type: OCI_CONFIG.into(),
        digest: sha256_digest(&foreign_config_bytes),
        size: foreign_config_bytes.len() as u64,
    };
    let foreign_layer = json!({
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": sha256_digest(random_hex(32).as_bytes()),
        "size": 32,
        "urls": ["https://foreign.example.invalid/layer.tar.gz"],
    });
    let foreign = put_oci_manifest(
        &reg,
        "app",
        Some("foreign"),
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": foreign_config.json(),
            "layers": [base.desc.json(), foreign_layer],
        }),
    );

    // A tagged artifact whose only layer is the empty (zero-byte) blob.
    let zero_blob = blob(&reg, "app", "text/plain", b"");
    let zero = put_oci_manifest(
        &reg,
        "app",
        Some("zero"),
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "text/plain",
            "config": empty.json(),
            "layers": [zero_blob.json()],
        }),
    );

    let artifact = |(digest, payload): &(String, String)| {
        Manifest::new("app", digest, &[empty.digest.clone(), payload.clone()])
    };
    let mut live = vec![
        manifest("app", &image),
        Manifest::new("app", &multi.digest(), &[]),
        // Referrers of live manifests stay with -m: they are those images'
        // signatures, SBOMs and attestations.
        artifact(&sig),
        artifact(&sbom),
        artifact(&sbom_sig),
        artifact(&child_att),
        Manifest::new("app", &c2, &[c2_config, s1.digest.clone(), s2.digest]),
        Manifest::new(
            "app",
            &foreign,
            &[foreign_config.digest, foreign_config_512, base.digest()],
        ),
        Manifest::new("app", &zero, &[empty.digest.clone(), zero_blob.digest]),
    ];
    live.extend(multi.images.iter().map(|i| manifest("app", i)));

    // Upstream 2.8 knows nothing of `subject`: -m deletes every untagged
    // referrer (not the empty config they share: app:zero uses it too) and,
    // its index bug, the children of app:multi with what only they use.
    let referrers = [&sig, &sbom, &sbom_sig, &child_att];
    let mut upstream_m_extra_manifests: Vec<(String, String)> = referrers
        .iter()
        .map(|(d, _)| ("app".to_string(), d.clone()))
        .collect();
    upstream_m_extra_manifests.extend(multi.images.iter().map(|i| ("app".to_string(), i.digest())));
    let mut upstream_m_extra_blobs: Vec<String> = referrers
        .iter()
        .flat_map(|(d, p)| [d.clone(), p.clone()])
        .collect();
    for child in &multi.images {
        upstream_m_extra_blobs.extend([child.config_digest(), child.layer(1)]);
    }

    let expect = Expect {
        tags: vec![
            ("app:v1".into(), image.all()),
            (
                "app:multi".into(),
                [
                    vec![multi.digest()],
                    multi.images[0].all(),
                    multi.images[1].all(),
                ]
                .concat(),
            ),
            (format!("app:{cosign_tag}"), vec![c2.clone()]),
        ],
        live,
        untagged: vec![
            // Its subject is gone: with -m nothing keeps it.
            artifact(&dead_sig),
            Manifest::new("app", &c1, &[c1_config.clone(), s1.digest.clone()]),
        ],
        api_deleted: vec![("app".into(), doomed.digest())],
        garbage: exclusive(&doomed),
        untagged_garbage: vec![
            dead_sig.0.clone(),
            dead_sig.1.clone(),
            c1.clone(),
            c1_config,
        ],
        upstream_m_extra_manifests,
        upstream_m_extra_blobs,
        push_after_repo: "app".into(),
        ..Expect::default()
    };
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
    let p = image_on(&mut layout, &base, "p");
    let q = image_on(&mut layout, &base, "q");
    let r: Vec<Image> = (0..3)
        .map(|i| image_on(&mut layout, &base, &format!("r{i}")))
        .collect();
    push_oci(&reg, &layout, "p", "del", "t1", &p);
    push_oci(&reg, &layout, "q", "del", "t2", &q);
    for (i, image) in r.iter().enumerate() {
        push_oci(&reg, &layout, &format!("r{i}"), "del", "t3", image);
    }
    push_oci(&reg, &layout, "q", "del2", "q", &q);

    for (repo, digest) in [
        ("del", p.digest()),
        ("del", r[1].digest()),
        ("del2", q.digest()),
    ] {
        assert_eq!(
            reg.delete_manifest(repo, &digest),
            202,
            "DELETE {repo}@{digest}"
        );
        let revision = tree::revision_dir(reg.root(), repo, &digest);
        assert!(
            revision.is_dir() && !revision.join("link").exists(),
            "the registry leaves an empty revision directory {}",
            revision.display()
        );
    }
    assert_eq!(
        reg.manifest_status("del", "t1"),
        404,
        "deleting p untagged t1"
    );
    assert!(
        tree::tag_index(reg.root(), "del", "t3").contains(&r[1].digest()),
        "t3's index still names the deleted r1"
    );

    let expect = Expect {
        tags: vec![("del:t2".into(), q.all()), ("del:t3".into(), r[2].all())],
        live: vec![manifest("del", &q), manifest("del", &r[2])],
        untagged: vec![manifest("del", &r[0])],
        api_deleted: vec![
            ("del".into(), p.digest()),
            ("del".into(), r[1].digest()),
            ("del2".into(), q.digest()),
        ],
        // q stays: del:t2 still has it.
        garbage: [exclusive(&p), exclusive(&r[1])].concat(),
        untagged_garbage: exclusive(&r[0]),
        // del2 has neither tags nor revisions left.
        push_after_repo: "del2".into(),
        // The deleted image can come back.
        repush: vec![("p".into(), "del:t1".into(), p.all())],
        ..Expect::default()
    };
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
