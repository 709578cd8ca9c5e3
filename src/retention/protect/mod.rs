//! Protected images: references to images in use (`--protect FILE`), which a
//! retention policy never deletes.
//!
//! The file holds image references separated by whitespace: one per line as
//! people write them, or all on one line as
//! `kubectl get pods -A -o jsonpath='{..image}'` prints them. `#` starts a
//! comment that runs to the end of the line. A reference is
//!
//! ```text
//! [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:HEX]
//! ```
//!
//! as Docker reads it: the first path component is a registry host when it
//! contains `.` or `:` or is `localhost`, and it is ignored (regsweep sees one
//! registry's storage, whatever name clients reach it by). A reference with
//! neither tag nor digest means `:latest`, as for `docker pull`. A bare
//! `sha256:HEX` (what some runtimes report as a container's image) protects
//! that manifest in every repository that holds it.
//!
//! kubectl's `imageID` forms are read too: `docker-pullable://REFERENCE`
//! and `docker://sha256:HEX` (Docker's), `REPOSITORY@sha256:HEX` and a bare
//! `sha256:HEX` (containerd's and CRI-O's); the prefix is dropped.
//!
//! A reference names a tag (kept, and so is the image it points at), a
//! digest (that manifest and everything it reaches stay, and every tag that
//! points at it is kept), or both. The file is read whole or not at all: a
//! line that is not a reference refuses the run, since a protection list
//! that was half understood could let an image in use be deleted.
//!
//! A reference to a repository, tag or manifest that is not in storage is
//! not an error. Which registry it is for decides how it is reported. The
//! host is ignored for matching, so regsweep cannot tell this registry's
//! names from others' by the host alone; it goes by what the storage holds.
//! References fall in groups: one per registry host as written, one for
//! names without a host, one for bare digests. A group is this registry's
//! when one of its references names a repository in storage (a bare digest:
//! a manifest in storage); there a reference that names nothing is a
//! warning, since an image of this registry in use is missing. In any other
//! group it is taken for an image of another registry (Docker Hub, quay.io,
//! a local build) and only noted: clusters run those every day, and a
//! warning for each would make every run exit 1.

pub(crate) mod error;

pub use error::ProtectError;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::{Digest, DigestMap};
use crate::index::Index;

/// One image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// As written.
    pub text: String,
    /// Line of the file it is on (from 1).
    pub line: usize,
    /// The registry host as written (`registry.example.com:5000`),
    /// lowercased; `None` when the reference names none.
    pub host: Option<String>,
    /// The repository, without the registry host; `None` for a bare digest.
    pub repository: Option<String>,
    /// The tag, if one is named (`latest` when neither tag nor digest is).
    pub tag: Option<String>,
    /// The manifest digest, if one is named.
    pub digest: Option<Digest>,
}

