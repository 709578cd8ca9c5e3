//! End to end on S3 storage: the real registry (docker-registry 2.8.2) with
//! its `s3` driver over a local S3 endpoint (moto's server mode), a real
//! client (skopeo), and regsweep given the bucket in its two forms:
//! - the registry's own config.yml with `storage.s3`;
//! - `s3://BUCKET/ROOTDIRECTORY` with the `AWS_*` environment
//!   (`AWS_ENDPOINT_URL` for a path-style endpoint).
//!
//! The scenarios are those of the filesystem suite (`real_registry.rs`),
//! pushed together into one bucket to keep moto's share of the run short;
//! each writes down, from the digests it pushed, what must go. Tests skip
//! (pass, printing `skipping: ...`) without the registry, skopeo or moto,
//! unless `REGSWEEP_REQUIRE_REGISTRY=1`.

mod registry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use registry_support::gc::{self, Run, candidate_digests, candidate_pairs, count, upstream_gc};
use registry_support::images::{image_on, layout, push_oci};
use registry_support::oci::{Layer, Layout};
use registry_support::s3::{RequestKind, S3Server, S3Storage, closed_port, require_s3};
use registry_support::scenario::{
    Expect, assert_every_tag_pulls, assert_served, assert_stored,
    assert_upstream_follows_the_model, candidate_set,
};
use registry_support::scenarios::{self, ZeroByteBlob};
use registry_support::skopeo::{self, Format};
use registry_support::{Registry, random_hex, sha256_digest};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

/// Where in the bucket the registry keeps its storage.
const ROOTDIR: &str = "registry";

/// Every scenario of the filesystem suite, pushed into `reg`'s storage in
/// repositories of their own, with the union of their expectations. `base`
/// is a layer every scenario shares and that stays live: other scenarios'
/// tags keep it from upstream's `-m` where it takes the multi-arch children.
fn push_scenarios(reg: &Registry, layout: &mut Layout, base: &Layer) -> Expect {
    let mut e = Expect::pushing_after("app");
    retagged_history(reg, layout, base, &mut e);
    scenarios::multi_arch_pushed_twice(reg, layout, base, &mut e);
    scenarios::nested_repositories(reg, layout, base, &mut e);
    scenarios::schema1_next_to_schema2(reg, layout, base, &mut e);
    scenarios::referrers_and_cosign(reg, layout, base, &mut e, ZeroByteBlob::Left);
    scenarios::deleted_through_the_api(reg, layout, base, &mut e);
    e
}

/// Fewer scenarios, for the tests that sweep more than once: the retagged
/// history and the multi-arch pushes.
fn history_and_multi_arch(reg: &Registry, layout: &mut Layout, base: &Layer) -> Expect {
    let mut e = Expect::default();
    retagged_history(reg, layout, base, &mut e);
    scenarios::multi_arch_pushed_twice(reg, layout, base, &mut e);
    e
}

/// The filesystem suite's retagged history, and an orphan uploaded under its
/// sha512 name (a test of its own there).
fn retagged_history(reg: &Registry, layout: &mut Layout, base: &Layer, e: &mut Expect) {
    scenarios::retagged_history(reg, layout, base, e);
    let orphan_512 = random_hex(100).into_bytes();
    reg.upload_blob_sha512("app", &orphan_512);
    e.garbage.push(sha256_digest(&orphan_512));
}

// ------------------------------------------------------------------ bucket

/// Blobs with a `data` object under `storage`: digest → size.
fn blobs(s3: &S3Server, storage: &S3Storage) -> BTreeMap<String, u64> {
    let prefix = format!("{}blobs/", storage.v2_prefix());
    s3.objects(&prefix)
        .into_iter()
        .filter_map(|(key, size)| {
            let rest = key[prefix.len()..].strip_suffix("/data")?;
            let (algorithm, rest) = rest.split_once('/')?;
            let (_, hex) = rest.split_once('/')?;
            Some((format!("{algorithm}:{hex}"), size))
        })
        .collect()
}

/// The blobs of `before` but those in `gone`.
fn blobs_but(before: &BTreeMap<String, u64>, gone: &BTreeSet<String>) -> BTreeSet<String> {
    before
        .keys()
        .filter(|d| !gone.contains(*d))
        .cloned()
        .collect()
}

/// Every object of the storage tree: key → size.
fn objects(s3: &S3Server, storage: &S3Storage) -> BTreeMap<String, u64> {
    s3.objects(&storage.v2_prefix())
}

/// Link objects under `repositories/` whose content names a blob without a
/// `data` object: (key, digest).
fn dangling_links(s3: &S3Server, storage: &S3Storage) -> Vec<(String, String)> {
    let present = blobs(s3, storage);
    let prefix = format!("{}repositories/", storage.v2_prefix());
    s3.keys(&prefix)
        .into_iter()
        .filter(|key| key.ends_with("/link"))
        .filter_map(|key| {
            let digest = String::from_utf8(s3.get(&key)?).ok()?;
            (!present.contains_key(digest.trim())).then_some((key, digest))
        })
        .collect()
}

/// Keys of in-progress uploads (`_uploads/`) and multipart uploads.
fn uploads(s3: &S3Server, storage: &S3Storage) -> (BTreeSet<String>, BTreeSet<String>) {
    let keys = s3
        .keys(&storage.v2_prefix())
        .into_iter()
        .filter(|k| k.contains("/_uploads/"))
        .collect();
    let multipart = s3
        .multipart_uploads(&storage.v2_prefix())
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    (keys, multipart)
}

// ---------------------------------------------------------------- regsweep

