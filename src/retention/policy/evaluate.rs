//! The evaluation: every tag of every repository the policy covers decided
//! once (see the steps in [`super`]), the patterns checked against the
//! storage first, and what deleting the decided tags frees.

use std::path::Path;
use std::time::SystemTime;

use std::collections::HashMap;

use regex::Regex;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::duration::Age;
use crate::gc::mark::{Loaded, Refs};
use crate::index::{BlobId, Index, Tag};
use crate::retention::pulls::TagPulls;
use crate::warning::{Warning, WarningKind};

use super::error::{examples, plural};
use super::{
    Action, LATEST, Policy, PolicyError, PullReason, RepositoryDecision, Rule, TagDecision,
    TagPattern, Why,
};

impl TagPattern {
    /// The tags among `tags` that this pattern matches as a search, not
    /// whole (`^v1\.` in `v1.0`), sorted and without repeats.
    pub(super) fn search_matches<'t>(&self, tags: impl Iterator<Item = &'t str>) -> Vec<String> {
        // The source compiled when anchored, so it compiles unanchored.
        let Ok(search) = Regex::new(&self.source) else {
            return Vec::new();
        };
        let mut found: Vec<String> = tags
            .filter(|t| search.is_match(t))
            .map(str::to_owned)
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// A pattern that matches whole what this one matches as a search:
    /// `^v1\.` gives `^v1\..*`, `rc` gives `.*rc.*`; checked against `tags`
    /// (what it must match) and `others` (what it must not), falling back to
    /// `.*(?:PATTERN).*`, which is the search itself.
    pub(super) fn whole_match_suggestion(&self, tags: &[String], others: &[&str]) -> String {
        let source = self.source.as_str();
        let anchored_start = source.starts_with('^');
        let anchored_end = source.ends_with('$') && !source.ends_with("\\$");
        let simple = format!(
            "{}{source}{}",
            if anchored_start { "" } else { ".*" },
            if anchored_end { "" } else { ".*" }
        );
        let means_the_search = TagPattern::new(&simple).is_ok_and(|p| {
            !source.contains('|')
                && tags.iter().all(|t| p.matches(t))
                && !others.iter().any(|t| p.matches(t))
        });
        if means_the_search {
            simple
        } else {
            format!(".*(?:{source}).*")
        }
    }
}

/// What a tag is to a policy evaluation.
#[derive(Debug, Clone, Copy)]
pub struct TagFacts<'a> {
    /// The tag, as indexed.
    pub tag: &'a Tag,
    /// When it was last pushed (mtime of `current/link`); `None` if unknown.
    pub pushed: Option<SystemTime>,
    /// Why it is protected (the `--protect` reference), if it is.
    pub protected_by: Option<&'a str>,
    /// What the pull logs say about it (nothing without logs).
    pub pulls: TagPulls<'a>,
}