/// Whether `component` is a registry host rather than part of a repository
/// name (Docker's rule): it contains `.` or `:` or is `localhost`, and is a
/// host name (or `[IPv6]`) with an optional numeric port.
fn is_host(component: &str) -> bool {
    if !(component.contains('.') || component.contains(':') || component == "localhost") {
        return false;
    }
    let (host, port) = match component.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, Some(port)),
        _ => (component, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`: one component of a repository name.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// The prefixes of kubectl's `imageID` that are not part of a reference:
/// Docker's (through dockershim or cri-dockerd) for an image pulled by
/// digest, and for an image known by its ID only.
const RUNTIME_PREFIXES: [&str; 2] = ["docker-pullable://", "docker://"];

/// Parses one reference (see the module documentation).
pub fn parse_reference(text: &str, line: usize) -> Result<Reference, String> {
    let written = text;
    let text = RUNTIME_PREFIXES
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .unwrap_or(text);
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "`{scheme}://` is not an image reference prefix (kubectl's imageID prefixes docker-pullable:// and docker:// are)"
        ));
    }
    let (name_part, digest) = match text.split_once('@') {
        Some((name, digest_text)) => {
            let digest = match digest_text.split_once(':') {
                Some(("sha256", _)) => Digest::parse(digest_text).ok_or_else(|| {
                    format!("`{digest_text}` is not sha256: followed by 64 lowercase hex digits")
                })?,
                Some((algorithm, _)) => {
                    return Err(format!(
                        "digest algorithm `{algorithm}` does not name a manifest here (sha256 only)"
                    ));
                }
                None => return Err(format!("`{digest_text}` is not a digest")),
            };
            (name, Some(digest))
        }
        None => (text, None),
    };
    if digest.is_none() {
        if let Some(bare) = Digest::parse(text) {
            return Ok(Reference {
                text: written.to_owned(),
                line,
                host: None,
                repository: None,
                tag: None,
                digest: Some(bare),
            });
        }
    }
    let (host, path) = match name_part.split_once('/') {
        Some((first, rest)) if is_host(first) => (Some(first.to_ascii_lowercase()), rest),
        _ => (None, name_part),
    };
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (path, None),
    };
    if repository.is_empty() {
        return Err("no repository name".into());
    }
    if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
        return Err(format!(
            "`{bad}` is not a repository name component (lowercase letters, digits, and . _ __ - between them)"
        ));
    }
    if let Some(tag) = tag {
        if !valid_tag(tag) {
            return Err(format!("`{tag}` is not a tag"));
        }
    }
    let tag = match (tag, digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, None) => Some(crate::retention::policy::LATEST.to_owned()),
        (None, Some(_)) => None,
    };
    Ok(Reference {
        text: written.to_owned(),
        line,
        host,
        repository: Some(repository.to_owned()),
        tag,
        digest,
    })
}

/// Every reference in `text`; the first token that is not a reference is an
/// error `(line, token, reason)`.
pub fn parse_references(text: &str) -> Result<Vec<Reference>, (usize, String, String)> {
    let mut references = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split_once('#').map_or(line, |(before, _)| before);
        for token in content.split_whitespace() {
            let reference = parse_reference(token, i + 1)
                .map_err(|reason| (i + 1, token.to_owned(), reason))?;
            references.push(reference);
        }
    }
    Ok(references)
}

/// The references of a protection file.
#[derive(Debug, Clone, Default)]
pub struct ProtectList {
    /// The file they come from.
    pub path: PathBuf,
    /// Every reference, duplicates removed, in file order.
    pub references: Vec<Reference>,
}

