//! Retention policies: which tags of which repositories a run deletes.
//!
//! A policy is an ordered list of [`Rule`]s. Each rule names the
//! repositories it applies to (globs; all when omitted), the tags it takes
//! (a regular expression matched against the whole tag; all when omitted),
//! and what happens to them: kept (`keep`), or deleted except the `keep_last`
//! most recently pushed and those pushed within `older_than`.
//!
//! Evaluation, per repository, decides every tag once:
//! 1. a tag that is protected (`--protect`), or whose `current/link` cannot
//!    be read, or that is `latest` (unless the policy sets `keep_latest` to
//!    false) is kept before any rule is looked at;
//! 2. otherwise the first rule that applies to the repository and matches the
//!    tag takes it (first match wins, as in ECR lifecycle policies), and tags
//!    no rule takes are kept;
//! 3. within each rule, the tags it took are ranked by push time (the mtime
//!    of `current/link`), newest first, ties by name: the first `keep_last`
//!    are kept, then those pushed within `older_than`; the rest are deleted;
//! 4. a tag the rule would delete is kept when it was pulled (by name, or
//!    its manifest by any reference) or pushed within the rule's
//!    `pulled_within` or `--keep-pulled-within`, as the registry's logs
//!    tell (see [`crate::retention::pulls`]);
//! 5. the guard: a repository where every tag would be deleted keeps them
//!    all, and says which rules wanted them, unless empty repositories are
//!    allowed.
//!
//! Evaluation is idempotent: deleting the tags a policy picked does not
//! change the decision for any other tag (ranks of kept tags only depend on
//! newer tags, which stay), so a run interrupted after deleting some tags
//! and run again with the same policy deletes exactly the rest.
//!
//! Tag patterns are anchored: `SNAPSHOT` matches the tag `SNAPSHOT` only,
//! `.*-SNAPSHOT` matches `1.0-SNAPSHOT`. A pattern that is deleting tags should
//! say exactly what it means; the same rule holds for keeping, so there is one
//! rule to remember (GitLab's cleanup policies do the same).
//!
//! The policy's parts: its file and flags ([`PolicyFlags`], [`Policy::parse`])
//! in `file.rs`, why it cannot be used ([`PolicyError`]) in `error.rs`, the
//! evaluation of its rules in `evaluate.rs`, what it decided for each tag
//! ([`TagDecision`], [`Why`]) in `decision.rs`, and its report
//! ([`PolicyReport`]) in `report.rs`.

mod decision;
pub(crate) mod error;
mod evaluate;
mod file;
mod report;
#[cfg(test)]
mod tests;

pub use decision::{PullReason, RepositoryDecision, TagDecision, Why};
pub use error::PolicyError;
pub use evaluate::{Freed, TagFacts, dropped_tags, freed_bytes};
pub use file::{JsonError, PolicyFlags};
pub use report::{PolicyReport, Refusal, RepositoryRecord, RuleRecord, TagRecord};

use std::path::PathBuf;

use regex::Regex;

use crate::duration::Age;

/// The tag that is kept unless a policy file says `"keep_latest": false`.
pub const LATEST: &str = "latest";

/// A regular expression that must match a whole tag.
#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    regex: Regex,
}

