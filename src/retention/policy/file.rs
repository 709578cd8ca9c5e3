//! A policy as given: the `gc` flags ([`PolicyFlags`]) and the policy file
//! ([`Policy::parse`]), read strictly (unknown fields, repeated fields and
//! `null` are errors) with every error naming its JSON path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::duration::Age;

use super::{Action, Policy, PolicyError, RepoPattern, Rule, TagPattern};

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
pub(super) fn expected_first(message: &str) -> String {
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
