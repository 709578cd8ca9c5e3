//! What the pull-log tests against the real registry share: backdating a
//! tag's push, the policy's decisions in a report, and the gc command line
//! whose only reason to keep a tag is a pull.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::tree;

/// The link files of `tag` in `repo` that date its push: `current/link` and
/// its history entry for `digest`.
pub fn tag_links(root: &Path, repo: &str, tag: &str, digest: &str) -> [PathBuf; 2] {
    let dir = tree::v2(root)
        .join("repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag);
    [
        dir.join("current/link"),
        dir.join("index/sha256")
            .join(&digest["sha256:".len()..])
            .join("link"),
    ]
}

/// Sets when `tag` was pushed, as storage tells it, `days` back.
pub fn backdate(root: &Path, repo: &str, tag: &str, digest: &str, days: u64) {
    let t = SystemTime::now() - Duration::from_secs(days * 86_400);
    for link in tag_links(root, repo, tag, digest) {
        fs::File::options()
            .write(true)
            .open(&link)
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    }
}

/// The tags of `repo` the policy `which` (`kept` or `deleted`), each with
/// its reason.
pub fn policy_tags(report: &Value, repo: &str, which: &str) -> BTreeMap<String, String> {
    let entry = report["policy"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == repo)
        .unwrap_or_else(|| panic!("no policy entry for {repo}: {report:#}"));
    entry[which]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_owned(),
                t["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Checks that the dry run `report` read its one pull log, `path`, whole and
/// in `format`, and that the log covers the pull window.
pub fn assert_read_whole(report: &Value, path: &str, format: &str) {
    let file = &report["pull_logs"]["files"][0];
    assert_eq!(file["path"], path);
    assert_eq!(
        file["rejected"], 0,
        "every line of the log is read: {file:#}"
    );
    assert_eq!(file["formats"][format], file["lines"], "{file:#}");
    assert_eq!(
        report["pull_logs"]["coverage"]["missing"],
        Value::Array(vec![]),
        "{report:#}"
    );
}

/// `gc` deleting every tag but those pulled (or pushed) within `window`, as
/// `log` shows.
pub fn gc_args<'a>(root: &'a str, window: &'a str, log: &'a str, dry_run: bool) -> Vec<&'a str> {
    let mut args = vec!["gc", "-y"];
    if dry_run {
        args.push("--dry-run");
    }
    args.extend([
        "--keep-last",
        "0",
        "--allow-empty-repos",
        "--keep-pulled-within",
        window,
        "--pull-log",
        log,
        root,
    ]);
    args
}