/// A regsweep `gc` run on S3 storage: the TARGET and the environment that go
/// with one of the two forms.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// The registry's config.yml.
    Config,
    /// `s3://bucket/rootdirectory` with the `AWS_*` variables.
    Url,
}

/// `regsweep gc --min-age 0 ARGS... TARGET` in `form`, with any `AWS_*`
/// variable of the test's own environment removed first.
fn regsweep_gc(reg: &Registry, form: Form, args: &[&str]) -> Run {
    regsweep_gc_env(reg, form, args, &[])
}

fn regsweep_gc_env(reg: &Registry, form: Form, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let storage = reg.s3().expect("a registry on S3");
    let config = reg.config();
    let target = match form {
        Form::Config => config.to_str().unwrap().to_string(),
        Form::Url => storage.url(),
    };
    let mut all = vec!["gc"];
    all.extend_from_slice(args);
    all.push(&target);
    let mut env: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Form::Url = form {
        env.extend(
            storage
                .aws_env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
    }
    bounded(&all, &env, Duration::from_secs(120))
}

/// Runs regsweep (`gc` gets `--min-age 0`) with no `AWS_*` variable but
/// `env`, killing it after `limit`.
fn bounded(args: &[&str], env: &[(String, String)], limit: Duration) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    match args.split_first() {
        Some((&"gc", rest)) => cmd.arg("gc").args(["--min-age", "0"]).args(rest),
        _ => cmd.args(args),
    };
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("REGSWEEP_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Run::bounded(&mut cmd, limit)
}

/// What `pipe` has given so far, read on a thread of its own while the
/// process runs.
fn reader(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// [`regsweep_gc`] with `--json -v`: the report, whose `exit_code` must be
/// the process's, and the run.
fn regsweep_report(reg: &Registry, form: Form, args: &[&str]) -> (Value, Run) {
    let mut all = vec!["--json", "-v"];
    all.extend_from_slice(args);
    let run = regsweep_gc(reg, form, &all);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!("regsweep gc {all:?} ({form:?}): stdout is not one JSON value ({e}):\n{run}")
    });
    assert_eq!(report["regsweep_report"], 2, "report version:\n{run}");
    assert_eq!(
        report["exit_code"].as_i64().map(|c| c as i32),
        run.code,
        "exit_code in the report vs the process:\n{run}"
    );
    (report, run)
}

/// The secret key appears nowhere in what regsweep printed.
fn assert_no_secret(s3: &S3Server, run: &Run, what: &str) {
    let secret = s3.secret_key();
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "{what}: the secret access key appears in regsweep's output:\n{run}"
    );
}

type Pusher = fn(&Registry, &mut Layout, &Layer) -> Expect;

/// Pushes scenarios (all of them with [`push_scenarios`]) through a registry
/// on S3 and stops it.
fn pushed_registry(
    s3: &S3Server,
    push: Pusher,
) -> (Registry, Layout, tempfile::TempDir, Layer, Expect) {
    let mut reg = Registry::start_s3(s3.storage(ROOTDIR));
    let (dir, mut layout) = layout();
    let base = layout.layer("base");
    let started = Instant::now();
    let mark = s3.mark();
    let expect = push(&reg, &mut layout, &base);
    eprintln!(
        "pushed the scenarios through the s3 driver in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        s3.requests_since(mark)
    );
    reg.stop();
    (reg, layout, dir, base, expect)
}

