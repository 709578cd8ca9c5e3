//! Manifest bytes → the digests they reference, for every manifest kind.
//!
//! The registry reads manifests with Go's `encoding/json`, and so does every
//! client it serves them to. That reader matches an object key to a field
//! without regard to case (Unicode simple folding: `ſ` is an `s`, the Kelvin
//! sign `K` a `k`), and of duplicate keys the last one wins. A manifest whose
//! layers are under `"Layers"` is pushed, served and pulled like any other.
//!
//! regsweep reads every key that folds to a known field, at every level, and
//! every duplicate (not only the last): the union of every reading the
//! registry or a client could take, so an odd manifest can only make more
//! things live, never fewer. Every descriptor field any known kind uses
//! (`config`, `layers`, `blobs`, `fsLayers`, `manifests`) is followed whatever
//! the declared kind. A media type regsweep does not know is an error, as is
//! a known field of the wrong type: such a manifest might reference blobs
//! through fields it cannot see, and the caller keeps everything it could.
//!
//! The reader walks the JSON once with serde's visitors; keys are compared in
//! place (no allocation per key) and digests parsed as they are read.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestKind {
    /// An image (Docker schema 2 or OCI) or an OCI artifact.
    #[default]
    Image,
    /// A Docker manifest list or OCI index.
    Index,
    /// Docker schema 1, signed or not.
    Schema1,
}

/// The references of one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The kind, as the registry reads it (see [`parse`]).
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
    /// Some reading takes it for Docker schema1, the only kind with
    /// `signatures/` beside its revision.
    pub schema1: bool,
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

/// Whether the object key `key` names the field `name` (ASCII) as Go's
/// `encoding/json` decides it: ASCII letters in any case, and the two
/// non-ASCII runes whose simple case folding reaches an ASCII letter, `ſ`
/// (U+017F, an `s`) and the Kelvin sign (U+212A, a `k`).
fn go_key_matches(key: &str, name: &str) -> bool {
    // Each rune of `key` stands for one byte of `name` and is 1 to 3 bytes long.
    if key.len() < name.len() || key.len() > 3 * name.len() {
        return false;
    }
    // Most keys differ from most names in their first byte.
    if let (Some(k), Some(n)) = (key.as_bytes().first(), name.as_bytes().first()) {
        if k.is_ascii() && !k.eq_ignore_ascii_case(n) {
            return false;
        }
    }
    let mut runes = key.chars();
    for expected in name.bytes() {
        let matches = match runes.next() {
            Some(c) if c.is_ascii() => (c as u8).eq_ignore_ascii_case(&expected),
            Some('\u{17f}') => expected.eq_ignore_ascii_case(&b's'),
            Some('\u{212a}') => expected.eq_ignore_ascii_case(&b'k'),
            _ => false,
        };
        if !matches {
            return false;
        }
    }
    runes.next().is_none()
}

/// The fields read at the top of a manifest, by position.
const TOP_FIELDS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "blobs",
    "manifests",
    "subject",
    "fsLayers",
];
const SCHEMA_VERSION: usize = 0;
const MEDIA_TYPE: usize = 1;
const CONFIG: usize = 2;
const LAYERS: usize = 3;
const BLOBS: usize = 4;
const MANIFESTS: usize = 5;
const SUBJECT: usize = 6;
const FS_LAYERS: usize = 7;

/// The fields read in a descriptor.
const DESCRIPTOR_FIELDS: &[&str] = &["digest", "urls"];
/// The field read in a schema1 `fsLayers` entry.
const FS_LAYER_FIELDS: &[&str] = &["blobSum"];

/// An object key: the position of the field in `.0` it names, if any.
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| go_key_matches(key, name)))
    }
}

/// A top-level media type, as one reading takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaType {
    /// `""`: the registry reads it as no media type.
    Empty,
    Known(ManifestKind),
    Unknown(String),
}

/// The kind of manifest a response's `Content-Type` says was served
/// (parameters after `;` ignored); `None` for a type that is not a
/// manifest's.
pub fn kind_of_content_type(content_type: &str) -> Option<ManifestKind> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match media_type(essence) {
        MediaType::Known(kind) => Some(kind),
        MediaType::Empty | MediaType::Unknown(_) => None,
    }
}

fn media_type(text: &str) -> MediaType {
    use media_types::*;
    match text {
        "" => MediaType::Empty,
        DOCKER_MANIFEST | OCI_MANIFEST | OCI_ARTIFACT => MediaType::Known(ManifestKind::Image),
        DOCKER_LIST | OCI_INDEX => MediaType::Known(ManifestKind::Index),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => MediaType::Known(ManifestKind::Schema1),
        other => MediaType::Unknown(other.to_owned()),
    }
}

