//! Which image a pull by tag got, narrowed by the response's content type
//! and size, against the real registry (docker-registry 2.8) and its own
//! logs. Its app log (text and JSON formatter) gives each response's
//! content type and size but not the digest a GET by tag served; its access
//! log gives neither type nor digest.
//!
//! Tag `moving` is pulled while it points at image A, then moved to image
//! B, which tag `other` has pointed at, unpulled, for days. B's manifest is
//! larger than A's (one more layer): the app log's size tells that the pull
//! got A, so `other` goes. The access log cannot tell, so `other` stays, as
//! it does when the logged size or content type (edited into a copy of the
//! app log) fits neither image.
//!
//! Tag `multi` is pulled by an old client (schema 2 only) while it points at
//! a Docker manifest list L, which the registry answers with L's
//! linux/amd64 child, then moved to image I, which tag `lone` has pointed
//! at, unpulled, for days. The response is an image manifest whose size is
//! not I's: only L could have served it, so `lone` goes.
//!
//! Skips (passes, printing `skipping: ...`) when the tools are missing,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use registry_support::http::agent;
use registry_support::oci::{Layout, OCI_INDEX};
use registry_support::pulls::{assert_read_whole, backdate, gc_args, policy_tags};
use registry_support::skopeo::{self, Format, push, push_unchecked};
use registry_support::{Registry, gc, require_tools, tree};

const APP: &str = "team/app";
const MOVING: &str = "moving"; // image A when pulled, then B
const OTHER: &str = "other"; // image B, never pulled through its own name

const LISTS: &str = "team/lists";
const MULTI: &str = "multi"; // manifest list L when pulled, then image I
const LONE: &str = "lone"; // image I, never pulled through its own name

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What the registry went through, and the sizes the narrowing looks at.
struct Story {
    reg: Registry,
    /// Images A and B (`moving` before and after its move; B is `other`).
    a: String,
    b: String,
    /// Image I (`multi` after its move, and `lone`).
    image: String,
    /// The child of L the old client got.
    child: String,
    /// When a pull window should start: 3 s before the pulls, and 3 s after
    /// the logs' first line (an access line counts to the end of its
    /// second).
    window_start: SystemTime,
}

impl Story {
    /// The size of the manifest `digest` as the registry stores it.
    fn size(&self, digest: &str) -> u64 {
        let path = tree::blob_data(self.reg.root(), digest);
        fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len()
    }
}

/// The digest `repo:tag` points at in the storage of a stopped registry.
fn current(root: &Path, repo: &str, tag: &str) -> String {
    let link = tree::v2(root)
        .join("repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag)
        .join("current/link");
    fs::read_to_string(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()))
}

/// A GET by tag from a client that knows schema 2 only, as an old Docker
/// does: the registry answers a manifest list with its linux/amd64 child.
/// Returns the digest and content type served.
fn old_client_get(reg: &Registry, repo: &str, tag: &str) -> (String, String) {
    let url = reg.url(&format!("/v2/{repo}/manifests/{tag}"));
    let reply = agent(Duration::from_secs(30))
        .get(&url)
        .header("Accept", DOCKER_MANIFEST)
        .header("User-Agent", "docker/1.9.1")
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(reply.status(), 200, "GET {url}");
    let header = |name: &str| {
        reply
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("GET {url}: no {name}"))
    };
    (header("Docker-Content-Digest"), header("Content-Type"))
}

