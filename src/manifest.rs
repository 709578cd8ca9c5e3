//! Manifest bytes → the digests they reference, for every manifest kind.
//!
//! Parsing is deliberately generous about what counts as a reference: every
//! descriptor field any known kind uses (`config`, `layers`, `blobs`,
//! `fsLayers`, `manifests`) is followed whatever the declared kind, so an odd
//! manifest can only make more things live, never fewer. A top-level media type
//! regsweep does not know is an error: such a manifest might reference blobs
//! through fields it cannot see, and the caller keeps everything it could.

use std::borrow::Cow;

use serde::Deserialize;

use crate::digest::Digest;

/// Manifests larger than this are not read: the registry refuses to accept
/// manifests over 4 MiB, so a bigger one is damage, not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Media types, as the registry and clients write them.
pub mod media_types {
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list (multi-arch).
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1, signed.
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// Docker schema 1, unsigned.
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// OCI image manifest (also used by artifacts).
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// The withdrawn OCI artifact manifest (image-spec 1.1 release candidates).
    pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
}

/// What kind of manifest a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image (Docker schema 2 or OCI) or an OCI artifact.
    Image,
    /// A Docker manifest list or OCI index.
    Index,
    /// Docker schema 1, signed or not.
    Schema1,
}

/// The references of one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The kind, as declared or inferred.
    pub kind: ManifestKind,
    /// Blobs it needs: config, layers, schema1 `fsLayers`, artifact `blobs`.
    pub blobs: Vec<Digest>,
    /// Blobs among `blobs` that are foreign layers (descriptor with `urls`):
    /// they need not be in storage.
    pub foreign: Vec<Digest>,
    /// Child manifests of an index or manifest list.
    pub children: Vec<Digest>,
    /// The manifest this one is about (signatures, SBOMs, attestations).
    pub subject: Option<Digest>,
}

/// Why a manifest could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("not a valid manifest: {0}")]
    Invalid(String),
    /// A media type regsweep does not know how to follow.
    #[error("unknown manifest media type `{0}`")]
    UnknownMediaType(String),
    /// A schema version other than 1 or 2.
    #[error("unknown manifest schemaVersion {0}")]
    UnknownSchemaVersion(u64),
    /// A reference that is not a sha256 digest.
    #[error("unsupported digest `{0}` (only sha256 is followed)")]
    UnsupportedDigest(String),
}

#[derive(Deserialize)]
struct RawManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType", borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    config: Option<RawDescriptor<'a>>,
    #[serde(borrow, default)]
    layers: Vec<RawDescriptor<'a>>,
    #[serde(borrow, default)]
    blobs: Vec<RawDescriptor<'a>>,
    #[serde(borrow, default)]
    manifests: Vec<RawDescriptor<'a>>,
    #[serde(borrow)]
    subject: Option<RawDescriptor<'a>>,
    #[serde(rename = "fsLayers", borrow, default)]
    fs_layers: Vec<RawFsLayer<'a>>,
}

#[derive(Deserialize)]
struct RawDescriptor<'a> {
    #[serde(borrow)]
    digest: Cow<'a, str>,
    #[serde(default)]
    urls: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawFsLayer<'a> {
    #[serde(rename = "blobSum", borrow)]
    blob_sum: Cow<'a, str>,
}

fn reference(text: &str) -> Result<Digest, ManifestError> {
    Digest::parse(text).ok_or_else(|| ManifestError::UnsupportedDigest(text.to_owned()))
}