/// Dry runs in both forms, with and without `-m`: the candidates are the
/// scenarios' expectations, the same in both forms; without `-m` the blob
/// verdicts are upstream's; nothing in the bucket changes and no request
/// writes; the secret key is never printed. Then the `-m` sweep: exactly the
/// expected blobs go, no key of theirs is left, no link dangles, uploads in
/// progress stay; the registry restarted on the bucket serves every tag byte
/// for byte, every kept manifest, 404 for the deleted ones, and takes a new
/// push; a second run finds nothing.
#[test]
fn s3_dry_runs_match_the_scenarios_and_upstream_and_the_sweep_keeps_every_tag() {
    if !require_s3() {
        return;
    }
    let test_started = Instant::now();
    let s3 = S3Server::start();
    let (mut reg, mut layout, _layout_dir, base, e) = pushed_registry(&s3, push_scenarios);
    let storage = reg.s3().unwrap().clone();

    let before = blobs(&s3, &storage);
    let before_objects = objects(&s3, &storage);
    let before_uploads = uploads(&s3, &storage);
    assert!(
        !before_uploads.0.is_empty(),
        "the upload in progress left keys under _uploads/"
    );
    // The s3 driver deletes a revision's link object, and a "directory" is
    // only its keys: nothing is left of a manifest deleted through the API.
    for (repo, digest) in &e.api_deleted {
        let revision = format!(
            "{}repositories/{repo}/_manifests/revisions/sha256/{}/",
            storage.v2_prefix(),
            digest.trim_start_matches("sha256:")
        );
        assert!(
            s3.keys(&revision).is_empty(),
            "{repo}@{digest}: keys left under {revision}"
        );
    }

    // The -m dry run's report, for the sweep to match.
    let mut planned = Value::Null;
    for m in [false, true] {
        let mode = if m { "gc -m" } else { "gc" };
        let expected = e.blob_garbage(m);
        let expected_manifests = e.manifest_garbage(m);
        assert_stored(&expected, &before, mode);

        // Upstream on the same bucket: the check of the test's model.
        let started = Instant::now();
        let mark = s3.mark();
        let (upstream, _) = upstream_gc(&reg.config(), true, m);
        eprintln!(
            "[{mode}] upstream garbage-collect --dry-run: {:.1} s, {}",
            started.elapsed().as_secs_f64(),
            s3.requests_since(mark)
        );
        assert_upstream_follows_the_model(&upstream, &e, m, mode);

        let mut reports = Vec::new();
        for form in [Form::Config, Form::Url] {
            let ctx = format!("[{mode}, {form:?}]");
            let mut args = vec!["--dry-run"];
            if m {
                args.push("-m");
            }
            let mark = s3.mark();
            let started = Instant::now();
            let (dry, run) = regsweep_report(&reg, form, &args);
            let requests = s3.requests_since(mark);
            eprintln!(
                "{ctx} regsweep --dry-run: {:.1} s, {requests}",
                started.elapsed().as_secs_f64()
            );
            assert_no_secret(&s3, &run, &ctx);
            assert_eq!(dry["exit_code"], 0, "{ctx} dry run exit code:\n{run}");
            assert_eq!(dry["warnings"], json!([]), "{ctx} dry run warnings");
            assert_eq!(dry["dry_run"], true);
            assert_eq!(dry["delete_untagged"], m);
            assert!(
                dry["storage_root"]
                    .as_str()
                    .is_some_and(|r| r.contains(s3.bucket())),
                "{ctx} storage_root names the bucket: {}",
                dry["storage_root"]
            );
            let would = candidate_digests(&dry, "blob");
            assert_eq!(would, expected, "{ctx} blob candidates");
            if !m {
                assert_eq!(
                    would, upstream.blobs,
                    "{ctx} differential: blob verdicts vs upstream's"
                );
            }
            assert_eq!(
                candidate_pairs(&dry, "manifest"),
                expected_manifests,
                "{ctx} manifest candidates"
            );
            assert_eq!(
                count(&dry, "reclaimable", "blobs"),
                expected.len() as u64,
                "{ctx}"
            );
            let expected_bytes: u64 = expected.iter().map(|d| before[d]).sum();
            assert_eq!(
                count(&dry, "reclaimable", "bytes"),
                expected_bytes,
                "{ctx} reclaimable.bytes"
            );
            assert_eq!(
                count(&dry, "before", "blobs"),
                before.len() as u64,
                "{ctx} before.blobs"
            );
            for key in gc::RECLAIM_KEYS {
                assert_eq!(
                    count(&dry, "deleted", key),
                    0,
                    "{ctx} dry run deleted.{key}"
                );
            }
            let writes = s3.writes_under_since(mark, &storage.v2_prefix());
            assert!(
                writes.is_empty(),
                "{ctx} a dry run writes nothing to the storage tree: {writes:#?}"
            );
            assert_eq!(
                objects(&s3, &storage),
                before_objects,
                "{ctx} --dry-run changed the bucket"
            );
            reports.push(dry);
        }
        assert_eq!(
            candidate_set(&reports[0]),
            candidate_set(&reports[1]),
            "[{mode}] candidates with TARGET=config.yml vs TARGET=s3://"
        );
        planned = reports.swap_remove(0);
    }

    // The -m sweep, through the URL form.
    let expected = e.blob_garbage(true);
    let mark = s3.mark();
    let started = Instant::now();
    let (report, run) = regsweep_report(&reg, Form::Url, &["-y", "-m"]);
    eprintln!(
        "regsweep gc -m -y: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        s3.requests_since(mark)
    );
    assert_no_secret(&s3, &run, "sweep");
    assert_eq!(report["exit_code"], 0, "sweep:\n{run}");
    assert_eq!(report["failures"], json!([]), "sweep failures");
    for key in gc::RECLAIM_KEYS {
        assert_eq!(
            count(&report, "deleted", key),
            count(&planned, "reclaimable", key),
            "deleted.{key} vs the dry run's reclaimable.{key}"
        );
    }
    let after = blobs(&s3, &storage);
    let expected_after = blobs_but(&before, &expected);
    let after_set: BTreeSet<String> = after.keys().cloned().collect();
    assert_eq!(
        after_set,
        expected_after,
        "blobs in the bucket after the sweep\n  wrongly deleted: {:?}\n  wrongly kept: {:?}",
        expected_after.difference(&after_set).collect::<Vec<_>>(),
        after_set.difference(&expected_after).collect::<Vec<_>>()
    );
    let all_keys = s3.keys("");
    for digest in &expected {
        let hex = digest.split_once(':').unwrap().1;
        let left: Vec<&String> = all_keys.iter().filter(|k| k.contains(hex)).collect();
        assert!(
            left.is_empty(),
            "keys of the deleted blob {digest} left: {left:?}"
        );
    }
    let dangling = dangling_links(&s3, &storage);
    assert!(
        dangling.is_empty(),
        "links to deleted blobs left: {dangling:#?}"
    );
    assert_eq!(
        uploads(&s3, &storage),
        before_uploads,
        "uploads in progress are not garbage"
    );

    // The registry on the swept bucket.
    reg.restart();
    assert_every_tag_pulls(&reg, &e);
    for man in &e.live {
        assert_served(&reg, man, "gc -m");
    }
    for (repo, digest) in e
        .untagged
        .iter()
        .map(|man| (&man.repo, &man.digest))
        .chain(e.api_deleted.iter().map(|(r, d)| (r, d)))
    {
        assert_eq!(
            reg.manifest_status(repo, digest),
            404,
            "{repo}@{digest} should be gone"
        );
    }
    let fresh = layout.layer("after-sweep");
    let image = layout.image(&[&base, &fresh], "amd64");
    layout.tag("after-sweep", &image.manifest);
    push_oci(
        &reg,
        &layout,
        "after-sweep",
        &e.push_after_repo,
        "after-sweep",
        &image,
    );
    let new_ref = format!("{}:after-sweep", e.push_after_repo);
    skopeo::pull_complete(&reg, &new_ref, &image.all());
    for (layout_tag, dest, must) in &e.repush {
        let (repo, tag) = dest.rsplit_once(':').expect("repo:tag");
        skopeo::push(&reg, &layout, layout_tag, repo, tag, Format::Oci);
        skopeo::pull_complete(&reg, dest, must);
    }
    reg.stop();

    // Nothing left to do, and the config form agrees.
    let in_bucket = blobs(&s3, &storage);
    let (again, run) = regsweep_report(&reg, Form::Config, &["-y", "-m"]);
    assert_no_secret(&s3, &run, "second sweep");
    assert_eq!(again["exit_code"], 0, "second sweep:\n{run}");
    gc::assert_nothing_reclaimable(&again);
    assert_eq!(
        blobs(&s3, &storage),
        in_bucket,
        "the second sweep deleted blobs"
    );

    // The upload left in progress is stale now: purging it removes its keys
    // and aborts its multipart upload (which the registry's purge leaves).
    let (keys, multipart) = uploads(&s3, &storage);
    assert!(
        !keys.is_empty() && !multipart.is_empty(),
        "an upload in progress before the purge: {keys:?} {multipart:?}"
    );
    let (purged, run) =
        regsweep_report(&reg, Form::Url, &["-y", "--purge-uploads-older-than", "1s"]);
    assert_eq!(purged["exit_code"], 0, "purge:\n{run}");
    assert_eq!(purged["deleted"]["uploads"], 1, "purge:\n{run}");
    assert_eq!(
        uploads(&s3, &storage),
        (BTreeSet::new(), BTreeSet::new()),
        "the purged upload's keys and multipart upload are gone"
    );
    assert!(
        purged["s3_requests"]["delete"].as_u64() >= Some(2),
        "a DeleteObjects and an abort: {}",
        purged["s3_requests"]
    );
    eprintln!("whole test: {:.1} s", test_started.elapsed().as_secs_f64());
}

