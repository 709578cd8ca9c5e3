//! Blobs read from the bucket: the manifests, one GET per manifest the
//! repositories hold or reach, many in flight, round by round as children
//! appear; and every blob's data streamed through sha256 (`verify
//! --digests`).

use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;
use sha2::{Digest as _, Sha256};

use super::{Fetched, S3Storage};
use crate::digest::{Digest, DigestMap};
use crate::error::{Error, Result};
use crate::gc::mark::{self, Loaded};
use crate::index::Index;
use crate::interrupt::{Interrupt, Phase};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::progress::Task;

/// Loads every manifest any repository holds or reaches. A GET that fails
/// after the client's retries is an error (the marking would be
/// incomplete); a manifest that is absent or damaged is a [`Loaded`] error,
/// which keeps what it might reference, as on a filesystem.
pub fn load_all(
    storage: &S3Storage,
    index: &Index,
    progress: &Task,
    interrupt: &Interrupt,
) -> Result<DigestMap<Loaded>> {
    mark::load_rounds(index, |wanted| {
        storage.block_on(
            stream::iter(wanted.iter().copied())
                .map(|digest| async move {
                    interrupt.check(Phase::Plan)?;
                    progress.inc(1);
                    Ok::<_, Error>((digest, load(storage, index, &digest).await?))
                })
                .buffer_unordered(storage.concurrency())
                .try_collect(),
        )
    })
}

/// Reads the manifest stored as blob `digest`.
pub(crate) async fn load(storage: &S3Storage, index: &Index, digest: &Digest) -> Result<Loaded> {
    if let Err(why) = mark::readable_size(index, digest) {
        return Ok(Err(why));
    }
    let path = storage.layout().blob_data(digest);
    match storage.get(&path, MAX_MANIFEST_BYTES).await {
        Ok(Fetched::Bytes(bytes)) => Ok(mark::refs_of(index, digest, &bytes)),
        Ok(Fetched::Missing) => Ok(Err("manifest blob is gone from the bucket".into())),
        Ok(Fetched::TooLarge(size)) => Ok(Err(format!(
            "manifest blob is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        ))),
        // A request that failed says nothing of the manifest: the marking
        // would be incomplete.
        Err(e) => Err(storage.error(&path, e)),
    }
}

/// The sha256 of each blob's data, streamed (never whole in memory), many
/// blobs at once; `read` is told of every chunk's size.
pub fn hash_blobs(
    storage: &S3Storage,
    digests: &[Digest],
    read: impl Fn(u64) + Sync,
) -> Vec<std::io::Result<Digest>> {
    let read = &read;
    storage.block_on(
        stream::iter(digests)
            .map(|digest| async move {
                let path = storage.layout().blob_data(digest);
                storage
                    .requests
                    .get
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = storage
                    .store()
                    .get(&super::key(&path))
                    .await
                    .map_err(|e| std::io::Error::other(super::config::describe_error(&e)))?;
                let mut chunks = result.into_stream();
                let mut hasher = Sha256::new();
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk
                        .map_err(|e| std::io::Error::other(super::config::describe_error(&e)))?;
                    hasher.update(&chunk);
                    read(chunk.len() as u64);
                }
                Ok(Digest::from_bytes(hasher.finalize().into()))
            })
            // In order: the caller pairs the results with `digests`.
            .buffered(storage.concurrency())
            .collect(),
    )
}
