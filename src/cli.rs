//! The command line, turned once into the library's plain configuration.

use std::io::IsTerminal;
use std::path::PathBuf;

use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};

use regsweep::duration::Age;
use regsweep::gc::GcConfig;
use regsweep::interrupt::Interrupt;
use regsweep::progress::Progress;
use regsweep::report::BlobCache;
use regsweep::retention::policy::PolicyFlags;
use regsweep::retention::protect::ProtectList;
use regsweep::retention::pulls::{ClientPattern, ForcedFormat, PullLogConfig};
use regsweep::storage::SweepOptions;
use regsweep::storage::target::{self, Environment};
use regsweep::verify::VerifyConfig;

/// Test hook: stop the sweep after this many deletions, as a crash would.
pub const STOP_AFTER_ENV: &str = "REGSWEEP_FAULT_STOP_AFTER";

/// Set by the first SIGINT, SIGTERM or SIGHUP: indexing and planning give
/// up, the prompt returns, the sweep stops between two deletions.
pub static QUIT: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Parser)]
#[command(
    name = "regsweep",
    args_override_self = true,
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

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Delete unreferenced blobs, manifests and links (like `registry garbage-collect`)
    Gc(GcArgs),
    /// Move back what `gc --trash DIR` moved into DIR (newest batch first)
    Restore(RestoreArgs),
    /// Manage a trash directory written by `gc --trash`
    #[command(subcommand)]
    Trash(TrashCommand),
    /// Report broken images, links that disagree with their paths, and (with --digests) corrupt blobs
    Verify(VerifyArgs),
    /// Show where the bytes are: per repository, referenced, exclusive, shared and reclaimable bytes
    Du(DuArgs),
    /// Print a shell completion script on stdout (e.g. `regsweep completions bash > /etc/bash_completion.d/regsweep`)
    Completions(CompletionsArgs),
    /// Print the manual page, regsweep(1), as roff on stdout; with --dir, write one page per subcommand there
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write regsweep.1, regsweep-gc.1, ... into DIR (e.g. /usr/local/share/man/man1) instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success; 1 finished with warnings (damage found); 2 refused or failed."
)]
pub struct DuArgs {
    /// Storage root (the directory holding docker/registry/v2) or the registry's config.yml
    pub target: PathBuf,

    /// Show only the N repositories with the most referenced bytes [default: 20; all with --json]
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Print one JSON document on stdout instead of the table
    #[arg(long)]
    pub json: bool,

    /// Add monthly costs at this price per GiB-month (in any currency)
    #[arg(long, value_name = "X", value_parser = parse_price)]
    pub price_per_gib_month: Option<f64>,

    /// Count manifests no tag reaches as reclaimable, as `gc -m` would
    #[arg(short = 'm', long)]
    pub delete_untagged: bool,

    /// Worker threads, 1 to 1024 [default: one per CPU, at least 32: reading a tree that is not cached waits on the disk, and more requests in flight keep it busy]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<u16>,

    /// The registry's logs, as for gc --pull-log: a file (plain or gzip), a directory (its files), a glob, or - for stdin; repeatable
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Pull logs",
        requires = "pulled_within"
    )]
    pub pull_log: Vec<PathBuf>,

    /// Per repository, its last pull and the bytes of its images not pulled (nor their tag pushed) within DURATION, as the --pull-log files show; refused (exit 2) when they do not cover that long
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Pull logs",
        requires = "pull_log"
    )]
    pub pulled_within: Option<Age>,

    #[command(flatten)]
    pub pull_log_reading: PullLogReading,

    /// After the table, also the pull logs' lines not read and each repository's most frequent user agents
    #[arg(short, long)]
    pub verbose: bool,
}

/// How the pull logs are read, for `gc` and `du` alike.
#[derive(Debug, Args)]
pub struct PullLogReading {
    /// Take the --pull-log files as complete although they do not reach over the whole window: only the pulls they show count
    #[arg(long, help_heading = "Pull logs", requires = "pull_log")]
    pub pull_log_assume_complete: bool,