/// A string value turned into what it means as it is read, so that no
/// value needs to be kept (or copied when it has escapes).
struct StrValue<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for StrValue<F> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for StrValue<F> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some((self.0)(text)))
    }
}

fn reference(text: &str) -> Result<Digest, ManifestError> {
    Digest::parse(text).ok_or_else(|| ManifestError::UnsupportedDigest(text.to_owned()))
}

/// Where a descriptor's digest goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Blob,
    Child,
    Subject,
}

/// Everything every reading of one manifest references.
#[derive(Default)]
struct Reading {
    schema_versions: Vec<u64>,
    media_types: Vec<MediaType>,
    /// A `manifests` field that is not null: Go's reading without a media
    /// type takes such a manifest for an index.
    has_manifests: bool,
    /// A `config`, `layers` or `blobs` field that is not null.
    has_image_fields: bool,
    blobs: Vec<Digest>,
    foreign: Vec<Digest>,
    children: Vec<Digest>,
    subjects: Vec<Digest>,
    /// The first reference that is not a sha256 digest, or descriptor
    /// without a digest.
    error: Option<ManifestError>,
}

impl Reading {
    fn fail(&mut self, error: ManifestError) {
        self.error.get_or_insert(error);
    }

    fn add(&mut self, role: Role, digest: Digest, foreign: bool) {
        match role {
            Role::Blob => {
                self.blobs.push(digest);
                if foreign {
                    self.foreign.push(digest);
                }
            }
            Role::Child => self.children.push(digest),
            Role::Subject => self.subjects.push(digest),
        }
    }
}

/// The whole manifest: an object.
struct Top<'r>(&'r mut Reading);

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reading = self.0;
        while let Some(field) = map.next_key_seed(Key(TOP_FIELDS))? {
            match field {
                Some(SCHEMA_VERSION) => {
                    if let Some(version) = map.next_value::<Option<u64>>()? {
                        reading.schema_versions.push(version);
                    }
                }
                Some(MEDIA_TYPE) => {
                    if let Some(media) = map.next_value_seed(StrValue(media_type))? {
                        reading.media_types.push(media);
                    }
                }
                Some(CONFIG) => {
                    let seen = map.next_value_seed(Descriptor(reading, Role::Blob))?;
                    reading.has_image_fields |= seen;
                }
                Some(SUBJECT) => {
                    map.next_value_seed(Descriptor(reading, Role::Subject))?;
                }
                Some(field @ (LAYERS | BLOBS | MANIFESTS)) => {
                    let role = if field == MANIFESTS {
                        Role::Child
                    } else {
                        Role::Blob
                    };
                    let seen = map.next_value_seed(List(reading, Item::Descriptor(role)))?;
                    if field == MANIFESTS {
                        reading.has_manifests |= seen;
                    } else {
                        reading.has_image_fields |= seen;
                    }
                }
                Some(FS_LAYERS) => {
                    map.next_value_seed(List(reading, Item::FsLayer))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A descriptor (or null) whose digests take `.1`; its value says whether
/// it was there (not null).
struct Descriptor<'r>(&'r mut Reading, Role);

impl<'de> DeserializeSeed<'de> for Descriptor<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Descriptor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a descriptor object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let Descriptor(reading, role) = self;
        // Every `digest` key of the descriptor, duplicates included; the
        // first needs no allocation.
        let mut first: Option<Result<Digest, ManifestError>> = None;
        let mut more: Vec<Result<Digest, ManifestError>> = Vec::new();
        let mut foreign = false;
        while let Some(field) = map.next_key_seed(Key(DESCRIPTOR_FIELDS))? {
            match field {
                Some(0) => {
                    if let Some(digest) = map.next_value_seed(StrValue(reference))? {
                        match first {
                            None => first = Some(digest),
                            Some(_) => more.push(digest),
                        }
                    }
                }
                Some(_) => foreign |= map.next_value::<Option<IgnoredAny>>()?.is_some(),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if first.is_none() {
            reading.fail(ManifestError::Invalid("a descriptor has no digest".into()));
        }
        for digest in first.into_iter().chain(more) {
            match digest {
                Ok(digest) => reading.add(role, digest, foreign),
                Err(e) => reading.fail(e),
            }
        }
        Ok(true)
    }
}

/// What a list holds.
#[derive(Clone, Copy)]
enum Item {
    Descriptor(Role),
    /// A schema1 `{"blobSum": <digest>}`.
    FsLayer,
}

/// A list (or null) of `.1`; its value says whether it was there.
struct List<'r>(&'r mut Reading, Item);

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let List(reading, item) = self;
        loop {
            let more = match item {
                Item::Descriptor(role) => seq.next_element_seed(Descriptor(reading, role))?,
                Item::FsLayer => seq.next_element_seed(FsLayer(reading))?,
            };
            match more {
                None => return Ok(true),
                // A null entry is a descriptor without a digest.
                Some(false) => {
                    reading.fail(ManifestError::Invalid("a list entry is null".into()));
                }
                Some(true) => {}
            }
        }
    }
}

