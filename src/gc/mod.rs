//! The collection pipeline: index → mark → plan → sweep → report, run by a
//! [`Collector`] on a [`GcConfig`] in a thread pool of its own.
//!
//! [`mark`] follows references from the roots, [`plan`] lists what nothing
//! live reaches, [`recent`] holds back what is younger than `--min-age`; the
//! index, the looking again and the sweep itself come from the storage
//! backend ([`crate::storage`]), the tags to delete from the retention
//! policy ([`crate::retention`]).

pub mod mark;
pub mod plan;
pub mod recent;

use std::time::SystemTime;

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::clock;
use crate::digest::Digest;
use crate::duration::Age;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::interrupt::{Interrupt, Phase};
use crate::progress::Progress;
use crate::report::{self, Report};
use crate::retention::policy::{Policy, PolicyReport, RepositoryDecision, TagFacts, Why};
use crate::retention::protect::{self, ProtectList, Protection};
use crate::retention::{self, pulls};
use crate::storage;
use crate::storage::Storage;
use crate::storage::fs::hygiene::{self, Upload};
use crate::storage::fs::sweep::{self, Disposal};
use crate::storage::layout::Layout;
use crate::storage::s3;
use crate::storage::{SweepOptions, SweepOutcome};
use crate::warning::{Warning, WarningKind};
use plan::{CandidateKind, Plan, PlanOptions};

/// What a `gc` run is asked to do.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// The storage to collect.
    pub storage: Storage,
    /// Manifests no tag reaches are garbage too.
    pub delete_untagged: bool,
    /// Also read every `_layers` link and report invalid ones.
    pub check_layer_links: bool,
    /// Worker threads; `None` for [`default_threads`].
    pub threads: Option<usize>,
    /// Threads of the sweep; `None` for [`DEFAULT_DELETE_THREADS`].
    pub delete_threads: Option<usize>,
    /// Progress on stderr.
    pub progress: Progress,
    /// Sweep options.
    pub sweep: SweepOptions,
    /// A stop request: indexing and planning end with
    /// [`Error::Interrupted`], the sweep stops between two deletions.
    pub interrupt: Interrupt,
    /// Nothing modified more recently than this is deleted; a manifest
    /// revision that recent is a root.
    pub min_age: Age,
    /// Purge uploads nobody touched for this long (never within `min_age`).
    pub purge_uploads_older_than: Option<Age>,
    /// Remove repositories left with no tags and no manifests.
    pub remove_empty_repos: bool,
    /// List every link and blob directory for stray temporary files.
    pub scan_temporary_files: bool,
    /// A retention policy: tags to delete, and their images with them.
    pub policy: Option<Policy>,
    /// Images in use: never deleted, whatever the policy says.
    pub protect: Option<ProtectList>,
    /// The registry's logs, read for when each tag and manifest was last
    /// pulled (`--pull-log`).
    pub pull_logs: Option<pulls::PullLogConfig>,
    /// The registry's blob descriptor cache, when its configuration was
    /// read: what the report advises after a sweep.
    pub blob_cache: report::BlobCache,
}

impl GcConfig {
    /// What `regsweep gc` does on `layout` without options: untagged
    /// manifests kept, `--min-age 1h`, no policy, no protection,
    /// [`default_threads`] readers and [`DEFAULT_DELETE_THREADS`] deleters, no
    /// progress shown.
    pub fn new(layout: Layout) -> GcConfig {
        GcConfig::on(Storage::Filesystem(layout))
    }

    /// [`GcConfig::new`] on any storage.
    pub fn on(storage: Storage) -> GcConfig {
        GcConfig {
            storage,
            delete_untagged: false,
            check_layer_links: false,
            threads: None,
            delete_threads: None,
            progress: Progress::new(false),
            sweep: SweepOptions::default(),
            interrupt: Interrupt::default(),
            min_age: Age::from_secs(3600),
            purge_uploads_older_than: None,
            remove_empty_repos: false,
            scan_temporary_files: false,
            policy: None,
            protect: None,
            pull_logs: None,
            blob_cache: report::BlobCache::Unknown,
        }
    }
}

