//! The lock on a bucket: an object `regsweep.lock` beside `docker/`,
//! created only if absent (a conditional PUT, `If-None-Match: *`),
//! rewritten every [`HEARTBEAT`] while the run lives, deleted when it ends.
//!
//! A run killed outright leaves it behind. The next run takes it over when
//! its holder is a process of this host that is gone, or when nobody
//! rewrote it for [`LEASE`] (its holder died, or lost the store); the
//! takeover replaces that very object only (`If-Match` on its ETag).
//! Otherwise the refusal says who holds it.
//!
//! A store that does not support conditional writes cannot give this
//! guarantee; the run is refused unless `--force-unlocked` says the
//! operator keeps runs apart some other way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion,
};

use super::S3Storage;
use super::config::describe_error;
use crate::error::{Error, Result};
use crate::storage::fs::lock::{Holder, LOCK_FILE, host_name};
use crate::warning::{Warning, WarningKind};

/// How often a holder rewrites the lock object.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A lock object nobody rewrote for this long was left by a dead run.
pub const LEASE: Duration = Duration::from_secs(300);

/// The lock object, held until dropped.
#[derive(Debug)]
pub struct S3Lock<'a> {
    storage: &'a S3Storage,
    path: PathBuf,
    taken: Option<SystemTime>,
    heartbeat: tokio::task::JoinHandle<()>,
    note: Option<String>,
}

/// The lock object's layout path.
fn lock_path(storage: &S3Storage) -> PathBuf {
    storage.layout().root().join(LOCK_FILE)
}

/// What the lock object holds now.
struct Held {
    holder: Option<Holder>,
    written: SystemTime,
    e_tag: Option<String>,
}

impl Held {
    fn who(&self) -> String {
        self.holder
            .as_ref()
            .map_or_else(|| "an unreadable lock object".to_owned(), Holder::describe)
    }

    /// Why it belongs to a run that is gone, if it does.
    fn gone(&self, now: SystemTime) -> Option<String> {
        let age = now.duration_since(self.written).unwrap_or_default();
        if age > LEASE {
            return Some(format!(
                "nobody rewrote it for {} (a live run does every {} s)",
                crate::duration::human(age),
                HEARTBEAT.as_secs()
            ));
        }
        let holder = self.holder.as_ref()?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(holder.pid).ok()?)?;
        let dead = holder.host == host_name()
            && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
        dead.then(|| format!("pid {} of this host is gone", holder.pid))
    }
}

/// The lock object as it is; `None` when there is none (or it cannot be
/// read).
fn read_held(storage: &S3Storage, path: &Path) -> Option<Held> {
    let key = super::key(path);
    storage.requests.get.fetch_add(1, Ordering::Relaxed);
    let (meta, bytes) = storage
        .block_on(async {
            let result = storage.store().get(&key).await?;
            let meta = result.meta.clone();
            Ok::<_, object_store::Error>((meta, result.bytes().await?))
        })
        .ok()?;
    Some(Held {
        holder: serde_json::from_slice(&bytes).ok(),
        written: super::index::modified(&meta),
        e_tag: meta.e_tag,
    })
}

/// When the lock object was last written, on the store's clock.
fn written_at(storage: &S3Storage, path: &Path) -> Option<SystemTime> {
    storage.requests.head.fetch_add(1, Ordering::Relaxed);
    storage
        .block_on(storage.store().head(&super::key(path)))
        .ok()
        .map(|meta| super::index::modified(&meta))
}

/// PUTs the lock object.
fn put(
    storage: &S3Storage,
    path: &Path,
    body: &[u8],
    mode: PutMode,
) -> object_store::Result<PutResult> {
    storage.requests.put.fetch_add(1, Ordering::Relaxed);
    let options = PutOptions {
        mode,
        ..PutOptions::default()
    };
    storage.block_on(storage.store().put_opts(
        &super::key(path),
        PutPayload::from(body.to_vec()),
        options,
    ))
}

/// Rewrites the lock object every [`HEARTBEAT`], so that other runs see a
/// live holder.
fn heartbeat(
    storage: &S3Storage,
    path: &Path,
    body: Vec<u8>,
) -> impl Future<Output = ()> + 'static {
    let store = std::sync::Arc::clone(storage.store());
    let key = super::key(path);
    async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let _ = store.put(&key, PutPayload::from(body.clone())).await;
        }
    }
}

