//! Sweep on a bucket: the plan's candidates kind by kind in plan order (the
//! order that keeps an interrupted sweep consistent), each kind in
//! DeleteObjects requests of up to 1,000 keys, several in flight.
//!
//! A candidate is the keys the listing found in its "directory": a link's
//! `link`, a blob's `data`, a revision's link and its schema1 signature
//! links, a tag's current link and history, an upload's keys. S3 answers
//! success for a key already gone, so a re-run after an interruption just
//! finishes.
//!
//! With a trash ([`super::trash`]), each kind's keys are journaled, then
//! copied into the batch before their DeleteObjects request; a key whose
//! copy failed is not deleted and fails its candidate.
//!
//! A failure keeps what depends on it, as on a filesystem ([`Held`]): a
//! revision or tag that stays keeps the layer links and blobs of every
//! manifest it reaches (read again, a GET each, before the links go); a
//! layer link that stays keeps its blob.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use futures_util::{StreamExt, stream};
use object_store::ObjectStoreExt;

use super::config::describe_error;
use super::index::Listing;
use super::trash::S3Batch;
use super::{DELETE_BATCH, S3Storage};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::gc::mark::{Loaded, Refs};
use crate::gc::plan::{Candidate, CandidateKind, Plan, Reclaim};
use crate::index::Index;
use crate::interrupt::Phase;
use crate::progress::Progress;
use crate::storage::layout::{link_file, names};
use crate::storage::{Failure, Held, SweepOptions, SweepOutcome, candidate_dir};

