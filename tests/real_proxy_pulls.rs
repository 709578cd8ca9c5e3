//! Retention by last pull read from a reverse proxy's access log: the real
//! registry (docker-registry 2.8) behind a real nginx and a real Caddy on
//! 127.0.0.1, pushed to and pulled from through the proxy, and regsweep
//! deciding from the proxy's own logs: nginx's default `combined`, nginx's
//! `combined` with the served `Docker-Content-Digest` appended, and Caddy's
//! JSON access log.
//!
//! Besides "pulled tags stay, the unpulled one goes" (with the log's format
//! detected, or forced with `--pull-log-format`), the logs that name
//! the digest served tell which image a pull by tag got: tag `moving` is
//! pulled while it points at image A, then moved to image B, which tag
//! `other` has pointed at, unpulled, for days. The plain log cannot tell A
//! from B, so `other` stays; the logs naming A let it go.
//!
//! Skips (passes, printing `skipping: ...`) when the registry, skopeo or
//! the proxy is missing, unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::BTreeMap;
use std::fs;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use registry_support::http::pull_manifest;
use registry_support::oci::Layout;
use registry_support::proxy::{AccessLog, CADDY_BIN, Kind, NGINX_BIN, Proxy, require_proxy};
use registry_support::pulls::{backdate, gc_args, policy_tags};
use registry_support::{Registry, gc, require_tools, skopeo, tree};
use serde_json::{Value, json};

const APP: &str = "team/app";

/// Every tag pushed, and how the test uses it.
const PULLED: &str = "pulled"; // skopeo copy: GET by tag
const HEADED: &str = "headed"; // containerd, image up to date: HEAD by tag only
const BY_DIGEST: &str = "by-digest"; // GET by digest only
const UNPULLED: &str = "unpulled";
const OTHER: &str = "other"; // image B, never pulled through its own name
const MOVING: &str = "moving"; // image A when pulled, then B
const TAGS: [&str; 6] = [PULLED, HEADED, BY_DIGEST, UNPULLED, OTHER, MOVING];

/// The layout's name for image A, which `moving` points at first.
const IMAGE_A: &str = "image-a";

/// A manifest request as a client makes it, through the proxy; answers 200
/// with the digest served.
fn call(proxy: &Proxy, method: &str, reference: &str, user_agent: &str) -> String {
    let url = proxy.url(&format!("/v2/{APP}/manifests/{reference}"));
    pull_manifest(&url, method, user_agent)
        .unwrap_or_else(|| panic!("{method} {url}: no Docker-Content-Digest"))
}

/// What a proxied registry went through.
struct Pulled {
    reg: Registry,
    proxy: Proxy,
    /// The image each tag was pushed with (`moving`: image A).
    digests: BTreeMap<&'static str, String>,
    /// When a pull window should start: 3 s before the pulls, and 3 s
    /// after the logs' first line (an access line counts to the end of its
    /// second).
    window_start: SystemTime,
}

/// A registry behind `kind`, every tag pushed through it long ago, some
/// pulled through it within the last seconds, `moving` moved from A to B
/// after its pull; the proxy and the registry stopped, the logs complete.
fn pulled_through(kind: Kind) -> Pulled {
    let reg = Registry::start();
    let mut proxy = match kind {
        Kind::Nginx => Proxy::nginx(&reg),
        Kind::Caddy => Proxy::caddy(&reg),
    };
    let started = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");
    for name in TAGS
        .iter()
        .copied()
        .filter(|t| *t != MOVING)
        .chain([IMAGE_A])
    {
        let own = layout.layer(name);
        let image = layout.image(&[&base, &own], "amd64");
        layout.tag(name, &image.manifest);
    }
    let mut digests = BTreeMap::new();
    for tag in TAGS {
        let source = if tag == MOVING { IMAGE_A } else { tag };
        let digest = proxy.push(&reg, &layout, source, APP, tag);
        backdate(reg.root(), APP, tag, &digest, 10);
        digests.insert(tag, digest);
    }
    let pulls_begin = started + Duration::from_secs(6);
    if let Ok(wait) = pulls_begin.duration_since(SystemTime::now()) {
        sleep(wait);
    }
    let window_start = SystemTime::now() - Duration::from_secs(3);

    proxy.pull(&format!("{APP}:{PULLED}"));
    let got = proxy.pull(&format!("{APP}:{MOVING}"));
    assert!(got.contains(&digests[MOVING]), "{MOVING} served A: {got:?}");
    assert_eq!(
        call(&proxy, "HEAD", HEADED, "containerd/1.7.13"),
        digests[HEADED]
    );
    call(&proxy, "GET", &digests[BY_DIGEST], "docker/27.3.1");
    // `moving` now points at B, `other`'s image: a push (never a pull).
    let b = proxy.push(&reg, &layout, OTHER, APP, MOVING);
    assert_eq!(b, digests[OTHER]);

    proxy.stop();
    let mut reg = reg;
    reg.stop();
    Pulled {
        reg,
        proxy,
        digests,
        window_start,
    }
}