/// A registry logging with `formatter`: every tag pushed long ago, `moving`
/// and `multi` pulled within the last seconds, then moved; returned
/// stopped, its logs complete.
fn pulled_registry(formatter: &'static str) -> Story {
    let mut reg = Registry::start_logging(formatter);
    let started = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");

    // B has one layer more than A: a larger manifest of the same type.
    let image_a = layout.image(&[&base, &layout.layer("a")], "amd64");
    let image_b = layout.image(&[&base, &layout.layer("b"), &layout.layer("b2")], "amd64");
    layout.tag("image-a", &image_a.manifest);
    layout.tag("image-b", &image_b.manifest);
    let a = push(&reg, &layout, "image-a", APP, MOVING, Format::Oci);
    let b = push(&reg, &layout, "image-b", APP, OTHER, Format::Oci);
    assert_ne!(image_a.manifest.size, image_b.manifest.size);

    // I has one layer more than L's children.
    let amd = layout.image(&[&base, &layout.layer("amd")], "amd64");
    let arm = layout.image(&[&base, &layout.layer("arm")], "arm64");
    let index = layout.index(&[&amd, &arm]);
    layout.tag("list", &index.manifest);
    let image_i = layout.image(&[&base, &layout.layer("i"), &layout.layer("i2")], "amd64");
    layout.tag("image-i", &image_i.manifest);
    let list = push(&reg, &layout, "list", LISTS, MULTI, Format::V2s2);
    let image = push(&reg, &layout, "image-i", LISTS, LONE, Format::V2s2);
    // Read before the pulls: a GET by digest of L is a pull of it.
    let children = reg.index_children(LISTS, &list);

    for (repo, tag, digest) in [
        (APP, MOVING, &a),
        (APP, OTHER, &b),
        (LISTS, MULTI, &list),
        (LISTS, LONE, &image),
    ] {
        backdate(reg.root(), repo, tag, digest, 10);
    }
    let pulls_begin = started + Duration::from_secs(6);
    if let Ok(wait) = pulls_begin.duration_since(SystemTime::now()) {
        sleep(wait);
    }
    let window_start = SystemTime::now() - Duration::from_secs(3);

    let got = skopeo::pull(&reg, &format!("{APP}:{MOVING}"));
    assert!(got.contains(&a), "{MOVING} served A: {got:?}");
    let (child, content_type) = old_client_get(&reg, LISTS, MULTI);
    assert_eq!(content_type, DOCKER_MANIFEST);
    assert!(children.contains(&child), "an old client gets a child of L");
    push_unchecked(&reg, &layout, "image-b", (APP, MOVING), Format::Oci);
    push_unchecked(&reg, &layout, "image-i", (LISTS, MULTI), Format::V2s2);
    reg.stop();

    assert_eq!(current(reg.root(), APP, MOVING), b, "{MOVING} moved to B");
    assert_eq!(
        current(reg.root(), LISTS, MULTI),
        image,
        "{MULTI} moved to I"
    );
    let story = Story {
        reg,
        a,
        b,
        image,
        child,
        window_start,
    };
    assert_ne!(story.size(&story.a), story.size(&story.b));
    assert_ne!(story.size(&story.child), story.size(&story.image));
    story
}

/// `--keep-pulled-within` reaching back to `start` (a second earlier at
/// most) from now: computed for each run, whose own `now` is a little later.
fn window_from(start: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(start).unwrap().as_secs() + 1;
    format!("{secs}s")
}

/// The index of the one line of `log` that completes a GET of
/// `repo:tag`'s manifest (a line of the app log, text or JSON).
fn get_by_tag_line(log: &str, repo: &str, tag: &str) -> usize {
    let uri = format!("/v2/{repo}/manifests/{tag}");
    let found: Vec<usize> = log
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            line.contains("http.response.written")
                && (line.contains("http.request.method=GET")
                    || line.contains(r#""http.request.method":"GET""#))
                && (line.contains(&format!("={uri} ")) || line.contains(&format!("\"{uri}\"")))
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 1, "one GET of {uri} in:\n{log}");
    found[0]
}

/// `line` with the value of `field` replaced by `value`, in the line's own
/// syntax (`field=value` or `"field":value`, quoted as it was).
fn with_value(line: &str, field: &str, value: &str) -> String {
    let text_key = format!("{field}=");
    let json_key = format!("\"{field}\":");
    let start = [text_key, json_key]
        .iter()
        .find_map(|key| line.find(key.as_str()).map(|at| at + key.len()))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    let rest = &line[start..];
    let (quoted, len) = match rest.strip_prefix('"') {
        Some(inner) => (true, inner.find('"').expect("closing quote") + 2),
        None => (false, rest.find([' ', ',', '}']).unwrap_or(rest.len())),
    };
    let value = if quoted {
        format!("\"{value}\"")
    } else {
        value.to_owned()
    };
    format!("{}{value}{}", &line[..start], &line[start + len..])
}

/// A copy of the app log in `dir` with `field` of the GET of `repo:tag`
/// set to `value`, every other byte as the registry wrote it.
fn edited_copy(app_log: &Path, dir: &Path, edit: (&str, &str, &str, &str)) -> PathBuf {
    let (repo, tag, field, value) = edit;
    let log = fs::read_to_string(app_log).unwrap();
    let at = get_by_tag_line(&log, repo, tag);
    let lines: Vec<String> = log
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == at {
                let edited = with_value(line, field, value);
                assert_ne!(edited, line, "{field} of {tag}'s GET is already {value}");
                edited
            } else {
                line.to_owned()
            }
        })
        .collect();
    let path = dir.join(format!("{tag}-{field}.log"));
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The tags of a repository the policy deletes, and the reasons of those
/// it keeps.
type Verdicts = (Vec<String>, BTreeMap<String, String>);

