//! What a policy decided, as the report shows it: per rule, per repository
//! and per tag.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::index::Index;

use super::{Action, Freed, Policy, RepositoryDecision};

/// A rule, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRecord {
    /// `rules[2]`, or the flags.
    pub id: String,
    /// Its `name`.
    pub name: Option<String>,
    /// Repository globs; empty for every repository.
    pub repositories: Vec<String>,
    /// The tag pattern; `None` for every tag.
    pub tags: Option<String>,
    /// Keeps what it takes.
    pub keep: bool,
    /// `keep_last`.
    pub keep_last: Option<usize>,
    /// `older_than`.
    pub older_than: Option<String>,
    /// `pulled_within`.
    pub pulled_within: Option<String>,
}

/// One tag decision, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct TagRecord {
    /// The tag.
    pub tag: String,
    /// What it points at.
    pub digest: Option<String>,
    /// When it was pushed (RFC 3339, UTC).
    pub pushed: Option<String>,
    /// What decided: a rule id, or `protected`, `unreadable`, `latest`,
    /// `no_rule`, `guard`, `damaged`, `min_age`.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// For a deleted tag, the bytes deleting it frees (what only its image
    /// holds among the deletions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// The guard's refusal for a repository.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The rules that would have deleted every tag.
    pub rules: Vec<String>,
    /// How many tags.
    pub tags: u64,
}

/// A repository the policy covers, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryRecord {
    /// The repository.
    pub name: String,
    /// Tags kept, with the rule that kept them.
    pub kept: Vec<TagRecord>,
    /// Tags deleted, with the rule that deleted them.
    pub deleted: Vec<TagRecord>,
    /// Distinct bytes the deleted tags free together.
    pub bytes: u64,
    /// Set when the guard kept every tag.
    pub refused: Option<Refusal>,
}

/// The policy part of a `gc` report.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// The policy file, or `None` for flags.
    #[serde(serialize_with = "crate::text::lossy_optional_path")]
    pub source: Option<PathBuf>,
    /// The rules, in order.
    pub rules: Vec<RuleRecord>,
    /// `latest` is kept whatever the rules say.
    pub keep_latest: bool,
    /// `--repos` globs.
    pub scope: Vec<String>,
    /// `--allow-empty-repos`.
    pub allow_empty_repos: bool,
    /// `--keep-pulled-within`.
    pub keep_pulled_within: Option<String>,
    /// The `--protect` file.
    #[serde(serialize_with = "crate::text::lossy_optional_path")]
    pub protect: Option<PathBuf>,
    /// Tags kept in the repositories the policy covers.
    pub tags_kept: u64,
    /// Tags deleted.
    pub tags_deleted: u64,
    /// Distinct bytes the deleted tags free (over every repository).
    pub bytes: u64,
    /// Per repository the policy covers, in name order.
    pub repositories: Vec<RepositoryRecord>,
}

impl PolicyReport {
    /// The report of `policy`'s `decisions` over `index`, with the bytes
    /// the deletions free.
    pub fn new(
        policy: &Policy,
        protect: Option<&Path>,
        index: &Index,
        decisions: &[RepositoryDecision],
        freed: &Freed,
    ) -> PolicyReport {
        let rules = policy
            .rules
            .iter()
            .map(|r| {
                let (keep, keep_last, older_than) = match r.action {
                    Action::Keep => (true, None, None),
                    Action::Delete {
                        keep_last,
                        older_than,
                    } => (false, keep_last, older_than.map(|a| a.to_string())),
                };
                RuleRecord {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    repositories: r
                        .repositories
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                    tags: r.tags.as_ref().map(|t| t.as_str().to_owned()),
                    keep,
                    keep_last,
                    older_than,
                    pulled_within: r.pulled_within.map(|a| a.to_string()),
                }
            })
            .collect();
        let mut repositories = Vec::new();
        let (mut tags_kept, mut tags_deleted) = (0, 0);
        for (di, decision) in decisions.iter().enumerate() {
            let repo = &index.repositories[decision.repository as usize];
            let mut record = RepositoryRecord {
                name: repo.name.clone(),
                kept: Vec::new(),
                deleted: Vec::new(),
                bytes: freed.repositories.get(di).copied().unwrap_or(0),
                refused: decision.refused.as_ref().map(|rules| Refusal {
                    rules: rules
                        .iter()
                        .map(|r| policy.rules[*r as usize].id.clone())
                        .collect(),
                    tags: decision.tags.len() as u64,
                }),
            };
            for (ti, d) in decision.tags.iter().enumerate() {
                let tag = &repo.tags[d.tag as usize];
                let rule = d.decided_by(policy).to_owned();
                let reason = d.why.to_string();
                let mut item = TagRecord {
                    tag: tag.name.clone(),
                    digest: tag.current.map(|d| d.to_string()),
                    pushed: tag.pushed.map(crate::clock::rfc3339),
                    rule,
                    reason,
                    bytes: None,
                };
                if d.deletes() {
                    item.bytes = Some(
                        freed
                            .tags
                            .get(di)
                            .and_then(|t| t.get(ti))
                            .copied()
                            .unwrap_or(0),
                    );
                    record.deleted.push(item);
                    tags_deleted += 1;
                } else {
                    record.kept.push(item);
                    tags_kept += 1;
                }
            }
            repositories.push(record);
        }
        PolicyReport {
            source: policy.source.clone(),
            rules,
            keep_latest: policy.keep_latest,
            scope: policy.scope.iter().map(|p| p.as_str().to_owned()).collect(),
            allow_empty_repos: policy.allow_empty_repos,
            keep_pulled_within: policy.keep_pulled_within.map(|a| a.to_string()),
            protect: protect.map(Path::to_path_buf),
            tags_kept,
            tags_deleted,
            bytes: freed.total,
            repositories,
        }
    }
}
