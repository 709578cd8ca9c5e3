//! Which manifests a pull by tag could have served, from the tag's history
//! in storage.
//!
//! Every push of a tag rewrites `current/link` and the history entry
//! `index/sha256/<D>/link` of the digest it now points at, so the entry's
//! modification time is the last time the tag was set to `D`, and the
//! current link's is the last time the tag was set at all. A pull at `t`:
//! - after the last push (`mtime(current/link) <= t`) served the current
//!   digest, exactly;
//! - before it, served the digest set last before `t`, or any digest set
//!   after `t` (a rollback A→B→A overwrote A's earlier time): all of them
//!   are kept as possible. Ties, unknown times and times in the future
//!   widen the set; over-keeping is the safe direction.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::index::Index;
use crate::storage::layout::{Layout, link_file};

/// A tag's history, with the times read from storage.
#[derive(Debug, Clone, Default)]
pub struct TagHistory {
    /// What `current/link` points at.
    pub current: Option<Digest>,
    /// Its modification time.
    pub pushed: Option<SystemTime>,
    /// Each history entry with its link's modification time (`None` when
    /// it cannot be read).
    pub entries: Vec<(Digest, Option<SystemTime>)>,
}

impl TagHistory {
    /// Whether the tag ever pointed at `digest`, as far as storage tells.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.current == Some(*digest) || self.entries.iter().any(|(d, _)| d == digest)
    }

    /// How many of the tag's history entries are dated at or before `t`:
    /// [`TagHistory::possible`] gives the same digests for every `t` with
    /// the same count (before the last push).
    pub fn pushes_before(&self, t: SystemTime) -> u32 {
        self.entries
            .iter()
            .filter(|(_, m)| m.is_some_and(|m| m <= t))
            .count() as u32
    }

    /// The digests a pull of the tag at `t` could have served.
    pub fn possible(&self, t: SystemTime) -> Vec<Digest> {
        if let (Some(current), Some(pushed)) = (self.current, self.pushed) {
            if pushed <= t {
                return vec![current];
            }
        }
        let last_before = self
            .entries
            .iter()
            .filter_map(|(_, m)| *m)
            .filter(|m| *m <= t)
            .max();
        let mut digests: Vec<Digest> = self
            .entries
            .iter()
            .filter(|(_, m)| match m {
                None => true,
                Some(m) => *m > t || Some(*m) == last_before,
            })
            .map(|(d, _)| *d)
            .collect();
        // The tag was set after `t` (or when is unknown): what it points at
        // now was set after `t` too.
        digests.extend(self.current);
        digests.sort_unstable();
        digests.dedup();
        digests
    }
}

/// When each tag history entry was last written, per (repository, tag)
/// index, in the order of [`crate::index::Tag::history`]: what a listing of
/// object storage shows.
pub type ListedHistoryTimes = HashMap<(u32, u32), Vec<SystemTime>>;

/// Where the times of tag history entries come from.
#[derive(Debug, Clone, Copy)]
pub enum HistoryTimes<'a> {
    /// The mtimes of the `link` files under the layout's root.
    Filesystem(&'a Layout),
    /// Known from a listing.
    Listed(&'a ListedHistoryTimes),
}

/// Tag histories of an indexed storage, read when first asked for.
pub struct Histories<'a> {
    times: HistoryTimes<'a>,
    index: &'a Index,
    /// Looked up once per pull by tag: foldhash, not SipHash.
    read: HashMap<(u32, u32), TagHistory, foldhash::fast::RandomState>,
    /// Each repository named so far, and where the index holds it: a
    /// hash lookup per pull rather than a binary search over names.
    positions: HashMap<Box<str>, Option<u32>, foldhash::fast::RandomState>,
}