/// Deletes the plan's candidates from the bucket.
///
/// `index_began`, on the store's clock: the repositories are listed again
/// before the first deletion and before the blobs go, and a key written
/// since stops the sweep (see [`super::recheck`]).
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    storage: &S3Storage,
    index: &Index,
    plan: &Plan,
    listing: &Listing,
    options: SweepOptions,
    index_began: Option<SystemTime>,
    trash: Option<&S3Batch>,
    progress: Progress,
) -> SweepOutcome {
    storage.block_on(async {
        let mut changed = None;
        let mut looked_again = false;
        let layout = storage.layout();
        let doing = if trash.is_some() {
            "moving to the trash"
        } else {
            "deleting"
        };
        let task = progress.bar(plan.candidates.len() as u64, doing, "objects");
        let mut journal_failed = false;
        let quit = || options.interrupt.stops(Phase::Sweep);
        // A simulated crash (`stop_after`): deletions started so far.
        let mut crashed = false;
        let mut started = 0;
        let mut gone = vec![false; plan.candidates.len()];
        let mut failures = Vec::new();
        // Candidates (by position) that stayed, what they keep, and the
        // manifests read to know it.
        let mut failed: Vec<usize> = Vec::new();
        let mut held = Held::default();
        let mut reread: DigestMap<Loaded> = DigestMap::default();
        for (kind, range) in plan.kind_ranges() {
            let count = range.len();
            // A stop request is looked at before each DeleteObjects request.
            if crashed || options.interrupt.requested() {
                break;
            }
            if matches!(kind, CandidateKind::LayerLink | CandidateKind::Blob) && !failed.is_empty() {
                held = held_after(storage, index, plan, &failed, &mut reread).await;
            }
            if let Some(since) = index_began {
                if kind.rechecked() && (!looked_again || kind == CandidateKind::Blob) {
                    looked_again = true;
                    changed = super::recheck::look_again(storage, since).await;
                    if changed.is_some() {
                        break;
                    }
                }
            }
            // A repository goes only if everything else of it went.
            let unfinished =
                plan.unfinished_repositories(kind, range.start, &gone, index.repositories.len());
            // (candidate position, keys) for this kind.
            let mut work: Vec<(usize, Vec<String>)> = Vec::with_capacity(count);
            for i in range {
                let candidate = &plan.candidates[i];
                if let Some(limit) = options.stop_after {
                    started += 1;
                    if started > limit {
                        crashed = true;
                        break;
                    }
                }
                let dir = candidate_dir(layout, index, plan, candidate);
                if let Some(message) = held.keeps(candidate) {
                    failures.push(Failure { path: dir, message });
                    failed.push(i);
                    task.inc(1);
                    continue;
                }
                if unfinished.hold(candidate) {
                    task.inc(1);
                    continue;
                }
                let keys = match listing.stray.contains(&dir) {
                    true => Err("holds keys the registry does not write there; kept".to_owned()),
                    false => candidate_keys(storage, index, listing, candidate, &dir).await,
                };
                let keys = match keys {
                    Ok(keys) => keys,
                    Err(message) => {
                        failures.push(Failure { path: dir, message });
                        failed.push(i);
                        task.inc(1);
                        continue;
                    }
                };
                work.push((i, keys));
            }
            if let Some(batch) = trash {
                let keys: Vec<&str> = work
                    .iter()
                    .flat_map(|(_, keys)| keys.iter().map(String::as_str))
                    .collect();
                if !keys.is_empty() {
                    if let Err(message) = batch.journal(storage, kind.as_str(), &keys).await {
                        for (i, _) in &work {
                            failures.push(Failure {
                                path: candidate_dir(layout, index, plan, &plan.candidates[*i]),
                                message: format!("not moved: {message}"),
                            });
                            task.inc(1);
                        }
                        journal_failed = true;
                        break;
                    }
                }
            }
            let outcome = delete_all(storage, &work, &quit, &task, trash).await;
            for (i, _) in &work {
                if outcome.unsent.contains(i) {
                    continue;
                }
                let Some(message) = outcome.failed.get(i) else {
                    gone[*i] = true;
                    continue;
                };
                let candidate = &plan.candidates[*i];
                failures.push(Failure {
                    path: candidate_dir(layout, index, plan, candidate),
                    message: message.clone(),
                });
                failed.push(*i);
            }
            if kind == CandidateKind::Upload {
                let purged: Vec<PathBuf> = work
                    .iter()
                    .filter(|(i, _)| gone[*i])
                    .map(|(i, _)| candidate_dir(layout, index, plan, &plan.candidates[*i]))
                    .collect();
                failures.extend(abort_multipart_uploads(storage, &purged).await);
            }
            if !outcome.unsent.is_empty() {
                break;
            }
        }
        task.finish();
        if journal_failed {
            failures.push(Failure {
                path: PathBuf::from(storage.target().to_string()),
                message: "the sweep stopped: a journal of the trash could not be written, and nothing is moved without one; run regsweep again".into(),
            });
        }
        let mut deleted = Reclaim::default();
        for (candidate, _) in plan.candidates.iter().zip(&gone).filter(|(_, g)| **g) {
            deleted.add(candidate);
        }
        let interrupted = crashed || changed.is_some() || quit() && gone.iter().any(|g| !g);
        // A crash (`stop_after`) leaves the batch without its end, as a kill would.
        if let (Some(batch), false) = (trash, crashed) {
            if let Err(message) = batch.finish(storage, interrupted).await {
                failures.push(Failure {
                    path: PathBuf::from(batch.url()),
                    message,
                });
            }
        }
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        SweepOutcome {
            deleted,
            gone,
            failures,
            interrupted,
            empty_directories: 0,
            temporary_files: 0,
            changed,
        }
    })
}

/// What the candidates at positions `failed` keep, as on a filesystem
/// ([`Held::after_failures_with`]): the manifests they reach are read
/// again, round by round, as the traversal asks for them (once per run:
/// `read` keeps them).
async fn held_after(
    storage: &S3Storage,
    index: &Index,
    plan: &Plan,
    failed: &[usize],
    read: &mut DigestMap<Loaded>,
) -> Held {
    let layout = storage.layout();
    loop {
        let mut wanted = DigestSet::default();
        let held = Held::after_failures_with(layout, index, plan, failed, |manifest| {
            read.get(manifest).cloned().unwrap_or_else(|| {
                // Not read yet: no references for now, read next round.
                wanted.insert(*manifest);
                Ok(Refs::default())
            })
        });
        if wanted.is_empty() {
            return held;
        }
        let batch: Vec<(Digest, Loaded)> = stream::iter(wanted)
            .map(|digest| async move {
                let loaded = super::manifests::load(storage, index, &digest)
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                (digest, loaded)
            })
            .buffer_unordered(storage.concurrency())
            .collect()
            .await;
        read.extend(batch);
    }
}