/// The index, marked and planned: everything a sweep or a report needs.
#[derive(Debug)]
pub struct Planned {
    /// The storage as read.
    pub index: Index,
    /// What to delete.
    pub plan: Plan,
    /// Damage found while indexing and marking.
    pub warnings: Vec<Warning>,
    /// Uploads found under `_uploads/`.
    pub uploads: Vec<Upload>,
    /// When the run started: ages are measured from here.
    pub now: SystemTime,
    /// `now - min_age` (the earliest representable time when that is
    /// earlier), unless the minimum age is zero.
    pub cutoff: Option<SystemTime>,
    /// Paths stat'ed for `--min-age`.
    pub stats: u64,
    /// What the retention policy decided, when there is one.
    pub policy: Option<PolicyReport>,
    /// What the `--protect` list came to, when there is one: its
    /// references of other registries are noted here, not warned about.
    pub protect: Option<protect::ProtectReport>,
    /// What the pull logs held, when given.
    pub pull_logs: Option<pulls::PullLogReport>,
    /// What a bucket's listing showed beyond the index (uploads' keys,
    /// what is recent); `None` on a filesystem.
    pub listing: Option<s3::index::Listing>,
}

impl Planned {
    /// Uploads active within the `--min-age` window, newest first.
    pub fn active_uploads(&self) -> Vec<&Upload> {
        let mut active: Vec<&Upload> = self
            .uploads
            .iter()
            .filter(|u| self.cutoff.is_some_and(|c| u.last_activity > c))
            .collect();
        active.sort_by_key(|u| std::cmp::Reverse(u.last_activity));
        active
    }
}

/// Runs the pipeline in a thread pool of its own.
pub struct Collector {
    config: GcConfig,
    pool: ThreadPool,
}

/// Threads of the sweep by default. A deletion spends most of its time
/// waiting on the filesystem, not on the CPU: without a journal, ext4 mounted
/// with `discard` sends each freed block's discard to the disk inside the
/// `unlink` and waits for it. On two cores, a 600k-file registry swept with 16
/// threads took less than half the time of 2; on a slower disk, 64 took
/// 29-30 s where 16 took 34-53 s, and on a fast one they were even.
pub const DEFAULT_DELETE_THREADS: usize = 64;

/// Reading threads by default, at the least: reading a tree that is not in
/// the page cache waits on the disk, one request per thread, and a few
/// requests in flight leave it idle. On the 600k-file benchmark tree, cold,
/// on two cores: 2 threads read it in 12.4 s, 16 to 256 in 6.4 to 8.5 s (the
/// CPUs' system time, 7 to 9 s, bounds it there); on a slower disk 2 took
/// 31.6 to 43.5 s and 32 took 9.2 s. Warm, 2 and 32 were even (1.04 to
/// 1.14 s), and 32 cost 13 MiB more.
pub const MIN_DEFAULT_THREADS: usize = 32;

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Reading threads when `--threads` is not given: one per CPU, and at least
/// [`MIN_DEFAULT_THREADS`].
pub fn default_threads() -> usize {
    cpus().max(MIN_DEFAULT_THREADS)
}

/// A thread pool of its own: `threads` workers, named `name-<i>`. When
/// `None`, [`default_threads`]; where the system refuses that many (a limit
/// on processes or on address space: each thread reserves a stack, and the
/// allocator an arena), one per CPU, which reads as well from the cache.
pub(crate) fn thread_pool(threads: Option<usize>, name: &'static str) -> Result<ThreadPool> {
    match threads {
        Some(threads) => named_thread_pool(threads, name),
        None => {
            named_thread_pool(default_threads(), name).or_else(|_| named_thread_pool(cpus(), name))
        }
    }
}

