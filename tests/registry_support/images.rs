//! Building and pushing the images of the end-to-end scenarios: images on a
//! shared base layer, multi-arch indexes, blobs and OCI manifests put
//! through the API, and what each adds to the storage.

use serde_json::json;
use tempfile::TempDir;

use super::oci::{Descriptor, Image, Index, Layer, Layout, OCI_MANIFEST};
use super::registry::Registry;
use super::scenario::Manifest;
use super::sha256_digest;
use super::skopeo::{Format, push};

/// A new OCI layout in a tempdir (kept while the `TempDir` lives).
pub fn layout() -> (TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("layout"));
    (dir, layout)
}

/// An amd64 image `base` + a new layer `label`, tagged `label` in the layout.
pub fn image_on(layout: &mut Layout, base: &Layer, label: &str) -> Image {
    let own = layout.layer(label);
    let image = layout.image(&[base, &own], "amd64");
    layout.tag(label, &image.manifest);
    image
}

/// Pushes the layout's `label` as-is (OCI) to `repo:tag`, checking the
/// registry stored the digest written to the layout.
pub fn push_oci(
    reg: &Registry,
    layout: &Layout,
    label: &str,
    repo: &str,
    tag: &str,
    image: &Image,
) {
    let digest = push(reg, layout, label, repo, tag, Format::Oci);
    assert_eq!(digest, image.digest(), "OCI push keeps the manifest digest");
}

/// What only `image` (on a shared base) adds: its manifest, config and
/// layers above the base.
pub fn exclusive(image: &Image) -> Vec<String> {
    let mut v = vec![image.digest(), image.config_digest()];
    v.extend(image.layers[1..].iter().map(|l| l.digest.clone()));
    v
}

pub fn manifest(repo: &str, image: &Image) -> Manifest {
    Manifest::new(repo, &image.digest(), &image.blobs())
}

/// A two-platform index whose images share `base`, tagged `label`.
pub fn index_on(layout: &mut Layout, base: &Layer, label: &str) -> Index {
    let amd = layout.layer(&format!("{label}-amd64"));
    let a = layout.image(&[base, &amd], "amd64");
    rebuild_arm64(layout, base, label, &a)
}

/// An index of `amd64` and a new arm64 image on `base`, tagged `label`.
pub fn rebuild_arm64(layout: &mut Layout, base: &Layer, label: &str, amd64: &Image) -> Index {
    let arm = layout.layer(&format!("{label}-arm64"));
    let b = layout.image(&[base, &arm], "arm64");
    let index = layout.index(&[amd64, &b]);
    layout.tag(label, &index.manifest);
    index
}

/// Uploads `bytes` to `repo` and describes it as `media_type`.
pub fn blob(reg: &Registry, repo: &str, media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: reg.upload_blob(repo, bytes),
        size: bytes.len() as u64,
    }
}

/// PUTs an OCI manifest (`reference`: a digest is computed when `None`).
pub fn put_oci_manifest(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    body: serde_json::Value,
) -> String {
    let bytes = serde_json::to_vec(&body).unwrap();
    let reference = match tag {
        Some(tag) => tag.to_string(),
        None => sha256_digest(&bytes),
    };
    reg.put_manifest(repo, &reference, OCI_MANIFEST, &bytes)
}

/// An OCI 1.1 artifact (empty config, one layer) about `subject`.
pub fn referrer(
    reg: &Registry,
    repo: &str,
    artifact_type: &str,
    empty: &Descriptor,
    payload: &Descriptor,
    subject: &Descriptor,
) -> String {
    put_oci_manifest(
        reg,
        repo,
        None,
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.json(),
            "layers": [payload.json()],
            "subject": subject.json(),
        }),
    )
}