    /// Pulls whose user agent matches REGEX (a scanner, a mirror, a backup) do not count; repeatable
    #[arg(long, value_name = "REGEX", help_heading = "Pull logs", requires = "pull_log", value_parser = user_agent_pattern)]
    pub pull_ignore_user_agent: Vec<regex::Regex>,

    /// Pulls from ADDRESS, or from a network ADDRESS/PREFIX (a scanner, a mirror), do not count; repeatable
    #[arg(long, value_name = "ADDRESS[/PREFIX]", help_heading = "Pull logs", requires = "pull_log", value_parser = ClientPattern::parse)]
    pub pull_ignore_client: Vec<ClientPattern>,

    /// Read every --pull-log input as this one format, rejecting lines of any other shape [default: auto, each line by its shape]
    #[arg(long, value_name = "FORMAT", help_heading = "Pull logs", requires = "pull_log", value_parser = clap::builder::PossibleValuesParser::new(ForcedFormat::names()))]
    pub pull_log_format: Option<String>,
}

impl PullLogReading {
    /// What reads `inputs`, and `--protect-pulled-within` for gc.
    fn config(&self, inputs: Vec<PathBuf>, protect_within: Option<Age>) -> PullLogConfig {
        PullLogConfig {
            inputs,
            assume_complete: self.pull_log_assume_complete,
            protect_within,
            ignore_user_agents: self.pull_ignore_user_agent.clone(),
            ignore_clients: self.pull_ignore_client.clone(),
            // clap let through only the names from_name takes.
            format: self
                .pull_log_format
                .as_deref()
                .and_then(|name| ForcedFormat::from_name(name).ok().flatten()),
        }
    }
}

/// `--pull-ignore-user-agent`: a regular expression, searched anywhere in
/// the user agent.
fn user_agent_pattern(text: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| format!("not a regular expression: {e}"))
}

impl DuArgs {
    /// The pull logs and the window, when asked.
    pub fn pulls(&self) -> Option<(PullLogConfig, Age)> {
        let within = self.pulled_within?;
        Some((
            self.pull_log_reading.config(self.pull_log.clone(), None),
            within,
        ))
    }
}

/// The most threads `--threads` and `--delete-threads` start: more only
/// contend for the same disk and CPUs (and each costs a stack).
pub const MAX_THREADS: u16 = 1024;

fn parse_threads(text: &str) -> Result<u16, String> {
    match text.parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_THREADS)).contains(&n) => Ok(n as u16),
        Ok(_) => Err(format!("between 1 and {MAX_THREADS} threads")),
        Err(_) => Err(format!(
            "not a number (between 1 and {MAX_THREADS} threads)"
        )),
    }
}

fn parse_price(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a non-negative number")),
    }
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

    /// Worker threads, 1 to 1024 [default: one per CPU, at least 32: reading a tree that is not cached waits on the disk, and more requests in flight keep it busy]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<u16>,
}

/// What `main` needs of a verify run besides the library's configuration.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOutput {
    pub json: bool,
    pub quiet: bool,
}

