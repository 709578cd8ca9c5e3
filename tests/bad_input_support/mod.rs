//! A builder of small, valid registry trees to damage, and a runner that
//! puts the real binary through `gc`, `gc -m` and `verify` on fresh copies
//! of the same damage, checking the exit code, that the message names the
//! path at fault, and that nothing a live image needs was lost.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("sha256 digest")
}

/// Files of one image as pushed: what a pull needs.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
    /// Every file a pull of this image reads.
    pub files: Vec<PathBuf>,
}

/// A storage root in a temporary directory.
pub struct Tree {
    tmp: TempDir,
    pub root: PathBuf,
}

impl Tree {
    /// An empty registry: `docker/registry/v2/{blobs,repositories}`.
    pub fn new() -> Tree {
        let tree = Tree::bare();
        fs::create_dir_all(tree.v2().join("blobs/sha256")).unwrap();
        fs::create_dir_all(tree.v2().join("repositories")).unwrap();
        tree
    }

    /// Only the temporary directory, with `storage/` not created.
    pub fn bare() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        Tree { tmp, root }
    }

    /// The temporary directory holding the root, for things outside it.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = hex(digest);
        self.v2()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        write(&self.blob_data(&digest), bytes);
        digest
    }

    pub fn repo(&self, name: &str) -> PathBuf {
        self.v2().join("repositories").join(name)
    }

    pub fn layer_link(&self, repo: &str, digest: &str) -> PathBuf {
        self.repo(repo)
            .join("_layers/sha256")
            .join(hex(digest))
            .join("link")
    }

    pub fn revision_link(&self, repo: &str, digest: &str) -> PathBuf {
        self.repo(repo)
            .join("_manifests/revisions/sha256")
            .join(hex(digest))
            .join("link")
    }

    pub fn tag_dir(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join("_manifests/tags").join(tag)
    }

    pub fn tag_current(&self, repo: &str, tag: &str) -> PathBuf {
        self.tag_dir(repo, tag).join("current/link")
    }

    pub fn tag_index_link(&self, repo: &str, tag: &str, digest: &str) -> PathBuf {
        self.tag_dir(repo, tag)
            .join("index/sha256")
            .join(hex(digest))
            .join("link")
    }

    /// Links `digest` into `repo` as a layer.
    pub fn link_layer(&self, repo: &str, digest: &str) -> PathBuf {
        let link = self.layer_link(repo, digest);
        write(&link, digest.as_bytes());
        link
    }

    /// Points `tag` of `repo` at `digest` (current link and history entry).
    pub fn tag(&self, repo: &str, tag: &str, digest: &str) -> Vec<PathBuf> {
        let current = self.tag_current(repo, tag);
        let history = self.tag_index_link(repo, tag, digest);
        write(&current, digest.as_bytes());
        write(&history, digest.as_bytes());
        vec![current, history]
    }

    /// Stores `bytes` as a manifest of `repo` referencing `blobs` (already
    /// stored, linked here), tagged `tag` if given.
    pub fn manifest(&self, repo: &str, tag: Option<&str>, bytes: &[u8], blobs: &[String]) -> Image {
        let manifest = self.blob(bytes);
        let revision = self.revision_link(repo, &manifest);
        write(&revision, manifest.as_bytes());
        let mut files = vec![self.blob_data(&manifest), revision];
        for blob in blobs {
            files.push(self.blob_data(blob));
            files.push(self.link_layer(repo, blob));
        }
        if let Some(tag) = tag {
            files.extend(self.tag(repo, tag, &manifest));
        }
        Image {
            manifest,
            config: blobs.first().cloned().unwrap_or_default(),
            layers: blobs.iter().skip(1).cloned().collect(),
            files,
        }
    }

    /// A Docker schema2 image of `repo`: a config and two layers whose
    /// content depends on `seed`.
    pub fn image(&self, repo: &str, tag: Option<&str>, seed: &str) -> Image {
        let config = self.blob(format!(r#"{{"architecture":"amd64","seed":"{seed}"}}"#).as_bytes());
        let layers: Vec<String> = (0..2)
            .map(|i| self.blob(format!("layer {i} of {seed}").as_bytes()))
            .collect();
        let bytes = schema2(&config, &layers);
        let mut blobs = vec![config];
        blobs.extend(layers);
        self.manifest(repo, tag, &bytes, &blobs)
    }

    /// Every regular file (and symbolic link, as its target) under the
    /// root, with its content; symbolic links are not followed.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(&self.root)
    }
}