/// An S3 endpoint that does not answer: a clear error naming it, a
/// non-zero exit, nothing deleted, no secret printed, in both forms; the
/// same once moto itself is killed.
#[test]
fn an_s3_endpoint_that_does_not_answer_fails_the_run_and_deletes_nothing() {
    if !require_s3() {
        return;
    }
    let mut s3 = S3Server::start();
    let mut reg = Registry::start_s3(s3.storage(ROOTDIR));
    let (_dir, mut layout) = layout();
    let base = layout.layer("base");
    for i in 0..2 {
        let label = format!("v{i}");
        let image = image_on(&mut layout, &base, &label);
        push_oci(&reg, &layout, &label, "app", "latest", &image);
    }
    reg.upload_blob("app", random_hex(64).as_bytes());
    reg.stop();
    let storage = reg.s3().unwrap().clone();
    let before = objects(&s3, &storage);

    // The same storage, at a port where nothing listens.
    let port = closed_port();
    let dead = S3Storage {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..storage.clone()
    };
    let unreachable = Registry::stopped_s3(dead);
    for form in [Form::Config, Form::Url] {
        let run = regsweep_gc(&unreachable, form, &["-y", "-m"]);
        let ctx = format!("{form:?} at a closed port");
        assert_ne!(run.code, Some(0), "{ctx}: exit status\n{run}");
        assert!(run.code.is_some(), "{ctx}: killed by a signal\n{run}");
        assert!(
            run.stderr.contains(&port.to_string()) || run.stderr.contains(s3.bucket()),
            "{ctx}: the error names the endpoint or the bucket\n{run}"
        );
        assert_no_secret(&s3, &run, &ctx);
        let (report, run) = regsweep_report(&unreachable, form, &["-y", "-m"]);
        assert_ne!(report["exit_code"], 0, "{ctx} --json: {run}");
        assert_no_secret(&s3, &run, &ctx);
    }
    assert_eq!(
        objects(&s3, &storage),
        before,
        "a failed run deleted something"
    );

    s3.stop();
    for form in [Form::Config, Form::Url] {
        let run = regsweep_gc(&reg, form, &["-y", "-m"]);
        assert_ne!(run.code, Some(0), "{form:?} with moto killed:\n{run}");
        assert!(run.code.is_some(), "{form:?}: killed by a signal\n{run}");
        assert_no_secret(&s3, &run, "moto killed");
    }
}

