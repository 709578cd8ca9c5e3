//! The command line, turned once into the library's plain configuration.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use regsweep::GcConfig;
use regsweep::progress::Progress;
use regsweep::sweep::SweepOptions;
use regsweep::target::{self, Environment};

/// Test hook: stop the sweep after this many deletions, as a crash would.
pub const STOP_AFTER_ENV: &str = "REGSWEEP_FAULT_STOP_AFTER";

#[derive(Debug, Parser)]
#[command(
    name = "regsweep",
    version,
    about = "Reclaim disk space from a container registry's filesystem storage",
    long_about = "Offline garbage collector for the storage of a CNCF distribution registry \
                  (registry:2, v2.x and v3.x, filesystem driver). Run it while the registry is \
                  stopped or read-only (storage.maintenance.readonly.enabled: true), then restart \
                  the registry."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Delete unreferenced blobs, manifests and links (like `registry garbage-collect`)
    Gc(GcArgs),
    /// Report broken images, links that disagree with their paths, and (with --digests) corrupt blobs
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 nothing broken; 1 something is broken; 2 refused or failed.")]
pub struct VerifyArgs {
    /// Storage root (the directory holding docker/registry/v2) or the registry's config.yml
    pub target: PathBuf,

    /// Also check that every blob's sha256 matches its name (reads all blob data)
    #[arg(long)]
    pub digests: bool,

    /// Print one JSON report on stdout instead of the summary
    #[arg(long)]
    pub json: bool,

    /// Print only problems
    #[arg(short, long)]
    pub quiet: bool,

    /// Worker threads [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success; 1 finished with warnings (something was kept \
                        because it could not be read, or could not be deleted); 2 refused or \
                        failed, nothing deleted."
)]
pub struct GcArgs {
    /// Storage root (the directory holding docker/registry/v2) or the registry's config.yml
    pub target: PathBuf,

    /// Index and mark, print what would be deleted and the bytes, delete nothing
    #[arg(short = 'd', long)]
    pub dry_run: bool,

    /// Also delete manifests no tag reaches (index children and referrers of live images stay)
    #[arg(short = 'm', long)]
    pub delete_untagged: bool,

    /// Print one JSON report on stdout instead of the summary
    #[arg(long)]
    pub json: bool,

    /// Also open every _layers link and report those that disagree with their path (slower; never changes what is deleted)
    #[arg(long)]
    pub check_links: bool,

    /// List every candidate: kind, repository, tag, digest, bytes, reason
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Print only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,

    /// Do not ask before deleting (a run without a terminal never asks)
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Worker threads [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// What `main` needs besides the library's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub dry_run: bool,
    pub json: bool,
    pub verbose: bool,
    pub quiet: bool,
    /// Ask before deleting.
    pub confirm: bool,
}

impl GcArgs {
    /// Resolves the target and builds the configuration.
    pub fn into_config(self) -> regsweep::Result<(GcConfig, Output)> {
        let layout = target::resolve(&self.target, &Environment::from_process())?;
        let stderr_tty = std::io::stderr().is_terminal();
        let output = Output {
            dry_run: self.dry_run,
            json: self.json,
            verbose: self.verbose,
            quiet: self.quiet,
            confirm: !self.dry_run && !self.yes && stderr_tty && std::io::stdin().is_terminal(),
        };
        let stop_after = std::env::var(STOP_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        let config = GcConfig {
            layout,
            delete_untagged: self.delete_untagged,
            check_layer_links: self.check_links,
            threads: self.threads.map(usize::from),
            progress: Progress::new(stderr_tty && !self.quiet),
            sweep: SweepOptions { stop_after },
        };
        Ok((config, output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gc_flags_parse_like_upstream_garbage_collect() {
        let cli = Cli::try_parse_from(["regsweep", "gc", "-d", "-m", "/srv/reg"]).unwrap();
        let Command::Gc(args) = cli.command else {
            panic!("expected the gc subcommand");
        };
        assert!(args.dry_run && args.delete_untagged && !args.yes);
        assert_eq!(args.target, PathBuf::from("/srv/reg"));
    }

    #[test]
    fn verbose_and_quiet_conflict_and_threads_must_be_positive() {
        assert!(Cli::try_parse_from(["regsweep", "gc", "-v", "-q", "x"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "gc", "--threads", "0", "x"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "gc", "--threads", "3", "x"]).is_ok());
        assert!(Cli::try_parse_from(["regsweep", "gc"]).is_err());
    }
}