impl ProtectList {
    /// Reads and parses `path`.
    pub fn from_file(path: &Path) -> Result<ProtectList, ProtectError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProtectError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ProtectList::parse(path, &text)
    }

    /// Parses `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ProtectList, ProtectError> {
        let mut references =
            parse_references(text).map_err(|(line, text, reason)| ProtectError::Invalid {
                path: path.to_path_buf(),
                line,
                text,
                reason,
            })?;
        // kubectl lists an image once per container: keep the first.
        let mut seen = std::collections::HashSet::new();
        references.retain(|r| seen.insert(r.text.clone()));
        Ok(ProtectList {
            path: path.to_path_buf(),
            references,
        })
    }

    /// Matches the references against the storage.
    pub fn resolve(&self, index: &Index) -> Protection {
        let mut protection = Protection {
            repositories: vec![RepositoryProtection::default(); index.repositories.len()],
            unmatched: Vec::new(),
            elsewhere: Vec::new(),
        };
        // Per reference: whether its repository (a bare digest: its
        // manifest) is in storage, and what is missing if anything is.
        let mut looked: Vec<(bool, Option<String>)> = Vec::with_capacity(self.references.len());
        for (i, reference) in self.references.iter().enumerate() {
            let Some(name) = &reference.repository else {
                let digest = reference.digest.expect("a bare reference is a digest");
                let mut found = false;
                for (repo, protected) in index.repositories.iter().zip(&mut protection.repositories)
                {
                    if holds_manifest(repo, &digest) {
                        protected.digests.entry(digest).or_insert(i);
                        found = true;
                    }
                }
                looked.push((
                    found,
                    (!found).then(|| format!("no repository holds manifest {digest}")),
                ));
                continue;
            };
            let Ok(ri) = index
                .repositories
                .binary_search_by(|r| r.name.as_str().cmp(name))
            else {
                looked.push((
                    false,
                    Some(format!("repository `{name}` is not in storage")),
                ));
                continue;
            };
            let repo = &index.repositories[ri];
            let protected = &mut protection.repositories[ri];
            let tag_exists = |tag: &str| {
                repo.tags
                    .binary_search_by(|t| t.name.as_str().cmp(tag))
                    .is_ok()
            };
            let missing = match (&reference.tag, reference.digest) {
                (tag, Some(digest)) => {
                    protected.digests.entry(digest).or_insert(i);
                    if let Some(tag) = tag {
                        protected.tags.entry(tag.clone()).or_insert(i);
                    }
                    (!holds_manifest(repo, &digest))
                        .then(|| format!("repository `{name}` has no manifest {digest}"))
                }
                (Some(tag), None) => {
                    protected.tags.entry(tag.clone()).or_insert(i);
                    (!tag_exists(tag)).then(|| format!("repository `{name}` has no tag `{tag}`"))
                }
                (None, None) => unreachable!("a reference names a tag or a digest"),
            };
            looked.push((true, missing));
        }
        let here: HashSet<Origin> = self
            .references
            .iter()
            .zip(&looked)
            .filter(|(_, (in_storage, _))| *in_storage)
            .map(|(r, _)| r.origin())
            .collect();
        for (i, (reference, (_, missing))) in self.references.iter().zip(looked).enumerate() {
            let Some(message) = missing else {
                continue;
            };
            let origin = reference.origin();
            if here.contains(&origin) {
                protection.unmatched.push(Unmatched {
                    reference: i,
                    message,
                });
            } else {
                protection.elsewhere.push(Unmatched {
                    reference: i,
                    message: format!(
                        "{message}, and {origin}: taken for an image of another registry"
                    ),
                });
            }
        }
        protection
    }

    /// What the references came to, for reports.
    pub fn report(&self, protection: &Protection) -> ProtectReport {
        let note = |u: &Unmatched| {
            let reference = &self.references[u.reference];
            ProtectNote {
                line: reference.line,
                reference: reference.text.clone(),
                registry: reference.host.clone(),
                message: u.message.clone(),
            }
        };
        let missing = protection.unmatched.len() + protection.elsewhere.len();
        ProtectReport {
            file: self.path.clone(),
            references: self.references.len() as u64,
            found: self.references.len().saturating_sub(missing) as u64,
            not_found: protection.unmatched.len() as u64,
            other_registries: protection.elsewhere.iter().map(note).collect(),
        }
    }
}

/// The group a reference belongs to when deciding whether it is for this
/// registry (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Origin {
    /// A registry host, as written (lowercased).
    Host(String),
    /// A name without a host.
    NoHost,
    /// A digest alone.
    BareDigest,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Host(host) => write!(f, "no reference to {host} names a repository here"),
            Origin::NoHost => write!(
                f,
                "no reference without a registry host names a repository here"
            ),
            Origin::BareDigest => write!(f, "no bare digest names a manifest here"),
        }
    }
}

impl Reference {
    fn origin(&self) -> Origin {
        match (&self.host, &self.repository) {
            (Some(host), _) => Origin::Host(host.clone()),
            (None, Some(_)) => Origin::NoHost,
            (None, None) => Origin::BareDigest,
        }
    }
}

/// Whether `repo` holds the manifest `digest` (a linked revision, or what a
/// tag points at).
fn holds_manifest(repo: &crate::index::Repository, digest: &Digest) -> bool {
    repo.revisions
        .binary_search_by(|r| r.digest.cmp(digest))
        .is_ok_and(|i| repo.revisions[i].linked)
        || repo.tags.iter().any(|t| t.current == Some(*digest))
}