impl Policy {
    /// Decides every tag of every repository the policy covers. `facts(r, t)`
    /// tells about tag `t` of repository `r`; `now` is the time `older_than`
    /// counts back from; a tag pushed after `cutoff` (`--min-age`) is kept.
    pub fn evaluate<'a>(
        &self,
        index: &'a Index,
        now: SystemTime,
        cutoff: Option<SystemTime>,
        facts: impl Fn(usize, usize) -> TagFacts<'a>,
    ) -> Vec<RepositoryDecision> {
        index
            .repositories
            .iter()
            .enumerate()
            .filter(|(_, repo)| self.covers(&repo.name))
            .map(|(ri, repo)| {
                let facts: Vec<TagFacts> = (0..repo.tags.len()).map(|ti| facts(ri, ti)).collect();
                self.evaluate_repository(ri as u32, &repo.name, &facts, now, cutoff)
            })
            .collect()
    }

    /// Decides the tags of one repository.
    pub fn evaluate_repository(
        &self,
        repository: u32,
        name: &str,
        tags: &[TagFacts],
        now: SystemTime,
        cutoff: Option<SystemTime>,
    ) -> RepositoryDecision {
        let mut decisions: Vec<Option<TagDecision>> = vec![None; tags.len()];
        let rules: Vec<(usize, &Rule)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies_to(name))
            .collect();
        // Per applicable rule, the tags it takes.
        let mut taken: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
        for (ti, facts) in tags.iter().enumerate() {
            let decide = |why| {
                Some(TagDecision {
                    tag: ti as u32,
                    rule: None,
                    why,
                })
            };
            let name = facts.tag.name.as_str();
            decisions[ti] = if let Some(by) = facts.protected_by {
                decide(Why::Protected(by.to_owned()))
            } else if facts.tag.current.is_none() {
                decide(Why::Unreadable)
            } else if self.keep_latest && name == LATEST {
                decide(Why::Latest)
            } else if let Some(k) = rules.iter().position(|(_, r)| r.takes(name)) {
                taken[k].push(ti);
                None
            } else {
                decide(Why::NoRule)
            };
        }
        for ((ri, rule), members) in rules.iter().zip(&mut taken) {
            let rule_id = Some(*ri as u32);
            let Action::Delete {
                keep_last,
                older_than,
            } = rule.action
            else {
                for ti in members.iter() {
                    decisions[*ti] = Some(TagDecision {
                        tag: *ti as u32,
                        rule: rule_id,
                        why: Why::KeepRule,
                    });
                }
                continue;
            };
            // Newest first; unknown push times rank as the newest (kept
            // first), ties by name so the order is total.
            members.sort_by(|a, b| {
                let (fa, fb) = (&tags[*a], &tags[*b]);
                match (fa.pushed, fb.pushed) {
                    (Some(x), Some(y)) => y.cmp(&x),
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then_with(|| fa.tag.name.cmp(&fb.tag.name))
            });
            let window = rule.pulled_within.max(self.keep_pulled_within);
            for (i, ti) in members.iter().enumerate() {
                let rank = i + 1;
                let pushed = tags[*ti].pushed;
                let pulled = window.and_then(|w| pull_keeps(&tags[*ti], w, now));
                let why = match (keep_last, older_than, pushed) {
                    (Some(n), _, _) if rank <= n => Why::Recent { rank, keep_last: n },
                    (_, Some(_), None) => Why::UnknownAge,
                    (_, Some(age), Some(t))
                        if now.duration_since(t).unwrap_or_default() <= age.duration() =>
                    {
                        Why::Young(age)
                    }
                    _ => match pulled {
                        Some(kept) => kept,
                        None if pushed.zip(cutoff).is_some_and(|(p, c)| p > c) => Why::TooRecent,
                        None => {
                            let old = Why::Old {
                                rank,
                                keep_last,
                                older_than,
                            };
                            match window {
                                Some(window) => Why::NotPulled {
                                    old: Box::new(old),
                                    window,
                                    last_pulled: tags[*ti]
                                        .pulls
                                        .newest()
                                        .map(|p| crate::clock::age(now, p.time)),
                                },
                                None => old,
                            }
                        }
                    },
                };
                decisions[*ti] = Some(TagDecision {
                    tag: *ti as u32,
                    rule: rule_id,
                    why,
                });
            }
        }
        let mut tags: Vec<TagDecision> = decisions.into_iter().flatten().collect();
        let mut refused = None;
        if !self.allow_empty_repos && !tags.is_empty() && tags.iter().all(TagDecision::deletes) {
            let mut rules: Vec<u32> = tags.iter().filter_map(|d| d.rule).collect();
            rules.sort_unstable();
            rules.dedup();
            for decision in &mut tags {
                decision.why = Why::Guard;
            }
            refused = Some(rules);
        }
        RepositoryDecision {
            repository,
            tags,
            refused,
        }
    }
}

/// Why the pull window keeps `tag`, if it does: its last pull (by name, or
/// of its manifest by any reference), or else its push, within `window` of
/// `now`; or a push time that is unknown.
fn pull_keeps(tag: &TagFacts, window: Age, now: SystemTime) -> Option<Why> {
    let within = |t: SystemTime| crate::clock::age(now, t) <= window.duration();
    if let Some(pull) = tag.pulls.newest().filter(|p| within(p.time)) {
        return Some(Why::Pulled(Box::new(PullReason {
            ago: crate::clock::age(now, pull.time),
            how: pull.describe(&tag.tag.name),
            window,
        })));
    }
    match tag.pushed {
        // When it was pushed is unknown: perhaps within the window.
        None => Some(Why::UnknownAge),
        Some(t) => within(t).then_some(Why::PushedInPullWindow(window)),
    }
}

