//! `regsweep`: parse, run, map the outcome to the exit code.

mod cli;
mod signals;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, Parser};

use cli::{
    Cli, Command, DuArgs, GcArgs, ManArgs, MetricsFile, QUIT, RestoreArgs, TrashCommand,
    TrashEmptyArgs, VerifyArgs,
};
use regsweep::gc::Collector;
use regsweep::interrupt::{Interrupt, Phase};
use regsweep::report::{ErrorRecord, StopReport, TrashRecord};
use regsweep::storage::fs::lock::{self, Lock};
use regsweep::storage::fs::sweep::Disposal;
use regsweep::storage::fs::trash::{self, Trash};
use regsweep::storage::{Storage, s3};
use regsweep::{ExitStatus, Report};
use signals::Mode;

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    install_signal_handler(&command);
    let status = match command {
        Command::Gc(args) => gc(args),
        Command::Verify(args) => verify(args),
        Command::Du(args) => du(args),
        Command::Completions(args) => {
            // Rendered in memory: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "regsweep", &mut script);
            print_generated(&script, "completion script")
        }
        Command::Man(args) => man(args),
        Command::Restore(args) => restore(args),
        Command::Trash(TrashCommand::Empty(args)) => trash_empty(args),
        Command::Trash(TrashCommand::List(args)) => report_result_json(
            "trash list",
            args.json.then(|| args.dir.clone()),
            if s3::trash::is_url(&args.dir) {
                s3::trash::list(&args.dir)
            } else {
                trash::list(&args.dir)
            }
            .map(|listing| {
                let mut stdout = buffered_stdout();
                let _ = if args.json {
                    listing.write_json(&mut stdout)
                } else {
                    listing.write_table(&mut stdout)
                }
                .and_then(|()| stdout.flush());
                report_problems(&listing.problems)
            }),
        ),
    };
    ExitCode::from(status as u8)
}

/// How each command meets SIGINT, SIGTERM and SIGHUP (see `signals`).
fn install_signal_handler(command: &Command) {
    let (name, json, mode) = match command {
        Command::Gc(args) => ("gc", args.json, Mode::StopsCleanly(ExitStatus::Warnings)),
        Command::Restore(args) => (
            "restore",
            args.json,
            Mode::StopsCleanly(ExitStatus::Warnings),
        ),
        Command::Trash(TrashCommand::Empty(args)) => (
            "trash empty",
            args.json,
            Mode::ExitsAtOnce(ExitStatus::Warnings),
        ),
        // They change nothing: an interrupted check is a failed one.
        Command::Verify(args) => ("verify", args.json, Mode::ExitsAtOnce(ExitStatus::Failed)),
        Command::Du(args) => ("du", args.json, Mode::ExitsAtOnce(ExitStatus::Failed)),
        _ => ("regsweep", false, Mode::ExitsAtOnce(ExitStatus::Failed)),
    };
    signals::install(name, json, mode);
}

/// An error before anything changed: exit 2 (1 if a signal stopped the
/// run); with `--json` (`json` names the target) also on stdout.
fn report_result_json(
    command: &'static str,
    json: Option<PathBuf>,
    result: regsweep::Result<ExitStatus>,
) -> ExitStatus {
    result.unwrap_or_else(|e| {
        eprintln!("regsweep: error: {e}");
        let status = refusal_status(std::slice::from_ref(&e));
        if let Some(target) = json {
            print_stop_report(command, Some(target), None, &[e], status);
        }
        status
    })
}

/// Exit 2, or 1 when a signal stopped the run before it changed anything.
fn refusal_status(errors: &[regsweep::Error]) -> ExitStatus {
    if errors
        .iter()
        .all(|e| matches!(e, regsweep::Error::Interrupted { .. }))
    {
        ExitStatus::Warnings
    } else {
        ExitStatus::Failed
    }
}

