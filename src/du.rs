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
//! Cost: with a price per GiB-month, every byte figure also has its monthly
//! cost, `bytes / 2^30 × price`, in the price's currency.

use std::io::{self, Write};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::digest::DigestMap;
use crate::index::{BlobId, Index};
use crate::layout::Layout;
use crate::mark::{self, Loaded, Marking};
use crate::plan::Plan;
use crate::progress::Task;
use crate::report::{ExitStatus, human_bytes};
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
    #[serde(serialize_with = "crate::report::lossy_path")]
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
    let mut ids = Vec::new();
    for digest in &mark.live {
        ids.extend(index.blob_id(digest));
        if let Some(Ok(refs)) = loaded.get(digest) {
            ids.extend_from_slice(&refs.stored);
        }
    }
    for revision in repository
        .revisions
        .iter()
        .filter(|r| mark.is_live(&r.digest))
    {
        ids.extend(revision.signatures.iter().filter_map(|d| index.blob_id(d)));
    }
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

/// Computes the usage from a marked index, the manifests it loaded, and the
/// plan `gc` would make.
pub fn usage(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    marking: &Marking,
    plan: &Plan,
    warnings: Vec<Warning>,
    options: DuOptions,
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
        warnings,
        exit_code,
    }
}

/// Loads every manifest the index's repositories hold or reach, marks, and
/// plans; then computes the usage. Runs on the current rayon pool.
pub fn compute(
    layout: &Layout,
    index: &Index,
    mut warnings: Vec<Warning>,
    options: DuOptions,
    progress: &Task,
) -> Usage {
    let loaded = mark::load_all(layout, index, progress);
    let marking = mark::mark_loaded(layout, index, &loaded, options.delete_untagged);
    let plan = Plan::new(index, &marking);
    warnings.extend(marking.warnings.iter().cloned());
    warnings.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    usage(layout, index, &loaded, &marking, &plan, warnings, options)
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::index::{Blob, Repository, Revision, Tag};
    use crate::mark::{Refs, mark_loaded};

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
        )
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
