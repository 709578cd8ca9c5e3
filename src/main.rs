//! `regsweep`: parse, run, map the outcome to the exit code.

mod cli;

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;

use cli::{
    Cli, Command, DuArgs, GcArgs, QUIT, RestoreArgs, TrashCommand, TrashEmptyArgs, VerifyArgs,
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
        Command::Restore(args) => restore(args),
        Command::Trash(TrashCommand::Empty(args)) => trash_empty(args),
        Command::Trash(TrashCommand::List(args)) => {
            report_result(trash::list(&args.dir).map(|listing| {
                let mut stdout = buffered_stdout();
                let _ = if args.json {
                    listing.write_json(&mut stdout)
                } else {
                    listing.write_table(&mut stdout)
                }
                .and_then(|()| stdout.flush());
                report_problems(&listing.problems)
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
    match run_gc(args) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            eprintln!("regsweep: nothing was deleted");
            ExitStatus::Failed
        }
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
            let _ = preview.write_preview(&mut stderr, 10, trash.is_some());
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
        report.write_human(&mut stdout, output.verbose, 10)
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("regsweep: cannot write the report: {e}");
        }
    }
    drop(locks);
    Ok(report.exit_code)
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
        let mut stdout = buffered_stdout();
        let _ = outcome
            .write_summary(&mut stdout)
            .and_then(|()| stdout.flush());
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

/// `trash empty`: in a terminal, shows the batches and asks first (unless
/// `--yes`); without one, as in cron, it goes on as `gc` does.
fn trash_empty(args: TrashEmptyArgs) -> ExitStatus {
    let mut plan =
        match trash::plan_empty(&args.dir, args.older_than.unwrap_or_default(), args.dry_run) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("regsweep: error: {e}");
                return ExitStatus::Failed;
            }
        };
    let outcome = if args.dry_run {
        plan.dry_run()
    } else {
        let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
        if interactive && !args.yes && !plan.batches.is_empty() {
            plan.measure();
            let mut stderr = io::stderr().lock();
            let _ = plan.write_plan(&mut stderr);
            if !ask(&mut stderr, "Delete these batches for good? [y/N] ") {
                let _ = writeln!(stderr, "Nothing deleted.");
                return ExitStatus::Success;
            }
        }
        plan.run()
    };
    if args.json {
        print_json(&outcome);
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