/// What one repository has protected: tag names and manifest digests, each
/// with the index of the first reference that protects it.
#[derive(Debug, Clone, Default)]
pub struct RepositoryProtection {
    /// Protected tags.
    pub tags: BTreeMap<String, usize>,
    /// Protected manifests.
    pub digests: DigestMap<usize>,
}

/// A reference that names nothing in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// Index into [`ProtectList::references`].
    pub reference: usize,
    /// What is missing.
    pub message: String,
}

/// The references matched against the storage.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// Per repository, in the order of [`Index::repositories`].
    pub repositories: Vec<RepositoryProtection>,
    /// References of this registry that name nothing in storage: an image
    /// in use is missing (warnings).
    pub unmatched: Vec<Unmatched>,
    /// References that name nothing in storage and are taken for images
    /// of other registries (notes).
    pub elsewhere: Vec<Unmatched>,
}

/// What a `--protect` list came to, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProtectReport {
    /// The file.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub file: PathBuf,
    /// Distinct references in it.
    pub references: u64,
    /// References naming something in storage.
    pub found: u64,
    /// References of this registry naming nothing in storage (each a
    /// `protected_not_found` warning).
    pub not_found: u64,
    /// References taken for images of other registries: noted, not warned
    /// about.
    pub other_registries: Vec<ProtectNote>,
}

/// A reference taken for an image of another registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectNote {
    /// Its line in the file (from 1).
    pub line: usize,
    /// As written.
    pub reference: String,
    /// Its registry host, `null` when it names none.
    pub registry: Option<String>,
    /// What is not in storage.
    pub message: String,
}

impl ProtectReport {
    /// One line for people, and with `all` one line per note:
    ///
    /// ```text
    /// Protected images (in-use.txt): 12 references, 9 in storage, 1 not found, 2 of other registries (docker.io 1, quay.io 1).
    /// ```
    pub fn write_human(&self, out: &mut impl io::Write, all: bool) -> io::Result<()> {
        let mut registries: BTreeMap<&str, usize> = BTreeMap::new();
        for note in &self.other_registries {
            *registries
                .entry(note.registry.as_deref().unwrap_or("no host"))
                .or_default() += 1;
        }
        let registries: Vec<String> = registries
            .iter()
            .map(|(registry, n)| format!("{registry} {n}"))
            .collect();
        write!(
            out,
            "Protected images ({}): {}, {} in storage, {} not found, {} of other registries",
            self.file.display(),
            crate::text::counted(self.references, "reference", "references"),
            crate::text::count(self.found),
            crate::text::count(self.not_found),
            crate::text::count(self.other_registries.len() as u64)
        )?;
        if registries.is_empty() {
            writeln!(out, ".")?;
        } else {
            writeln!(out, " ({}).", registries.join(", "))?;
        }
        if all {
            for note in &self.other_registries {
                writeln!(
                    out,
                    "  note: line {}: `{}`: {}",
                    note.line, note.reference, note.message
                )?;
            }
        }
        Ok(())
    }
}

impl Protection {
    /// The reference (index into [`ProtectList::references`]) that protects
    /// tag `tag` of repository `repository`, which points at `current`: the
    /// tag itself, or the manifest it points at.
    pub fn tag(&self, repository: usize, tag: &str, current: Option<&Digest>) -> Option<usize> {
        let protected = self.repositories.get(repository)?;
        protected
            .tags
            .get(tag)
            .or_else(|| current.and_then(|d| protected.digests.get(d)))
            .copied()
    }

    /// The manifests protected in `repository`: roots whatever the policy.
    pub fn digests(&self, repository: usize) -> impl Iterator<Item = (&Digest, &usize)> {
        self.repositories
            .get(repository)
            .into_iter()
            .flat_map(|p| p.digests.iter())
    }

    /// Whether nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.repositories
            .iter()
            .all(|p| p.tags.is_empty() && p.digests.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Repository, Revision, Tag};