impl VerifyArgs {
    /// Resolves the target and builds the configuration.
    pub fn into_config(self) -> regsweep::Result<(VerifyConfig, VerifyOutput)> {
        let storage = target::resolve_target(&self.target, &Environment::from_process())?.storage;
        let config = VerifyConfig {
            storage,
            digests: self.digests,
            threads: self.threads.map(usize::from),
            progress: std::io::stderr().is_terminal() && !self.quiet,
        };
        let output = VerifyOutput {
            json: self.json,
            quiet: self.quiet,
        };
        Ok((config, output))
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success; 1 finished with warnings (something was kept \
                  because it could not be read, could not be deleted, or a dry run found \
                  uploads in progress) or interrupted (SIGINT, SIGTERM or SIGHUP: while \
                  indexing, planning or at the prompt nothing is deleted; the sweep stops \
                  between two deletions and reports what it did; a second signal exits at \
                  once); 2 refused or failed, nothing deleted (also: uploads in progress \
                  without --force, the lock held, a keep pattern that matches no tag whole, \
                  pull logs that do not cover the pull window), or \
                  the registry took writes while the sweep ran and it stopped there (what it \
                  deleted before leaves a consistent registry).\n\n\
                  With --json, stdout is one JSON object on every exit, with `exit_code`; a \
                  refusal or an interruption before the plan has `error` and `kind` instead of \
                  the report's figures."
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

    /// Print one JSON report on stdout instead of the summary: totals, per repository, warnings, failures (with -v also every candidate and kept item)
    #[arg(long)]
    pub json: bool,

    /// Also open every _layers link and report those that disagree with their path (slower; never changes what is deleted)
    #[arg(long)]
    pub check_links: bool,

    /// List every candidate: kind, repository, tag, digest, bytes, reason (with --json: `candidates` and `kept` in the report)
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Print only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,

    /// Do not ask before deleting (a run without a terminal never asks)
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Worker threads, 1 to 1024 [default: one per CPU, at least 32: reading a tree that is not cached waits on the disk, and more requests in flight keep it busy]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<u16>,

    /// Threads that delete, 1 to 1024: removing files waits on the disk (discards, the journal) more than on the CPU [default: 64]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub delete_threads: Option<u16>,

    /// Keep blobs, links and manifest revisions modified more recently than this (a recent revision keeps what it references); 0 to collect everything now
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub min_age: Age,

    /// Move what would be deleted into DIR (same filesystem, outside docker/registry/v2; on a bucket, s3://BUCKET/PREFIX in the same bucket) instead; `regsweep restore DIR` undoes it
    #[arg(long, value_name = "DIR")]
    pub trash: Option<PathBuf>,

    /// Sweep even if uploads are in progress (the registry is taking pushes)
    #[arg(long)]
    pub force: bool,

    /// On object storage that does not support conditional writes: run without the lock that keeps two runs apart (make sure no other run is going)
    #[arg(long)]
    pub force_unlocked: bool,

    /// Also remove `_uploads/<uuid>` directories untouched for this long (never within --min-age)
    #[arg(long, value_name = "DURATION")]
    pub purge_uploads_older_than: Option<Age>,

    /// Also remove repositories left with no tags and no manifests (their _-metadata only, if nested repositories are below)
    #[arg(long)]
    pub remove_empty_repos: bool,

    /// Also list every link and blob directory for stray *.tmp files of interrupted writes (one more directory read per file: slower)
    #[arg(long)]
    pub scan_temporary_files: bool,

    /// Write the run's outcome to FILE for node_exporter's textfile collector (Prometheus text format; replaced atomically, also when the run is refused); a failure to write it makes the exit code at least 1
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Retention: keep the N most recently pushed tags of each repository (among --delete-tags matches, if given); delete the others
    #[arg(long, value_name = "N", help_heading = "Retention policy")]
    pub keep_last: Option<usize>,

    /// Retention: never delete tags matching REGEX (matched against the whole tag)
    #[arg(long, value_name = "REGEX", help_heading = "Retention policy")]
    pub keep_tags: Option<String>,

    /// Retention: only tags matching REGEX (the whole tag) may be deleted
    #[arg(long, value_name = "REGEX", help_heading = "Retention policy")]
    pub delete_tags: Option<String>,

    /// Retention: only tags pushed longer ago than DURATION (90d, 4w, 12h) may be deleted
    #[arg(long, value_name = "DURATION", help_heading = "Retention policy")]
    pub older_than: Option<Age>,

    /// Retention: apply the policy only to repositories matching GLOB (`*` within a path component, `**` across); repeatable
    #[arg(long, value_name = "GLOB", help_heading = "Retention policy")]
    pub repos: Vec<String>,

    /// Retention: ordered rules from a JSON file (see README); not with --keep-last, --keep-tags, --delete-tags, --older-than
    #[arg(long, value_name = "FILE", help_heading = "Retention policy",
          conflicts_with_all = ["keep_last", "keep_tags", "delete_tags", "older_than"])]
    pub policy: Option<PathBuf>,

    /// Retention: let the policy delete every tag of a repository (refused otherwise, keeping them all)
    #[arg(long, help_heading = "Retention policy")]
    pub allow_empty_repos: bool,

    /// Images in use (repo:tag, repo@sha256:..., one per line or kubectl's jsonpath output): never deleted, nor what they reach
    #[arg(long, value_name = "FILE", help_heading = "Retention policy")]
    pub protect: Option<PathBuf>,

    /// Retention: keep every tag the policy would delete that was pulled (by name, or its image by any reference; HEAD counts) or pushed within DURATION, as the --pull-log files show; refused (exit 2) when they do not cover that long
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Retention policy",
        requires = "pull_log"
    )]
    pub keep_pulled_within: Option<Age>,

    /// The registry's logs, for the pull rules: its app log (text, terminal or JSON formatter), access log or notification events, nginx/Apache/Traefik combined lines, or Caddy/Traefik JSON access logs; a file (plain or gzip), a directory (its files), a glob, or - for stdin; repeatable
    #[arg(long, value_name = "PATH", help_heading = "Retention policy")]
    pub pull_log: Vec<PathBuf>,

    /// Keep every manifest pulled by digest within DURATION, as the --pull-log files show, and what it references, even with -m (deployments pinned by digest); refused (exit 2) when the logs do not cover that long
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Retention policy",
        requires = "pull_log"
    )]
    pub protect_pulled_within: Option<Age>,

    #[command(flatten)]
    pub pull_log_reading: PullLogReading,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 everything restored; 1 something could not be moved back; 2 refused \
                  (something exists again in the registry, a lock is held), nothing restored."
)]
pub struct RestoreArgs {
    /// The trash given to `gc --trash`: a directory, or s3://BUCKET/PREFIX
    pub dir: PathBuf,