/// regsweep killed (SIGKILL) in the middle of an `-m` sweep on S3: the
/// registry restarted on the bucket serves every live tag completely, no
/// link names a missing blob, and a re-run finishes with exactly the
/// expected blobs left.
#[test]
fn an_s3_sweep_killed_mid_way_leaves_a_working_registry_and_a_rerun_finishes_it() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let (mut reg, _layout, _layout_dir, _base, e) = pushed_registry(&s3, history_and_multi_arch);
    let storage = reg.s3().unwrap().clone();
    let before = blobs(&s3, &storage);
    let before_objects = objects(&s3, &storage);
    let expected = e.blob_garbage(true);

    // Held at the second deletion (or batch of deletions: a backend may send
    // DeleteObjects) with one thread, then killed.
    let config = reg.config();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["gc", "--min-age", "0", "-y", "-m", "--delete-threads", "1"])
        .arg(&config)
        .env("REGSWEEP_TEST_PAUSE_AT", "sweep:2")
        .env_remove("REGSWEEP_FAULT_STOP_AFTER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run regsweep");
    let stderr = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stderr.lock().unwrap().contains("test pause at sweep (pid ") {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "regsweep ended ({status}) before its second deletion:\n{}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no pause within 60 s:\n{}",
            stderr.lock().unwrap()
        );
        sleep(Duration::from_millis(20));
    }
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    assert_no_secret(
        &s3,
        &Run {
            code: None,
            stdout: String::new(),
            stderr: stderr.lock().unwrap().clone(),
        },
        "killed run",
    );

    let midway = objects(&s3, &storage);
    assert!(
        midway.len() < before_objects.len()
            && midway.keys().all(|k| before_objects.contains_key(k)),
        "the killed run deleted something and wrote nothing ({} objects before, {} after)",
        before_objects.len(),
        midway.len()
    );
    let dangling = dangling_links(&s3, &storage);
    assert!(
        dangling.is_empty(),
        "links to deleted blobs after the kill: {dangling:#?}"
    );
    reg.restart();
    assert_every_tag_pulls(&reg, &e);
    reg.stop();

    let (rerun, run) = regsweep_report(&reg, Form::Url, &["-y", "-m"]);
    assert_eq!(rerun["exit_code"], 0, "re-run:\n{run}");
    let after: BTreeSet<String> = blobs(&s3, &storage).into_keys().collect();
    let expected_after = blobs_but(&before, &expected);
    assert_eq!(after, expected_after, "blobs after the re-run");
    let (again, run) = regsweep_report(&reg, Form::Url, &["--dry-run", "-m"]);
    assert_eq!(again["exit_code"], 0, "dry run after the re-run:\n{run}");
    gc::assert_nothing_reclaimable(&again);
    reg.restart();
    assert_every_tag_pulls(&reg, &e);
}

/// What an S3 backend may rely on, as moto answers it, and the request
/// counter telling each kind of request apart: a single-part PUT's ETag is
/// the hex MD5 of the content; LastModified has whole seconds; a PUT with
/// `If-None-Match: *` fails (412) on an existing key and writes a new one;
/// CopyObject, DeleteObjects and the multipart calls (ListMultipartUploads
/// too) work.
#[test]
fn moto_answers_what_an_s3_backend_relies_on_and_each_request_kind_is_counted() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let b = s3.bucket().to_string();
    let mark = s3.mark();

    let put = s3.request("PUT", &format!("/{b}/t/a"), &[], b"hello world");
    assert_eq!(put.status, 200, "PUT: {}", put.text());
    assert_eq!(
        put.header("etag"),
        Some("\"5eb63bbbe01eeed093cb22bb8f5acdc3\""),
        "ETag of a single-part PUT: the MD5 of `hello world`"
    );
    let head = s3.request("HEAD", &format!("/{b}/t/a"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("11"));
    assert_eq!(s3.get("t/a").as_deref(), Some(&b"hello world"[..]));

    let if_none_match = [("If-None-Match", "*")];
    let taken = s3.request("PUT", &format!("/{b}/t/a"), &if_none_match, b"other");
    assert_eq!(taken.status, 412, "conditional PUT on an existing key");
    let fresh = s3.request("PUT", &format!("/{b}/t/b"), &if_none_match, b"other");
    assert_eq!(fresh.status, 200, "conditional PUT of a new key");
    assert_eq!(s3.get("t/a").as_deref(), Some(&b"hello world"[..]));

    s3.copy_prefix("t/a", "u/a");
    let listed = s3.request("GET", &format!("/{b}?list-type=2&prefix=u/"), &[], b"");
    let listing = listed.text();
    assert!(
        listing.contains("<Key>u/a</Key>") && listing.contains(".000Z</LastModified>"),
        "the copy listed, LastModified in whole seconds: {listing}"
    );

    let created = s3.request("POST", &format!("/{b}/m/data?uploads"), &[], b"");
    assert_eq!(
        created.status,
        200,
        "CreateMultipartUpload: {}",
        created.text()
    );
    let uploads = s3.multipart_uploads("m/");
    assert_eq!(uploads.len(), 1, "ListMultipartUploads: {uploads:?}");
    let (_, upload_id) = uploads.first().unwrap();
    let aborted = s3.request(
        "DELETE",
        &format!("/{b}/m/data?uploadId={upload_id}"),
        &[],
        b"",
    );
    assert_eq!(aborted.status, 204, "AbortMultipartUpload");

    let batch = b"<Delete><Object><Key>t/b</Key></Object><Object><Key>u/a</Key></Object></Delete>";
    let deleted = s3.request("POST", &format!("/{b}?delete"), &[], batch);
    assert_eq!(deleted.status, 200, "DeleteObjects: {}", deleted.text());
    let removed = s3.request("DELETE", &format!("/{b}/t/a"), &[], b"");
    assert_eq!(removed.status, 204, "DeleteObject");
    assert!(s3.keys("").is_empty(), "every key deleted");

    let counts = s3.requests_since(mark);
    let expect = [
        (RequestKind::Put, 3),
        (RequestKind::Head, 1),
        (RequestKind::Get, 2),
        (RequestKind::Copy, 1),
        // copy_prefix's, the one above, keys("").
        (RequestKind::List, 3),
        // Create, ListMultipartUploads, Abort.
        (RequestKind::Multipart, 3),
        (RequestKind::DeleteObjects, 1),
        (RequestKind::Delete, 1),
        (RequestKind::Other, 0),
    ];
    for (kind, n) in expect {
        assert_eq!(counts.get(kind), n, "{}: {counts}", kind.name());
    }
}

