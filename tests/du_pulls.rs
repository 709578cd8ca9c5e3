//! `du` with the registry's logs, and what the pull report says about
//! them, end to end on small storage trees with hand-written log lines:
//! the last pull and the bytes not pulled within the window per
//! repository, the coverage guard, the most frequent user agents, and the
//! warnings about logs that seem to lack replicas or the app log's
//! request lines.

mod layout_support;

use std::fs;
use std::path::{Path, PathBuf};
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

fn app_line(t: SystemTime, method: &str, uri: &str, ua: &str, instance: &str) -> String {
    format!(
        "time=\"{}\" level=info msg=\"response completed\" http.request.host=\"r:5000\" http.request.method={method} http.request.uri={uri} http.request.useragent=\"{ua}\" http.response.status=200 instance.id={instance}\n",
        regsweep::clock::rfc3339(t)
    )
}

/// A log of `instance` from `from_days` ago to a minute ago (a health
/// check every 6 hours) with `lines` in between.
fn write_log(path: &Path, instance: &str, from_days: u64, lines: &[String]) -> PathBuf {
    let mut text = String::new();
    let mut t = days_ago(from_days);
    while t < SystemTime::now() - Duration::from_secs(120) {
        text.push_str(&app_line(t, "GET", "/v2/", "kube-probe/1.29", instance));
        t += Duration::from_secs(6 * 3600);
    }
    for line in lines {
        text.push_str(line);
    }
    text.push_str(&app_line(
        SystemTime::now() - Duration::from_secs(60),
        "GET",
        "/v2/",
        "kube-probe/1.29",
        instance,
    ));
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// `app:v1` and `idle:v1`, both pushed 60 days ago, sharing nothing.
fn two_repositories() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    let app = b.simple_image("app", &[]);
    let idle = b.simple_image("idle", &[]);
    b.push("app", "v1", &app);
    b.push("idle", "v1", &idle);
    let root = b.root().to_path_buf();
    for (repo, image) in [("app", &app), ("idle", &idle)] {
        set_mtime(
            &tag_index_link(&root, repo, "v1", &image.digest),
            days_ago(60),
        );
        set_mtime(&tag_current_link(&root, repo, "v1"), days_ago(60));
    }
    b
}

