//! Retention by last pull against the real registry (docker-registry 2.8)
//! and its own logs: push tags, backdate their pushes, pull some the ways
//! clients do (skopeo's GET by tag, containerd's HEAD by tag, HEAD then GET
//! by digest, a GET by digest alone), then sweep with a policy that would
//! delete every tag and `--keep-pulled-within`, reading the registry's app
//! log (text and JSON formatter) or its access log: the pulled tags stay,
//! the unpulled one goes, and logs that do not reach over the window are
//! refused with nothing deleted.
//!
//! Skips (passes, printing `skipping: ...`) when the tools are missing,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use registry_support::http::pull_manifest;
use registry_support::oci::Layout;
use registry_support::pulls::{assert_read_whole, backdate, gc_args, policy_tags};
use registry_support::skopeo::{self, Format, push};
use registry_support::{Registry, gc, require_tools, tree};

const APP: &str = "team/app";

/// Every tag pushed, and how the test uses it.
const PULLED: &str = "pulled"; // skopeo copy: GET by tag
const HEADED: &str = "headed"; // containerd, image up to date: HEAD by tag only
const RESOLVED: &str = "resolved"; // containerd pull: HEAD by tag, GET by digest
const BY_DIGEST: &str = "by-digest"; // GET by digest only
const ALIAS: &str = "alias"; // same image as `pulled`, never named
const UNPULLED: &str = "unpulled";
const TAGS: [&str; 6] = [PULLED, HEADED, RESOLVED, BY_DIGEST, ALIAS, UNPULLED];

/// A request as a client makes it; answers 200.
fn call(reg: &Registry, method: &str, reference: &str, user_agent: &str) -> Option<String> {
    pull_manifest(
        &reg.url(&format!("/v2/{APP}/manifests/{reference}")),
        method,
        user_agent,
    )
}

/// A registry logging with `formatter`, its tags pushed long ago and some
/// pulled within the last seconds; returns it stopped, with the time a pull
/// window should start at: 3 s before the pulls, and 3 s after the logs'
/// first line (an access line counts to the end of its second).
fn pulled_registry(
    formatter: &'static str,
) -> (Registry, BTreeMap<&'static str, String>, SystemTime) {
    let mut reg = Registry::start_logging(formatter);
    let started = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");
    let mut digests = BTreeMap::new();
    for tag in TAGS {
        let source = if tag == ALIAS { PULLED } else { tag };
        if tag != ALIAS {
            let own = layout.layer(tag);
            let image = layout.image(&[&base, &own], "amd64");
            layout.tag(tag, &image.manifest);
        }
        digests.insert(tag, push(&reg, &layout, source, APP, tag, Format::Oci));
    }
    assert_eq!(digests[ALIAS], digests[PULLED]);
    for tag in TAGS {
        backdate(reg.root(), APP, tag, &digests[tag], 10);
    }
    let pulls_begin = started + Duration::from_secs(6);
    if let Ok(wait) = pulls_begin.duration_since(SystemTime::now()) {
        sleep(wait);
    }
    let window_start = SystemTime::now() - Duration::from_secs(3);

    skopeo::pull(&reg, &format!("{APP}:{PULLED}"));
    assert!(call(&reg, "HEAD", HEADED, "containerd/1.7.13").is_some());
    let served = call(&reg, "HEAD", RESOLVED, "containerd/1.7.13").expect("a digest");
    assert_eq!(served, digests[RESOLVED]);
    call(&reg, "GET", &served, "containerd/1.7.13");
    call(&reg, "GET", &digests[BY_DIGEST], "docker/27.3.1");
    reg.stop();
    (reg, digests, window_start)
}

/// `--keep-pulled-within` reaching back to `start` (a second earlier at
/// most) from now: computed for each run, whose own `now` is a little later.
fn window_from(start: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(start).unwrap().as_secs() + 1;
    format!("{secs}s")
}

