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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use std::collections::HashMap;

use regex::Regex;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::duration::Age;
use crate::gc::mark::{Loaded, Refs};
use crate::index::{BlobId, Index, Tag};
use crate::retention::pulls::TagPulls;
use crate::warning::{Warning, WarningKind};

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

/// The policy flags of `regsweep gc`, as given.
#[derive(Debug, Clone, Default)]
pub struct PolicyFlags {
    /// `--keep-last N`.
    pub keep_last: Option<usize>,
    /// `--keep-tags REGEX`.
    pub keep_tags: Option<String>,
    /// `--delete-tags REGEX`.
    pub delete_tags: Option<String>,
    /// `--older-than DURATION`.
    pub older_than: Option<Age>,
    /// `--repos GLOB`, repeatable.
    pub repos: Vec<String>,
    /// `--policy FILE`.
    pub policy_file: Option<PathBuf>,
    /// `--allow-empty-repos`.
    pub allow_empty_repos: bool,
    /// `--keep-pulled-within DURATION`.
    pub keep_pulled_within: Option<Age>,
}

/// A policy that cannot be used. Nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be read.
    #[error("{}: cannot read the policy: {source}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy file is not a valid policy.
    #[error("{}: invalid policy: {at}: {message}", path.display())]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// Where in the document: a JSON path (`rules[2].keep_last`), or a
        /// line and column for a syntax error.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A keep pattern matches no tag whole, though it matches some as a
    /// search: it would keep none of the tags it was meant to keep.
    #[error(
        "{at}: `{pattern}` matches no tag whole (tag patterns must match the whole tag), \
         but as a search it matches {}: {}; to keep those, write `{suggestion}`; nothing deleted",
        plural(tags.len(), "tag"),
        examples(tags)
    )]
    KeepMatchesNothingWhole {
        /// The flag (`--keep-tags`), or the policy file and rule
        /// (`policy.json: rules[1].tags`).
        at: String,
        /// The pattern as written.
        pattern: String,
        /// The tags it matches as a search, sorted.
        tags: Vec<String>,
        /// A pattern that matches those tags whole.
        suggestion: String,
    },
    /// The policy flags cannot be used as given.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag at fault.
        flag: String,
        /// What is wrong.
        message: String,
    },
}

impl PolicyFlags {
    /// Whether any flag asks for tag deletion.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_tags.is_none()
            && self.delete_tags.is_none()
            && self.older_than.is_none()
            && self.repos.is_empty()
            && self.policy_file.is_none()
            && self.keep_pulled_within.is_none()
    }

    /// The policy the flags describe, reading the policy file if one is
    /// given; `None` when no flag asks for one (a plain garbage collection).
    pub fn into_policy(self) -> Result<Option<Policy>, PolicyError> {
        if self.is_empty() {
            if self.allow_empty_repos {
                return Err(flag_error(
                    "--allow-empty-repos",
                    "only means something with a policy (--keep-last, --delete-tags, --older-than or --policy)",
                ));
            }
            return Ok(None);
        }
        let scope = self
            .repos
            .iter()
            .map(|g| RepoPattern::new(g).map_err(|m| flag_error("--repos", &m)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut policy = match &self.policy_file {
            Some(path) => {
                for (set, flag) in [
                    (self.keep_last.is_some(), "--keep-last"),
                    (self.keep_tags.is_some(), "--keep-tags"),
                    (self.delete_tags.is_some(), "--delete-tags"),
                    (self.older_than.is_some(), "--older-than"),
                ] {
                    if set {
                        return Err(flag_error(
                            flag,
                            "cannot be combined with --policy: write it as a rule of the policy file",
                        ));
                    }
                }
                Policy::from_file(path)?
            }
            None => self.flags_policy()?,
        };
        if self.keep_pulled_within.is_some_and(Age::is_zero) {
            return Err(flag_error(
                "--keep-pulled-within",
                "a window of 0 keeps nothing: give one such as 30d",
            ));
        }
        policy.scope = scope;
        policy.allow_empty_repos = self.allow_empty_repos;
        policy.keep_pulled_within = self.keep_pulled_within;
        Ok(Some(policy))
    }

    fn flags_policy(&self) -> Result<Policy, PolicyError> {
        if self.keep_last.is_none() && self.delete_tags.is_none() && self.older_than.is_none() {
            let flag = if self.keep_tags.is_some() {
                "--keep-tags"
            } else if self.keep_pulled_within.is_some() {
                "--keep-pulled-within"
            } else {
                "--repos"
            };
            return Err(flag_error(
                flag,
                "says what to keep or where; add what to delete: --keep-last, --delete-tags or --older-than",
            ));
        }
        let mut rules = Vec::new();
        if let Some(keep) = &self.keep_tags {
            rules.push(Rule {
                id: format!("--keep-tags {keep}"),
                name: None,
                repositories: Vec::new(),
                tags: Some(TagPattern::new(keep).map_err(|m| flag_error("--keep-tags", &m))?),
                action: Action::Keep,
                pulled_within: None,
            });
        }
        let mut id = Vec::new();
        if let Some(delete) = &self.delete_tags {
            id.push(format!("--delete-tags {delete}"));
        }
        if let Some(n) = self.keep_last {
            id.push(format!("--keep-last {n}"));
        }
        if let Some(age) = self.older_than {
            id.push(format!("--older-than {age}"));
        }
        rules.push(Rule {
            id: id.join(" "),
            name: None,
            repositories: Vec::new(),
            tags: self
                .delete_tags
                .as_deref()
                .map(TagPattern::new)
                .transpose()
                .map_err(|m| flag_error("--delete-tags", &m))?,
            action: Action::Delete {
                keep_last: self.keep_last,
                older_than: self.older_than,
            },
            pulled_within: None,
        });
        Ok(Policy {
            rules,
            keep_latest: true,
            scope: Vec::new(),
            allow_empty_repos: false,
            source: None,
            keep_pulled_within: None,
        })
    }
}

fn flag_error(flag: &str, message: &str) -> PolicyError {
    PolicyError::Flag {
        flag: flag.to_owned(),
        message: message.to_owned(),
    }
}

/// An error at a JSON path of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// `rules[2].keep_last`, or `line 3 column 7` for a syntax error.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

fn at(path: &str, message: impl Into<String>) -> JsonError {
    JsonError {
        at: path.to_owned(),
        message: message.into(),
    }
}

impl Policy {
    /// Reads a policy file (see [`Policy::parse`]).
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut policy = Policy::parse(&text).map_err(|e| PolicyError::Invalid {
            path: path.to_path_buf(),
            at: e.at,
            message: e.message,
        })?;
        policy.source = Some(path.to_path_buf());
        Ok(policy)
    }

    /// Parses a policy document:
    ///
    /// ```json
    /// {
    ///   "keep_latest": true,
    ///   "rules": [
    ///     {"name": "snapshots", "repositories": ["team/**"], "tags": ".*-SNAPSHOT", "keep_last": 5},
    ///     {"repositories": "team/**", "keep_last": 10, "older_than": "30d"}
    ///   ]
    /// }
    /// ```
    ///
    /// Unknown fields, repeated fields and `null` are errors (a misspelt
    /// `keep_lats` must not silently delete everything), and every error
    /// names its JSON path.
    pub fn parse(text: &str) -> Result<Policy, JsonError> {
        let file = read_policy_file(text)?;
        let rules = match file.rules {
            None => return Err(at("rules", "missing: a policy needs a list of rules")),
            Some(rules) => rules,
        };
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| rule.into_rule(format!("rules[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            rules,
            keep_latest: file.keep_latest,
            scope: Vec::new(),
            allow_empty_repos: false,
            source: None,
            keep_pulled_within: None,
        })
    }

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

fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// Up to ten names, then how many more.
fn examples(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = names.iter().take(SHOWN).cloned().collect();
    if names.len() > SHOWN {
        text.push(format!("and {} more", names.len() - SHOWN));
    }
    text.join(", ")
}

impl TagPattern {
    /// The tags among `tags` that this pattern matches as a search, not
    /// whole (`^v1\.` in `v1.0`), sorted and without repeats.
    fn search_matches<'t>(&self, tags: impl Iterator<Item = &'t str>) -> Vec<String> {
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
    fn whole_match_suggestion(&self, tags: &[String], others: &[&str]) -> String {
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

/// A policy file as written; [`RuleFile`]s become [`Rule`]s once their
/// fields are checked together.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "keep_latest_default")]
    keep_latest: bool,
    #[serde(default, deserialize_with = "rule_list")]
    rules: Option<Vec<RuleFile>>,
}

fn keep_latest_default() -> bool {
    true
}

impl Described for PolicyFile {
    const EXPECTING: &str = "an object with `rules` (and optionally `keep_latest`)";
}

impl Described for RuleFile {
    const EXPECTING: &str = "an object (a rule)";
}

/// What an [`Object`] is, for the error when it is not one.
trait Described {
    const EXPECTING: &str;
}

/// A struct read from a JSON object only: serde's derived structs also
/// take an array of their fields in order, which no policy means.
struct Object<T>(T);

impl<'de, T: Described + Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object<T>, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);

        impl<'de, T: Described + Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(Fields(std::marker::PhantomData))
            .map(Object)
    }
}

