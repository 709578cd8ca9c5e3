//! `regsweep`: parse, run, map the outcome to the exit code.

mod cli;

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{CommandFactory, Parser};

use cli::{
    Cli, Command, DuArgs, GcArgs, ManArgs, MetricsFile, QUIT, RestoreArgs, TrashCommand, VerifyArgs,
};
use regsweep::lock::{self, Lock};
use regsweep::report::TrashRecord;
use regsweep::sweep::Disposal;
use regsweep::trash::{self, Trash};
use regsweep::{Collector, ExitStatus, Report};

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
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
        Command::Trash(TrashCommand::Empty(args)) => report_result(
            trash::empty(&args.dir, args.older_than.unwrap_or_default()).map(|outcome| {
                if args.json {
                    print_json(&outcome);
                } else {
                    for name in &outcome.deleted {
                        println!("deleted {}", args.dir.join(name).display());
                    }
                    println!(
                        "Deleted {} batch(es): {} files, {}; kept {} younger batch(es).",
                        outcome.deleted.len(),
                        outcome.files,
                        regsweep::report::human_bytes(outcome.bytes),
                        outcome.kept.len()
                    );
                }
                report_problems(&outcome.problems)
            }),
        ),
        Command::Trash(TrashCommand::List(args)) => {
            report_result(trash::scan(&args.dir).map(|scan| {
                let mut problems = scan.unreadable;
                for b in scan.batches {
                    println!(
                        "{}\t{}\t{} moves\t{}",
                        b.header.batch,
                        b.header.started,
                        b.moves(),
                        b.header.storage_root.display()
                    );
                    problems.extend(b.problem_reports());
                }
                report_problems(&problems)
            }))
        }
    };
    ExitCode::from(status as u8)
}

/// An error before anything changed: exit 2.
fn report_result(result: regsweep::Result<ExitStatus>) -> ExitStatus {
    result.unwrap_or_else(|e| {
        eprintln!("regsweep: error: {e}");
        ExitStatus::Failed
    })
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

fn print_json(value: &impl serde::Serialize) {
    let mut stdout = buffered_stdout();
    let _ = serde_json::to_writer(&mut stdout, value);
    let _ = writeln!(stdout);
    let _ = stdout.flush();
}

/// Stdout with a large buffer: a JSON report of a big sweep lists hundreds
/// of thousands of candidates, and the standard line buffer would make one
/// `write` per kilobyte.
fn buffered_stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(1 << 16, io::stdout().lock())
}

/// The first Ctrl-C asks the sweep to stop between two deletions; a second
/// one exits at once (removing this run's lock file).
fn handle_ctrl_c(lock_files: Vec<std::path::PathBuf>) {
    let _ = ctrlc::set_handler(move || {
        if QUIT.swap(true, Ordering::SeqCst) {
            for path in &lock_files {
                let _ = std::fs::remove_file(path);
            }
            eprintln!("regsweep: interrupted again; exiting now");
            std::process::exit(130);
        }
        eprintln!(
            "regsweep: interrupted; stopping between two deletions (or moves) (Ctrl-C again to exit now)"
        );
    });
}

fn gc(args: GcArgs) -> ExitStatus {
    let metrics = args.metrics_file();
    match run_gc(args) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            eprintln!("regsweep: nothing was deleted");
            write_metrics(metrics.as_ref(), None, ExitStatus::Failed)
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
    let run = regsweep::metrics::RunFacts {
        target: &metrics.target,
        finished: std::time::SystemTime::now(),
        duration: metrics.started.elapsed(),
        dry_run: metrics.dry_run,
    };
    let text = regsweep::metrics::render(&run, report);
    match regsweep::metrics::write_atomically(&metrics.path, &text) {
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

fn run_gc(args: GcArgs) -> regsweep::Result<ExitStatus> {
    let (config, output) = args.into_config()?;
    let root = config.layout.root().to_path_buf();
    // A dry run changes nothing and may run on read-only storage: it takes
    // no lock, but says when another run holds one.
    let mut lock_warning = None;
    let mut locks = Vec::new();
    let mut trash = None;
    if output.dry_run {
        lock_warning = lock::held_warning(&root, "dry run");
    } else {
        locks.push(Lock::acquire(&root, "gc")?);
        if let Some(dir) = &output.trash {
            let prepared = Trash::prepare(dir, &config.layout)?;
            if prepared.dir() != root {
                locks.push(Lock::acquire(prepared.dir(), "gc")?);
            }
            trash = Some(prepared);
        }
    }
    // The lock file was written just now, on the storage's own clock:
    // anything modified since, the plan has not seen.
    let index_began = locks
        .first()
        .and_then(|l| std::fs::symlink_metadata(l.path()).ok())
        .and_then(|m| m.modified().ok())
        .unwrap_or_else(|| std::time::SystemTime::now() - std::time::Duration::from_secs(1));
    if !output.dry_run {
        // A dry run changes nothing: Ctrl-C just ends it.
        handle_ctrl_c(locks.iter().map(|l| l.path().to_path_buf()).collect());
    }
    let collector = Collector::new(config)?;
    let mut planned = collector.plan()?;
    collector.check_uploads(&mut planned, output.dry_run, output.force)?;
    planned.warnings.extend(lock_warning);

    let mut batch = None;
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
            let _ = preview.write_summary(&mut stderr, 10);
            let question = if trash.is_some() {
                "Move these to the trash now? [y/N] "
            } else {
                "Delete these now? [y/N] "
            };
            if !ask(&mut stderr, question) {
                let _ = writeln!(stderr, "Nothing deleted.");
                return Ok(ExitStatus::Success);
            }
        }
        batch = match &trash {
            Some(t) if !planned.plan.candidates.is_empty() => Some(t.begin(&root)?),
            _ => None,
        };
        let disposal = batch.as_ref().map_or(Disposal::Delete, Disposal::Trash);
        let clean_up = trash.is_none() || batch.is_some();
        Some(collector.sweep(&planned, disposal, clean_up, index_began))
    };

    let trash_record = batch
        .as_ref()
        .zip(trash.as_ref())
        .map(|(b, t)| TrashRecord {
            dir: t.dir().to_path_buf(),
            batch: b.name().to_owned(),
            journal: b.journal_path(),
        });
    let report = collector.report(&planned, outcome, trash_record);
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
        if report.deleted == regsweep::plan::Reclaim::default() {
            eprintln!("regsweep: nothing was deleted");
        } else {
            eprintln!(
                "regsweep: the sweep stopped there; what it deleted before leaves a consistent registry"
            );
        }
    } else if report.interrupted {
        eprintln!("regsweep: interrupted: the sweep stopped before the end of its plan");
    }
    let mut stdout = buffered_stdout();
    let written = if output.json {
        report.write_json(&mut stdout)
    } else if output.quiet {
        Ok(())
    } else {
        (if output.verbose {
            report.write_candidates(&mut stdout)
        } else {
            Ok(())
        })
        .and_then(|()| match report.policy {
            // A dry run lists every tag the policy looked at; a sweep, the
            // deleted ones (all with -v).
            Some(policy) => policy
                .write_human(
                    &mut stdout,
                    output.dry_run,
                    output.dry_run || output.verbose,
                )
                .and_then(|()| writeln!(stdout)),
            None => Ok(()),
        })
        .and_then(|()| report.write_summary(&mut stdout, 10))
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("regsweep: cannot write the report: {e}");
        }
    }
    drop(locks);
    Ok(write_metrics(
        output.metrics.as_ref(),
        Some(&report),
        report.exit_code,
    ))
}

