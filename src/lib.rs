//! regsweep: an offline garbage collector for the storage of a CNCF
//! distribution registry (`registry:2`, v2.x and v3.x) on the filesystem
//! driver.
//!
//! The pipeline is index → mark → plan → sweep → report:
//! - [`index`] reads the tree in parallel into repositories, tags, revisions,
//!   layer links, blobs and uploads;
//! - [`mark`] follows references from the roots (tags, and every revision
//!   unless untagged manifests are deleted) through every manifest kind;
//! - [`plan`] lists what nothing live reaches, each with its reason;
//! - [`sweep`] deletes it in an order that keeps the registry consistent if
//!   interrupted;
//! - [`report`] renders the result for people and as JSON.
//!
//! The library knows nothing of the command line; [`Collector`] runs the
//! pipeline on a [`GcConfig`].

#![deny(missing_docs)]

pub mod digest;
pub mod error;
pub mod fs_at;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod mark;
pub mod plan;
pub mod progress;
pub mod report;
pub mod sweep;
pub mod target;
pub mod warning;

use rayon::{ThreadPool, ThreadPoolBuilder};

pub use error::{Error, Result};
pub use layout::Layout;
pub use report::{ExitStatus, Report};

use index::Index;
use plan::Plan;
use progress::Progress;
use sweep::{SweepOptions, SweepOutcome};
use warning::Warning;

/// What a `gc` run is asked to do.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// The storage to collect.
    pub layout: Layout,
    /// Manifests no tag reaches are garbage too.
    pub delete_untagged: bool,
    /// Also read every `_layers` link and report invalid ones.
    pub check_layer_links: bool,
    /// Worker threads; `None` for one per CPU.
    pub threads: Option<usize>,
    /// Progress on stderr.
    pub progress: Progress,
    /// Sweep options.
    pub sweep: SweepOptions,
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
}

/// Runs the pipeline in a thread pool of its own.
pub struct Collector {
    config: GcConfig,
    pool: ThreadPool,
}

impl Collector {
    /// A collector for `config`.
    pub fn new(config: GcConfig) -> Result<Collector> {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("regsweep-{i}"))
            .build()
            .map_err(|e| Error::ThreadPool {
                threads,
                reason: e.to_string(),
            })?;
        Ok(Collector { config, pool })
    }

    /// The configuration.
    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Indexes, marks and plans. Deletes nothing.
    pub fn plan(&self) -> Result<Planned> {
        let layout = &self.config.layout;
        let progress = self.config.progress;
        self.pool.install(|| {
            let task = progress.spinner("indexing");
            let options = index::IndexOptions {
                check_layer_links: self.config.check_layer_links,
            };
            let index = index::build(layout, options, &task)?;
            task.finish();
            let task = progress.spinner("marking");
            let marking = mark::mark(layout, &index, self.config.delete_untagged, &task);
            task.finish();
            let plan = Plan::new(&index, &marking);
            let mut warnings = index.warnings.clone();
            warnings.extend(marking.warnings);
            warnings.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
            Ok(Planned {
                index,
                plan,
                warnings,
            })
        })
    }

    /// Deletes what `planned` lists.
    pub fn sweep(&self, planned: &Planned) -> SweepOutcome {
        self.pool.install(|| {
            sweep::sweep(
                &self.config.layout,
                &planned.index,
                &planned.plan,
                self.config.sweep,
                self.config.progress,
            )
        })
    }

    /// The report of a run; `outcome` is `None` when nothing was swept.
    pub fn report<'a>(&self, planned: &'a Planned, outcome: Option<SweepOutcome>) -> Report<'a> {
        Report::new(
            self.config.layout.root().to_path_buf(),
            self.config.delete_untagged,
            &planned.index,
            &planned.plan,
            planned.warnings.clone(),
            outcome,
        )
    }
}