/// The baseline the regsweep tests stand on: through the s3 driver, upstream's
/// `garbage-collect --dry-run` finds exactly the test's model (with `-m`,
/// plus what upstream 2.8's `-m` wrongly takes); its real sweep without `-m`
/// deletes exactly the garbage blobs, uploads in progress stay, and the
/// registry restarted on the bucket serves every tag byte for byte, every
/// manifest, and a copy of the tree under another rootdirectory.
#[test]
fn on_s3_upstream_agrees_with_the_scenarios_and_its_sweep_keeps_every_tag() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let (mut reg, _layout, _layout_dir, _base, e) = pushed_registry(&s3, push_scenarios);
    let storage = reg.s3().unwrap().clone();
    let before = blobs(&s3, &storage);
    let before_uploads = uploads(&s3, &storage);
    assert_eq!(
        before_uploads.1.len(),
        1,
        "the upload in progress is a multipart upload: {before_uploads:?}"
    );

    for m in [false, true] {
        let (dry, _) = upstream_gc(&reg.config(), true, m);
        let mode = if m { "--dry-run -m" } else { "--dry-run" };
        assert_upstream_follows_the_model(&dry, &e, m, mode);
    }

    let mark = s3.mark();
    let (swept, run) = upstream_gc(&reg.config(), false, false);
    eprintln!("upstream garbage-collect: {}", s3.requests_since(mark));
    assert_eq!(swept.blobs, e.blob_garbage(false), "upstream sweep:\n{run}");
    let after: BTreeSet<String> = blobs(&s3, &storage).into_keys().collect();
    let expected_after = blobs_but(&before, &e.blob_garbage(false));
    assert_eq!(after, expected_after, "blobs after upstream's sweep");
    assert_eq!(
        uploads(&s3, &storage),
        before_uploads,
        "uploads in progress"
    );

    reg.restart();
    assert_every_tag_pulls(&reg, &e);
    for man in e.live.iter().chain(&e.untagged) {
        assert_served(&reg, man, "after upstream's sweep");
    }
    reg.stop();
    s3.copy_prefix(&format!("{ROOTDIR}/"), "copy/");
    let copy = Registry::start_s3(s3.storage("copy"));
    let (tag, must) = &e.tags[0];
    skopeo::pull_complete(&copy, tag, must);
}

/// Every object under `prefix`: key → content.
fn contents(s3: &S3Server, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    s3.keys(prefix)
        .into_iter()
        .map(|key| {
            let bytes = s3
                .get(&key)
                .unwrap_or_else(|| panic!("{key} listed, then gone"));
            (key, bytes)
        })
        .collect()
}

/// `regsweep ARGS...` with the `AWS_*` environment of `reg`'s bucket.
fn regsweep_on_bucket(reg: &Registry, args: &[&str]) -> Run {
    let env: Vec<(String, String)> = reg
        .s3()
        .expect("a registry on S3")
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    bounded(args, &env, Duration::from_secs(120))
}