fn du(args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["du", "--json"];
    all.extend(args);
    let out = regsweep(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        code(&out),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repository<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("no repositories: {report:#}"))
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {report:#}"))
}

#[test]
fn du_gives_the_last_pull_and_the_bytes_not_pulled_within_the_window() {
    let b = two_repositories();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        &dir.path().join("app.log"),
        "one",
        40,
        &[
            app_line(
                days_ago(45),
                "GET",
                "/v2/idle/manifests/v1",
                "skopeo/1.14",
                "one",
            ),
            app_line(
                days_ago(5),
                "HEAD",
                "/v2/app/manifests/v1",
                "containerd/1.7",
                "one",
            ),
        ],
    );
    let root = b.root().to_str().unwrap();
    let (code, report, stderr) = du(&[
        "--pull-log",
        log.to_str().unwrap(),
        "--pulled-within",
        "30d",
        root,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let app = repository(&report, "app");
    assert_eq!(app["pulls"]["unpulled_bytes"], 0, "{app:#}");
    assert_eq!(app["pulls"]["last_pull"]["method"], "HEAD");
    assert_eq!(app["pulls"]["last_pull"]["reference"], "v1");
    assert_eq!(app["pulls"]["last_pull"]["user_agent"], "containerd/1.7");
    let idle = repository(&report, "idle");
    assert_eq!(idle["pulls"]["unpulled_manifests"], 1);
    // Pulled 45 days ago: its last pull, but not within the window.
    assert_eq!(idle["pulls"]["last_pull"]["method"], "GET", "{idle:#}");
    assert_eq!(idle["pulls"]["last_pull"]["user_agent"], "skopeo/1.14");
    let idle_bytes = idle["referenced_bytes"].as_u64().unwrap();
    assert!(idle_bytes > 0);
    assert_eq!(idle["pulls"]["unpulled_bytes"], idle_bytes, "{idle:#}");
    assert_eq!(report["pulls"]["unpulled_bytes"], idle_bytes);
    assert_eq!(report["pulls"]["unpulled_manifests"], 1);
    assert_eq!(report["pulls"]["pulled_within"], "30d");
    assert!(
        report["pulls"]["pull_logs"]["coverage"]["missing"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The table: a column, and the total line.
    let out = regsweep([
        "du",
        "--pull-log",
        log.to_str().unwrap(),
        "--pulled-within",
        "30d",
        root,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(layout_support::code(&out), 0, "{}", describe(&out));
    assert!(stdout.contains("NOT PULLED 30d  LAST PULL"), "{stdout}");
    assert!(stdout.contains(" HEAD :v1, containerd/1.7"), "{stdout}");
    assert!(stdout.contains("Not pulled within 30d (since "), "{stdout}");
    assert!(stdout.contains("in 1 manifest;"), "{stdout}");
    assert!(stdout.contains("Pull logs: 1 file,"), "{stdout}");

    // Without logs, du's JSON is as before.
    let (code, plain, _) = du(&[root]);
    assert_eq!(code, 0);
    assert!(plain.get("pulls").is_none());
    assert!(repository(&plain, "idle").get("pulls").is_none());
}

#[test]
fn du_refuses_pull_logs_that_do_not_cover_the_window() {
    let b = two_repositories();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(&dir.path().join("app.log"), "one", 10, &[]);
    let root = b.root().to_str().unwrap();
    let args = [
        "--pull-log",
        log.to_str().unwrap(),
        "--pulled-within",
        "30d",
        root,
    ];
    let (code, report, stderr) = du(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--pulled-within 30d looks back to"),
        "{stderr}"
    );
    assert!(report.get("pulls").is_none());
    let mut assumed = vec!["--pull-log-assume-complete"];
    assumed.extend(args);
    let (code, report, stderr) = du(&assumed);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["pulls"]["pull_logs"]["coverage"]["assumed_complete"],
        true
    );
    // Either flag alone is refused by the command line.
    let (code, _, stderr) = du(&["--pulled-within", "30d", root]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn du_warns_when_one_replicas_logs_stop_short_naming_the_files() {
    let b = two_repositories();
    let dir = tempfile::tempdir().unwrap();
    let a = write_log(&dir.path().join("replica-a.log"), "aaaa", 40, &[]);
    let short = write_log(&dir.path().join("replica-b.log"), "bbbb", 5, &[]);
    let root = b.root().to_str().unwrap();
    let (code, report, stderr) = du(&[
        "--pull-log",
        a.to_str().unwrap(),
        "--pull-log",
        short.to_str().unwrap(),
        "--pulled-within",
        "30d",
        root,
    ]);
    assert_eq!(code, 1, "warnings: {stderr}");
    let warnings = report["warnings"].as_array().unwrap();
    let replicas: Vec<&Value> = warnings
        .iter()
        .filter(|w| w["kind"] == "pull_log_replicas_missing")
        .collect();
    assert_eq!(replicas.len(), 1, "{warnings:#?}");
    let message = replicas[0]["message"].as_str().unwrap();
    assert!(
        message.contains("replica-a.log") && message.contains("replica-b.log"),
        "{message}"
    );
    assert!(stderr.contains("regsweep: warning:"), "{stderr}");
    // Both replicas logged over the whole window: no warning.
    let full = write_log(&dir.path().join("replica-b.log"), "bbbb", 40, &[]);
    let (code, report, stderr) = du(&[
        "--pull-log",
        a.to_str().unwrap(),
        "--pull-log",
        full.to_str().unwrap(),
        "--pulled-within",
        "30d",
        root,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(report["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn gc_shows_the_most_frequent_user_agents_and_warns_about_replicas() {
    let b = two_repositories();
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for (n, ua) in [(3, "Trivy/0.50"), (2, "containerd/1.7"), (1, "skopeo/1.14")] {
        for i in 0..n {
            lines.push(app_line(
                days_ago(3 + i),
                "HEAD",
                "/v2/app/manifests/v1",
                ua,
                "aaaa",
            ));
        }
    }
    let a = write_log(&dir.path().join("replica-a.log"), "aaaa", 40, &lines);
    let short = write_log(&dir.path().join("replica-b.log"), "bbbb", 5, &[]);
    let root = b.root().to_str().unwrap();
    let args = |extra: &'static str| {
        vec![
            "gc",
            "--dry-run",
            extra,
            "--keep-last",
            "1",
            "--keep-pulled-within",
            "30d",
            "--pull-log",
            a.to_str().unwrap(),
            "--pull-log",
            short.to_str().unwrap(),
            root,
        ]
    };
    let out = regsweep(args("-v"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "the replica warning: {}", describe(&out));
    assert!(
        stdout.contains("    app: 6 pulls by Trivy/0.50 (3), containerd/1.7 (2), skopeo/1.14 (1)"),
        "{stdout}"
    );
    let out = regsweep(args("--json"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agents = &report["pull_logs"]["top_user_agents"];
    assert_eq!(agents[0]["repository"], "app", "{agents:#}");
    assert_eq!(agents[0]["top"][0]["user_agent"], "Trivy/0.50");
    let kinds: Vec<&Value> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["kind"])
        .collect();
    assert!(
        kinds.contains(&&Value::from("pull_log_replicas_missing")),
        "{kinds:?}"
    );
}
