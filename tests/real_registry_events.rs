//! Retention by last pull against the real registry (docker-registry 2.8)
//! and its notification events: the registry POSTs them to a small
//! endpoint run here, which appends each body to a file, as operators keep
//! them. Tags pushed long ago (backdated) are pulled by tag (skopeo's GET,
//! containerd's HEAD) and by digest; a sweep with a policy that would delete
//! every tag and `--keep-pulled-within`, reading that file, keeps the pulled
//! tags and deletes the unpulled one.
//!
//! Skips (passes, printing `skipping: ...`) when the tools are missing,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use registry_support::http::pull_manifest;
use registry_support::oci::Layout;
use registry_support::pulls::{backdate, gc_args, policy_tags};
use registry_support::skopeo::{self, Format, push};
use registry_support::{Registry, gc, require_tools, tree};
use serde_json::Value;

const APP: &str = "team/app";
const PULLED: &str = "pulled"; // skopeo copy: GET by tag
const HEADED: &str = "headed"; // containerd, image up to date: HEAD by tag only
const BY_DIGEST: &str = "by-digest"; // GET by digest only
const UNPULLED: &str = "unpulled";
const TAGS: [&str; 4] = [PULLED, HEADED, BY_DIGEST, UNPULLED];

/// How long the registry may take to deliver its events.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// An endpoint on 127.0.0.1 answering every request 200 and appending each
/// POST body (and a line end) to `file`. Its thread ends with the test.
fn endpoint(file: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let file = file.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = receive(stream, &file);
        }
    });
    url
}

/// One HTTP/1.1 request; the connection is closed after the answer.
fn receive(stream: TcpStream, file: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut out = fs::File::options().create(true).append(true).open(file)?;
    out.write_all(&body)?;
    out.write_all(b"\n")?;
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// The events in `file` so far (a body cut by a concurrent write ends the
/// list).
fn events_in(file: &Path) -> Vec<Value> {
    let text = fs::read_to_string(file).unwrap_or_default();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .flat_map(|envelope| envelope["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Waits until the registry has delivered a manifest pull sent with
/// `user_agent`.
fn wait_for_pull(file: &Path, user_agent: &str) {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let delivered = events_in(file).iter().any(|e| {
            e["action"] == "pull"
                && e["request"]["useragent"] == user_agent
                && e["target"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/manifests/"))
        });
        if delivered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no pull event from {user_agent} within {DELIVERY_TIMEOUT:?}: {:#?}",
            events_in(file)
        );
        sleep(Duration::from_millis(100));
    }
}

/// A request as a client makes it; answers 200.
fn call(reg: &Registry, method: &str, reference: &str, user_agent: &str) {
    let url = reg.url(&format!("/v2/{APP}/manifests/{reference}"));
    pull_manifest(&url, method, user_agent);
}

#[test]
fn pulls_in_the_registrys_notification_events_keep_their_tags() {
    if !require_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events: PathBuf = dir.path().join("events.json");
    let mut reg = Registry::start_notifying(&endpoint(&events));
    let started = SystemTime::now();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");
    let mut digests = BTreeMap::new();
    for tag in TAGS {
        let own = layout.layer(tag);
        let image = layout.image(&[&base, &own], "amd64");
        layout.tag(tag, &image.manifest);
        digests.insert(tag, push(&reg, &layout, tag, APP, tag, Format::Oci));
    }
    for tag in TAGS {
        backdate(reg.root(), APP, tag, &digests[tag], 10);
    }
    // The pushes' own events fall before the window; the pulls within it.
    let pulls_begin = started + Duration::from_secs(6);
    if let Ok(wait) = pulls_begin.duration_since(SystemTime::now()) {
        sleep(wait);
    }
    let window_start = SystemTime::now() - Duration::from_secs(3);
    skopeo::pull(&reg, &format!("{APP}:{PULLED}"));
    call(&reg, "HEAD", HEADED, "containerd/1.7.13");
    call(&reg, "GET", &digests[BY_DIGEST], "docker/27.3.1");
    wait_for_pull(&events, "docker/27.3.1");
    wait_for_pull(&events, "containerd/1.7.13");
    reg.stop();

    let root = reg.root().to_str().unwrap().to_owned();
    let events_arg = events.to_str().unwrap();
    let window = || {
        let secs = SystemTime::now()
            .duration_since(window_start)
            .unwrap()
            .as_secs()
            + 1;
        format!("{secs}s")
    };

    // Without the events, the policy deletes every tag.
    let without = gc::regsweep_json(&[
        "gc",
        "--dry-run",
        "--keep-last",
        "0",
        "--allow-empty-repos",
        &root,
    ]);
    assert_eq!(policy_tags(&without, APP, "deleted").len(), TAGS.len());

    let window_now = window();
    let report = gc::regsweep_json(&gc_args(&root, &window_now, events_arg, true));
    assert_eq!(report["exit_code"], 0, "{report:#}");
    let deleted = policy_tags(&report, APP, "deleted");
    let kept = policy_tags(&report, APP, "kept");
    assert_eq!(deleted.keys().collect::<Vec<_>>(), [UNPULLED], "{report:#}");
    assert!(kept[PULLED].contains("(GET by tag, skopeo"), "{kept:?}");
    assert!(
        kept[HEADED].contains("(HEAD by tag, containerd/1.7.13)"),
        "{kept:?}"
    );
    assert!(
        kept[BY_DIGEST].contains("(GET by digest, docker/27.3.1)"),
        "{kept:?}"
    );
    let file = &report["pull_logs"]["files"][0];
    assert_eq!(file["path"], events_arg);
    assert_eq!(file["rejected"], 0, "every event is read: {file:#}");
    assert_eq!(file["formats"]["events"], file["lines"], "{file:#}");
    assert!(file["pulls"].as_u64().unwrap() >= 3, "{file:#}");
    assert_eq!(
        report["pull_logs"]["coverage"]["missing"],
        Value::Array(vec![]),
        "{report:#}"
    );

    // The sweep itself.
    let window_now = window();
    let swept = gc::regsweep_json(&gc_args(&root, &window_now, events_arg, false));
    assert_eq!(swept["exit_code"], 0, "{swept:#}");
    assert_eq!(swept["deleted"]["tags"], 1, "{swept:#}");
    let tags_dir = tree::v2(reg.root())
        .join("repositories")
        .join(APP)
        .join("_manifests/tags");
    for tag in TAGS {
        assert_eq!(tags_dir.join(tag).exists(), tag != UNPULLED, "{tag}");
    }
    reg.restart();
    for tag in [PULLED, HEADED, BY_DIGEST] {
        skopeo::pull(&reg, &format!("{APP}:{tag}"));
    }
}
