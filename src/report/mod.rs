//! The report: a summary for people, a stable JSON document for programs,
//! and the verbose list of candidates.
//!
//! JSON field names are part of regsweep's interface (README, "JSON report");
//! a change to them bumps [`REPORT_VERSION`]. The `--metrics-file` text is
//! in [`metrics`].

pub mod metrics;

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use std::time::SystemTime;

use crate::clock;
use crate::duration::Age;
use crate::gc::plan::{Candidate, Counts, Plan, Reclaim, RepositoryReclaim};
use crate::index::Index;
use crate::interrupt::Phase;
use crate::retention::policy::PolicyReport;
use crate::storage::{Failure, SweepOutcome};
use crate::warning::Warning;

pub use crate::storage::s3::S3Requests;
pub use crate::text::{count, counted, human_bytes};
pub(crate) use crate::text::{lossy_optional_path, lossy_path};

/// Version of the JSON report's shape. 2: `candidates` and `kept` are
/// listed only when asked (`-v`); `version`, `started`, `finished`,
/// `duration_seconds`, `interrupted_during` are new.
pub const REPORT_VERSION: u32 = 2;

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "i32")]
pub enum ExitStatus {
    /// Everything was read and everything planned was done.
    Success = 0,
    /// Finished, but something was kept because it could not be read, or
    /// something could not be deleted, or the sweep was interrupted.
    Warnings = 1,
    /// Refused or failed before deleting anything, or a sweep stopped
    /// because the registry took writes while it ran.
    Failed = 2,
}

impl From<ExitStatus> for i32 {
    fn from(status: ExitStatus) -> i32 {
        status as i32
    }
}

/// One candidate, with names instead of indices, borrowed from the index.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateRecord<'a> {
    /// `tag_index_entry`, `manifest`, `layer_link`, `blob`,
    /// `temporary_file`, `upload` or `repository`.
    pub kind: &'static str,
    /// The repository, except for blobs.
    pub repository: Option<&'a str>,
    /// The tag, for tag index entries.
    pub tag: Option<&'a str>,
    /// The digest in its path: `sha256:<hex>`, or `sha512:<hex>` for a
    /// blob linked under another algorithm; `null` for kinds without one.
    pub digest: Option<String>,
    /// Blob size, for blobs and layer links; data received, for uploads.
    pub bytes: Option<u64>,
    /// Why it is garbage (or, in `kept`, why it stays).
    pub reason: Cow<'static, str>,
    /// For uploads and temporary files: the path below the storage root.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_optional_path"
    )]
    pub path: Option<&'a std::path::Path>,
}

impl<'a> CandidateRecord<'a> {
    /// Names `candidate` using `index` and `plan`.
    pub fn new(index: &'a Index, plan: &'a Plan, candidate: &Candidate) -> CandidateRecord<'a> {
        let repo = candidate
            .repository()
            .map(|r| &index.repositories[r as usize]);
        CandidateRecord {
            kind: candidate.kind.as_str(),
            repository: repo.map(|r| r.name.as_str()),
            tag: repo
                .zip(candidate.tag())
                .map(|(r, t)| r.tags[t as usize].name.as_str()),
            digest: match (repo, candidate.foreign_link()) {
                _ if !candidate.kind.has_digest() => None,
                (Some(r), Some(i)) => Some(r.foreign_links[i as usize].name()),
                _ => Some(candidate.digest.to_string()),
            },
            bytes: candidate.bytes(),
            reason: Cow::Borrowed(candidate.reason.describe()),
            path: candidate
                .path()
                .and_then(|i| plan.paths.get(i as usize))
                .map(PathBuf::as_path),
        }
    }

    fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.kind,
            self.repository.unwrap_or("-"),
            self.tag.unwrap_or("-"),
            match (&self.digest, self.path) {
                (Some(d), _) => d.clone(),
                (None, Some(p)) => p.display().to_string(),
                (None, None) => "-".to_owned(),
            },
            self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            self.reason
        )
    }
}

/// The plan's candidates, named on the fly: a plan can list millions, and
/// the report should not hold a string copy of each.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    index: &'a Index,
    plan: &'a Plan,
    listed: bool,
}

impl<'a> Candidates<'a> {
    /// Every candidate of `plan`, in sweep order.
    pub fn iter(&self) -> impl Iterator<Item = CandidateRecord<'a>> + 'a {
        let (index, plan) = (self.index, self.plan);
        plan.candidates
            .iter()
            .map(move |c| CandidateRecord::new(index, plan, c))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.plan.candidates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.plan.candidates.is_empty()
    }

    /// Whether the JSON report leaves the list out.
    fn unlisted(&self) -> bool {
        !self.listed
    }
}

