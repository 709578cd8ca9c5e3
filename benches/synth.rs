//! Deterministic synthetic registry generator (a `harness = false` bench target).
//!
//! Writes a storage root `OUT/docker/registry/v2/...` in the exact on-disk layout of
//! the CNCF distribution registry 2.8 filesystem driver, for benchmarking `regsweep`
//! against upstream `registry garbage-collect`.
//!
//! ```text
//! cargo bench --bench synth -- --out /tmp/reg-2000 --repos 2000
//! ```
//!
//! Shape (defaults reproduce the ~600k-file tree of the reference measurement):
//! - `--repos N` repositories named `team-<t>/app-<k>`, with every seventh app nested
//!   as `team-<t>/app-<k-1>/sub` (so `a` and `a/sub` are both repositories);
//! - `--tags T` tags per repository, `--pushes P` pushes per tag: the tag's
//!   `current/link` points at the last push, `index/` lists every push, and every
//!   pushed manifest has a `_manifests/revisions` link (older pushes are untagged
//!   history);
//! - every image has `--layers U` unique layers plus one base layer drawn from a
//!   shared pool of `--base B` layers, and a unique config blob;
//! - every `--multiarch-every K`-th repository is multi-arch: each push is an OCI
//!   index or a Docker manifest list (alternating) with 2 platform child manifests
//!   that are revisions in the repository but not tagged;
//! - `--orphan-pct F` percent extra blobs referenced by no manifest, half of them
//!   with a `_layers` link in the repository.
//!
//! Manifests are Docker schema2 or OCI (alternating per repository), their digest is
//! the sha256 of their exact bytes. Everything derives from `--seed`.

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

const USAGE: &str = "\
synth: deterministic synthetic registry (distribution 2.8 filesystem layout)

usage: cargo bench --bench synth -- --out DIR [options]

  --out DIR              storage root to create (writes DIR/docker/registry/v2)
  --repos N              repositories                       [2000]
  --tags T               tags per repository                [5]
  --pushes P             pushes per tag (P-1 untagged)      [4]
  --layers U             unique layers per image            [3]
  --base B               shared base-layer pool size        [50]
  --multiarch-every K    every K-th repository is multi-arch (0 = none) [5]
  --orphan-pct F         orphan blobs, percent of blobs     [1.0]
  --seed S               PRNG seed                          [1]
  --threads N            worker threads                     [all cores]
  --force                delete an existing DIR/docker first
  -h, --help             this text

Defaults give ~2,000 repos / 56,000 manifests / ~250,000 blobs / ~600,000 files.
--repos 200 gives ~60k files, --repos 4000 ~1.2M files.
";

const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// 2024-01-01T00:00:00Z: tag push times are deterministic offsets from this.
const EPOCH_BASE: u64 = 1_704_067_200;

#[derive(Clone, Debug)]
struct Opts {
    out: PathBuf,
    repos: usize,
    tags: usize,
    pushes: usize,
    layers: usize,
    base: usize,
    multiarch_every: usize,
    orphan_pct: f64,
    seed: u64,
    threads: Option<usize>,
    force: bool,
}

enum Parsed {
    Run(Opts),
    Usage,
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut out = None;
    let mut o = Opts {
        out: PathBuf::new(),
        repos: 2000,
        tags: 5,
        pushes: 4,
        layers: 3,
        base: 50,
        multiarch_every: 5,
        orphan_pct: 1.0,
        seed: 1,
        threads: None,
        force: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{name} needs a value")),
            }
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: not a valid number: {v:?}"))
        }
        match flag {
            // cargo passes `--bench` to harness = false targets under `cargo bench`.
            "--bench" => {}
            "-h" | "--help" => return Ok(Parsed::Usage),
            "--out" => out = Some(PathBuf::from(value(flag)?)),
            "--repos" => o.repos = num(flag, value(flag)?)?,
            "--tags" => o.tags = num(flag, value(flag)?)?,
            "--pushes" => o.pushes = num(flag, value(flag)?)?,
            "--layers" => o.layers = num(flag, value(flag)?)?,
            "--base" => o.base = num(flag, value(flag)?)?,
            "--multiarch-every" => o.multiarch_every = num(flag, value(flag)?)?,
            "--orphan-pct" => o.orphan_pct = num(flag, value(flag)?)?,
            "--seed" => o.seed = num(flag, value(flag)?)?,
            "--threads" => o.threads = Some(num(flag, value(flag)?)?),
            "--force" => o.force = true,
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    let Some(out) = out else {
        return Ok(Parsed::Usage);
    };
    o.out = out;
    if o.tags == 0 || o.pushes == 0 {
        return Err("--tags and --pushes must be at least 1".into());
    }
    if o.base == 0 {
        return Err("--base must be at least 1".into());
    }
    if !(0.0..=100.0).contains(&o.orphan_pct) {
        return Err("--orphan-pct must be within 0..100".into());
    }
    Ok(Parsed::Run(o))
}

