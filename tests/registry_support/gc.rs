//! Running the two garbage collectors: upstream's `docker-registry
//! garbage-collect` and the regsweep binary.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::REGISTRY_BIN;

/// A finished process.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(cmd: &mut Command) -> Run {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Runs `cmd` with stdin closed and its output read; past `limit` it is
    /// killed and the test fails with what it printed to stderr.
    pub fn bounded(cmd: &mut Command, limit: Duration) -> Run {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} still running after {limit:?}; stderr:\n{}",
                    stderr.join().unwrap()
                );
            }
            sleep(Duration::from_millis(10));
        };
        Run {
            code: status.code(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

/// All `pipe` gives until it closes, read on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// What upstream's garbage collector said it would delete (or deleted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpstreamPlan {
    /// `blob eligible for deletion: <digest>` lines.
    pub blobs: BTreeSet<String>,
    /// `manifest eligible for deletion: <digest>` lines, with the repository
    /// named on the line that starts that repository's section.
    pub manifests: BTreeSet<(String, String)>,
}

/// `docker-registry garbage-collect [--dry-run] [-m] CONFIG`, which must
/// succeed.
pub fn upstream_gc(config: &Path, dry_run: bool, delete_untagged: bool) -> (UpstreamPlan, Run) {
    let mut cmd = Command::new(REGISTRY_BIN);
    cmd.arg("garbage-collect");
    if dry_run {
        cmd.arg("--dry-run");
    }
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    // 2.8's s3 driver fails at start when this names a CA bundle.
    cmd.env_remove("AWS_CA_BUNDLE");
    let run = Run::of(cmd.arg(config));
    assert_eq!(run.code, Some(0), "upstream garbage-collect failed:\n{run}");
    (parse_upstream(&run.stdout), run)
}

/// Parses upstream 2.8's output. It prints, per repository, a line with the
/// bare repository name, then `<repo>: marking manifest <digest> ` /
/// `<repo>: marking blob <digest>` lines and, with `-m`,
/// `manifest eligible for deletion: <digest>` lines; then a summary line
/// `N blobs marked, N blobs and N manifests eligible for deletion` and one
/// `blob eligible for deletion: <digest>` line per blob to sweep.
pub fn parse_upstream(output: &str) -> UpstreamPlan {
    let mut plan = UpstreamPlan::default();
    let mut repo: Option<String> = None;
    for line in output.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("blob eligible for deletion: ") {
            plan.blobs.insert(d.to_string());
        } else if let Some(d) = line.strip_prefix("manifest eligible for deletion: ") {
            let repo = repo
                .clone()
                .expect("manifest line before any repository line");
            plan.manifests.insert((repo, d.to_string()));
        } else if !line.is_empty() && !line.contains(' ') {
            repo = Some(line.to_string());
        }
    }
    plan
}

/// Runs the regsweep binary with `args`. A `gc` run gets `--min-age 0`
/// first: the trees here were written seconds ago and the tests mean
/// "collect now" (a `--min-age` among `args` comes later and wins).
pub fn regsweep(args: &[&str]) -> Run {
    regsweep_env(args, &[])
}

/// [`regsweep`] with extra environment variables (e.g. the fault hook
/// `REGSWEEP_FAULT_STOP_AFTER`).
pub fn regsweep_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    match args.split_first() {
        Some((&"gc", rest)) => cmd.arg("gc").args(["--min-age", "0"]).args(rest),
        _ => cmd.args(args),
    };
    cmd.env_remove("REGSWEEP_FAULT_STOP_AFTER")
        .envs(env.iter().copied());
    Run::of(&mut cmd)
}

/// Runs regsweep with `--json` added and parses stdout, which must be
/// exactly one JSON object carrying `regsweep_report: 2` (for `gc`) and an `exit_code`
/// equal to the process's.
pub fn regsweep_json(args: &[&str]) -> Value {
    regsweep_json_env(args, &[])
}

/// [`regsweep_json`] with extra environment variables.
pub fn regsweep_json_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut with_json = args.to_vec();
    with_json.insert(1.min(args.len()), "--json");
    if args.first() == Some(&"gc") {
        // The report lists its candidates, which tests read.
        with_json.insert(2, "-v");
    }
    let run = regsweep_env(&with_json, env);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!("regsweep {with_json:?}: stdout is not one JSON value ({e}):\n{run}")
    });
    if args.first() == Some(&"gc") {
        assert_eq!(report["regsweep_report"], 2, "report version:\n{run}");
    }
    assert_eq!(
        report["exit_code"].as_i64().map(|c| c as i32),
        run.code,
        "exit_code in the report vs the process:\n{run}"
    );
    report
}

/// Digests of the report's candidates of `kind`.
pub fn candidate_digests(report: &Value, kind: &str) -> BTreeSet<String> {
    candidates(report, kind)
        .map(|c| c["digest"].as_str().expect("candidate digest").to_string())
        .collect()
}

/// `(repository, digest)` of the report's candidates of `kind`.
pub fn candidate_pairs(report: &Value, kind: &str) -> BTreeSet<(String, String)> {
    candidates(report, kind)
        .map(|c| {
            (
                c["repository"]
                    .as_str()
                    .expect("candidate repository")
                    .to_string(),
                c["digest"].as_str().expect("candidate digest").to_string(),
            )
        })
        .collect()
}

fn candidates<'a>(report: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    report["candidates"]
        .as_array()
        .expect("candidates[]")
        .iter()
        .filter(move |c| c["kind"] == kind)
}

/// The five counters of `reclaimable` / `deleted`.
pub const RECLAIM_KEYS: [&str; 5] = [
    "tag_index_entries",
    "manifests",
    "layer_links",
    "blobs",
    "bytes",
];

/// `report[section][key]` as a number.
pub fn count(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{key} missing in report: {report:#}"))
}

/// Asserts every `reclaimable` counter is 0 (nothing left to do).
pub fn assert_nothing_reclaimable(report: &Value) {
    for key in RECLAIM_KEYS {
        assert_eq!(
            count(report, "reclaimable", key),
            0,
            "reclaimable.{key} on a swept tree; report: {report:#}"
        );
    }
}