fn named_thread_pool(threads: usize, name: &'static str) -> Result<ThreadPool> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool {
            threads,
            reason: e.to_string(),
        })
}

/// The policy's decisions over `index`; a protected tag names the
/// reference that protects it.
fn evaluate_policy(
    policy: &Policy,
    protect: Option<(&ProtectList, &Protection)>,
    pulls: Option<&pulls::PullLogs>,
    index: &Index,
    now: SystemTime,
    cutoff: Option<SystemTime>,
) -> Vec<RepositoryDecision> {
    policy.evaluate(index, now, cutoff, |r, t| {
        let repo = &index.repositories[r];
        let tag = &repo.tags[t];
        let protected_by = protect.and_then(|(list, protection)| {
            protection
                .tag(r, &tag.name, tag.current.as_ref())
                .map(|i| list.references[i].text.as_str())
        });
        TagFacts {
            tag,
            pushed: tag.pushed,
            protected_by,
            pulls: pulls.map_or_else(Default::default, |p| p.tag_pulls(&repo.name, tag)),
        }
    })
}

/// Keeps, as too recent, every deleted tag whose current manifest or history
/// is among the recent `roots`; whether any was.
fn hold_recent_tags(
    decisions: &mut [RepositoryDecision],
    index: &Index,
    roots: &[(u32, Digest)],
) -> bool {
    if roots.is_empty() {
        return false;
    }
    let roots: std::collections::HashSet<&(u32, Digest)> = roots.iter().collect();
    let mut held = false;
    for decision in decisions {
        let r = decision.repository;
        let repo = &index.repositories[r as usize];
        for d in decision.tags.iter_mut().filter(|d| d.deletes()) {
            let tag = &repo.tags[d.tag as usize];
            let mut held_by = tag.current.iter().chain(&tag.history);
            if held_by.any(|digest| roots.contains(&(r, *digest))) {
                d.why = Why::TooRecent;
                held = true;
            }
        }
    }
    held
}

impl Collector {
    /// A collector for `config`.
    pub fn new(config: GcConfig) -> Result<Collector> {
        let pool = thread_pool(config.threads, "regsweep")?;
        Ok(Collector { config, pool })
    }