/// The dry run over `log` (in `format`): the verdicts in `team/app` and
/// `team/lists`, and how many pulls by tag the log's responses narrowed.
fn verdicts(story: &Story, log: &Path, format: &str) -> ([Verdicts; 2], u64) {
    let root = story.reg.root().to_str().unwrap();
    let path = log.to_str().unwrap();
    let window = window_from(story.window_start);
    let report = gc::regsweep_json(&gc_args(root, &window, path, true));
    assert_eq!(report["exit_code"], 0, "{path}: {report:#}");

    assert_read_whole(&report, path, format);

    let verdicts = [APP, LISTS].map(|repo| {
        let deleted = policy_tags(&report, repo, "deleted").into_keys().collect();
        (deleted, policy_tags(&report, repo, "kept"))
    });
    let narrowed = report["pull_logs"]["narrowed"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pull_logs.narrowed: {report:#}"));
    (verdicts, narrowed)
}

/// Runs the whole story on a registry logging with `formatter`.
fn a_pull_by_tag_is_narrowed_by_what_the_app_log_says_was_served(formatter: &'static str) {
    let story = pulled_registry(formatter);
    let app_log = story.reg.app_log();
    let app_format = format!("distribution-{formatter}");
    let log = fs::read_to_string(&app_log).unwrap();
    let manifest_reads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/manifests/") && l.contains("http.response.written"))
        .filter(|l| !l.contains("PUT"))
        .collect();
    eprintln!(
        "{formatter} app log, manifest reads:\n{}",
        manifest_reads.join("\n")
    );

    // The access log gives no content type: no narrowing, both pulls may
    // have got the image their tag points at now.
    let ([(app_deleted, app_kept), (lists_deleted, lists_kept)], narrowed) =
        verdicts(&story, &story.reg.access_log(), "combined");
    assert_eq!(narrowed, 0);
    assert_eq!(app_deleted, Vec::<String>::new(), "kept {app_kept:#?}");
    let reason = app_kept[OTHER].as_str();
    assert!(
        reason.contains(&format!("GET by tag `{MOVING}`")),
        "{reason}"
    );
    assert_eq!(lists_deleted, Vec::<String>::new(), "kept {lists_kept:#?}");
    let reason = lists_kept[LONE].as_str();
    assert!(
        reason.contains(&format!("GET by tag `{MULTI}`")),
        "{reason}"
    );

    // The app log tells A from B and L's child from I: `other` and `lone`
    // go, their images unpulled.
    let ([(app_deleted, app_kept), (lists_deleted, lists_kept)], narrowed) =
        verdicts(&story, &app_log, &app_format);
    // (The checks by tag after the first pushes, before the window, are
    // narrowed too.)
    assert!(
        narrowed >= 2,
        "the pulls of `{MOVING}` and `{MULTI}`: {narrowed}"
    );
    assert_eq!(app_deleted, [OTHER], "kept {app_kept:#?}");
    assert!(app_kept.contains_key(MOVING), "{app_kept:#?}");
    assert_eq!(
        lists_deleted,
        [LONE],
        "an image manifest of the list child's size: L served it; kept {lists_kept:#?}"
    );
    assert!(lists_kept.contains_key(MULTI), "{lists_kept:#?}");

    // Copies of the app log with one field of one line changed.
    let dir = tempfile::tempdir().unwrap();
    let unmatched_size = (story.size(&story.a).max(story.size(&story.b)) + 1).to_string();
    let image_size = story.size(&story.image).to_string();
    let edits = [
        // A size neither A nor B has: nothing fits, so both may have been
        // served and `other` stays.
        (
            (APP, MOVING, "http.response.written", &*unmatched_size),
            true,
            false,
        ),
        // A's size but a list's type, which neither image is: the same.
        (
            (APP, MOVING, "http.response.contenttype", OCI_INDEX),
            true,
            false,
        ),
        // I's size: I fits as well as L (whose child an old client gets).
        (
            (LISTS, MULTI, "http.response.written", &*image_size),
            false,
            true,
        ),
    ];
    for (edit, other_stays, lone_stays) in edits {
        let copy = edited_copy(&app_log, dir.path(), edit);
        let ([(app_deleted, app_kept), (lists_deleted, lists_kept)], _) =
            verdicts(&story, &copy, &app_format);
        assert_eq!(
            app_deleted.is_empty(),
            other_stays,
            "{edit:?}: {app_kept:#?}"
        );
        assert_eq!(
            lists_deleted.is_empty(),
            lone_stays,
            "{edit:?}: {lists_kept:#?}"
        );
        if other_stays {
            let reason = app_kept[OTHER].as_str();
            assert!(
                reason.contains(&format!("GET by tag `{MOVING}`")),
                "{reason}"
            );
        } else {
            assert_eq!(app_deleted, [OTHER], "{edit:?}: {app_kept:#?}");
        }
        if lone_stays {
            let reason = lists_kept[LONE].as_str();
            assert!(
                reason.contains(&format!("GET by tag `{MULTI}`")),
                "{reason}"
            );
        } else {
            assert_eq!(lists_deleted, [LONE], "{edit:?}: {lists_kept:#?}");
        }
    }
}

#[test]
fn a_pull_by_tag_is_narrowed_by_the_type_and_size_in_the_text_app_log() {
    if !require_tools() {
        return;
    }
    a_pull_by_tag_is_narrowed_by_what_the_app_log_says_was_served("text");
}

#[test]
fn a_pull_by_tag_is_narrowed_by_the_type_and_size_in_the_json_app_log() {
    if !require_tools() {
        return;
    }
    a_pull_by_tag_is_narrowed_by_what_the_app_log_says_was_served("json");
}