impl<'a> S3Lock<'a> {
    /// Creates the lock object for `command`, or takes over one a dead run
    /// left. `force_unlocked`: a store without conditional writes runs
    /// without a lock instead of refusing.
    pub fn acquire(
        storage: &'a S3Storage,
        command: &str,
        force_unlocked: bool,
    ) -> Result<Option<S3Lock<'a>>> {
        let path = lock_path(storage);
        let url = storage.url(&path);
        let body = serde_json::to_vec(&Holder::this_process(command)).unwrap_or_default();
        let mut note = None;
        let mut result = put(storage, &path, &body, PutMode::Create);
        let mut held = None;
        if let Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) = &result
        {
            held = read_held(storage, &path);
            if let Some(stale) = &held {
                if let Some(why) = stale.gone(SystemTime::now()) {
                    let mode = PutMode::Update(UpdateVersion {
                        e_tag: stale.e_tag.clone(),
                        version: None,
                    });
                    result = put(storage, &path, &body, mode);
                    note = Some(format!("took over the lock left by {}: {why}", stale.who()));
                }
            }
        }
        match result {
            Ok(_) => {
                // Its time on the store's own clock: what the sweep compares
                // the registry's writes with.
                let taken = written_at(storage, &path);
                // The store's times have a coarse resolution (a second on
                // S3): wait until its clock has left the lock's tick, so
                // that anything written after the index begins is later than
                // the lock, and anything written in its tick is indexed.
                if let Some(taken) = taken {
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(250));
                        if put(storage, &path, &body, PutMode::Overwrite).is_err() {
                            break;
                        }
                        if written_at(storage, &path).is_some_and(|t| t > taken) {
                            break;
                        }
                    }
                }
                let heartbeat = storage.spawn(heartbeat(storage, &path, body));
                Ok(Some(S3Lock {
                    storage,
                    path,
                    taken,
                    heartbeat,
                    note,
                }))
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let who =
                    held.map_or_else(|| "a run that has just finished".to_owned(), |h| h.who());
                Err(Error::LockHeld {
                    path: PathBuf::from(&url),
                    reason: format!(
                        "locked by {who}; a live run rewrites it every {} s, and a lock nobody rewrote for {} is taken over; if no such run is alive, delete {url} and run again",
                        HEARTBEAT.as_secs(),
                        crate::duration::human(LEASE)
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

    /// What to tell the operator about how the lock was taken.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

impl Drop for S3Lock<'_> {
    fn drop(&mut self) {
        self.heartbeat.abort();
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

/// A warning when another run holds the lock (for a dry run, which takes
/// none).
pub fn held_warning(storage: &S3Storage, reading: &str) -> Option<Warning> {
    let path = lock_path(storage);
    let held = read_held(storage, &path)?;
    if held.gone(SystemTime::now()).is_some() {
        return None;
    }
    Some(Warning::new(
        WarningKind::LockHeld,
        PathBuf::from(storage.url(&path)),
        None,
        format!(
            "{} holds the lock: this {reading} may see its deletions half done",
            held.who()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pid: u32, host: &str, age: Duration) -> Held {
        Held {
            holder: Some(Holder {
                pid,
                host: host.to_owned(),
                started: "2026-01-01T00:00:00Z".into(),
                command: "gc".into(),
            }),
            written: SystemTime::now() - age,
            e_tag: None,
        }
    }

    #[test]
    fn a_lock_is_left_by_a_dead_run_only_when_its_holder_is_gone_or_silent() {
        let now = SystemTime::now();
        let this = std::process::id();
        let here = host_name();
        assert_eq!(held(this, &here, Duration::from_secs(1)).gone(now), None);
        assert_eq!(
            held(this, "elsewhere", Duration::from_secs(60)).gone(now),
            None
        );
        // A pid above the kernel's limit is never alive.
        let dead = held(4_194_305, &here, Duration::from_secs(1)).gone(now);
        assert!(dead.is_some_and(|why| why.contains("4194305")));
        let silent = held(this, "elsewhere", LEASE + Duration::from_secs(1)).gone(now);
        assert!(silent.is_some_and(|why| why.contains("nobody rewrote it")));
    }
}
