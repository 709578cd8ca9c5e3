//! `regsweep gc --metrics-file`: the real binary writes node_exporter's
//! textfile format, read back with a parser of the format (and with the
//! Prometheus Python client's parser where it is installed), and its values
//! agree with the JSON report of the same run.

mod layout_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use layout_support::*;

/// The samples of a metrics file: (metric, labels) -> value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses `text` with `prometheus-parse`, checking that it kept every sample
/// line (it skips what it cannot read), that every metric has its HELP and
/// its TYPE (gauge), and that every series names the target.
fn parse(text: &str, target: &Path) -> Samples {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the text format ({e}):\n{text}"));
    let sample_lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "every sample parses:\n{text}"
    );
    assert!(text.ends_with('\n'), "the file ends with a line feed");
    let mut samples = Samples::new();
    for s in scrape.samples {
        assert!(s.metric.starts_with("regsweep_"), "{}", s.metric);
        assert!(scrape.docs.contains_key(&s.metric), "{} has HELP", s.metric);
        assert!(
            text.contains(&format!("# TYPE {} gauge\n", s.metric)),
            "{} is a gauge",
            s.metric
        );
        assert_eq!(
            s.labels.get("target"),
            Some(target.to_str().unwrap()),
            "{}",
            s.metric
        );
        let value = match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            other => panic!("{}: not a gauge: {other:?}", s.metric),
        };
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "target")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key = (s.metric.clone(), labels);
        assert!(samples.insert(key, value).is_none(), "{} twice", s.metric);
    }
    samples
}

fn get(samples: &Samples, metric: &str, kind: Option<&str>) -> f64 {
    let labels = kind
        .map(|k| BTreeMap::from([("kind".to_owned(), k.to_owned())]))
        .unwrap_or_default();
    *samples
        .get(&(metric.to_owned(), labels))
        .unwrap_or_else(|| panic!("no {metric} {kind:?} in {samples:#?}"))
}

/// The Prometheus Python client's parser, where it is installed: the
/// samples it reads, as JSON `[[name, labels, value], ...]`. `None` (and a
/// printed reason) without it.
fn python_client_parse(text: &str) -> Option<Value> {
    const SCRIPT: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   assert family.type == 'gauge', family\n\
        \x20   out += [[s.name, s.labels, s.value] for s in family.samples]\n\
        print(json.dumps(out))\n";
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping the Python client's parse: python3 with prometheus_client not found");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refuses the file: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// A tree with something for every count: an unreferenced blob, an untagged
/// image (deleted with -m), and a broken tag link (a warning).
fn tree() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    let live = b.simple_image("live", &[]);
    b.push("app", "v1", &live);
    let old = b.simple_image("old", &[]);
    b.push_untagged("app", &old);
    b.orphan_blob("orphan");
    let broken = b.simple_image("broken", &[]);
    b.push("other", "v1", &broken);
    let current = tag_current_link(b.root(), "other", "v1");
    b.overwrite(&current, b"");
    b
}

fn gc_with_metrics(root: &Path, metrics: &Path, args: &[&str]) -> (Value, std::process::Output) {
    let mut all = vec!["-m", "--metrics-file", metrics.to_str().unwrap()];
    all.extend_from_slice(args);
    gc_json_env(root, &all, &[])
}