/// One rule as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "globs")]
    repositories: Vec<RepoPattern>,
    #[serde(default, deserialize_with = "present")]
    tags: Option<TagPattern>,
    #[serde(default)]
    keep: bool,
    #[serde(default, deserialize_with = "non_negative")]
    keep_last: Option<usize>,
    #[serde(default, deserialize_with = "present")]
    older_than: Option<Age>,
    #[serde(default, deserialize_with = "present")]
    pulled_within: Option<Age>,
}

impl RuleFile {
    /// The rule at `path` (`rules[2]`), once `keep`, `keep_last` and
    /// `older_than` agree.
    fn into_rule(self, path: String) -> Result<Rule, JsonError> {
        if self.pulled_within.is_some_and(Age::is_zero) {
            return Err(at(
                &format!("{path}.pulled_within"),
                "a window of 0 keeps nothing: give one such as \"30d\"",
            ));
        }
        let action = match (self.keep, self.keep_last, self.older_than) {
            (true, None, None) if self.pulled_within.is_none() => Action::Keep,
            (true, _, _) => {
                return Err(at(
                    &format!("{path}.keep"),
                    "a rule that keeps its tags cannot also have keep_last, older_than or pulled_within",
                ));
            }
            (false, None, None) if self.pulled_within.is_none() => {
                return Err(at(
                    &path,
                    "says nothing about what to do: give \"keep\": true, keep_last, older_than or pulled_within (\"keep_last\": 0 deletes every tag it takes)",
                ));
            }
            (false, keep_last, older_than) => Action::Delete {
                keep_last,
                older_than,
            },
        };
        Ok(Rule {
            id: path,
            name: self.name,
            repositories: self.repositories,
            tags: self.tags,
            action,
            pulled_within: self.pulled_within,
        })
    }
}

/// Deserializes `text` as a [`PolicyFile`], naming the JSON path of a wrong
/// value, or the line and column of a syntax error.
fn read_policy_file(text: &str) -> Result<PolicyFile, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let Object(file) = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| json_error(&e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(file)
}

/// `error` at `path` (`.` for the whole document).
fn json_error(path: &str, error: &serde_json::Error) -> JsonError {
    let message = strip_position(&error.to_string()).to_owned();
    if error.is_data() {
        JsonError {
            at: if path == "." { "$" } else { path }.to_owned(),
            message: expected_first(&message),
        }
    } else {
        JsonError {
            at: format!("line {} column {}", error.line(), error.column()),
            message: format!("not valid JSON: {message}"),
        }
    }
}

/// serde_json appends " at line L column C"; the position is reported apart.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// serde's `invalid type: string "5", expected a non-negative integer` as
/// `expected a non-negative integer, found string "5"`: what the field
/// takes comes first, as in the other errors of a policy.
fn expected_first(message: &str) -> String {
    let found = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    match found.and_then(|rest| rest.split_once(", expected ")) {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => message.to_owned(),
    }
}