/// Whether the registry's configuration keeps it from taking pushes: said
/// before the prompt, where a push would race the sweep.
fn readonly_notice(config: &regsweep::target::RegistryConfig) -> String {
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
    handle_ctrl_c(Vec::new());
    let outcome = match trash::restore(&args.dir, args.batch.as_deref(), Some(&QUIT)) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            eprintln!("regsweep: nothing was restored");
            return ExitStatus::Failed;
        }
    };
    for (path, message) in &outcome.failures {
        eprintln!("regsweep: could not restore {}: {message}", path.display());
    }
    if args.json {
        print_json(&outcome);
    } else {
        println!(
            "Restored {} path(s) and {} directories from {} batch(es){}.",
            outcome.restored,
            outcome.directories,
            outcome.batches.len(),
            if outcome.batches.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcome.batches.join(", "))
            }
        );
        if outcome.restored > 0 {
            println!("Restart the registry so that it serves what came back.");
        }
        if outcome.skipped > 0 {
            println!(
                "{} journaled move(s) had nothing to restore (an interrupted run had not moved them).",
                outcome.skipped
            );
        }
    }
    if outcome.interrupted {
        eprintln!("regsweep: interrupted: run `regsweep restore` again to finish");
    }
    if outcome.failures.is_empty() && !outcome.interrupted {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    }
}

fn print_warnings(report: &Report) {
    for warning in &report.warnings {
        eprintln!("regsweep: warning: {warning}");
    }
}

fn ask(out: &mut impl Write, question: &str) -> bool {
    let _ = write!(out, "{question}");
    let _ = out.flush();
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

fn du(args: DuArgs) -> ExitStatus {
    let run = || -> regsweep::Result<ExitStatus> {
        let layout = regsweep::target::resolve(
            &args.target,
            &regsweep::target::Environment::from_process(),
        )?;
        let options = regsweep::du::DuOptions {
            delete_untagged: args.delete_untagged,
            top: args.top.or((!args.json).then_some(20)),
            price_per_gib_month: args.price_per_gib_month,
        };
        let progress = regsweep::progress::Progress::new(io::stderr().is_terminal());
        let usage =
            regsweep::disk_usage(&layout, options, args.threads.map(usize::from), progress)?;
        for warning in &usage.warnings {
            eprintln!("regsweep: warning: {warning}");
        }
        let mut stdout = buffered_stdout();
        let written = if args.json {
            usage.write_json(&mut stdout)
        } else {
            usage.write_table(&mut stdout)
        };
        if let Err(e) = written.and_then(|()| stdout.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("regsweep: cannot write the report: {e}");
            }
        }
        Ok(usage.exit_code)
    };
    match run() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            ExitStatus::Failed
        }
    }
}

fn verify(args: VerifyArgs) -> ExitStatus {
    let verified = args.into_config().and_then(|(config, output)| {
        regsweep::verify::verify(&config).map(|verification| (verification, output))
    });
    let (verification, output) = match verified {
        Ok(done) => done,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            return ExitStatus::Failed;
        }
    };
    let _ = verification.write_problems(&mut io::stderr().lock());
    let mut stdout = buffered_stdout();
    let written = if output.json {
        verification.write_json(&mut stdout)
    } else if output.quiet {
        Ok(())
    } else {
        verification.write_summary(&mut stdout)
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("regsweep: cannot write the report: {e}");
        }
    }
    verification.exit_code
}
