//! The lock on a bucket: an object `regsweep.lock` beside
//! `docker/`, created only if absent (a conditional PUT, `If-None-Match:
//! *`), deleted when the run ends. A run killed outright leaves it: the
//! refusal says who held it and how to remove it.
//!
//! A store that does not support conditional writes cannot give this
//! guarantee; the run is refused unless `--force-unlocked` says the
//! operator keeps runs apart some other way.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::S3Storage;
use super::config::describe_error;
use crate::error::{Error, Result};
use crate::storage::fs::lock::{Holder, LOCK_FILE};
use crate::warning::{Warning, WarningKind};

/// The lock object, held until dropped.
#[derive(Debug)]
pub struct S3Lock<'a> {
    storage: &'a S3Storage,
    path: PathBuf,
    taken: Option<SystemTime>,
}

/// The lock object's layout path.
fn lock_path(storage: &S3Storage) -> PathBuf {
    storage.layout().root().join(LOCK_FILE)
}

impl<'a> S3Lock<'a> {
    /// Creates the lock object for `command`. `force_unlocked`: a store
    /// without conditional writes runs without a lock instead of refusing.
    pub fn acquire(
        storage: &'a S3Storage,
        command: &str,
        force_unlocked: bool,
    ) -> Result<Option<S3Lock<'a>>> {
        let path = lock_path(storage);
        let url = storage.url(&path);
        let holder = Holder::this_process(command);
        let body = serde_json::to_vec(&holder).unwrap_or_default();
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        storage.requests.put.fetch_add(1, Ordering::Relaxed);
        let put = storage.block_on(storage.store().put_opts(
            &super::key(&path),
            PutPayload::from(body),
            options,
        ));
        match put {
            Ok(_) => {
                // Its time on the store's own clock: what the sweep compares
                // the registry's writes with.
                storage.requests.head.fetch_add(1, Ordering::Relaxed);
                let taken = storage
                    .block_on(storage.store().head(&super::key(&path)))
                    .ok()
                    .map(|meta| super::index::modified(&meta));
                Ok(Some(S3Lock {
                    storage,
                    path,
                    taken,
                }))
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let who = held_by(storage, &path);
                Err(Error::LockHeld {
                    path: PathBuf::from(&url),
                    reason: format!(
                        "locked by {who}; if no such run is alive (it was killed), delete {url} and run again"
                    ),
                })
            }
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) if force_unlocked => Ok(None),
            Err(
                e @ (object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. }),
            ) => Err(Error::Lock {
                path: PathBuf::from(&url),
                reason: format!(
                    "the store does not support conditional writes ({}), so regsweep cannot lock the bucket against another run; make sure no other regsweep runs on it and pass --force-unlocked",
                    describe_error(&e)
                ),
            }),
            Err(e) => Err(Error::Lock {
                path: PathBuf::from(&url),
                reason: format!("cannot create the lock object: {}", describe_error(&e)),
            }),
        }
    }
}

impl S3Lock<'_> {
    /// When the lock object was written, on the store's clock.
    pub fn taken_at(&self) -> Option<SystemTime> {
        self.taken
    }
}

impl Drop for S3Lock<'_> {
    fn drop(&mut self) {
        let storage = self.storage;
        storage.requests.delete.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = storage.block_on(storage.store().delete(&super::key(&self.path))) {
            eprintln!(
                "regsweep: warning: cannot remove the lock {}: {}; delete it before the next run",
                storage.url(&self.path),
                describe_error(&e)
            );
        }
    }
}

/// Who the lock object says holds it.
fn held_by(storage: &S3Storage, path: &std::path::Path) -> String {
    match storage.block_on(storage.get(path, 4096)) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Holder>(&bytes) {
            Ok(holder) => holder.describe(),
            Err(_) => "an unreadable lock object".into(),
        },
        Ok(None) => "a run that has just finished".into(),
        Err(e) => format!("a run regsweep cannot name ({})", describe_error(&e)),
    }
}

/// A warning when another run holds the lock (for a dry run, which takes
/// none).
pub fn held_warning(storage: &S3Storage, reading: &str) -> Option<Warning> {
    let path = lock_path(storage);
    match storage.block_on(storage.get(&path, 4096)) {
        Ok(Some(_)) => Some(Warning::new(
            WarningKind::LockHeld,
            PathBuf::from(storage.url(&path)),
            None,
            format!(
                "{} holds the lock: this {reading} may see its deletions half done",
                held_by(storage, &path)
            ),
        )),
        _ => None,
    }
}