/// The one JSON object of a command that stopped on `errors`.
fn print_stop_report(
    command: &'static str,
    target: Option<PathBuf>,
    dry_run: Option<bool>,
    errors: &[regsweep::Error],
    status: ExitStatus,
) {
    let started = signals::started();
    let finished = SystemTime::now();
    let interrupted_during = errors.iter().find_map(|e| match e {
        regsweep::Error::Interrupted { phase } => Some(phase.as_str()),
        _ => None,
    });
    let report = StopReport {
        regsweep_report: (command == "gc").then_some(regsweep::report::REPORT_VERSION),
        version: env!("CARGO_PKG_VERSION"),
        command,
        target,
        dry_run,
        started: regsweep::clock::rfc3339(started),
        finished: regsweep::clock::rfc3339(finished),
        duration_seconds: regsweep::report::seconds_between(started, finished),
        exit_code: status,
        kind: errors.first().map_or("error", regsweep::Error::kind),
        error: errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        errors: if errors.len() > 1 {
            errors
                .iter()
                .map(|e| ErrorRecord {
                    kind: e.kind(),
                    path: e.path().map(std::path::Path::to_path_buf),
                    error: e.to_string(),
                })
                .collect()
        } else {
            Vec::new()
        },
        interrupted: interrupted_during.is_some(),
        interrupted_during,
    };
    signals::write_output(status, || {
        let mut stdout = buffered_stdout();
        let _ = report.write_json(&mut stdout);
        let _ = stdout.flush();
    });
}

/// `value` as one JSON object, with `exit_code` added.
fn print_json_with_code(value: &impl serde::Serialize, code: ExitStatus) {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("exit_code".into(), (code as i32).into());
            print_json(&object, code);
        }
        _ => print_json(value, code),
    }
}

/// Exit 1 if there is any problem.
fn problems_status(problems: &[(std::path::PathBuf, String)]) -> ExitStatus {
    if problems.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    }
}

/// Prints each `path: problem` on stderr: exit 1 if there is any.
fn report_problems(problems: &[(std::path::PathBuf, String)]) -> ExitStatus {
    for (path, message) in problems {
        eprintln!("regsweep: {}: {message}", path.display());
    }
    if problems.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    }
}

fn print_json(value: &impl serde::Serialize, code: ExitStatus) {
    signals::write_output(code, || {
        let mut stdout = buffered_stdout();
        let _ = serde_json::to_writer(&mut stdout, value);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    });
}

/// Stdout with a large buffer: a JSON report of a big sweep lists hundreds
/// of thousands of candidates, and the standard line buffer would make one
/// `write` per kilobyte.
fn buffered_stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(1 << 16, io::stdout().lock())
}

fn gc(args: GcArgs) -> ExitStatus {
    let metrics = args.metrics_file();
    let json = args.json;
    let dry_run = args.dry_run;
    signals::describe_target(args.target.clone(), Some(dry_run));
    match run_gc(args) {
        Ok(status) => status,
        Err(Refusal(errors)) => {
            let status = refusal_status(&errors);
            if status == ExitStatus::Warnings {
                // Interrupted: the message says nothing was deleted.
                for e in &errors {
                    eprintln!("regsweep: {e}");
                }
            } else {
                for e in &errors {
                    eprintln!("regsweep: error: {e}");
                }
                eprintln!("regsweep: nothing was deleted");
            }
            if json {
                let target = signals::target();
                print_stop_report("gc", target, Some(dry_run), &errors, status);
            }
            write_metrics(metrics.as_ref(), None, status)
        }
    }
}

/// Writes `--metrics-file`, if asked; a failure is said on stderr and makes
/// the exit code at least 1 (what was deleted stays deleted).
fn write_metrics(
    metrics: Option<&MetricsFile>,
    report: Option<&Report>,
    status: ExitStatus,
) -> ExitStatus {
    let Some(metrics) = metrics else {
        return status;
    };
    let run = regsweep::report::metrics::RunFacts {
        target: &metrics.target,
        finished: std::time::SystemTime::now(),
        duration: metrics.started.elapsed(),
        dry_run: metrics.dry_run,
        exit_code: status,
    };
    let text = regsweep::report::metrics::render(&run, report);
    match regsweep::report::metrics::write_atomically(&metrics.path, &text) {
        Ok(()) => status,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            match status {
                ExitStatus::Success => ExitStatus::Warnings,
                other => other,
            }
        }
    }
}

fn man(args: ManArgs) -> ExitStatus {
    let written = match &args.dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir)
            .map_err(|e| format!("{}: cannot write the manual pages: {e}", dir.display())),
        None => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => return print_generated(&page, "manual page"),
                Err(e) => Err(format!("cannot render the manual page: {e}")),
            }
        }
    };
    match written {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            ExitStatus::Failed
        }
    }
}

/// Prints a generated file on stdout; a closed pipe (`| head`) is no error.
fn print_generated(text: &[u8], what: &str) -> ExitStatus {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("regsweep: error: cannot write the {what}: {e}");
            ExitStatus::Failed
        }
        _ => ExitStatus::Success,
    }
}