impl Policy {
    /// Checks the patterns against the indexed storage, before anything is
    /// decided. A keep pattern that matches no tag whole but some as a search
    /// (`--keep-tags '^v1\.'` for `v1.0`) is refused: it was meant to keep
    /// those tags and would keep none. A tag pattern or repository glob that
    /// matches nothing is a warning, named at `repositories_dir` for the
    /// flags and at the policy file for its rules.
    pub fn check_patterns(
        &self,
        index: &Index,
        repositories_dir: &Path,
    ) -> Result<Vec<Warning>, PolicyError> {
        let names: Vec<&str> = index.repositories.iter().map(|r| r.name.as_str()).collect();
        let in_scope =
            |name: &str| self.scope.is_empty() || self.scope.iter().any(|p| p.matches(name));
        let warn_at = self.source.as_deref().unwrap_or(repositories_dir);
        let warn = |message: String| {
            Warning::new(WarningKind::PolicyPatternUnmatched, warn_at, None, message)
        };
        let mut warnings = Vec::new();
        let mut refusal = None;
        for glob in &self.scope {
            if !names.iter().any(|n| glob.matches(n)) {
                warnings.push(warn(format!(
                    "--repos `{}` matches no repository; the policy deletes nothing there",
                    glob.as_str()
                )));
            }
        }
        for rule in &self.rules {
            // A warning names the policy file itself; a refusal is an error
            // of its own and names it here.
            let (at, refused_at) = match &self.source {
                Some(path) => (
                    rule.label(),
                    format!("{}: {}", path.display(), rule.label()),
                ),
                None if rule.action == Action::Keep => {
                    ("--keep-tags".to_owned(), "--keep-tags".to_owned())
                }
                None => ("--delete-tags".to_owned(), "--delete-tags".to_owned()),
            };
            for glob in &rule.repositories {
                if !names.iter().any(|n| in_scope(n) && glob.matches(n)) {
                    warnings.push(warn(format!(
                        "{at}: repositories `{}` matches no repository{}",
                        glob.as_str(),
                        if self.scope.is_empty() {
                            ""
                        } else {
                            " within --repos"
                        }
                    )));
                }
            }
            let Some(pattern) = &rule.tags else {
                continue;
            };
            let tags: Vec<&str> = index
                .repositories
                .iter()
                .filter(|r| in_scope(&r.name) && rule.applies_to(&r.name))
                .flat_map(|r| r.tags.iter().map(|t| t.name.as_str()))
                .collect();
            if tags.iter().any(|t| pattern.matches(t)) {
                continue;
            }
            let found = pattern.search_matches(tags.iter().copied());
            if found.is_empty() {
                warnings.push(warn(format!(
                    "{at}: `{}` matches no tag{}",
                    pattern.as_str(),
                    if tags.is_empty() {
                        " (no repository it applies to has tags)"
                    } else {
                        ""
                    }
                )));
                continue;
            }
            let others: Vec<&str> = tags
                .iter()
                .copied()
                .filter(|t| found.binary_search_by(|f| f.as_str().cmp(t)).is_err())
                .collect();
            let suggestion = pattern.whole_match_suggestion(&found, &others);
            if rule.action == Action::Keep {
                refusal.get_or_insert(PolicyError::KeepMatchesNothingWhole {
                    at: refused_at.clone(),
                    pattern: pattern.as_str().to_owned(),
                    tags: found,
                    suggestion,
                });
                continue;
            }
            warnings.push(warn(format!(
                "{at}: `{}` matches no tag whole (tag patterns must match the whole tag), so it deletes nothing; as a search it matches {}: {}; the pattern for those is `{suggestion}`",
                pattern.as_str(),
                plural(found.len(), "tag"),
                examples(&found)
            )));
        }
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(warnings),
        }
    }
}

/// Per repository, the sorted indices of the tags `decisions` delete, for
/// [`crate::gc::mark::mark_with_policy`] and [`crate::gc::plan::PlanOptions`].
pub fn dropped_tags(decisions: &[RepositoryDecision], repositories: usize) -> Vec<Vec<u32>> {
    let mut dropped = vec![Vec::new(); repositories];
    for decision in decisions {
        let tags: Vec<u32> = decision.deleted().map(|d| d.tag).collect();
        dropped[decision.repository as usize] = tags;
    }
    dropped
}

