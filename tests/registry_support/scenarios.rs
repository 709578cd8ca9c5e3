//! The content of the end-to-end scenarios, pushed through a real registry
//! on whatever storage it has: each pusher adds to an [`Expect`] what its
//! pushes make live, untagged or garbage. Each keeps to repositories and
//! layout tags of its own, so that several can share one registry.

use serde_json::json;

use super::images::{
    blob, exclusive, image_on, index_on, manifest, push_oci, put_oci_manifest, rebuild_arm64,
    referrer,
};
use super::oci::{Descriptor, Image, Index, Layer, Layout, OCI_CONFIG, OCI_EMPTY, OCI_MANIFEST};
use super::registry::Registry;
use super::scenario::{Expect, Manifest};
use super::skopeo::{Format, push};
use super::{random_hex, sha256_digest};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `app:latest` pushed three times, `app:stable`, an orphan blob linked into
/// `app`, and an upload in progress. Returns the digests `app:latest` named,
/// oldest first.
pub fn retagged_history(
    reg: &Registry,
    layout: &mut Layout,
    base: &Layer,
    e: &mut Expect,
) -> Vec<String> {
    let x: Vec<Image> = (0..3)
        .map(|i| {
            let label = format!("latest-{i}");
            let image = image_on(layout, base, &label);
            push_oci(reg, layout, &label, "app", "latest", &image);
            image
        })
        .collect();
    let y = image_on(layout, base, "stable");
    push_oci(reg, layout, "stable", "app", "stable", &y);
    let orphan = reg.upload_blob("app", random_hex(100).as_bytes());
    reg.start_upload("app", random_hex(100).as_bytes());

    e.tags.extend([
        ("app:latest".into(), x[2].all()),
        ("app:stable".into(), y.all()),
    ]);
    e.live.extend([manifest("app", &x[2]), manifest("app", &y)]);
    e.untagged
        .extend([manifest("app", &x[0]), manifest("app", &x[1])]);
    e.garbage.push(orphan);
    e.untagged_garbage
        .extend([exclusive(&x[0]), exclusive(&x[1])].concat());
    x.iter().map(Image::digest).collect()
}

/// An OCI index pushed twice to `multi:oci` (only arm64 rebuilt, so the
/// amd64 child of the first push is a child of the second too), and a
/// Docker manifest list pushed twice to `multi:docker`.
///
/// Upstream 2.8's `-m` deletes the children of the tagged indexes and what
/// only they use, which is written down here but for `base`: whether it
/// goes too depends on whether anything else tagged uses it.
pub fn multi_arch_pushed_twice(reg: &Registry, layout: &mut Layout, base: &Layer, e: &mut Expect) {
    let i1 = index_on(layout, base, "oci-1");
    let i2 = rebuild_arm64(layout, base, "oci-2", &i1.images[0]);
    for (label, index) in [("oci-1", &i1), ("oci-2", &i2)] {
        assert_eq!(
            push(reg, layout, label, "multi", "oci", Format::Oci),
            index.digest()
        );
    }
    // The same kind of index converted to a Docker manifest list, twice.
    let d1 = index_on(layout, base, "docker-1");
    let d2 = index_on(layout, base, "docker-2");
    let l1 = push(reg, layout, "docker-1", "multi", "docker", Format::V2s2);
    let l1_children = reg.index_children("multi", &l1);
    let l2 = push(reg, layout, "docker-2", "multi", "docker", Format::V2s2);
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

    e.tags.extend([
        ("multi:oci".into(), all_of(&i2.digest(), &c_i2)),
        ("multi:docker".into(), all_of(&l2, &c_l2)),
    ]);
    e.live.extend([
        Manifest::new("multi", &i2.digest(), &[]),
        Manifest::new("multi", &l2, &[]),
    ]);
    e.live.extend(child_manifests(&c_i2));
    e.live.extend(child_manifests(&c_l2));
    e.untagged.extend([
        Manifest::new("multi", &i1.digest(), &[]),
        Manifest::new("multi", &l1, &[]),
    ]);
    e.untagged.extend(child_manifests(&c_i1));
    e.untagged.extend(child_manifests(&c_l1));
    e.untagged_garbage.extend(
        [all_of(&i1.digest(), &c_i1), all_of(&l1, &c_l1)]
            .concat()
            .into_iter()
            .filter(|d| *d != base.digest()),
    );
    e.upstream_m_extra_manifests.extend(
        c_i2.iter()
            .chain(&c_l2)
            .map(|(digest, _)| ("multi".to_string(), digest.clone())),
    );
    e.upstream_m_extra_blobs.extend(above_base(&c_i2));
    e.upstream_m_extra_blobs.extend(above_base(&c_l2));
}

