//! Look again before deleting, on a bucket: the repositories' keys are
//! listed again, and any modified after the lock object (on the store's own
//! clock; the index begins only once that clock has moved past the lock's
//! time) means the registry is taking writes, and the sweep stops there. Blobs are not listed again: a new blob is not in
//! the plan, and what makes an old one live again is a new link or
//! manifest, which is under `repositories/`.
//!
//! It costs one LIST per thousand keys of the repositories, each time; the
//! sweep looks again before its first deletion and before the blobs go.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use futures_util::{StreamExt, stream};

use super::S3Storage;
use super::config::describe_error;
use crate::storage::Change;

/// The first key under `repositories/` modified after `since`, or
/// a listing that failed (the registry's state is then unknown).
pub async fn look_again(storage: &S3Storage, since: SystemTime) -> Option<Change> {
    let repositories = storage.layout().repositories_dir();
    let tops = match storage.list_dirs(&repositories).await {
        Ok((tops, _)) => tops,
        Err(e) => {
            return Some(Change {
                path: PathBuf::from(storage.url(&repositories)),
                what: format!("could not be listed again ({e})"),
            });
        }
    };
    let changes: Vec<Option<Change>> = stream::iter(tops)
        .map(|top| {
            let prefix = repositories.join(top);
            async move {
                let mut listed = storage.list(&prefix).chunks(1000);
                while let Some(page) = listed.next().await {
                    storage.requests.list.fetch_add(1, Ordering::Relaxed);
                    for meta in page {
                        let meta = match meta {
                            Ok(meta) => meta,
                            Err(e) => {
                                return Some(Change {
                                    path: PathBuf::from(storage.url(&prefix)),
                                    what: format!(
                                        "could not be listed again ({})",
                                        describe_error(&e)
                                    ),
                                });
                            }
                        };
                        if super::index::modified(&meta) > since {
                            return Some(Change {
                                path: PathBuf::from(format!(
                                    "s3://{}/{}",
                                    storage.target().bucket,
                                    meta.location
                                )),
                                what: "was written after the index began".into(),
                            });
                        }
                    }
                }
                None
            }
        })
        .buffer_unordered(storage.concurrency())
        .collect()
        .await;
    changes.into_iter().flatten().next()
}
