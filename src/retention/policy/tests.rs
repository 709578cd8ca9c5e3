//! The retention policy's tests: parsing, evaluation, decisions and report.

use std::time::{Duration, SystemTime};

use super::file::expected_first;
use super::*;
use crate::digest::{Digest, DigestMap};
use crate::duration::Age;
use crate::gc::mark::{Loaded, Refs};
use crate::index::{BlobId, Index, Tag};
use crate::retention::pulls::TagPulls;

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
    let policy = Policy::parse(r#"{"keep_latest": false, "rules": [{"keep_last": 1}]}"#).unwrap();
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