/// splitmix64: tiny, fast, good enough, and fully deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Where everything goes: `<out>/docker/registry/v2`.
struct Store {
    v2: PathBuf,
}

impl Store {
    /// Writes `blobs/sha256/<2hex>/<hex>/data`; returns the hex digest.
    fn put_blob(&self, data: &[u8]) -> io::Result<String> {
        let hex = sha256_hex(data);
        let dir = self.v2.join("blobs/sha256").join(&hex[..2]).join(&hex);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("data"), data)?;
        Ok(hex)
    }

    /// Writes `<dir>/link` holding `sha256:<hex>` (no trailing newline).
    fn put_link(dir: &Path, hex: &str) -> io::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let path = dir.join("link");
        fs::write(&path, format!("sha256:{hex}"))?;
        Ok(path)
    }
}

#[derive(Clone, Copy)]
struct Desc<'a> {
    media_type: &'a str,
    size: usize,
    hex: &'a str,
}

/// Docker schema2 image manifest, formatted like the Docker engine does (3-space indent).
fn docker_manifest(config: Desc, layers: &[Desc]) -> String {
    let mut s = String::with_capacity(300 + 160 * layers.len());
    s.push_str("{\n   \"schemaVersion\": 2,\n");
    let _ = writeln!(s, "   \"mediaType\": \"{MT_DOCKER_MANIFEST}\",");
    let _ = write!(
        s,
        "   \"config\": {{\n      \"mediaType\": \"{}\",\n      \"size\": {},\n      \"digest\": \"sha256:{}\"\n   }},\n   \"layers\": [",
        config.media_type, config.size, config.hex
    );
    for (i, l) in layers.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{sep}\n      {{\n         \"mediaType\": \"{}\",\n         \"size\": {},\n         \"digest\": \"sha256:{}\"\n      }}",
            l.media_type, l.size, l.hex
        );
    }
    s.push_str("\n   ]\n}");
    s
}

/// OCI image manifest, compact JSON as most OCI tools write it.
fn oci_manifest(config: Desc, layers: &[Desc], annotation: &str) -> String {
    let mut s = String::with_capacity(300 + 140 * layers.len());
    let _ = write!(
        s,
        "{{\"schemaVersion\":2,\"mediaType\":\"{MT_OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"{}\",\"digest\":\"sha256:{}\",\"size\":{}}},\"layers\":[",
        config.media_type, config.hex, config.size
    );
    for (i, l) in layers.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{sep}{{\"mediaType\":\"{}\",\"digest\":\"sha256:{}\",\"size\":{}}}",
            l.media_type, l.hex, l.size
        );
    }
    let _ = write!(
        s,
        "],\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{annotation}\"}}}}"
    );
    s
}

/// OCI index or Docker manifest list over platform children.
fn index_manifest(oci: bool, children: &[(Desc, &str)]) -> String {
    let mt = if oci { MT_OCI_INDEX } else { MT_DOCKER_LIST };
    let mut s = String::with_capacity(200 + 220 * children.len());
    let _ = write!(
        s,
        "{{\"schemaVersion\":2,\"mediaType\":\"{mt}\",\"manifests\":["
    );
    for (i, (d, arch)) in children.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{sep}{{\"mediaType\":\"{}\",\"digest\":\"sha256:{}\",\"size\":{},\"platform\":{{\"architecture\":\"{arch}\",\"os\":\"linux\"}}}}",
            d.media_type, d.hex, d.size
        );
    }
    s.push_str("]}");
    s
}