fn assert_matches_report(samples: &Samples, report: &Value) {
    let dry_run = report["dry_run"].as_bool().unwrap();
    let exit = report["exit_code"].as_f64().unwrap();
    assert_eq!(get(samples, "regsweep_last_run_exit_code", None), exit);
    assert_eq!(
        get(samples, "regsweep_last_run_success", None),
        f64::from(exit == 0.0)
    );
    assert_eq!(
        get(samples, "regsweep_last_run_dry_run", None),
        f64::from(dry_run)
    );
    for (metric, section) in [
        ("regsweep_last_run_deleted", "deleted"),
        ("regsweep_last_run_reclaimable", "reclaimable"),
    ] {
        for (kind, key) in [
            ("blob", "blobs"),
            ("layer_link", "layer_links"),
            ("manifest", "manifests"),
            ("tag", "tags"),
            ("tag_index_entry", "tag_index_entries"),
            ("upload", "uploads"),
            ("temporary_file", "temporary_files"),
            ("repository", "repositories"),
        ] {
            assert_eq!(
                get(samples, metric, Some(kind)),
                num(report, section, key) as f64,
                "{metric} {kind}"
            );
        }
        let bytes = format!("{metric}_bytes");
        assert_eq!(
            get(samples, &bytes, Some("blob")),
            num(report, section, "bytes") as f64
        );
        assert_eq!(
            get(samples, &bytes, Some("upload")),
            num(report, section, "upload_bytes") as f64
        );
    }
    assert_eq!(
        get(samples, "regsweep_last_run_failures", None),
        report["failures"].as_array().unwrap().len() as f64
    );
    let mut warnings: BTreeMap<&str, f64> = BTreeMap::new();
    for w in report["warnings"].as_array().unwrap() {
        *warnings.entry(w["kind"].as_str().unwrap()).or_default() += 1.0;
    }
    let rendered: BTreeMap<&str, f64> = samples
        .iter()
        .filter(|((m, _), _)| m == "regsweep_last_run_warnings")
        .map(|((_, labels), v)| (labels["kind"].as_str(), *v))
        .collect();
    assert_eq!(rendered, warnings);
}