impl Serialize for Candidates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// What the plan keeps because of `--min-age`, named on the fly.
#[derive(Debug, Clone, Copy)]
pub struct KeptRecords<'a> {
    index: &'a Index,
    plan: &'a Plan,
    min_age: Age,
    listed: bool,
}

impl<'a> KeptRecords<'a> {
    /// Every kept item, in sweep order, with why it stays.
    pub fn iter(&self) -> impl Iterator<Item = CandidateRecord<'a>> + 'a {
        let (index, plan, min_age) = (self.index, self.plan, self.min_age.to_string());
        plan.kept.iter().map(move |k| CandidateRecord {
            reason: Cow::Owned(k.reason.describe(&min_age)),
            ..CandidateRecord::new(index, plan, &k.candidate)
        })
    }
}

impl KeptRecords<'_> {
    /// Whether the JSON report leaves the list out.
    fn unlisted(&self) -> bool {
        !self.listed
    }
}

impl Serialize for KeptRecords<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Where a `--trash` run moved things.
#[derive(Debug, Clone, Serialize)]
pub struct TrashRecord {
    /// The trash directory.
    #[serde(serialize_with = "lossy_path")]
    pub dir: PathBuf,
    /// The batch's name (`regsweep restore DIR --batch NAME`).
    pub batch: String,
    /// The batch's journal.
    #[serde(serialize_with = "lossy_path")]
    pub journal: PathBuf,
}

/// Facts of a run besides the plan and the sweep.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// `--min-age`.
    pub min_age: Age,
    /// Uploads active within `--min-age`.
    pub uploads_in_progress: u64,
    /// The trash batch of a `--trash` run.
    pub trash: Option<TrashRecord>,
    /// The registry's blob descriptor cache, for the closing advice.
    pub blob_cache: BlobCache,
}

/// How the registry remembers blobs between requests, from
/// `storage.cache.blobdescriptor` in its configuration: what it takes to
/// make it forget deleted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlobCache {
    /// TARGET was a directory: the configuration was not read.
    #[default]
    Unknown,
    /// No cache configured: every request reads the storage.
    Disabled,
    /// `inmemory`: lives in the registry process.
    InMemory,
    /// `redis`: lives in redis, across registry restarts.
    Redis,
    /// A value the registry does not know (it then caches nothing).
    Other(String),
}

impl BlobCache {
    /// From the configuration's value (`None`: not set).
    pub fn from_config(value: Option<&str>) -> BlobCache {
        match value {
            None | Some("") => BlobCache::Disabled,
            Some("inmemory") => BlobCache::InMemory,
            Some("redis") => BlobCache::Redis,
            Some(other) => BlobCache::Other(other.to_owned()),
        }
    }

    /// What to do after deleting blobs.
    pub fn advice(&self) -> String {
        const REDIS_KEYS: &str = "delete the registry's keys there (in the database `redis.db` names: `redis-cli -n DB --scan --pattern 'blobs::*'` and `--pattern 'repository::*'`, piped to `xargs -r redis-cli -n DB del`), then restart the registry";
        match self {
            BlobCache::Unknown => format!(
                "Restart the registry so its blob descriptor cache forgets deleted blobs (with storage.cache.blobdescriptor: redis, {REDIS_KEYS}). Give regsweep the registry's config.yml as TARGET for advice that fits its cache."
            ),
            BlobCache::InMemory => "Restart the registry: its in-memory blob descriptor cache (storage.cache.blobdescriptor: inmemory) still answers for deleted blobs until then.".into(),
            BlobCache::Redis => format!(
                "The registry's blob descriptor cache is redis: its redis cache still answers for deleted blobs after a restart: {REDIS_KEYS}."
            ),
            BlobCache::Disabled => "The registry keeps no blob descriptor cache (storage.cache.blobdescriptor is not set): it sees the deletions at once.".into(),
            BlobCache::Other(value) => format!(
                "The registry ignores storage.cache.blobdescriptor: {value:?} and caches nothing: it sees the deletions at once."
            ),
        }
    }
}

