//! Progress on stderr, shown only when stderr is a terminal: stdout stays
//! for the report, and logs stay free of bar redraws.
//!
//! A line names what runs and what it counts (`indexing: 12,345 files`,
//! `moving to the trash: [==>  ] 1,234/5,000 paths`), the rate in whole
//! units per second, the time elapsed, and, towards a known total, the time
//! left.

use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Makes progress tasks, or hidden ones when progress is off.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

/// `{spinner}` line: what runs, how many so far, rate, time elapsed.
const SPINNER_TEMPLATE: &str = "{spinner} {prefix}: {human_pos} {msg} ({rate}/s, {elapsed})";
/// `{bar}` line: also the total and the time left.
const BAR_TEMPLATE: &str =
    "{prefix}: [{bar:30}] {human_pos}/{human_len} {msg} ({rate}/s, {elapsed} elapsed, ETA {eta})";

impl Progress {
    /// Progress shown when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    /// No progress at all.
    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// A counter without a known total: `label` says what runs, `unit`
    /// what it counts (`indexing`, `files`).
    pub fn spinner(&self, label: &'static str, unit: &'static str) -> Task {
        self.make(None, label, unit, ProgressDrawTarget::stderr)
    }

    /// A bar towards `total` `unit`s (`deleting`, `paths`).
    pub fn bar(&self, total: u64, label: &'static str, unit: &'static str) -> Task {
        self.make(Some(total), label, unit, ProgressDrawTarget::stderr)
    }

    fn make(
        &self,
        total: Option<u64>,
        label: &'static str,
        unit: &'static str,
        target: impl FnOnce() -> ProgressDrawTarget,
    ) -> Task {
        if !self.enabled {
            return Task(None);
        }
        // Named before the first frame is drawn.
        let bar = ProgressBar::with_draw_target(total, target())
            .with_style(style(total.is_some()))
            .with_prefix(label)
            .with_message(unit);
        bar.enable_steady_tick(Duration::from_millis(120));
        Task(Some(bar))
    }
}

/// The line's style; `{rate}` is a whole number with thousands separators
/// (indicatif's `{per_sec}` shows four decimals).
fn style(with_total: bool) -> ProgressStyle {
    let (template, fallback) = if with_total {
        (BAR_TEMPLATE, ProgressStyle::default_bar())
    } else {
        (SPINNER_TEMPLATE, ProgressStyle::default_spinner())
    };
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or(fallback)
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanCount(whole_rate(state.per_sec())));
            },
        )
}

/// A rate as a whole number; 0 before there is one (the first instants
/// give no finite rate).
fn whole_rate(per_sec: f64) -> u64 {
    if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps the last line drawn.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn line(&self) -> String {
            self.0.lock().unwrap().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            if !s.trim().is_empty() {
                *self.0.lock().unwrap() = s.to_owned();
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The line `task` shows after counting `n`.
    fn drawn(total: Option<u64>, label: &'static str, unit: &'static str, n: u64) -> String {
        let screen = Screen::default();
        let term = screen.clone();
        let task = Progress::new(true).make(total, label, unit, move || {
            ProgressDrawTarget::term_like(Box::new(term))
        });
        std::thread::sleep(Duration::from_millis(20));
        task.inc(n);
        let bar = task.0.as_ref().expect("progress is on");
        // A steady tick makes `tick` a no-op; past the draw rate limit,
        // `tick` draws.
        bar.disable_steady_tick();
        std::thread::sleep(Duration::from_millis(60));
        bar.tick();
        let line = screen.line();
        drop(task);
        line
    }

    /// The number before `/s`.
    fn rate_in(line: &str) -> &str {
        let end = line.find("/s").unwrap_or_else(|| panic!("no rate: {line}"));
        let start = line[..end].rfind('(').map_or(0, |i| i + 1);
        &line[start..end]
    }

    #[test]
    fn a_bar_shows_what_it_counts_elapsed_time_eta_and_a_whole_rate() {
        let line = drawn(Some(5000), "moving to the trash", "paths", 1234);
        assert!(line.starts_with("moving to the trash: ["), "{line}");
        assert!(line.contains("1,234/5,000 paths"), "{line}");
        assert!(line.contains(" elapsed, ETA "), "{line}");
        let rate = rate_in(&line);
        assert!(
            !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == ','),
            "a whole number: {rate:?} in {line}"
        );
    }

    #[test]
    fn a_spinner_shows_what_it_counts_and_elapsed_time() {
        let line = drawn(None, "indexing", "files", 12_345);
        assert!(line.contains("indexing: 12,345 files ("), "{line}");
        let rate = rate_in(&line);
        assert!(
            rate.chars().all(|c| c.is_ascii_digit() || c == ','),
            "{line}"
        );
        assert!(!line.contains("ETA"), "no total, no ETA: {line}");
    }

    #[test]
    fn rates_are_whole_and_never_garbage() {
        assert_eq!(whole_rate(1234.5678), 1235);
        assert_eq!(whole_rate(f64::NAN), 0);
        assert_eq!(whole_rate(f64::INFINITY), 0);
        assert_eq!(whole_rate(-1.0), 0);
    }

    #[test]
    fn hidden_progress_draws_nothing() {
        let task = Progress::hidden().bar(10, "deleting", "paths");
        assert!(task.0.is_none());
        task.inc(1);
    }
}