/// The locks of a real run: the storage's, and the trash directory's. Both
/// are tried, so that a refusal names every lock held.
fn lock_gc(
    root: &std::path::Path,
    trash_dir: Option<&std::path::Path>,
    layout: &regsweep::Layout,
) -> Result<(Vec<Lock>, Option<Trash>), Vec<regsweep::Error>> {
    let mut errors = Vec::new();
    let mut locks = Vec::new();
    match Lock::acquire(root, "gc") {
        Ok(lock) => locks.push(lock),
        Err(e) => errors.push(e),
    }
    let mut trash = None;
    if let Some(dir) = trash_dir {
        match Trash::prepare(dir, layout) {
            Ok(prepared) => {
                if prepared.dir() != root {
                    match Lock::acquire(prepared.dir(), "gc") {
                        Ok(lock) => locks.push(lock),
                        Err(e) => errors.push(e),
                    }
                }
                trash = Some(prepared);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok((locks, trash))
    } else {
        Err(errors)
    }
}

/// Why a run stopped before it changed anything: every reason found.
struct Refusal(Vec<regsweep::Error>);

impl From<regsweep::Error> for Refusal {
    fn from(e: regsweep::Error) -> Refusal {
        Refusal(vec![e])
    }
}

fn run_gc(args: GcArgs) -> Result<ExitStatus, Refusal> {
    let (mut config, output) = args.into_config()?;
    let storage = config.storage.clone();
    let root = storage.name();
    signals::describe_target(root.clone(), Some(output.dry_run));
    config.interrupt = Interrupt::new(&QUIT).observed_by(signals::observe);
    // A dry run changes nothing and may run on read-only storage: it takes
    // no lock, but says when another run holds one.
    let mut lock_warning = None;
    let mut locks = Vec::new();
    let mut bucket_lock = None;
    let mut trash = None;
    let mut bucket_trash = None;
    match (&storage, output.dry_run) {
        (Storage::Filesystem(layout), true) => {
            lock_warning = lock::held_warning(layout.root(), "dry run");
        }
        (Storage::S3(bucket), true) => {
            lock_warning = s3::lock::held_warning(bucket, "dry run");
        }
        (Storage::Filesystem(layout), false) => {
            if let Some(url) = output.trash.as_deref().filter(|t| s3::trash::is_url(t)) {
                return Err(Refusal::from(regsweep::Error::Trash {
                    path: url.to_path_buf(),
                    reason: "the storage is a directory: its trash is a directory on the same filesystem, not a bucket".into(),
                }));
            }
            (locks, trash) =
                lock_gc(layout.root(), output.trash.as_deref(), layout).map_err(Refusal)?;
            for note in locks.iter().filter_map(Lock::note) {
                if !output.quiet {
                    eprintln!("regsweep: note: {note}");
                }
            }
        }
        (Storage::S3(bucket), false) => {
            if let Some(dir) = &output.trash {
                if !s3::trash::is_url(dir) {
                    return Err(Refusal::from(regsweep::Error::Trash {
                        path: dir.clone(),
                        reason: format!(
                            "the storage is the bucket {root}: its trash is a prefix in that bucket, given as s3://BUCKET/PREFIX",
                            root = root.display()
                        ),
                    }));
                }
                bucket_trash = Some(s3::trash::S3Trash::prepare(dir, bucket)?);
            }
            bucket_lock = s3::lock::S3Lock::acquire(bucket, "gc", output.force_unlocked)?;
            let note = bucket_lock.as_ref().and_then(s3::lock::S3Lock::note);
            if let (Some(note), false) = (note, output.quiet) {
                eprintln!("regsweep: note: {note}");
            }
        }
    }
    // The lock file's time was set just now, on the storage's own clock:
    // anything modified since, the plan has not seen.
    let index_began = locks
        .first()
        .and_then(Lock::taken_at)
        .or_else(|| bucket_lock.as_ref().and_then(s3::lock::S3Lock::taken_at))
        .unwrap_or_else(|| SystemTime::now() - Duration::from_secs(1));
    let collector = Collector::new(config)?;
    let mut planned = collector.plan()?;
    collector.check_uploads(&mut planned, output.dry_run, output.force)?;
    planned.warnings.extend(lock_warning);

    let mut batch = None;
    let mut bucket_batch = None;
    let mut stopped_before_sweep = None;
    let mut declined = false;
    let outcome = if output.dry_run {
        None
    } else {
        if let Some(config) = &output.registry_config {
            if !(output.quiet && config.readonly) {
                eprintln!("{}", readonly_notice(config));
            }
        }
        if output.confirm && !planned.plan.candidates.is_empty() {
            let preview = collector.report(&planned, None, None);
            print_warnings(&preview);
            let mut stderr = io::stderr().lock();
            let trashing = trash.is_some() || bucket_trash.is_some();
            let _ = preview.write_preview(&mut stderr, 10, trashing);
            let question = if trashing {
                "Move these to the trash now? [y/N] "
            } else {
                "Delete these now? [y/N] "
            };
            match ask(&mut stderr, question) {
                Answer::Yes => {}
                Answer::No => {
                    let _ = writeln!(stderr, "Nothing deleted.");
                    declined = true;
                }
                Answer::Interrupted => {
                    let _ = writeln!(stderr);
                    stopped_before_sweep = Some(Phase::Prompt);
                }
            }
        }
        // A signal between the plan and the sweep: nothing deleted yet.
        if stopped_before_sweep.is_none() && !declined && QUIT.load(Ordering::SeqCst) {
            stopped_before_sweep = Some(Phase::Plan);
        }
        if declined || stopped_before_sweep.is_some() {
            None
        } else {
            batch = match &trash {
                Some(t) if !planned.plan.candidates.is_empty() => {
                    Some(t.begin(storage.layout().root())?)
                }
                _ => None,
            };
            if let (Some(t), Storage::S3(bucket)) = (&bucket_trash, &storage) {
                if !planned.plan.candidates.is_empty() {
                    bucket_batch = Some(t.begin(bucket));
                }
            }
            match &bucket_batch {
                Some(b) => collector.sweep_into_bucket_trash(&planned, b, index_began),
                None => {
                    let disposal = batch.as_ref().map_or(Disposal::Delete, Disposal::Trash);
                    let clean_up = trash.is_none() || batch.is_some();
                    Some(collector.sweep(&planned, disposal, clean_up, index_began))
                }
            }
        }
    };

    let trash_record = batch
        .as_ref()
        .zip(trash.as_ref())
        .map(|(b, t)| TrashRecord {
            dir: t.dir().to_path_buf(),
            batch: b.name().to_owned(),
            journal: b.journal_path(),
        })
        .or_else(|| {
            bucket_batch
                .as_ref()
                .zip(bucket_trash.as_ref())
                .map(|(b, t)| TrashRecord {
                    dir: PathBuf::from(t.url()),
                    batch: b.name().to_owned(),
                    journal: PathBuf::from(b.url()),
                })
        });
    let mut report = collector.report(&planned, outcome, trash_record);
    if declined {
        report.declined();
    }
    if let Some(phase) = stopped_before_sweep {
        report.stopped_before_sweep(phase);
    } else if QUIT.load(Ordering::SeqCst) {
        report.stopped_by_signal();
    }
    report.list_items(output.verbose);
    if !output.confirm || output.dry_run {
        print_warnings(&report);
    }
    for failure in &report.failures {
        eprintln!(
            "regsweep: could not delete {}: {}",
            failure.path.display(),
            failure.message
        );
    }
    if let Some(change) = &report.registry_changed {
        eprintln!(
            "regsweep: error: {change}: the registry is taking writes, and the plan may no longer hold. Make it read-only (storage.maintenance.readonly.enabled: true in its config.yml, then restart it) or stop it, then run regsweep again"
        );
        if report.deleted == regsweep::gc::plan::Reclaim::default() {
            eprintln!("regsweep: nothing was deleted");
        } else {
            eprintln!(
                "regsweep: the sweep stopped there; what it deleted before leaves a consistent registry"
            );
        }
    } else if let Some(phase) = stopped_before_sweep {
        eprintln!(
            "regsweep: interrupted {}: nothing was deleted",
            phase.doing()
        );
    } else if report.interrupted {
        eprintln!("regsweep: interrupted: the sweep stopped before the end of its plan");
    }
    report.timed(signals::started());
    // Written before the report, so that a failure to write it is in the
    // report's exit code too.
    report.exit_code = write_metrics(output.metrics.as_ref(), Some(&report), report.exit_code);
    let status = report.exit_code;
    signals::write_output(status, || {
        let mut stdout = buffered_stdout();
        let written = if output.json {
            report.write_json(&mut stdout)
        } else if output.quiet || declined {
            Ok(())
        } else {
            report.write_human(&mut stdout, output.verbose, 10)
        };
        report_write_error(written.and_then(|()| stdout.flush()));
    });
    drop(locks);
    drop(bucket_lock);
    Ok(status)
}

/// Whether the registry's configuration keeps it from taking pushes: said
/// before the prompt, where a push would race the sweep.
fn readonly_notice(config: &regsweep::storage::target::RegistryConfig) -> String {
    let path = config.path.display();
    if config.readonly {
        format!(
            "regsweep: {path}: storage.maintenance.readonly.enabled is true: a registry started with it takes no pushes"
        )
    } else {
        format!(
            "regsweep: warning: {path}: storage.maintenance.readonly.enabled is not true: a registry running with this configuration takes pushes, and a push during the sweep stops it. Set it to true and restart the registry, or stop the registry, before sweeping"
        )
    }
}

fn restore(args: RestoreArgs) -> ExitStatus {
    let restored = if s3::trash::is_url(&args.dir) {
        s3::trash::restore(&args.dir, args.batch.as_deref(), Some(&QUIT))
    } else {
        trash::restore(&args.dir, args.batch.as_deref(), Some(&QUIT))
    };
    let outcome = match restored {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            eprintln!("regsweep: nothing was restored");
            if args.json {
                let errors = [e];
                let code = ExitStatus::Failed;
                print_stop_report("restore", Some(args.dir), None, &errors, code);
            }
            return ExitStatus::Failed;
        }
    };
    for (path, message) in &outcome.failures {
        eprintln!("regsweep: could not restore {}: {message}", path.display());
    }
    let status = if outcome.failures.is_empty() && !outcome.interrupted {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    };
    if args.json {
        print_json_with_code(&outcome, status);
    } else {
        let mut stdout = buffered_stdout();
        let _ = outcome
            .write_summary(&mut stdout)
            .and_then(|()| stdout.flush());
    }
    if outcome.interrupted {
        eprintln!("regsweep: interrupted: run `regsweep restore` again to finish");
    }
    status
}

/// `trash empty`: in a terminal, shows the batches and asks first (unless
/// `--yes`); without one, as in cron, it goes on as `gc` does.
fn trash_empty(args: TrashEmptyArgs) -> ExitStatus {
    let json_target = args.json.then(|| args.dir.clone());
    if s3::trash::is_url(&args.dir) {
        return bucket_trash_empty(args);
    }
    let mut plan =
        match trash::plan_empty(&args.dir, args.older_than.unwrap_or_default(), args.dry_run) {
            Ok(plan) => plan,
            Err(e) => return report_result_json("trash empty", json_target, Err(e)),
        };
    let outcome = if args.dry_run {
        plan.dry_run()
    } else {
        let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
        if interactive && !args.yes && !plan.batches.is_empty() {
            plan.measure();
            if let Some(status) = ask_to_delete_batches(|out| plan.write_plan(out)) {
                return status;
            }
        }
        plan.run()
    };
    empty_outcome(&outcome, &args)
}

/// Shows the batches `trash empty` would delete (through `show`) and asks;
/// the exit status when the answer is not yes.
fn ask_to_delete_batches(
    show: impl FnOnce(&mut io::StderrLock<'static>) -> io::Result<()>,
) -> Option<ExitStatus> {
    let mut stderr = io::stderr().lock();
    let _ = show(&mut stderr);
    match ask(&mut stderr, "Delete these batches for good? [y/N] ") {
        Answer::Yes => None,
        Answer::No => {
            let _ = writeln!(stderr, "Nothing deleted.");
            Some(ExitStatus::Success)
        }
        Answer::Interrupted => {
            let _ = writeln!(stderr, "Interrupted: nothing deleted.");
            Some(ExitStatus::Warnings)
        }
    }
}

/// `trash empty s3://BUCKET/PREFIX`: as [`trash_empty`], the question
/// showing the batches a dry run finds.
fn bucket_trash_empty(args: TrashEmptyArgs) -> ExitStatus {
    let json_target = args.json.then(|| args.dir.clone());
    let older_than = args.older_than.unwrap_or_default();
    let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
    if !args.dry_run && interactive && !args.yes {
        let preview = match s3::trash::empty(&args.dir, older_than, true) {
            Ok(preview) => preview,
            Err(e) => return report_result_json("trash empty", json_target, Err(e)),
        };
        if !preview.deleted.is_empty() {
            let shown = ask_to_delete_batches(|out| preview.write_summary(out, &args.dir));
            if let Some(status) = shown {
                return status;
            }
        }
    }
    let outcome = match s3::trash::empty(&args.dir, older_than, args.dry_run) {
        Ok(outcome) => outcome,
        Err(e) => return report_result_json("trash empty", json_target, Err(e)),
    };
    empty_outcome(&outcome, &args)
}

/// What `trash empty` did, on a directory or a bucket: the JSON report or
/// the summary, the problems on stderr, and the exit status.
fn empty_outcome(outcome: &trash::EmptyOutcome, args: &TrashEmptyArgs) -> ExitStatus {
    let status = problems_status(&outcome.problems);
    if args.json {
        print_json_with_code(outcome, status);
    } else {
        let mut stdout = buffered_stdout();
        let _ = outcome
            .write_summary(&mut stdout, &args.dir)
            .and_then(|()| stdout.flush());
    }
    report_problems(&outcome.problems)
}

fn print_warnings(report: &Report) {
    for warning in &report.warnings {
        eprintln!("regsweep: warning: {warning}");
    }
}

/// The operator's answer at the prompt.
enum Answer {
    Yes,
    No,
    /// A signal came first.
    Interrupted,
}

/// Asks `question`; a signal (which restarts a blocking read) ends the
/// wait. The line is read on a thread of its own, left blocked if the
/// signal wins: the run ends soon after.
fn ask(out: &mut impl Write, question: &str) -> Answer {
    let _ = write!(out, "{question}");
    let _ = out.flush();
    signals::observe(Phase::Prompt);
    let (answered, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = io::stdin().lock().read_line(&mut line);
        let _ = answered.send(read.ok().map(|_| line));
    });
    loop {
        if QUIT.load(Ordering::SeqCst) {
            return Answer::Interrupted;
        }
        match answer.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(line)) if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") => {
                // A signal with the answer: stop all the same.
                return if QUIT.load(Ordering::SeqCst) {
                    Answer::Interrupted
                } else {
                    Answer::Yes
                };
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Answer::No,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn du(args: DuArgs) -> ExitStatus {
    signals::describe_target(args.target.clone(), None);
    let run = || -> regsweep::Result<ExitStatus> {
        let storage = regsweep::storage::target::resolve_target(
            &args.target,
            &regsweep::storage::target::Environment::from_process(),
        )?
        .storage;
        let options = regsweep::du::DuOptions {
            delete_untagged: args.delete_untagged,
            top: args.top.or((!args.json).then_some(20)),
            price_per_gib_month: args.price_per_gib_month,
        };
        let progress = regsweep::progress::Progress::new(io::stderr().is_terminal());
        let pulls = args.pulls();
        let usage = regsweep::du::disk_usage(
            &storage,
            options,
            pulls.as_ref().map(|(config, within)| (config, *within)),
            args.threads.map(usize::from),
            progress,
        )?;
        for warning in &usage.warnings {
            eprintln!("regsweep: warning: {warning}");
        }
        signals::write_output(usage.exit_code, || {
            let mut stdout = buffered_stdout();
            let written = if args.json {
                usage.write_json(&mut stdout)
            } else {
                usage.write_human(&mut stdout, args.verbose)
            };
            report_write_error(written.and_then(|()| stdout.flush()));
        });
        Ok(usage.exit_code)
    };
    match run() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            if args.json {
                let code = ExitStatus::Failed;
                print_stop_report("du", signals::target(), None, &[e], code);
            }
            ExitStatus::Failed
        }
    }
}

/// Says why the report could not be written, unless its reader went away.
fn report_write_error(written: io::Result<()>) {
    if let Err(e) = written {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("regsweep: cannot write the report: {e}");
        }
    }
}

fn verify(args: VerifyArgs) -> ExitStatus {
    signals::describe_target(args.target.clone(), None);
    let json = args.json;
    let verified = args.into_config().and_then(|(config, output)| {
        regsweep::verify::verify(&config).map(|verification| (verification, output))
    });
    let (verification, output) = match verified {
        Ok(done) => done,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            if json {
                let code = ExitStatus::Failed;
                print_stop_report("verify", signals::target(), None, &[e], code);
            }
            return ExitStatus::Failed;
        }
    };
    let _ = verification.write_problems(&mut io::stderr().lock());
    signals::write_output(verification.exit_code, || {
        let mut stdout = buffered_stdout();
        let written = if output.json {
            verification.write_json(&mut stdout)
        } else if output.quiet {
            Ok(())
        } else {
            verification.write_summary(&mut stdout)
        };
        report_write_error(written.and_then(|()| stdout.flush()));
    });
    verification.exit_code
}