fn image_config(arch: &str, created: u64, labels: &str, diff_ids: &[&str]) -> String {
    let mut s = String::with_capacity(300 + 80 * diff_ids.len());
    let _ = write!(
        s,
        "{{\"architecture\":\"{arch}\",\"os\":\"linux\",\"created\":\"{}\",\"config\":{{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Labels\":{{{labels}}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[",
        rfc3339(created)
    );
    for (i, d) in diff_ids.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(s, "{sep}\"sha256:{d}\"");
    }
    s.push_str("]}}");
    s
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, no dependencies).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn repo_name(i: usize) -> String {
    let team = i / 20;
    let k = i % 20;
    if k % 7 == 6 {
        format!("team-{team}/app-{}/sub", k - 1)
    } else {
        format!("team-{team}/app-{k}")
    }
}

fn tag_name(t: usize) -> String {
    if t == 0 {
        "latest".to_string()
    } else {
        format!("1.{t}")
    }
}

/// Counts for one repository (and, summed, for the tree).
#[derive(Default)]
struct Stats {
    repos: u64,
    multiarch: u64,
    nested: u64,
    manifests: u64,
    tagged_manifests: u64,
    blobs: u64,
    files: u64,
    blob_bytes: u64,
    orphans: u64,
    orphans_linked: u64,
    /// Untagged manifest revisions (deleted by a correct, recursive `-m`).
    untagged: u64,
    /// Repository-local blobs garbage under a correct, recursive `-m` (excl. base layers).
    garbage_m: u64,
    /// Repository-local blobs upstream 2.8 `-m` marks eligible (excl. base layers).
    garbage_m_up28: u64,
    /// Manifests upstream 2.8 `-m` reports eligible (untagged incl. children of tagged indexes).
    untagged_up28: u64,
    /// Untagged top-level pushes: their tag `index/` entries go with them under `-m`.
    untagged_tag_entries: u64,
    /// Repository-local `_layers` links to blobs garbage under a correct `-m` (excl. base layers).
    links_garbage_m: u64,
    base_used: Vec<bool>,
    /// Per base layer: how many repositories link it in `_layers`.
    base_links: Vec<u64>,
    base_live_m: Vec<bool>,
    base_live_up28: Vec<bool>,
}

impl Stats {
    fn new(b: usize) -> Stats {
        Stats {
            base_used: vec![false; b],
            base_links: vec![0; b],
            base_live_m: vec![false; b],
            base_live_up28: vec![false; b],
            ..Stats::default()
        }
    }
    fn merge(mut self, o: Stats) -> Stats {
        self.repos += o.repos;
        self.multiarch += o.multiarch;
        self.nested += o.nested;
        self.manifests += o.manifests;
        self.tagged_manifests += o.tagged_manifests;
        self.blobs += o.blobs;
        self.files += o.files;
        self.blob_bytes += o.blob_bytes;
        self.orphans += o.orphans;
        self.orphans_linked += o.orphans_linked;
        self.untagged += o.untagged;
        self.garbage_m += o.garbage_m;
        self.garbage_m_up28 += o.garbage_m_up28;
        self.untagged_up28 += o.untagged_up28;
        self.untagged_tag_entries += o.untagged_tag_entries;
        self.links_garbage_m += o.links_garbage_m;
        for (a, b) in self.base_links.iter_mut().zip(&o.base_links) {
            *a += b;
        }
        for (v, ov) in [
            (&mut self.base_used, &o.base_used),
            (&mut self.base_live_m, &o.base_live_m),
            (&mut self.base_live_up28, &o.base_live_up28),
        ] {
            for (a, b) in v.iter_mut().zip(ov) {
                *a |= *b;
            }
        }
        self
    }
}

struct BaseLayer {
    hex: String,
    size: usize,
}

struct Image {
    media_type: &'static str,
    hex: String,
    size: usize,
    /// config + unique layers (repository-local blobs besides the manifest).
    own_blobs: u64,
    base: usize,
}

struct RepoGen<'a> {
    o: &'a Opts,
    store: &'a Store,
    bases: &'a [BaseLayer],
    idx: usize,
    name: String,
    dir: PathBuf,
    rng: Rng,
    st: Stats,
    base_linked: Vec<bool>,
    base_order: Vec<usize>,
    images: usize,
}