/// A Docker schema2 manifest.
pub fn schema2(config: &str, layers: &[String]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 12, "digest": l}))
        .collect();
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 40, "digest": config},
        "layers": layers,
    }))
    .unwrap()
}

/// Writes `bytes` to `path`, creating its parents.
pub fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Every regular file and symbolic link under `dir`, never followed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(path, target.as_os_str().as_bytes().to_vec());
            } else if kind.is_file() {
                out.insert(path.clone(), fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<OsString>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON document on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{:?}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.args, self.stdout, self.stderr
            )
        })
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_regsweep")
}

/// Runs the binary with `args`, as `user` (`setpriv`) if given, and kills
/// it after 60 s: a hang is a failure, not a stuck test run.
pub fn run_as(user: Option<u32>, args: &[&OsStr]) -> Run {
    let mut command = match user {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "--".into(),
            ]);
            c.arg(binary());
            c
        }
        None => Command::new(binary()),
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run regsweep");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("regsweep {args:?} hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = Run {
        args: args.iter().map(|a| a.to_os_string()).collect(),
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "regsweep {:?} panicked:\n{}",
        run.args,
        run.stderr
    );
    run
}

pub fn run(args: &[&OsStr]) -> Run {
    run_as(None, args)
}

/// `gc` with whatever makes it collect now: `--min-age 0` once the binary
/// has it (a fresh tree is all younger than the default minimum age).
pub fn gc_args(delete_untagged: bool) -> Vec<OsString> {
    static MIN_AGE: OnceLock<bool> = OnceLock::new();
    let min_age = *MIN_AGE.get_or_init(|| {
        run(&[OsStr::new("gc"), OsStr::new("--help")])
            .stdout
            .contains("--min-age")
    });
    let mut args: Vec<OsString> = vec!["gc".into(), "--json".into()];
    if min_age {
        args.extend(["--min-age".into(), "0".into()]);
    }
    if delete_untagged {
        args.push("-m".into());
    }
    args
}

/// What a case must produce, in each mode.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Exit codes of `gc`, `gc -m`, `verify`.
    pub codes: [i32; 3],
    /// Paths `gc` (both modes) must name on stderr and in its JSON warnings.
    pub gc_names: Vec<PathBuf>,
    /// Paths `verify` must name on stderr and in its JSON problems.
    pub verify_names: Vec<PathBuf>,
    /// Files `gc` must leave as they were (in both modes).
    pub live: Vec<PathBuf>,
    /// Extra arguments for `verify`.
    pub verify_args: Vec<String>,
    /// Run the binary as this user id (None: as the test runs).
    pub user: Option<u32>,
    /// Files outside the root that must not change.
    pub outside: Option<PathBuf>,
}

impl Expect {
    pub fn codes(gc: i32, gc_m: i32, verify: i32) -> Expect {
        Expect {
            codes: [gc, gc_m, verify],
            ..Expect::default()
        }
    }

    /// `gc` and `verify` both name `path`.
    pub fn names(mut self, path: impl Into<PathBuf>) -> Expect {
        let path = path.into();
        self.gc_names.push(path.clone());
        self.verify_names.push(path);
        self
    }

    pub fn gc_names(mut self, path: impl Into<PathBuf>) -> Expect {
        self.gc_names.push(path.into());
        self
    }

    pub fn verify_names(mut self, path: impl Into<PathBuf>) -> Expect {
        self.verify_names.push(path.into());
        self
    }

    pub fn live(mut self, files: impl IntoIterator<Item = PathBuf>) -> Expect {
        self.live.extend(files);
        self
    }