/// The same layers in `a`, `a/b` and deeper repositories (names may hold
/// `.`, `_`, `-`), untagged in one and tagged in another.
pub fn nested_repositories(reg: &Registry, layout: &mut Layout, base: &Layer, e: &mut Expect) {
    let repos = ["a", "a/b", "team/x/y", "org-1/app_name.v2/web"];
    let s = image_on(layout, base, "shared");
    for repo in repos {
        push_oci(reg, layout, "shared", repo, "shared", &s);
    }
    let a1 = image_on(layout, base, "a1");
    let a2 = image_on(layout, base, "a2");
    push_oci(reg, layout, "a1", "a", "t", &a1);
    push_oci(reg, layout, "a2", "a", "t", &a2);
    push_oci(reg, layout, "a1", "a/b", "t", &a1);
    let t1 = image_on(layout, base, "t1");
    let t2 = image_on(layout, base, "t2");
    push_oci(reg, layout, "t1", "team/x/y", "t", &t1);
    push_oci(reg, layout, "t2", "team/x/y", "t", &t2);
    // t2 passes through a/b:tmp, which then moves to the shared image.
    push_oci(reg, layout, "t2", "a/b", "tmp", &t2);
    push_oci(reg, layout, "shared", "a/b", "tmp", &s);

    e.tags
        .extend(repos.iter().map(|r| (format!("{r}:shared"), s.all())));
    e.tags.extend([
        ("a:t".into(), a2.all()),
        ("a/b:t".into(), a1.all()),
        ("a/b:tmp".into(), s.all()),
        ("team/x/y:t".into(), t2.all()),
    ]);
    e.live.extend(repos.iter().map(|r| manifest(r, &s)));
    e.live.extend([
        manifest("a", &a2),
        manifest("a/b", &a1),
        manifest("team/x/y", &t2),
    ]);
    // a1 is untagged in `a` but tagged in `a/b`; t2 untagged in `a/b` but
    // tagged in team/x/y: their blobs stay. Only t1's go.
    e.untagged.extend([
        manifest("a", &a1),
        manifest("team/x/y", &t1),
        manifest("a/b", &t2),
    ]);
    e.untagged_garbage.extend(exclusive(&t1));
}

/// The schema 1 revisions [`schema1_next_to_schema2`] pushed, for checks of
/// how the storage keeps them.
pub struct Schema1Pushes {
    /// `s1:v`'s first and second revision.
    pub revisions: [String; 2],
    /// The config of the first image, which a schema 1 push does not upload.
    pub config_not_uploaded: String,
}

/// Schema 1 (which carries no config blob: only layers) pushed twice to
/// `s1:v`, next to schema 2 (`s2:v`) and OCI (`oci:v`).
pub fn schema1_next_to_schema2(
    reg: &Registry,
    layout: &mut Layout,
    base: &Layer,
    e: &mut Expect,
) -> Schema1Pushes {
    let p1 = image_on(layout, base, "p1");
    let p2 = image_on(layout, base, "p2");
    let q = image_on(layout, base, "q");
    let p1_s1 = push(reg, layout, "p1", "s1", "v", Format::V2s1);
    let p2_s1 = push(reg, layout, "p2", "s1", "v", Format::V2s1);
    let q_s2 = push(reg, layout, "q", "s2", "v", Format::V2s2);
    push_oci(reg, layout, "p2", "oci", "v", &p2);

    e.tags.extend([
        (
            "s1:v".into(),
            p2.layers.iter().map(|l| l.digest.clone()).collect(),
        ),
        ("s2:v".into(), [vec![q_s2.clone()], q.blobs()].concat()),
        ("oci:v".into(), p2.all()),
    ]);
    e.live.extend([
        Manifest::new("s1", &p2_s1, &[base.digest(), p2.layer(1)]),
        Manifest::new("s2", &q_s2, &q.blobs()),
        manifest("oci", &p2),
    ]);
    e.untagged
        .push(Manifest::new("s1", &p1_s1, &[base.digest(), p1.layer(1)]));
    e.untagged_garbage.extend([p1_s1.clone(), p1.layer(1)]);
    Schema1Pushes {
        revisions: [p1_s1, p2_s1],
        config_not_uploaded: p1.config_digest(),
    }
}

/// Whether [`referrers_and_cosign`] pushes its artifact whose only layer is
/// the empty (zero-byte) blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroByteBlob {
    Pushed,
    /// For a registry on S3: 2.8's s3 driver completes the blob's multipart
    /// upload with no part, which S3 refuses as MalformedXML.
    Left,
}

