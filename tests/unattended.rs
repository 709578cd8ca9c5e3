//! regsweep run unattended (cron, systemd, a Kubernetes CronJob): SIGINT,
//! SIGTERM and SIGHUP stop a run cleanly at every phase, the lock dies with
//! its process, and `--json` prints exactly one JSON object on every exit.
//!
//! A phase is reached without timing through the test hook
//! `REGSWEEP_TEST_PAUSE_AT=PHASE[:N][:stuck]`: the run announces
//! `regsweep: test pause at PHASE (pid P)` on stderr and waits there for a
//! signal. The prompt is driven on a pseudo-terminal by `script` (util-linux).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use tempfile::TempDir;
use walkdir::WalkDir;

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/registry");
const PAUSE: &str = "REGSWEEP_TEST_PAUSE_AT";
const SIGNALS: [(Signal, &str); 3] = [
    (Signal::INT, "SIGINT"),
    (Signal::TERM, "SIGTERM"),
    (Signal::HUP, "SIGHUP"),
];

/// A copy of the fixture registry (garbage of every kind with `-m`).
fn fixture() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let status = Command::new("cp")
        .args(["-a", FIXTURE])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    (dir, root)
}

/// Every file (with content) and directory below `root`, the lock file aside.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "regsweep.lock")
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            let content = e.file_type().is_file().then(|| fs::read(e.path()).unwrap());
            (rel, content)
        })
        .collect()
}

fn regsweep(args: &[&str]) -> Output {
    command(args, None).output().unwrap()
}

