//! Progress on stderr, shown only when stderr is a terminal: stdout stays
//! for the report, and logs stay free of bar redraws.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress tasks, or hidden ones when progress is off.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Progress shown when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    /// No progress at all.
    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// A counter without a known total.
    pub fn spinner(&self, message: &'static str) -> Task {
        self.make(None, message)
    }

    /// A bar towards `total`.
    pub fn bar(&self, total: u64, message: &'static str) -> Task {
        self.make(Some(total), message)
    }

    fn make(&self, total: Option<u64>, message: &'static str) -> Task {
        if !self.enabled {
            return Task(None);
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:>10} [{bar:30}] {human_pos}/{human_len} {per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg:>10} {human_pos} files {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Task(Some(bar))
    }
}

/// One progress line; every method is a no-op when progress is off.
#[derive(Debug, Default)]
pub struct Task(Option<ProgressBar>);

impl Task {
    /// A task that shows nothing.
    pub fn hidden() -> Task {
        Task(None)
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Removes the line.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.finish();
    }
}
