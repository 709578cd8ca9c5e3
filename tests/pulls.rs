//! Retention by last pull, end to end on small storage trees with
//! controlled times and hand-written registry log lines: a pull by tag keeps
//! the manifest the tag served then (read from the tag's history times),
//! logs that cannot be read or do not cover the window refuse the run, and
//! standard input is read as a log.

mod layout_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use layout_support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn days_ago(days: u64) -> SystemTime {
    SystemTime::now() - DAY * days as u32
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `t` as the registry's app log writes it (to the second here).
fn log_time(t: SystemTime) -> String {
    regsweep::clock::rfc3339(t)
}

fn app_line(t: SystemTime, method: &str, uri: &str, status: u16) -> String {
    format!(
        "time=\"{}\" level=info msg=\"response completed\" go.version=go1.19.8 http.request.host=\"r:5000\" http.request.method={method} http.request.uri={uri} http.request.useragent=containerd/1.7.13 http.response.status={status}\n",
        log_time(t)
    )
}

/// A log covering the last 40 days (a health check at each end) with
/// `lines` in between.
fn write_log(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("app.log");
    let mut text = app_line(days_ago(40), "GET", "/v2/", 200);
    for line in lines {
        text.push_str(line);
    }
    text.push_str(&app_line(
        SystemTime::now() - Duration::from_secs(60),
        "GET",
        "/v2/",
        200,
    ));
    fs::write(&path, text).unwrap();
    path
}

/// `app`: tag `moving` was set to `first` 20 days ago, then to `second` 10
/// days ago; `old` points at `first`, pushed 60 days ago.
fn rolled_tree() -> (LayoutBuilder, Manifest, Manifest) {
    let mut b = LayoutBuilder::new();
    let first = b.simple_image("first", &[]);
    let second = b.simple_image("second", &[]);
    b.push("app", "moving", &first);
    b.push("app", "moving", &second);
    b.push("app", "old", &first);
    date_tag(&b, "moving", &[(&first, 20), (&second, 10)]);
    date_tag(&b, "old", &[(&first, 60)]);
    (b, first, second)
}

/// Dates the pushes of `app`'s `tag`: each manifest it was set to, `days`
/// ago; its current link as the last of them.
fn date_tag(b: &LayoutBuilder, tag: &str, pushes: &[(&Manifest, u64)]) {
    for (manifest, days) in pushes {
        set_mtime(
            &tag_index_link(b.root(), "app", tag, &manifest.digest),
            days_ago(*days),
        );
    }
    if let Some((_, days)) = pushes.last() {
        set_mtime(&tag_current_link(b.root(), "app", tag), days_ago(*days));
    }
}

fn decided(report: &Value, which: &str) -> Vec<String> {
    report["policy"]["repositories"][0][which]
        .as_array()
        .unwrap_or_else(|| panic!("no policy decisions: {report:#}"))
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect()
}

fn reason(report: &Value, tag: &str) -> String {
    ["kept", "deleted"]
        .iter()
        .flat_map(|w| report["policy"]["repositories"][0][w].as_array().unwrap())
        .find(|t| t["tag"] == tag)
        .map(|t| t["reason"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no decision for {tag}: {report:#}"))
}

const POLICY: [&str; 5] = [
    "--dry-run",
    "--keep-last",
    "0",
    "--allow-empty-repos",
    "--keep-pulled-within",
];

/// The dry run of [`POLICY`] over 30 days with `log`, as JSON.
fn keep_pulled_30d(b: &LayoutBuilder, log: &Path) -> Value {
    keep_pulled_30d_with(b, log, &[])
}

/// [`keep_pulled_30d`] with `extra` arguments.
fn keep_pulled_30d_with(b: &LayoutBuilder, log: &Path, extra: &[&str]) -> Value {
    let mut args = POLICY.to_vec();
    args.extend(["30d", "--pull-log", log.to_str().unwrap()]);
    args.extend(extra);
    gc_json(b.root(), &args)
}

#[test]
fn a_pull_by_tag_before_its_last_push_keeps_the_manifest_it_served_then() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    // `moving` pulled 15 days ago, when it pointed at `first`.
    let log = write_log(
        dir.path(),
        &[app_line(
            days_ago(15),
            "HEAD",
            "/v2/app/manifests/moving",
            200,
        )],
    );
    let report = keep_pulled_30d(&b, &log);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(
        decided(&report, "deleted"),
        Vec::<String>::new(),
        "{report:#}"
    );
    assert!(
        reason(&report, "old").contains("pulled 15d ago (HEAD by tag `moving`, containerd/1.7.13)"),
        "{report:#}"
    );
    assert!(
        reason(&report, "moving").contains("HEAD by tag, containerd"),
        "{report:#}"
    );
}

/// Each line of `log` as a log collector stores it: `docker` (json-file),
/// `cri` (Kubernetes, every line split in two records) or `journald`
/// (`journalctl -o json`).
fn wrap(log: &Path, collector: &str) -> PathBuf {
    let text = fs::read_to_string(log).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let at = regsweep::clock::rfc3339(SystemTime::now());
        match collector {
            "docker" => out.push_str(&format!(
                "{}\n",
                serde_json::json!({"log": format!("{line}\n"), "stream": "stderr", "time": at})
            )),
            "cri" => {
                let (head, tail) = line.split_at(line.len() / 2);
                out.push_str(&format!("{at} stderr P {head}\n{at} stderr F {tail}\n"));
            }
            _ => out.push_str(&format!(
                "{}\n",
                serde_json::json!({
                    "MESSAGE": line,
                    "__REALTIME_TIMESTAMP": "1765000000000000",
                    "_SYSTEMD_UNIT": "docker-registry.service",
                })
            )),
        }
    }
    let wrapped = log.with_extension(collector);
    fs::write(&wrapped, out).unwrap();
    wrapped
}

#[test]
fn logs_as_collectors_store_them_are_read_like_the_registrys_own_lines() {
    for (collector, counter) in [
        ("docker", "docker_json_file"),
        ("cri", "cri"),
        ("journald", "journald"),
    ] {
        let (b, _first, _second) = rolled_tree();
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(
            dir.path(),
            &[app_line(
                days_ago(15),
                "HEAD",
                "/v2/app/manifests/moving",
                200,
            )],
        );
        let wrapped = wrap(&log, collector);
        let report = keep_pulled_30d(&b, &wrapped);
        assert_eq!(report["exit_code"], 0, "{collector}: {report:#}");
        assert_eq!(
            decided(&report, "deleted"),
            Vec::<String>::new(),
            "{collector}: {report:#}"
        );
        assert!(
            reason(&report, "old").contains("pulled 15d ago (HEAD by tag `moving`"),
            "{collector}: {report:#}"
        );
        let file = &report["pull_logs"]["files"][0];
        assert_eq!(file["rejected"], 0, "{collector}: {file:#}");
        assert_eq!(file["wrappers"][counter], 3, "{collector}: {file:#}");
    }
    // The human report says what was peeled off.
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let wrapped = wrap(&write_log(dir.path(), &[]), "cri");
    let mut args = POLICY.to_vec();
    args.extend(["30d", "--pull-log", wrapped.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("gc")
        .args(&args)
        .arg(b.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(unwrapped: CRI 2, 2 joined)"), "{stdout}");
}

/// Manifests `-m` would delete, as `-v --json` lists them.
fn manifest_candidates(report: &Value) -> Vec<String> {
    report["candidates"]
        .as_array()
        .unwrap_or_else(|| panic!("no candidates: {report:#}"))
        .iter()
        .filter(|c| c["kind"] == "manifest")
        .map(|c| c["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_manifest_pulled_by_digest_within_protect_pulled_within_survives_m() {
    let mut b = LayoutBuilder::new();
    let current = b.simple_image("current", &[]);
    let pinned = b.simple_image("pinned", &[]);
    let stale = b.simple_image("stale", &[]);
    b.push("app", "v1", &current);
    b.push_untagged("app", &pinned);
    b.push_untagged("app", &stale);
    let dir = tempfile::tempdir().unwrap();
    // A pod pinned to `pinned` pulled it by digest five days ago.
    let log = write_log(
        dir.path(),
        &[app_line(
            days_ago(5),
            "GET",
            &format!("/v2/app/manifests/{}", pinned.digest),
            200,
        )],
    );
    let log = log.to_str().unwrap();
    let base = ["--dry-run", "-m", "--min-age", "0", "--pull-log", log];

    let without = gc_json(b.root(), &base);
    let mut both = vec![pinned.digest.to_string(), stale.digest.to_string()];
    both.sort();
    let mut listed = manifest_candidates(&without);
    listed.sort();
    assert_eq!(listed, both, "{without:#}");

    let mut args = base.to_vec();
    args.extend(["--protect-pulled-within", "30d"]);
    let with = gc_json(b.root(), &args);
    assert_eq!(with["exit_code"], 0, "{with:#}");
    assert_eq!(
        manifest_candidates(&with),
        [stale.digest.to_string()],
        "{with:#}"
    );
    assert_eq!(with["pull_logs"]["protected_by_digest_pull"], 1, "{with:#}");
    // Its layers stay with it.
    let reclaimed = with["reclaimable"]["blobs"].as_u64().unwrap();
    assert!(
        reclaimed < without["reclaimable"]["blobs"].as_u64().unwrap(),
        "{with:#}"
    );

    // Logs that do not reach back over the window refuse, nothing decided.
    let mut args = base.to_vec();
    args.extend(["--protect-pulled-within", "60d"]);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("gc")
        .args(&args)
        .arg(b.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--protect-pulled-within 60d looks back"),
        "{out:?}"
    );
}

#[test]
fn pulls_by_an_ignored_user_agent_do_not_keep_a_tag() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    // Only a scanner pulled `old` (5 days ago), through `moving`'s image;
    // containerd pulled `moving` itself.
    let scanner = format!(
        "time=\"{}\" level=info msg=\"response completed\" http.request.method=GET http.request.uri=/v2/app/manifests/old http.request.useragent=\"Trivy/0.50.1\" http.response.status=200\n",
        log_time(days_ago(5))
    );
    let log = write_log(
        dir.path(),
        &[
            scanner,
            app_line(days_ago(4), "HEAD", "/v2/app/manifests/moving", 200),
        ],
    );
    let counted = keep_pulled_30d(&b, &log);
    assert_eq!(
        decided(&counted, "deleted"),
        Vec::<String>::new(),
        "{counted:#}"
    );

    let ignored = keep_pulled_30d_with(&b, &log, &["--pull-ignore-user-agent", "^Trivy/"]);
    assert_eq!(decided(&ignored, "deleted"), ["old"], "{ignored:#}");
    assert_eq!(
        ignored["pull_logs"]["files"][0]["ignored_pulls"], 1,
        "{ignored:#}"
    );

    // The same scanner, known by its address instead.
    let from_scanner = format!(
        "time=\"{}\" level=info msg=\"response completed\" http.request.method=GET http.request.remoteaddr=\"10.9.8.7:40000\" http.request.uri=/v2/app/manifests/old http.request.useragent=\"scanner\" http.response.status=200\n",
        log_time(days_ago(5))
    );
    let other = dir.path().join("by-address");
    fs::create_dir(&other).unwrap();
    let by_address = write_log(
        &other,
        &[
            from_scanner,
            app_line(days_ago(4), "HEAD", "/v2/app/manifests/moving", 200),
        ],
    );
    assert_eq!(
        decided(&keep_pulled_30d(&b, &by_address), "deleted"),
        Vec::<String>::new()
    );
    let ignored = keep_pulled_30d_with(&b, &by_address, &["--pull-ignore-client", "10.9.0.0/16"]);
    assert_eq!(decided(&ignored, "deleted"), ["old"], "{ignored:#}");

    // A pattern that is not a regular expression is refused up front.
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--dry-run", "--pull-log"])
        .arg(&log)
        .args(["--pull-ignore-user-agent", "Trivy/("])
        .arg(b.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular expression"),
        "{out:?}"
    );
}

#[test]
fn the_metrics_file_gives_what_the_pull_logs_held() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        &[app_line(
            days_ago(5),
            "GET",
            "/v2/app/manifests/moving",
            200,
        )],
    );
    let metrics = dir.path().join("regsweep.prom");
    let mut args = POLICY.to_vec();
    args.extend([
        "30d",
        "--pull-log",
        log.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    gc_json(b.root(), &args);
    let text = fs::read_to_string(&metrics).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the text format ({e}):\n{text}"));
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => panic!("{name} is not a gauge"),
            })
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
    };
    // Two health checks and the pull.
    assert_eq!(value("regsweep_last_run_pull_log_lines"), 3.0);
    assert_eq!(value("regsweep_last_run_pull_log_pulls"), 1.0);
    assert_eq!(value("regsweep_last_run_pull_log_rejected_lines"), 0.0);
    let last = value("regsweep_last_run_pull_log_last_timestamp_seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 600.0..=now).contains(&last), "{last} against {now}");
}

#[test]
fn a_pull_by_tag_after_its_last_push_keeps_only_the_current_manifest() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        &[app_line(
            days_ago(5),
            "GET",
            "/v2/app/manifests/moving",
            200,
        )],
    );
    let report = keep_pulled_30d(&b, &log);
    assert_eq!(decided(&report, "deleted"), ["old"], "{report:#}");
    assert!(
        reason(&report, "old").contains("not pulled or pushed within 30d (no pull in the logs)"),
        "{report:#}"
    );
}

#[test]
fn logs_that_do_not_reach_over_the_window_refuse_the_run() {
    let (b, _, _) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &[]);
    let before = snapshot(b.root());
    let out = regsweep([
        "gc",
        "-y",
        "--keep-last",
        "0",
        "--allow-empty-repos",
        "--keep-pulled-within",
        "60d",
        "--pull-log",
        log.to_str().unwrap(),
        b.root().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 2, "{stderr}");
    assert!(
        stderr.contains("--keep-pulled-within 60d looks back to"),
        "{stderr}"
    );
    assert!(stderr.contains("missing"), "{stderr}");
    assert!(stderr.contains("nothing was deleted"), "{stderr}");
    assert_eq!(snapshot(b.root()), before);
}

#[test]
fn a_pull_log_that_cannot_be_read_is_named_and_refused() {
    let (b, _, _) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("rotated.log.1");
    let report = keep_pulled_30d(&b, &missing);
    assert_eq!(report["exit_code"], 2);
    assert_eq!(report["kind"], "pull_log");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("rotated.log.1: cannot read the pull log"),
        "{report:#}"
    );
}

#[test]
fn a_pull_rule_without_logs_is_refused() {
    let (b, _, _) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    fs::write(&policy, r#"{"rules": [{"pulled_within": "30d"}]}"#).unwrap();
    let report = gc_json(b.root(), &["--policy", policy.to_str().unwrap()]);
    assert_eq!(report["exit_code"], 2, "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("rules[0] pulled_within 30d needs the registry's logs"),
        "{report:#}"
    );
    // The flag says it at once.
    let out = regsweep([
        "gc",
        "--keep-last",
        "1",
        "--keep-pulled-within",
        "30d",
        b.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pull-log"));
}

#[test]
fn standard_input_is_read_as_a_log() {
    let (b, _, _) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let log = fs::read(write_log(
        dir.path(),
        &[app_line(days_ago(2), "GET", "/v2/app/manifests/old", 304)],
    ))
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--json", "--min-age", "0"])
        .args(POLICY)
        .args(["30d", "--pull-log", "-", b.root().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(report["pull_logs"]["files"][0]["path"], "-");
    assert_eq!(report["pull_logs"]["files"][0]["pulls"], 1);
    assert!(
        reason(&report, "old").contains("pulled 2d ago (GET by tag"),
        "{report:#}"
    );
}

#[test]
fn the_human_report_gives_a_line_per_log_and_why_each_tag_stays() {
    let (b, _, _) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![app_line(
        days_ago(3),
        "HEAD",
        "/v2/app/manifests/moving",
        200,
    )];
    lines.push("INFO[0042] response completed http.request.uri=/v2/app/manifests/old\n".into());
    let log = write_log(dir.path(), &lines);
    let mut args = vec!["gc"];
    args.extend(POLICY);
    args.extend([
        "30d",
        "--pull-log",
        log.to_str().unwrap(),
        b.root().to_str().unwrap(),
    ]);
    let out = regsweep(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        stdout.contains("Pull logs: 1 file, 4 lines, 1 pull of 2 references, "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  {}: 4 lines (distribution-text 3), 1 pull, ",
            log.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("; 1 line not read, 1 of which name a manifest, counted as pulled"),
        "{stdout}"
    );
    assert!(
        stdout.contains("They cover the pull window of --keep-pulled-within 30d"),
        "{stdout}"
    );
    // The line not read names `old`: kept, as pulled at the log's end.
    assert!(stdout.contains("a log line not fully read"), "{stdout}");
}

/// `t` as a combined-format access line writes it.
fn clf_time(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .unwrap()
        .strftime("%d/%b/%Y:%H:%M:%S +0000")
        .to_string()
}

/// `rolled_tree` and `other`, pointing at `second` since 60 days ago:
/// only a pull of `second` keeps it.
fn rolled_tree_with_other() -> (LayoutBuilder, Manifest, Manifest) {
    let (mut b, first, second) = rolled_tree();
    b.push("app", "other", &second);
    date_tag(&b, "other", &[(&second, 60)]);
    (b, first, second)
}

/// A proxy's log of `pulls` (lines written by `line`), its first and last
/// line a request for `/v2/` 40 days ago and a minute ago.
fn write_proxy_log(
    dir: &Path,
    name: &str,
    line: impl Fn(SystemTime, &str, &str) -> String,
    pulls: &[String],
) -> PathBuf {
    let path = dir.join(name);
    let mut text = line(days_ago(40), "", "");
    for pull in pulls {
        text.push_str(pull);
    }
    text.push_str(&line(SystemTime::now() - Duration::from_secs(60), "", ""));
    fs::write(&path, text).unwrap();
    path
}

/// nginx's combined format with `$upstream_http_docker_content_digest`
/// after the agent; `uri` is `/v2/` when `digest` is empty.
fn nginx_line(t: SystemTime, uri: &str, digest: &str) -> String {
    let uri = if uri.is_empty() { "/v2/" } else { uri };
    let digest = if digest.is_empty() { "-" } else { digest };
    format!(
        "10.0.0.5 - - [{}] \"GET {uri} HTTP/1.1\" 200 1638 \"-\" \"containerd/1.7.13\" {digest}\n",
        clf_time(t)
    )
}

/// Caddy's JSON access line, the registry's digest in `resp_headers`.
fn caddy_line(t: SystemTime, uri: &str, digest: &str) -> String {
    let uri = if uri.is_empty() { "/v2/" } else { uri };
    let ts = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut headers = serde_json::json!({"Content-Type": ["application/json"]});
    if !digest.is_empty() {
        headers["Docker-Content-Digest"] = serde_json::json!([digest]);
    }
    format!(
        "{}\n",
        serde_json::json!({
            "level": "info", "ts": ts, "logger": "http.log.access.log0", "msg": "handled request",
            "request": {"remote_ip": "10.0.0.5", "method": "GET", "host": "r", "uri": uri,
                        "headers": {"User-Agent": ["containerd/1.7.13"]}},
            "duration": 0.003, "size": 1638, "status": 200, "resp_headers": headers,
        })
    )
}

#[test]
fn a_pull_by_tag_whose_line_names_the_digest_served_keeps_only_that_manifest() {
    for (name, line) in [
        (
            "access.log",
            nginx_line as fn(SystemTime, &str, &str) -> String,
        ),
        ("caddy.log", caddy_line),
    ] {
        let (b, first, _second) = rolled_tree_with_other();
        let dir = tempfile::tempdir().unwrap();
        let pulled = |digest: &str| {
            write_proxy_log(
                dir.path(),
                name,
                line,
                &[line(days_ago(15), "/v2/app/manifests/moving", digest)],
            )
        };
        // `moving` pulled 15 days ago: its history says `first` or
        // `second` (set 10 days ago, after the pull); the line says
        // `first`, so `other` (at `second`) goes and `old` (at `first`)
        // stays.
        let log = pulled(&first.digest);
        let report = keep_pulled_30d(&b, &log);
        assert_eq!(report["exit_code"], 0, "{name}: {report:#}");
        assert_eq!(decided(&report, "deleted"), ["other"], "{name}: {report:#}");
        assert!(
            reason(&report, "old").contains("(GET by tag `moving`, containerd/1.7.13)"),
            "{name}: {report:#}"
        );
        assert_eq!(
            report["pull_logs"]["files"][0]["rejected"], 0,
            "{name}: {report:#}"
        );

        // Without the digest, the history decides: both could have been
        // served, both stay.
        let log = pulled("");
        let report = keep_pulled_30d(&b, &log);
        assert_eq!(
            decided(&report, "deleted"),
            Vec::<String>::new(),
            "{name}: {report:#}"
        );

        // A digest the tag never held (an old client given a list's
        // child): the history still decides what the tag served.
        let child = format!("sha256:{}", "c".repeat(64));
        let log = pulled(&child);
        let report = keep_pulled_30d(&b, &log);
        assert_eq!(
            decided(&report, "deleted"),
            Vec::<String>::new(),
            "{name}: {report:#}"
        );
    }
}

#[test]
fn a_quoted_glob_is_expanded_and_one_matching_nothing_is_refused() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    // The pull in a rotated file, the coverage in the current one.
    let current = write_log(&logs, &[]);
    fs::write(
        logs.join("app.log.1"),
        app_line(days_ago(15), "HEAD", "/v2/app/manifests/moving", 200),
    )
    .unwrap();
    fs::write(logs.join("unrelated.txt"), "not a log\n").unwrap();
    let pattern = logs.join("app.log*");
    let report = keep_pulled_30d(&b, &pattern);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    let files: Vec<&str> = report["pull_logs"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            current.to_str().unwrap(),
            logs.join("app.log.1").to_str().unwrap()
        ]
    );
    assert!(
        reason(&report, "old").contains("pulled 15d ago"),
        "{report:#}"
    );

    let nothing = logs.join("registry-*.log");
    let mut args = POLICY.to_vec();
    args.extend(["30d", "--pull-log", nothing.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("gc")
        .args(&args)
        .arg(b.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: matches no file", nothing.display())),
        "{stderr}"
    );
}

#[test]
fn terminal_format_lines_in_a_containers_log_are_dated_by_the_collector() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    // What `docker run -t` leaves in json-file: the coloured terminal
    // format, timed only by docker.
    let tty = |uri: &str| {
        format!(
            "\u{1b}[36mINFO\u{1b}[0m[0042] response completed                            \u{1b}[36mhttp.request.method\u{1b}[0m=HEAD \u{1b}[36mhttp.request.uri\u{1b}[0m=\"{uri}\" \u{1b}[36mhttp.request.useragent\u{1b}[0m=\"containerd/1.7.13\" \u{1b}[36mhttp.response.status\u{1b}[0m=200\r\n"
        )
    };
    let mut text = String::new();
    for (t, uri) in [
        (days_ago(40), "/v2/"),
        (days_ago(15), "/v2/app/manifests/moving"),
        (SystemTime::now() - Duration::from_secs(60), "/v2/"),
    ] {
        text.push_str(&format!(
            "{}\n",
            serde_json::json!({"log": tty(uri), "stream": "stderr", "time": regsweep::clock::rfc3339(t)})
        ));
    }
    let log = dir.path().join("container-json.log");
    fs::write(&log, text).unwrap();
    let report = keep_pulled_30d(&b, &log);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    let file = &report["pull_logs"]["files"][0];
    assert_eq!(file["formats"]["distribution-tty"], 3, "{file:#}");
    assert_eq!(file["rejected"], 0, "{file:#}");
    assert!(
        reason(&report, "old").contains("pulled 15d ago (HEAD by tag `moving`"),
        "{report:#}"
    );
}

#[test]
fn a_forced_pull_log_format_rejects_other_lines_and_the_window_is_then_refused() {
    let (b, _first, _second) = rolled_tree();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &[]);
    let mut args = POLICY.to_vec();
    args.extend([
        "30d",
        "--pull-log",
        log.to_str().unwrap(),
        "--pull-log-format",
        "distribution-text",
    ]);
    assert_eq!(gc_json(b.root(), &args)["exit_code"], 0);
    let mut args = POLICY.to_vec();
    args.extend([
        "30d",
        "--pull-log",
        log.to_str().unwrap(),
        "--pull-log-format",
        "combined",
    ]);
    let report = gc_json(b.root(), &args);
    assert_eq!(report["exit_code"], 2, "{report:#}");
    assert_eq!(report["kind"], "pull_logs_incomplete", "{report:#}");
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args([
            "gc",
            "--pull-log",
            "x",
            "--pull-log-format",
            "apache",
            "--keep-pulled-within",
            "1d",
        ])
        .arg(b.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("caddy-json"), "{stderr}");
}

/// `app`: `moving` set to `small` 20 days ago, then to `large` (one layer
/// more, so a larger manifest) 10 days ago; `old` at `small` and `other` at
/// `large`, both pushed 60 days ago.
fn rolled_tree_of_two_sizes() -> (LayoutBuilder, Manifest, Manifest) {
    let mut b = LayoutBuilder::new();
    let small = b.simple_image("small", &[]);
    let extra = b.layer("extra");
    let large = b.simple_image("large", &[&extra]);
    assert_ne!(small.bytes.len(), large.bytes.len());
    b.push("app", "moving", &small);
    b.push("app", "moving", &large);
    b.push("app", "old", &small);
    b.push("app", "other", &large);
    date_tag(&b, "moving", &[(&small, 20), (&large, 10)]);
    date_tag(&b, "old", &[(&small, 60)]);
    date_tag(&b, "other", &[(&large, 60)]);
    (b, small, large)
}

/// The app log's line for a GET by tag that served `bytes` of
/// `content_type`.
fn served_line(t: SystemTime, uri: &str, content_type: &str, bytes: usize) -> String {
    format!(
        "time=\"{}\" level=info msg=\"response completed\" go.version=go1.19.8 http.request.host=\"r:5000\" http.request.method=GET http.request.uri={uri} http.request.useragent=containerd/1.7.13 http.response.contenttype=\"{content_type}\" http.response.status=200 http.response.written={bytes}\n",
        log_time(t)
    )
}

#[test]
fn the_app_logs_response_size_and_content_type_narrow_a_pull_by_tag() {
    let (b, small, large) = rolled_tree_of_two_sizes();
    let dir = tempfile::tempdir().unwrap();
    let run = |content_type: &str, bytes: usize| {
        // `moving` pulled 15 days ago: its history allows `small` (set
        // last before) and `large` (set after).
        let log = write_log(
            dir.path(),
            &[served_line(
                days_ago(15),
                "/v2/app/manifests/moving",
                content_type,
                bytes,
            )],
        );
        keep_pulled_30d(&b, &log)
    };
    // What `small` is: only it was pulled, and `other` (at `large`) goes.
    let report = run(&small.media_type, small.bytes.len());
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert_eq!(decided(&report, "deleted"), ["other"], "{report:#}");
    assert!(
        reason(&report, "old").contains("(GET by tag `moving`, containerd/1.7.13)"),
        "{report:#}"
    );
    assert_eq!(report["pull_logs"]["narrowed"], 1, "{report:#}");
    // What `large` is: `old` goes.
    let report = run(&large.media_type, large.bytes.len());
    assert_eq!(decided(&report, "deleted"), ["old"], "{report:#}");
    // A size neither has (a proxy's compression, a rewrite): both stay.
    let report = run(&small.media_type, 12_345);
    assert_eq!(
        decided(&report, "deleted"),
        Vec::<String>::new(),
        "{report:#}"
    );
    assert_eq!(report["pull_logs"]["narrowed"], 0, "{report:#}");
    // A manifest list's type for an image's size: nothing fits, both stay.
    let report = run(
        "application/vnd.docker.distribution.manifest.list.v2+json",
        small.bytes.len(),
    );
    assert_eq!(
        decided(&report, "deleted"),
        Vec::<String>::new(),
        "{report:#}"
    );
    // An access line has the size but no content type: not narrowed.
    let log = write_log(
        dir.path(),
        &[format!(
            "10.0.0.5 - - [{}] \"GET /v2/app/manifests/moving HTTP/1.1\" 200 {} \"\" \"containerd/1.7.13\"\n",
            clf_time(days_ago(15)),
            small.bytes.len()
        )],
    );
    let report = keep_pulled_30d(&b, &log);
    assert_eq!(
        decided(&report, "deleted"),
        Vec::<String>::new(),
        "{report:#}"
    );
}

#[test]
fn a_narrowed_pull_keeps_a_manifest_list_an_old_client_got_an_image_of() {
    // `moving` was a list (also tagged `listed`), then an image; a client
    // that takes no lists pulled `moving` while it was the list and got the
    // amd64 image's bytes.
    let mut b = LayoutBuilder::new();
    let amd64 = b.simple_image("amd64", &[]);
    let arm64 = b.simple_image("arm64", &[]);
    let list = docker_list(&[&amd64, &arm64]);
    let extra = b.layer("extra");
    let later = b.simple_image("later", &[&extra]);
    for child in [&amd64, &arm64] {
        b.push_untagged("app", child);
    }
    b.push("app", "moving", &list);
    b.push("app", "moving", &later);
    b.push("app", "other", &later);
    b.push("app", "listed", &list);
    date_tag(&b, "moving", &[(&list, 20), (&later, 10)]);
    date_tag(&b, "listed", &[(&list, 60)]);
    date_tag(&b, "other", &[(&later, 60)]);
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        &[served_line(
            days_ago(15),
            "/v2/app/manifests/moving",
            &amd64.media_type,
            amd64.bytes.len(),
        )],
    );
    let report = keep_pulled_30d(&b, &log);
    assert_eq!(report["exit_code"], 0, "{report:#}");
    // The list fits (rewritten); `later`, an image of another size, does not.
    assert_eq!(decided(&report, "deleted"), ["other"], "{report:#}");
    assert!(
        reason(&report, "listed").contains("(GET by tag `moving`"),
        "{report:#}"
    );
}

#[test]
fn a_push_in_the_second_or_the_run_of_a_pull_by_tag_leaves_both_manifests_pulled() {
    // `moving` pointed at `first` for 20 days; `second` was pushed half a
    // second into the second an access line dates a pull of `moving` to.
    // The access line's time is to the second, so the pull may have come
    // before the push and served `first`: `old` (at `first`) stays.
    let (b, first, second) = rolled_tree();
    let whole = |t: SystemTime| {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let second_of_pull = whole(days_ago(15));
    let push = second_of_pull + Duration::from_millis(500);
    set_mtime(
        &tag_index_link(b.root(), "app", "moving", &second.digest),
        push,
    );
    set_mtime(&tag_current_link(b.root(), "app", "moving"), push);
    let dir = tempfile::tempdir().unwrap();
    let access = format!(
        "10.0.0.5 - - [{}] \"GET /v2/app/manifests/moving HTTP/1.1\" 200 1638 \"\" \"containerd/1.7.13\"\n",
        clf_time(second_of_pull)
    );
    // The app log's line of a request that took 300 ms and ended 100 ms
    // after the push: it resolved the tag before.
    let app = format!(
        "time=\"{}\" level=info msg=\"response completed\" http.request.method=GET http.request.uri=/v2/app/manifests/moving http.request.useragent=containerd/1.7.13 http.response.duration=300ms http.response.status=200\n",
        regsweep::clock::rfc3339(push + Duration::from_millis(100))
    );
    for line in [access, app] {
        let log = write_log(dir.path(), std::slice::from_ref(&line));
        let report = keep_pulled_30d(&b, &log);
        assert_eq!(report["exit_code"], 0, "{line}: {report:#}");
        assert_eq!(
            decided(&report, "deleted"),
            Vec::<String>::new(),
            "{line}: {report:#}"
        );
        assert!(
            reason(&report, "old").contains("(GET by tag `moving`"),
            "{line}: {report:#}"
        );
    }
    let _ = first;
}

#[test]
fn the_human_report_says_how_many_pulls_the_app_log_narrowed() {
    let (b, small, _large) = rolled_tree_of_two_sizes();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        &[served_line(
            days_ago(15),
            "/v2/app/manifests/moving",
            &small.media_type,
            small.bytes.len(),
        )],
    );
    let mut args = POLICY.to_vec();
    args.extend(["30d", "--pull-log", log.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("gc")
        .args(&args)
        .arg(b.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("; 1 pull by tag narrowed by what the app log says was served."),
        "{stdout}"
    );
}
