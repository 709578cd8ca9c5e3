//! The outcome of a `gc` run as a Prometheus textfile (the text exposition
//! format node_exporter's textfile collector reads), and its atomic write.
//!
//! Every value is a gauge describing the last run: the file is rewritten
//! whole by each run, so nothing accumulates across runs, and a counter
//! (`_total`) would read as a reset at every run. Every series carries a
//! `target` label (TARGET as given), so that the files of several
//! registries on one host can sit side by side in the collector's
//! directory. The file holds no sample timestamps: the textfile collector
//! refuses them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::gc::plan::Reclaim;
use crate::report::{ExitStatus, Report};

/// Facts of a run that the report does not hold.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    /// TARGET as given on the command line: the `target` label.
    pub target: &'a Path,
    /// When the run ended.
    pub finished: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Whether it was a dry run (used when there is no report).
    pub dry_run: bool,
    /// The exit code, when there is no report: 2 for a refusal, 1 for a run
    /// a signal stopped before its plan was complete.
    pub exit_code: ExitStatus,
}

/// Renders the metrics of a run. `report` is `None` for a run that was
/// refused, failed or interrupted before a report existed: it then says
/// the run's exit code and nothing deleted, and leaves out what only a plan knows.
pub fn render(run: &RunFacts<'_>, report: Option<&Report<'_>>) -> String {
    let target = format!(
        "target=\"{}\"",
        escape_label_value(&run.target.to_string_lossy())
    );
    let exit_code = report.map_or(run.exit_code, |r| r.exit_code);
    let dry_run = report.map_or(run.dry_run, |r| r.dry_run);
    let finished = run
        .finished
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut out = Metrics {
        text: String::new(),
        target,
    };

    out.gauge(
        "regsweep_last_run_timestamp_seconds",
        "When the last regsweep gc run ended, in seconds since the Unix epoch.",
        single(seconds(finished)),
    );
    out.gauge(
        "regsweep_last_run_duration_seconds",
        "How long the last regsweep gc run took.",
        single(seconds(run.duration)),
    );
    out.gauge(
        "regsweep_last_run_success",
        "1 if the last regsweep gc run exited 0 (everything planned was done, nothing was damaged), else 0.",
        single(u8::from(exit_code == ExitStatus::Success)),
    );
    out.gauge(
        "regsweep_last_run_exit_code",
        "Exit code of the last regsweep gc run: 0 success, 1 warnings or partial, 2 refused or failed.",
        single(exit_code as i32),
    );
    out.gauge(
        "regsweep_last_run_dry_run",
        "1 if the last regsweep gc run was a dry run (it deleted nothing on purpose).",
        single(u8::from(dry_run)),
    );
    let nothing = Reclaim::default();
    let deleted = report.map_or(&nothing, |r| &r.deleted);
    out.gauge(
        "regsweep_last_run_deleted_bytes",
        "Bytes the last regsweep gc run deleted (or moved into its trash), by kind of data.",
        byte_samples(deleted),
    );
    out.gauge(
        "regsweep_last_run_deleted",
        "What the last regsweep gc run deleted (or moved into its trash), by kind.",
        count_samples(deleted),
    );
    out.gauge(
        "regsweep_last_run_failures",
        "Paths the last regsweep gc run could not delete.",
        single(report.map_or(0, |r| r.failures.len())),
    );
    let Some(report) = report else {
        return out.text;
    };
    out.gauge(
        "regsweep_last_run_interrupted",
        "1 if the last regsweep gc run stopped before the end of its plan.",
        single(u8::from(report.interrupted)),
    );
    out.gauge(
        "regsweep_last_run_reclaimable_bytes",
        "Bytes the last regsweep gc run planned to reclaim, by kind of data: after a dry run, what is left to reclaim.",
        byte_samples(&report.reclaimable),
    );
    out.gauge(
        "regsweep_last_run_reclaimable",
        "What the last regsweep gc run planned to delete, by kind: after a dry run, what is left to delete.",
        count_samples(&report.reclaimable),
    );
    let mut warnings: BTreeMap<String, u64> = BTreeMap::new();
    for warning in &report.warnings {
        *warnings.entry(warning_kind_name(warning.kind)).or_default() += 1;
    }
    out.gauge(
        "regsweep_last_run_warnings",
        "Warnings of the last regsweep gc run (damage found, and kept because of it), by kind; kinds without warnings have no series.",
        warnings
            .into_iter()
            .map(|(kind, n)| (Some(kind), n.to_string()))
            .collect(),
    );
    if let Some(pulls) = report.pull_logs {
        out.gauge(
            "regsweep_last_run_pull_log_lines",
            "Lines the last regsweep gc run read from its --pull-log files.",
            single(pulls.lines),
        );
        out.gauge(
            "regsweep_last_run_pull_log_rejected_lines",
            "Lines of the --pull-log files the last regsweep gc run could not read.",
            single(pulls.rejected),
        );
        out.gauge(
            "regsweep_last_run_pull_log_pulls",
            "Manifest pulls the last regsweep gc run found in its --pull-log files.",
            single(pulls.pulls),
        );
        if let Some(last) = pulls.last {
            out.gauge(
                "regsweep_last_run_pull_log_last_timestamp_seconds",
                "The latest time in the --pull-log files of the last regsweep gc run: logs that stop being collected show here.",
                single(seconds(last.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO))),
            );
        }
    }
    out.text
}