impl RepoGen<'_> {
    fn blob(&mut self, data: &[u8]) -> io::Result<String> {
        let hex = self.store.put_blob(data)?;
        self.st.blobs += 1;
        self.st.files += 1;
        self.st.blob_bytes += data.len() as u64;
        Ok(hex)
    }

    fn link(&mut self, rel: &str, hex: &str) -> io::Result<PathBuf> {
        let p = Store::put_link(&self.dir.join(rel), hex)?;
        self.st.files += 1;
        Ok(p)
    }

    fn layer_link(&mut self, hex: &str) -> io::Result<()> {
        self.link(&format!("_layers/sha256/{hex}"), hex).map(|_| ())
    }

    /// One image manifest: unique layers + one base layer + config, linked like a push.
    fn image(
        &mut self,
        oci: bool,
        arch: &str,
        tag: usize,
        push: usize,
        created: u64,
    ) -> io::Result<Image> {
        let (lmt, cmt) = if oci {
            (MT_OCI_LAYER, MT_OCI_CONFIG)
        } else {
            (MT_DOCKER_LAYER, MT_DOCKER_CONFIG)
        };
        // Successive images of a repository walk a per-repository shuffle of the pool
        // (rebuilt on updated bases; platforms differ), so bases repeat only after B images.
        let base = self.base_order[self.images % self.base_order.len()];
        self.images += 1;
        self.st.base_used[base] = true;
        if !self.base_linked[base] {
            self.base_linked[base] = true;
            self.st.base_links[base] += 1;
            let hex = self.bases[base].hex.clone();
            self.layer_link(&hex)?;
        }
        let mut layers: Vec<(String, usize)> = Vec::with_capacity(self.o.layers + 1);
        layers.push((self.bases[base].hex.clone(), self.bases[base].size));
        for k in 0..self.o.layers {
            let data = format!(
                "synth layer s{} r{} t{tag} p{push} {arch} #{k} {:08x}\n",
                self.o.seed,
                self.idx,
                self.rng.next() as u32
            );
            let hex = self.blob(data.as_bytes())?;
            self.layer_link(&hex)?;
            layers.push((hex, data.len()));
        }
        let diff_ids: Vec<&str> = layers.iter().map(|(h, _)| h.as_str()).collect();
        let labels = format!(
            "\"synth.repo\":\"{}\",\"synth.tag\":\"{}\",\"synth.push\":\"{push}\",\"synth.seed\":\"{}\"",
            self.name,
            tag_name(tag),
            self.o.seed
        );
        let config = image_config(arch, created, &labels, &diff_ids);
        let config_hex = self.blob(config.as_bytes())?;
        self.layer_link(&config_hex)?;
        let cdesc = Desc {
            media_type: cmt,
            size: config.len(),
            hex: &config_hex,
        };
        let ldescs: Vec<Desc> = layers
            .iter()
            .map(|(h, n)| Desc {
                media_type: lmt,
                size: *n,
                hex: h,
            })
            .collect();
        let (mt, body) = if oci {
            let ann = format!("{}:{}", self.name, tag_name(tag));
            (MT_OCI_MANIFEST, oci_manifest(cdesc, &ldescs, &ann))
        } else {
            (MT_DOCKER_MANIFEST, docker_manifest(cdesc, &ldescs))
        };
        let hex = self.blob(body.as_bytes())?;
        self.link(&format!("_manifests/revisions/sha256/{hex}"), &hex)?;
        self.st.manifests += 1;
        Ok(Image {
            media_type: mt,
            hex,
            size: body.len(),
            own_blobs: 1 + self.o.layers as u64,
            base,
        })
    }

    fn run(mut self) -> io::Result<Stats> {
        let o = self.o;
        self.st.repos = 1;
        if self.name.ends_with("/sub") {
            self.st.nested = 1;
        }
        let multiarch =
            o.multiarch_every > 0 && self.idx % o.multiarch_every == o.multiarch_every - 1;
        // Image flavour alternates per repository; multi-arch alternates OCI index / Docker list.
        let oci = if multiarch {
            (self.idx / o.multiarch_every.max(1)) % 2 == 0
        } else {
            self.idx % 2 == 1
        };
        if multiarch {
            self.st.multiarch = 1;
        }
        for t in 0..o.tags {
            let tag = tag_name(t);
            let pushed = EPOCH_BASE + (self.idx as u64) * 3600 + (t as u64) * 600;
            let mut last = String::new();
            for p in 0..o.pushes {
                let created = pushed - ((o.pushes - 1 - p) as u64) * 86_400;
                let tagged = p + 1 == o.pushes;
                let top_hex = if multiarch {
                    let a = self.image(oci, "amd64", t, p, created)?;
                    let b = self.image(oci, "arm64", t, p, created)?;
                    let ad = Desc {
                        media_type: a.media_type,
                        size: a.size,
                        hex: &a.hex,
                    };
                    let bd = Desc {
                        media_type: b.media_type,
                        size: b.size,
                        hex: &b.hex,
                    };
                    let body = index_manifest(oci, &[(ad, "amd64"), (bd, "arm64")]);
                    let hex = self.blob(body.as_bytes())?;
                    self.link(&format!("_manifests/revisions/sha256/{hex}"), &hex)?;
                    self.st.manifests += 1;
                    // Expectations: correct -m keeps a tagged index and everything below it.
                    // Upstream 2.8 -m keeps only the tagged index and its children's manifest
                    // blobs (it never descends), and reports the children as untagged.
                    let below = a.own_blobs + b.own_blobs;
                    if tagged {
                        self.st.tagged_manifests += 1;
                        self.st.base_live_m[a.base] = true;
                        self.st.base_live_m[b.base] = true;
                        self.st.garbage_m_up28 += below;
                        self.st.untagged_up28 += 2;
                    } else {
                        self.st.untagged += 3;
                        self.st.untagged_up28 += 3;
                        self.st.garbage_m += 3 + below;
                        self.st.links_garbage_m += below;
                        self.st.untagged_tag_entries += 1;
                        self.st.garbage_m_up28 += 3 + below;
                    }
                    hex
                } else {
                    let img = self.image(oci, "amd64", t, p, created)?;
                    if tagged {
                        self.st.tagged_manifests += 1;
                        self.st.base_live_m[img.base] = true;
                        self.st.base_live_up28[img.base] = true;
                    } else {
                        self.st.untagged += 1;
                        self.st.untagged_up28 += 1;
                        self.st.garbage_m += 1 + img.own_blobs;
                        self.st.links_garbage_m += img.own_blobs;
                        self.st.untagged_tag_entries += 1;
                        self.st.garbage_m_up28 += 1 + img.own_blobs;
                    }
                    img.hex
                };
                self.link(
                    &format!("_manifests/tags/{tag}/index/sha256/{top_hex}"),
                    &top_hex,
                )?;
                last = top_hex;
            }
            let cur = self.link(&format!("_manifests/tags/{tag}/current"), &last)?;
            let f = fs::OpenOptions::new().write(true).open(&cur)?;
            f.set_modified(UNIX_EPOCH + Duration::from_secs(pushed))?;
        }
        // Orphans: blobs no manifest references, about orphan_pct of this repo's blobs;
        // every other one also gets a `_layers` link (upload finished, manifest never pushed).
        let want = self.st.blobs as f64 * o.orphan_pct / 100.0;
        let mut n = want.floor() as u64;
        if self.rng.unit() < want - want.floor() {
            n += 1;
        }
        for k in 0..n {
            let data = format!(
                "synth orphan s{} r{} #{k} {:08x}\n",
                o.seed,
                self.idx,
                self.rng.next() as u32
            );
            let hex = self.blob(data.as_bytes())?;
            self.st.orphans += 1;
            if (self.idx as u64 + k) % 2 == 0 {
                self.layer_link(&hex)?;
                self.st.orphans_linked += 1;
            }
        }
        Ok(self.st)
    }
}