/// `gc --trash` on a bucket: refused (exit 2, nothing changed) inside the
/// registry's v2 prefix, in another bucket, or as a directory. An `-m`
/// sweep into `s3://BUCKET/trash` takes exactly the expected blobs out of
/// the registry, copies every key it deletes into the batch byte for byte,
/// journals it, and the registry serves every tag. `trash list` shows the
/// batch. `restore` refuses while a key to restore exists again; once it is
/// gone, it brings back every key of the registry byte for byte, empties
/// the trash, and the registry serves the restored untagged manifests. A
/// second sweep's batch goes for good with `trash empty`.
#[test]
fn an_s3_sweep_into_a_trash_prefix_is_undone_by_restore_byte_for_byte() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let (mut reg, _layout, _layout_dir, _base, e) = pushed_registry(&s3, history_and_multi_arch);
    let storage = reg.s3().unwrap().clone();
    let v2 = storage.v2_prefix();
    let before = contents(&s3, &v2);
    let before_blobs = blobs(&s3, &storage);
    let expected = e.blob_garbage(true);
    let trash_url = format!("s3://{}/trash", storage.bucket);
    let url = storage.url();

    let refusals = [
        (
            format!("s3://{}/{v2}trash", storage.bucket),
            "inside the registry's prefix",
        ),
        (
            "s3://other-bucket/trash".to_string(),
            "not in the registry's bucket",
        ),
        (
            "/tmp/regsweep-trash".to_string(),
            "its trash is a prefix in that bucket",
        ),
    ];
    for (trash, why) in &refusals {
        let run = regsweep_on_bucket(&reg, &["gc", "-y", "-m", "--trash", trash, &url]);
        assert_eq!(run.code, Some(2), "--trash {trash}:\n{run}");
        assert!(
            run.stderr.contains(why),
            "--trash {trash}: says `{why}`:\n{run}"
        );
        assert_eq!(
            contents(&s3, &v2).keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "--trash {trash}: nothing deleted"
        );
        assert!(
            s3.keys("trash/").is_empty(),
            "--trash {trash}: nothing written"
        );
    }

    let mark = s3.mark();
    let run = regsweep_on_bucket(
        &reg,
        &["gc", "-y", "-m", "--json", "--trash", &trash_url, &url],
    );
    assert_eq!(run.code, Some(0), "gc --trash:\n{run}");
    eprintln!("gc -m --trash: {}", s3.requests_since(mark));
    let report: Value = serde_json::from_str(&run.stdout).expect("one JSON report");
    let batch = report["trash"]["batch"]
        .as_str()
        .unwrap_or_else(|| panic!("trash.batch in the report:\n{run}"))
        .to_string();
    assert_eq!(report["trash"]["dir"], trash_url.as_str(), "trash.dir");
    let after: BTreeSet<String> = blobs(&s3, &storage).into_keys().collect();
    let expected_after = blobs_but(&before_blobs, &expected);
    assert_eq!(after, expected_after, "blobs left in the registry");
    let now = contents(&s3, &v2);
    let gone: BTreeSet<&String> = before.keys().filter(|k| !now.contains_key(*k)).collect();
    assert!(!gone.is_empty(), "the sweep moved something");
    let batch_prefix = format!("trash/{batch}/");
    let in_batch = contents(&s3, &batch_prefix);
    let mut journaled = BTreeSet::new();
    for (key, bytes) in &in_batch {
        let name = &key[batch_prefix.len()..];
        if name.starts_with("journal-") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            let mut lines = text.lines();
            let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
            assert_eq!(header["batch"], batch.as_str(), "{key}: header");
            assert_eq!(header["storage_root"], url.as_str(), "{key}: header");
            for line in lines {
                let entry: Value = serde_json::from_str(line).unwrap();
                assert_eq!(entry["op"], "move", "{key}: {line}");
                journaled.insert(format!("{ROOTDIR}/{}", entry["key"].as_str().unwrap()));
            }
        }
    }
    assert!(
        in_batch.contains_key(&format!("{batch_prefix}end.json")),
        "end.json in {batch_prefix}: {:?}",
        in_batch.keys()
    );
    for key in &gone {
        assert!(journaled.contains(*key), "{key} gone but not journaled");
        let moved = format!("{batch_prefix}{}", &key[ROOTDIR.len() + 1..]);
        assert_eq!(
            in_batch.get(&moved),
            before.get(*key),
            "{key}: its copy {moved} in the batch"
        );
    }
    reg.restart();
    assert_every_tag_pulls(&reg, &e);
    reg.stop();

    let run = regsweep_on_bucket(&reg, &["trash", "list", "--json", &trash_url]);
    assert_eq!(run.code, Some(0), "trash list:\n{run}");
    let listing: Value = serde_json::from_str(&run.stdout).expect("trash list JSON");
    assert_eq!(listing["batches"][0]["batch"], batch.as_str(), "{listing}");
    assert_eq!(
        listing["batches"][0]["moves"].as_u64(),
        Some(journaled.len() as u64),
        "{listing}"
    );

    // A key to restore is back in the registry: refused, nothing copied.
    let blob_key = gone
        .iter()
        .find(|k| k.ends_with("/data"))
        .expect("a blob moved");
    s3.put(blob_key, &before[*blob_key]);
    let run = regsweep_on_bucket(&reg, &["restore", &trash_url]);
    assert_eq!(run.code, Some(2), "restore with a key in the way:\n{run}");
    assert!(run.stderr.contains("exists again"), "says why:\n{run}");
    assert_eq!(
        contents(&s3, &batch_prefix),
        in_batch,
        "the batch is untouched"
    );
    assert_eq!(
        s3.keys(&v2).len(),
        now.len() + 1,
        "nothing restored but the key put back"
    );
    s3.delete(blob_key);

    let mark = s3.mark();
    let run = regsweep_on_bucket(&reg, &["restore", "--json", &trash_url]);
    assert_eq!(run.code, Some(0), "restore:\n{run}");
    eprintln!("restore: {}", s3.requests_since(mark));
    let restored: Value = serde_json::from_str(&run.stdout).expect("restore JSON");
    assert_eq!(restored["batches"], json!([batch]), "{restored}");
    assert_eq!(
        restored["restored"].as_u64(),
        Some(gone.len() as u64),
        "{restored}"
    );
    assert!(
        contents(&s3, &v2) == before,
        "the registry's keys after restore differ from before the sweep"
    );
    assert!(
        s3.keys("trash/").is_empty(),
        "the trash is empty after restore"
    );
    reg.restart();
    for man in &e.untagged {
        assert_served(&reg, man, "restored");
    }
    assert_every_tag_pulls(&reg, &e);
    reg.stop();

    // A run killed between a journal and a copy: the key is journaled, not
    // in the batch, still in the registry. Restore skips it.
    let run = regsweep_on_bucket(&reg, &["gc", "-y", "-m", "--trash", &trash_url, &url]);
    assert_eq!(run.code, Some(0), "second gc --trash:\n{run}");
    let moved = format!("{batch_prefix}{}", &blob_key[ROOTDIR.len() + 1..]);
    let second = s3
        .keys("trash/")
        .into_iter()
        .find(|k| k.ends_with(&moved[batch_prefix.len()..]))
        .expect("the blob in the second batch");
    s3.delete(&second);
    s3.put(blob_key, &before[*blob_key]);
    let run = regsweep_on_bucket(&reg, &["restore", "--json", &trash_url]);
    assert_eq!(
        run.code,
        Some(0),
        "restore of a batch missing a key:\n{run}"
    );
    let restored: Value = serde_json::from_str(&run.stdout).expect("restore JSON");
    assert_eq!(restored["skipped"].as_u64(), Some(1), "{restored}");
    assert!(
        contents(&s3, &v2) == before,
        "the registry's keys after the second restore differ from before the sweeps"
    );
    assert!(
        s3.keys("trash/").is_empty(),
        "the trash is empty after restore"
    );

    let run = regsweep_on_bucket(&reg, &["gc", "-y", "-m", "--trash", &trash_url, &url]);
    assert_eq!(run.code, Some(0), "third gc --trash:\n{run}");
    let third = s3.keys("trash/");
    assert!(!third.is_empty(), "the third batch");
    // A batch without its end, its registry locked by a live run: it may
    // still be written, and stays.
    let end = third
        .iter()
        .find(|k| k.ends_with("/end.json"))
        .expect("end.json in the third batch");
    s3.delete(end);
    let lock = format!("{ROOTDIR}/regsweep.lock");
    let holder = json!({
        "pid": std::process::id(),
        "host": rustix::system::uname().nodename().to_string_lossy(),
        "started": "2026-01-01T00:00:00Z",
        "command": "gc",
    });
    s3.put(&lock, holder.to_string().as_bytes());
    let run = regsweep_on_bucket(&reg, &["trash", "empty", "-y", &trash_url]);
    assert_eq!(
        run.code,
        Some(2),
        "trash empty while the registry is locked:\n{run}"
    );
    assert!(run.stderr.contains("pid"), "names the holder:\n{run}");
    assert_eq!(
        s3.keys("trash/").len(),
        third.len() - 1,
        "nothing deleted while locked"
    );
    s3.delete(&lock);
    let run = regsweep_on_bucket(&reg, &["trash", "empty", "-y", &trash_url]);
    assert_eq!(run.code, Some(0), "trash empty:\n{run}");
    assert!(
        s3.keys("trash/").is_empty(),
        "trash empty deleted the batch"
    );
    let run = regsweep_on_bucket(&reg, &["restore", &trash_url]);
    assert_eq!(run.code, Some(2), "restore of an empty trash:\n{run}");
}