    #[test]
    fn the_summary_line_counts_in_words_that_agree() {
        let report = |references| ProtectReport {
            file: PathBuf::from("in-use.txt"),
            references,
            found: references,
            not_found: 0,
            other_registries: Vec::new(),
        };
        let line = |r: &ProtectReport| {
            let mut out = Vec::new();
            r.write_human(&mut out, false).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(line(&report(1)).contains(": 1 reference, 1 in storage"));
        assert!(line(&report(1_234)).contains(": 1,234 references, 1,234 in storage"));
    }

    fn hex(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    fn parse(text: &str) -> Reference {
        parse_reference(text, 1).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn parts(text: &str) -> (Option<String>, Option<String>, Option<Digest>) {
        let r = parse(text);
        (r.repository, r.tag, r.digest)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn repository_tag_and_digest_forms() {
        assert_eq!(parts("app:1.2"), (some("app"), some("1.2"), None));
        assert_eq!(
            parts("team/app/web:v1"),
            (some("team/app/web"), some("v1"), None)
        );
        let at = format!("team/app@sha256:{}", hex(1));
        assert_eq!(parts(&at), (some("team/app"), None, Some(d(1))));
        let both = format!("team/app:1.2@sha256:{}", hex(2));
        assert_eq!(parts(&both), (some("team/app"), some("1.2"), Some(d(2))));
    }

    #[test]
    fn hosts_are_dropped_by_docker_rules() {
        assert_eq!(
            parts("registry.example.com:5000/team/app:1.2"),
            (some("team/app"), some("1.2"), None)
        );
        assert_eq!(parts("localhost/x:y"), (some("x"), some("y"), None));
        assert_eq!(parts("[::1]:5000/x:y"), (some("x"), some("y"), None));
        assert_eq!(parts("10.0.0.1/x"), (some("x"), some("latest"), None));
        assert_eq!(parts("localhost:5000/x"), (some("x"), some("latest"), None));
        assert_eq!(
            parts("docker.io/library/nginx:1.25"),
            (some("library/nginx"), some("1.25"), None)
        );
        // `team` has no dot, colon, nor is localhost: it is part of the name.
        assert_eq!(parts("team/app"), (some("team/app"), some("latest"), None));
        // A host alone is a name with a port-looking tag, as Docker reads it.
        assert_eq!(
            parts("localhost:5000"),
            (some("localhost"), some("5000"), None)
        );
    }

    #[test]
    fn no_tag_nor_digest_means_latest() {
        assert_eq!(parts("nginx"), (some("nginx"), some("latest"), None));
    }

    #[test]
    fn a_bare_digest_protects_that_manifest_anywhere() {
        let text = format!("sha256:{}", hex(7));
        assert_eq!(parts(&text), (None, None, Some(d(7))));
    }

    #[test]
    fn rejects_what_is_not_a_reference() {
        for bad in [
            "App:1",
            "app:bad/tag",
            "app:",
            "app@sha256:abc",
            "app@md5:00",
            "app@",
            "-app:1",
            "a//b",
            "app:-x",
            &format!("app@sha256:{}", hex(0xab).to_uppercase()),
            &format!("app:{}", "t".repeat(129)),
        ] {
            assert!(
                parse_reference(bad, 1).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(valid_component("a__b") && valid_component("a---b") && valid_component("a.b"));
        assert!(!valid_component("a..b") && !valid_component("a_.b") && !valid_component("a-"));
    }

    #[test]
    fn files_hold_lines_comments_and_kubectl_output() {
        let digest = format!("sha256:{}", hex(3));
        let text = format!(
            "# images in use\n\nteam/app:1.2   # prod\n\nreg.example.com/team/web@{digest}\n\
             nginx:1.25 team/app:1.2 localhost:5000/tools/ci:7 team/app:1.2\n"
        );
        let list = ProtectList::parse(Path::new("p.txt"), &text).unwrap();
        let texts: Vec<(&str, usize)> = list
            .references
            .iter()
            .map(|r| (r.text.as_str(), r.line))
            .collect();
        let web = format!("reg.example.com/team/web@{digest}");
        assert_eq!(
            texts,
            [
                ("team/app:1.2", 3),
                (web.as_str(), 5),
                ("nginx:1.25", 6),
                ("localhost:5000/tools/ci:7", 6)
            ]
        );
    }

    #[test]
    fn an_invalid_token_refuses_the_file_naming_the_line() {
        let err = ProtectList::parse(Path::new("p.txt"), "ok:1\n\nok:2 Bad:3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.txt:3: `Bad:3` is not an image reference"),
            "{err}"
        );
    }

    fn index() -> Index {
        let tag = |name: &str, current: u8| Tag {
            name: name.into(),
            current: Some(d(current)),
            history: vec![d(current)],
            pushed: None,
        };
        let revision = |n: u8| Revision {
            digest: d(n),
            linked: true,
            signatures: Vec::new(),
        };
        Index {
            repositories: vec![
                Repository {
                    name: "a".into(),
                    revisions: vec![revision(1), revision(2)],
                    tags: vec![tag("v1", 1), tag("v2", 2)],
                    ..Repository::default()
                },
                Repository {
                    name: "b/c".into(),
                    revisions: vec![revision(2), revision(3)],
                    tags: vec![tag("x", 3)],
                    ..Repository::default()
                },
            ],
            ..Index::default()
        }
    }

    #[test]
    fn resolves_tags_and_digests_and_reports_what_is_missing() {
        let text = format!(
            "a:v1\nb/c@sha256:{}\nsha256:{}\nmissing:1\na:nope\nb/c@sha256:{}\nsha256:{}\n",
            hex(3),
            hex(2),
            hex(9),
            hex(8)
        );
        let list = ProtectList::parse(Path::new("p"), &text).unwrap();
        let p = list.resolve(&index());
        // a:v1 by tag; a:v2 because it points at the bare-digest-protected 2.
        assert_eq!(p.tag(0, "v1", Some(&d(1))), Some(0));
        assert_eq!(p.tag(0, "v2", Some(&d(2))), Some(2));
        // b/c:x points at the digest-protected 3.
        assert_eq!(p.tag(1, "x", Some(&d(3))), Some(1));
        let mut b_digests: Vec<Digest> = p.digests(1).map(|(d, _)| *d).collect();
        b_digests.sort();
        assert_eq!(b_digests, [d(2), d(3), d(9)]);
        let unmatched: Vec<(usize, &str)> = p
            .unmatched
            .iter()
            .map(|u| (u.reference, u.message.as_str()))
            .collect();
        let no_9 = format!("repository `b/c` has no manifest {}", d(9));
        let no_8 = format!("no repository holds manifest {}", d(8));
        assert_eq!(
            unmatched,
            [
                (3, "repository `missing` is not in storage"),
                (4, "repository `a` has no tag `nope`"),
                (5, no_9.as_str()),
                (6, no_8.as_str()),
            ]
        );
        assert!(!p.is_empty());
    }

    #[test]
    fn kubectl_image_id_forms_are_references() {
        let digest = format!("sha256:{}", hex(4));
        for (text, host, repository) in [
            (
                format!("docker-pullable://registry.example.com/team/app@{digest}"),
                some("registry.example.com"),
                some("team/app"),
            ),
            (
                format!("docker-pullable://nginx@{digest}"),
                None,
                some("nginx"),
            ),
            (format!("docker://{digest}"), None, None),
            (
                format!("docker.io/library/nginx@{digest}"),
                some("docker.io"),
                some("library/nginx"),
            ),
            (digest.clone(), None, None),
        ] {
            let r = parse(&text);
            assert_eq!(r.text, text, "kept as written");
            assert_eq!((r.host, r.repository), (host, repository), "{text}");
            assert_eq!((r.tag, r.digest), (None, Some(d(4))), "{text}");
        }
        assert_eq!(
            parse("Registry.Example.com/a:1").host,
            some("registry.example.com")
        );
        for bad in [
            "containerd://0123abcd",
            "cri-o://0123abcd",
            "docker-pullable://",
            "docker://",
            "https://registry.example.com/a:1",
        ] {
            let err = parse_reference(bad, 1).unwrap_err();
            assert!(!err.is_empty(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn images_of_other_registries_are_noted_not_warned_about() {
        let text = format!(
            "registry.example.com/a:v1 registry.example.com/a:gone registry.example.com/zz:1\n\
             docker.io/library/nginx:1.25 nginx:1.25 quay.io/x/y@sha256:{}\n\
             docker-pullable://registry.example.com/b/c@sha256:{} docker://sha256:{}\n",
            hex(5),
            hex(3),
            hex(6)
        );
        let list = ProtectList::parse(Path::new("in-use.txt"), &text).unwrap();
        let p = list.resolve(&index());
        assert_eq!(p.tag(0, "v1", Some(&d(1))), Some(0));
        assert_eq!(p.tag(1, "x", Some(&d(3))), Some(6), "imageID protects");
        let warned: Vec<&str> = p
            .unmatched
            .iter()
            .map(|u| list.references[u.reference].text.as_str())
            .collect();
        assert_eq!(
            warned,
            ["registry.example.com/a:gone", "registry.example.com/zz:1"],
            "this registry's host: what is missing is warned about"
        );
        let noted: Vec<&str> = p
            .elsewhere
            .iter()
            .map(|u| list.references[u.reference].text.as_str())
            .collect();
        let quay = format!("quay.io/x/y@sha256:{}", hex(5));
        let image_id = format!("docker://sha256:{}", hex(6));
        assert_eq!(
            noted,
            [
                "docker.io/library/nginx:1.25",
                "nginx:1.25",
                quay.as_str(),
                image_id.as_str()
            ]
        );
        assert!(
            p.elsewhere[0].message.starts_with(
                "repository `library/nginx` is not in storage, and no reference to docker.io names a repository here"
            ),
            "{}",
            p.elsewhere[0].message
        );

        let report = list.report(&p);
        assert_eq!(
            (report.references, report.found, report.not_found),
            (8, 2, 2)
        );
        assert_eq!(report.other_registries[1].registry, None);
        assert_eq!(report.other_registries[2].registry, some("quay.io"));
        assert_eq!(report.other_registries[2].line, 2);
        let mut out = Vec::new();
        report.write_human(&mut out, true).unwrap();
        let out = String::from_utf8(out).unwrap();
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap(),
            "Protected images (in-use.txt): 8 references, 2 in storage, 2 not found, \
             4 of other registries (docker.io 1, no host 2, quay.io 1)."
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("  note: line 2: `docker.io/library/nginx:1.25`: repository"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 5);
    }

    #[test]
    fn a_host_is_this_registrys_when_one_of_its_names_is_here_even_without_the_tag() {
        let list = ProtectList::parse(
            Path::new("p"),
            "reg.example.com/a:gone reg.example.com/missing:1 other.example.com/missing:2\n",
        )
        .unwrap();
        let p = list.resolve(&index());
        let warned: Vec<usize> = p.unmatched.iter().map(|u| u.reference).collect();
        let noted: Vec<usize> = p.elsewhere.iter().map(|u| u.reference).collect();
        assert_eq!((warned, noted), (vec![0, 1], vec![2]));
    }

    #[test]
    fn with_no_name_in_storage_a_name_without_host_is_only_noted() {
        // Names without a host are this registry's when one of them is in
        // storage; otherwise they are read as Docker reads them, Docker Hub's.
        let list = ProtectList::parse(Path::new("p"), "a:v1 a:nope\n").unwrap();
        assert_eq!(list.resolve(&index()).unmatched.len(), 1);
        let list = ProtectList::parse(Path::new("p"), "nginx:1.25 redis\n").unwrap();
        let p = list.resolve(&index());
        assert!(p.unmatched.is_empty());
        assert_eq!(p.elsewhere.len(), 2);
    }
}