/// In `sig`: OCI 1.1 referrers (pushed by digest) of a tagged image, of a
/// chain of them, of one platform of a tagged index, and of a manifest then
/// deleted through the API; cosign's older tag scheme re-pushed with one
/// more signature; a tagged image with a foreign layer and a config uploaded
/// under its sha512 name; and, unless `zero` says otherwise, a tagged
/// artifact whose only layer is the zero-byte blob.
pub fn referrers_and_cosign(
    reg: &Registry,
    layout: &mut Layout,
    base: &Layer,
    e: &mut Expect,
    zero: ZeroByteBlob,
) {
    const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
    const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    const SPDX: &str = "application/spdx+json";
    const INTOTO: &str = "application/vnd.in-toto+json";
    let repo = "sig";
    let image = image_on(layout, base, "sig-v1");
    let doomed = image_on(layout, base, "sig-v2");
    let multi = index_on(layout, base, "sig-multi");
    push_oci(reg, layout, "sig-v1", repo, "v1", &image);
    push_oci(reg, layout, "sig-v2", repo, "v2", &doomed);
    assert_eq!(
        push(reg, layout, "sig-multi", repo, "multi", Format::Oci),
        multi.digest()
    );

    let payload = |kind: &str| format!(r#"{{"{kind}":"{}"}}"#, random_hex(16)).into_bytes();
    let empty = blob(reg, repo, OCI_EMPTY, b"{}");
    // Referrers, pushed by digest: (digest, payload blob).
    let refer = |artifact_type: &str, media_type: &str, subject: &Descriptor| {
        let payload = blob(reg, repo, media_type, &payload(artifact_type));
        let digest = referrer(reg, repo, artifact_type, &empty, &payload, subject);
        (digest, payload.digest)
    };
    let sig = refer(SIG, SIMPLESIGNING, &image.manifest);
    let sbom = refer(SPDX, SPDX, &image.manifest);
    let sbom_desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: sbom.0.clone(),
        size: reg.get_manifest(repo, &sbom.0).body.len() as u64,
    };
    // A signature of the SBOM: live through a chain of subjects.
    let sbom_sig = refer(SIG, SIMPLESIGNING, &sbom_desc);
    // An attestation of one platform of the tagged index.
    let child_att = refer(INTOTO, INTOTO, &multi.images[0].manifest);
    let dead_sig = refer(SIG, SIMPLESIGNING, &doomed.manifest);
    assert_eq!(reg.delete_manifest(repo, &doomed.digest()), 202);
    assert_eq!(
        reg.manifest_status(repo, "v2"),
        404,
        "deleting a manifest untags it"
    );

    // cosign's older scheme: a tag named after the image digest, re-pushed
    // with one more signature layer each time.
    let cosign_tag = format!(
        "sha256-{}.sig",
        image.digest().trim_start_matches("sha256:")
    );
    let s1 = blob(reg, repo, SIMPLESIGNING, &payload("critical"));
    let s2 = blob(reg, repo, SIMPLESIGNING, &payload("critical"));
    let cosign = |layers: &[&Descriptor]| {
        let config = blob(reg, repo, OCI_CONFIG, &payload("rootfs"));
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(|l| l.json()).collect::<Vec<_>>(),
        });
        (
            put_oci_manifest(reg, repo, Some(&cosign_tag), body),
            config.digest,
        )
    };
    let (c1, c1_config) = cosign(&[&s1]);
    let (c2, c2_config) = cosign(&[&s1, &s2]);
    assert_eq!(reg.tag_digest(repo, &cosign_tag), c2);

    // A tagged image with a foreign (non-distributable) layer: the blob is
    // not in storage, and that is no reason to warn or to delete anything.
    // Its config goes up under its sha512 name; the manifest names it by
    // sha256, and both links must keep working.
    let foreign_config_bytes = payload("config");
    let foreign_config_512 = reg.upload_blob_sha512(repo, &foreign_config_bytes);
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
        reg,
        repo,
        Some("foreign"),
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": foreign_config.json(),
            "layers": [base.desc.json(), foreign_layer],
        }),
    );

    let artifact = |(digest, payload): &(String, String)| {
        Manifest::new(repo, digest, &[empty.digest.clone(), payload.clone()])
    };
    e.live.extend([
        manifest(repo, &image),
        Manifest::new(repo, &multi.digest(), &[]),
        // Referrers of live manifests stay with -m: they are those images'
        // signatures, SBOMs and attestations.
        artifact(&sig),
        artifact(&sbom),
        artifact(&sbom_sig),
        artifact(&child_att),
        Manifest::new(repo, &c2, &[c2_config, s1.digest.clone(), s2.digest]),
        Manifest::new(
            repo,
            &foreign,
            &[foreign_config.digest, foreign_config_512, base.digest()],
        ),
    ]);
    e.live
        .extend(multi.images.iter().map(|i| manifest(repo, i)));

    // Upstream 2.8 knows nothing of `subject`: -m deletes every untagged
    // referrer and, its index bug, the children of sig:multi with what only
    // they use.
    let referrers = [&sig, &sbom, &sbom_sig, &child_att];
    e.upstream_m_extra_manifests
        .extend(referrers.iter().map(|(d, _)| (repo.to_string(), d.clone())));
    e.upstream_m_extra_manifests
        .extend(multi.images.iter().map(|i| (repo.to_string(), i.digest())));
    e.upstream_m_extra_blobs
        .extend(referrers.iter().flat_map(|(d, p)| [d.clone(), p.clone()]));
    for child in &multi.images {
        e.upstream_m_extra_blobs
            .extend([child.config_digest(), child.layer(1)]);
    }
    match zero {
        ZeroByteBlob::Pushed => {
            // A tagged artifact whose only layer is the empty (zero-byte)
            // blob. It uses the referrers' empty config too, which keeps
            // that from upstream's -m.
            let zero_blob = blob(reg, repo, "text/plain", b"");
            let zero = put_oci_manifest(
                reg,
                repo,
                Some("zero"),
                json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": "text/plain",
                    "config": empty.json(),
                    "layers": [zero_blob.json()],
                }),
            );
            e.live.push(Manifest::new(
                repo,
                &zero,
                &[empty.digest.clone(), zero_blob.digest],
            ));
        }
        // Only the untagged referrers use the empty config then: upstream's
        // -m takes it with them.
        ZeroByteBlob::Left => e.upstream_m_extra_blobs.push(empty.digest.clone()),
    }

    e.tags.extend([
        (format!("{repo}:v1"), image.all()),
        (
            format!("{repo}:multi"),
            [
                vec![multi.digest()],
                multi.images[0].all(),
                multi.images[1].all(),
            ]
            .concat(),
        ),
        (format!("{repo}:{cosign_tag}"), vec![c2.clone()]),
    ]);
    e.untagged.extend([
        // Its subject is gone: with -m nothing keeps it.
        artifact(&dead_sig),
        Manifest::new(repo, &c1, &[c1_config.clone(), s1.digest.clone()]),
    ]);
    e.api_deleted.push((repo.into(), doomed.digest()));
    e.garbage.extend(exclusive(&doomed));
    e.untagged_garbage
        .extend([dead_sig.0.clone(), dead_sig.1.clone(), c1, c1_config]);
}