impl TagPattern {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: &str) -> Result<TagPattern, String> {
        let regex = Regex::new(&format!("^(?:{source})$")).map_err(|e| match e {
            regex::Error::Syntax(text) => format!("invalid regular expression: {text}"),
            other => format!("invalid regular expression: {other}"),
        })?;
        Ok(TagPattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether the whole of `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// A glob over repository names, matched against the whole name: `*`
/// matches within one path component, `?` one character that is not `/`,
/// `**` as a whole component any number of components (`team/**` matches
/// `team/app` and `team/app/web`, not `team`; `**/app` matches `app` and
/// `x/y/app`; `a/**/b` matches `a/b` and `a/x/b`), `[abc]` one of the
/// characters and `{a,b}` either glob; everything else matches itself.
/// Matching is `globset`'s, with `literal_separator` so that `*` and `?`
/// stop at `/`.
#[derive(Debug, Clone)]
pub struct RepoPattern {
    source: String,
    matcher: globset::GlobMatcher,
}

impl RepoPattern {
    /// Compiles the glob `source`.
    pub fn new(source: &str) -> Result<RepoPattern, String> {
        if source.is_empty() {
            return Err("empty repository glob".into());
        }
        // globset reads `team**` as `team*`, which stops at `/`; it was
        // once read as crossing components. Neither is what everyone
        // means, so a `**` inside a component is refused.
        if source.split('/').any(|c| c.contains("**") && c != "**") {
            return Err(format!(
                "invalid repository glob `{source}`: `**` must be a whole path component \
                 (`team/**`, `**/app`, `a/**/b`); within a component use `*`"
            ));
        }
        let glob = globset::GlobBuilder::new(source)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid repository glob `{source}`: {}", e.kind()))?;
        Ok(RepoPattern {
            source: source.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether the repository `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// What a rule does with the tags it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep them all.
    Keep,
    /// Delete them, except the `keep_last` most recently pushed and those
    /// pushed within `older_than`.
    Delete {
        /// How many of the most recently pushed to keep.
        keep_last: Option<usize>,
        /// Only tags pushed longer ago than this are deleted.
        older_than: Option<Age>,
    },
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// How reports name the rule: `rules[2]` in a policy file, or the flags
    /// it was made of (`--keep-last 5 --older-than 90d`).
    pub id: String,
    /// The rule's `name`, if the policy file gives one.
    pub name: Option<String>,
    /// Repositories it applies to; empty means every repository.
    pub repositories: Vec<RepoPattern>,
    /// Tags it takes; `None` means every tag.
    pub tags: Option<TagPattern>,
    /// What it does with them.
    pub action: Action,
    /// A tag it would delete is kept if pulled or pushed within this.
    pub pulled_within: Option<Age>,
}

impl Rule {
    /// Whether the rule applies to the repository `name`.
    pub fn applies_to(&self, name: &str) -> bool {
        self.repositories.is_empty() || self.repositories.iter().any(|p| p.matches(name))
    }

    /// Whether the rule takes `tag`.
    pub fn takes(&self, tag: &str) -> bool {
        self.tags.as_ref().is_none_or(|p| p.matches(tag))
    }

    /// `rules[2] (snapshots)`, or the id alone.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.id),
            None => self.id.clone(),
        }
    }
}

/// A retention policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The rules, in order: the first that takes a tag decides it.
    pub rules: Vec<Rule>,
    /// Keep the tag `latest` whatever the rules say.
    pub keep_latest: bool,
    /// Repositories the policy is limited to (`--repos`); empty means all.
    pub scope: Vec<RepoPattern>,
    /// Let a policy delete every tag of a repository.
    pub allow_empty_repos: bool,
    /// The policy file it was read from; `None` when made of flags.
    pub source: Option<PathBuf>,
    /// `--keep-pulled-within`: a tag any rule would delete is kept if
    /// pulled or pushed within this.
    pub keep_pulled_within: Option<Age>,
}

impl Policy {
    /// The longest pull window of the policy, with the rule that gives it
    /// (`--keep-pulled-within 30d`, `policy.json: rules[1] pulled_within
    /// 30d`); `None` when no rule looks at pulls.
    pub fn pull_window(&self) -> Option<(Age, String)> {
        let flag = self
            .keep_pulled_within
            .map(|age| (age, format!("--keep-pulled-within {age}")));
        let rules = self.rules.iter().filter_map(|rule| {
            let age = rule.pulled_within?;
            let at = match &self.source {
                Some(path) => format!("{}: {}", path.display(), rule.label()),
                None => rule.label(),
            };
            Some((age, format!("{at} pulled_within {age}")))
        });
        flag.into_iter().chain(rules).max_by_key(|(age, _)| *age)
    }

    /// Whether the policy looks at the repository `name` at all.
    pub fn covers(&self, name: &str) -> bool {
        (self.scope.is_empty() || self.scope.iter().any(|p| p.matches(name)))
            && self.rules.iter().any(|r| r.applies_to(name))
    }
}