/// Aborts the multipart uploads of the purged uploads `dirs`: their data
/// while in progress, billed until aborted.
async fn abort_multipart_uploads(storage: &S3Storage, dirs: &[PathBuf]) -> Vec<Failure> {
    if dirs.is_empty() {
        return Vec::new();
    }
    let prefix = format!("{}/", super::path_str(&storage.layout().repositories_dir()));
    let open = match super::multipart::list(storage, &prefix).await {
        Ok(open) => open,
        Err(message) => {
            return vec![Failure {
                path: PathBuf::from(storage.url(&storage.layout().repositories_dir())),
                message: format!(
                    "the purged uploads' multipart uploads were not aborted: {message}"
                ),
            }];
        }
    };
    let mut failures = Vec::new();
    for dir in dirs {
        let key = super::path_str(&dir.join(names::DATA));
        for id in open.get(&key).into_iter().flatten() {
            if let Err(message) = super::multipart::abort(storage, &key, id).await {
                failures.push(Failure {
                    path: dir.join(names::DATA),
                    message: format!("multipart upload {id} not aborted: {message}"),
                });
            }
        }
    }
    failures
}

/// The keys of `candidate`, whose directory is `dir`.
async fn candidate_keys(
    storage: &S3Storage,
    index: &Index,
    listing: &Listing,
    candidate: &Candidate,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let key = |p: &Path| super::path_str(p);
    let repo = candidate
        .repository()
        .and_then(|r| index.repositories.get(r as usize));
    Ok(match candidate.kind {
        CandidateKind::Blob => vec![key(&dir.join(names::DATA))],
        CandidateKind::LayerLink | CandidateKind::TagIndexEntry => vec![key(&link_file(dir))],
        CandidateKind::Manifest => {
            let mut keys = vec![key(&link_file(dir))];
            let revision = repo.and_then(|repo| {
                let i = repo
                    .revisions
                    .binary_search_by(|r| r.digest.cmp(&candidate.digest))
                    .ok()?;
                repo.revisions.get(i)
            });
            for signature in revision.iter().flat_map(|r| &r.signatures) {
                let sig_dir = dir
                    .join(names::SIGNATURES)
                    .join(crate::digest::SHA256)
                    .join(signature.hex());
                keys.push(key(&link_file(&sig_dir)));
            }
            keys
        }
        CandidateKind::Tag => {
            let tag = repo
                .zip(candidate.tag())
                .and_then(|(repo, t)| repo.tags.get(t as usize));
            let Some(tag) = tag else {
                return Err("the tag is not in the index".into());
            };
            let mut keys = vec![key(
                &dir.join(crate::storage::layout::relative::tag_current_link())
            )];
            for digest in &tag.history {
                let entry = dir
                    .join(names::INDEX)
                    .join(crate::digest::SHA256)
                    .join(digest.hex());
                keys.push(key(&link_file(&entry)));
            }
            keys
        }
        CandidateKind::Upload => {
            let relative = dir.strip_prefix(storage.layout().root()).unwrap_or(dir);
            listing
                .upload_keys
                .get(relative)
                .cloned()
                .unwrap_or_default()
        }
        CandidateKind::Repository => {
            // Whatever is left of its metadata, listed now.
            let mut keys = Vec::new();
            for metadata in [names::MANIFESTS, names::LAYERS, names::UPLOADS] {
                let prefix = dir.join(metadata);
                let mut listed = storage.list(&prefix);
                storage.requests.list.fetch_add(1, Ordering::Relaxed);
                while let Some(meta) = listed.next().await {
                    let meta = meta.map_err(|e| {
                        format!(
                            "cannot list {}: {}",
                            storage.url(&prefix),
                            describe_error(&e)
                        )
                    })?;
                    keys.push(meta.location.as_ref().to_owned());
                }
            }
            keys
        }
        CandidateKind::TemporaryFile => vec![key(dir)],
    })
}