    /// Restore only this batch (a directory name in DIR, `<UTC time>-<pid>`)
    #[arg(long, value_name = "NAME")]
    pub batch: Option<String>,

    /// Print one JSON report on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// Delete quarantined batches for good (never following symbolic links)
    Empty(TrashEmptyArgs),
    /// List the batches of a trash directory, newest first
    List(TrashListArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "In a terminal, lists the batches and asks before deleting them unless --yes; \
                  without a terminal (cron, scripts) it never asks. \
                  Exit codes: 0 success (or declined); 1 a batch was reported and kept; 2 refused \
                  or failed, nothing deleted."
)]
pub struct TrashEmptyArgs {
    /// The trash given to `gc --trash`: a directory, or s3://BUCKET/PREFIX
    pub dir: PathBuf,

    /// Only batches started longer ago than this (e.g. 30d) [default: all]
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<Age>,

    /// List the batches that would be deleted and their size; delete nothing
    #[arg(short = 'd', long)]
    pub dry_run: bool,

    /// Do not ask before deleting (a run without a terminal never asks)
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Print one JSON report on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success; 1 a journal or batch was reported; 2 refused or failed."
)]
pub struct TrashListArgs {
    /// The trash given to `gc --trash`: a directory, or s3://BUCKET/PREFIX
    pub dir: PathBuf,

    /// Print one JSON document on stdout instead of the table
    #[arg(long)]
    pub json: bool,
}