/// The bytes each deleted tag frees: per decision, per tag decision (zero
/// for kept tags). A blob counts for a tag when the plan deletes it and no
/// other deleted tag's image holds it; blobs several deleted tags hold free
/// space only together, and count in [`Freed::repositories`] only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freed {
    /// Aligned with the decisions and their tags.
    pub tags: Vec<Vec<u64>>,
    /// Per decision: the distinct bytes its repository's deleted tags free.
    pub repositories: Vec<u64>,
    /// The distinct bytes every deleted tag frees together.
    pub total: u64,
}

/// Computes [`Freed`]: `deleted_blob(id)` says whether the plan deletes the
/// stored blob `id`.
pub fn freed_bytes(
    index: &Index,
    loaded: &DigestMap<Loaded>,
    decisions: &[RepositoryDecision],
    deleted_blob: impl Fn(BlobId) -> bool,
) -> Freed {
    const SEVERAL: (u32, u32) = (u32::MAX, u32::MAX);
    // Per (decision, tag): the deleted blobs its image holds.
    let mut owner: HashMap<BlobId, (u32, u32)> = HashMap::new();
    let mut per_repo: Vec<DigestSet> = Vec::with_capacity(decisions.len());
    let mut held: Vec<Vec<(u32, Vec<BlobId>)>> = Vec::with_capacity(decisions.len());
    for (di, decision) in decisions.iter().enumerate() {
        let repo = &index.repositories[decision.repository as usize];
        let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
        for revision in repo.revisions.iter().filter(|r| r.linked) {
            if let Some(Ok(Refs {
                subject: Some(subject),
                ..
            })) = loaded.get(&revision.digest)
            {
                referrers.entry(*subject).or_default().push(revision.digest);
            }
        }
        let mut repo_blobs = DigestSet::default();
        let mut tags = Vec::new();
        for (ti, d) in decision.tags.iter().enumerate() {
            if !d.deletes() {
                continue;
            }
            let tag = &repo.tags[d.tag as usize];
            let mut stack: Vec<Digest> = tag
                .current
                .into_iter()
                .chain(tag.history.iter().copied())
                .collect();
            let mut seen = DigestSet::default();
            let mut blobs = Vec::new();
            while let Some(digest) = stack.pop() {
                if !seen.insert(digest) {
                    continue;
                }
                blobs.extend(index.blob_id(&digest));
                if let Some(Ok(refs)) = loaded.get(&digest) {
                    blobs.extend_from_slice(&refs.stored);
                    stack.extend(refs.children.iter().copied());
                }
                if let Some(more) = referrers.get(&digest) {
                    stack.extend(more.iter().copied());
                }
            }
            blobs.retain(|id| deleted_blob(*id));
            blobs.sort_unstable();
            blobs.dedup();
            for id in &blobs {
                repo_blobs.insert(index.blobs[*id as usize].digest);
                let me = (di as u32, ti as u32);
                owner
                    .entry(*id)
                    .and_modify(|o| {
                        if *o != me {
                            *o = SEVERAL
                        }
                    })
                    .or_insert(me);
            }
            tags.push((ti as u32, blobs));
        }
        per_repo.push(repo_blobs);
        held.push(tags);
    }
    let bytes = |id: &BlobId| index.blobs[*id as usize].bytes();
    let total = owner.keys().map(bytes).sum();
    let mut freed = Freed {
        total,
        tags: decisions.iter().map(|d| vec![0; d.tags.len()]).collect(),
        repositories: per_repo
            .iter()
            .map(|set| {
                set.iter()
                    .filter_map(|d| index.blob(d))
                    .map(|b| b.bytes())
                    .sum()
            })
            .collect(),
    };
    for (di, tags) in held.iter().enumerate() {
        for (ti, blobs) in tags {
            freed.tags[di][*ti as usize] = blobs
                .iter()
                .filter(|id| owner.get(id) == Some(&(di as u32, *ti)))
                .map(bytes)
                .sum();
        }
    }
    freed
}
