//! Pushes that race the confirmation prompt, against the real registry
//! (docker-registry 2.8) and skopeo: regsweep plans a sweep, asks on a
//! terminal, a client pushes into the registry that was left writable, then
//! the operator answers `y`. The sweep must see the push and delete nothing
//! the push made live again; after a restart every tag pulls.
//!
//! The prompt needs a terminal on stdin and stderr: `script` (util-linux)
//! runs regsweep on a pseudo-terminal. Tests skip (pass, printing
//! `skipping: ...`) when the tools are missing, unless
//! `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::fs;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use registry_support::oci::{Image, Layout, OCI_MANIFEST};
use registry_support::skopeo::{Format, pull_complete, push};
use registry_support::{Registry, require_tools, tree};
use serde_json::Value;
use tempfile::TempDir;

/// regsweep on a pseudo-terminal, stopped at its `[y/N]` question.
struct AtPrompt {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<Vec<u8>>>,
}

impl AtPrompt {
    /// Starts `regsweep <args>` under `script` and waits for the question.
    fn start(args: &[&str]) -> AtPrompt {
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_regsweep"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let mut child = Command::new("script")
            .args(["-qfec", &quoted.join(" "), "/dev/null"])
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run script(1)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let run = AtPrompt {
            child,
            stdin,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run.text().contains("[y/N]") {
            assert!(
                Instant::now() < deadline,
                "no prompt within 60 s; output so far:\n{}",
                run.text()
            );
            sleep(Duration::from_millis(50));
        }
        run
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Answers `answer` and waits for the exit: (exit code, everything the
    /// terminal showed).
    fn answer(mut self, answer: &str) -> (i32, String) {
        self.stdin
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("regsweep did not finish; output:\n{}", self.text());
            }
            sleep(Duration::from_millis(50));
        };
        // Let the reader drain what is left.
        sleep(Duration::from_millis(200));
        (status.code().unwrap_or(-1), self.text())
    }
}

fn layout() -> (TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("layout"));
    (dir, layout)
}

/// The manifest bytes of `image`, as written to the layout (and pushed).
fn manifest_bytes(layout: &Layout, image: &Image) -> Vec<u8> {
    let hex = &image.digest()["sha256:".len()..];
    fs::read(layout.dir.join("blobs/sha256").join(hex)).unwrap()
}

/// `app:t` pushed as `old`, then as `new`: `old` is untagged, and `-m`
/// plans to delete it with its exclusive config and layer.
fn overwritten_tag(reg: &Registry, layout: &mut Layout) -> (Image, Image) {
    let base = layout.layer("base");
    let old_layer = layout.layer("old");
    let old = layout.image(&[&base, &old_layer], "amd64");
    layout.tag("old", &old.manifest);
    push(reg, layout, "old", "app", "t", Format::Oci);
    let new_layer = layout.layer("new");
    let new = layout.image(&[&base, &new_layer], "amd64");
    layout.tag("new", &new.manifest);
    push(reg, layout, "new", "app", "t", Format::Oci);
    (old, new)
}

fn gc_args(reg: &Registry, extra: &[&'static str]) -> Vec<String> {
    let mut args = vec![
        "gc".to_string(),
        "-m".into(),
        "--min-age".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(reg.root().to_str().unwrap().to_string());
    args
}

fn start(args: &[String]) -> AtPrompt {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AtPrompt::start(&args)
}

fn assert_refused(code: i32, output: &str, what: &str) {
    assert_eq!(
        code, 2,
        "{what}: exit 2, the registry took writes:\n{output}"
    );
    assert!(
        output.contains("taking writes") && output.contains("read-only"),
        "{what}: says the registry is taking writes and how to stop that:\n{output}"
    );
}

#[test]
fn a_retag_of_an_untagged_manifest_at_the_prompt_is_not_lost() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let (_dir, mut layout) = layout();
    let (old, new) = overwritten_tag(&reg, &mut layout);
    let prompt = start(&gc_args(&reg, &[]));
    assert!(
        prompt.text().contains("Delete these now?"),
        "{}",
        prompt.text()
    );
    // The same bytes PUT again under a new tag: nothing is uploaded, the
    // registry rewrites the revision link and writes the tag.
    reg.put_manifest("app", "again", OCI_MANIFEST, &manifest_bytes(&layout, &old));
    let (code, output) = prompt.answer("y");
    assert_refused(code, &output, "re-tag");
    assert!(output.contains("nothing was deleted"), "{output}");
    reg.restart();
    pull_complete(&reg, "app:again", &old.all());
    pull_complete(&reg, "app:t", &new.all());
}

#[test]
fn a_push_whose_layers_are_already_there_at_the_prompt_is_not_lost() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let (_dir, mut layout) = layout();
    let (old, new) = overwritten_tag(&reg, &mut layout);
    let prompt = start(&gc_args(&reg, &[]));
    // A new manifest over `old`'s config and layers: the registry finds
    // them linked already, the client uploads nothing.
    let mut manifest: Value = serde_json::from_slice(&manifest_bytes(&layout, &old)).unwrap();
    manifest["annotations"] = serde_json::json!({"rebuilt": "yes"});
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = reg.put_manifest("app", "rebuilt", OCI_MANIFEST, &bytes);
    let uploads_before = tree::uploads(reg.root());
    let (code, output) = prompt.answer("y");
    assert_refused(code, &output, "push of present layers");
    assert!(uploads_before.is_empty(), "no upload took place");
    reg.restart();
    let mut expected = old.blobs();
    expected.push(digest);
    pull_complete(&reg, "app:rebuilt", &expected);
    pull_complete(&reg, "app:t", &new.all());
}

#[test]
fn a_new_image_in_an_emptied_repository_at_the_prompt_is_not_removed() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    let gone_layer = layout.layer("gone");
    let gone = layout.image(&[&base, &gone_layer], "amd64");
    layout.tag("gone", &gone.manifest);
    push(&reg, &layout, "gone", "emptied", "t", Format::Oci);
    assert_eq!(reg.delete_manifest("emptied", &gone.digest()), 202);
    let prompt = start(&gc_args(&reg, &["--remove-empty-repos"]));
    assert!(
        prompt.text().contains("repositor"),
        "the repository is planned to go:\n{}",
        prompt.text()
    );
    let fresh_layer = layout.layer("fresh");
    let fresh = layout.image(&[&base, &fresh_layer], "amd64");
    layout.tag("fresh", &fresh.manifest);
    push(&reg, &layout, "fresh", "emptied", "t", Format::Oci);
    let (code, output) = prompt.answer("y");
    assert_refused(code, &output, "push into an emptied repository");
    reg.restart();
    pull_complete(&reg, "emptied:t", &fresh.all());
}