/// Runs the whole story on a registry logging with `formatter`.
fn pulled_tags_stay_and_the_unpulled_one_goes(formatter: &'static str) {
    let (reg, digests, window_start) = pulled_registry(formatter);
    let root = reg.root().to_str().unwrap().to_owned();
    let app_log = reg.app_log();
    let access_log = reg.access_log();
    let format_name = format!("distribution-{formatter}");

    // Without the pull rule, the policy deletes every tag.
    let without = gc::regsweep_json(&[
        "gc",
        "--dry-run",
        "--keep-last",
        "0",
        "--allow-empty-repos",
        &root,
    ]);
    assert_eq!(
        policy_tags(&without, APP, "deleted").len(),
        TAGS.len(),
        "{without:#}"
    );

    for (log, format) in [(&app_log, format_name.as_str()), (&access_log, "combined")] {
        let log = log.to_str().unwrap();
        let window = window_from(window_start);
        let report = gc::regsweep_json(&gc_args(&root, &window, log, true));
        assert_eq!(report["exit_code"], 0, "{log}: {report:#}");
        let kept = policy_tags(&report, APP, "kept");
        let deleted = policy_tags(&report, APP, "deleted");
        assert_eq!(
            deleted.keys().collect::<Vec<_>>(),
            [UNPULLED],
            "{log}: {report:#}"
        );
        assert!(
            deleted[UNPULLED].contains("not pulled or pushed within"),
            "{deleted:?}"
        );
        assert_eq!(kept.len(), TAGS.len() - 1, "{log}: {kept:?}");
        let reason = |tag: &str| kept[tag].as_str();
        assert!(reason(PULLED).contains("(GET by tag, skopeo"), "{kept:?}");
        assert!(
            reason(HEADED).contains("(HEAD by tag, containerd/1.7.13)"),
            "HEAD alone keeps: {kept:?}"
        );
        assert!(
            reason(RESOLVED).contains("GET by digest, containerd/1.7.13")
                || reason(RESOLVED).contains("HEAD by tag, containerd/1.7.13"),
            "{kept:?}"
        );
        assert!(
            reason(BY_DIGEST).contains("(GET by digest, docker/27.3.1)"),
            "{kept:?}"
        );
        assert!(
            reason(ALIAS).contains(&format!("GET by tag `{PULLED}`, skopeo")),
            "its image was pulled through another tag: {kept:?}"
        );

        assert_read_whole(&report, log, format);
        let pulls = report["pull_logs"]["files"][0]["pulls"].as_u64().unwrap();
        assert!(pulls >= 5, "{report:#}");
    }

    // Logs of a few seconds do not cover an hour: refused, nothing deleted.
    let before = tree::snapshot(reg.root());
    let log = app_log.to_str().unwrap();
    let refused = gc::regsweep(&gc_args(&root, "1h", log, false));
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(refused.stderr.contains("missing"), "{refused}");
    assert!(
        refused.stderr.contains("--pull-log-assume-complete"),
        "{refused}"
    );
    assert!(refused.stderr.contains("nothing was deleted"), "{refused}");
    assert_eq!(
        tree::snapshot(reg.root()),
        before,
        "a refused run changes nothing"
    );
    let refused = gc::regsweep_json(&gc_args(&root, "1h", log, true));
    assert_eq!(refused["kind"], "pull_logs_incomplete", "{refused:#}");

    // Taken as complete, the short logs decide alone: over an hour, the
    // check after each push (a HEAD by tag) is a pull too.
    let assumed = gc::regsweep_json(
        &[
            &gc_args(&root, "1h", log, true)[..],
            &["--pull-log-assume-complete"],
        ]
        .concat(),
    );
    assert_eq!(assumed["exit_code"], 0, "{assumed:#}");
    assert_eq!(
        policy_tags(&assumed, APP, "deleted").len(),
        0,
        "{assumed:#}"
    );
    let kept = policy_tags(&assumed, APP, "kept");
    assert!(kept[UNPULLED].contains("(HEAD by tag, ureq"), "{kept:?}");
    assert_eq!(assumed["pull_logs"]["coverage"]["assumed_complete"], true);

    // The sweep itself.
    let window = window_from(window_start);
    let swept = gc::regsweep_json(&gc_args(&root, &window, log, false));
    assert_eq!(swept["exit_code"], 0, "{swept:#}");
    assert_eq!(swept["deleted"]["tags"], 1, "{swept:#}");
    let tags_dir = tree::v2(reg.root())
        .join("repositories")
        .join(APP)
        .join("_manifests/tags");
    for tag in TAGS {
        assert_eq!(tags_dir.join(tag).exists(), tag != UNPULLED, "{tag}");
    }
    let unpulled_revision = tree::revision_dir(reg.root(), APP, &digests[UNPULLED]);
    assert!(
        !unpulled_revision.exists(),
        "the unpulled image went with its tag"
    );
    let mut reg = reg;
    reg.restart();
    for tag in TAGS.iter().filter(|t| **t != UNPULLED) {
        skopeo::pull(&reg, &format!("{APP}:{tag}"));
    }
}

#[test]
fn pulls_in_the_text_app_log_and_the_access_log_keep_their_tags() {
    if !require_tools() {
        return;
    }
    pulled_tags_stay_and_the_unpulled_one_goes("text");
}

#[test]
fn pulls_in_the_json_app_log_and_the_access_log_keep_their_tags() {
    if !require_tools() {
        return;
    }
    pulled_tags_stay_and_the_unpulled_one_goes("json");
}