/// What became of a kind's deletions.
#[derive(Default)]
struct Deleted {
    /// Candidates (by position) that failed, with why.
    failed: HashMap<usize, String>,
    /// Candidates not sent: a stop request came first.
    unsent: HashSet<usize>,
}

/// Deletes the keys of `work`, in batches of [`DELETE_BATCH`], several in flight.
async fn delete_all(
    storage: &S3Storage,
    work: &[(usize, Vec<String>)],
    quit: &(impl Fn() -> bool + Sync),
    task: &crate::progress::Task,
    trash: Option<&S3Batch>,
) -> Deleted {
    // Whole candidates per batch where they fit: a candidate split across
    // two batches is gone only when both went.
    let mut batches: Vec<Vec<(usize, &str)>> = Vec::new();
    let mut batch: Vec<(usize, &str)> = Vec::new();
    for (i, keys) in work {
        if batch.len() + keys.len() > DELETE_BATCH && !batch.is_empty() {
            batches.push(std::mem::take(&mut batch));
        }
        for key in keys {
            if batch.len() == DELETE_BATCH {
                batches.push(std::mem::take(&mut batch));
            }
            batch.push((*i, key.as_str()));
        }
        if keys.is_empty() {
            task.inc(1);
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let in_flight = (storage.concurrency() / 4).clamp(1, 16);
    let results: Vec<Deleted> = stream::iter(batches)
        .map(|batch| delete_batch(storage, batch, quit, task, trash, in_flight))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut all = Deleted::default();
    for r in results {
        all.failed.extend(r.failed);
        all.unsent.extend(r.unsent);
    }
    all
}

/// One DeleteObjects request; with a trash, each key is copied into the
/// batch first, and the keys of a candidate with a failed copy stay.
async fn delete_batch(
    storage: &S3Storage,
    mut batch: Vec<(usize, &str)>,
    quit: &(impl Fn() -> bool + Sync),
    task: &crate::progress::Task,
    trash: Option<&S3Batch>,
    batches_in_flight: usize,
) -> Deleted {
    let mut deleted = Deleted::default();
    if quit() {
        deleted.unsent.extend(batch.iter().map(|(i, _)| *i));
        return deleted;
    }
    if let Some(trash) = trash {
        let copies = (storage.concurrency() / batches_in_flight).max(1);
        deleted.failed = copy_into(storage, trash, &batch, copies).await;
        batch.retain(|(i, _)| !deleted.failed.contains_key(i));
        task.inc(deleted.failed.len() as u64);
        if batch.is_empty() {
            return deleted;
        }
    }
    let keys: Vec<&str> = batch.iter().map(|(_, k)| *k).collect();
    let mut moved = 0;
    for ((i, _), failure) in batch.iter().zip(storage.delete_keys(&keys).await) {
        match failure {
            None => moved += 1,
            Some(why) => {
                deleted.failed.insert(*i, why);
            }
        }
    }
    if let Some(trash) = trash {
        trash.moved(moved);
    }
    let mut counted = HashSet::new();
    for (i, _) in &batch {
        if counted.insert(*i) {
            task.inc(1);
        }
    }
    deleted
}

/// Copies each key of `batch` into the trash batch, `in_flight` at once:
/// the candidates (by position) with a key that could not be, and why.
async fn copy_into(
    storage: &S3Storage,
    trash: &S3Batch,
    batch: &[(usize, &str)],
    in_flight: usize,
) -> HashMap<usize, String> {
    storage
        .requests
        .put
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let results: Vec<(usize, Result<(), String>)> = stream::iter(batch)
        .map(|(i, key)| async move {
            let Some(to) = trash.destination(key) else {
                return (*i, Err(format!("{key} is outside the rootdirectory")));
            };
            let from = object_store::path::Path::from(*key);
            let copied = storage
                .store()
                .copy(&from, &object_store::path::Path::from(to))
                .await;
            let result = match copied {
                // Gone since the listing: nothing to move, as when deleting.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(format!(
                    "not moved: the copy into the trash failed: {}",
                    describe_error(&e)
                )),
            };
            (*i, result)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut failed = HashMap::new();
    for (i, result) in results {
        if let Err(message) = result {
            failed.entry(i).or_insert(message);
        }
    }
    failed
}