    /// The configuration.
    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Indexes, marks and plans. Deletes nothing. A stop request
    /// ([`GcConfig::interrupt`]) ends it with [`Error::Interrupted`].
    pub fn plan(&self) -> Result<Planned> {
        let storage = &self.config.storage;
        let layout = storage.layout();
        let progress = self.config.progress;
        let now = SystemTime::now();
        // A minimum age reaching back before any representable time keeps
        // everything; it never means "no minimum age".
        let cutoff = (!self.config.min_age.is_zero())
            .then(|| clock::cutoff(now, self.config.min_age.duration()));
        let purge_uploads_before = self
            .config
            .purge_uploads_older_than
            .and_then(|age| now.checked_sub(age.duration()));
        let interrupt = self.config.interrupt;
        let pull_window = self.config.policy.as_ref().and_then(Policy::pull_window);
        let protect_within = self
            .config
            .pull_logs
            .as_ref()
            .and_then(|c| c.protect_within);
        // The logs must reach back over the longer of the two windows.
        let coverage_window = pull_window
            .clone()
            .into_iter()
            .chain(protect_within.map(|w| (w, format!("--protect-pulled-within {w}"))))
            .max_by_key(|(window, _)| window.duration());
        if let (Some((_, rule)), None) = (&pull_window, &self.config.pull_logs) {
            return Err(Error::PullLog(pulls::PullLogError::Needed {
                rule: rule.clone(),
            }));
        }
        self.pool.install(|| {
            interrupt.check(Phase::Index)?;
            let task = progress.spinner("indexing", "files");
            let options = storage::fs::index::IndexOptions {
                check_layer_links: self.config.check_layer_links,
                defer_signatures: true,
                interrupt,
            };
            let (mut index, listing) = match storage {
                Storage::Filesystem(layout) => {
                    (storage::fs::index::build(layout, options, &task)?, None)
                }
                Storage::S3(bucket) => {
                    let options = s3::index::ListOptions {
                        cutoff,
                        // Pulls by tag are attributed by these times.
                        tag_history_times: self.config.pull_logs.is_some(),
                        check_layer_links: self.config.check_layer_links,
                        check_tag_index_links: false,
                    };
                    let (index, listing) = s3::index::build(bucket, options, &interrupt, &task)?;
                    (index, Some(listing))
                }
            };
            task.finish();
            interrupt.check(Phase::Plan)?;
            // A keep pattern that keeps nothing it was meant to is refused
            // here, before anything is decided.
            let pattern_warnings = match &self.config.policy {
                Some(policy) => policy
                    .check_patterns(&index, &layout.repositories_dir())
                    .map_err(Error::Policy)?,
                None => Vec::new(),
            };
            interrupt.check(Phase::Plan)?;
            let history_times = match &listing {
                Some(listing) => pulls::HistoryTimes::Listed(&listing.tag_history_times),
                None => pulls::HistoryTimes::Filesystem(layout),
            };
            let mut pull_log_warnings = Vec::new();
            let pull_logs = match &self.config.pull_logs {
                Some(config) => {
                    let task = progress.spinner("reading pull logs", "lines");
                    let mut logs =
                        pulls::PullLogs::read(config, history_times, &index, now, &interrupt, &task)?;
                    task.finish();
                    if let Some((window, rule)) = &coverage_window {
                        logs.report
                            .check_coverage(rule, *window, now, config.assume_complete)
                            .map_err(Error::PullLog)?;
                    }
                    let window_start = coverage_window
                        .as_ref()
                        .map(|(window, _)| clock::cutoff(now, window.duration()));
                    pull_log_warnings = logs.report.warnings(window_start, now);
                    Some(logs)
                }
                None => None,
            };
            interrupt.check(Phase::Plan)?;
            let (uploads, upload_warnings) = match &listing {
                Some(listing) => (listing.uploads.clone(), Vec::new()),
                None => hygiene::scan_uploads(layout, &index),
            };
            // The s3 driver writes whole objects: no temporary files.
            let temporary_files = if self.config.scan_temporary_files && listing.is_none() {
                hygiene::scan_temporary_files(layout, &index)
            } else {
                Vec::new()
            };
            // Every manifest, read before the roots are chosen: a pull log's
            // response sizes and content types are matched against them.
            let task = progress.spinner("reading manifests", "manifests read");
            interrupt.check(Phase::Plan)?;
            let loaded = storage.load_manifests(&index, &task, &interrupt)?;
            task.finish();
            let pull_logs = pull_logs.map(|logs| logs.settle(&index, &loaded));
            let protection = self.config.protect.as_ref().map(|list| list.resolve(&index));
            let protect = self.config.protect.as_ref().zip(protection.as_ref());
            // Protected manifests are roots in every mode.
            let mut protected_roots: Vec<(u32, Digest)> = protection
                .iter()
                .flat_map(|p| {
                    (0..index.repositories.len())
                        .flat_map(move |r| p.digests(r).map(move |(d, _)| (r as u32, *d)))
                })
                .collect();
            // So are manifests pulled by digest within
            // --protect-pulled-within: deployments pinned by digest.
            let mut protected_by_digest_pull = 0;
            if let (Some(logs), Some(window)) = (&pull_logs, protect_within) {
                let since = clock::cutoff(now, window.duration());
                let by_name: std::collections::HashMap<&str, usize> = index
                    .repositories
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.name.as_str(), i))
                    .collect();
                for (repository, digest) in logs.pulled_by_digest_since(since) {
                    let Some(&r) = by_name.get(repository) else {
                        continue;
                    };
                    let revisions = &index.repositories[r].revisions;
                    if revisions.binary_search_by(|v| v.digest.cmp(&digest)).is_ok() {
                        protected_roots.push((r as u32, digest));
                        protected_by_digest_pull += 1;
                    }
                }
            }
            let mut decisions = match &self.config.policy {
                Some(policy) => {
                    evaluate_policy(policy, protect, pull_logs.as_ref(), &index, now, cutoff)
                }
                None => Vec::new(),
            };
            // The decisions hold what they need of the logs; the table goes.
            let pull_logs = pull_logs.map(|logs| pulls::PullLogReport {
                protected_by_digest_pull,
                ..logs.report
            });
            let mut dropped = retention::policy::dropped_tags(&decisions, index.repositories.len());
            let task = progress.spinner("marking", "manifests");
            interrupt.check(Phase::Plan)?;
            // Signatures of schema1 revisions, and of any revision whose
            // manifest is not known to be something else.
            // (A listing found every signature already.)
            if listing.is_none() {
                storage::fs::index::read_signatures(layout, &mut index, |digest| {
                    !matches!(loaded.get(digest), Some(Ok(refs)) if !refs.schema1)
                })?;
            }
            let delete_untagged = self.config.delete_untagged;
            let mut marking = mark::mark_with_policy(
                layout,
                &index,
                &loaded,
                delete_untagged,
                &protected_roots,
                &dropped,
            );
            task.finish();
            interrupt.check(Phase::Plan)?;
            // A repository kept whole (damage) keeps its tags too.
            let mut damaged = false;
            for decision in &mut decisions {
                if marking.repositories[decision.repository as usize].kept_whole {
                    decision.refused = None;
                    for d in decision.tags.iter_mut().filter(|d| d.deletes()) {
                        d.why = Why::Damaged;
                        damaged = true;
                    }
                }
            }
            if damaged {
                dropped = retention::policy::dropped_tags(&decisions, index.repositories.len());
            }
            let options = PlanOptions {
                hold: None,
                uploads: &uploads,
                cutoff,
                purge_uploads_before,
                remove_empty_repos: self.config.remove_empty_repos,
                temporary_files: &temporary_files,
                now: Some(now),
                dropped_tags: &[],
            };
            let mut plan = Plan::build(
                &index,
                &marking,
                &PlanOptions {
                    dropped_tags: &dropped,
                    ..options
                },
            );
            let mut stats = 0;
            let times_source = match &listing {
                Some(listing) => recent::Times::Listed(layout, &listing.recent),
                None => recent::Times::Filesystem(layout),
            };
            if let Some(cutoff) = cutoff {
                // Recent revisions first: they become roots, marking runs
                // again, and only what is still garbage is looked at next.
                let times = (now, cutoff);
                let mut recent =
                    recent::find_until(
                    times_source,
                    &index,
                    &plan,
                    times,
                    true,
                    &interrupt,
                )?;
                // A tag whose image is too recent to go stays with it for
                // now: deleting the tag alone would leave its manifests
                // looking like any untagged revision.
                if hold_recent_tags(&mut decisions, &index, &recent.roots) {
                    dropped = retention::policy::dropped_tags(&decisions, index.repositories.len());
                }
                let first = plan;
                let remarked;
                let after_roots = if recent.roots.is_empty() {
                    &first
                } else {
                    let mut roots = protected_roots.clone();
                    roots.extend(recent.roots.iter().copied());
                    marking = mark::mark_with_policy(
                        layout,
                        &index,
                        &loaded,
                        delete_untagged,
                        &roots,
                        &dropped,
                    );
                    remarked = Plan::build(
                        &index,
                        &marking,
                        &PlanOptions {
                            dropped_tags: &dropped,
                            ..options
                        },
                    );
                    &remarked
                };
                interrupt.check(Phase::Plan)?;
                recent.merge(recent::find_until(
                    times_source,
                    &index,
                    after_roots,
                    times,
                    false,
                    &interrupt,
                )?);
                stats = recent.stats;
                plan = if recent.is_empty() {
                    first
                } else {
                    let mut held = Plan::build(
                        &index,
                        &marking,
                        &PlanOptions {
                            hold: Some(&recent.hold),
                            dropped_tags: &dropped,
                            ..options
                        },
                    );
                    held.keep_difference(&first, &recent.hold);
                    held
                };
            }
            let policy_report = self.config.policy.as_ref().map(|policy| {
                let deleted_blobs: std::collections::HashSet<crate::index::BlobId> = plan
                    .candidates
                    .iter()
                    .filter(|c| c.kind == CandidateKind::Blob)
                    .filter_map(|c| index.blob_id(&c.digest))
                    .collect();
                let freed = retention::policy::freed_bytes(&index, &loaded, &decisions, |id| {
                    deleted_blobs.contains(&id)
                });
                PolicyReport::new(
                    policy,
                    self.config.protect.as_ref().map(|p| p.path.as_path()),
                    &index,
                    &decisions,
                    &freed,
                )
            });
            drop(loaded);
            interrupt.check(Phase::Plan)?;
            let mut warnings = index.warnings.clone();
            warnings.extend(marking.warnings);
            warnings.extend(upload_warnings);
            warnings.extend(pattern_warnings);
            warnings.extend(pull_log_warnings);
            if let Some(report) = &policy_report {
                for repo in &report.repositories {
                    let Some(refused) = &repo.refused else {
                        continue;
                    };
                    warnings.push(Warning::new(
                        WarningKind::PolicyRefused,
                        layout.tags_dir(&repo.name),
                        Some(&repo.name),
                        format!(
                            "the policy would delete all {} tags of `{}` ({}); kept them all (--allow-empty-repos to allow)",
                            refused.tags,
                            repo.name,
                            refused.rules.join(", ")
                        ),
                    ));
                }
            }
            if let (Some(list), Some(protection)) = (&self.config.protect, &protection) {
                for unmatched in &protection.unmatched {
                    let reference = &list.references[unmatched.reference];
                    warnings.push(Warning::new(
                        WarningKind::ProtectedNotFound,
                        &list.path,
                        reference.repository.as_deref(),
                        format!(
                            "line {}: `{}`: {}; nothing to protect there",
                            reference.line, reference.text, unmatched.message
                        ),
                    ));
                }
            }
            let protect_report = self
                .config
                .protect
                .as_ref()
                .zip(protection.as_ref())
                .map(|(list, protection)| list.report(protection));
            warnings.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
            Ok(Planned {
                index,
                plan,
                warnings,
                uploads,
                now,
                cutoff,
                stats,
                policy: policy_report,
                protect: protect_report,
                pull_logs,
                listing,
            })
        })
    }

    /// Uploads in progress mean the registry is taking pushes: a sweep is
    /// refused unless `force`; a dry run (or a forced sweep) gets a warning.
    pub fn check_uploads(&self, planned: &mut Planned, dry_run: bool, force: bool) -> Result<()> {
        let active = planned.active_uploads();
        let Some(newest) = active.first() else {
            return Ok(());
        };
        let repo = &planned.index.repositories[newest.repository as usize].name;
        let path = self.config.storage.name().join(&newest.path);
        let message = format!(
            "{} upload(s) active within --min-age {} (newest: repository `{repo}`, {} ago): the registry is taking pushes, and a sweep now could delete layers a push is about to reference. Put it in read-only mode first (storage.maintenance.readonly.enabled: true in its config.yml, then restart it) or stop it; --force sweeps anyway",
            active.len(),
            self.config.min_age,
            crate::duration::human(clock::age(planned.now, newest.last_activity)),
        );
        if !dry_run && !force {
            return Err(Error::RegistryActive { path, message });
        }
        planned.warnings.push(Warning::new(
            WarningKind::UploadInProgress,
            path,
            Some(repo),
            message,
        ));
        Ok(())
    }

    /// Deletes what `planned` lists, or moves it into `disposal`'s batch.
    /// `clean_up` also removes the empty directories earlier runs left
    /// (a `--trash` run with nothing to move has no journal to record them
    /// in, and leaves them). `index_began` is when the index began, on the
    /// storage's own clock (the lock file's time): anything the plan depends
    /// on modified since stops the sweep (see [`storage::fs::recheck`]).
    pub fn sweep(
        &self,
        planned: &Planned,
        disposal: Disposal,
        clean_up: bool,
        index_began: SystemTime,
    ) -> SweepOutcome {
        let threads = self.config.delete_threads.unwrap_or(DEFAULT_DELETE_THREADS);
        // Without threads of its own (the system refused them), the sweep
        // runs in the workers' pool: slower, never skipped.
        let deleters = named_thread_pool(threads, "regsweep-delete").ok();
        let options = SweepOptions {
            cutoff: planned.cutoff,
            interrupt: self.config.interrupt,
            ..self.config.sweep
        };
        let layout = match &self.config.storage {
            Storage::Filesystem(layout) => layout,
            Storage::S3(bucket) => {
                let listing = planned.listing.as_ref();
                let empty = s3::index::Listing::default();
                return s3::sweep::sweep(
                    bucket,
                    &planned.index,
                    &planned.plan,
                    listing.unwrap_or(&empty),
                    options,
                    Some(index_began),
                    None,
                    self.config.progress,
                );
            }
        };
        deleters.as_ref().unwrap_or(&self.pool).install(|| {
            let possibly_empty = if clean_up {
                hygiene::possibly_empty_dirs(layout, &planned.index)
            } else {
                Vec::new()
            };
            let recheck = storage::fs::recheck::Recheck::new(
                layout,
                &planned.index,
                &planned.plan,
                index_began,
            );
            sweep::sweep(
                layout,
                &planned.index,
                &planned.plan,
                options,
                disposal,
                sweep::Surroundings {
                    possibly_empty: &possibly_empty,
                    recheck: Some(&recheck),
                },
                self.config.progress,
            )
        })
    }

    /// Moves what `planned` lists into `batch`, a trash on the storage's
    /// bucket (see [`s3::trash`]); `None` when the storage is no bucket.
    pub fn sweep_into_bucket_trash(
        &self,
        planned: &Planned,
        batch: &s3::trash::S3Batch,
        index_began: SystemTime,
    ) -> Option<SweepOutcome> {
        let Storage::S3(bucket) = &self.config.storage else {
            return None;
        };
        let options = SweepOptions {
            cutoff: planned.cutoff,
            interrupt: self.config.interrupt,
            ..self.config.sweep
        };
        let empty = s3::index::Listing::default();
        Some(s3::sweep::sweep(
            bucket,
            &planned.index,
            &planned.plan,
            planned.listing.as_ref().unwrap_or(&empty),
            options,
            Some(index_began),
            Some(batch),
            self.config.progress,
        ))
    }

    /// The report of a run; `outcome` is `None` when nothing was swept;
    /// `trash` names the batch of a `--trash` run.
    pub fn report<'a>(
        &self,
        planned: &'a Planned,
        outcome: Option<SweepOutcome>,
        trash: Option<report::TrashRecord>,
    ) -> Report<'a> {
        let mut report = Report::new(
            self.config.storage.name(),
            self.config.delete_untagged,
            &planned.index,
            &planned.plan,
            planned.warnings.clone(),
            outcome,
            report::RunInfo {
                min_age: self.config.min_age,
                uploads_in_progress: planned.active_uploads().len() as u64,
                trash,
                blob_cache: self.config.blob_cache.clone(),
            },
        );
        report.policy = planned.policy.as_ref();
        report.protect = planned.protect.as_ref();
        report.pull_logs = planned.pull_logs.as_ref();
        report.s3_requests = self
            .config
            .storage
            .bucket()
            .map(s3::S3Storage::request_report);
        report
    }
}