    pub fn verify_args(mut self, args: &[&str]) -> Expect {
        self.verify_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Checks that `run` names `path` on stderr and, when it printed JSON, in
/// `list` (gc's `warnings`, verify's `problems`).
fn assert_named(run: &Run, json: Option<&Value>, list: &str, path: &Path) {
    let shown = path.display().to_string();
    assert!(
        run.stderr.contains(&shown),
        "{:?} (exit {}) does not name {shown} on stderr:\n{}",
        run.args,
        run.code,
        run.stderr
    );
    if let Some(json) = json {
        let paths: Vec<&str> = json[list]
            .as_array()
            .unwrap_or_else(|| panic!("no `{list}` in {json}"))
            .iter()
            .filter_map(|w| w["path"].as_str())
            .collect();
        assert!(
            paths.contains(&lossy(path).as_str()),
            "{:?}: `{list}` does not name {shown}: {paths:#?}",
            run.args
        );
    }
}

/// Builds the case three times (gc, gc -m, verify), runs each on its own
/// tree and checks it against what the builder expects.
pub fn check(case: impl Fn(&Tree) -> Expect) {
    for mode in 0..3 {
        let tree = Tree::new();
        check_on(&tree, mode, &case);
    }
}

/// As [`check`], on a tree `make` builds (for roots that are not a fresh
/// registry).
pub fn check_tree(make: impl Fn() -> Tree, case: impl Fn(&Tree) -> Expect) {
    for mode in 0..3 {
        let tree = make();
        check_on(&tree, mode, &case);
    }
}

fn check_on(tree: &Tree, mode: usize, case: &impl Fn(&Tree) -> Expect) {
    let expect = case(tree);
    let before = tree.snapshot();
    let outside_before = expect.outside.as_deref().map(snapshot);
    let target = tree.root.clone().into_os_string();
    let mut args: Vec<OsString> = match mode {
        0 => gc_args(false),
        1 => gc_args(true),
        _ => {
            let mut a: Vec<OsString> = vec!["verify".into(), "--json".into()];
            a.extend(expect.verify_args.iter().map(OsString::from));
            a
        }
    };
    args.push(target.clone());
    let argv: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let run = run_as(expect.user, &argv);
    let code = expect.codes[mode];
    assert_eq!(
        run.code, code,
        "{:?}: exit {} instead of {code}\nstdout:\n{}\nstderr:\n{}",
        run.args, run.code, run.stdout, run.stderr
    );
    let json = (code != 2).then(|| run.json());
    if let Some(json) = &json {
        assert_eq!(
            json["exit_code"],
            json!(code),
            "{:?}: exit_code in JSON",
            run.args
        );
    } else {
        assert!(
            run.stderr.contains("error"),
            "{:?}: a refusal says why:\n{}",
            run.args,
            run.stderr
        );
    }
    let (list, names) = if mode < 2 {
        ("warnings", &expect.gc_names)
    } else {
        ("problems", &expect.verify_names)
    };
    for path in names {
        assert_named(&run, json.as_ref(), list, path);
    }

    let after = tree.snapshot();
    if mode == 2 || code == 2 {
        assert_eq!(before, after, "{:?} changed the tree", run.args);
    }
    for file in &expect.live {
        assert_eq!(
            before.get(file),
            after.get(file),
            "{:?} lost or changed {} (a live image needs it)",
            run.args,
            file.display()
        );
        assert!(
            before.contains_key(file),
            "{} was never there",
            file.display()
        );
    }
    if let (Some(dir), Some(snap)) = (&expect.outside, outside_before) {
        assert_eq!(
            snap,
            snapshot(dir),
            "{:?} touched {}",
            run.args,
            dir.display()
        );
    }

    if mode == 2 {
        // The summary for people agrees with the JSON run.
        let mut plain: Vec<&OsStr> = vec![OsStr::new("verify")];
        plain.extend(expect.verify_args.iter().map(OsStr::new));
        plain.push(&target);
        let plain = run_as(expect.user, &plain);
        assert_eq!(plain.code, code, "plain verify:\n{}", plain.stderr);
    }
}

/// A name that is not UTF-8.
pub fn non_utf8(prefix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend([0xff, 0xfe]);
    <OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes)
}