/// One sample: the value of its `kind` label (none in a family of one
/// series), and its value.
type Sample = (Option<String>, String);

fn single(value: impl ToString) -> Vec<Sample> {
    vec![(None, value.to_string())]
}

/// The text being built, and the label every series carries.
struct Metrics {
    text: String,
    target: String,
}

impl Metrics {
    /// One gauge family: HELP, TYPE, then its samples.
    fn gauge(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (kind, value) in samples {
            let _ = match kind {
                Some(kind) => writeln!(
                    self.text,
                    "{name}{{{},kind=\"{}\"}} {value}",
                    self.target,
                    escape_label_value(&kind)
                ),
                None => writeln!(self.text, "{name}{{{}}} {value}", self.target),
            };
        }
    }
}

fn byte_samples(reclaim: &Reclaim) -> Vec<Sample> {
    kinds([("blob", reclaim.bytes), ("upload", reclaim.upload_bytes)])
}

/// Kinds named as in the JSON report's candidate `kind`.
fn count_samples(reclaim: &Reclaim) -> Vec<Sample> {
    kinds([
        ("blob", reclaim.blobs),
        ("layer_link", reclaim.layer_links),
        ("manifest", reclaim.manifests),
        ("tag", reclaim.tags),
        ("tag_index_entry", reclaim.tag_index_entries),
        ("upload", reclaim.uploads),
        ("temporary_file", reclaim.temporary_files),
        ("repository", reclaim.repositories),
    ])
}

fn kinds<const N: usize>(values: [(&str, u64); N]) -> Vec<Sample> {
    values
        .into_iter()
        .map(|(kind, n)| (Some(kind.to_owned()), n.to_string()))
        .collect()
}