/// Pull logs on a bucket, read as on disk: a HEAD by tag in the registry's
/// app log is the last pull of that repository, and a repository no line
/// names was never pulled.
#[test]
fn on_s3_du_reads_the_last_pull_from_the_registrys_log() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let (reg, _layout, dir, _base, e) = pushed_registry(&s3, history_and_multi_arch);
    let (pulled, _) = e.tags.first().expect("a tag");
    let (repository, tag) = pulled.rsplit_once(':').expect("repo:tag");
    let log = dir.path().join("registry.log");
    let now = regsweep::clock::rfc3339(std::time::SystemTime::now());
    let line = format!(
        "{{\"time\":\"{now}\",\"level\":\"info\",\"msg\":\"response completed\",\"http.request.method\":\"HEAD\",\"http.request.uri\":\"/v2/{repository}/manifests/{tag}\",\"http.request.useragent\":\"containerd/1.7\",\"http.response.status\":200}}\n"
    );
    std::fs::write(&log, line).unwrap();
    let url = reg.s3().unwrap().url();
    let log = log.to_str().unwrap();
    let run = regsweep_on_bucket(
        &reg,
        &[
            "du",
            "--json",
            "--pull-log",
            log,
            "--pulled-within",
            "1d",
            "--pull-log-assume-complete",
            &url,
        ],
    );
    assert_eq!(run.code, Some(0), "{run}");
    let report: Value = serde_json::from_str(&run.stdout).expect("du JSON");
    let repositories = report["repositories"].as_array().unwrap();
    let by_name = |name: &str| {
        repositories
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    let last = &by_name(repository)["pulls"]["last_pull"];
    assert_eq!(last["method"], "HEAD", "{report}");
    assert_eq!(last["reference"], tag, "{report}");
    assert_eq!(last["user_agent"], "containerd/1.7", "{report}");
    let never = repositories
        .iter()
        .find(|r| r["name"] != repository)
        .expect("another repository");
    assert!(never["pulls"]["last_pull"].is_null(), "{report}");
}

/// `verify --digests` on a bucket: nothing to report on what the registry
/// wrote; a blob overwritten with other bytes is a digest mismatch naming
/// the tags it breaks, and a layer link with other content an invalid link.
#[test]
fn on_s3_verify_hashes_every_blob_and_checks_links_by_their_etags() {
    if !require_s3() {
        return;
    }
    let s3 = S3Server::start();
    let (reg, _layout, _dir, _base, e) = pushed_registry(&s3, history_and_multi_arch);
    let storage = reg.s3().unwrap().clone();
    let url = storage.url();
    let clean = regsweep_on_bucket(&reg, &["verify", "--digests", "--json", &url]);
    assert_eq!(clean.code, Some(0), "{clean}");

    let v2 = storage.v2_prefix();
    let (tag, must) = e.tags.first().expect("a tag");
    let layer = must.last().expect("a blob of the tag");
    let hex = layer.trim_start_matches("sha256:");
    let data = format!("{v2}blobs/sha256/{}/{hex}/data", &hex[..2]);
    let mut bytes = s3.get(&data).expect("the blob's data");
    bytes.push(b'!');
    s3.put(&data, &bytes);
    let link = s3
        .keys(&format!("{v2}repositories/"))
        .into_iter()
        .find(|k| k.contains("/_layers/sha256/") && k.ends_with("/link"))
        .expect("a layer link");
    s3.put(&link, format!("sha256:{}", "0".repeat(64)).as_bytes());

    let run = regsweep_on_bucket(&reg, &["verify", "--digests", "--json", &url]);
    assert_eq!(run.code, Some(1), "{run}");
    let report: Value = serde_json::from_str(&run.stdout).expect("verify JSON");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "digest_mismatch" && p["digest"] == layer.as_str()),
        "{report}"
    );
    assert!(
        problems.iter().any(|p| p["kind"] == "invalid_link"
            && p["path"]
                .as_str()
                .is_some_and(|path| link.ends_with(path) || path.ends_with(&link[v2.len()..]))),
        "{report}"
    );
    let (repository, name) = tag.rsplit_once(':').unwrap();
    assert!(
        report["broken_tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["repository"] == repository && t["tag"] == name),
        "{report}"
    );
}
