//! What a policy decided for a tag, and why.

use std::fmt;

use crate::duration::Age;

use super::Policy;

/// Why a tag is kept or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Protected by a `--protect` reference.
    Protected(String),
    /// Its `current/link` cannot be read: its history is kept, so is it.
    Unreadable,
    /// It is `latest`.
    Latest,
    /// No rule takes it.
    NoRule,
    /// A `keep` rule takes it.
    KeepRule,
    /// Among the `keep_last` most recently pushed of its rule: rank (from 1) of `keep_last`.
    Recent {
        /// 1 for the most recently pushed.
        rank: usize,
        /// The rule's `keep_last`.
        keep_last: usize,
    },
    /// Pushed within the rule's `older_than`.
    Young(Age),
    /// Its push time is unknown, so `older_than` cannot be decided.
    UnknownAge,
    /// Its rule would delete it, but it was pulled within the pull window.
    Pulled(Box<PullReason>),
    /// Its rule would delete it, but it was pushed within the pull window:
    /// too new to have been pulled.
    PushedInPullWindow(Age),
    /// Its rule would delete it, but it was pushed within `--min-age`.
    TooRecent,
    /// Its repository is kept whole (a manifest cannot be read).
    Damaged,
    /// Beyond the rule's `keep_last`, (and older than its `older_than`, if set).
    Old {
        /// 1 for the most recently pushed.
        rank: usize,
        /// The rule's `keep_last`, if set.
        keep_last: Option<usize>,
        /// The rule's `older_than`, if set.
        older_than: Option<Age>,
    },
    /// Beyond its rule's limits and not pulled or pushed within the pull
    /// window.
    NotPulled {
        /// Why its rule deletes it ([`Why::Old`]).
        old: Box<Why>,
        /// The pull window.
        window: Age,
        /// How long ago its last pull in the logs was, if there was one.
        last_pulled: Option<std::time::Duration>,
    },
    /// The guard: every tag of the repository would be deleted.
    Guard,
}

/// A pull that keeps a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReason {
    /// How long before the run.
    pub ago: std::time::Duration,
    /// How, and by whom: `HEAD by tag, containerd/1.7`.
    pub how: String,
    /// The window it fell within.
    pub window: Age,
}

impl Why {
    /// Whether the tag is deleted.
    pub fn deletes(&self) -> bool {
        matches!(self, Why::Old { .. } | Why::NotPulled { .. })
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Protected(by) => write!(f, "protected by `{by}`"),
            Why::Unreadable => write!(f, "its current link cannot be read"),
            Why::Latest => write!(f, "`latest` is kept"),
            Why::NoRule => write!(f, "no rule takes it"),
            Why::KeepRule => write!(f, "kept by its rule"),
            Why::Recent { rank, keep_last } => {
                write!(f, "among the {keep_last} most recently pushed (#{rank})")
            }
            Why::Young(age) => write!(f, "pushed within {age}"),
            Why::UnknownAge => write!(f, "push time unknown"),
            Why::Pulled(pull) => write!(
                f,
                "pulled {} ago ({}), within {}",
                crate::duration::human(pull.ago),
                pull.how,
                pull.window
            ),
            Why::PushedInPullWindow(window) => {
                write!(f, "pushed within {window}, the pull window")
            }
            Why::NotPulled {
                old,
                window,
                last_pulled,
            } => {
                write!(f, "{old}; not pulled or pushed within {window} (")?;
                match last_pulled {
                    Some(ago) => write!(f, "last pull {} ago)", crate::duration::human(*ago)),
                    None => write!(f, "no pull in the logs)"),
                }
            }
            Why::TooRecent => write!(f, "pushed within --min-age; kept for now"),
            Why::Damaged => write!(
                f,
                "the repository is kept whole: one of its manifests cannot be read"
            ),
            Why::Old {
                rank,
                keep_last,
                older_than,
            } => {
                let mut parts = Vec::new();
                if let Some(n) = keep_last.filter(|n| *n > 0) {
                    parts.push(format!("beyond the {n} most recently pushed (#{rank})"));
                }
                if let Some(age) = older_than {
                    parts.push(format!("pushed more than {age} ago"));
                }
                if parts.is_empty() {
                    parts.push("its rule keeps none".into());
                }
                write!(f, "{}", parts.join(", "))
            }
            Why::Guard => write!(
                f,
                "every tag of the repository would be deleted; kept (--allow-empty-repos to allow)"
            ),
        }
    }
}

/// The decision about one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDecision {
    /// Index into the repository's tags.
    pub tag: u32,
    /// The rule that decided, as an index into [`Policy::rules`]; `None` for
    /// decisions made before any rule (protection, `latest`, an unreadable
    /// link) or because no rule took the tag.
    pub rule: Option<u32>,
    /// Why, and so whether it is deleted.
    pub why: Why,
}

impl TagDecision {
    /// Whether the tag is deleted.
    pub fn deletes(&self) -> bool {
        self.why.deletes()
    }

    /// How reports name what decided: the rule's id, or `protected`,
    /// `unreadable`, `latest`, `no_rule`, `guard`.
    pub fn decided_by<'p>(&self, policy: &'p Policy) -> &'p str {
        match (&self.why, self.rule) {
            (Why::Protected(_), _) => "protected",
            (Why::Unreadable, _) => "unreadable",
            (Why::Latest, _) => "latest",
            (Why::Guard, _) => "guard",
            (Why::Damaged, _) => "damaged",
            (Why::TooRecent, _) => "min_age",
            (_, Some(r)) => &policy.rules[r as usize].id,
            (_, None) => "no_rule",
        }
    }
}

/// The policy's decisions for one repository it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryDecision {
    /// Index into [`crate::index::Index::repositories`].
    pub repository: u32,
    /// One decision per tag, in the repository's tag order.
    pub tags: Vec<TagDecision>,
    /// The guard kept every tag: the rules that would have deleted them.
    pub refused: Option<Vec<u32>>,
}

impl RepositoryDecision {
    /// The tags deleted.
    pub fn deleted(&self) -> impl Iterator<Item = &TagDecision> {
        self.tags.iter().filter(|d| d.deletes())
    }
}
