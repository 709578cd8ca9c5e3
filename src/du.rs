//! `regsweep du`: where the bytes of a registry are, per repository.
//!
//! From one index and one marking (the same as `gc`'s), per repository:
//! - **referenced**: the distinct blobs its live manifests are or reference
//!   (manifest blobs, configs, layers, schema1 signatures); a repository kept
//!   whole because of damage references every blob it links;
//! - **exclusive**: those no other repository references: what deleting the
//!   repository (and collecting) would free;
//! - **shared**: referenced minus exclusive;
//! - **reclaimable**: what `gc` (with the same `-m`) would free there now,
//!   as its plan counts it (a dead blob linked from several repositories
//!   counts in each).
//!
//! Exclusive bytes add up across repositories; referenced bytes do not
//! (shared blobs count in every repository that references them). Totals
//! are taken over distinct blobs.
//!
//! Pulls: with the registry's logs and a window (`--pull-log`,
//! `--pulled-within`), per repository its last pull and the bytes of its
//! images not pulled within the window: an image is a live manifest no tag
//! or digest pull reached within the window (a pull by tag reaches what the
//! tag could have served then; a tag pushed within the window counts as
//! pulled, as for `gc --keep-pulled-within`), with what only such images
//! hold (children of an index pulled, and referrers of a manifest pulled,
//! count as pulled). Those bytes are counted like referenced bytes (a blob
//! shared with another repository counts in each); the total counts each
//! blob once, and only when no pulled image anywhere holds it.
//!
//! Cost: with a price per GiB-month, every byte figure also has its monthly
//! cost, `bytes / 2^30 × price`, in the price's currency.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use rayon::prelude::*;
use serde::Serialize;

use crate::clock;
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::duration::Age;
use crate::error::{Error, Result};
use crate::gc::mark::{self, Loaded, Marking};
use crate::gc::plan::Plan;
use crate::index::{BlobId, Index, Repository};
use crate::interrupt::Interrupt;
use crate::progress::{Progress, Task};
use crate::report::{ExitStatus, human_bytes};
use crate::retention::pulls::{
    HistoryTimes, LastPull, Method, PullLogConfig, PullLogReport, PullLogs,
};
use crate::storage;
use crate::storage::fs::index::IndexOptions;
use crate::storage::layout::Layout;
use crate::storage::{Storage, s3};
use crate::warning::Warning;

/// Version of the JSON document's shape.
pub const DU_VERSION: u32 = 1;

/// Bytes in a GiB, the unit prices are given in.
const GIB: f64 = (1u64 << 30) as f64;

/// The usage of one repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepositoryUsage {
    /// The repository.
    pub name: String,
    /// Its tags.
    pub tags: u64,
    /// Its manifest revisions (with a link).
    pub manifests: u64,
    /// Bytes of the distinct blobs it references.
    pub referenced_bytes: u64,
    /// Bytes of the blobs only it references.
    pub exclusive_bytes: u64,
    /// Bytes of the blobs it shares with other repositories.
    pub shared_bytes: u64,
    /// Bytes `gc` would free here now.
    pub reclaimable_bytes: u64,
    /// Monthly costs, when a price is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_month: Option<Costs>,
    /// What the pull logs say, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls: Option<RepositoryPulls>,
}

/// A repository's pulls, with `--pull-log` and `--pulled-within`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepositoryPulls {
    /// Its latest pull in the logs, `null` when none.
    pub last_pull: Option<PullSeen>,
    /// Live manifests not pulled within the window.
    pub unpulled_manifests: u64,
    /// Bytes of the distinct blobs only those manifests hold here.
    pub unpulled_bytes: u64,
}

/// One pull, as the JSON report gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PullSeen {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// `GET`, `HEAD`, or `unread_line` (a line not fully read that names
    /// the manifest).
    pub method: &'static str,
    /// The tag or digest the line named.
    pub reference: String,
    /// The client's user agent, when logged.
    pub user_agent: Option<String>,
}

impl PullSeen {
    fn new(reference: &str, pull: &LastPull) -> PullSeen {
        PullSeen {
            time: crate::clock::rfc3339(pull.time),
            method: match pull.method {
                Method::Get => "GET",
                Method::Head => "HEAD",
                Method::Unknown => "unread_line",
            },
            reference: reference.to_owned(),
            user_agent: pull.user_agent.as_deref().map(str::to_owned),
        }
    }
}

/// The pull logs `du` reads, and the window it asks about.
pub struct PullWindow<'a> {
    /// The logs, read.
    pub logs: &'a PullLogs,
    /// `--pulled-within`.
    pub within: Age,
    /// Its start: a pull at or after it is within.
    pub since: SystemTime,
}