/// Manifests deleted through the API (`del:t1`'s image, one of `del:t3`'s
/// history, and `del2`'s only one, which leaves `del2` with nothing), while
/// the image of `del:t1` can come back. Returns the deleted revision of
/// `del:t3`'s history, which that tag's index still names.
pub fn deleted_through_the_api(
    reg: &Registry,
    layout: &mut Layout,
    base: &Layer,
    e: &mut Expect,
) -> String {
    let p = image_on(layout, base, "p");
    let q = image_on(layout, base, "q-del");
    let r: Vec<Image> = (0..3)
        .map(|i| image_on(layout, base, &format!("r{i}")))
        .collect();
    push_oci(reg, layout, "p", "del", "t1", &p);
    push_oci(reg, layout, "q-del", "del", "t2", &q);
    for (i, image) in r.iter().enumerate() {
        push_oci(reg, layout, &format!("r{i}"), "del", "t3", image);
    }
    push_oci(reg, layout, "q-del", "del2", "q", &q);
    let deleted = [
        ("del", p.digest()),
        ("del", r[1].digest()),
        ("del2", q.digest()),
    ];
    for (repo, digest) in &deleted {
        assert_eq!(
            reg.delete_manifest(repo, digest),
            202,
            "DELETE {repo}@{digest}"
        );
    }
    assert_eq!(
        reg.manifest_status("del", "t1"),
        404,
        "deleting p untagged t1"
    );

    e.tags
        .extend([("del:t2".into(), q.all()), ("del:t3".into(), r[2].all())]);
    e.live.extend([manifest("del", &q), manifest("del", &r[2])]);
    e.untagged.push(manifest("del", &r[0]));
    e.api_deleted
        .extend(deleted.map(|(repo, digest)| (repo.to_string(), digest)));
    // q stays: del:t2 still has it.
    e.garbage.extend([exclusive(&p), exclusive(&r[1])].concat());
    e.untagged_garbage.extend(exclusive(&r[0]));
    // The deleted image can come back.
    e.repush.push(("p".into(), "del:t1".into(), p.all()));
    r[1].digest()
}
