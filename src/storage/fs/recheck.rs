//! Look again before deleting: what a plan depends on, checked for changes
//! since the index began.
//!
//! A plan is only as good as the tree it was made from. The registry is to be
//! read-only or stopped while regsweep sweeps, but a push that races the
//! confirmation prompt, or a registry that was not switched over, writes into
//! the tree: a re-tag of an old untagged manifest (the registry rewrites its
//! revision link and the tag's `current/link`), a push whose layers are
//! already there (no upload, just a new revision and tag), a first push into
//! a new repository (`_uploads/` before anything else). Each leaves a
//! modification time after the moment the index began, on the filesystem's
//! own clock (the time of the lock file written just before), on one of the few paths a [`Recheck`] looks at:
//!
//! - per repository: its directory, `_manifests/`, `_manifests/tags/`, every
//!   tag's `current/link`, `_manifests/revisions/` and its `sha256/`,
//!   `_layers/` and its `sha256/`, `_uploads/`;
//! - the link of every manifest revision the plan removes (a push of the
//!   same bytes rewrites it, and a push by digest re-creates a deleted one);
//! - `repositories/` and every directory above a repository (a new
//!   repository appears there).
//!
//! The sweep checks all of it before its first deletion and again before
//! each kind of deletion, and a repository right before `--remove-empty-repos`
//! removes it. A directory the sweep itself modified is compared against its
//! time right after that change. What a recheck cannot see: a write in the same
//! clock tick as the sweep's own last change to that directory, and a write
//! after the last check. It narrows the window; it does not replace a
//! registry that is read-only or stopped.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::digest::Digest;
use crate::gc::plan::{CandidateKind, Plan};
use crate::index::Index;
use crate::storage::Change;
use crate::storage::layout::{self, Layout};

/// Watches what a plan depends on; see the module documentation.
pub struct Recheck<'a> {
    layout: &'a Layout,
    index: &'a Index,
    since: SystemTime,
    /// Per repository, the revisions the plan removes.
    revisions: Vec<Vec<Digest>>,
    /// `repositories/` and the directories above repositories.
    namespaces: Vec<PathBuf>,
    /// Directories the sweep changed itself, each with its modification
    /// time right after the sweep's last change to it.
    own: Mutex<HashMap<PathBuf, SystemTime>>,
}

