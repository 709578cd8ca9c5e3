//! A request to stop, shared with whoever catches the signals.
//!
//! The library installs no signal handler: the caller owns a flag (set by
//! SIGINT, SIGTERM or SIGHUP in `regsweep`) and hands it in. Indexing and
//! planning check it between two directories or files and give up with
//! [`crate::Error::Interrupted`] (nothing was deleted); the sweep checks it
//! before each deletion and stops between two.
//!
//! [`Interrupt::check`], the stop as an error, is defined with the error in
//! [`crate::error`]: this module needs nothing of the crate.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Where a run is: what an interruption stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the tree.
    Index,
    /// Loading manifests, marking, looking at ages, planning.
    Plan,
    /// Waiting for the operator's answer.
    Prompt,
    /// Deleting, or moving into the trash.
    Sweep,
}

impl Phase {
    /// `index`, `plan`, `prompt`, `sweep`: as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Index => "index",
            Phase::Plan => "plan",
            Phase::Prompt => "prompt",
            Phase::Sweep => "sweep",
        }
    }

    /// What the run was doing, for messages.
    pub fn doing(self) -> &'static str {
        match self {
            Phase::Index => "indexing",
            Phase::Plan => "planning",
            Phase::Prompt => "at the prompt",
            Phase::Sweep => "sweeping",
        }
    }
}

/// The stop flag, and who is told of each checkpoint passed.
#[derive(Clone, Copy, Default)]
pub struct Interrupt {
    flag: Option<&'static AtomicBool>,
    observer: Option<fn(Phase)>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("requested", &self.requested())
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Interrupt {
    /// Stops when `flag` is set.
    pub fn new(flag: &'static AtomicBool) -> Interrupt {
        Interrupt {
            flag: Some(flag),
            observer: None,
        }
    }

    /// Also calls `observer` at every checkpoint, before looking at the
    /// flag: it learns the phase, and may wait there (a test pausing a run
    /// at a known point). It cannot change what the run decides.
    pub fn observed_by(self, observer: fn(Phase)) -> Interrupt {
        Interrupt {
            observer: Some(observer),
            ..self
        }
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// A point where `phase` can stop: whether it should.
    pub fn stops(&self, phase: Phase) -> bool {
        if let Some(observe) = self.observer {
            observe(phase);
        }
        self.requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn check_fails_once_the_flag_is_set_and_tells_the_observer_first() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        let interrupt = Interrupt::new(&FLAG).observed_by(|phase| {
            assert_eq!(phase, Phase::Index);
            SEEN.fetch_add(1, Ordering::SeqCst);
        });
        assert!(interrupt.check(Phase::Index).is_ok());
        FLAG.store(true, Ordering::SeqCst);
        let err = interrupt.check(Phase::Index).unwrap_err();
        assert!(matches!(
            err,
            Error::Interrupted {
                phase: Phase::Index
            }
        ));
        assert_eq!(SEEN.load(Ordering::SeqCst), 2);
        assert!(!Interrupt::default().stops(Phase::Sweep));
    }
}