/// The pull part of [`Usage`].
#[derive(Debug, Clone, Serialize)]
pub struct PullUsage {
    /// The window, as given (`30d`).
    pub pulled_within: String,
    /// The window in seconds.
    pub pulled_within_seconds: u64,
    /// Its start (RFC 3339, UTC).
    pub since: String,
    /// Live manifests, over every repository, not pulled within it.
    pub unpulled_manifests: u64,
    /// Bytes of the distinct blobs only such manifests hold, over the
    /// registry.
    pub unpulled_bytes: u64,
    /// What the logs held, whether they cover the window, and who pulled.
    pub pull_logs: PullLogReport,
}

/// Monthly cost of a repository's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Costs {
    /// Of its referenced bytes.
    pub referenced: f64,
    /// Of its exclusive bytes.
    pub exclusive: f64,
    /// Of its reclaimable bytes.
    pub reclaimable: f64,
}

/// The whole registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Repositories.
    pub repositories: u64,
    /// Blobs in storage.
    pub blobs: u64,
    /// Bytes of all blob data.
    pub blob_bytes: u64,
    /// Bytes of the distinct blobs some repository references.
    pub referenced_bytes: u64,
    /// Bytes of the blobs referenced by more than one repository.
    pub shared_bytes: u64,
    /// Bytes `gc` would free now.
    pub reclaimable_bytes: u64,
    /// Monthly cost of all blob data, when a price is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_cost_per_month: Option<f64>,
    /// Monthly cost of the reclaimable bytes, when a price is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimable_cost_per_month: Option<f64>,
}

/// The usage of a registry.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Version of this shape, [`DU_VERSION`].
    pub regsweep_du: u32,
    /// The storage root.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub storage_root: PathBuf,
    /// Reclaimable bytes count untagged manifests as garbage (`-m`).
    pub delete_untagged: bool,
    /// The price per GiB-month costs are computed with.
    pub price_per_gib_month: Option<f64>,
    /// Totals over the registry.
    pub total: Totals,
    /// Repositories, most referenced bytes first (ties by name), at most
    /// `--top` of them.
    pub repositories: Vec<RepositoryUsage>,
    /// Repositories left out by `--top`.
    pub repositories_not_shown: u64,
    /// Pulls, with `--pull-log` and `--pulled-within`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls: Option<PullUsage>,
    /// Damage found (what it made regsweep keep).
    pub warnings: Vec<Warning>,
    /// 0, or 1 when there are warnings.
    pub exit_code: ExitStatus,
}

/// What `du` is asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct DuOptions {
    /// Reclaimable counts untagged manifests as garbage.
    pub delete_untagged: bool,
    /// Keep only the first `top` repositories.
    pub top: Option<usize>,
    /// Price per GiB-month.
    pub price_per_gib_month: Option<f64>,
}

/// Monthly cost of `bytes` at `price` per GiB-month.
pub fn monthly_cost(bytes: u64, price: f64) -> f64 {
    bytes as f64 / GIB * price
}