impl<'a> Histories<'a> {
    /// Histories of the tags of `index`, under `layout`.
    pub fn new(layout: &'a Layout, index: &'a Index) -> Histories<'a> {
        Histories::with_times(HistoryTimes::Filesystem(layout), index)
    }

    /// Histories of the tags of `index`, their times from `times`.
    pub fn with_times(times: HistoryTimes<'a>, index: &'a Index) -> Histories<'a> {
        Histories {
            times,
            index,
            read: HashMap::default(),
            positions: HashMap::default(),
        }
    }

    /// The history of `tag` in `repository`, with the positions of both in
    /// the index; `None` when storage has no such tag.
    pub fn get(&mut self, repository: &str, tag: &str) -> Option<((u32, u32), &TagHistory)> {
        let index = self.index;
        let r = match self.positions.get(repository) {
            Some(found) => (*found)? as usize,
            None => {
                let found = index
                    .repositories
                    .binary_search_by(|repo| repo.name.as_str().cmp(repository))
                    .ok();
                self.positions
                    .insert(repository.into(), found.map(|r| r as u32));
                found?
            }
        };
        let repo = &index.repositories[r];
        let t = repo
            .tags
            .binary_search_by(|t| t.name.as_str().cmp(tag))
            .ok()?;
        let times = self.times;
        let key = (r as u32, t as u32);
        let history = self.read.entry(key).or_insert_with(|| {
            let tag = &repo.tags[t];
            let entries = tag
                .history
                .iter()
                .enumerate()
                .map(|(i, digest)| {
                    let mtime = match times {
                        HistoryTimes::Filesystem(layout) => {
                            let dir = layout.tag_index_entry_dir(&repo.name, &tag.name, digest);
                            std::fs::metadata(link_file(&dir))
                                .and_then(|m| m.modified())
                                .ok()
                        }
                        HistoryTimes::Listed(listed) => {
                            listed.get(&key).and_then(|t| t.get(i)).copied()
                        }
                    };
                    (*digest, mtime)
                })
                .collect();
            TagHistory {
                current: tag.current,
                pushed: tag.pushed,
                entries,
            }
        });
        Some((key, history))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn d(byte: u8) -> Digest {
        Digest::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    /// A set to D1 at 100, D2 at 200, back to D1 at 300 (overwriting D1's
    /// first time), then D3 at 400; current D3 pushed at 400.
    fn rollback() -> TagHistory {
        TagHistory {
            current: Some(d(3)),
            pushed: Some(at(400)),
            entries: vec![
                (d(1), Some(at(300))),
                (d(2), Some(at(200))),
                (d(3), Some(at(400))),
            ],
        }
    }

    #[test]
    fn a_pull_after_the_last_push_served_the_current_digest() {
        assert_eq!(rollback().possible(at(400)), [d(3)]);
        assert_eq!(rollback().possible(at(900)), [d(3)]);
    }

    #[test]
    fn a_pull_before_the_last_push_may_have_served_anything_set_since() {
        // Between 300 and 400: D1 (set at 300) or D3 (set after).
        assert_eq!(rollback().possible(at(350)), [d(1), d(3)]);
        // Between 200 and 300: D2, or D1 and D3 set after (D1 also before
        // 200, its time lost to the rollback).
        assert_eq!(rollback().possible(at(250)), [d(1), d(2), d(3)]);
        // Before anything known: everything.
        assert_eq!(rollback().possible(at(50)), [d(1), d(2), d(3)]);
    }

    #[test]
    fn unknown_and_equal_times_widen_the_set() {
        let mut h = rollback();
        h.entries[1].1 = None;
        assert_eq!(h.possible(at(350)), [d(1), d(2), d(3)]);
        // A copy without preserved times: every entry at the same second.
        let copied = TagHistory {
            current: Some(d(3)),
            pushed: Some(at(500)),
            entries: vec![
                (d(1), Some(at(500))),
                (d(2), Some(at(500))),
                (d(3), Some(at(500))),
            ],
        };
        assert_eq!(copied.possible(at(100)), [d(1), d(2), d(3)]);
        let copied_earlier = TagHistory {
            pushed: Some(at(600)),
            entries: vec![(d(1), Some(at(50))), (d(2), Some(at(50)))],
            ..copied
        };
        assert_eq!(copied_earlier.possible(at(100)), [d(1), d(2), d(3)]);
    }
}