impl<'a> Recheck<'a> {
    /// A recheck for `plan` over `index`: anything modified after `since`
    /// (the moment the index began, on the storage's clock) is a change.
    pub fn new(
        layout: &'a Layout,
        index: &'a Index,
        plan: &Plan,
        since: SystemTime,
    ) -> Recheck<'a> {
        let mut revisions = vec![Vec::new(); index.repositories.len()];
        for c in &plan.candidates {
            if let (CandidateKind::Manifest, Some(r)) = (c.kind, c.repository()) {
                revisions[r as usize].push(c.digest);
            }
        }
        let top = layout.repositories_dir();
        let mut namespaces = vec![top.clone()];
        for repo in &index.repositories {
            let mut dir = layout.repository_dir(&repo.name);
            while dir.pop() && dir.starts_with(&top) && dir != top {
                namespaces.push(dir.clone());
            }
        }
        namespaces.sort_unstable();
        namespaces.dedup();
        Recheck {
            layout,
            index,
            since,
            revisions,
            namespaces,
            own: Mutex::new(HashMap::new()),
        }
    }

    /// When the index began, as this recheck measures changes.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// Checks every repository and the namespace directories; the first
    /// change found (by path order), if any. Runs on the current rayon pool.
    pub fn check_all(&self) -> Option<Change> {
        let namespaces = self
            .namespaces
            .par_iter()
            .filter_map(|dir| self.modified(dir))
            .min_by(|a, b| a.path.cmp(&b.path));
        let repositories = (0..self.index.repositories.len() as u32)
            .into_par_iter()
            .filter_map(|r| self.check_repository(r))
            .min_by(|a, b| a.path.cmp(&b.path));
        namespaces.or(repositories)
    }

    /// Checks one repository; the first change found, if any.
    pub fn check_repository(&self, r: u32) -> Option<Change> {
        let repo = &self.index.repositories[r as usize];
        let name = repo.name.as_str();
        let l = self.layout;
        let revisions = l.revisions_dir(name);
        let layers = l.layer_links_dir(name);
        let tags = l.tags_dir(name);
        let dirs = [
            l.repository_dir(name),
            parent(&tags),
            tags,
            parent(&revisions),
            revisions,
            parent(&layers),
            layers,
            l.uploads_dir(name),
        ];
        dirs.iter()
            .find_map(|dir| self.modified(dir))
            .or_else(|| {
                repo.tags
                    .iter()
                    .find_map(|t| self.modified(&l.tag_current_link(name, &t.name)))
            })
            .or_else(|| {
                self.revisions[r as usize]
                    .iter()
                    .find_map(|d| self.modified(&layout::link_file(&l.revision_dir(name, d))))
            })
    }

    /// Checks everything under `dir` (an upload about to be purged): a
    /// chunk received, or a hash state written, since the index began.
    pub fn check_tree(&self, dir: &Path) -> Option<Change> {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .find_map(|entry| match entry {
                Ok(entry) => self.modified(entry.path()),
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
                {
                    None
                }
                Err(e) => Some(Change {
                    path: e.path().unwrap_or(dir).to_path_buf(),
                    what: format!("cannot be checked ({e})"),
                }),
            })
    }

    /// Records that the sweep just changed `dir` (removed entries of it):
    /// later checks compare it against its time now.
    pub fn modified_by_sweep(&self, dir: &Path) {
        let time = fs::symlink_metadata(dir).and_then(|m| m.modified());
        // Groups of one directory's entries finish in any order: the latest
        // time any of them saw is the time after the sweep's last change.
        if let (Ok(time), Ok(mut map)) = (time, self.own.lock()) {
            let latest = map.entry(dir.to_path_buf()).or_insert(time);
            *latest = (*latest).max(time);
        }
    }

    /// Records that the sweep removed repository `r`'s directory and those
    /// above it it emptied: the directories above what went (a namespace,
    /// or a repository holding this one) changed by the sweep's hand.
    pub fn removed_by_sweep(&self, r: u32) {
        let top = self.layout.repositories_dir();
        let mut dir = self
            .layout
            .repository_dir(&self.index.repositories[r as usize].name);
        while dir.pop() && dir.starts_with(&top) {
            self.modified_by_sweep(&dir);
        }
    }

    /// Whether `path` changed: modified after the sweep's own last change to
    /// it or, without one, after the index began. Gone is no change: only
    /// something written can make dead content live again.
    fn modified(&self, path: &Path) -> Option<Change> {
        let own = self.own.lock().ok().and_then(|map| map.get(path).copied());
        let time = match fs::symlink_metadata(path).and_then(|m| m.modified()) {
            Ok(time) => time,
            // Nothing there, not even a directory on the way: nothing written.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return None;
            }
            Err(e) => {
                return Some(Change {
                    path: path.to_path_buf(),
                    what: format!("cannot be checked ({e})"),
                });
            }
        };
        // Strictly later: a write in the lock file's own clock tick came
        // before the index read anything, as a tree written just before the
        // run does.
        let changed = match own {
            Some(own) => time > own,
            None => time > self.since,
        };
        changed.then(|| Change {
            path: path.to_path_buf(),
            what: match own {
                Some(_) => {
                    "was modified after the sweep's own change to it, since the index began".into()
                }
                None => format!(
                    "was modified {} after the index began",
                    crate::duration::human(time.duration_since(self.since).unwrap_or_default())
                ),
            },
        })
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::plan::{Candidate, Reason};
    use crate::index::{Repository, Tag};
    use std::time::Duration;

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    fn write(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn set_old(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    /// A tree with repository `ns/app`: one tag, one revision the plan
    /// removes, everything an hour old.
    fn tree() -> (tempfile::TempDir, Layout, Index, Plan) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let repo = "ns/app";
        write(&layout.tag_current_link(repo, "t"));
        write(&layout::link_file(&layout.revision_dir(repo, &d(1))));
        write(&layout::link_file(&layout.layer_link_dir(repo, &d(2))));
        fs::create_dir_all(layout.uploads_dir(repo)).unwrap();
        let index = Index {
            repositories: vec![Repository {
                name: repo.into(),
                tags: vec![Tag {
                    name: "t".into(),
                    current: Some(d(3)),
                    history: vec![d(3)],
                    pushed: None,
                }],
                ..Repository::default()
            }],
            ..Index::default()
        };
        let plan = Plan {
            candidates: vec![
                Candidate::blob(d(1), None)
                    .of_kind(CandidateKind::Manifest)
                    .in_repository(Some(0))
                    .because(Reason::UntaggedManifest),
            ],
            ..Plan::default()
        };
        let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(tmp.path())
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in paths {
            set_old(&p);
        }
        (tmp, layout, index, plan)
    }

    #[test]
    fn an_untouched_tree_has_no_change() {
        let (_tmp, layout, index, plan) = tree();
        let recheck = Recheck::new(&layout, &index, &plan, SystemTime::now());
        assert_eq!(recheck.check_all(), None);
    }

    #[test]
    fn a_retag_a_new_revision_a_new_upload_or_a_new_repository_is_a_change() {
        type Write = fn(&Layout);
        let cases: [(&str, Write); 5] = [
            ("current link rewritten", |l| {
                fs::write(l.tag_current_link("ns/app", "t"), b"y").unwrap()
            }),
            ("removed revision's link rewritten", |l| {
                fs::write(layout::link_file(&l.revision_dir("ns/app", &d(1))), b"y").unwrap()
            }),
            ("new revision", |l| {
                write(&layout::link_file(&l.revision_dir("ns/app", &d(9))))
            }),
            ("upload started", |l| {
                fs::create_dir(l.uploads_dir("ns/app").join("uuid")).unwrap()
            }),
            ("new repository beside", |l| {
                fs::create_dir_all(l.repository_dir("ns/other")).unwrap()
            }),
        ];
        for (what, change) in cases {
            let (_tmp, layout, index, plan) = tree();
            let recheck = Recheck::new(&layout, &index, &plan, SystemTime::now());
            std::thread::sleep(Duration::from_millis(20));
            change(&layout);
            let found = recheck.check_all();
            assert!(found.is_some(), "{what} is seen");
            assert!(
                found.unwrap().path.starts_with(layout.repositories_dir()),
                "{what}"
            );
        }
    }

    #[test]
    fn the_sweeps_own_change_is_not_a_change_but_a_later_one_is() {
        let (_tmp, layout, index, plan) = tree();
        let recheck = Recheck::new(&layout, &index, &plan, SystemTime::now());
        std::thread::sleep(Duration::from_millis(20));
        let revision = layout.revision_dir("ns/app", &d(1));
        fs::remove_file(layout::link_file(&revision)).unwrap();
        fs::remove_dir(&revision).unwrap();
        recheck.modified_by_sweep(&layout.revisions_dir("ns/app"));
        assert_eq!(recheck.check_all(), None);
        std::thread::sleep(Duration::from_millis(20));
        write(&layout::link_file(&layout.revision_dir("ns/app", &d(8))));
        let change = recheck
            .check_all()
            .expect("a revision pushed after the sweep's own change");
        assert_eq!(change.path, layout.revisions_dir("ns/app"));
    }
}