/// `--keep-pulled-within` reaching back to `start` (a second earlier at
/// most) from now: computed for each run, whose own `now` is a little later.
fn window_from(start: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(start).unwrap().as_secs() + 1;
    format!("{secs}s")
}

/// The lines of `log` that read a manifest, printed for a failing (or
/// `--nocapture`) run: what the proxy really wrote.
fn manifest_reads(log: &AccessLog) -> String {
    fs::read_to_string(&log.path)
        .unwrap_or_else(|e| panic!("{}: {e}", log.path.display()))
        .lines()
        .filter(|l| l.contains("/manifests/") && !l.contains("PUT"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The dry-run verdicts of `log` (auto-detected, and forced to its own
/// format): pulled tags stay, `unpulled` goes, and `other` goes too when
/// the log names the image `moving`'s pull got. Forced to another format,
/// the log is rejected line by line.
fn verdicts_from(pulled: &Pulled, log: &AccessLog) {
    let root = pulled.reg.root().to_str().unwrap();
    let path = log.path.to_str().unwrap();
    eprintln!(
        "{path} ({}), manifest reads:\n{}",
        log.format,
        manifest_reads(log)
    );

    let forced = ["--pull-log-format", log.format];
    for extra in [&[][..], &forced[..]] {
        let window = window_from(pulled.window_start);
        let report = gc::regsweep_json(&[&gc_args(root, &window, path, true)[..], extra].concat());
        assert_eq!(report["exit_code"], 0, "{path} {extra:?}: {report:#}");
        let kept = policy_tags(&report, APP, "kept");
        let deleted = policy_tags(&report, APP, "deleted");
        let mut gone = vec![UNPULLED];
        if log.names_digest {
            gone.push(OTHER);
        }
        gone.sort_unstable();
        assert_eq!(
            deleted.keys().map(String::as_str).collect::<Vec<_>>(),
            gone,
            "{path} {extra:?}: kept {kept:#?}\ndeleted {deleted:#?}"
        );
        for tag in &gone {
            assert!(
                deleted[*tag].contains("not pulled or pushed within"),
                "{tag}: {deleted:?}"
            );
        }
        let reason = |tag: &str| kept[tag].as_str();
        assert!(reason(PULLED).contains("(GET by tag, skopeo"), "{kept:?}");
        assert!(
            reason(HEADED).contains("(HEAD by tag, containerd/1.7.13)"),
            "HEAD alone keeps: {kept:?}"
        );
        assert!(
            reason(BY_DIGEST).contains("(GET by digest, docker/27.3.1)"),
            "{kept:?}"
        );
        assert!(kept.contains_key(MOVING), "{kept:?}");
        if !log.names_digest {
            assert!(
                reason(OTHER).contains(&format!("GET by tag `{MOVING}`, skopeo")),
                "without the digest served, `{MOVING}`'s pull may have got B: {kept:?}"
            );
        }

        // The real log is read whole, in its own format.
        let file = &report["pull_logs"]["files"][0];
        assert_eq!(file["path"], path);
        assert_eq!(
            file["rejected"], 0,
            "every line of the real log is read: {file:#}"
        );
        assert_eq!(
            file["formats"],
            json!({log.format: file["lines"]}),
            "{file:#}"
        );
        assert_eq!(file["pulls"], 4, "the four reads of a manifest: {file:#}");
        assert_eq!(
            report["pull_logs"]["coverage"]["missing"],
            Value::Array(vec![]),
            "{report:#}"
        );
    }

    // Forced to another format, every line of the real log is rejected:
    // the logs then hold no dated line, and even a window of seconds is
    // refused.
    let wrong = if log.format == "combined" {
        "caddy-json"
    } else {
        "combined"
    };
    let forced_wrong = ["--pull-log-format", wrong];
    let window = window_from(pulled.window_start);
    let report =
        gc::regsweep_json(&[&gc_args(root, &window, path, true)[..], &forced_wrong].concat());
    assert_eq!(report["exit_code"], 2, "{path} as {wrong}: {report:#}");
    assert_eq!(report["kind"], "pull_logs_incomplete", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .starts_with("the pull logs hold no line with a time"),
        "{path} as {wrong}: {report:#}"
    );

    // Over a window the logs cannot reach, the pull rule is refused either
    // way: read in its own format the log covers its seconds; forced to
    // another, it has no line with a time. (2h: up to an hour between the
    // logs' end and now is taken as covered, whatever the logs hold.)
    let refused = gc::regsweep_json(&gc_args(root, "2h", path, true));
    assert_eq!(refused["kind"], "pull_logs_incomplete", "{refused:#}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("the pull logs cover "),
        "{refused:#}"
    );
    let before = tree::snapshot(pulled.reg.root());
    let args = [&gc_args(root, "2h", path, false)[..], &forced_wrong].concat();
    let refused = gc::regsweep(&args);
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(
        refused
            .stderr
            .contains("the pull logs hold no line with a time"),
        "{refused}"
    );
    assert!(refused.stderr.contains("nothing was deleted"), "{refused}");
    assert_eq!(
        tree::snapshot(pulled.reg.root()),
        before,
        "a refused run changes nothing"
    );
}

/// The whole story through `kind`: each of its logs decides the dry run,
/// then the log naming the digests served decides the sweep, after which
/// every tag kept still pulls.
fn pulls_through_a_proxy_keep_their_tags(kind: Kind) {
    let pulled = pulled_through(kind);
    let logs = pulled.proxy.access_logs();
    for log in &logs {
        verdicts_from(&pulled, log);
    }

    let log = logs.iter().find(|l| l.names_digest).unwrap();
    let root = pulled.reg.root().to_str().unwrap();
    let window = window_from(pulled.window_start);
    let swept = gc::regsweep_json(&gc_args(root, &window, log.path.to_str().unwrap(), false));
    assert_eq!(swept["exit_code"], 0, "{swept:#}");
    assert_eq!(swept["deleted"]["tags"], 2, "{swept:#}");
    let tags_dir = tree::v2(pulled.reg.root())
        .join("repositories")
        .join(APP)
        .join("_manifests/tags");
    for tag in TAGS {
        let stays = tag != UNPULLED && tag != OTHER;
        assert_eq!(tags_dir.join(tag).exists(), stays, "{tag}");
    }
    assert!(
        !tree::revision_dir(pulled.reg.root(), APP, &pulled.digests[UNPULLED]).exists(),
        "the unpulled image went with its tag"
    );
    let Pulled {
        mut reg, digests, ..
    } = pulled;
    reg.restart();
    for tag in TAGS.iter().filter(|t| **t != UNPULLED && **t != OTHER) {
        skopeo::pull(&reg, &format!("{APP}:{tag}"));
    }
    assert_eq!(
        reg.tag_digest(APP, MOVING),
        digests[OTHER],
        "B stays, tagged `{MOVING}`"
    );
}

#[test]
fn pulls_through_nginx_keep_their_tags_and_its_digest_log_names_the_image_served() {
    if !require_tools() || !require_proxy(NGINX_BIN) {
        return;
    }
    pulls_through_a_proxy_keep_their_tags(Kind::Nginx);
}

#[test]
fn pulls_through_caddy_keep_their_tags_and_its_log_names_the_image_served() {
    if !require_tools() || !require_proxy(CADDY_BIN) {
        return;
    }
    pulls_through_a_proxy_keep_their_tags(Kind::Caddy);
}