/// Parses manifest bytes into their references.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    use media_types::*;

    let raw: RawManifest<'_> =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let kind = match raw.media_type.as_deref() {
        Some(DOCKER_MANIFEST | OCI_MANIFEST | OCI_ARTIFACT) => ManifestKind::Image,
        Some(DOCKER_LIST | OCI_INDEX) => ManifestKind::Index,
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => ManifestKind::Schema1,
        Some(other) => return Err(ManifestError::UnknownMediaType(other.to_owned())),
        None => match raw.schema_version {
            Some(1) => ManifestKind::Schema1,
            Some(2) if !raw.manifests.is_empty() => ManifestKind::Index,
            Some(2) if raw.config.is_some() || !raw.layers.is_empty() || !raw.blobs.is_empty() => {
                ManifestKind::Image
            }
            Some(2) => {
                return Err(ManifestError::Invalid(
                    "schemaVersion 2 without mediaType, config, layers or manifests".into(),
                ));
            }
            Some(v) => return Err(ManifestError::UnknownSchemaVersion(v)),
            None => {
                return Err(ManifestError::Invalid(
                    "no schemaVersion or mediaType".into(),
                ));
            }
        },
    };

    let mut blobs = Vec::with_capacity(raw.layers.len() + raw.fs_layers.len() + 1);
    let mut foreign = Vec::new();
    for descriptor in raw.config.iter().chain(&raw.layers).chain(&raw.blobs) {
        let digest = reference(&descriptor.digest)?;
        if descriptor.urls.is_some() {
            foreign.push(digest);
        }
        blobs.push(digest);
    }
    for layer in &raw.fs_layers {
        blobs.push(reference(&layer.blob_sum)?);
    }
    blobs.sort_unstable();
    blobs.dedup();
    let children = raw
        .manifests
        .iter()
        .map(|d| reference(&d.digest))
        .collect::<Result<Vec<_>, _>>()?;
    let subject = raw.subject.map(|d| reference(&d.digest)).transpose()?;
    Ok(Manifest {
        kind,
        blobs,
        foreign,
        children,
        subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    fn descriptor(n: u8) -> String {
        format!(r#"{{"mediaType":"x","size":1,"digest":"{}"}}"#, d(n))
    }

    #[test]
    fn docker_schema2_references_config_and_layers() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{},{}]}}"#,
            media_types::DOCKER_MANIFEST,
            descriptor(1),
            descriptor(2),
            descriptor(3)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs, vec![d(1), d(2), d(3)]);
        assert!(m.children.is_empty() && m.subject.is_none());
    }

    #[test]
    fn oci_artifact_with_subject_and_any_layer_media_type() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config":{},"layers":[{}],"subject":{}}}"#,
            media_types::OCI_MANIFEST,
            descriptor(1),
            descriptor(2),
            descriptor(9)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![d(1), d(2)]);
        assert_eq!(m.subject, Some(d(9)));
    }

    #[test]
    fn index_references_children_and_subject() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}],"subject":{}}}"#,
            media_types::OCI_INDEX,
            descriptor(4),
            descriptor(5),
            descriptor(6)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.children, vec![d(4), d(5)]);
        assert_eq!(m.subject, Some(d(6)));
        assert!(m.blobs.is_empty());
    }

    #[test]
    fn docker_manifest_list_without_media_type_is_inferred_from_manifests() {
        let json = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, descriptor(4));
        assert_eq!(parse(json.as_bytes()).unwrap().kind, ManifestKind::Index);
        let json = format!(
            r#"{{"schemaVersion":2,"config":{},"layers":[]}}"#,
            descriptor(1)
        );
        assert_eq!(parse(json.as_bytes()).unwrap().kind, ManifestKind::Image);
    }

    #[test]
    fn schema1_signed_references_fs_layers_deduplicated() {
        let json = format!(
            r#"{{"schemaVersion":1,"name":"r","tag":"t","architecture":"amd64",
            "fsLayers":[{{"blobSum":"{a}"}},{{"blobSum":"{b}"}},{{"blobSum":"{a}"}}],
            "history":[],"signatures":[{{"header":{{}},"signature":"x","protected":"y"}}]}}"#,
            a = d(7),
            b = d(8)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Schema1);
        assert_eq!(m.blobs, vec![d(7), d(8)]);
    }

    #[test]
    fn foreign_layers_are_marked() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":5,"digest":"{}","urls":["https://example.invalid/x"]}}]}}"#,
            media_types::DOCKER_MANIFEST,
            descriptor(1),
            d(2)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.foreign, vec![d(2)]);
        assert_eq!(m.blobs, vec![d(1), d(2)]);
    }

    #[test]
    fn withdrawn_oci_artifact_manifest_references_blobs() {
        let json = format!(
            r#"{{"mediaType":"{}","artifactType":"x","blobs":[{}],"subject":{}}}"#,
            media_types::OCI_ARTIFACT,
            descriptor(3),
            descriptor(4)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.blobs, vec![d(3)]);
        assert_eq!(m.subject, Some(d(4)));
    }

    #[test]
    fn damage_and_unknowns_are_errors_not_empty_manifests() {
        assert!(matches!(parse(b""), Err(ManifestError::Invalid(_))));
        assert!(matches!(
            parse(b"{\"schemaVersion\":2,"),
            Err(ManifestError::Invalid(_))
        ));
        assert!(matches!(parse(b"[1,2]"), Err(ManifestError::Invalid(_))));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#),
            Err(ManifestError::UnknownMediaType(_))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":3}"#),
            Err(ManifestError::UnknownSchemaVersion(3))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":2}"#),
            Err(ManifestError::Invalid(_))
        ));
        let sha512 = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"digest":"sha512:{}"}},"layers":[]}}"#,
            media_types::OCI_MANIFEST,
            "a".repeat(128)
        );
        assert!(matches!(
            parse(sha512.as_bytes()),
            Err(ManifestError::UnsupportedDigest(_))
        ));
    }
}
