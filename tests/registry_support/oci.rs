//! A minimal OCI image layout writer (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), enough for skopeo to push images, multi-arch
//! indexes and conversions to Docker schema 2 and schema 1.
//!
//! Layers are real tar archives (one small file of random content) wrapped in
//! gzip. skopeo compresses uncompressed layers on their way to a registry,
//! which would change their digests; already gzipped layers go up unchanged,
//! so the digests written here are the digests the registry stores. The gzip
//! stream uses stored (uncompressed) deflate blocks: valid gzip, no dependency.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{random_hex, sha256_digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// A gzipped tar layer and the digest of its uncompressed tar (its diff ID).
#[derive(Debug, Clone)]
pub struct Layer {
    pub desc: Descriptor,
    pub diff_id: String,
}

impl Layer {
    pub fn digest(&self) -> String {
        self.desc.digest.clone()
    }
}

/// A single-platform image written to the layout.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub arch: String,
}

impl Image {
    pub fn digest(&self) -> String {
        self.manifest.digest.clone()
    }

    pub fn config_digest(&self) -> String {
        self.config.digest.clone()
    }

    /// Digest of layer `i`.
    pub fn layer(&self, i: usize) -> String {
        self.layers[i].digest.clone()
    }

    /// Config and layer digests (what a schema 2 / OCI manifest references).
    pub fn blobs(&self) -> Vec<String> {
        std::iter::once(self.config_digest())
            .chain(self.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }

    /// Manifest, config and layer digests.
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![self.digest()];
        all.extend(self.blobs());
        all
    }
}

/// A multi-platform OCI index written to the layout.
#[derive(Debug, Clone)]
pub struct Index {
    pub manifest: Descriptor,
    pub images: Vec<Image>,
}

impl Index {
    pub fn digest(&self) -> String {
        self.manifest.digest.clone()
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    refs: BTreeMap<String, Descriptor>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = Layout {
            dir: dir.to_path_buf(),
            refs: BTreeMap::new(),
        };
        layout.write_index();
        layout
    }

    /// `oci:<dir>:<tag>`, the skopeo name of a tagged image in this layout.
    pub fn reference(&self, tag: &str) -> String {
        assert!(self.refs.contains_key(tag), "layout has no tag {tag}");
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// Stores `bytes` as a blob.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = sha256_digest(bytes);
        let path = self
            .dir
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]);
        fs::write(path, bytes).expect("write layout blob");
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
        }
    }

    /// A new layer: one file `<label>.txt` of random content.
    pub fn layer(&self, label: &str) -> Layer {
        let content = format!("{label} {}\n", random_hex(16));
        let tar = tar_single_file(&format!("{label}.txt"), content.as_bytes());
        Layer {
            diff_id: sha256_digest(&tar),
            desc: self.blob(OCI_LAYER_GZIP, &gzip_stored(&tar)),
        }
    }

    /// A linux image for `arch` made of `layers`, bottom first. Its config has
    /// one history entry per layer (no empty layers), which is what skopeo
    /// needs to convert it to Docker schema 1.
    pub fn image(&self, layers: &[&Layer], arch: &str) -> Image {
        let history: Vec<Value> = layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("layer {i}")}))
            .collect();
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": history,
        });
        let config = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(|l| l.desc.json()).collect::<Vec<_>>(),
        });
        Image {
            manifest: self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()),
            config,
            layers: layers.iter().map(|l| l.desc.clone()).collect(),
            arch: arch.to_string(),
        }
    }

    /// An OCI index over `images` (each with its platform).
    pub fn index(&self, images: &[&Image]) -> Index {
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let mut d = img.manifest.json();
                d["platform"] = json!({"architecture": img.arch, "os": "linux"});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        Index {
            manifest: self.blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap()),
            images: images.iter().map(|&i| i.clone()).collect(),
        }
    }

    /// Points `tag` (a `org.opencontainers.image.ref.name`) at `desc`,
    /// replacing what it pointed at before.
    pub fn tag(&mut self, tag: &str, desc: &Descriptor) {
        self.refs.insert(tag.to_string(), desc.clone());
        self.write_index();
    }

    fn write_index(&self) {
        let manifests: Vec<Value> = self
            .refs
            .iter()
            .map(|(tag, desc)| {
                let mut d = desc.json();
                d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "manifests": manifests});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .expect("write index.json");
    }
}

/// A ustar archive holding one regular file.
pub fn tar_single_file(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100);
    let mut header = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, value: &[u8]| {
        h[at..at + value.len()].copy_from_slice(value);
    };
    field(&mut header, 0, name.as_bytes());
    field(&mut header, 100, b"0000644\0");
    field(&mut header, 108, b"0000000\0");
    field(&mut header, 116, b"0000000\0");
    field(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    );
    field(&mut header, 136, b"00000000000\0");
    field(&mut header, 148, b"        ");
    header[156] = b'0';
    field(&mut header, 257, b"ustar\0");
    field(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(512 + content.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// `data` as a gzip stream of stored deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let len = chunk.len() as u16;
        out.push(u8::from(chunks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