/// Blobs a repository references, sorted and distinct.
fn referenced_blobs(
    index: &Index,
    repo: usize,
    marking: &Marking,
    loaded: &DigestMap<Loaded>,
) -> Vec<BlobId> {
    let repository = &index.repositories[repo];
    let mark = &marking.repositories[repo];
    let mut ids = manifest_blobs(index, repository, loaded, &mark.live, |d| mark.is_live(d));
    if mark.kept_whole {
        ids.extend(
            repository
                .layer_links
                .iter()
                .filter_map(|d| index.blob_id(d)),
        );
        ids.extend(
            repository
                .foreign_links
                .iter()
                .filter_map(|l| index.blob_id(&l.target)),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The blobs `manifests` of `repository` hold: each manifest's own blob,
/// what it stores, and the signatures of the revisions `holds` counts in.
/// Unsorted, with repeats.
fn manifest_blobs(
    index: &Index,
    repository: &Repository,
    loaded: &DigestMap<Loaded>,
    manifests: &DigestSet,
    holds: impl Fn(&Digest) -> bool,
) -> Vec<BlobId> {
    let mut ids = Vec::new();
    for digest in manifests {
        ids.extend(index.blob_id(digest));
        if let Some(Ok(refs)) = loaded.get(digest) {
            ids.extend_from_slice(&refs.stored);
        }
    }
    for revision in repository.revisions.iter().filter(|r| holds(&r.digest)) {
        ids.extend(revision.signatures.iter().filter_map(|d| index.blob_id(d)));
    }
    ids
}

/// The blobs of a repository its images pulled within the window hold,
/// sorted and distinct, and how many of its live manifests are not pulled.
fn pulled_blobs(
    index: &Index,
    repo: usize,
    marking: &Marking,
    loaded: &DigestMap<Loaded>,
    window: &PullWindow,
) -> (Vec<BlobId>, u64) {
    let repository = &index.repositories[repo];
    let mark = &marking.repositories[repo];
    if mark.kept_whole {
        // Damage: nothing there is taken as unused.
        return (referenced_blobs(index, repo, marking, loaded), 0);
    }
    let name = repository.name.as_str();
    let within = |pull: Option<&LastPull>| pull.is_some_and(|p| p.time >= window.since);
    let mut pulled: Vec<Digest> = Vec::new();
    for tag in &repository.tags {
        let Some(current) = tag.current else { continue };
        let pushed = tag.pushed.is_some_and(|t| t >= window.since);
        if pushed || within(window.logs.tag_pulls(name, tag).newest()) {
            pulled.push(current);
        }
    }
    pulled.extend(
        mark.live
            .iter()
            .filter(|d| within(window.logs.last_pull(name, &d.to_string()))),
    );
    // Referrers (signatures, SBOMs) go with the manifest they are about.
    let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
    for digest in &mark.live {
        if let Some(Ok(refs)) = loaded.get(digest) {
            if let Some(subject) = refs.subject {
                referrers.entry(subject).or_default().push(*digest);
            }
        }
    }
    let mut held = DigestSet::default();
    while let Some(digest) = pulled.pop() {
        if !mark.live.contains(&digest) || !held.insert(digest) {
            continue;
        }
        if let Some(Ok(refs)) = loaded.get(&digest) {
            pulled.extend(refs.children.iter().copied());
        }
        if let Some(list) = referrers.get(&digest) {
            pulled.extend(list.iter().copied());
        }
    }
    let mut ids = manifest_blobs(index, repository, loaded, &held, |d| held.contains(d));
    ids.sort_unstable();
    ids.dedup();
    let unpulled = mark.live.len().saturating_sub(held.len()) as u64;
    (ids, unpulled)
}

/// Per repository, its last pull and what its images not pulled within the
/// window hold; and over the registry, the manifests and bytes no pulled
/// image holds.
fn pull_usage(
    index: &Index,
    marking: &Marking,
    loaded: &DigestMap<Loaded>,
    per_repo: &[Vec<BlobId>],
    window: &PullWindow,
) -> (Vec<RepositoryPulls>, u64, u64) {
    let held: Vec<(Vec<BlobId>, u64)> = (0..index.repositories.len())
        .into_par_iter()
        .map(|r| pulled_blobs(index, r, marking, loaded, window))
        .collect();
    let mut held_anywhere = vec![false; index.blobs.len()];
    for (ids, _) in &held {
        for id in ids {
            held_anywhere[*id as usize] = true;
        }
    }
    let mut unpulled_anywhere = vec![false; index.blobs.len()];
    let bytes = |id: &BlobId| index.blobs[*id as usize].bytes();
    let repositories = index
        .repositories
        .iter()
        .zip(per_repo)
        .zip(&held)
        .map(|((repository, referenced), (held, unpulled_manifests))| {
            let unpulled: Vec<&BlobId> = referenced
                .iter()
                .filter(|id| held.binary_search(id).is_err())
                .collect();
            for id in &unpulled {
                unpulled_anywhere[**id as usize] = true;
            }
            RepositoryPulls {
                last_pull: window
                    .logs
                    .last_pull_in(&repository.name)
                    .map(|(reference, pull)| PullSeen::new(&reference, pull)),
                unpulled_manifests: *unpulled_manifests,
                unpulled_bytes: unpulled.into_iter().map(bytes).sum(),
            }
        })
        .collect();
    let unpulled_bytes = (0..index.blobs.len())
        .filter(|id| unpulled_anywhere[*id] && !held_anywhere[*id])
        .map(|id| index.blobs[id].bytes())
        .sum();
    let unpulled_manifests = held.iter().map(|(_, n)| n).sum();
    (repositories, unpulled_manifests, unpulled_bytes)
}

/// Computes the usage from a marked index, the manifests it loaded, and the
/// plan `gc` would make; with pull logs, what was not pulled within the
/// window.
#[allow(clippy::too_many_arguments)]
pub fn usage(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    marking: &Marking,
    plan: &Plan,
    warnings: Vec<Warning>,
    options: DuOptions,
    pulls: Option<&PullWindow>,
) -> Usage {
    const NOBODY: u32 = u32::MAX;
    const SEVERAL: u32 = u32::MAX - 1;
    let per_repo: Vec<Vec<BlobId>> = (0..index.repositories.len())
        .into_par_iter()
        .map(|r| referenced_blobs(index, r, marking, loaded))
        .collect();
    let mut owner = vec![NOBODY; index.blobs.len()];
    for (r, ids) in per_repo.iter().enumerate() {
        for id in ids {
            let o = &mut owner[*id as usize];
            *o = if *o == NOBODY { r as u32 } else { SEVERAL };
        }
    }
    let bytes = |id: &BlobId| index.blobs[*id as usize].bytes();
    let reclaimable: std::collections::HashMap<&str, u64> = plan
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.bytes))
        .collect();
    let price = options.price_per_gib_month;
    let pulled = pulls.map(|window| pull_usage(index, marking, loaded, &per_repo, window));
    let mut repositories: Vec<RepositoryUsage> = index
        .repositories
        .iter()
        .zip(&per_repo)
        .enumerate()
        .map(|(r, (repo, ids))| {
            let referenced_bytes: u64 = ids.iter().map(bytes).sum();
            let exclusive_bytes: u64 = ids
                .iter()
                .filter(|id| owner[**id as usize] == r as u32)
                .map(bytes)
                .sum();
            let reclaimable_bytes = reclaimable.get(repo.name.as_str()).copied().unwrap_or(0);
            RepositoryUsage {
                name: repo.name.clone(),
                tags: repo.tags.len() as u64,
                manifests: repo.revisions.iter().filter(|r| r.linked).count() as u64,
                referenced_bytes,
                exclusive_bytes,
                shared_bytes: referenced_bytes - exclusive_bytes,
                reclaimable_bytes,
                cost_per_month: price.map(|p| Costs {
                    referenced: monthly_cost(referenced_bytes, p),
                    exclusive: monthly_cost(exclusive_bytes, p),
                    reclaimable: monthly_cost(reclaimable_bytes, p),
                }),
                pulls: pulled.as_ref().map(|(per_repo, _, _)| per_repo[r].clone()),
            }
        })
        .collect();
    repositories.sort_by(|a, b| {
        b.referenced_bytes
            .cmp(&a.referenced_bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    let shown = options.top.unwrap_or(usize::MAX).min(repositories.len());
    let not_shown = (repositories.len() - shown) as u64;
    repositories.truncate(shown);

    let blob_bytes: u64 = index.blobs.iter().map(|b| b.bytes()).sum();
    let (mut referenced_bytes, mut shared_bytes) = (0, 0);
    for (id, o) in owner.iter().enumerate() {
        let b = index.blobs[id].bytes();
        if *o != NOBODY {
            referenced_bytes += b;
        }
        if *o == SEVERAL {
            shared_bytes += b;
        }
    }
    let reclaimable_bytes = plan.reclaimable.bytes;
    let exit_code = if warnings.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    };
    Usage {
        regsweep_du: DU_VERSION,
        storage_root: layout.root().to_path_buf(),
        delete_untagged: options.delete_untagged,
        price_per_gib_month: price,
        total: Totals {
            repositories: index.repositories.len() as u64,
            blobs: index.blobs.len() as u64,
            blob_bytes,
            referenced_bytes,
            shared_bytes,
            reclaimable_bytes,
            blob_cost_per_month: price.map(|p| monthly_cost(blob_bytes, p)),
            reclaimable_cost_per_month: price.map(|p| monthly_cost(reclaimable_bytes, p)),
        },
        repositories,
        repositories_not_shown: not_shown,
        pulls: pulls
            .zip(pulled)
            .map(|(window, (_, manifests, bytes))| PullUsage {
                pulled_within: window.within.to_string(),
                pulled_within_seconds: window.within.as_secs(),
                since: crate::clock::rfc3339(window.since),
                unpulled_manifests: manifests,
                unpulled_bytes: bytes,
                pull_logs: window.logs.report.clone(),
            }),
        warnings,
        exit_code,
    }
}

/// `regsweep du`: indexes and marks `layout` in a pool of `threads`, then
/// computes where the bytes are; with `pulls` (the logs, and the window
/// `--pulled-within` asks about), also what was not pulled. Logs that do
/// not cover the window are refused, unless taken as complete. Deletes
/// nothing.
pub fn disk_usage(
    storage: &Storage,
    options: DuOptions,
    pulls: Option<(&PullLogConfig, Age)>,
    threads: Option<usize>,
    progress: Progress,
) -> Result<Usage> {
    let layout = storage.layout();
    crate::gc::thread_pool(threads, "regsweep")?.install(|| {
        let now = SystemTime::now();
        let task = progress.spinner("indexing", "files");
        let interrupt = Interrupt::default();
        let (index, listing) = match storage {
            Storage::Filesystem(layout) => (
                storage::fs::index::build(layout, IndexOptions::default(), &task)?,
                None,
            ),
            Storage::S3(bucket) => {
                let options = s3::index::ListOptions {
                    cutoff: None,
                    tag_history_times: pulls.is_some(),
                    ..Default::default()
                };
                let (index, listing) = s3::index::build(bucket, options, &interrupt, &task)?;
                (index, Some(listing))
            }
        };
        let history_times = match &listing {
            Some(listing) => HistoryTimes::Listed(&listing.tag_history_times),
            None => HistoryTimes::Filesystem(layout),
        };
        task.finish();
        let mut warnings = index.warnings.clone();
        let logs = match pulls {
            Some((config, within)) => {
                let task = progress.spinner("reading pull logs", "lines");
                let mut logs =
                    PullLogs::read(config, history_times, &index, now, &interrupt, &task)?;
                task.finish();
                let rule = format!("--pulled-within {within}");
                logs.report
                    .check_coverage(&rule, within, now, config.assume_complete)
                    .map_err(Error::PullLog)?;
                let since = clock::cutoff(now, within.duration());
                warnings.extend(logs.report.warnings(Some(since), now));
                Some((logs, within, since))
            }
            None => None,
        };
        let task = progress.spinner("marking", "manifests read");
        let loaded = storage.load_manifests(&index, &task, &interrupt)?;
        let logs = logs.map(|(logs, within, since)| (logs.settle(&index, &loaded), within, since));
        let window = logs.as_ref().map(|(logs, within, since)| PullWindow {
            logs,
            within: *within,
            since: *since,
        });
        let mut usage = compute_loaded(layout, &index, &loaded, warnings, options, window.as_ref());
        usage.storage_root = storage.name();
        task.finish();
        Ok(usage)
    })
}

/// Loads every manifest the index's repositories hold or reach, marks, and
/// plans; then computes the usage. Runs on the current rayon pool.
pub fn compute(
    layout: &Layout,
    index: &Index,
    warnings: Vec<Warning>,
    options: DuOptions,
    pulls: Option<&PullWindow>,
    progress: &Task,
) -> Usage {
    let loaded = mark::load_all(layout, index, progress);
    compute_loaded(layout, index, &loaded, warnings, options, pulls)
}

/// [`compute`], given every manifest the index's repositories hold or reach.
pub fn compute_loaded(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    mut warnings: Vec<Warning>,
    options: DuOptions,
    pulls: Option<&PullWindow>,
) -> Usage {
    let marking = mark::mark_loaded(layout, index, loaded, options.delete_untagged);
    let plan = Plan::new(index, &marking);
    warnings.extend(marking.warnings.iter().cloned());
    warnings.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    usage(
        layout, index, loaded, &marking, &plan, warnings, options, pulls,
    )
}

impl Usage {
    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes the table for people.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let mode = if self.delete_untagged {
            "untagged manifests count as reclaimable"
        } else {
            "untagged manifests kept"
        };
        writeln!(out, "regsweep du {} ({mode})", self.storage_root.display())?;
        writeln!(out)?;
        let cost = self.price_per_gib_month.is_some();
        write!(
            out,
            "{:<40} {:>11} {:>11} {:>11} {:>11}",
            "REPOSITORY", "REFERENCED", "EXCLUSIVE", "SHARED", "RECLAIMABLE"
        )?;
        if cost {
            write!(out, " {:>12} {:>12}", "COST/MONTH", "RECLAIM/MO")?;
        }
        if let Some(pulls) = &self.pulls {
            let unpulled = format!("NOT PULLED {}", pulls.pulled_within);
            write!(out, " {unpulled:>17}  LAST PULL")?;
        }
        writeln!(out)?;
        for r in &self.repositories {
            write!(
                out,
                "{:<40} {:>11} {:>11} {:>11} {:>11}",
                r.name,
                human_bytes(r.referenced_bytes),
                human_bytes(r.exclusive_bytes),
                human_bytes(r.shared_bytes),
                human_bytes(r.reclaimable_bytes)
            )?;
            if let Some(c) = &r.cost_per_month {
                write!(out, " {:>12.2} {:>12.2}", c.referenced, c.reclaimable)?;
            }
            if let Some(pulls) = &r.pulls {
                write!(
                    out,
                    " {:>17}  {}",
                    human_bytes(pulls.unpulled_bytes),
                    pulls
                        .last_pull
                        .as_ref()
                        .map_or_else(|| "never".to_owned(), describe_pull)
                )?;
            }
            writeln!(out)?;
        }
        if self.repositories_not_shown > 0 {
            writeln!(
                out,
                "… and {} more (--top to show more)",
                self.repositories_not_shown
            )?;
        }
        let t = &self.total;
        writeln!(out)?;
        writeln!(
            out,
            "{} repositories, {} blobs, {} stored; {} referenced ({} shared between repositories).",
            t.repositories,
            t.blobs,
            human_bytes(t.blob_bytes),
            human_bytes(t.referenced_bytes),
            human_bytes(t.shared_bytes)
        )?;
        write!(
            out,
            "Reclaimable now with `regsweep gc{}`: {}",
            if self.delete_untagged { " -m" } else { "" },
            human_bytes(t.reclaimable_bytes)
        )?;
        match (t.reclaimable_cost_per_month, t.blob_cost_per_month) {
            (Some(reclaim), Some(all)) => writeln!(
                out,
                ", {reclaim:.2} per month of the {all:.2} the storage costs."
            )?,
            _ => writeln!(out, ".")?,
        }
        if let Some(pulls) = &self.pulls {
            writeln!(
                out,
                "Not pulled within {} (since {}): {} in {}; a tag pushed within it counts as pulled.",
                pulls.pulled_within,
                pulls.since,
                human_bytes(pulls.unpulled_bytes),
                crate::text::counted(pulls.unpulled_manifests, "manifest", "manifests"),
            )?;
        }
        Ok(())
    }

    /// Writes the table, then with pull logs what they held (with
    /// `verbose`, also lines not read and who pulled most).
    pub fn write_human(&self, out: &mut impl Write, verbose: bool) -> io::Result<()> {
        self.write_table(out)?;
        if let Some(pulls) = &self.pulls {
            writeln!(out)?;
            pulls.pull_logs.write_human(out, verbose)?;
        }
        Ok(())
    }
}

/// `2026-12-01T10:00:00Z HEAD :latest, containerd/1.7`.
fn describe_pull(pull: &PullSeen) -> String {
    let reference = match pull.reference.strip_prefix("sha256:") {
        Some(hex) => format!("@sha256:{}", &hex[..hex.len().min(12)]),
        None => format!(":{}", pull.reference),
    };
    let method = if pull.method == "unread_line" {
        "a line not fully read naming"
    } else {
        pull.method
    };
    match &pull.user_agent {
        Some(ua) => format!("{} {method} {reference}, {ua}", pull.time),
        None => format!("{} {method} {reference}", pull.time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::gc::mark::{Refs, mark_loaded};
    use crate::index::{Blob, Repository, Revision, Tag};
    use crate::retention::pulls::{LastPull, Method, PullLogs};

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    fn repo(name: &str, revisions: &[u8], tags: &[(&str, u8)], links: &[u8]) -> Repository {
        Repository {
            name: name.into(),
            layer_links: links.iter().map(|n| d(*n)).collect(),
            revisions: revisions
                .iter()
                .map(|n| Revision {
                    digest: d(*n),
                    linked: true,
                    signatures: Vec::new(),
                })
                .collect(),
            tags: tags
                .iter()
                .map(|(name, n)| Tag {
                    name: (*name).into(),
                    current: Some(d(*n)),
                    history: vec![d(*n)],
                    pushed: None,
                })
                .collect(),
            ..Repository::default()
        }
    }

    /// `a`: tagged image 1 (layers 11, 12 shared with `b`, 13 own) and an
    /// untagged image 2 (layer 14). `b`: tagged image 3 (layers 11, 12, 15).
    /// Orphan blob 30. Blob n has 100 × n bytes.
    fn fixture() -> (Index, DigestMap<Loaded>) {
        let mut index = Index {
            blobs: [1, 2, 3, 11, 12, 13, 14, 15, 30]
                .iter()
                .map(|n| Blob::new(d(*n), Some(100 * u64::from(*n))))
                .collect(),
            repositories: vec![
                repo("a", &[1, 2], &[("v1", 1)], &[11, 12, 13, 14]),
                repo("b", &[3], &[("v1", 3)], &[11, 12, 15]),
            ],
            ..Index::default()
        };
        index.blobs.sort_by_key(|b| b.digest);
        let image = |index: &Index, blobs: &[u8]| -> Loaded {
            Ok(Refs {
                stored: blobs
                    .iter()
                    .map(|n| index.blob_id(&d(*n)).unwrap())
                    .collect(),
                ..Refs::default()
            })
        };
        let mut loaded = DigestMap::default();
        loaded.insert(d(1), image(&index, &[11, 12, 13]));
        loaded.insert(d(2), image(&index, &[14]));
        loaded.insert(d(3), image(&index, &[11, 12, 15]));
        (index, loaded)
    }

    fn run(delete_untagged: bool, top: Option<usize>, price: Option<f64>) -> Usage {
        let (index, loaded) = fixture();
        let layout = Layout::new("/s");
        let marking = mark_loaded(&layout, &index, &loaded, delete_untagged);
        let plan = Plan::new(&index, &marking);
        let options = DuOptions {
            delete_untagged,
            top,
            price_per_gib_month: price,
        };
        usage(
            &layout,
            &index,
            &loaded,
            &marking,
            &plan,
            Vec::new(),
            options,
            None,
        )
    }

    fn pull(days_ago: u64, method: Method) -> LastPull {
        LastPull {
            time: SystemTime::now() - std::time::Duration::from_secs(days_ago * 86_400),
            method,
            via: crate::retention::pulls::Via::Digest,
            user_agent: Some("containerd/1.7".into()),
        }
    }

    /// The fixture with `pulls` in the logs, asking about the last 30 days.
    fn run_pulls(
        index: &Index,
        loaded: &DigestMap<Loaded>,
        pulls: Vec<(&str, &str, LastPull)>,
    ) -> Usage {
        let layout = Layout::new("/s");
        let marking = mark_loaded(&layout, index, loaded, false);
        let plan = Plan::new(index, &marking);
        let logs = PullLogs::from_pulls(pulls);
        let within: Age = "30d".parse().unwrap();
        let window = PullWindow {
            logs: &logs,
            within,
            since: SystemTime::now() - within.duration(),
        };
        usage(
            &layout,
            index,
            loaded,
            &marking,
            &plan,
            Vec::new(),
            DuOptions::default(),
            Some(&window),
        )
    }

    fn repo_pulls<'a>(u: &'a Usage, name: &str) -> &'a RepositoryPulls {
        u.repositories
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.pulls.as_ref())
            .unwrap()
    }

    #[test]
    fn unpulled_bytes_leave_out_blobs_a_pulled_image_holds() {
        let (index, loaded) = fixture();
        // b's tag pulled 2 days ago; a's tag only 40 days ago.
        let u = run_pulls(
            &index,
            &loaded,
            vec![
                ("b", "v1", pull(2, Method::Head)),
                ("a", "v1", pull(40, Method::Get)),
            ],
        );
        let a = repo_pulls(&u, "a");
        assert_eq!(a.unpulled_manifests, 2, "images 1 and 2");
        assert_eq!(a.unpulled_bytes, 5300, "all a references");
        let last = a.last_pull.as_ref().unwrap();
        assert_eq!((last.method, last.reference.as_str()), ("GET", "v1"));
        assert_eq!(last.user_agent.as_deref(), Some("containerd/1.7"));
        let b = repo_pulls(&u, "b");
        assert_eq!((b.unpulled_manifests, b.unpulled_bytes), (0, 0));
        let total = u.pulls.as_ref().unwrap();
        // 1, 2, 13, 14: 11 and 12 are held by b's pulled image.
        assert_eq!(total.unpulled_bytes, 3000);
        assert_eq!(total.unpulled_manifests, 2);
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["pulls"]["unpulled_bytes"], 3000);
        assert_eq!(json["pulls"]["pulled_within"], "30d");
        assert_eq!(
            json["repositories"][0]["pulls"]["last_pull"]["method"],
            "GET"
        );
        let mut table = Vec::new();
        u.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("NOT PULLED 30d") && table.contains("Not pulled within 30d"),
            "{table}"
        );
    }

    #[test]
    fn a_pull_by_digest_holds_that_image_and_a_pushed_tag_counts_as_pulled() {
        let (mut index, loaded) = fixture();
        let digest = d(2).to_string();
        let u = run_pulls(&index, &loaded, vec![("a", &digest, pull(1, Method::Head))]);
        let a = repo_pulls(&u, "a");
        assert_eq!(a.unpulled_manifests, 1, "only image 1");
        assert_eq!(a.unpulled_bytes, 3700, "1, 11, 12, 13: not 2 nor 14");
        let b = repo_pulls(&u, "b");
        assert!(b.last_pull.is_none());
        assert_eq!(b.unpulled_bytes, 4100);
        index.repositories[1].tags[0].pushed = Some(SystemTime::now());
        let u = run_pulls(&index, &loaded, Vec::new());
        assert_eq!(repo_pulls(&u, "b").unpulled_bytes, 0, "pushed just now");
    }

    #[test]
    fn children_and_referrers_of_a_pulled_index_count_as_pulled() {
        let (mut index, _) = fixture();
        // In `a`, index 4 (tagged `multi`) lists image 2; manifest 5 is a
        // referrer of 4.
        index.blobs.push(Blob::new(d(4), Some(400)));
        index.blobs.push(Blob::new(d(5), Some(500)));
        index.blobs.sort_by_key(|b| b.digest);
        let mut fresh = DigestMap::default();
        let image = |index: &Index, blobs: &[u8]| -> Vec<BlobId> {
            blobs
                .iter()
                .map(|n| index.blob_id(&d(*n)).unwrap())
                .collect()
        };
        for (digest, blobs) in [(1, &[11, 12, 13][..]), (2, &[14]), (3, &[11, 12, 15])] {
            fresh.insert(
                d(digest),
                Ok(Refs {
                    stored: image(&index, blobs).into(),
                    ..Refs::default()
                }),
            );
        }
        fresh.insert(
            d(4),
            Ok(Refs {
                children: vec![d(2)].into(),
                ..Refs::default()
            }),
        );
        fresh.insert(
            d(5),
            Ok(Refs {
                subject: Some(d(4)),
                ..Refs::default()
            }),
        );
        let loaded = fresh;
        let a = &mut index.repositories[0];
        for n in [4, 5] {
            a.revisions.push(Revision {
                digest: d(n),
                linked: true,
                signatures: Vec::new(),
            });
        }
        a.revisions.sort_by_key(|r| r.digest);
        a.tags.push(Tag {
            name: "multi".into(),
            current: Some(d(4)),
            history: vec![d(4)],
            pushed: None,
        });
        let u = run_pulls(&index, &loaded, vec![("a", "multi", pull(3, Method::Head))]);
        let a = repo_pulls(&u, "a");
        assert_eq!(
            a.unpulled_manifests, 1,
            "only image 1: 4, its child 2 and referrer 5 pulled"
        );
        assert_eq!(a.unpulled_bytes, 3700, "1, 11, 12, 13");
    }

    #[test]
    fn referenced_exclusive_and_shared_per_repository() {
        let u = run(false, None, None);
        let a = u.repositories.iter().find(|r| r.name == "a").unwrap();
        // 1 + 2 (manifests) + 11 + 12 + 13 + 14 (layers), × 100.
        assert_eq!(a.referenced_bytes, 5300);
        assert_eq!(a.shared_bytes, 2300, "11 and 12 are b's too");
        assert_eq!(a.exclusive_bytes, 3000);
        assert_eq!(
            a.reclaimable_bytes, 0,
            "untagged kept: nothing to reclaim in a"
        );
        let b = u.repositories.iter().find(|r| r.name == "b").unwrap();
        assert_eq!((b.referenced_bytes, b.exclusive_bytes), (4100, 1800));
        assert_eq!(u.repositories[0].name, "a", "most referenced first");
        let t = u.total;
        assert_eq!(t.blob_bytes, 10_100);
        assert_eq!(t.referenced_bytes, 7_100, "everything but the orphan 30");
        assert_eq!(t.shared_bytes, 2300);
        assert_eq!(t.reclaimable_bytes, 3000, "the orphan");
        assert_eq!(
            t.referenced_bytes,
            u.repositories
                .iter()
                .map(|r| r.exclusive_bytes)
                .sum::<u64>()
                + t.shared_bytes
        );
    }

    #[test]
    fn with_m_the_untagged_image_is_reclaimable() {
        let u = run(true, None, None);
        let a = u.repositories.iter().find(|r| r.name == "a").unwrap();
        assert_eq!(a.referenced_bytes, 3700, "1, 11, 12, 13");
        assert_eq!(a.reclaimable_bytes, 1600, "manifest 2 and its layer 14");
        assert_eq!(u.total.reclaimable_bytes, 4600);
    }

    #[test]
    fn top_and_prices() {
        let u = run(false, Some(1), Some(2.0));
        assert_eq!(u.repositories.len(), 1);
        assert_eq!(u.repositories_not_shown, 1);
        let c = u.repositories[0].cost_per_month.unwrap();
        assert!((c.referenced - 5300.0 / GIB * 2.0).abs() < 1e-12);
        assert!((u.total.reclaimable_cost_per_month.unwrap() - 6000.0 / GIB).abs() < 1e-12);
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["regsweep_du"], 1);
        assert_eq!(json["repositories"][0]["exclusive_bytes"], 3000);
        assert!(json["repositories"][0]["cost_per_month"]["reclaimable"].is_number());
        let no_price = serde_json::to_value(run(false, None, None)).unwrap();
        assert!(no_price["repositories"][0].get("cost_per_month").is_none());
        assert!(no_price["price_per_gib_month"].is_null());
        let mut table = Vec::new();
        u.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("COST/MONTH") && table.contains("… and 1 more"),
            "{table}"
        );
    }

    #[test]
    fn monthly_cost_is_per_gib() {
        assert_eq!(monthly_cost(1 << 30, 0.1), 0.1);
        assert_eq!(monthly_cost(0, 5.0), 0.0);
    }
}