/// The kind's name in the JSON report (`invalid_link`, ...).
fn warning_kind_name(kind: crate::warning::WarningKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

/// Seconds with millisecond precision.
fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// A label value as the text format writes it: backslash, double quote and
/// line feed escaped.
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HELP text as the format writes it: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The metrics file could not be written; the previous file, if any, is
/// left as it was.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write the metrics file: {step} {}: {source}", path.display(), temporary.display())]
pub struct WriteError {
    /// The metrics file asked for.
    pub path: PathBuf,
    /// The temporary file beside it that is renamed over it.
    pub temporary: PathBuf,
    /// What failed (`creating`, `writing`, `renaming`...).
    pub step: &'static str,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `text` atomically: a reader (the textfile
/// collector) sees the old file or the new one, never half of one. The text
/// goes into a temporary file in the same directory (named so that the
/// collector, which reads `*.prom`, skips it), is flushed to disk, and is
/// renamed over `path`; the directory is then flushed so that the rename
/// survives a crash. On failure the temporary file is removed.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or(path.as_os_str());
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(temporary_name);
    let fail = |step: &'static str| {
        let temporary = temporary.clone();
        move |source: io::Error| WriteError {
            path: path.to_path_buf(),
            temporary,
            step,
            source,
        }
    };
    if path.file_name().is_none() {
        return Err(fail("naming")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the metrics file path names no file",
        )));
    }
    // A temporary file left by a run that was killed has this process's
    // pid only by chance; it is replaced.
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(fail("creating"))?;
    let written = file
        .write_all(text.as_bytes())
        .map_err(fail("writing"))
        .and_then(|()| file.sync_all().map_err(fail("flushing")))
        .and_then(|()| fs::rename(&temporary, path).map_err(fail("renaming")));
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(e);
    }
    // The new file is in place; a failure to flush the directory only
    // weakens crash safety, so it is not an error.
    let _ = File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(target: &Path) -> RunFacts<'_> {
        RunFacts {
            target,
            finished: UNIX_EPOCH + Duration::from_millis(1_765_000_000_250),
            duration: Duration::from_millis(4_321),
            dry_run: true,
            exit_code: ExitStatus::Failed,
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("parses")
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, kind: Option<&str>) -> f64 {
        let found: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get("kind") == kind)
            .collect();
        assert_eq!(found.len(), 1, "{name} {kind:?}");
        match found[0].value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name}: not a gauge: {other:?}"),
        }
    }

    #[test]
    fn a_refused_run_says_exit_code_2_and_nothing_deleted() {
        let text = render(&facts(Path::new("/srv/registry")), None);
        let scrape = parse(&text);
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        assert_eq!(scrape.samples.len(), samples, "every sample line parses");
        assert_eq!(value(&scrape, "regsweep_last_run_exit_code", None), 2.0);
        assert_eq!(value(&scrape, "regsweep_last_run_success", None), 0.0);
        assert_eq!(value(&scrape, "regsweep_last_run_dry_run", None), 1.0);
        assert_eq!(
            value(&scrape, "regsweep_last_run_timestamp_seconds", None),
            1_765_000_000.25
        );
        assert_eq!(
            value(&scrape, "regsweep_last_run_duration_seconds", None),
            4.321
        );
        assert_eq!(
            value(&scrape, "regsweep_last_run_deleted_bytes", Some("blob")),
            0.0
        );
        assert_eq!(
            value(&scrape, "regsweep_last_run_deleted", Some("manifest")),
            0.0
        );
        assert!(
            !text.contains("reclaimable"),
            "no plan, no reclaimable: {text}"
        );
        for sample in &scrape.samples {
            assert!(sample.metric.starts_with("regsweep_"));
            assert_eq!(sample.labels.get("target"), Some("/srv/registry"));
        }
        for name in scrape.docs.keys() {
            assert!(
                text.contains(&format!("# TYPE {name} gauge\n")),
                "{name} has its TYPE line"
            );
        }
    }

    #[test]
    fn a_sweep_report_renders_deletions_reclaimable_warnings_and_failures() {
        use crate::gc::plan::Plan;
        use crate::index::Index;
        use crate::report::RunInfo;
        use crate::storage::{Failure, SweepOutcome};
        use crate::warning::{Warning, WarningKind};

        let index = Index::default();
        let mut plan = Plan::default();
        plan.reclaimable.blobs = 7;
        plan.reclaimable.bytes = 7_000;
        plan.reclaimable.upload_bytes = 30;
        plan.reclaimable.manifests = 3;
        let mut outcome = SweepOutcome::default();
        outcome.deleted.blobs = 6;
        outcome.deleted.bytes = 6_000;
        outcome.deleted.layer_links = 4;
        outcome.deleted.tag_index_entries = 2;
        outcome.failures.push(Failure {
            path: "/srv/b".into(),
            message: "permission denied".into(),
        });
        let warnings = vec![
            Warning::new(WarningKind::InvalidLink, "/a", None, "bad"),
            Warning::new(WarningKind::MissingBlob, "/b", Some("r"), "gone"),
            Warning::new(WarningKind::InvalidLink, "/c", None, "bad"),
        ];
        let report = Report::new(
            "/srv".into(),
            false,
            &index,
            &plan,
            warnings,
            Some(outcome),
            RunInfo::default(),
        );
        let text = render(&facts(Path::new("/srv")), Some(&report));
        let scrape = parse(&text);
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        assert_eq!(scrape.samples.len(), samples, "every sample line parses");
        let v = |name, kind| value(&scrape, name, kind);
        assert_eq!(v("regsweep_last_run_exit_code", None), 1.0);
        assert_eq!(v("regsweep_last_run_success", None), 0.0);
        assert_eq!(
            v("regsweep_last_run_dry_run", None),
            0.0,
            "a report with an outcome is a sweep"
        );
        assert_eq!(v("regsweep_last_run_failures", None), 1.0);
        assert_eq!(v("regsweep_last_run_interrupted", None), 0.0);
        assert_eq!(v("regsweep_last_run_deleted_bytes", Some("blob")), 6_000.0);
        assert_eq!(v("regsweep_last_run_deleted", Some("blob")), 6.0);
        assert_eq!(v("regsweep_last_run_deleted", Some("layer_link")), 4.0);
        assert_eq!(v("regsweep_last_run_deleted", Some("tag_index_entry")), 2.0);
        assert_eq!(
            v("regsweep_last_run_reclaimable_bytes", Some("blob")),
            7_000.0
        );
        assert_eq!(
            v("regsweep_last_run_reclaimable_bytes", Some("upload")),
            30.0
        );
        assert_eq!(v("regsweep_last_run_reclaimable", Some("manifest")), 3.0);
        assert_eq!(v("regsweep_last_run_warnings", Some("invalid_link")), 2.0);
        assert_eq!(v("regsweep_last_run_warnings", Some("missing_blob")), 1.0);
        for name in scrape.docs.keys() {
            assert!(name.starts_with("regsweep_"), "{name}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("a\nb"), "a\\nb");
        let text = render(&facts(Path::new("/srv/re\"g\\x\ny")), None);
        // One line per sample: a line feed in the path does not break one.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.starts_with("regsweep_") && line.contains(r#"target="/srv/re\"g\\x\ny""#),
                "{line}"
            );
        }
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regsweep.prom");
        fs::write(&path, "old\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["regsweep.prom"]);

        let missing = dir.path().join("no-such-dir").join("regsweep.prom");
        let err = write_atomically(&missing, "x\n").unwrap_err();
        assert_eq!(err.path, missing);
        assert!(err.to_string().starts_with(&missing.display().to_string()));
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);

        // A directory where the file should be: the rename fails, and the
        // temporary file goes.
        let taken = dir.path().join("taken.prom");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("keep"), "").unwrap();
        let err = write_atomically(&taken, "x\n").unwrap_err();
        assert_eq!(err.step, "renaming");
        assert!(!err.temporary.exists());
        assert!(taken.join("keep").exists());
    }
}