/// A field that may be left out but not given as `null`: `"tags": null`
/// could be read as "every tag", which is not what anyone writes on purpose.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A string, with what it is for in the error when it is something else.
struct Text(&'static str);

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

impl<'de> Deserialize<'de> for TagPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TagPattern, D::Error> {
        let source = d.deserialize_str(Text("a string (a regular expression)"))?;
        TagPattern::new(&source).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for RepoPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RepoPattern, D::Error> {
        let source = d.deserialize_str(Text("a string (a glob)"))?;
        RepoPattern::new(&source).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Age, D::Error> {
        let text =
            d.deserialize_str(Text("a duration string such as \"90d\", \"4w\" or \"12h\""))?;
        text.parse().map_err(de::Error::custom)
    }
}

/// `rules`: a non-empty list.
fn rule_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<RuleFile>>, D::Error> {
    struct Rules;

    impl<'de> Visitor<'de> for Rules {
        type Value = Vec<RuleFile>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of rules")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<RuleFile>, A::Error> {
            let mut rules = Vec::new();
            while let Some(Object(rule)) = seq.next_element()? {
                rules.push(rule);
            }
            if rules.is_empty() {
                return Err(de::Error::custom("expected at least one rule"));
            }
            Ok(rules)
        }
    }

    d.deserialize_seq(Rules).map(Some)
}

/// `repositories`: one glob, or a non-empty list of them.
fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RepoPattern>, D::Error> {
    struct Globs;

    impl<'de> Visitor<'de> for Globs {
        type Value = Vec<RepoPattern>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a glob or a non-empty list of globs")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<RepoPattern>, E> {
            Ok(vec![RepoPattern::new(v).map_err(E::custom)?])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<RepoPattern>, A::Error> {
            let mut globs = Vec::new();
            while let Some(glob) = seq.next_element()? {
                globs.push(glob);
            }
            if globs.is_empty() {
                return Err(de::Error::custom(
                    "expected a glob or a non-empty list of globs, found an empty list",
                ));
            }
            Ok(globs)
        }
    }

    d.deserialize_any(Globs)
}

/// `keep_last`: a whole number, zero or more.
fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct Count;

    impl Visitor<'_> for Count {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative integer")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }
    }

    d.deserialize_u64(Count).map(Some)
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
    /// Index into [`Index::repositories`].
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
    #[serde(serialize_with = "crate::report::lossy_optional_path")]
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
    #[serde(serialize_with = "crate::report::lossy_optional_path")]
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn suggested_whole_match_patterns_mean_the_search() {
        let suggest = |pattern: &str, found: &[&str], others: &[&str]| {
            let found: Vec<String> = found.iter().map(|t| t.to_string()).collect();
            TagPattern::new(pattern)
                .unwrap()
                .whole_match_suggestion(&found, others)
        };
        assert_eq!(suggest(r"^v1\.", &["v1.0"], &["v2.0"]), r"^v1\..*");
        assert_eq!(suggest("rc", &["1.0-rc1"], &["1.0"]), ".*rc.*");
        assert_eq!(suggest(r"1\.0$", &["v1.0"], &["v1.0.1"]), r".*1\.0$");
        assert_eq!(suggest("^a|b$", &["ax", "xb"], &["x"]), ".*(?:^a|b$).*");
        let found = TagPattern::new(r"^v1\.")
            .unwrap()
            .search_matches(["v1.1", "v2.0", "v1.0", "v1.1", "xv1.0"].into_iter());
        assert_eq!(found, ["v1.0", "v1.1"]);
    }
    use crate::index::{Blob, Repository, Revision};

    const DAY: u64 = 86_400;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY)
    }

    fn tag(name: &str) -> Tag {
        Tag {
            name: name.into(),
            current: Some(Digest::from_bytes([name.len() as u8; 32])),
            history: Vec::new(),
            pushed: None,
        }
    }

    /// Tags `(name, pushed days ago)`, evaluated for repository `repo`.
    fn run(policy: &Policy, repo: &str, spec: &[(&str, u64)]) -> RepositoryDecision {
        let tags: Vec<Tag> = spec.iter().map(|(n, _)| tag(n)).collect();
        let facts: Vec<TagFacts> = tags
            .iter()
            .zip(spec)
            .map(|(t, (_, days))| TagFacts {
                tag: t,
                pushed: Some(now() - Duration::from_secs(days * DAY)),
                protected_by: None,
                pulls: TagPulls::default(),
            })
            .collect();
        policy.evaluate_repository(0, repo, &facts, now(), None)
    }

    fn deleted(decision: &RepositoryDecision, spec: &[(&str, u64)]) -> Vec<String> {
        let mut names: Vec<String> = decision
            .deleted()
            .map(|d| spec[d.tag as usize].0.to_owned())
            .collect();
        names.sort();
        names
    }

    fn flags() -> PolicyFlags {
        PolicyFlags::default()
    }

    #[test]
    fn tag_patterns_are_anchored() {
        let p = TagPattern::new("SNAPSHOT").unwrap();
        assert!(p.matches("SNAPSHOT"));
        assert!(!p.matches("1.0-SNAPSHOT"));
        let p = TagPattern::new(".*-SNAPSHOT|nightly").unwrap();
        assert!(p.matches("1.0-SNAPSHOT") && p.matches("nightly"));
        assert!(
            !p.matches("nightly-2"),
            "alternation stays inside the anchors"
        );
        assert!(TagPattern::new("^v1$").unwrap().matches("v1"));
        let err = TagPattern::new("(").unwrap_err();
        assert!(err.starts_with("invalid regular expression"), "{err}");
    }

    fn glob_matches(glob: &str, name: &str) -> bool {
        RepoPattern::new(glob)
            .unwrap_or_else(|e| panic!("{glob}: {e}"))
            .matches(name)
    }

    #[test]
    fn repository_globs() {
        let star = RepoPattern::new("team/*").unwrap();
        assert!(star.matches("team/app"));
        assert!(!star.matches("team/app/web") && !star.matches("team"));
        let deep = RepoPattern::new("team/**").unwrap();
        assert!(deep.matches("team/app/web") && deep.matches("team/app"));
        assert!(!deep.matches("team") && !deep.matches("teams/app"));
        let q = RepoPattern::new("app-?").unwrap();
        assert!(q.matches("app-1") && !q.matches("app-10"));
        assert!(RepoPattern::new("a.b").unwrap().matches("a.b"));
        assert!(
            !RepoPattern::new("a.b").unwrap().matches("axb"),
            "dots are literal"
        );
        assert!(RepoPattern::new("").is_err());
    }

    /// The README's words: `*` within one path component, `**` across
    /// components, `?` one character; `team/*` matches `team/app` but not
    /// `team/app/web`, `team/**` both (and not `team` itself).
    #[test]
    fn repository_globs_mean_what_the_readme_says() {
        for (glob, name, expected) in [
            ("team/*", "team/app", true),
            ("team/*", "team/app/web", false),
            ("team/**", "team/app", true),
            ("team/**", "team/app/web", true),
            ("team/**", "team", false),
            ("*", "app", true),
            ("*", "team/app", false),
            ("*/app", "team/app", true),
            ("t*m/app", "team/app", true),
            ("t*m/app", "t/x/m/app", false),
            ("**", "team/app/web", true),
            ("?", "a", true),
            ("?", "ab", false),
            ("a?b", "a/b", false),
            ("app-?", "app-1", true),
            ("ci/**", "ci/a/b/c", true),
            ("ci/**", "cid/a", false),
            ("Team/*", "team/app", false),
        ] {
            assert_eq!(glob_matches(glob, name), expected, "`{glob}` on `{name}`");
        }
    }

    #[test]
    fn double_star_components_match_zero_or_more_components() {
        for (glob, name, expected) in [
            ("**/app", "app", true),
            ("**/app", "x/y/app", true),
            ("**/app", "xapp", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
        ] {
            assert_eq!(glob_matches(glob, name), expected, "`{glob}` on `{name}`");
        }
    }

    #[test]
    fn classes_and_alternatives_are_globs_too() {
        assert!(glob_matches("app-[0-9]", "app-7") && !glob_matches("app-[0-9]", "app-x"));
        assert!(glob_matches("{ci,dev}/**", "dev/a/b") && !glob_matches("{ci,dev}/**", "prod/a"));
    }

    #[test]
    fn a_double_star_inside_a_component_or_a_broken_glob_is_refused() {
        for bad in ["team**", "**app", "a/b**/c", "***", "a/***"] {
            let err = RepoPattern::new(bad).unwrap_err();
            assert!(
                err.contains(&format!("`{bad}`")) && err.contains("whole path component"),
                "{bad}: {err}"
            );
        }
        let err = RepoPattern::new("team/[a").unwrap_err();
        assert!(
            err.starts_with("invalid repository glob `team/[a`: unclosed character class"),
            "{err}"
        );
    }

    #[test]
    fn no_policy_flags_means_no_policy() {
        assert!(flags().into_policy().unwrap().is_none());
        let only_allow = PolicyFlags {
            allow_empty_repos: true,
            ..flags()
        };
        assert!(only_allow.into_policy().is_err());
    }

    #[test]
    fn keep_tags_or_repos_alone_delete_nothing_and_are_refused() {
        let keep = PolicyFlags {
            keep_tags: Some("v.*".into()),
            ..flags()
        };
        let err = keep.into_policy().unwrap_err().to_string();
        assert!(err.starts_with("--keep-tags:"), "{err}");
        let repos = PolicyFlags {
            repos: vec!["a/*".into()],
            ..flags()
        };
        assert!(
            repos
                .into_policy()
                .unwrap_err()
                .to_string()
                .starts_with("--repos:")
        );
    }

    #[test]
    fn keep_last_keeps_the_most_recently_pushed_and_latest() {
        let policy = PolicyFlags {
            keep_last: Some(2),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [("a", 5), ("b", 1), ("c", 3), ("latest", 100), ("d", 2)];
        let d = run(&policy, "r", &spec);
        assert_eq!(deleted(&d, &spec), ["a", "c"]);
        assert_eq!(d.tags[3].why, Why::Latest);
        assert_eq!(
            d.tags[1].why,
            Why::Recent {
                rank: 1,
                keep_last: 2
            }
        );
        assert_eq!(
            d.tags[4].why,
            Why::Recent {
                rank: 2,
                keep_last: 2
            }
        );
        assert_eq!(d.tags[0].decided_by(&policy), "--keep-last 2");
        assert!(d.refused.is_none());
    }

    #[test]
    fn equal_push_times_rank_by_name() {
        let policy = PolicyFlags {
            keep_last: Some(1),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [("b", 1), ("a", 1)];
        assert_eq!(deleted(&run(&policy, "r", &spec), &spec), ["b"]);
    }

    #[test]
    fn delete_tags_limits_candidates_and_keep_last_counts_among_them() {
        let policy = PolicyFlags {
            delete_tags: Some(".*-SNAPSHOT".into()),
            keep_last: Some(1),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [
            ("1.0", 30),
            ("1.1-SNAPSHOT", 3),
            ("1.2-SNAPSHOT", 2),
            ("1.3-SNAPSHOT", 4),
            ("2.0", 1),
        ];
        let d = run(&policy, "r", &spec);
        assert_eq!(deleted(&d, &spec), ["1.1-SNAPSHOT", "1.3-SNAPSHOT"]);
        assert_eq!(d.tags[0].why, Why::NoRule);
        assert_eq!(d.tags[0].decided_by(&policy), "no_rule");
    }

    #[test]
    fn older_than_only_deletes_tags_pushed_before_the_cutoff() {
        let policy = PolicyFlags {
            older_than: Some("30d".parse().unwrap()),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [("old", 31), ("edge", 30), ("new", 2)];
        let d = run(&policy, "r", &spec);
        assert_eq!(deleted(&d, &spec), ["old"]);
        assert_eq!(d.tags[1].why, Why::Young("30d".parse().unwrap()));
    }

    #[test]
    fn keep_last_and_older_than_combine_as_keep_at_least() {
        let policy = PolicyFlags {
            older_than: Some("10d".parse().unwrap()),
            keep_last: Some(1),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        // "newest" is kept by keep_last even though old; "young" by age.
        let spec = [("newest", 20), ("older", 40), ("oldest", 50)];
        assert_eq!(
            deleted(&run(&policy, "r", &spec), &spec),
            ["older", "oldest"]
        );
        let spec = [("a", 1), ("b", 2), ("c", 11)];
        assert_eq!(deleted(&run(&policy, "r", &spec), &spec), ["c"]);
    }

    #[test]
    fn keep_tags_wins_over_deletion() {
        let policy = PolicyFlags {
            keep_tags: Some("release-.*".into()),
            keep_last: Some(0),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [("release-1", 100), ("ci-1", 1), ("ci-2", 2)];
        let d = run(&policy, "r", &spec);
        assert_eq!(deleted(&d, &spec), ["ci-1", "ci-2"]);
        assert_eq!(d.tags[0].why, Why::KeepRule);
        assert_eq!(d.tags[0].decided_by(&policy), "--keep-tags release-.*");
    }

    #[test]
    fn repos_scope_leaves_other_repositories_alone() {
        let policy = PolicyFlags {
            keep_last: Some(0),
            repos: vec!["ci/*".into()],
            allow_empty_repos: true,
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        assert!(policy.covers("ci/app"));
        assert!(!policy.covers("prod/app"));
        assert!(!policy.covers("ci/app/web"));
    }

    #[test]
    fn the_guard_keeps_a_repository_whose_every_tag_would_go() {
        let mut policy = PolicyFlags {
            keep_last: Some(0),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [("a", 1), ("b", 2)];
        let d = run(&policy, "r", &spec);
        assert_eq!(d.refused, Some(vec![0]));
        assert!(d.tags.iter().all(|t| t.why == Why::Guard && !t.deletes()));
        assert_eq!(d.tags[0].decided_by(&policy), "guard");
        policy.allow_empty_repos = true;
        let d = run(&policy, "r", &spec);
        assert_eq!(d.refused, None);
        assert_eq!(deleted(&d, &spec), ["a", "b"]);
        // One kept tag (latest) is enough.
        policy.allow_empty_repos = false;
        let spec = [("a", 1), ("latest", 2)];
        let d = run(&policy, "r", &spec);
        assert_eq!(d.refused, None);
        assert_eq!(deleted(&d, &spec), ["a"]);
    }

    #[test]
    fn protected_and_unreadable_tags_are_kept_and_do_not_take_a_slot() {
        let policy = PolicyFlags {
            keep_last: Some(1),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let mut broken = tag("broken");
        broken.current = None;
        let tags = [tag("new"), tag("old"), tag("prod"), broken];
        let ago = |days: u64| Some(now() - Duration::from_secs(days * DAY));
        let facts = [
            TagFacts {
                tag: &tags[0],
                pushed: ago(1),
                protected_by: None,
                pulls: TagPulls::default(),
            },
            TagFacts {
                tag: &tags[1],
                pushed: ago(9),
                protected_by: None,
                pulls: TagPulls::default(),
            },
            TagFacts {
                tag: &tags[2],
                pushed: ago(0),
                protected_by: Some("r:prod"),
                pulls: TagPulls::default(),
            },
            TagFacts {
                tag: &tags[3],
                pushed: ago(50),
                protected_by: None,
                pulls: TagPulls::default(),
            },
        ];
        let d = policy.evaluate_repository(0, "r", &facts, now(), None);
        let whys: Vec<&Why> = d.tags.iter().map(|t| &t.why).collect();
        assert_eq!(
            whys,
            [
                &Why::Recent {
                    rank: 1,
                    keep_last: 1
                },
                &Why::Old {
                    rank: 2,
                    keep_last: Some(1),
                    older_than: None
                },
                &Why::Protected("r:prod".into()),
                &Why::Unreadable,
            ]
        );
        assert_eq!(d.tags[2].decided_by(&policy), "protected");
    }

    #[test]
    fn unknown_push_times_are_kept_by_older_than() {
        let policy = PolicyFlags {
            older_than: Some("1d".parse().unwrap()),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let tags = [tag("a"), tag("b")];
        let facts = [
            TagFacts {
                tag: &tags[0],
                pushed: None,
                protected_by: None,
                pulls: TagPulls::default(),
            },
            TagFacts {
                tag: &tags[1],
                pushed: Some(now() - Duration::from_secs(9 * DAY)),
                protected_by: None,
                pulls: TagPulls::default(),
            },
        ];
        let d = policy.evaluate_repository(0, "r", &facts, now(), None);
        assert_eq!(d.tags[0].why, Why::UnknownAge);
        assert!(d.tags[1].deletes());
    }

    /// The seed's example: keep the last 5 SNAPSHOT builds, the last 10
    /// others, and latest.
    const SEED: &str = r#"{
      "rules": [
        {"name": "snapshots", "tags": ".*SNAPSHOT.*", "keep_last": 5},
        {"name": "releases", "keep_last": 10}
      ]
    }"#;

    #[test]
    fn the_seed_policy() {
        let policy = Policy::parse(SEED).unwrap();
        assert!(policy.keep_latest);
        let mut spec: Vec<(String, u64)> = Vec::new();
        for i in 0..8 {
            spec.push((format!("1.{i}-SNAPSHOT"), 100 - i));
        }
        for i in 0..13 {
            spec.push((format!("1.{i}"), 200 - i));
        }
        spec.push(("latest".into(), 500));
        let spec: Vec<(&str, u64)> = spec.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let d = run(&policy, "any/repo", &spec);
        assert_eq!(
            deleted(&d, &spec),
            [
                "1.0",
                "1.0-SNAPSHOT",
                "1.1",
                "1.1-SNAPSHOT",
                "1.2",
                "1.2-SNAPSHOT"
            ]
        );
        let snapshot = d.tags.iter().find(|t| t.deletes()).unwrap();
        assert_eq!(snapshot.decided_by(&policy), "rules[0]");
        assert_eq!(policy.rules[0].label(), "rules[0] (snapshots)");
    }

    #[test]
    fn rules_apply_per_repository_pattern_in_order() {
        let policy = Policy::parse(
            r#"{"rules": [
                {"repositories": ["prod/*"], "keep": true},
                {"repositories": "**", "tags": "pr-.*", "keep_last": 0},
                {"repositories": "ci/**", "older_than": "7d"}
            ]}"#,
        )
        .unwrap();
        let spec = [("pr-1", 1), ("v1", 30), ("v2", 1)];
        assert_eq!(
            deleted(&run(&policy, "prod/app", &spec), &spec),
            Vec::<String>::new()
        );
        assert_eq!(
            deleted(&run(&policy, "ci/a/b", &spec), &spec),
            ["pr-1", "v1"]
        );
        assert_eq!(deleted(&run(&policy, "other", &spec), &spec), ["pr-1"]);
    }

    #[test]
    fn keep_latest_false_lets_rules_decide_latest() {
        let policy =
            Policy::parse(r#"{"keep_latest": false, "rules": [{"keep_last": 1}]}"#).unwrap();
        let spec = [("latest", 9), ("v2", 1)];
        assert_eq!(deleted(&run(&policy, "r", &spec), &spec), ["latest"]);
    }

    fn parse_err(text: &str) -> String {
        Policy::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn invalid_policies_name_the_json_path() {
        let cases = [
            (
                r#"{"rules": [{"keep": true}, {"keep": true}, {"keep_last": -1}]}"#,
                "rules[2].keep_last: expected a non-negative integer, found integer `-1`",
            ),
            (
                r#"{"rules": [{"keep_last": 1.5}]}"#,
                "rules[0].keep_last: expected a non-negative integer, found floating point `1.5`",
            ),
            (
                r#"{"rules": [{"keep_last": "5"}]}"#,
                r#"rules[0].keep_last: expected a non-negative integer, found string "5""#,
            ),
            (
                r#"{"rules": [{"keep_last": null}]}"#,
                "rules[0].keep_last: expected a non-negative integer, found null",
            ),
            (
                r#"{"rules": [{"keep_lats": 5}]}"#,
                "rules[0].keep_lats: unknown field `keep_lats`, expected one of `name`, `repositories`, `tags`, `keep`, `keep_last`, `older_than`",
            ),
            (
                r#"{"rules": [{"keep_last": 5, "keep_last": 0}]}"#,
                "rules[0]: duplicate field `keep_last`",
            ),
            (
                r#"{"rules": [{"tags": "("}]}"#,
                "rules[0].tags: invalid regular expression",
            ),
            (
                r#"{"rules": [{"tags": 5, "keep": true}]}"#,
                "rules[0].tags: expected a string (a regular expression), found integer `5`",
            ),
            (
                r#"{"rules": [{"tags": null, "keep_last": 0}]}"#,
                "rules[0].tags: expected a string (a regular expression), found null",
            ),
            (
                r#"{"rules": [{"older_than": "3 months"}]}"#,
                "rules[0].older_than: invalid duration \"3 months\"",
            ),
            (
                r#"{"rules": [{"older_than": 90}]}"#,
                "rules[0].older_than: expected a duration string such as \"90d\"",
            ),
            (
                r#"{"rules": [{"repositories": ["a", 3], "keep": true}]}"#,
                "rules[0].repositories[1]: expected a string (a glob), found integer `3`",
            ),
            (
                r#"{"rules": [{"repositories": ["a", "b**"], "keep": true}]}"#,
                "rules[0].repositories[1]: invalid repository glob `b**`",
            ),
            (
                r#"{"rules": [{"repositories": "x/[", "keep": true}]}"#,
                "rules[0].repositories: invalid repository glob `x/[`",
            ),
            (
                r#"{"rules": [{"repositories": [], "keep": true}]}"#,
                "rules[0].repositories: expected a glob or a non-empty list",
            ),
            (
                r#"{"rules": [{"repositories": {}, "keep": true}]}"#,
                "rules[0].repositories: expected a glob or a non-empty list of globs, found map",
            ),
            (
                r#"{"rules": [{"keep": true, "keep_last": 3}]}"#,
                "rules[0].keep: a rule that keeps",
            ),
            (r#"{"rules": [{"tags": "x"}]}"#, "rules[0]: says nothing"),
            (
                r#"{"rules": [{"keep": true}, 3]}"#,
                "rules[1]: expected an object (a rule), found integer `3`",
            ),
            (r#"{"rules": []}"#, "rules: expected at least one rule"),
            (
                r#"{"rules": {}}"#,
                "rules: expected a list of rules, found map",
            ),
            (r#"{}"#, "rules: missing"),
            (r#"[]"#, "$: expected an object with `rules`"),
            (
                r#"[true, [{"keep": true}]]"#,
                "$: expected an object with `rules` (and optionally `keep_latest`), found sequence",
            ),
            (
                r#"{"rules": [["x", "a/*", ".*", true]]}"#,
                "rules[0]: expected an object (a rule), found sequence",
            ),
            (
                r#"{"rules": [{"keep": true}], "extra": 1}"#,
                "extra: unknown field `extra`, expected `keep_latest` or `rules`",
            ),
            (
                r#"{"keep_latest": "yes", "rules": [{"keep": true}]}"#,
                r#"keep_latest: expected a boolean, found string "yes""#,
            ),
            (
                "{\n  \"rules\": [\n    {\"keep\": tru}\n  ]\n}",
                "line 3 column",
            ),
            (
                "{\"rules\": [{\"keep\": true}]}\n{}",
                "line 2 column 1: not valid JSON: trailing characters",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_err(text);
            assert!(
                err.starts_with(expected),
                "{text}\n  got: {err}\n  expected: {expected}"
            );
        }
    }

    /// The ```json blocks of the README's section on retention policies.
    fn readme_policy_examples() -> Vec<&'static str> {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("\n## Retention policies")
            .expect("the README has a retention policies section");
        let section = &readme[start + 1..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        section
            .split("```json\n")
            .skip(1)
            .map(|block| &block[..block.find("```").expect("a closed block")])
            .collect()
    }

    #[test]
    fn every_readme_policy_example_parses() {
        let examples = readme_policy_examples();
        assert!(!examples.is_empty(), "no ```json block found");
        for example in &examples {
            if let Err(e) = Policy::parse(example) {
                panic!("README example does not parse: {e}\n{example}");
            }
        }
        // The seed example keeps its meaning.
        let seed = examples
            .iter()
            .find(|e| e.contains("\"production\""))
            .expect("the seed example");
        let policy = Policy::parse(seed).unwrap();
        assert!(policy.keep_latest);
        type Shown<'p> = (Option<&'p str>, Vec<&'p str>, Option<&'p str>, Action);
        let rules: Vec<Shown> = policy
            .rules
            .iter()
            .map(|r| {
                (
                    r.name.as_deref(),
                    r.repositories.iter().map(RepoPattern::as_str).collect(),
                    r.tags.as_ref().map(TagPattern::as_str),
                    r.action,
                )
            })
            .collect();
        let delete = |n| Action::Delete {
            keep_last: Some(n),
            older_than: None,
        };
        assert_eq!(
            rules,
            [
                (Some("production"), vec!["prod/**"], None, Action::Keep),
                (Some("snapshots"), vec![], Some(".*-SNAPSHOT"), delete(5)),
                (Some("releases"), vec![], None, delete(10)),
            ]
        );
        assert!(policy.rules[0].applies_to("prod/a/b") && !policy.rules[0].applies_to("prod"));
    }

    /// The example in [`Policy::parse`]'s documentation.
    #[test]
    fn the_documented_parse_example_parses() {
        let policy = Policy::parse(
            r#"{
              "keep_latest": true,
              "rules": [
                {"name": "snapshots", "repositories": ["team/**"], "tags": ".*-SNAPSHOT", "keep_last": 5},
                {"repositories": "team/**", "keep_last": 10, "older_than": "30d"}
              ]
            }"#,
        )
        .unwrap();
        assert_eq!(
            policy.rules[1].action,
            Action::Delete {
                keep_last: Some(10),
                older_than: Some(Age::from_secs(30 * 86_400)),
            }
        );
        assert_eq!(policy.rules[1].repositories[0].as_str(), "team/**");
    }

    #[test]
    fn serde_type_errors_read_expected_first() {
        assert_eq!(
            expected_first("invalid type: map, expected a list of rules"),
            "expected a list of rules, found map"
        );
        assert_eq!(
            expected_first("invalid value: integer `-1`, expected a non-negative integer"),
            "expected a non-negative integer, found integer `-1`"
        );
        assert_eq!(expected_first("missing field `x`"), "missing field `x`");
    }

    #[test]
    fn policy_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"rules": [{"keep_last": -3}]}"#).unwrap();
        let err = Policy::from_file(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: invalid policy: rules[0].keep_last: expected a non-negative integer, found integer `-3`",
                path.display()
            )
        );
        let missing = dir.path().join("absent.json");
        let err = Policy::from_file(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: cannot read", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn policy_file_and_rule_flags_do_not_mix() {
        let err = PolicyFlags {
            policy_file: Some("p.json".into()),
            keep_last: Some(3),
            ..flags()
        }
        .into_policy()
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--keep-last: cannot be combined with --policy"),
            "{err}"
        );
    }

    /// Repository `r`: tags `a` → 1 (layers 11, 12), `b` → 2 (layers 12, 13),
    /// `c` → 3 (layer 14); blob n has n bytes.
    fn freed_fixture() -> (Index, DigestMap<Loaded>) {
        let d = |n: u8| Digest::from_bytes([n; 32]);
        let tag = |name: &str, n: u8| Tag {
            name: name.into(),
            current: Some(d(n)),
            history: vec![d(n)],
            pushed: None,
        };
        let mut index = Index {
            blobs: [1, 2, 3, 11, 12, 13, 14]
                .iter()
                .map(|n| Blob::new(d(*n), Some(u64::from(*n))))
                .collect(),
            repositories: vec![Repository {
                name: "r".into(),
                revisions: [1, 2, 3]
                    .iter()
                    .map(|n| Revision {
                        digest: d(*n),
                        linked: true,
                        signatures: Vec::new(),
                    })
                    .collect(),
                tags: vec![tag("a", 1), tag("b", 2), tag("c", 3)],
                ..Repository::default()
            }],
            ..Index::default()
        };
        index.blobs.sort_by_key(|b| b.digest);
        let image = |layers: &[u8]| -> Loaded {
            Ok(Refs {
                stored: layers
                    .iter()
                    .map(|n| index.blob_id(&d(*n)).unwrap())
                    .collect(),
                ..Refs::default()
            })
        };
        let loaded = [
            (d(1), image(&[11, 12])),
            (d(2), image(&[12, 13])),
            (d(3), image(&[14])),
        ]
        .into_iter()
        .collect();
        (index, loaded)
    }

    #[test]
    fn freed_bytes_count_what_only_one_deleted_tag_holds() {
        let (index, loaded) = freed_fixture();
        let decision = |why: &[bool]| RepositoryDecision {
            repository: 0,
            tags: why
                .iter()
                .enumerate()
                .map(|(i, deleted)| TagDecision {
                    tag: i as u32,
                    rule: Some(0),
                    why: if *deleted {
                        Why::Old {
                            rank: i + 1,
                            keep_last: Some(0),
                            older_than: None,
                        }
                    } else {
                        Why::KeepRule
                    },
                })
                .collect(),
            refused: None,
        };
        // a and b go, c stays; every blob they hold is deleted.
        let kept_c: Vec<BlobId> = [3u8, 14]
            .iter()
            .map(|n| index.blob_id(&Digest::from_bytes([*n; 32])).unwrap())
            .collect();
        let freed = freed_bytes(&index, &loaded, &[decision(&[true, true, false])], |id| {
            !kept_c.contains(&id)
        });
        assert_eq!(freed.tags, [vec![1 + 11, 2 + 13, 0]], "layer 12 is shared");
        assert_eq!(freed.repositories, [1 + 11 + 12 + 2 + 13]);
        assert_eq!(freed.total, 39);
        // What the plan keeps is freed by nobody.
        let freed = freed_bytes(&index, &loaded, &[decision(&[true, false, false])], |_| {
            false
        });
        assert_eq!(freed.tags, [vec![0, 0, 0]]);
        assert_eq!(freed.total, 0);
    }

    /// Tags `(name, pushed days ago, pulled days ago by name, its image
    /// pulled days ago)`.
    fn run_pulled(
        policy: &Policy,
        spec: &[(&str, u64, Option<u64>, Option<u64>)],
    ) -> RepositoryDecision {
        use crate::retention::pulls::{LastPull, Method, Via};
        use std::sync::Arc;
        let tags: Vec<Tag> = spec.iter().map(|(n, ..)| tag(n)).collect();
        let pull = |days: Option<u64>, via: Via| {
            days.map(|d| LastPull {
                time: now() - Duration::from_secs(d * DAY),
                method: Method::Head,
                via,
                user_agent: Some(Arc::from("containerd/1.7")),
            })
        };
        let pulls: Vec<(Option<LastPull>, Option<LastPull>)> = spec
            .iter()
            .map(|(n, _, by_name, of_image)| {
                (
                    pull(*by_name, Via::Tag(Arc::from(*n))),
                    pull(*of_image, Via::Digest),
                )
            })
            .collect();
        let facts: Vec<TagFacts> = tags
            .iter()
            .zip(spec)
            .zip(&pulls)
            .map(|((t, (_, days, ..)), (by_name, of_image))| TagFacts {
                tag: t,
                pushed: Some(now() - Duration::from_secs(days * DAY)),
                protected_by: None,
                pulls: TagPulls {
                    by_name: by_name.as_ref(),
                    of_image: of_image.as_ref(),
                },
            })
            .collect();
        policy.evaluate_repository(0, "r", &facts, now(), None)
    }

    fn deleted_pulled(
        decision: &RepositoryDecision,
        spec: &[(&str, u64, Option<u64>, Option<u64>)],
    ) -> Vec<String> {
        let names: Vec<(&str, u64)> = spec.iter().map(|(n, days, ..)| (*n, *days)).collect();
        deleted(decision, &names)
    }

    #[test]
    fn the_pull_window_keeps_what_was_pulled_or_pushed_within_it() {
        let policy = PolicyFlags {
            keep_last: Some(0),
            keep_pulled_within: Some(Age::from_secs(30 * DAY)),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        let spec = [
            ("by-name", 90, Some(3), None),
            ("image", 90, None, Some(29)),
            ("fresh", 10, None, None),
            ("stale", 90, Some(31), Some(45)),
            ("never", 90, None, None),
        ];
        let d = run_pulled(&policy, &spec);
        assert_eq!(deleted_pulled(&d, &spec), ["never", "stale"]);
        let why = |i: usize| d.tags[i].why.to_string();
        assert_eq!(
            why(0),
            "pulled 3d ago (HEAD by tag, containerd/1.7), within 30d"
        );
        assert_eq!(
            why(1),
            "pulled 29d ago (HEAD by digest, containerd/1.7), within 30d"
        );
        assert_eq!(why(2), "pushed within 30d, the pull window");
        assert_eq!(
            why(3),
            "its rule keeps none; not pulled or pushed within 30d (last pull 31d ago)"
        );
        assert_eq!(
            why(4),
            "its rule keeps none; not pulled or pushed within 30d (no pull in the logs)"
        );
        // Kept by pulls, the repository is not emptied: the guard stays out.
        assert_eq!(d.refused, None);
        // Without the window, the same tags all go (the guard keeps them).
        let without = PolicyFlags {
            keep_last: Some(0),
            ..flags()
        }
        .into_policy()
        .unwrap()
        .unwrap();
        assert!(run_pulled(&without, &spec).refused.is_some());
    }

    #[test]
    fn a_rules_pulled_within_keeps_only_what_that_rule_takes() {
        let policy = Policy::parse(
            r#"{"rules": [
                {"tags": "ci-.*", "keep_last": 0},
                {"pulled_within": "7d"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.rules[1].action,
            Action::Delete {
                keep_last: None,
                older_than: None
            }
        );
        let spec = [
            ("ci-1", 90, Some(1), None),
            ("v1", 90, Some(1), None),
            ("v2", 90, Some(8), None),
            ("v3", 3, None, None),
        ];
        let d = run_pulled(&policy, &spec);
        assert_eq!(deleted_pulled(&d, &spec), ["ci-1", "v2"]);
        assert_eq!(d.tags[1].decided_by(&policy), "rules[1]");
        assert_eq!(
            policy.pull_window(),
            Some((
                Age::from_secs(7 * DAY),
                "rules[1] pulled_within 1w".to_owned()
            ))
        );
    }

    #[test]
    fn pull_windows_are_refused_where_they_mean_nothing() {
        for (text, at_path) in [
            (
                r#"{"rules": [{"keep": true, "pulled_within": "7d"}]}"#,
                "rules[0].keep",
            ),
            (
                r#"{"rules": [{"pulled_within": "0"}]}"#,
                "rules[0].pulled_within",
            ),
            (
                r#"{"rules": [{"pulled_within": null}]}"#,
                "rules[0].pulled_within",
            ),
        ] {
            let err = Policy::parse(text).unwrap_err();
            assert_eq!(err.at, at_path, "{text}: {err}");
        }
        let alone = PolicyFlags {
            keep_pulled_within: Some(Age::from_secs(DAY)),
            ..flags()
        };
        let err = alone.into_policy().unwrap_err().to_string();
        assert!(err.starts_with("--keep-pulled-within:"), "{err}");
        let zero = PolicyFlags {
            keep_last: Some(1),
            keep_pulled_within: Some(Age::ZERO),
            ..flags()
        };
        assert!(zero.into_policy().is_err());
    }
}