fn generate(o: &Opts) -> io::Result<Stats> {
    let v2 = o.out.join("docker/registry/v2");
    if o.out.join("docker").exists() {
        if o.force {
            fs::remove_dir_all(o.out.join("docker"))?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already exists (use --force to replace it)",
                    o.out.join("docker").display()
                ),
            ));
        }
    }
    for i in 0..256 {
        fs::create_dir_all(v2.join(format!("blobs/sha256/{i:02x}")))?;
    }
    fs::create_dir_all(v2.join("repositories"))?;
    let store = Store { v2 };

    let mut st = Stats::new(o.base);
    let mut bases = Vec::with_capacity(o.base);
    for b in 0..o.base {
        let data = format!("synth base layer s{} #{b}: shared by many images\n", o.seed);
        let hex = store.put_blob(data.as_bytes())?;
        st.blobs += 1;
        st.files += 1;
        st.blob_bytes += data.len() as u64;
        bases.push(BaseLayer {
            hex,
            size: data.len(),
        });
    }

    let repos = (0..o.repos)
        .into_par_iter()
        .map(|idx| {
            let name = repo_name(idx);
            let mut rng = Rng::new(o.seed, idx as u64 + 1);
            let mut base_order: Vec<usize> = (0..o.base).collect();
            for i in (1..base_order.len()).rev() {
                base_order.swap(i, rng.below(i + 1));
            }
            RepoGen {
                o,
                store: &store,
                bases: &bases,
                idx,
                dir: store.v2.join("repositories").join(&name),
                name,
                rng,
                st: Stats::new(o.base),
                base_linked: vec![false; o.base],
                base_order,
                images: 0,
            }
            .run()
        })
        .try_reduce(|| Stats::new(o.base), |a, b| Ok(a.merge(b)))?;
    Ok(st.merge(repos))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Usage) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("synth: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = o.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("synth: cannot set up {n} threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    let t0 = Instant::now();
    let st = match generate(&o) {
        Ok(st) => st,
        Err(e) => {
            eprintln!("synth: {}: {e}", o.out.display());
            return ExitCode::FAILURE;
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let count = |v: &[bool]| v.iter().filter(|b| **b).count() as u64;
    let unused_base = o.base as u64 - count(&st.base_used);
    let dead_base_m = o.base as u64 - count(&st.base_live_m);
    let dead_base_up28 = o.base as u64 - count(&st.base_live_up28);
    let dead_base_links_m: u64 = (0..o.base)
        .filter(|&b| !st.base_live_m[b])
        .map(|b| st.base_links[b])
        .sum();
    let root = o.out.join("docker/registry/v2");
    println!(
        "synth: wrote {} in {secs:.1} s (seed {})",
        root.display(),
        o.seed
    );
    println!(
        "shape: repos={} tags={} pushes={} layers={} base={} multiarch_every={} orphan_pct={}",
        o.repos, o.tags, o.pushes, o.layers, o.base, o.multiarch_every, o.orphan_pct
    );
    println!("repos={}", st.repos);
    println!("repos_multiarch={}", st.multiarch);
    println!("repos_nested={}", st.nested);
    println!("manifests={}", st.manifests);
    println!("manifests_tagged={}", st.tagged_manifests);
    println!("blobs={}", st.blobs);
    println!("blob_bytes={}", st.blob_bytes);
    println!("files={}", st.files);
    println!("files_blobs={}", st.blobs);
    println!("files_repositories={}", st.files - st.blobs);
    println!("orphans={}", st.orphans);
    println!("orphans_linked={}", st.orphans_linked);
    println!("base_unused={unused_base}");
    // What a GC should find (blob counts are distinct blobs under blobs/).
    println!("expect_dry_blobs_eligible={}", st.orphans + unused_base);
    println!("expect_dry_layer_links_eligible={}", st.orphans_linked);
    println!("expect_m_manifests_eligible={}", st.untagged);
    println!(
        "expect_m_tag_index_entries_eligible={}",
        st.untagged_tag_entries
    );
    println!(
        "expect_m_layer_links_eligible={}",
        st.orphans_linked + st.links_garbage_m + dead_base_links_m
    );
    println!(
        "expect_m_blobs_eligible={}",
        st.orphans + st.garbage_m + dead_base_m
    );
    println!("expect_up28_m_manifests_eligible={}", st.untagged_up28);
    println!(
        "expect_up28_m_blobs_eligible={}",
        st.orphans + st.garbage_m_up28 + dead_base_up28
    );
    ExitCode::SUCCESS
}