/// What `main` needs besides the library's configuration.
#[derive(Debug, Clone)]
pub struct Output {
    pub dry_run: bool,
    pub json: bool,
    pub verbose: bool,
    pub quiet: bool,
    /// Ask before deleting.
    pub confirm: bool,
    /// Move into this trash directory instead of deleting.
    pub trash: Option<PathBuf>,
    /// Sweep although uploads are in progress.
    pub force: bool,
    /// Run without a lock where the object store cannot give one.
    pub force_unlocked: bool,
    /// The registry's configuration, when TARGET was its `config.yml`.
    pub registry_config: Option<target::RegistryConfig>,
    /// `--metrics-file`.
    pub metrics: Option<MetricsFile>,
}

/// Where `--metrics-file` goes, and what the metrics need besides the report.
#[derive(Debug, Clone)]
pub struct MetricsFile {
    pub path: PathBuf,
    /// TARGET as given: the `target` label.
    pub target: PathBuf,
    pub dry_run: bool,
    pub started: std::time::Instant,
}

impl GcArgs {
    /// `--metrics-file`, with the run starting now.
    pub fn metrics_file(&self) -> Option<MetricsFile> {
        self.metrics_file.as_ref().map(|path| MetricsFile {
            path: path.clone(),
            target: self.target.clone(),
            dry_run: self.dry_run,
            started: std::time::Instant::now(),
        })
    }