/// The whole report of a `gc` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// [`REPORT_VERSION`].
    pub regsweep_report: u32,
    /// regsweep's version.
    pub version: &'static str,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When the report was written (RFC 3339, UTC).
    pub finished: String,
    /// From `started` to `finished`.
    pub duration_seconds: f64,
    /// The storage root (the directory holding `docker/registry/v2`).
    #[serde(serialize_with = "lossy_path")]
    pub storage_root: PathBuf,
    /// Nothing was deleted on purpose.
    pub dry_run: bool,
    /// Untagged manifests were garbage.
    pub delete_untagged: bool,
    /// The registry as indexed.
    pub before: Counts,
    /// After the sweep; for a dry run, what it would be.
    pub after: Counts,
    /// What the plan reclaims.
    pub reclaimable: Reclaim,
    /// What was deleted (zero for a dry run).
    pub deleted: Reclaim,
    /// Repositories with something reclaimable, most bytes first.
    pub repositories: Vec<RepositoryReclaim>,
    /// Everything the plan deletes, in sweep order; left out of JSON
    /// unless listed ([`Report::list_items`]): a large registry has
    /// hundreds of thousands.
    #[serde(skip_serializing_if = "Candidates::unlisted")]
    pub candidates: Candidates<'a>,
    /// Damage found, and what was kept because of it.
    pub warnings: Vec<Warning>,
    /// What could not be deleted.
    pub failures: Vec<Failure>,
    /// The sweep stopped before the end of the plan, or the run stopped
    /// before it began (a signal at the prompt).
    pub interrupted: bool,
    /// What the run was doing when a signal stopped it: `prompt`, `sweep`;
    /// `null` if none did.
    pub interrupted_during: Option<Phase>,
    /// The operator answered no at the prompt: nothing was deleted.
    pub declined: bool,
    /// What changed in the tree since the index began, when that stopped
    /// the sweep (the registry is taking writes); `null` otherwise.
    pub registry_changed: Option<String>,
    /// The process exit code.
    pub exit_code: ExitStatus,
    /// `--min-age`, as given (`1h`).
    pub min_age: String,
    /// `--min-age` in seconds.
    pub min_age_seconds: u64,
    /// Totals of `kept`.
    pub kept_too_recent: Reclaim,
    /// What would be garbage but was modified within `--min-age`, or
    /// depends on something that was; listed like `candidates`.
    #[serde(skip_serializing_if = "KeptRecords::unlisted")]
    pub kept: KeptRecords<'a>,
    /// Uploads active within `--min-age`.
    pub uploads_in_progress: u64,
    /// Empty directories the sweep removed.
    pub empty_directories_removed: u64,
    /// The trash batch, for a `--trash` run.
    pub trash: Option<TrashRecord>,
    /// What the retention policy decided: per repository, the tags kept and
    /// deleted with their rules; `null` without a policy.
    pub policy: Option<&'a PolicyReport>,
    /// What the `--protect` list came to: references found, not found (each
    /// also a warning) and those of other registries (noted); `null`
    /// without `--protect`.
    pub protect: Option<&'a crate::retention::protect::ProtectReport>,
    /// What the `--pull-log` files held: per file, lines per format, lines
    /// not read (with samples), pulls, the time span; and whether they
    /// cover the pull window. `null` without `--pull-log`.
    pub pull_logs: Option<&'a crate::retention::pulls::PullLogReport>,
    /// The requests sent to object storage, by kind; `null` on a
    /// filesystem.
    pub s3_requests: Option<S3Requests>,
    /// The registry's blob descriptor cache (not in JSON).
    #[serde(skip)]
    pub blob_cache: BlobCache,
}

