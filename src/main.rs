//! `regsweep`: parse, run, map the outcome to the exit code.

mod cli;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, GcArgs, VerifyArgs};
use regsweep::{Collector, ExitStatus, Report};

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let status = match command {
        Command::Gc(args) => gc(args),
        Command::Verify(args) => verify(args),
    };
    ExitCode::from(status as u8)
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
    let collector = Collector::new(config)?;
    let planned = collector.plan()?;

    let outcome = if output.dry_run {
        None
    } else if planned.plan.candidates.is_empty() {
        Some(collector.sweep(&planned))
    } else if output.confirm {
        let preview = collector.report(&planned, None);
        print_warnings(&preview);
        let mut stderr = io::stderr().lock();
        let _ = preview.write_summary(&mut stderr, 10);
        if !ask(&mut stderr, "Delete these now? [y/N] ") {
            let _ = writeln!(stderr, "Nothing deleted.");
            return Ok(ExitStatus::Success);
        }
        Some(collector.sweep(&planned))
    } else {
        Some(collector.sweep(&planned))
    };

    let report = collector.report(&planned, outcome);
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
    let mut stdout = io::stdout().lock();
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
        .and_then(|()| report.write_summary(&mut stdout, 10))
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("regsweep: cannot write the report: {e}");
        }
    }
    Ok(report.exit_code)
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

fn verify(args: VerifyArgs) -> ExitStatus {
    eprintln!(
        "regsweep: verify is not available yet ({})",
        args.target.display()
    );
    ExitStatus::Failed
}
