//! Retention policies, protected references and `du`, end to end: the real
//! binary on small storage trees with controlled push times (the mtime of
//! each tag's `current/link`). Expectations come from the policy rules of
//! the README, not from the implementation.

mod layout_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use layout_support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// Sets the push time of `repo:tag` to `days` days ago.
fn pushed(root: &Path, repo: &str, tag: &str, days: u64) {
    let t = SystemTime::now() - DAY * days as u32;
    fs::File::open(tag_current_link(root, repo, tag))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Pushes `manifest` as `repo:tag`, pushed `days` days ago.
fn push_at(b: &mut LayoutBuilder, repo: &str, tag: &str, manifest: &Manifest, days: u64) {
    b.push(repo, tag, manifest);
    pushed(b.root(), repo, tag, days);
}

/// `gc --json --min-age 0 -y ARGS ROOT` (the trees are fresh: the minimum
/// age would hold everything back).
fn gc(root: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--min-age", "0", "-y"];
    all.extend_from_slice(args);
    gc_json(root, &all)
}

fn gc_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Value, std::process::Output) {
    let mut all = vec!["--min-age", "0", "-y"];
    all.extend_from_slice(args);
    gc_json_env(root, &all, env)
}

/// Tags on disk in `repo`.
fn tags(root: &Path, repo: &str) -> BTreeSet<String> {
    let dir = repo_dir(root, repo).join("_manifests/tags");
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The policy section of a report for `repo`.
fn policy_repo<'a>(report: &'a Value, repo: &str) -> &'a Value {
    report["policy"]["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("no policy.repositories: {report:#}"))
        .iter()
        .find(|r| r["name"] == repo)
        .unwrap_or_else(|| panic!("no policy entry for {repo}: {:#}", report["policy"]))
}

/// `tag → (rule, reason)` of the tags a report lists as kept or deleted.
fn decided(report: &Value, repo: &str, which: &str) -> BTreeMap<String, (String, String)> {
    policy_repo(report, repo)[which]
        .as_array()
        .unwrap_or_else(|| panic!("no {which}[]"))
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_owned(),
                (
                    t["rule"].as_str().unwrap().to_owned(),
                    t["reason"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

fn names(map: &BTreeMap<String, (String, String)>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

fn warning_kinds(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn size_of(root: &Path, digest: &str) -> u64 {
    fs::metadata(blob_data(root, digest)).unwrap().len()
}

/// The blobs of an image that only it has: manifest, config, own layer.
fn own_bytes(root: &Path, m: &Manifest, shared: &[&Desc]) -> u64 {
    let shared: BTreeSet<&str> = shared.iter().map(|d| d.digest.as_str()).collect();
    size_of(root, &m.digest)
        + m.stored_blobs()
            .filter(|d| !shared.contains(d.digest.as_str()))
            .map(|d| size_of(root, &d.digest))
            .sum::<u64>()
}

fn assert_image_gone(root: &Path, repo: &str, m: &Manifest, shared: &[&Desc]) {
    assert_revision_gone(root, repo, &m.digest);
    assert_blob_gone(root, &m.digest);
    let shared: BTreeSet<&str> = shared.iter().map(|d| d.digest.as_str()).collect();
    for blob in m
        .stored_blobs()
        .filter(|d| !shared.contains(d.digest.as_str()))
    {
        assert_blob_gone(root, &blob.digest);
        assert!(
            !layer_link(root, repo, &blob.digest).exists(),
            "layer link of {} left in {repo}",
            blob.digest
        );
    }
}

/// `team/app`: `v1`..`v4` pushed 40, 30, 20, 10 days ago and `latest` 50
/// days ago, every image with a layer of its own and the shared `base`.
struct App {
    b: LayoutBuilder,
    base: Desc,
    images: BTreeMap<&'static str, Manifest>,
}

const APP: &str = "team/app";

impl App {
    fn new() -> App {
        let mut b = LayoutBuilder::new();
        let base = b.layer("base");
        let mut images = BTreeMap::new();
        for (tag, days) in [
            ("v1", 40),
            ("v2", 30),
            ("v3", 20),
            ("v4", 10),
            ("latest", 50),
        ] {
            let image = b.simple_image(tag, &[&base]);
            push_at(&mut b, APP, tag, &image, days);
            images.insert(tag, image);
        }
        App { b, base, images }
    }

    fn root(&self) -> &Path {
        self.b.root()
    }

    fn image(&self, tag: &str) -> &Manifest {
        &self.images[tag]
    }
}

#[test]
fn keep_last_deletes_older_tags_with_their_exclusive_blobs_and_keeps_latest() {
    let app = App::new();
    let root = app.root();
    let v1_bytes = own_bytes(root, app.image("v1"), &[&app.base]);
    let report = gc(root, &["--keep-last", "2"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(tags(root, APP), set(&["v3", "v4", "latest"]));
    for tag in ["v1", "v2"] {
        assert_image_gone(root, APP, app.image(tag), &[&app.base]);
    }
    for tag in ["v3", "v4", "latest"] {
        assert_manifest_intact(root, APP, app.image(tag));
    }
    assert_blob_kept(root, &app.base.digest);

    let deleted = decided(&report, APP, "deleted");
    assert_eq!(names(&deleted), set(&["v1", "v2"]));
    assert_eq!(deleted["v1"].0, "--keep-last 2");
    let kept = decided(&report, APP, "kept");
    assert_eq!(kept["v4"].0, "--keep-last 2");
    assert_eq!(kept["latest"].0, "latest");
    let v1 = policy_repo(&report, APP)["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1")
        .unwrap();
    assert_eq!(
        v1["bytes"], v1_bytes,
        "exclusive bytes of v1, base excluded"
    );
    assert_eq!(v1["digest"], app.image("v1").digest.as_str());
    assert_eq!(report["deleted"]["tags"], 2);
    assert_eq!(report["before"]["tags"], 5);
    assert_eq!(report["after"]["tags"], 3);
}

#[test]
fn keep_tags_are_never_deleted() {
    let app = App::new();
    let report = gc(app.root(), &["--keep-last", "1", "--keep-tags", "v[12]"]);
    assert_eq!(tags(app.root(), APP), set(&["v1", "v2", "v4", "latest"]));
    let kept = decided(&report, APP, "kept");
    assert_eq!(kept["v1"].0, "--keep-tags v[12]");
    assert_eq!(names(&decided(&report, APP, "deleted")), set(&["v3"]));
}

#[test]
fn tag_patterns_match_whole_tags() {
    let app = App::new();
    // `v` alone matches no tag: anchored patterns match whole tags.
    let report = gc(app.root(), &["--delete-tags", "v", "--allow-empty-repos"]);
    assert!(decided(&report, APP, "deleted").is_empty(), "{report:#}");
    assert_eq!(tags(app.root(), APP).len(), 5);
}

#[test]
fn delete_tags_limits_candidates_and_keep_last_counts_among_them() {
    let mut b = LayoutBuilder::new();
    let mut images = BTreeMap::new();
    for (tag, days) in [
        ("1.0", 90),
        ("1.1-SNAPSHOT", 5),
        ("1.2-SNAPSHOT", 4),
        ("1.3-SNAPSHOT", 3),
        ("1.4-SNAPSHOT", 6),
        ("2.0", 80),
    ] {
        let image = b.simple_image(tag, &[]);
        push_at(&mut b, "ci/lib", tag, &image, days);
        images.insert(tag, image);
    }
    let report = gc(
        b.root(),
        &["--delete-tags", ".*-SNAPSHOT", "--keep-last", "2"],
    );
    assert_eq!(
        tags(b.root(), "ci/lib"),
        set(&["1.0", "1.2-SNAPSHOT", "1.3-SNAPSHOT", "2.0"])
    );
    let kept = decided(&report, "ci/lib", "kept");
    assert_eq!(kept["1.0"].0, "no_rule");
    assert_eq!(
        kept["1.3-SNAPSHOT"].0,
        "--delete-tags .*-SNAPSHOT --keep-last 2"
    );
    for tag in ["1.1-SNAPSHOT", "1.4-SNAPSHOT"] {
        assert_image_gone(b.root(), "ci/lib", &images[tag], &[]);
    }
}

#[test]
fn older_than_deletes_only_tags_pushed_before_the_cutoff() {
    let app = App::new();
    let report = gc(app.root(), &["--older-than", "25d"]);
    assert_eq!(tags(app.root(), APP), set(&["v3", "v4", "latest"]));
    let kept = decided(&report, APP, "kept");
    assert!(kept["v3"].1.contains("25d"), "{:?}", kept["v3"]);
    let again = gc(app.root(), &["--older-than", "4w", "--dry-run"]);
    assert!(decided(&again, APP, "deleted").is_empty());
}

#[test]
fn repos_glob_leaves_other_repositories_untouched() {
    let mut b = LayoutBuilder::new();
    for repo in ["ci/a", "ci/a/nested", "prod/a"] {
        for (tag, days) in [("old", 30), ("new", 1)] {
            let image = b.simple_image(&format!("{repo}{tag}"), &[]);
            push_at(&mut b, repo, tag, &image, days);
        }
    }
    let report = gc(b.root(), &["--keep-last", "1", "--repos", "ci/*"]);
    assert_eq!(tags(b.root(), "ci/a"), set(&["new"]));
    assert_eq!(tags(b.root(), "ci/a/nested"), set(&["old", "new"]));
    assert_eq!(tags(b.root(), "prod/a"), set(&["old", "new"]));
    let covered: Vec<&str> = report["policy"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(covered, ["ci/a"]);
    let report = gc(b.root(), &["--keep-last", "1", "--repos", "ci/**"]);
    assert_eq!(report["deleted"]["tags"], 1);
    assert_eq!(tags(b.root(), "ci/a/nested"), set(&["new"]));
}

/// The seed's example: per repository, keep the last 5 SNAPSHOT builds, the
/// last 10 others, and latest. `prod/**` is kept whole by a first rule.
const SEED_POLICY: &str = r#"{
  "rules": [
    {"name": "prod", "repositories": "prod/**", "keep": true},
    {"name": "snapshots", "tags": ".*-SNAPSHOT", "keep_last": 5},
    {"name": "others", "keep_last": 10}
  ]
}"#;

#[test]
fn the_seed_policy_file() {
    let mut b = LayoutBuilder::new();
    for repo in ["team/svc", "prod/svc"] {
        for i in 0..8u64 {
            let tag = format!("1.{i}-SNAPSHOT");
            let image = b.simple_image(&format!("{repo}{tag}"), &[]);
            push_at(&mut b, repo, &tag, &image, 100 - i);
        }
        for i in 0..12u64 {
            let tag = format!("1.{i}");
            let image = b.simple_image(&format!("{repo}{tag}"), &[]);
            push_at(&mut b, repo, &tag, &image, 200 - i);
        }
        let image = b.simple_image(&format!("{repo}latest"), &[]);
        push_at(&mut b, repo, "latest", &image, 300);
    }
    let policy = b.scratch().join("policy.json");
    fs::write(&policy, SEED_POLICY).unwrap();
    let dry = gc(
        b.root(),
        &["--policy", policy.to_str().unwrap(), "--dry-run"],
    );
    let deleted = decided(&dry, "team/svc", "deleted");
    assert_eq!(
        names(&deleted),
        set(&["1.0-SNAPSHOT", "1.1-SNAPSHOT", "1.2-SNAPSHOT", "1.0", "1.1"])
    );
    assert_eq!(deleted["1.0-SNAPSHOT"].0, "rules[1]");
    assert_eq!(deleted["1.0"].0, "rules[2]");
    let kept = decided(&dry, "team/svc", "kept");
    assert_eq!(kept.len(), 5 + 10 + 1);
    assert_eq!(kept["latest"].0, "latest");
    assert!(decided(&dry, "prod/svc", "deleted").is_empty());
    assert_eq!(decided(&dry, "prod/svc", "kept")["1.0"].0, "rules[0]");
    assert_eq!(
        tags(b.root(), "team/svc").len(),
        21,
        "a dry run deletes nothing"
    );

    let report = gc(b.root(), &["--policy", policy.to_str().unwrap()]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(tags(b.root(), "team/svc").len(), 16);
    assert_eq!(tags(b.root(), "prod/svc").len(), 21);
}

#[test]
fn an_invalid_policy_is_refused_with_its_json_path_and_nothing_is_deleted() {
    let app = App::new();
    let before = snapshot_contents(app.root());
    let policy = app.b.scratch().join("bad.json");
    fs::write(
        &policy,
        r#"{"rules": [{"keep": true}, {"tags": "x", "keep": true}, {"keep_last": -1}]}"#,
    )
    .unwrap();
    let out = regsweep([
        "gc",
        "--min-age",
        "0",
        "-y",
        "--policy",
        policy.to_str().unwrap(),
        app.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[2].keep_last: expected a non-negative integer"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.json"), "{stderr}");
    assert_eq!(snapshot_contents(app.root()), before);
}

/// `gc --min-age 0 -y ARGS ROOT`, expected to be refused (exit 2) with
/// nothing changed; its stderr.
fn refused(root: &Path, args: &[&str]) -> String {
    let before = snapshot_contents(root);
    let mut all = vec!["gc", "--min-age", "0", "-y"];
    all.extend_from_slice(args);
    all.push(root.to_str().unwrap());
    let out = regsweep(&all);
    assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
    assert_eq!(snapshot_contents(root), before, "{args:?}: nothing deleted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_policy_field_given_twice_is_refused_naming_the_file_and_path() {
    // Read as the last value, this deleted every tag but latest.
    let app = App::new();
    let policy = app.b.scratch().join("twice.json");
    fs::write(
        &policy,
        r#"{"rules": [{"keep": true, "repositories": "prod/**"}, {"keep_last": 5, "keep_last": 0}]}"#,
    )
    .unwrap();
    let stderr = refused(app.root(), &["--policy", policy.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!(
            "{}: invalid policy: rules[1]: duplicate field `keep_last`",
            policy.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_policy_of_the_wrong_type_names_the_file_path_and_what_it_found() {
    let app = App::new();
    let policy = app.b.scratch().join("types.json");
    for (text, expected) in [
        (
            r#"{"rules": [{"keep": true}, {"repositories": ["ci/**", 7], "keep_last": 1}]}"#,
            "rules[1].repositories[1]: expected a string (a glob), found integer `7`",
        ),
        (
            r#"{"rules": [{"keep_last": 1, "older_than": "2026-11-31"}]}"#,
            r#"rules[0].older_than: invalid duration "2026-11-31""#,
        ),
        (
            r#"{"rules": [{"keep_last": 1, "tag": "v1"}]}"#,
            "rules[0].tag: unknown field `tag`, expected one of",
        ),
    ] {
        fs::write(&policy, text).unwrap();
        let stderr = refused(app.root(), &["--policy", policy.to_str().unwrap()]);
        assert!(
            stderr.contains(&format!("{}: invalid policy: {expected}", policy.display())),
            "{text}\n{stderr}"
        );
    }
}

#[test]
fn a_double_star_inside_a_glob_component_is_refused() {
    // `team**` once crossed components and covered team/app; read as
    // `team*` it would not. Either way it is not clear: refused.
    let app = App::new();
    let stderr = refused(app.root(), &["--keep-last", "0", "--repos", "team**"]);
    assert!(
        stderr.contains(
            "--repos: invalid repository glob `team**`: `**` must be a whole path component"
        ),
        "{stderr}"
    );
    let policy = app.b.scratch().join("keep.json");
    fs::write(
        &policy,
        r#"{"rules": [{"repositories": "team**", "keep": true}, {"keep_last": 0}]}"#,
    )
    .unwrap();
    let stderr = refused(app.root(), &["--policy", policy.to_str().unwrap()]);
    assert!(
        stderr.contains("rules[0].repositories: invalid repository glob `team**`"),
        "{stderr}"
    );
}

#[test]
fn a_double_star_component_matches_zero_or_more_components() {
    let mut b = LayoutBuilder::new();
    for repo in ["app", "team/app", "team/web"] {
        for (tag, days) in [("v1", 20), ("v2", 10)] {
            let image = b.simple_image(&format!("{repo}{tag}"), &[]);
            push_at(&mut b, repo, tag, &image, days);
        }
    }
    let report = gc(b.root(), &["--keep-last", "1", "--repos", "**/app"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(tags(b.root(), "app"), set(&["v2"]));
    assert_eq!(tags(b.root(), "team/app"), set(&["v2"]));
    assert_eq!(tags(b.root(), "team/web"), set(&["v1", "v2"]));
}

#[test]
fn the_guard_keeps_every_tag_of_a_repository_the_policy_would_empty() {
    let mut b = LayoutBuilder::new();
    let mut images = Vec::new();
    for (repo, tag) in [
        ("old/a", "x"),
        ("old/a", "y"),
        ("mixed", "v1"),
        ("mixed", "v2"),
    ] {
        let image = b.simple_image(&format!("{repo}{tag}"), &[]);
        push_at(&mut b, repo, tag, &image, if tag == "v2" { 1 } else { 60 });
        images.push(image);
    }
    let report = gc(b.root(), &["--older-than", "30d"]);
    assert_eq!(report["exit_code"], 1, "refusal is a warning: {report:#}");
    assert_eq!(warning_kinds(&report), ["policy_refused"]);
    assert_eq!(tags(b.root(), "old/a"), set(&["x", "y"]));
    assert_eq!(
        tags(b.root(), "mixed"),
        set(&["v2"]),
        "the run goes on for others"
    );
    let refusal = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "policy_refused")
        .unwrap_or_else(|| panic!("no policy_refused warning: {report:#}"));
    assert_eq!(refusal["repository"], "old/a");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.contains("old/a") && message.contains("--older-than 30d"),
        "{message}"
    );
    let kept = decided(&report, "old/a", "kept");
    assert_eq!(kept["x"].0, "guard");
    assert!(policy_repo(&report, "old/a")["refused"].is_object());

    let report = gc(
        b.root(),
        &[
            "--older-than",
            "30d",
            "--allow-empty-repos",
            "--remove-empty-repos",
        ],
    );
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert!(tags(b.root(), "old/a").is_empty());
    assert_image_gone(b.root(), "old/a", &images[0], &[]);
    assert_eq!(
        report["deleted"]["repositories"], 1,
        "emptied, then removed"
    );
    assert!(!repo_dir(b.root(), "old/a").exists());
    assert!(repo_dir(b.root(), "mixed").exists());
}

#[test]
fn protection_by_tag_digest_and_kubectl_line() {
    let app = App::new();
    let list = app.b.scratch().join("in-use.txt");
    let v2 = &app.image("v2").digest;
    fs::write(
        &list,
        format!(
            "# what runs in production\n\
             registry.example.com:5000/team/app:v1\n\
             \n\
             localhost/team/app@{v2}   # pinned by digest\n\
             docker.io/library/nginx:1.25 team/app:v3 team/app:nope quay.io/x/y@sha256:{}\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let report = gc(
        app.root(),
        &[
            "--keep-last",
            "0",
            "--allow-empty-repos",
            "--protect",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(tags(app.root(), APP), set(&["v1", "v2", "v3", "latest"]));
    for tag in ["v1", "v2", "v3"] {
        assert_manifest_intact(app.root(), APP, app.image(tag));
    }
    assert_image_gone(app.root(), APP, app.image("v4"), &[&app.base]);
    let kept = decided(&report, APP, "kept");
    assert_eq!(kept["v1"].0, "protected");
    assert!(kept["v2"].1.contains(v2.as_str()), "{:?}", kept["v2"]);
    // `team/app:nope` names nothing here, though other names without a
    // host do: warned about, not fatal. nginx on docker.io and quay.io's
    // image are other registries' images: noted, not warned about.
    assert_eq!(report["exit_code"], 1, "{report:#}");
    let missing: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "protected_not_found")
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("`nope`"), "{missing:?}");
}

#[test]
fn kubectl_image_and_image_id_output_with_other_registries_exits_0() {
    let app = App::new();
    let list = app.b.scratch().join("in-use.txt");
    let v2 = &app.image("v2").digest;
    // What `kubectl get pods -A -o jsonpath='{..image} {..imageID}'` prints
    // for a cluster running team/app:v1 and v2 from this registry, and
    // Docker Hub's, quay.io's and a locally built image.
    fs::write(
        &list,
        format!(
            "registry.example.com/team/app:v1 nginx:1.25 docker.io/library/nginx:1.25 \
             quay.io/prometheus/prometheus:v2.53.0 registry.example.com/team/app:v2 \
             docker-pullable://registry.example.com/team/app@{v2} \
             docker-pullable://nginx@sha256:{} docker://sha256:{} \
             quay.io/prometheus/prometheus@sha256:{}\n",
            "ab".repeat(32),
            "cd".repeat(32),
            "ef".repeat(32),
        ),
    )
    .unwrap();
    let report = gc(
        app.root(),
        &[
            "--keep-last",
            "0",
            "--allow-empty-repos",
            "--protect",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert!(warning_kinds(&report).is_empty(), "{report:#}");
    // The report says what the list came to: 3 found here, 6 noted as
    // other registries' images.
    let protect = &report["protect"];
    assert_eq!(
        (
            &protect["references"],
            &protect["found"],
            &protect["not_found"]
        ),
        (
            &serde_json::json!(9),
            &serde_json::json!(3),
            &serde_json::json!(0)
        ),
        "{report:#}"
    );
    assert_eq!(
        protect["other_registries"].as_array().map(Vec::len),
        Some(6),
        "{report:#}"
    );
    // And the human summary says it in one line.
    let human = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--dry-run", "--min-age", "0", "--protect"])
        .arg(&list)
        .arg(app.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains("9 references, 3 in storage, 0 not found, 6 of other registries"),
        "{stdout}"
    );
    assert_eq!(tags(app.root(), APP), set(&["v1", "v2", "latest"]));
    for tag in ["v1", "v2"] {
        assert_manifest_intact(app.root(), APP, app.image(tag));
    }
    assert_image_gone(app.root(), APP, app.image("v3"), &[&app.base]);
}

#[test]
fn a_protected_untagged_digest_survives_m() {
    let mut b = LayoutBuilder::new();
    let pinned = b.simple_image("pinned", &[]);
    b.push_untagged("svc", &pinned);
    let tagged = b.simple_image("tagged", &[]);
    push_at(&mut b, "svc", "v1", &tagged, 1);
    let list = b.scratch().join("p.txt");
    fs::write(&list, format!("svc@{}\n", pinned.digest)).unwrap();
    let report = gc(
        b.root(),
        &[
            "-m",
            "--keep-last",
            "5",
            "--protect",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_manifest_intact(b.root(), "svc", &pinned);
}

#[test]
fn an_unreadable_protection_list_is_refused() {
    let app = App::new();
    let list = app.b.scratch().join("p.txt");
    fs::write(&list, "team/app:v1\nTeam/App:v2\n").unwrap();
    let out = regsweep([
        "gc",
        "--min-age",
        "0",
        "-y",
        "--keep-last",
        "1",
        "--protect",
        list.to_str().unwrap(),
        app.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("p.txt:2"));
    assert_eq!(tags(app.root(), APP).len(), 5);
}

#[test]
fn layers_shared_across_repositories_stay_with_the_kept_image() {
    let mut b = LayoutBuilder::new();
    let shared = b.layer("shared");
    let config = b.config("common");
    // The same image in two repositories, and one of its own in `old`.
    let common = docker_image(&config, &[&shared]);
    push_at(&mut b, "old", "v1", &common, 90);
    push_at(&mut b, "keep", "v1", &common, 90);
    let own = b.simple_image("own", &[&shared]);
    push_at(&mut b, "old", "v2", &own, 1);
    let report = gc(b.root(), &["--keep-last", "1", "--repos", "old"]);
    assert_eq!(tags(b.root(), "old"), set(&["v2"]));
    assert_revision_gone(b.root(), "old", &common.digest);
    assert_manifest_intact(b.root(), "keep", &common);
    assert_manifest_intact(b.root(), "old", &own);
    let v1 = &policy_repo(&report, "old")["deleted"][0];
    assert_eq!(v1["tag"], "v1");
    assert_eq!(
        v1["bytes"], 0,
        "everything v1 holds is still used elsewhere"
    );
}

#[test]
fn a_tag_on_the_digest_of_a_kept_tag_goes_but_the_image_stays() {
    let mut b = LayoutBuilder::new();
    let image = b.simple_image("same", &[]);
    push_at(&mut b, "r", "old-name", &image, 90);
    push_at(&mut b, "r", "new-name", &image, 1);
    let report = gc(b.root(), &["--keep-last", "1"]);
    assert_eq!(tags(b.root(), "r"), set(&["new-name"]));
    assert_manifest_intact(b.root(), "r", &image);
    assert_eq!(policy_repo(&report, "r")["deleted"][0]["bytes"], 0);
}

#[test]
fn a_deleted_tag_takes_its_history_but_other_untagged_revisions_stay_without_m() {
    let mut b = LayoutBuilder::new();
    let first = b.simple_image("first push", &[]);
    let second = b.simple_image("second push", &[]);
    b.push("r", "old", &first);
    push_at(&mut b, "r", "old", &second, 90);
    let keep = b.simple_image("keep", &[]);
    push_at(&mut b, "r", "new", &keep, 1);
    let stray = b.simple_image("stray", &[]);
    b.push_untagged("r", &stray);
    let report = gc(b.root(), &["--keep-last", "1"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_image_gone(b.root(), "r", &first, &[]);
    assert_image_gone(b.root(), "r", &second, &[]);
    assert_manifest_intact(b.root(), "r", &stray);
    assert_manifest_intact(b.root(), "r", &keep);
    let old = &policy_repo(&report, "r")["deleted"][0];
    assert_eq!(old["bytes"], report["reclaimable"]["bytes"]);
    assert!(
        old["bytes"].as_u64().unwrap() > own_bytes(b.root(), &keep, &[]),
        "the tag frees both of its pushes"
    );
}

#[test]
fn a_deleted_multi_arch_tag_takes_its_platform_manifests() {
    let mut b = LayoutBuilder::new();
    let amd = b.simple_oci_image("amd64");
    let arm = b.simple_oci_image("arm64");
    b.push_untagged("multi", &amd);
    b.push_untagged("multi", &arm);
    let index = oci_index(&[&amd, &arm], None);
    push_at(&mut b, "multi", "old", &index, 90);
    let keep = b.simple_oci_image("keep");
    push_at(&mut b, "multi", "new", &keep, 1);
    let report = gc(b.root(), &["--keep-last", "1"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    for m in [&index, &amd, &arm] {
        assert_image_gone(b.root(), "multi", m, &[]);
    }
    assert_manifest_intact(b.root(), "multi", &keep);
}

#[test]
fn the_dry_run_lists_every_tag_with_its_rule_and_the_bytes_it_frees() {
    let app = App::new();
    let before = snapshot_contents(app.root());
    let report = gc(app.root(), &["--keep-last", "2", "--dry-run"]);
    assert_eq!(snapshot_contents(app.root()), before);
    let repo = policy_repo(&report, APP);
    assert_eq!(repo["kept"].as_array().unwrap().len(), 3);
    assert_eq!(repo["deleted"].as_array().unwrap().len(), 2);
    let freed: u64 = repo["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(freed, report["reclaimable"]["bytes"].as_u64().unwrap());
    assert!(
        repo["deleted"][0]["pushed"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let tag_candidates = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "tag")
        .count();
    assert_eq!(tag_candidates, 2);

    // The same for people.
    let out = regsweep([
        "gc",
        "--min-age",
        "0",
        "--dry-run",
        "--keep-last",
        "2",
        app.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "team/app",
        "delete",
        "keep",
        "v1",
        "latest",
        "--keep-last 2",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

/// Copies a tree, keeping file modification times (push times are the
/// mtimes of `current/link`).
fn copy_with_times(from: &Path, to: &Path) {
    copy_tree(from, to);
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let t = e.metadata().unwrap().modified().unwrap();
            let dest = to.join(e.path().strip_prefix(from).unwrap());
            fs::File::open(dest).unwrap().set_modified(t).unwrap();
        }
    }
}

/// A tree for the interrupted-sweep test: two repositories sharing a layer,
/// tags of several ages, an index, an untagged revision.
fn interrupted_fixture() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    let base = b.layer("base");
    for (repo, n) in [("a", 4u64), ("b", 3)] {
        for i in 0..n {
            let image = b.simple_image(&format!("{repo}{i}"), &[&base]);
            push_at(&mut b, repo, &format!("t{i}"), &image, 10 * (i + 1));
        }
    }
    let amd = b.simple_oci_image("amd");
    b.push_untagged("a", &amd);
    let index = oci_index(&[&amd], None);
    push_at(&mut b, "a", "multi", &index, 100);
    let stray = b.simple_image("stray", &[]);
    b.push_untagged("b", &stray);
    b
}

#[test]
fn an_interrupted_policy_sweep_and_its_rerun_end_where_one_run_ends() {
    for m in [false, true] {
        let mode: &[&str] = if m { &["-m"] } else { &[] };
        let policy: Vec<&str> = [mode, &["--keep-last", "1"]].concat();
        let b = interrupted_fixture();
        let pristine = b.root();
        let reference = tempfile::tempdir().unwrap();
        copy_with_times(pristine, reference.path());
        let full = gc(reference.path(), &policy);
        assert_eq!(full["exit_code"], 0, "{full:#}");
        let end = snapshot_contents(reference.path());
        let n = full["candidates"].as_array().unwrap().len() as u64;
        assert!(n > 10, "a plan worth interrupting: {n}");
        for k in 1..n {
            let copy = tempfile::tempdir().unwrap();
            copy_with_times(pristine, copy.path());
            let stop = k.to_string();
            let (stopped, out) = gc_env(
                copy.path(),
                &policy,
                &[("REGSWEEP_FAULT_STOP_AFTER", stop.as_str())],
            );
            let ctx = format!("-m {m}, stopped after {k} of {n}");
            assert_eq!(code(&out), 1, "{ctx}: {}", describe(&out));
            assert_eq!(stopped["interrupted"], true, "{ctx}");
            // What the policy keeps is whole at the stop.
            assert!(tags(copy.path(), "a").contains("t0"), "{ctx}");
            assert!(tags(copy.path(), "b").contains("t0"), "{ctx}");
            let rerun = gc(copy.path(), &policy);
            assert_eq!(rerun["exit_code"], 0, "{ctx}: {rerun:#}");
            let now = snapshot_contents(copy.path());
            let differ: Vec<&std::path::PathBuf> = now
                .keys()
                .chain(end.keys())
                .filter(|p| now.get(*p) != end.get(*p))
                .collect();
            assert!(
                differ.is_empty(),
                "{ctx}: the re-run must end where one complete run ends; differs at {differ:#?}"
            );
        }
    }
}

#[test]
fn a_tag_whose_image_is_within_min_age_stays_with_it_for_now() {
    let app = App::new();
    let root = app.root();
    // Every file is minutes old: --min-age 1h holds the images, so the
    // tags that would go stay with them.
    let out = regsweep_env(
        [
            "gc",
            "--json",
            "-y",
            "--keep-last",
            "2",
            "--min-age",
            "1h",
            root.to_str().unwrap(),
        ],
        &[],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags(root, APP).len(), 5, "{report:#}");
    let kept = decided(&report, APP, "kept");
    assert_eq!(kept["v1"].0, "min_age", "{kept:?}");
    // Two days later (push times as before), they go.
    let two_days_ago = SystemTime::now() - DAY * 2;
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        fs::File::open(e.path())
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
    for (tag, days) in [
        ("v1", 40),
        ("v2", 30),
        ("v3", 20),
        ("v4", 10),
        ("latest", 50),
    ] {
        pushed(root, APP, tag, days);
    }
    let out = regsweep([
        "gc",
        "--json",
        "-y",
        "--keep-last",
        "2",
        root.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(tags(root, APP), set(&["v3", "v4", "latest"]));
    assert_image_gone(root, APP, app.image("v1"), &[&app.base]);
}

#[test]
fn a_policy_sweep_into_the_trash_is_undone_by_restore() {
    let app = App::new();
    let root = app.root();
    let before = snapshot_contents(root);
    let trash = app.b.scratch().join("trash");
    let report = gc(
        root,
        &["--keep-last", "1", "--trash", trash.to_str().unwrap()],
    );
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(tags(root, APP), set(&["v4", "latest"]));
    let out = regsweep(["restore", trash.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let after = snapshot_contents(root);
    let differ: Vec<&std::path::PathBuf> = after
        .keys()
        .chain(before.keys())
        .filter(|p| after.get(*p) != before.get(*p))
        .collect();
    assert!(differ.is_empty(), "restore differs at {differ:#?}");
}

#[test]
fn without_a_policy_no_tag_is_ever_deleted() {
    let app = App::new();
    let report = gc(app.root(), &["-m"]);
    assert_eq!(tags(app.root(), APP).len(), 5);
    assert!(report["policy"].is_null(), "{:#}", report["policy"]);
    assert_eq!(report["deleted"]["tags"], 0);
}

#[test]
fn policy_flags_need_something_to_delete() {
    let app = App::new();
    for args in [
        &["--keep-tags", "v1"][..],
        &["--repos", "team/*"],
        &["--allow-empty-repos"],
    ] {
        let mut all = vec!["gc", "--min-age", "0", "-y"];
        all.extend_from_slice(args);
        all.push(app.root().to_str().unwrap());
        let out = regsweep(&all);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
    }
    let out = regsweep([
        "gc",
        "--keep-last",
        "3",
        "--policy",
        "/nonexistent.json",
        app.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert_eq!(tags(app.root(), APP).len(), 5);
}

// ---------------------------------------------------------------------------
// du
// ---------------------------------------------------------------------------

fn du_json(root: &Path, args: &[&str]) -> Value {
    let mut all = vec!["du", "--json"];
    all.extend_from_slice(args);
    all.push(root.to_str().unwrap());
    let out = regsweep(&all);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(&out)));
    assert_eq!(report["exit_code"].as_i64(), Some(i64::from(code(&out))));
    report
}

#[test]
fn du_reports_referenced_exclusive_shared_and_reclaimable_bytes() {
    let mut b = LayoutBuilder::new();
    let shared = b.layer("shared");
    let big = b.simple_image("big", &[&shared]);
    b.push("big", "v1", &big);
    let small = b.simple_image("small", &[&shared]);
    b.push("small", "v1", &small);
    let untagged = b.simple_image("untagged", &[]);
    b.push_untagged("small", &untagged);
    let orphan = b.orphan_linked_blob("small", "orphan");
    let root = b.root();
    let size = |d: &str| size_of(root, d);
    let all =
        |m: &Manifest| size(&m.digest) + m.stored_blobs().map(|d| size(&d.digest)).sum::<u64>();

    let du = du_json(root, &[]);
    assert_eq!(du["regsweep_du"], 1);
    let repo = |name: &str| {
        du["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let bigr = repo("big");
    assert_eq!(bigr["referenced_bytes"], all(&big));
    assert_eq!(bigr["shared_bytes"], size(&shared.digest));
    assert_eq!(bigr["exclusive_bytes"], all(&big) - size(&shared.digest));
    let smallr = repo("small");
    assert_eq!(smallr["referenced_bytes"], all(&small) + all(&untagged));
    assert_eq!(
        smallr["reclaimable_bytes"],
        size(&orphan.digest),
        "untagged kept"
    );
    assert_eq!(du["total"]["reclaimable_bytes"], size(&orphan.digest));
    let order: Vec<&str> = du["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|n| std::cmp::Reverse(repo(n)["referenced_bytes"].as_u64().unwrap()));
    assert_eq!(order, sorted, "most referenced first");

    let du_m = du_json(root, &["-m", "--top", "1", "--price-per-gib-month", "0.5"]);
    assert_eq!(du_m["repositories"].as_array().unwrap().len(), 1);
    assert_eq!(du_m["repositories_not_shown"], 1);
    assert_eq!(
        du_m["total"]["reclaimable_bytes"],
        size(&orphan.digest) + all(&untagged)
    );
    assert!(
        du_m["total"]["reclaimable_cost_per_month"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(du_m["repositories"][0]["cost_per_month"]["referenced"].is_number());

    // du deletes nothing and agrees with gc's dry run.
    let before = snapshot_contents(root);
    let dry = gc(root, &["-m", "--dry-run"]);
    assert_eq!(
        dry["reclaimable"]["bytes"],
        du_m["total"]["reclaimable_bytes"]
    );
    assert_eq!(snapshot_contents(root), before);

    let out = regsweep(["du", "--price-per-gib-month", "0.1", root.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "REFERENCED",
        "EXCLUSIVE",
        "SHARED",
        "RECLAIMABLE",
        "big",
        "small",
        "per month",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

/// Tags v1.0, v1.1, v2.0, v2.1 of `app`, pushed 4, 3, 2 and 1 days ago.
fn versions() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    for (tag, days) in [("v1.0", 4), ("v1.1", 3), ("v2.0", 2), ("v2.1", 1)] {
        let image = b.simple_image(tag, &[]);
        push_at(&mut b, "app", tag, &image, days);
    }
    b
}

#[test]
fn a_keep_pattern_that_matches_only_as_a_search_is_refused_with_what_it_means() {
    let b = versions();
    let before = snapshot_contents(b.root());
    for dry_run in [false, true] {
        let mut args = vec!["gc", "--min-age", "0", "-y"];
        if dry_run {
            args.push("--dry-run");
        }
        args.extend(["--keep-last", "1", "--keep-tags", r"^v1\."]);
        args.push(b.root().to_str().unwrap());
        let out = regsweep(&args);
        assert_eq!(code(&out), 2, "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in ["--keep-tags", "v1.0, v1.1", r"`^v1\..*`"] {
            assert!(stderr.contains(expected), "{expected}: {stderr}");
        }
        assert_eq!(snapshot_contents(b.root()), before, "nothing deleted");
    }
    // The pattern it suggests keeps them.
    let report = gc(b.root(), &["--keep-last", "1", "--keep-tags", r"^v1\..*"]);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(tags(b.root(), "app"), set(&["v1.0", "v1.1", "v2.1"]));
}

#[test]
fn a_policy_file_keep_rule_that_matches_only_as_a_search_is_refused() {
    let b = versions();
    let before = snapshot_contents(b.root());
    let policy = b.scratch().join("policy.json");
    fs::write(
        &policy,
        r#"{"rules": [{"name": "releases", "tags": "v1", "keep": true}, {"keep_last": 1}]}"#,
    )
    .unwrap();
    let out = regsweep([
        "gc",
        "--min-age",
        "0",
        "-y",
        "--policy",
        policy.to_str().unwrap(),
        b.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in ["policy.json: rules[0] (releases)", "v1.0, v1.1", "`.*v1.*`"] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert_eq!(snapshot_contents(b.root()), before, "nothing deleted");
}

#[test]
fn a_policy_file_warning_names_the_file_once_and_its_bytes_are_what_deleted_tags_free() {
    let b = versions();
    let policy = b.scratch().join("policy.json");
    fs::write(
        &policy,
        r#"{"rules": [{"repositories": ["nothing/**"], "keep_last": 1}]}"#,
    )
    .unwrap();
    let out = regsweep([
        "gc",
        "--dry-run",
        "--min-age",
        "0",
        "--policy",
        policy.to_str().unwrap(),
        b.root().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("matches no repository"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(line.matches("policy.json").count(), 1, "{line}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("would delete 0 tags (0 B) and keep"),
        "{stdout}"
    );
}

#[test]
fn patterns_and_globs_that_match_nothing_are_warnings() {
    let b = versions();
    let unmatched = |report: &Value| -> Vec<String> {
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "policy_pattern_unmatched")
            .map(|w| w["message"].as_str().unwrap().to_owned())
            .collect()
    };
    for args in [
        vec![
            "--dry-run",
            "--delete-tags",
            "nightly-.*",
            "--keep-last",
            "0",
        ],
        vec!["--dry-run", "--keep-last", "1", "--keep-tags", "stable"],
        vec!["--dry-run", "--keep-last", "1", "--repos", "team/**"],
    ] {
        let report = gc(b.root(), &args);
        assert_eq!(report["exit_code"], 1, "{args:?}: {report:#}");
        let messages = unmatched(&report);
        assert_eq!(messages.len(), 1, "{args:?}: {messages:?}");
        let pattern = args[args.len() - 1];
        let pattern = if pattern == "0" {
            "nightly-.*"
        } else {
            pattern
        };
        assert!(
            messages[0].contains(&format!("`{pattern}`")),
            "{messages:?}"
        );
    }
    // A delete pattern that matches only as a search deletes nothing, and
    // says which pattern would.
    let report = gc(
        b.root(),
        &["--dry-run", "--delete-tags", "v2", "--keep-last", "0"],
    );
    assert_eq!(report["exit_code"], 1, "{report:#}");
    let messages = unmatched(&report);
    assert!(
        messages.len() == 1 && messages[0].contains("`.*v2.*`"),
        "{messages:?}"
    );
    // A policy file's repository glob that matches nothing.
    let policy = b.scratch().join("policy.json");
    fs::write(
        &policy,
        r#"{"rules": [{"repositories": "gone/**", "keep": true}, {"keep_last": 2}]}"#,
    )
    .unwrap();
    let report = gc(b.root(), &["--policy", policy.to_str().unwrap()]);
    assert_eq!(report["exit_code"], 1, "{report:#}");
    let messages = unmatched(&report);
    assert!(
        messages.len() == 1
            && messages[0].contains("rules[0]")
            && messages[0].contains("`gone/**`"),
        "{messages:?}"
    );
    assert_eq!(tags(b.root(), "app"), set(&["v2.0", "v2.1"]));
}