impl<'a> Report<'a> {
    /// The report of a run; `outcome` is `None` for a dry run or a run that
    /// was declined.
    pub fn new(
        storage_root: PathBuf,
        delete_untagged: bool,
        index: &'a Index,
        plan: &'a Plan,
        warnings: Vec<Warning>,
        outcome: Option<SweepOutcome>,
        run: RunInfo,
    ) -> Report<'a> {
        let dry_run = outcome.is_none();
        let registry_changed = outcome
            .as_ref()
            .and_then(|o| o.changed.as_ref())
            .map(ToString::to_string);
        let (after, deleted, failures, interrupted, empty_directories_removed) = match outcome {
            Some(o) => {
                let mut deleted = o.deleted;
                deleted.temporary_files += o.temporary_files;
                (
                    plan.after(|i| o.gone[i]),
                    deleted,
                    o.failures,
                    o.interrupted,
                    o.empty_directories,
                )
            }
            None => (
                plan.after(|_| true),
                Reclaim::default(),
                Vec::new(),
                false,
                0,
            ),
        };
        let exit_code = if registry_changed.is_some() {
            ExitStatus::Failed
        } else if warnings.is_empty() && failures.is_empty() && !interrupted {
            ExitStatus::Success
        } else {
            ExitStatus::Warnings
        };
        let now = clock::rfc3339(SystemTime::now());
        Report {
            regsweep_report: REPORT_VERSION,
            version: env!("CARGO_PKG_VERSION"),
            started: now.clone(),
            finished: now,
            duration_seconds: 0.0,
            storage_root,
            dry_run,
            delete_untagged,
            before: plan.before,
            after,
            reclaimable: plan.reclaimable,
            deleted,
            repositories: plan.repositories.clone(),
            candidates: Candidates {
                index,
                plan,
                listed: true,
            },
            warnings,
            failures,
            interrupted_during: None,
            declined: false,
            interrupted,
            registry_changed,
            exit_code,
            min_age: run.min_age.to_string(),
            min_age_seconds: run.min_age.as_secs(),
            kept_too_recent: plan.kept_too_recent,
            kept: KeptRecords {
                index,
                plan,
                min_age: run.min_age,
                listed: true,
            },
            uploads_in_progress: run.uploads_in_progress,
            empty_directories_removed,
            trash: run.trash,
            blob_cache: run.blob_cache,
            policy: None,
            protect: None,
            pull_logs: None,
            s3_requests: None,
        }
    }

    /// A sweep that a signal stopped before the end of its plan.
    pub fn stopped_by_signal(&mut self) {
        if self.interrupted && self.registry_changed.is_none() {
            self.interrupted_during = Some(Phase::Sweep);
        }
    }

    /// Whether the JSON document lists `candidates` and `kept` (it does
    /// unless told otherwise).
    pub fn list_items(&mut self, listed: bool) {
        self.candidates.listed = listed;
        self.kept.listed = listed;
    }

    /// A sweep the operator declined at the prompt: nothing deleted, and
    /// nothing to report back (the warnings were shown before the
    /// question): exit 0.
    pub fn declined(&mut self) {
        self.dry_run = false;
        self.after = self.before;
        self.declined = true;
        self.exit_code = ExitStatus::Success;
    }

    /// A run stopped by a signal during `phase`, before the sweep began (at
    /// the prompt): nothing was deleted, and it exits 1.
    pub fn stopped_before_sweep(&mut self, phase: Phase) {
        self.dry_run = false;
        self.after = self.before;
        self.interrupted = true;
        self.interrupted_during = Some(phase);
        if self.exit_code == ExitStatus::Success {
            self.exit_code = ExitStatus::Warnings;
        }
    }

    /// The phase a signal stopped the run in, when that was before the
    /// sweep began.
    fn stopped_before_sweeping(&self) -> Option<Phase> {
        self.interrupted_during.filter(|p| *p != Phase::Sweep)
    }

    /// Stamps the run's start, and now as its end.
    pub fn timed(&mut self, started: SystemTime) {
        let finished = SystemTime::now();
        self.started = clock::rfc3339(started);
        self.finished = clock::rfc3339(finished);
        self.duration_seconds = seconds_between(started, finished);
    }

    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes a header line, then one line per candidate: kind,
    /// repository, tag, digest (or path), bytes, reason; tab-separated.
    /// Then one line per item kept by `--min-age`, its reason starting with
    /// `kept:`.
    pub fn write_candidates(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{CANDIDATES_HEADER}")?;
        for c in self.candidates.iter() {
            c.write_line(out)?;
        }
        for k in self.kept.iter() {
            k.write_line(out)?;
        }
        Ok(())
    }

    /// Writes everything a person reads after a run: with `verbose`, the
    /// candidates; the retention policy's decisions (every tag for a dry
    /// run or with `verbose`, else the deleted ones); then the summary with
    /// the `top` largest repositories.
    pub fn write_human(&self, out: &mut impl Write, verbose: bool, top: usize) -> io::Result<()> {
        if verbose {
            self.write_candidates(out)?;
        }
        if let Some(pull_logs) = self.pull_logs {
            pull_logs.write_human(out, verbose)?;
            writeln!(out)?;
        }
        if self.policy.is_some() {
            self.write_policy(out, self.dry_run || verbose)?;
            writeln!(out)?;
        }
        if let Some(protect) = self.protect {
            protect.write_human(out, verbose)?;
            writeln!(out)?;
        }
        self.write_summary(out, top)?;
        if let Some(r) = self.s3_requests {
            writeln!(
                out,
                "S3 requests: {} LIST, {} GET, {} HEAD, {} PUT, {} DELETE.",
                r.list, r.get, r.head, r.put, r.delete
            )?;
        }
        Ok(())
    }

    /// Writes the plan shown before asking whether to go on: the tags the
    /// retention policy deletes and the summary, worded as what is about to
    /// happen (`trash`: moved into a trash batch) rather than as a dry run.
    pub fn write_preview(&self, out: &mut impl Write, top: usize, trash: bool) -> io::Result<()> {
        if self.policy.is_some() {
            self.write_policy_as(out, Stage::Preview { trash }, false)?;
            writeln!(out)?;
        }
        self.write_summary_as(out, top, Stage::Preview { trash })
    }

    /// Writes the summary table and the largest repositories.
    pub fn write_summary(&self, out: &mut impl Write, top: usize) -> io::Result<()> {
        self.write_summary_as(out, top, self.stage())
    }

    /// Writes the retention policy's decisions, if there is a policy: per
    /// repository, the tags deleted (and, when `all`, those kept), each with
    /// the rule that decided (by its name too, when it has one) and why.
    pub fn write_policy(&self, out: &mut impl Write, all: bool) -> io::Result<()> {
        self.write_policy_as(out, self.stage(), all)
    }

    fn stage(&self) -> Stage {
        if self.dry_run {
            Stage::DryRun
        } else {
            Stage::Swept {
                trash: self.trash.is_some(),
            }
        }
    }

    fn write_policy_as(&self, out: &mut impl Write, stage: Stage, all: bool) -> io::Result<()> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        let source = match &policy.source {
            Some(path) => path.display().to_string(),
            None => policy
                .rules
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
        let (delete, keep) = match stage {
            Stage::DryRun => ("would delete", "keep"),
            Stage::Preview { .. } => ("about to delete", "keep"),
            Stage::Swept { .. } => ("deleted", "kept"),
        };
        // The bytes are what the deleted tags free.
        writeln!(
            out,
            "Retention policy ({source}): {delete} {} ({}) and {keep} {}.",
            counted(policy.tags_deleted, "tag", "tags"),
            human_bytes(policy.bytes),
            count(policy.tags_kept)
        )?;
        let label = |id: &str| rule_label(policy, id);
        for repo in &policy.repositories {
            if !all && repo.deleted.is_empty() && repo.refused.is_none() {
                continue;
            }
            writeln!(
                out,
                "  {}: {} deleted, {} kept, frees {}",
                repo.name,
                count(repo.deleted.len() as u64),
                count(repo.kept.len() as u64),
                human_bytes(repo.bytes)
            )?;
            if let Some(refused) = &repo.refused {
                let rules: Vec<String> = refused.rules.iter().map(|r| label(r)).collect();
                writeln!(
                    out,
                    "    refused: {} would delete every tag ({}); all kept (--allow-empty-repos to allow)",
                    rules.join(", "),
                    count(refused.tags)
                )?;
            }
            let rows: Vec<(&str, &crate::retention::policy::TagRecord)> = repo
                .deleted
                .iter()
                .map(|t| ("delete", t))
                .chain(repo.kept.iter().filter(|_| all).map(|t| ("keep", t)))
                .collect();
            // Tags are never shortened: the column widens to the longest.
            let tag_width = rows.iter().map(|(_, t)| width(&t.tag)).max().unwrap_or(0);
            let tag_width = tag_width.max(MIN_TAG_WIDTH);
            for (action, t) in rows {
                writeln!(
                    out,
                    "    {action:<7}{:<tag_width$} {:<21} {:>10}  {}: {}",
                    t.tag,
                    t.pushed.as_deref().unwrap_or("-"),
                    t.bytes.map(human_bytes).unwrap_or_default(),
                    label(&t.rule),
                    t.reason
                )?;
            }
        }
        Ok(())
    }

    fn write_summary_as(&self, out: &mut impl Write, top: usize, stage: Stage) -> io::Result<()> {
        let untagged = if self.delete_untagged {
            "untagged manifests deleted"
        } else {
            "untagged manifests kept"
        };
        let mode = match stage {
            Stage::DryRun => format!("dry run; {untagged}"),
            Stage::Preview { trash: false } => format!("about to delete; {untagged}"),
            Stage::Preview { trash: true } => format!("about to move to the trash; {untagged}"),
            Stage::Swept { .. } => untagged.to_owned(),
        };
        writeln!(out, "regsweep gc {} ({mode})", self.storage_root.display())?;
        writeln!(out)?;
        let third = match stage {
            Stage::DryRun => "reclaimable",
            Stage::Preview { trash: false } => "to delete",
            Stage::Preview { trash: true } => "to move",
            Stage::Swept { trash: false } => "deleted",
            Stage::Swept { trash: true } => "moved",
        };
        let (b, a) = (&self.before, &self.after);
        // The third column is what the first two differ by, and the closing
        // sentence counts the same: the table and the sentence cannot
        // disagree.
        let row = |label: &'static str, before: u64, after: u64| {
            (label, count(before), count(after), count(before - after))
        };
        let rows = [
            row("repositories", b.repositories, a.repositories),
            row("tags", b.tags, a.tags),
            row("manifests", b.manifests, a.manifests),
            row("  tagged", b.tagged_manifests, a.tagged_manifests),
            row("  untagged", b.untagged_manifests, a.untagged_manifests),
            row("layer links", b.layer_links, a.layer_links),
            row("blobs", b.blobs, a.blobs),
            (
                "blob bytes",
                human_bytes(b.blob_bytes),
                human_bytes(a.blob_bytes),
                human_bytes(b.blob_bytes - a.blob_bytes),
            ),
            row("uploads", b.uploads, a.uploads),
        ];
        let column = rows
            .iter()
            .flat_map(|(_, x, y, z)| [x, y, z])
            .map(|v| width(v) + 2)
            .chain([width(third) + 2, MIN_COLUMN_WIDTH])
            .max()
            .unwrap_or(MIN_COLUMN_WIDTH);
        writeln!(
            out,
            "{:<LABEL_WIDTH$}{:>column$}{:>column$}{third:>column$}",
            "", "before", "after"
        )?;
        for (label, before, after, delta) in &rows {
            writeln!(
                out,
                "{label:<LABEL_WIDTH$}{before:>column$}{after:>column$}{delta:>column$}"
            )?;
        }
        let changed = if matches!(stage, Stage::Swept { .. }) {
            &self.deleted
        } else {
            &self.reclaimable
        };
        let shown = Reclaim {
            repositories: b.repositories - a.repositories,
            tags: b.tags - a.tags,
            manifests: b.manifests - a.manifests,
            // With an empty repository go its links to live blobs.
            layer_links: b.layer_links - a.layer_links,
            blobs: b.blobs - a.blobs,
            bytes: b.blob_bytes - a.blob_bytes,
            uploads: b.uploads - a.uploads,
            ..*changed
        };
        let extra = [
            ("tag history", shown.tag_index_entries, String::new()),
            ("temporary files", shown.temporary_files, String::new()),
            (
                "stale uploads",
                shown.uploads,
                format!(" ({})", human_bytes(shown.upload_bytes)),
            ),
        ];
        for (label, n, more) in extra {
            if n > 0 {
                let value = format!("{}{more}", count(n));
                writeln!(out, "{label:<LABEL_WIDTH$}{value:>w$}", w = 3 * column)?;
            }
        }
        if !self.repositories.is_empty() {
            let complete =
                self.failures.is_empty() && !self.interrupted && self.registry_changed.is_none();
            let title = match stage {
                Stage::DryRun => "Reclaimable by repository (largest first):",
                Stage::Preview { trash: false } => "To delete by repository (largest first):",
                Stage::Preview { trash: true } => {
                    "To move to the trash by repository (largest first):"
                }
                Stage::Swept { .. } if self.stopped_before_sweeping().is_some() => {
                    "Planned by repository (largest first; nothing was deleted):"
                }
                Stage::Swept { .. } if !complete => {
                    "Planned by repository (largest first; the sweep did not do all of it):"
                }
                Stage::Swept { trash: false } => "Deleted by repository (largest first):",
                Stage::Swept { trash: true } => "Moved to the trash by repository (largest first):",
            };
            writeln!(out)?;
            writeln!(out, "{title}")?;
            self.write_repositories(out, top)?;
        }
        writeln!(out)?;
        let k = &self.kept_too_recent;
        if !k.is_empty() {
            writeln!(
                out,
                "Kept, too recent (--min-age {}): {} ({}).",
                self.min_age,
                totals(k),
                human_bytes(k.bytes)
            )?;
        }
        if self.uploads_in_progress > 0 {
            writeln!(
                out,
                "Uploads in progress: {} (the registry is taking pushes).",
                count(self.uploads_in_progress)
            )?;
        }
        let nothing = shown.is_empty();
        match stage {
            Stage::DryRun if nothing => writeln!(out, "Dry run: nothing to reclaim.")?,
            Stage::DryRun => writeln!(
                out,
                "Dry run: nothing deleted. A sweep would remove {} ({}).",
                totals(&shown),
                human_bytes(shown.bytes)
            )?,
            Stage::Preview { .. } if nothing => writeln!(out, "Nothing to delete.")?,
            Stage::Preview { trash: false } => writeln!(
                out,
                "About to delete {} ({}).",
                totals(&shown),
                human_bytes(shown.bytes)
            )?,
            Stage::Preview { trash: true } => writeln!(
                out,
                "About to move {} ({}) to the trash.",
                totals(&shown),
                human_bytes(shown.bytes)
            )?,
            Stage::Swept { .. } => self.write_outcome(out, &shown)?,
        }
        Ok(())
    }

    /// The per-repository table: columns as wide as their widest value, a
    /// repository name longer than [`MAX_NAME_WIDTH`] shortened in the
    /// middle.
    fn write_repositories(&self, out: &mut impl Write, top: usize) -> io::Result<()> {
        let shown = &self.repositories[..self.repositories.len().min(top)];
        let with_tags = shown.iter().any(|r| r.tags > 0);
        let mut header = vec!["repository"];
        if with_tags {
            header.push("tags");
        }
        header.extend(["manifests", "layer links", "blobs", "bytes"]);
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|r| {
                let mut row = vec![shorten_middle(&r.name, MAX_NAME_WIDTH)];
                if with_tags {
                    row.push(count(r.tags));
                }
                row.extend([
                    count(r.manifests),
                    count(r.layer_links),
                    count(r.blobs),
                    human_bytes(r.bytes),
                ]);
                row
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|row| width(&row[i]))
                    .chain([width(header[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let mut text = format!("  {:<w$}", cells[0], w = widths[0]);
            for (cell, w) in cells.iter().zip(&widths).skip(1) {
                text.push_str(&format!("  {cell:>w$}"));
            }
            text
        };
        writeln!(out, "{}", line(&header))?;
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
        }
        if self.repositories.len() > shown.len() {
            writeln!(
                out,
                "  … and {} more (see -v or --json)",
                count((self.repositories.len() - shown.len()) as u64)
            )?;
        }
        Ok(())
    }

    /// How a sweep ended: what it deleted or moved, how to undo a move,
    /// why it stopped early, and what the registry needs now.
    fn write_outcome(&self, out: &mut impl Write, shown: &Reclaim) -> io::Result<()> {
        if self.reclaimable.is_empty() {
            return writeln!(out, "Nothing to delete.");
        }
        if let Some(phase) = self.stopped_before_sweeping() {
            // Nothing changed: no re-run to finish, no cache to clear.
            return writeln!(
                out,
                "Interrupted {} before the sweep: nothing was deleted.",
                phase.doing()
            );
        }
        match &self.trash {
            Some(t) => {
                writeln!(
                    out,
                    "Moved to the trash: {} ({}), batch {}.",
                    totals(shown),
                    human_bytes(shown.bytes),
                    t.dir.join(&t.batch).display()
                )?;
                writeln!(
                    out,
                    "Undo with: regsweep restore '{}' --batch {}",
                    t.dir.display(),
                    t.batch
                )?;
            }
            None => writeln!(
                out,
                "Deleted {} ({}).",
                totals(shown),
                human_bytes(shown.bytes)
            )?,
        }
        if self.empty_directories_removed > 0 {
            writeln!(
                out,
                "Removed {}.",
                counted(
                    self.empty_directories_removed,
                    "empty directory",
                    "empty directories"
                )
            )?;
        }
        if let Some(change) = &self.registry_changed {
            writeln!(
                out,
                "The sweep stopped: {change}, so the registry is taking writes. What was deleted leaves it consistent; make it read-only (storage.maintenance.readonly.enabled: true, then restart it) or stop it, and run regsweep again."
            )?;
        } else if self.interrupted {
            writeln!(
                out,
                "The sweep was interrupted; the registry is consistent, and a re-run finishes it."
            )?;
        }
        writeln!(out, "{}", self.blob_cache.advice())
    }
}

/// Seconds from `start` to `end`, in milliseconds' precision (0 if the
/// clock went back).
pub fn seconds_between(start: SystemTime, end: SystemTime) -> f64 {
    let elapsed = end.duration_since(start).unwrap_or_default();
    (elapsed.as_millis() as f64) / 1000.0
}

/// What a command that stopped without a report of its own prints with
/// `--json`: a refusal (exit 2), a failure, or an interruption before
/// anything was planned (exit 1). One object, like every report: a
/// program reads `exit_code`, and `error` and `kind` say why.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    /// [`REPORT_VERSION`] for `gc`; the command's own version otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regsweep_report: Option<u32>,
    /// regsweep's version.
    pub version: &'static str,
    /// `gc`, `verify`, `du`, `restore`, `trash empty`, `trash list`.
    pub command: &'static str,
    /// The storage root, or the trash directory, when known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_optional_path"
    )]
    pub target: Option<PathBuf>,
    /// A `gc --dry-run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When this was written (RFC 3339, UTC).
    pub finished: String,
    /// From `started` to `finished`.
    pub duration_seconds: f64,
    /// The process exit code.
    pub exit_code: ExitStatus,
    /// `interrupted`, `lock_held`, `not_storage`, `uploads_in_progress`,
    /// ... (see [`crate::Error::kind`]); `errors` when there are several.
    pub kind: &'static str,
    /// What happened, and whether anything changed.
    pub error: String,
    /// Each error, when there are several (two locks held).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorRecord>,
    /// A signal stopped the run.
    pub interrupted: bool,
    /// What the run was doing when a signal stopped it.
    pub interrupted_during: Option<&'static str>,
}