/// A schema1 `fsLayers` entry (or null).
struct FsLayer<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for FsLayer<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FsLayer<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an fsLayers entry or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let reading = self.0;
        let mut found = false;
        while let Some(field) = map.next_key_seed(Key(FS_LAYER_FIELDS))? {
            match field {
                Some(_) => {
                    if let Some(digest) = map.next_value_seed(StrValue(reference))? {
                        found = true;
                        match digest {
                            Ok(digest) => reading.add(Role::Blob, digest, false),
                            Err(e) => reading.fail(e),
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !found {
            reading.fail(ManifestError::Invalid(
                "an fsLayers entry has no blobSum".into(),
            ));
        }
        Ok(true)
    }
}

/// Parses manifest bytes into their references.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let mut reading = Reading::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer
        .deserialize_map(Top(&mut reading))
        .and_then(|()| deserializer.end())
        .map_err(|e| ManifestError::Invalid(e.to_string()))?;
    if let Some(error) = reading.error {
        return Err(error);
    }
    let (kind, schema1) = kind(&reading)?;

    let mut blobs = reading.blobs;
    blobs.sort_unstable();
    blobs.dedup();
    let mut foreign = reading.foreign;
    foreign.sort_unstable();
    foreign.dedup();
    let mut subjects = reading.subjects;
    subjects.sort_unstable();
    subjects.dedup();
    if subjects.len() > 1 {
        // Which image is it about? Keeping both is not enough: a subject
        // keeps nothing alive, it makes this manifest live with its target.
        return Err(ManifestError::Invalid(
            "duplicate subject keys name different manifests".into(),
        ));
    }
    Ok(Manifest {
        kind,
        blobs,
        foreign,
        children: reading.children,
        subject: subjects.pop(),
        schema1,
    })
}

/// The kind as the registry reads it (distribution's manifest store: the
/// last `schemaVersion` and `mediaType` keys win; version 1 is schema1;
/// version 2 goes by media type, and without one it is an index when it has
/// `manifests`, else an image), and whether any reading of the duplicate
/// keys takes it for schema1. A media type or version no reading can
/// follow is an error.
fn kind(reading: &Reading) -> Result<(ManifestKind, bool), ManifestError> {
    let mut known = Vec::new();
    for media in &reading.media_types {
        match media {
            MediaType::Known(kind) => known.push(*kind),
            MediaType::Empty => {}
            MediaType::Unknown(text) => {
                return Err(ManifestError::UnknownMediaType(text.clone()));
            }
        }
    }
    let schema1 = known.contains(&ManifestKind::Schema1) || reading.schema_versions.contains(&1);
    if let Some(last) = known.last() {
        let kind = match reading.media_types.last() {
            Some(MediaType::Known(kind)) => *kind,
            _ => *last,
        };
        return Ok((kind, schema1));
    }
    if let Some(v) = reading.schema_versions.iter().find(|v| !matches!(v, 1 | 2)) {
        return Err(ManifestError::UnknownSchemaVersion(*v));
    }
    let kind = match reading.schema_versions.last() {
        None => {
            return Err(ManifestError::Invalid(
                "no schemaVersion or mediaType".into(),
            ));
        }
        Some(1) => ManifestKind::Schema1,
        Some(_) if reading.has_manifests => ManifestKind::Index,
        Some(_) if reading.has_image_fields => ManifestKind::Image,
        Some(_) => {
            return Err(ManifestError::Invalid(
                "schemaVersion 2 without mediaType, config, layers or manifests".into(),
            ));
        }
    };
    Ok((kind, schema1))
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

    #[test]
    fn keys_match_as_go_encoding_json_folds_them() {
        for (key, name) in [
            ("layers", "layers"),
            ("Layers", "layers"),
            ("LAYERS", "layers"),
            ("mediatype", "mediaType"),
            ("ſchemaVersion", "schemaVersion"),
            ("fſLayers", "fsLayers"),
            ("blobſum", "blobSum"),
            ("\u{212a}", "k"),
            ("ma\u{212a}e", "make"),
        ] {
            assert!(go_key_matches(key, name), "{key} names {name}");
        }
        for (key, name) in [
            ("layer", "layers"),
            ("layerss", "layers"),
            ("lay-rs", "layers"),
            ("layérs", "layers"),
            ("ſ", "k"),
            ("\u{212a}", "s"),
            // U+0130 and U+0131 fold to no ASCII letter in simple folding.
            ("\u{130}", "i"),
            ("\u{131}", "i"),
        ] {
            assert!(!go_key_matches(key, name), "{key} does not name {name}");
        }
    }

    #[test]
    fn fields_under_keys_in_any_case_are_references() {
        let json = format!(
            r#"{{"SchemaVersion":2,"MEDIATYPE":"{}","Config":{},"Layers":[{{"DIGEST":"{}","URLs":["x"]}}],"ſubject":{}}}"#,
            media_types::OCI_MANIFEST,
            descriptor(1),
            d(2),
            descriptor(9)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs, vec![d(1), d(2)]);
        assert_eq!(m.foreign, vec![d(2)]);
        assert_eq!(m.subject, Some(d(9)));

        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","Manifests":[{}],"MANIFESTS":[{}]}}"#,
            media_types::OCI_INDEX,
            descriptor(4),
            descriptor(5)
        );
        assert_eq!(parse(json.as_bytes()).unwrap().children, vec![d(4), d(5)]);

        let json = format!(
            r#"{{"ſchemaVersion":1,"FSLAYERS":[{{"BlobSum":"{}"}}]}}"#,
            d(7)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!((m.kind, m.schema1), (ManifestKind::Schema1, true));
        assert_eq!(m.blobs, vec![d(7)]);
    }

    #[test]
    fn every_duplicate_key_is_read_not_only_the_last() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}],"layers":[{}],"Config":{},"layers":null}}"#,
            media_types::DOCKER_MANIFEST,
            descriptor(1),
            descriptor(2),
            descriptor(3),
            descriptor(4)
        );
        assert_eq!(
            parse(json.as_bytes()).unwrap().blobs,
            vec![d(1), d(2), d(3), d(4)]
        );
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","layers":[{{"digest":"{}","Digest":"{}"}}]}}"#,
            media_types::OCI_MANIFEST,
            d(5),
            d(6)
        );
        assert_eq!(parse(json.as_bytes()).unwrap().blobs, vec![d(5), d(6)]);
    }

    #[test]
    fn an_ambiguous_kind_is_read_every_way() {
        // Go reads the last mediaType (an image); a reading of the first
        // takes it for a manifest list. Children and layers are both
        // followed, and schema1 signatures are looked for.
        let json = format!(
            r#"{{"schemaVersion":1,"mediaType":"{}","MediaType":"{}","manifests":[{}],"layers":[{}],"schemaVersion":2}}"#,
            media_types::DOCKER_LIST,
            media_types::OCI_MANIFEST,
            descriptor(4),
            descriptor(2)
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image, "the registry's reading");
        assert_eq!(m.children, vec![d(4)]);
        assert_eq!(m.blobs, vec![d(2)]);
        assert!(m.schema1, "schemaVersion 1 is one reading");
        // An empty mediaType is no media type to the registry: an index
        // when it has manifests.
        let json = r#"{"schemaVersion":2,"mediaType":"","manifests":[]}"#;
        assert_eq!(parse(json.as_bytes()).unwrap().kind, ManifestKind::Index);
        // One reading the registry cannot follow makes it an error.
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/x-odd","MediaType":"{}","layers":[]}}"#,
            media_types::OCI_MANIFEST
        );
        assert!(matches!(
            parse(json.as_bytes()),
            Err(ManifestError::UnknownMediaType(_))
        ));
        let json = format!(
            r#"{{"schemaVersion":2,"SchemaVersion":3,"manifests":[{}]}}"#,
            descriptor(4)
        );
        assert!(matches!(
            parse(json.as_bytes()),
            Err(ManifestError::UnknownSchemaVersion(3))
        ));
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","subject":{},"Subject":{}}}"#,
            media_types::OCI_INDEX,
            descriptor(4),
            descriptor(5)
        );
        assert!(matches!(
            parse(json.as_bytes()),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn known_fields_of_the_wrong_shape_are_errors() {
        for json in [
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","Layers":{}}"#,
            r#"{"schemaVersion":"2","layers":[]}"#,
            r#"{"schemaVersion":2,"LAYERS":[{"mediaType":"x"}]}"#,
            r#"{"schemaVersion":2,"layers":[null]}"#,
            r#"{"schemaVersion":2,"layers":[{"digest":5}]}"#,
            r#"{"schemaVersion":1,"fsLayers":[{"blobsum":""}]}"#,
            r#"{"schemaVersion":1,"fsLayers":[{}]}"#,
        ] {
            assert!(parse(json.as_bytes()).is_err(), "{json}");
        }
    }
}