fn command(args: &[&str], pause: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("REGSWEEP_FAULT_STOP_AFTER")
        .env_remove("REGISTRY_STORAGE")
        .env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
        .env_remove(PAUSE)
        .stdin(Stdio::null());
    if let Some(spec) = pause {
        cmd.env(PAUSE, spec);
    }
    cmd
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stdout as exactly one JSON object whose `exit_code` is the process's.
fn one_json(out: &Output) -> Value {
    let text = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    assert_eq!(
        text.matches('\n').count(),
        1,
        "one line on stdout: {}",
        describe(out)
    );
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", describe(out)));
    assert!(value.is_object(), "{value}");
    assert_eq!(
        value["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "exit_code in the JSON vs the process: {}",
        describe(out)
    );
    value
}

/// A real `gc -m --min-age 0 --json` of `root`, with `extra` arguments.
fn gc_args<'a>(root: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["gc", "--json", "-y", "-m", "--min-age", "0"];
    args.extend_from_slice(extra);
    args.push(root.to_str().unwrap());
    args
}

/// A run stopped at a test pause.
struct Paused {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl Paused {
    /// Starts `regsweep args` with the pause `spec` and waits for it.
    fn start(args: &[&str], spec: &str) -> Paused {
        let mut child = command(args, Some(spec))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = child.stdout.take().unwrap();
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let _ = out.read_to_end(&mut sink.lock().unwrap());
        });
        let paused = Paused {
            child,
            stderr,
            stdout,
        };
        let phase = spec.split(':').next().unwrap();
        paused.wait_for(&format!("test pause at {phase} (pid "));
        paused
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.stderr.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` within 60 s; stderr so far:\n{}",
                self.stderr.lock().unwrap()
            );
            sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Waits (30 s at most) for the exit.
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running 30 s after the signal; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
            sleep(Duration::from_millis(10));
        };
        // The readers end with the pipes.
        sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone().into_bytes();
        let stdout = self.stdout.lock().unwrap().clone();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

fn total(section: &Value) -> u64 {
    [
        "tags",
        "tag_index_entries",
        "manifests",
        "layer_links",
        "blobs",
    ]
    .iter()
    .map(|k| section[k].as_u64().unwrap())
    .sum()
}

/// After an interrupted run, the lock is free: a full run proceeds and
/// finishes the job, leaving what an uninterrupted run leaves.
fn assert_lock_free_and_rerun_finishes(root: &Path) {
    let out = regsweep(&gc_args(root, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let expected = {
        let (_d, reference) = fixture();
        let out = regsweep(&gc_args(&reference, &[]));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        snapshot(&reference)
    };
    assert!(
        snapshot(root) == expected,
        "the re-run reaches the full sweep's tree"
    );
    assert!(!root.join("regsweep.lock").exists());
}

// ---------------------------------------------------------------------------
// Signals at each phase
// ---------------------------------------------------------------------------

#[test]
fn every_signal_while_indexing_or_planning_stops_the_run_before_any_deletion() {
    for phase in ["index", "plan"] {
        for (signal, name) in SIGNALS {
            let (_d, root) = fixture();
            let before = snapshot(&root);
            let run = Paused::start(&gc_args(&root, &[]), phase);
            run.signal(signal);
            let out = run.finish();
            let what = format!("{name} while at {phase}");
            assert_eq!(out.status.code(), Some(1), "{what}: {}", describe(&out));
            let report = one_json(&out);
            assert_eq!(report["interrupted"], true, "{what}: {report}");
            assert_eq!(report["interrupted_during"], phase, "{what}: {report}");
            assert_eq!(report["kind"], "interrupted", "{what}: {report}");
            assert!(
                report["error"]
                    .as_str()
                    .unwrap()
                    .contains("nothing was deleted"),
                "{what}: {report}"
            );
            assert_eq!(report["regsweep_report"], 2);
            assert!(snapshot(&root) == before, "{what}: nothing deleted");
            assert!(
                !root.join("regsweep.lock").exists(),
                "{what}: lock released"
            );
            assert_lock_free_and_rerun_finishes(&root);
        }
    }
}

#[test]
fn every_signal_during_the_sweep_stops_it_between_two_deletions_with_a_full_report() {
    for (signal, name) in SIGNALS {
        let (_d, root) = fixture();
        let args = gc_args(&root, &["--delete-threads", "1"]);
        let run = Paused::start(&args, "sweep:4");
        run.signal(signal);
        let out = run.finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
        let report = one_json(&out);
        assert_eq!(report["interrupted"], true, "{name}: {report}");
        assert_eq!(report["interrupted_during"], "sweep", "{name}: {report}");
        assert_eq!(report["dry_run"], false);
        let deleted = total(&report["deleted"]);
        let planned = total(&report["reclaimable"]);
        assert!(
            deleted > 0 && deleted < planned,
            "{name}: stopped in the middle: {deleted} of {planned}: {report}"
        );
        for field in ["version", "started", "finished"] {
            assert!(report[field].is_string(), "{field}: {report}");
        }
        assert!(report["duration_seconds"].as_f64().unwrap() >= 0.0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("stopping between two deletions"),
            "{name}: {stderr}"
        );
        assert_lock_free_and_rerun_finishes(&root);
    }
}

#[test]
fn every_signal_during_a_trash_move_ends_the_journal_and_restore_undoes_it() {
    for (signal, name) in SIGNALS {
        let (dir, root) = fixture();
        let before = snapshot(&root);
        let trash = dir.path().join("trash");
        let args = gc_args(
            &root,
            &["--delete-threads", "1", "--trash", trash.to_str().unwrap()],
        );
        let run = Paused::start(&args, "sweep:4");
        run.signal(signal);
        let out = run.finish();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
        let report = one_json(&out);
        assert_eq!(report["interrupted_during"], "sweep", "{name}: {report}");
        let batch = report["trash"]["batch"].as_str().unwrap();
        let journal = fs::read_to_string(trash.join(batch).join("journal.jsonl")).unwrap();
        let last: Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
        assert_eq!(last["op"], "end", "{name}: {journal}");
        assert_eq!(last["interrupted"], true, "{name}: {journal}");
        assert!(last["moved"].as_u64().unwrap() > 0, "{name}: {journal}");
        assert!(!trash.join("regsweep.lock").exists(), "{name}");
        let out = regsweep(&["restore", "--json", trash.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));
        assert_eq!(one_json(&out)["exit_code"], 0);
        assert!(snapshot(&root) == before, "{name}: restored whole");
    }
}

/// `regsweep` on a pseudo-terminal (stdout to a file), stopped at its
/// question; returns the child (`script`), its output and the pid of
/// regsweep itself.
fn at_prompt(root: &Path, out_file: &Path) -> (Child, Arc<Mutex<Vec<u8>>>, Pid) {
    at_prompt_with(root, out_file, "--json")
}

/// [`at_prompt`], with `output` (`--json`, or `-v` for the human report).
fn at_prompt_with(root: &Path, out_file: &Path, output: &str) -> (Child, Arc<Mutex<Vec<u8>>>, Pid) {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line = format!(
        "exec {} gc {output} -m --min-age 0 {} > {}",
        quote(BIN),
        quote(root.to_str().unwrap()),
        quote(out_file.to_str().unwrap())
    );
    let mut child = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("TERM", "dumb")
        .env("SHELL", "/bin/sh")
        .env(PAUSE, "prompt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script(1)");
    let mut stdout = child.stdout.take().unwrap();
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
        if let Some(rest) = text.split("test pause at prompt (pid ").nth(1) {
            if text.contains("[y/N]") {
                if let Some(pid) = rest.split(')').next().and_then(|p| p.parse().ok()) {
                    break Pid::from_raw(pid).unwrap();
                }
            }
        }
        assert!(Instant::now() < deadline, "no prompt within 60 s:\n{text}");
        sleep(Duration::from_millis(20));
    };
    (child, output, pid)
}

#[test]
fn every_signal_at_the_prompt_ends_the_wait_with_nothing_deleted() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipping: script(1) (util-linux) is not installed");
        return;
    }
    for (signal, name) in SIGNALS {
        let (dir, root) = fixture();
        let before = snapshot(&root);
        let out_file = dir.path().join("report.json");
        let (mut child, output, pid) = at_prompt(&root, &out_file);
        kill_process(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = kill_process(pid, Signal::KILL);
                let _ = child.kill();
                panic!(
                    "{name}: the prompt kept waiting after the signal:\n{}",
                    String::from_utf8_lossy(&output.lock().unwrap())
                );
            }
            sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(1), "{name}");
        let text = fs::read_to_string(&out_file).unwrap();
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not one JSON object ({e}): {text}"));
        assert_eq!(report["exit_code"], 1, "{name}: {report}");
        assert_eq!(report["interrupted"], true, "{name}: {report}");
        assert_eq!(report["interrupted_during"], "prompt", "{name}: {report}");
        assert_eq!(report["dry_run"], false, "{name}: {report}");
        assert_eq!(total(&report["deleted"]), 0, "{name}: {report}");
        assert_eq!(report["after"], report["before"], "{name}: {report}");
        assert!(snapshot(&root) == before, "{name}: nothing deleted");
        assert_lock_free_and_rerun_finishes(&root);
    }
}

#[test]
fn a_signal_at_the_prompt_is_told_as_nothing_deleted_not_as_an_interrupted_sweep() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipping: script(1) (util-linux) is not installed");
        return;
    }
    let (dir, root) = fixture();
    let out_file = dir.path().join("report.txt");
    let (mut child, _output, pid) = at_prompt_with(&root, &out_file, "-v");
    kill_process(pid, Signal::TERM).unwrap();
    // Not `wait`: it would close the terminal's input first, an answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the prompt kept waiting");
        sleep(Duration::from_millis(20));
    };
    let text = fs::read_to_string(&out_file).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("Interrupted at the prompt before the sweep: nothing was deleted."),
        "{text}"
    );
    assert!(text.contains("nothing was deleted):"), "{text}");
    // No sweep ran: nothing to finish, no cache to clear.
    assert!(!text.contains("a re-run finishes it"), "{text}");
    assert!(!text.contains("Restart the registry"), "{text}");
}

#[test]
fn no_at_the_prompt_is_one_json_report_too() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipping: script(1) (util-linux) is not installed");
        return;
    }
    let (dir, root) = fixture();
    let before = snapshot(&root);
    let out_file = dir.path().join("report.json");
    let (mut child, _output, _pid) = at_prompt(&root, &out_file);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"n\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let text = fs::read_to_string(&out_file).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["declined"], true, "{report}");
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["dry_run"], false, "{report}");
    assert_eq!(total(&report["deleted"]), 0, "{report}");
    assert!(snapshot(&root) == before);
}

/// A second signal exits at once (here the first one finds the run stuck,
/// as in a hung filesystem call): still one whole JSON object, and no lock
/// that blocks the next run.
#[test]
fn a_second_signal_exits_at_once_with_one_whole_json_object() {
    for spec in ["index:1:stuck", "sweep:4:stuck"] {
        let (_d, root) = fixture();
        let args = gc_args(&root, &["--delete-threads", "1"]);
        let run = Paused::start(&args, spec);
        run.signal(Signal::TERM);
        run.wait_for("interrupt again to exit now");
        run.signal(Signal::INT);
        let out = run.finish();
        assert_eq!(out.status.code(), Some(1), "{spec}: {}", describe(&out));
        let report = one_json(&out);
        assert_eq!(report["kind"], "interrupted", "{spec}: {report}");
        assert_eq!(report["interrupted"], true);
        let phase = spec.split(':').next().unwrap();
        assert_eq!(report["interrupted_during"], phase, "{spec}: {report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("interrupted again"),
            "{report}"
        );
        assert_lock_free_and_rerun_finishes(&root);
    }
}

#[test]
fn a_dry_run_stops_on_a_signal_with_a_json_object_too() {
    let (_d, root) = fixture();
    let run = Paused::start(
        &[
            "gc",
            "--json",
            "-d",
            "-m",
            "--min-age",
            "0",
            root.to_str().unwrap(),
        ],
        "plan",
    );
    run.signal(Signal::TERM);
    let out = run.finish();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = one_json(&out);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["interrupted_during"], "plan");
}

// ---------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------

#[test]
fn a_run_killed_with_sigkill_leaves_no_lock_that_blocks_the_next_one() {
    for spec in ["index", "sweep:4"] {
        let (_d, root) = fixture();
        let run = Paused::start(&gc_args(&root, &["--delete-threads", "1"]), spec);
        run.signal(Signal::KILL);
        let out = run.finish();
        assert_eq!(out.status.code(), None, "killed: {}", describe(&out));
        let leftover = fs::read_to_string(root.join("regsweep.lock")).unwrap();
        assert!(
            leftover.contains("\"gc\""),
            "the dead run's file: {leftover}"
        );
        assert_lock_free_and_rerun_finishes(&root);
    }
}

#[test]
fn a_leftover_lock_file_of_another_host_never_blocks() {
    let (dir, root) = fixture();
    let trash = dir.path().join("trash");
    fs::create_dir(&trash).unwrap();
    let foreign = "{\"pid\":4242,\"host\":\"regsweep-cron-28391-x7k2p\",\"started\":\"2024-05-01T12:00:00Z\",\"command\":\"gc\"}\n";
    for lock in [root.join("regsweep.lock"), trash.join("regsweep.lock")] {
        fs::write(lock, foreign).unwrap();
    }
    let out = regsweep(&gc_args(&root, &["--trash", trash.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(total(&one_json(&out)["deleted"]) > 0);
    assert!(!root.join("regsweep.lock").exists());
    assert!(!trash.join("regsweep.lock").exists());
}

#[test]
fn both_locks_held_are_reported_at_once() {
    let (dir, root) = fixture();
    let trash = dir.path().join("trash");
    fs::create_dir(&trash).unwrap();
    let before = snapshot(&root);
    let _storage = regsweep::storage::fs::lock::Lock::acquire(&root, "gc").unwrap();
    let _trash = regsweep::storage::fs::lock::Lock::acquire(&trash, "restore").unwrap();
    let out = regsweep(&gc_args(&root, &["--trash", trash.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let report = one_json(&out);
    assert_eq!(report["kind"], "lock_held", "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{report}");
    let paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    let canonical = |p: &Path| fs::canonicalize(p).unwrap();
    assert!(
        paths
            .iter()
            .any(|p| canonical(Path::new(p).parent().unwrap()) == canonical(&root)),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| canonical(Path::new(p).parent().unwrap()) == canonical(&trash)),
        "{paths:?}"
    );
    assert!(errors.iter().all(|e| e["kind"] == "lock_held"), "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("regsweep gc pid"), "{stderr}");
    assert!(stderr.contains("regsweep restore pid"), "{stderr}");
    assert!(snapshot(&root) == before);
}

/// Writing who holds the lock fails (as on a full disk: here the file size
/// limit is zero): the run goes on, and leaves no file that blocks.
#[test]
fn a_lock_whose_holder_cannot_be_written_is_held_all_the_same() {
    let (_d, root) = fixture();
    let out = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"", BIN])
        .args(gc_args(&root, &[]))
        .env_remove(PAUSE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot record who holds the lock"),
        "{stderr}"
    );
    assert!(total(&one_json(&out)["deleted"]) > 0);
    assert!(!root.join("regsweep.lock").exists());
    assert_lock_free_and_rerun_finishes(&root);
}

// ---------------------------------------------------------------------------
// JSON on every exit
// ---------------------------------------------------------------------------

fn assert_refusal(out: &Output, kind: &str, what: &str) -> Value {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", describe(out));
    let report = one_json(out);
    assert_eq!(report["kind"], kind, "{what}: {report}");
    assert!(
        report["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {report}"
    );
    assert_eq!(report["interrupted"], false, "{what}: {report}");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    report
}

#[test]
fn every_refusal_prints_one_json_object_with_exit_code_error_and_kind() {
    let (dir, root) = fixture();
    let before = snapshot(&root);
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    let plain = dir.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let out = regsweep(&["gc", "--json", "-y", &path(&plain)]);
    let report = assert_refusal(&out, "not_storage", "not registry storage");
    assert_eq!(report["command"], "gc");
    assert_eq!(report["regsweep_report"], 2);

    let config = dir.path().join("config.yml");
    fs::write(
        &config,
        "version: 0.1\nstorage:\n  azure:\n    container: b\n",
    )
    .unwrap();
    let out = regsweep(&["gc", "--json", "-y", &path(&config)]);
    assert_refusal(&out, "unsupported_driver", "an azure configuration");

    let out = regsweep(&gc_args(&root, &["--policy", "/nonexistent/policy.json"]));
    assert_refusal(&out, "policy", "a policy file that is not there");

    let out = regsweep(&gc_args(&root, &["--protect", "/nonexistent/in-use.txt"]));
    assert_refusal(&out, "protect", "a protect file that is not there");

    {
        let _held = regsweep::storage::fs::lock::Lock::acquire(&root, "gc").unwrap();
        let out = regsweep(&gc_args(&root, &[]));
        let report = assert_refusal(&out, "lock_held", "the lock held");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("another run holds the lock"),
            "{report}"
        );
    }

    let upload = root
        .join("docker/registry/v2/repositories/app/_uploads/0b9a3c1e-1111-4c1a-9e1d-000000000001");
    fs::create_dir_all(&upload).unwrap();
    fs::write(upload.join("data"), b"partial").unwrap();
    fs::write(
        upload.join("startedat"),
        regsweep::clock::rfc3339(std::time::SystemTime::now()),
    )
    .unwrap();
    // Uploads count as in progress within --min-age.
    let out = regsweep(&gc_args(&root, &["--min-age", "1h"]));
    assert_refusal(&out, "uploads_in_progress", "an upload in progress");
    fs::remove_dir_all(root.join("docker/registry/v2/repositories/app/_uploads")).unwrap();
    assert!(snapshot(&root) == before, "refusals delete nothing");

    for command in [
        vec!["verify", "--json"],
        vec!["du", "--json"],
        vec!["restore", "--json"],
        vec!["trash", "empty", "--json"],
    ] {
        let mut args = command.clone();
        let missing = path(&dir.path().join("missing"));
        args.push(&missing);
        let out = regsweep(&args);
        let report = assert_refusal(&out, "io", &format!("{command:?}"));
        assert!(report["regsweep_report"].is_null(), "{report}");
    }
}

#[test]
fn the_json_report_lists_candidates_only_with_verbose_and_carries_run_times() {
    let (_d, root) = fixture();
    let dry = |extra: &[&str]| {
        let mut args = vec!["gc", "--json", "-d", "-m", "--min-age", "0"];
        args.extend_from_slice(extra);
        args.push(root.to_str().unwrap());
        let out = regsweep(&args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        one_json(&out)
    };
    let summary = dry(&[]);
    let listed = dry(&["-v"]);
    let object = summary.as_object().unwrap();
    assert!(!object.contains_key("candidates"), "{summary}");
    assert!(!object.contains_key("kept"), "{summary}");
    for key in ["reclaimable", "repositories", "warnings", "failures"] {
        assert_eq!(summary[key], listed[key], "{key}");
    }
    let candidates = listed["candidates"].as_array().unwrap();
    assert_eq!(candidates.len() as u64, total(&listed["reclaimable"]));
    assert!(listed["kept"].is_array());
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    for field in ["started", "finished"] {
        let time = summary[field].as_str().unwrap();
        assert!(
            regsweep::clock::parse_rfc3339(time).is_some() && time.ends_with('Z'),
            "{field}: {time}"
        );
    }
    assert!(summary["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["interrupted_during"], Value::Null);
}

/// A leftover lock file of another user (a run as root, then one as the
/// registry's user): taken over when no process holds it, refused when one
/// does.
#[test]
fn a_leftover_lock_file_of_another_user_is_taken_over_unless_held() {
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !rustix::process::geteuid().is_root() || setpriv.is_err() {
        println!("skipping: needs root and setpriv(1) to run as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let trash = dir.path().join("trash");
    fs::create_dir(&trash).unwrap();
    fs::set_permissions(&trash, fs::Permissions::from_mode(0o777)).unwrap();
    let lock = trash.join("regsweep.lock");
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["trash", "empty", "--json", trash.to_str().unwrap()])
            .output()
            .unwrap()
    };
    fs::write(
        &lock,
        "{\"pid\":1,\"host\":\"x\",\"started\":\"2024-05-01T12:00:00Z\",\"command\":\"gc\"}\n",
    )
    .unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!lock.exists());

    let held = regsweep::storage::fs::lock::Lock::acquire(&trash, "gc").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(one_json(&out)["kind"], "lock_held");
    drop(held);
}