/// One error of a [`StopReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRecord {
    /// As [`StopReport::kind`].
    pub kind: &'static str,
    /// The path at fault, when there is one.
    #[serde(serialize_with = "lossy_optional_path")]
    pub path: Option<PathBuf>,
    /// The message.
    pub error: String,
}

impl StopReport {
    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }
}

/// The first line of `-v`: the names of the tab-separated columns.
pub const CANDIDATES_HEADER: &str = "kind\trepository\ttag\tdigest_or_path\tbytes\treason";

/// Width of the summary's row labels.
const LABEL_WIDTH: usize = 18;
/// The summary's value columns are at least this wide.
const MIN_COLUMN_WIDTH: usize = 14;
/// Repository names longer than this are shortened in the middle in the
/// per-repository table; `--json` and `-v` have them whole.
pub const MAX_NAME_WIDTH: usize = 48;
/// The policy listing's tag column is at least this wide.
const MIN_TAG_WIDTH: usize = 30;

/// What a summary describes; its words follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `--dry-run`: nothing is deleted.
    DryRun,
    /// Shown before asking: nothing deleted yet; `trash`: a `--trash` run.
    Preview { trash: bool },
    /// After a sweep; `trash`: what went was moved into a trash batch.
    Swept { trash: bool },
}

/// A rule's id with its name, when the policy gives it one:
/// `rules[1] (snapshots)`. What decided without a rule (`latest`,
/// `protected`...) stays as it is.
fn rule_label(policy: &PolicyReport, id: &str) -> String {
    match policy
        .rules
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| r.name.as_deref())
    {
        Some(name) => format!("{id} ({name})"),
        None => id.to_owned(),
    }
}

