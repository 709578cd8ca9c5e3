//! The registry reads manifests and links in ways regsweep must match, or a
//! sweep deletes what a pull still needs. Against the real registry
//! (docker-registry 2.8) and skopeo:
//! - Go's `encoding/json` matches keys in any case: an image whose layers
//!   are under `"Layers"` and an index whose children are under
//!   `"Manifests"` are accepted, served and pulled;
//! - a manifest revision link is served by its content: a tag on A whose
//!   revision link names B pulls B.
//!
//! Tests skip (pass, printing `skipping: ...`) when the tools are missing,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::fs;

use registry_support::oci::{Image, Layout, OCI_INDEX, OCI_MANIFEST};
use registry_support::{Registry, gc, require_tools, sha256_digest, skopeo, tree};
use serde_json::{Value, json};
use tempfile::TempDir;

fn layout() -> (TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("layout"));
    (dir, layout)
}

/// Uploads the config and layers of `image` (written to `layout`) to `repo`
/// through the HTTP API, without any manifest.
fn upload_blobs(reg: &Registry, layout: &Layout, repo: &str, image: &Image) {
    for digest in image.blobs() {
        let hex = &digest["sha256:".len()..];
        let bytes = fs::read(layout.dir.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(reg.upload_blob(repo, &bytes), digest);
    }
}

/// Runs `regsweep gc -y [-m]` on the stopped registry's storage; it must
/// succeed.
fn sweep(reg: &Registry, delete_untagged: bool) -> Value {
    let root = reg.root().to_str().unwrap().to_owned();
    let mut args = vec!["gc", "-y"];
    if delete_untagged {
        args.push("-m");
    }
    args.push(&root);
    let report = gc::regsweep_json(&args);
    assert!(
        report["exit_code"] == 0 || report["exit_code"] == 1,
        "{report:#}"
    );
    report
}

/// `regsweep verify` finds no broken tag.
fn assert_verify_sees_no_broken_tag(reg: &Registry) {
    let run = gc::regsweep(&["verify", "--json", reg.root().to_str().unwrap()]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    assert_eq!(report["broken_tags"], json!([]), "{report:#}");
    assert_eq!(report["broken_manifests"], 0, "{report:#}");
}

#[test]
fn layers_and_children_under_keys_in_another_case_survive_both_sweeps() {
    if !require_tools() {
        return;
    }
    let (_dir, layout) = layout();
    let mut reg = Registry::start();
    let repo = "odd/case";

    // An image whose layers are under "Layers" (and config under "CONFIG").
    let own = layout.layer("capital-layers");
    let odd = layout.image(&[&own], "amd64");
    upload_blobs(&reg, &layout, repo, &odd);
    let odd_manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "CONFIG": odd.config.json(),
        "Layers": odd.layers.iter().map(|l| l.json()).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&odd_manifest).unwrap();
    let odd_digest = reg.put_manifest(repo, "capital-layers", OCI_MANIFEST, &bytes);

    // An index whose only child, untagged, is under "Manifests".
    let child_layer = layout.layer("child");
    let child = layout.image(&[&child_layer], "arm64");
    upload_blobs(&reg, &layout, repo, &child);
    let child_bytes = fs::read(
        layout
            .dir
            .join("blobs/sha256")
            .join(&child.digest()["sha256:".len()..]),
    )
    .unwrap();
    assert_eq!(
        reg.put_manifest(repo, &child.digest(), OCI_MANIFEST, &child_bytes),
        child.digest()
    );
    let mut entry = child.manifest.json();
    entry["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "Manifests": [entry]});
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = reg.put_manifest(repo, "capital-manifests", OCI_INDEX, &index_bytes);

    // A manifest list written by hand the same way, by an older client.
    let list = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "MANIFESTS": [entry],
    });
    let list_bytes = serde_json::to_vec(&list).unwrap();
    let list_digest = reg.put_manifest(
        repo,
        "capital-list",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &list_bytes,
    );

    // The registry serves them as pushed, and skopeo pulls every blob.
    let must = |image: &Image| image.all();
    let odd_all = [odd.blobs(), vec![odd_digest.clone()]].concat();
    skopeo::pull_complete(&reg, &format!("{repo}:capital-layers"), &odd_all);
    skopeo::pull_complete(&reg, &format!("{repo}:capital-manifests"), &must(&child));
    skopeo::pull_complete(&reg, &format!("{repo}:capital-list"), &must(&child));
    assert_verify_sees_no_broken_tag(&reg);

    reg.stop();
    sweep(&reg, false);
    sweep(&reg, true);
    let blobs = tree::blob_set(reg.root());
    for digest in [
        odd_all.clone(),
        child.all(),
        vec![index_digest.clone(), list_digest],
    ]
    .concat()
    {
        assert!(blobs.contains(&digest), "{digest} was deleted");
    }
    reg.restart();
    skopeo::pull_complete(&reg, &format!("{repo}:capital-layers"), &odd_all);
    skopeo::pull_complete(&reg, &format!("{repo}:capital-manifests"), &must(&child));
    skopeo::pull_complete(&reg, &format!("{repo}:capital-list"), &must(&child));
    assert_verify_sees_no_broken_tag(&reg);

    // verify reads "Layers" too: without the layer, the tag is broken.
    reg.stop();
    fs::remove_file(tree::blob_data(reg.root(), &odd.layer(0))).unwrap();
    let run = gc::regsweep(&["verify", "--json", reg.root().to_str().unwrap()]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    assert_eq!(
        report["broken_tags"],
        json!([{"repository": repo, "tag": "capital-layers"}]),
        "{report:#}"
    );
}

/// Pushes `image` (written to `layout`) to `repo` through the HTTP API:
/// blobs, then the manifest under `reference` (a tag or its digest).
fn push_http(reg: &Registry, layout: &Layout, repo: &str, reference: &str, image: &Image) {
    upload_blobs(reg, layout, repo, image);
    let bytes = fs::read(
        layout
            .dir
            .join("blobs/sha256")
            .join(&image.digest()["sha256:".len()..]),
    )
    .unwrap();
    reg.put_manifest(repo, reference, OCI_MANIFEST, &bytes);
}

#[test]
fn a_tag_whose_revision_link_names_another_manifest_still_pulls_after_gc() {
    if !require_tools() {
        return;
    }
    let (_dir, layout) = layout();
    let mut reg = Registry::start();
    let repo = "relinked";
    let a = layout.image(&[&layout.layer("a")], "amd64");
    let b = layout.image(&[&layout.layer("b")], "amd64");
    push_http(&reg, &layout, repo, "t", &a);
    push_http(&reg, &layout, repo, &b.digest(), &b);
    // A damaged tree: A's revision link names B.
    let link = tree::revision_dir(reg.root(), repo, &a.digest()).join("link");
    fs::write(&link, b.digest()).unwrap();
    reg.restart();
    skopeo::pull_complete(&reg, &format!("{repo}:t"), &b.all());

    reg.stop();
    let report = sweep(&reg, true);
    let warned = report["warnings"]
        .as_array()
        .expect("warnings[]")
        .iter()
        .any(|w| {
            w["message"]
                .as_str()
                .is_some_and(|m| m.contains(&b.digest()))
        });
    assert!(warned, "the mismatch is reported: {report:#}");
    reg.restart();
    skopeo::pull_complete(&reg, &format!("{repo}:t"), &b.all());
    let blobs = tree::blob_set(reg.root());
    for digest in a.all() {
        assert!(blobs.contains(&digest), "{digest} of A was deleted");
    }
    let verify = gc::regsweep(&["verify", reg.root().to_str().unwrap()]);
    assert!(
        verify.stdout.contains(&b.digest()) || verify.stderr.contains(&b.digest()),
        "verify reports the link: {verify}"
    );
}

/// The premise of trusting `_layers` directory names by default: a layer
/// link whose content names another blob makes the registry send that
/// blob's bytes, which no client accepts for the digest it asked for. No
/// pull through such a link works, so deleting the blob it names breaks no
/// working image.
#[test]
fn a_layer_link_naming_another_blob_serves_nothing_a_client_accepts() {
    if !require_tools() {
        return;
    }
    let (_dir, layout) = layout();
    let mut reg = Registry::start();
    let repo = "layer-relinked";
    let a = layout.image(&[&layout.layer("a")], "amd64");
    let b = layout.image(&[&layout.layer("b")], "amd64");
    push_http(&reg, &layout, repo, "a", &a);
    push_http(&reg, &layout, repo, "b", &b);
    let link = tree::v2(reg.root())
        .join("repositories")
        .join(repo)
        .join("_layers/sha256")
        .join(&a.layer(0)["sha256:".len()..])
        .join("link");
    fs::write(&link, b.layer(0)).unwrap();
    reg.restart();
    let served = reg.get_blob(repo, &a.layer(0));
    assert_eq!(served.status, 200, "the registry serves the link's content");
    assert_eq!(
        sha256_digest(&served.body),
        b.layer(0),
        "it sends B's bytes under A's digest"
    );
    let pulled = skopeo::try_pull(&reg, &format!("{repo}:a"));
    assert!(
        pulled
            .as_ref()
            .is_err_and(|e| e.contains("Digest did not match")),
        "skopeo rejects B's bytes as A: {pulled:?}"
    );
}