    /// Resolves the target and builds the configuration.
    pub fn into_config(self) -> regsweep::Result<(GcConfig, Output)> {
        let metrics = self.metrics_file();
        let target::Target {
            storage,
            config: registry_config,
        } = target::resolve_target(&self.target, &Environment::from_process())?;
        let blob_cache = registry_config.as_ref().map_or(BlobCache::Unknown, |c| {
            BlobCache::from_config(c.blob_descriptor_cache.as_deref())
        });
        let stderr_tty = std::io::stderr().is_terminal();
        let output = Output {
            dry_run: self.dry_run,
            json: self.json,
            verbose: self.verbose,
            quiet: self.quiet,
            confirm: !self.dry_run && !self.yes && stderr_tty && std::io::stdin().is_terminal(),
            trash: self.trash,
            force: self.force,
            force_unlocked: self.force_unlocked,
            registry_config,
            metrics,
        };
        let stop_after = std::env::var(STOP_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        let policy = PolicyFlags {
            keep_last: self.keep_last,
            keep_tags: self.keep_tags,
            delete_tags: self.delete_tags,
            older_than: self.older_than,
            repos: self.repos,
            policy_file: self.policy,
            allow_empty_repos: self.allow_empty_repos,
            keep_pulled_within: self.keep_pulled_within,
        }
        .into_policy()
        .map_err(regsweep::Error::Policy)?;
        let protect = self
            .protect
            .as_deref()
            .map(ProtectList::from_file)
            .transpose()
            .map_err(regsweep::Error::Protect)?;
        let config = GcConfig {
            storage,
            delete_untagged: self.delete_untagged,
            check_layer_links: self.check_links,
            threads: self.threads.map(usize::from),
            delete_threads: self.delete_threads.map(usize::from),
            progress: Progress::new(stderr_tty && !self.quiet),
            sweep: SweepOptions {
                stop_after,
                ..SweepOptions::default()
            },
            // Set by main, with its observer.
            interrupt: Interrupt::new(&QUIT),
            min_age: self.min_age,
            purge_uploads_older_than: self.purge_uploads_older_than,
            remove_empty_repos: self.remove_empty_repos,
            scan_temporary_files: self.scan_temporary_files,
            policy,
            protect,
            pull_logs: (!self.pull_log.is_empty()).then(|| {
                self.pull_log_reading
                    .config(self.pull_log, self.protect_pulled_within)
            }),
            blob_cache,
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
    fn pull_rules_need_pull_logs_and_pull_logs_repeat() {
        for needs_logs in [
            &["--keep-last", "1", "--keep-pulled-within", "30d"][..],
            &["--pull-log-assume-complete"],
        ] {
            let argv = [&["regsweep", "gc"], needs_logs, &["x"]].concat();
            let err = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(err.contains("--pull-log <PATH>"), "{err}");
        }
        let cli = Cli::try_parse_from([
            "regsweep",
            "gc",
            "--keep-last",
            "1",
            "--keep-pulled-within",
            "30d",
            "--pull-log",
            "app.log",
            "--pull-log",
            "-",
            "x",
        ])
        .unwrap();
        let Command::Gc(args) = cli.command else {
            panic!("expected the gc subcommand");
        };
        assert_eq!(
            args.pull_log,
            [PathBuf::from("app.log"), PathBuf::from("-")]
        );
        assert_eq!(args.keep_pulled_within.map(Age::as_secs), Some(30 * 86_400));
        assert!(!args.pull_log_reading.pull_log_assume_complete);
    }

    #[test]
    fn verbose_and_quiet_conflict_and_threads_must_be_positive() {
        assert!(Cli::try_parse_from(["regsweep", "gc", "-v", "-q", "x"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "gc", "--threads", "0", "x"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "gc", "--threads", "3", "x"]).is_ok());
        assert!(Cli::try_parse_from(["regsweep", "gc", "--threads", "1024", "x"]).is_ok());
        for (flag, many) in [
            ("--threads", "1025"),
            ("--threads", "65535"),
            ("--delete-threads", "65535"),
            ("--delete-threads", "99999999999999999999"),
        ] {
            for command in ["gc", "du", "verify"] {
                if command != "gc" && flag == "--delete-threads" {
                    continue;
                }
                let err = Cli::try_parse_from(["regsweep", command, flag, many, "x"]).unwrap_err();
                assert!(err.to_string().contains("between 1 and 1024"), "{err}");
            }
        }
        assert!(Cli::try_parse_from(["regsweep", "gc", "--delete-threads", "0", "x"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "gc"]).is_err());
    }

    #[test]
    fn min_age_defaults_to_an_hour_and_a_later_value_wins() {
        let gc = |args: &[&str]| -> GcArgs {
            let mut argv = vec!["regsweep", "gc"];
            argv.extend(args);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Gc(args) => args,
                _ => panic!("expected the gc subcommand"),
            }
        };
        assert_eq!(gc(&["x"]).min_age.as_secs(), 3600);
        assert!(gc(&["--min-age", "0", "x"]).min_age.is_zero());
        let later = gc(&["--min-age", "0", "--min-age", "2d", "x"]);
        assert_eq!(
            later.min_age.as_secs(),
            2 * 86_400,
            "a harness default is overridable"
        );
        assert!(Cli::try_parse_from(["regsweep", "gc", "--min-age", "1y", "x"]).is_err());
        for too_long in ["200000000000000d", "36501d"] {
            for flag in ["--min-age", "--older-than", "--purge-uploads-older-than"] {
                assert!(
                    Cli::try_parse_from(["regsweep", "gc", flag, too_long, "x"]).is_err(),
                    "{flag} {too_long}"
                );
            }
            assert!(
                Cli::try_parse_from(["regsweep", "trash", "empty", "--older-than", too_long, "t"])
                    .is_err()
            );
        }
        let all = gc(&[
            "--trash",
            "/srv/trash",
            "--force",
            "--purge-uploads-older-than",
            "7d",
            "--remove-empty-repos",
            "x",
        ]);
        assert_eq!(all.trash, Some(PathBuf::from("/srv/trash")));
        assert!(all.force && all.remove_empty_repos);
        assert_eq!(
            all.purge_uploads_older_than.map(Age::as_secs),
            Some(7 * 86_400)
        );
    }

    #[test]
    fn retention_flags_parse_and_a_policy_file_excludes_rule_flags() {
        let cli = Cli::try_parse_from([
            "regsweep",
            "gc",
            "--keep-last",
            "5",
            "--keep-tags",
            "latest|stable",
            "--delete-tags",
            ".*-SNAPSHOT",
            "--older-than",
            "90d",
            "--repos",
            "team/*",
            "--repos",
            "ci/**",
            "--allow-empty-repos",
            "--protect",
            "/etc/in-use.txt",
            "x",
        ])
        .unwrap();
        let Command::Gc(args) = cli.command else {
            panic!("expected gc");
        };
        assert_eq!(args.keep_last, Some(5));
        assert_eq!(args.older_than.map(Age::as_secs), Some(90 * 86_400));
        assert_eq!(args.repos, ["team/*", "ci/**"]);
        assert!(args.allow_empty_repos);
        assert!(Cli::try_parse_from(["regsweep", "gc", "--keep-last", "-1", "x"]).is_err());
        assert!(
            Cli::try_parse_from([
                "regsweep",
                "gc",
                "--policy",
                "p.json",
                "--keep-last",
                "3",
                "x"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["regsweep", "gc", "--policy", "p.json", "--repos", "a", "x"])
                .is_ok()
        );
    }

    #[test]
    fn du_parses_top_json_and_price() {
        let cli = Cli::try_parse_from([
            "regsweep",
            "du",
            "--top",
            "5",
            "--json",
            "--price-per-gib-month",
            "0.023",
            "-m",
            "/srv/reg",
        ])
        .unwrap();
        let Command::Du(args) = cli.command else {
            panic!("expected du");
        };
        assert_eq!(args.top, Some(5));
        assert_eq!(args.price_per_gib_month, Some(0.023));
        assert!(args.json && args.delete_untagged);
        for bad in ["-1", "abc", "NaN", "inf"] {
            assert!(
                Cli::try_parse_from(["regsweep", "du", "--price-per-gib-month", bad, "x"]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn metrics_file_completions_and_man_parse() {
        let cli =
            Cli::try_parse_from(["regsweep", "gc", "--metrics-file", "/m/r.prom", "x"]).unwrap();
        let Command::Gc(args) = cli.command else {
            panic!("expected gc");
        };
        let metrics = args.metrics_file().unwrap();
        assert_eq!(
            (metrics.path, metrics.target),
            (PathBuf::from("/m/r.prom"), PathBuf::from("x"))
        );
        for shell in ["bash", "zsh", "fish"] {
            assert!(Cli::try_parse_from(["regsweep", "completions", shell]).is_ok());
        }
        assert!(Cli::try_parse_from(["regsweep", "completions", "cmd.exe"]).is_err());
        assert!(Cli::try_parse_from(["regsweep", "man"]).is_ok());
        assert!(Cli::try_parse_from(["regsweep", "man", "--dir", "/tmp/m"]).is_ok());
    }

    #[test]
    fn restore_and_trash_subcommands_parse() {
        let cli = Cli::try_parse_from(["regsweep", "restore", "/t", "--batch", "b1"]).unwrap();
        let Command::Restore(args) = cli.command else {
            panic!("expected restore");
        };
        assert_eq!(
            (args.dir, args.batch.as_deref()),
            (PathBuf::from("/t"), Some("b1"))
        );
        let cli = Cli::try_parse_from(["regsweep", "trash", "empty", "/t", "--older-than", "30d"])
            .unwrap();
        let Command::Trash(TrashCommand::Empty(args)) = cli.command else {
            panic!("expected trash empty");
        };
        assert_eq!(args.older_than.map(Age::as_secs), Some(30 * 86_400));
        assert!(!args.yes && !args.dry_run);
        assert!(Cli::try_parse_from(["regsweep", "trash", "empty"]).is_err());
        let cli =
            Cli::try_parse_from(["regsweep", "trash", "empty", "-y", "--dry-run", "/t"]).unwrap();
        let Command::Trash(TrashCommand::Empty(args)) = cli.command else {
            panic!("expected trash empty");
        };
        assert!(args.yes && args.dry_run);
        let cli = Cli::try_parse_from(["regsweep", "trash", "list", "--json", "/t"]).unwrap();
        let Command::Trash(TrashCommand::List(args)) = cli.command else {
            panic!("expected trash list");
        };
        assert!(args.json);
    }
}