/// Characters a terminal shows for `text` (names here are ASCII but for
/// what is not UTF-8, shown as U+FFFD).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` if it fits in `max` characters; otherwise its start and end with
/// `…` between them, `max` characters in all.
pub fn shorten_middle(text: &str, max: usize) -> String {
    let len = width(text);
    if len <= max || max < 3 {
        return text.to_owned();
    }
    let tail = (max - 1) / 2;
    let head = max - 1 - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(len - tail).collect();
    format!("{start}…{end}")
}

/// `1 manifest, 2 tag history entries, 3 layer links and 4 blobs`, then
/// temporary files, uploads and repositories when there are any.
fn totals(r: &Reclaim) -> String {
    let mut parts = Vec::new();
    if r.tags > 0 {
        parts.push(counted(r.tags, "tag", "tags"));
    }
    parts.extend([
        counted(r.manifests, "manifest", "manifests"),
        counted(
            r.tag_index_entries,
            "tag history entry",
            "tag history entries",
        ),
        counted(r.layer_links, "layer link", "layer links"),
        counted(r.blobs, "blob", "blobs"),
    ]);
    for (n, one, many) in [
        (r.temporary_files, "temporary file", "temporary files"),
        (r.uploads, "stale upload", "stale uploads"),
        (r.repositories, "empty repository", "empty repositories"),
    ] {
        if n > 0 {
            parts.push(counted(n, one, many));
        }
    }
    let last = parts.pop().unwrap_or_default();
    format!("{} and {last}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_iec_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn long_names_are_shortened_in_the_middle_to_the_width_asked() {
        let name = "team/a-very-long-path-component/service";
        assert_eq!(shorten_middle(name, 100), name);
        let short = shorten_middle(name, 15);
        assert_eq!(short, "team/a-…service");
        assert_eq!(short.chars().count(), 15);
        assert_eq!(shorten_middle(name, 16).chars().count(), 16);
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(counted(1, "blob", "blobs"), "1 blob");
        assert_eq!(counted(1000, "blob", "blobs"), "1,000 blobs");
    }

    /// The summary of an empty registry in each stage.
    fn summary(write: impl Fn(&Report, &mut Vec<u8>) -> io::Result<()>) -> String {
        let (index, plan) = (Index::default(), Plan::default());
        let report = Report::new(
            "/srv/registry".into(),
            false,
            &index,
            &plan,
            Vec::new(),
            None,
            RunInfo::default(),
        );
        let mut out = Vec::new();
        write(&report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_preview_is_not_a_dry_run_and_the_dry_run_says_so() {
        let preview = summary(|r, out| r.write_preview(out, 10, false));
        assert!(
            preview.starts_with("regsweep gc /srv/registry (about to delete;"),
            "{preview}"
        );
        assert!(!preview.to_lowercase().contains("dry run"), "{preview}");
        assert!(preview.contains("to delete\n"), "{preview}");
        let trash = summary(|r, out| r.write_preview(out, 10, true));
        assert!(trash.contains("(about to move to the trash;"), "{trash}");
        let dry = summary(|r, out| r.write_summary(out, 10));
        assert!(dry.contains("(dry run;") && dry.contains("reclaimable\n"));
    }

    #[test]
    fn exit_status_serializes_as_its_code() {
        assert_eq!(serde_json::to_string(&ExitStatus::Warnings).unwrap(), "1");
    }
}