#[test]
fn dry_run_and_sweep_write_metrics_that_agree_with_the_json_report() {
    let b = tree();
    let out_dir = tempfile::tempdir().unwrap();
    let metrics = out_dir.path().join("regsweep.prom");

    let (report, out) = gc_with_metrics(b.root(), &metrics, &["--dry-run"]);
    assert_eq!(
        code(&out),
        1,
        "the broken tag link warns: {}",
        describe(&out)
    );
    let text = fs::read_to_string(&metrics).unwrap();
    let samples = parse(&text, b.root());
    assert_matches_report(&samples, &report);
    assert_eq!(get(&samples, "regsweep_last_run_dry_run", None), 1.0);
    assert_eq!(
        get(&samples, "regsweep_last_run_deleted_bytes", Some("blob")),
        0.0
    );
    let left = get(
        &samples,
        "regsweep_last_run_reclaimable_bytes",
        Some("blob"),
    );
    assert!(left > 0.0, "a dry run says what is left to reclaim");
    assert!(get(&samples, "regsweep_last_run_reclaimable", Some("manifest")) >= 1.0);
    assert_eq!(
        get(
            &samples,
            "regsweep_last_run_warnings",
            Some("invalid_tag_link")
        ),
        1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ended = get(&samples, "regsweep_last_run_timestamp_seconds", None);
    assert!(
        (now - 600.0..=now + 1.0).contains(&ended),
        "{ended} vs {now}"
    );
    assert!(get(&samples, "regsweep_last_run_duration_seconds", None) >= 0.0);
    if let Some(python) = python_client_parse(&text) {
        let python = python.as_array().unwrap();
        assert_eq!(python.len(), samples.len(), "{python:?}");
        for sample in python {
            let labels = sample[1].as_object().unwrap();
            assert_eq!(labels["target"], b.root().to_str().unwrap());
            let kind = labels.get("kind").and_then(Value::as_str);
            assert_eq!(
                sample[2].as_f64().unwrap(),
                get(&samples, sample[0].as_str().unwrap(), kind)
            );
        }
    }

    let (report, out) = gc_with_metrics(b.root(), &metrics, &[]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let samples = parse(&fs::read_to_string(&metrics).unwrap(), b.root());
    assert_matches_report(&samples, &report);
    assert_eq!(get(&samples, "regsweep_last_run_dry_run", None), 0.0);
    assert_eq!(
        get(&samples, "regsweep_last_run_deleted_bytes", Some("blob")),
        left,
        "the sweep deleted what the dry run said was left"
    );
    assert!(get(&samples, "regsweep_last_run_deleted", Some("manifest")) >= 1.0);
}

#[test]
fn metrics_file_is_replaced_atomically_and_no_temporary_file_is_left() {
    let b = tree();
    let out_dir = tempfile::tempdir().unwrap();
    let metrics = out_dir.path().join("regsweep.prom");
    fs::write(&metrics, "# the previous run's file\n").unwrap();
    // A reader holding the old file keeps reading the old file: the new one
    // is another file renamed over it, not the old one rewritten in place.
    let reader = fs::File::open(&metrics).unwrap();
    let (_, out) = gc_with_metrics(b.root(), &metrics, &["--dry-run"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut old).unwrap();
    assert_eq!(old, "# the previous run's file\n");
    parse(&fs::read_to_string(&metrics).unwrap(), b.root());
    let names: Vec<String> = fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["regsweep.prom"]);
}

#[test]
fn unwritable_metrics_file_is_an_error_naming_it_and_changes_nothing_deleted() {
    let out_dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: even root cannot write
    // below it.
    let not_a_dir = out_dir.path().join("file");
    fs::write(&not_a_dir, "").unwrap();
    let metrics = not_a_dir.join("regsweep.prom");
    let metrics_text = metrics.display().to_string();

    // A clean dry run would exit 0: the failed write makes it 1.
    let mut clean = LayoutBuilder::new();
    let img = clean.simple_image("img", &[]);
    clean.push("app", "v1", &img);
    let out = regsweep([
        "gc",
        "--dry-run",
        "--metrics-file",
        &metrics_text,
        clean.root().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{metrics_text}: cannot write the metrics file")),
        "{stderr}"
    );

    // A sweep deletes all it planned, and says so, whatever the metrics.
    let b = tree();
    let (report, out) = gc_with_metrics(b.root(), &metrics, &[]);
    assert!(code(&out) >= 1, "{}", describe(&out));
    assert!(num(&report, "deleted", "blobs") > 0);
    assert_eq!(report["deleted"], report["reclaimable"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&metrics_text));
    assert!(!metrics.exists());
}

#[test]
fn refused_run_writes_metrics_with_exit_code_2() {
    let out_dir = tempfile::tempdir().unwrap();
    let metrics = out_dir.path().join("regsweep.prom");
    let missing = out_dir.path().join("no-such-storage");
    let out = regsweep([
        "gc",
        "--metrics-file",
        metrics.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let text = fs::read_to_string(&metrics).expect("a refused run writes its metrics");
    let samples = parse(&text, &missing);
    assert_eq!(get(&samples, "regsweep_last_run_exit_code", None), 2.0);
    assert_eq!(get(&samples, "regsweep_last_run_success", None), 0.0);
    assert_eq!(get(&samples, "regsweep_last_run_dry_run", None), 0.0);
    assert_eq!(
        get(&samples, "regsweep_last_run_deleted", Some("blob")),
        0.0
    );
}

#[test]
fn label_values_with_quotes_backslashes_and_line_feeds_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a \"quoted\\\" \nname");
    let metrics = dir.path().join("regsweep.prom");
    let out = regsweep([
        "gc".as_ref(),
        "--metrics-file".as_ref(),
        metrics.as_os_str(),
        odd.as_os_str(),
    ]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let text = fs::read_to_string(&metrics).unwrap();
    // The line feed in the path does not split a sample line.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("regsweep_last_run_"), "{line}");
    }
    let Some(samples) = python_client_parse(&text) else {
        return;
    };
    assert!(!samples.as_array().unwrap().is_empty());
    for sample in samples.as_array().unwrap() {
        assert_eq!(sample[1]["target"], odd.to_str().unwrap());
    }
}
