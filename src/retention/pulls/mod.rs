//! Pull logs: when each tag and each manifest was last pulled, read offline
//! from the registry's own logs.
//!
//! Inputs are files (plain or gzip, told by their first bytes), the files
//! of a directory, or standard input. Each line is recognised by its shape
//! ([`parse`]): the registry's app log (`msg="response completed"`, logrus
//! text or JSON formatter; 2.8 logs no `vars.*` there, so the repository and
//! reference always come from `http.request.uri`) or a combined-format
//! access line (the registry's access log on stdout, nginx, Apache). A file
//! that begins with JSON documents rather than log lines is read as the
//! registry's notification events ([`events`]), decoded as a stream.
//!
//! A pull is a `GET` or `HEAD` of `/v2/<name>/manifests/<reference>`
//! answered 200 or 304. HEAD counts: docker and containerd resolve a tag
//! with HEAD and fetch only what they lack, so an image in daily use may
//! show nothing but HEADs for months.
//!
//! Only the last pull per (repository, reference) is kept, so memory grows
//! with the distinct pairs, not with the lines, and the files may come in
//! any order. A pull by tag is also a pull of every manifest the tag could
//! have served then ([`TagHistory::possible`]), decided as each line is read.
//!
//! Lines that cannot be read are counted and sampled, never fatal. One that
//! still names a manifest path counts as a pull of it at the file's last
//! time: a line not understood never makes an image look unused.
//!
//! A missing log is not the same as "not pulled": [`PullLogs::check_coverage`]
//! refuses a pull window the logs do not cover.

pub(crate) mod error;
pub mod events;
mod history;
pub mod input;
pub mod parse;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

pub use error::PullLogError;
pub use history::{Histories, HistoryTimes, ListedHistoryTimes, TagHistory};

use crate::digest::{Digest, DigestMap};
use crate::duration::{Age, human};
use crate::gc::mark::Loaded;
use crate::index::{Index, Tag};
use crate::interrupt::{Interrupt, Phase};
use crate::manifest::{self, ManifestKind};
use crate::progress::Task;
use crate::warning::{Warning, WarningKind};
use input::Source;
use parse::{Parsed, Request};

/// `--pull-log` and what goes with it.
#[derive(Debug, Clone, Default)]
pub struct PullLogConfig {
    /// Files, directories, or `-` for standard input.
    pub inputs: Vec<PathBuf>,
    /// Accept logs that do not cover the whole pull window: what they show
    /// is taken as everything.
    pub assume_complete: bool,
    /// `--protect-pulled-within`: a manifest pulled by digest within this
    /// window is a root, even under `-m`.
    pub protect_within: Option<Age>,
    /// `--pull-ignore-user-agent`: pulls by a matching user agent (a
    /// scanner, a mirror) do not count. A pull with no user agent always
    /// counts.
    pub ignore_user_agents: Vec<regex::Regex>,
    /// `--pull-ignore-client`: pulls from a matching address do not count.
    pub ignore_clients: Vec<ClientPattern>,
    /// `--pull-log-format`: read every input as this one format; `None`
    /// tells each line's format by its shape.
    pub format: Option<ForcedFormat>,
}

/// A format `--pull-log-format` forces on every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedFormat {
    /// Log lines of one format; lines of any other shape are rejected.
    Lines(parse::Format),
    /// The registry's notification events (JSON documents).
    Events,
}

impl ForcedFormat {
    /// The names `--pull-log-format` takes, `auto` first.
    pub fn names() -> Vec<&'static str> {
        let mut names = vec!["auto"];
        names.extend(parse::Format::ALL.iter().map(|f| f.name()));
        names.push(events::FORCED_NAME);
        names
    }

    /// The format `name` names; `auto` is `Ok(None)`.
    pub fn from_name(name: &str) -> Result<Option<ForcedFormat>, String> {
        if name == "auto" {
            return Ok(None);
        }
        if name == events::FORCED_NAME || name == events::FORMAT {
            return Ok(Some(ForcedFormat::Events));
        }
        parse::Format::from_name(name)
            .map(|f| Some(ForcedFormat::Lines(f)))
            .ok_or_else(|| {
                format!(
                    "`{name}` is not a pull log format; one of: {}",
                    ForcedFormat::names().join(", ")
                )
            })
    }
}

/// An address or a network (`10.0.0.7`, `10.1.0.0/16`, `fd00::/8`) whose
/// pulls do not count: a scanner's, a mirror's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPattern {
    network: std::net::IpAddr,
    prefix: u8,
}

impl ClientPattern {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Result<ClientPattern, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let bits: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`/{p}` is not a prefix length of 0 to {bits}"))?,
        };
        Ok(ClientPattern { network, prefix })
    }

    /// Whether the address a log gives (`10.0.0.7:51234`, `[::1]:5000`, a
    /// bare address, or a forwarded list whose first entry is the client)
    /// is in this network.
    pub fn matches(&self, logged: &str) -> bool {
        let first = logged.split(',').next().unwrap_or("").trim();
        let address = first
            .parse::<std::net::SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| first.trim_matches(['[', ']']).parse::<std::net::IpAddr>());
        let Ok(address) = address else {
            return false;
        };
        if address.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        // Both as 128 bits, an IPv4 address in the top 32.
        let bits = |ip: std::net::IpAddr| -> u128 {
            match ip {
                std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                std::net::IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        bits(address) & mask == bits(self.network) & mask
    }
}

/// The longest time between two files' spans, and between the end of the
/// logs and now, still taken as covered: beyond it, pulls may have gone
/// unlogged (a rotated file left out, logs copied long ago).
pub const MAX_UNCOVERED: Duration = Duration::from_secs(3600);

/// Rejected lines shown per file.
const SAMPLES: usize = 3;

/// Instances and hosts listed per file.
const NAMES: usize = 16;

/// User agents listed per repository in the report.
pub const TOP_USER_AGENTS: usize = 3;

/// How a pull asked for the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: a check that the image is up to date, which is a use.
    Head,
    /// A line that could not be read whole but names a manifest.
    Unknown,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Unknown => "a log line not fully read",
        })
    }
}

/// The reference a pull named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A digest.
    Digest,
    /// A tag (for a manifest: the tag that served it).
    Tag(Arc<str>),
}

/// The last pull of a (repository, reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPull {
    /// When.
    pub time: SystemTime,
    /// How.
    pub method: Method,
    /// By what reference.
    pub via: Via,
    /// The client's user agent, when logged.
    pub user_agent: Option<Arc<str>>,
}

impl LastPull {
    /// `HEAD by tag, containerd/1.7`: how, and by whom.
    pub fn describe(&self, tag: &str) -> String {
        let how = match (&self.via, self.method) {
            (_, Method::Unknown) => Method::Unknown.to_string(),
            (Via::Digest, method) => format!("{method} by digest"),
            (Via::Tag(by), method) if &**by == tag => format!("{method} by tag"),
            (Via::Tag(by), method) => format!("{method} by tag `{by}`"),
        };
        match &self.user_agent {
            Some(ua) => format!("{how}, {ua}"),
            None => how,
        }
    }
}

/// What the logs say about one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagPulls<'a> {
    /// Its last pull by name, whatever it pointed at then.
    pub by_name: Option<&'a LastPull>,
    /// The last pull of the manifest it points at now, by any reference.
    pub of_image: Option<&'a LastPull>,
}

impl<'a> TagPulls<'a> {
    /// The later of the two.
    pub fn newest(&self) -> Option<&'a LastPull> {
        match (self.by_name, self.of_image) {
            (Some(a), Some(b)) => Some(if b.time > a.time { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// A line that was not read, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedLine {
    /// Its number in the file, from 1.
    pub line: u64,
    /// Why.
    pub reason: &'static str,
    /// Its beginning.
    pub text: String,
}

/// What one file held.
#[derive(Debug, Clone, Serialize)]
pub struct PullLogFile {
    /// The file, or `-` for standard input.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub path: PathBuf,
    /// `gzip`, or `null`.
    pub compression: Option<&'static str>,
    /// Lines read; in a file of notification events, the events read
    /// (and the top-level JSON values that hold none).
    pub lines: u64,
    /// Lines recognised, per format (`distribution-text`,
    /// `distribution-json`, `combined`), or events (`events`).
    pub formats: BTreeMap<&'static str, u64>,
    /// Lines (or events) not read (of no known format, or unreadable).
    pub rejected: u64,
    /// The first few of them.
    pub rejected_samples: Vec<RejectedLine>,
    /// Manifest pulls found.
    pub pulls: u64,
    /// Of them, pulls by a user agent `--pull-ignore-user-agent` leaves out.
    pub ignored_pulls: u64,
    /// Distinct manifests named by lines not read, counted as pulled at
    /// the file's last time.
    pub uncertain_pulls: u64,
    /// Its earliest time (RFC 3339, UTC).
    #[serde(serialize_with = "optional_time")]
    pub first: Option<SystemTime>,
    /// Its latest time.
    #[serde(serialize_with = "optional_time")]
    pub last: Option<SystemTime>,
    /// Registry instances seen (`instance.id`): more than one across files
    /// means several replicas, whose logs are all needed.
    pub instances: Vec<String>,
    /// Hosts the requests named (`http.request.host`).
    pub hosts: Vec<String>,
    /// The collectors' wrappers peeled off its lines (Docker json-file,
    /// Kubernetes CRI, journald, syslog, timestamp and compose prefixes),
    /// the lines they split joined again.
    pub wrappers: crate::retention::logwrap::Counts,
    /// Completed requests read from the registry's app log (`response
    /// completed`), of any path.
    pub app_requests: u64,
    /// Requests read from access lines (combined format, a proxy's JSON).
    pub access_requests: u64,
    /// Registry versions the app log names (`version=`): 3.0.x logs no
    /// HEAD of a manifest.
    pub versions: Vec<String>,
    /// Per instance listed in `instances`, the first and last time of its
    /// lines here.
    #[serde(skip)]
    instance_spans: Vec<(SystemTime, SystemTime)>,
}

impl PullLogFile {
    fn new(path: PathBuf, compression: input::Compression) -> PullLogFile {
        PullLogFile {
            path,
            compression: match compression {
                input::Compression::None => None,
                input::Compression::Gzip => Some("gzip"),
            },
            lines: 0,
            formats: BTreeMap::new(),
            rejected: 0,
            rejected_samples: Vec::new(),
            pulls: 0,
            ignored_pulls: 0,
            uncertain_pulls: 0,
            first: None,
            last: None,
            instances: Vec::new(),
            hosts: Vec::new(),
            wrappers: crate::retention::logwrap::Counts::default(),
            app_requests: 0,
            access_requests: 0,
            versions: Vec::new(),
            instance_spans: Vec::new(),
        }
    }

    /// Extends the span of `instance`'s lines to `time`.
    fn saw_instance(&mut self, instance: Option<&str>, time: SystemTime) {
        let Some(instance) = instance.filter(|n| !n.is_empty()) else {
            return;
        };
        match self.instances.iter().position(|n| n == instance) {
            Some(i) => {
                if let Some(span) = self.instance_spans.get_mut(i) {
                    span.0 = span.0.min(time);
                    span.1 = span.1.max(time);
                }
            }
            None if self.instances.len() < NAMES => {
                self.instances.push(instance.to_owned());
                self.instance_spans.push((time, time));
            }
            None => {}
        }
    }

    fn reject(&mut self, reason: &'static str, text: &str) {
        self.reject_at(self.lines, reason, text);
    }

    /// Rejects what ends on line `line` of the file.
    fn reject_at(&mut self, line: u64, reason: &'static str, text: &str) {
        self.rejected += 1;
        if self.rejected_samples.len() < SAMPLES {
            let end = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
            self.rejected_samples.push(RejectedLine {
                line,
                reason,
                text: text[..end].to_owned(),
            });
        }
    }

    fn saw(&mut self, time: SystemTime) {
        self.first = Some(self.first.map_or(time, |t| t.min(time)));
        self.last = Some(self.last.map_or(time, |t| t.max(time)));
    }
}

fn note(names: &mut Vec<String>, name: Option<&str>) {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        if names.len() < NAMES && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
}

/// A span of time, as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Start (RFC 3339, UTC).
    #[serde(serialize_with = "time")]
    pub from: SystemTime,
    /// End.
    #[serde(serialize_with = "time")]
    pub to: SystemTime,
    /// Its length in seconds.
    pub seconds: u64,
}

impl Span {
    fn new(from: SystemTime, to: SystemTime) -> Span {
        Span {
            from,
            to,
            seconds: crate::clock::age(to, from).as_secs(),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to {} ({})",
            crate::clock::rfc3339(self.from),
            crate::clock::rfc3339(self.to),
            human(Duration::from_secs(self.seconds))
        )
    }
}

/// Whether the logs cover a pull window.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// The rule with the longest window (`--keep-pulled-within 30d`).
    pub rule: String,
    /// The window, as given.
    pub window: String,
    /// The window in seconds.
    pub window_seconds: u64,
    /// What must be covered: from the window's start to now.
    pub needed: Span,
    /// What the files cover together.
    pub covered: Vec<Span>,
    /// Parts of `needed` no file covers (gaps up to an hour between
    /// files, and between the last line and now, are not counted).
    pub missing: Vec<Span>,
    /// `--pull-log-assume-complete`: the rules ran on what the logs show.
    pub assumed_complete: bool,
}

/// The `pull_logs` part of a `gc` report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullLogReport {
    /// Per file, in the order read.
    pub files: Vec<PullLogFile>,
    /// Lines read, over every file.
    pub lines: u64,
    /// Lines not read.
    pub rejected: u64,
    /// Manifest pulls found.
    pub pulls: u64,
    /// Manifests named by lines not read.
    pub uncertain_pulls: u64,
    /// Distinct (repository, reference) pairs pulled, as the logs name them.
    pub references: u64,
    /// The earliest time in any file.
    #[serde(serialize_with = "optional_time")]
    pub first: Option<SystemTime>,
    /// The latest.
    #[serde(serialize_with = "optional_time")]
    pub last: Option<SystemTime>,
    /// Whether they cover the pull window; `null` without a pull rule.
    pub coverage: Option<Coverage>,
    /// Manifests kept as roots because they were pulled by digest within
    /// `--protect-pulled-within` (per repository holding them).
    pub protected_by_digest_pull: u64,
    /// Pulls by tag (the latest per tag, response and manifests the tag's
    /// history allows) that the registry's app log narrowed to fewer
    /// manifests by the content type and size it served.
    pub narrowed: u64,
    /// Per repository pulled, its most frequent user agents (scanners,
    /// mirrors and backups make everything look pulled), by repository.
    pub top_user_agents: Vec<RepositoryAgents>,
}

/// The user agents that pulled one repository most often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryAgents {
    /// The repository, as the logs name it.
    pub repository: String,
    /// Pulls of it with a user agent logged.
    pub pulls: u64,
    /// Distinct user agents that pulled it.
    pub user_agents: u64,
    /// The [`TOP_USER_AGENTS`] most frequent, most pulls first (ties by
    /// name).
    pub top: Vec<AgentPulls>,
}

/// Pulls by one user agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPulls {
    /// The user agent.
    pub user_agent: String,
    /// Its pulls.
    pub pulls: u64,
}

fn time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*t))
}

fn optional_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time(t, s),
        None => s.serialize_none(),
    }
}

/// A pull, as recorded.
#[derive(Debug, Clone)]
struct Recorded {
    pull: LastPull,
    /// Some line named this reference (rather than a pull by tag being
    /// attributed to it).
    named: bool,
}

/// String-keyed maps read once per log line: foldhash, not SipHash (the
/// keys are repository names and tags from storage and the logs, and a
/// line's lookups are most of the reading time).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The last pull per reference of one repository.
#[derive(Debug, Default)]
struct RepositoryTable {
    /// By tag (and by a digest of another algorithm than sha256).
    references: FastMap<Box<str>, Recorded>,
    /// By manifest digest.
    digests: DigestMap<Recorded>,
}

/// The last pull per (repository, reference).
#[derive(Debug, Default)]
struct PullTable {
    repositories: FastMap<Box<str>, RepositoryTable>,
    agents: HashSet<Arc<str>>,
    /// Pulls per (repository, user agent): bounded by the distinct pairs.
    agent_pulls: FastMap<Box<str>, FastMap<Arc<str>, u64>>,
}

/// Keeps the later of `recorded` and `pull`.
fn keep_last(recorded: &mut Recorded, pull: LastPull, named: bool) {
    recorded.named |= named;
    if pull.time > recorded.pull.time {
        recorded.pull = pull;
    }
}

impl RepositoryTable {
    fn update(&mut self, reference: &str, pull: LastPull, named: bool) {
        if let Some(digest) = Digest::parse(reference) {
            return self.update_digest(digest, pull, named);
        }
        match self.references.get_mut(reference) {
            Some(recorded) => keep_last(recorded, pull, named),
            None => {
                self.references
                    .insert(reference.into(), Recorded { pull, named });
            }
        }
    }

    fn update_digest(&mut self, digest: Digest, pull: LastPull, named: bool) {
        match self.digests.get_mut(&digest) {
            Some(recorded) => keep_last(recorded, pull, named),
            None => {
                self.digests.insert(digest, Recorded { pull, named });
            }
        }
    }

    fn get(&self, reference: &str) -> Option<&Recorded> {
        match Digest::parse(reference) {
            Some(digest) => self.digests.get(&digest),
            None => self.references.get(reference),
        }
    }
}

impl PullTable {
    /// One copy per distinct user agent.
    fn agent(&mut self, ua: &str) -> Arc<str> {
        if let Some(found) = self.agents.get(ua) {
            return found.clone();
        }
        let ua: Arc<str> = Arc::from(ua);
        self.agents.insert(ua.clone());
        ua
    }

    /// The table of `repository`, made when first pulled.
    fn repository(&mut self, repository: &str) -> Option<&mut RepositoryTable> {
        if !self.repositories.contains_key(repository) {
            self.repositories
                .insert(repository.into(), RepositoryTable::default());
        }
        self.repositories.get_mut(repository)
    }

    fn update(&mut self, repository: &str, reference: &str, pull: LastPull, named: bool) {
        if let Some(table) = self.repository(repository) {
            table.update(reference, pull, named);
        }
    }

    fn get(&self, repository: &str, reference: &str) -> Option<&LastPull> {
        self.repositories
            .get(repository)?
            .get(reference)
            .map(|r| &r.pull)
    }

    fn get_digest(&self, repository: &str, digest: &Digest) -> Option<&LastPull> {
        self.repositories
            .get(repository)?
            .digests
            .get(digest)
            .map(|r| &r.pull)
    }

    fn count_agent(&mut self, repository: &str, agent: &Arc<str>) {
        if !self.agent_pulls.contains_key(repository) {
            self.agent_pulls
                .insert(repository.into(), FastMap::default());
        }
        if let Some(agents) = self.agent_pulls.get_mut(repository) {
            *agents.entry(agent.clone()).or_default() += 1;
        }
    }

    /// Per repository, its [`TOP_USER_AGENTS`] most frequent agents.
    fn top_user_agents(&self) -> Vec<RepositoryAgents> {
        let mut all: Vec<RepositoryAgents> = self
            .agent_pulls
            .iter()
            .map(|(repository, agents)| {
                let mut counted: Vec<(&Arc<str>, u64)> =
                    agents.iter().map(|(a, n)| (a, *n)).collect();
                counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                RepositoryAgents {
                    repository: repository.to_string(),
                    pulls: counted.iter().map(|(_, n)| n).sum(),
                    user_agents: counted.len() as u64,
                    top: counted
                        .iter()
                        .take(TOP_USER_AGENTS)
                        .map(|(a, n)| AgentPulls {
                            user_agent: a.to_string(),
                            pulls: *n,
                        })
                        .collect(),
                }
            })
            .collect();
        all.sort_by(|a, b| a.repository.cmp(&b.repository));
        all
    }

    fn named(&self) -> u64 {
        self.repositories
            .values()
            .flat_map(|r| r.references.values().chain(r.digests.values()))
            .filter(|r| r.named)
            .count() as u64
    }
}

/// One pull to record.
struct Observation<'a> {
    repository: &'a str,
    reference: &'a str,
    time: SystemTime,
    /// The time the tag's history is read at: the pull's own, or for a line
    /// not read, the earliest possible, so that every manifest the tag ever
    /// pointed at counts.
    attribute_at: SystemTime,
    method: Method,
    user_agent: Option<&'a str>,
    /// The client's address as logged.
    client: Option<&'a str>,
    /// The digest the response named (an event's `target.digest`, a
    /// proxy's `Docker-Content-Digest`), when logged.
    served: Option<&'a str>,
    /// The kind and size of what a 200 response served, from the
    /// registry's app log (it writes the stored bytes; a proxy may have
    /// compressed them).
    response: Option<Served>,
}

/// The pull a completed request records, if it is one: a GET or HEAD of a
/// manifest answered 200 or 304.
fn pull_of<'r>(request: &'r Request) -> Option<(Cow<'r, str>, Cow<'r, str>, Method)> {
    if !matches!(request.status, 200 | 304) {
        return None;
    }
    let method = match &*request.method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return None,
    };
    let (repository, reference) = parse::manifest_reference(&request.uri)?;
    Some((repository, reference, method))
}

/// Pull logs, read.
pub struct PullLogs {
    table: PullTable,
    /// What they held.
    pub report: PullLogReport,
}

/// Pull logs read, before the manifests they may name are known: the pulls
/// by tag whose response size and content type can narrow the manifests
/// the tag could have served wait for [`PullLogsRead::settle`], which alone
/// gives the [`PullLogs`] decisions are made from.
pub struct PullLogsRead {
    table: PullTable,
    narrowable: FastMap<NarrowKey, Narrowable>,
    /// What they held.
    pub report: PullLogReport,
}

/// Pulls by tag that one of several manifests served, as the tag's history
/// tells, whose lines give the kind of what was served and which of those
/// manifests have its size. Distinct keys are bounded by the tags, their
/// history entries and the few such masks, not by the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NarrowKey {
    /// The tag, as [`Histories`] knows it: (repository, tag) positions in
    /// the index.
    tag: (u32, u32),
    /// The candidates: [`TagHistory::possible`] at any time after the same
    /// number of the tag's pushes.
    pushes_before: u32,
    /// The kind served.
    kind: ManifestKind,
    /// Bit `i`: candidate `i` has the size served (or its size is unknown).
    same_size: u64,
}

/// The manifests of a [`NarrowKey`] and its latest pull.
#[derive(Debug, Clone)]
struct Narrowable {
    candidates: Box<[Digest]>,
    pull: LastPull,
}

/// What a response served, as the registry's app log gives it
/// (`http.response.contenttype`, `http.response.written`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Served {
    kind: ManifestKind,
    bytes: u64,
}

impl Served {
    /// Whether a stored manifest of `kind` and `bytes` can have given this
    /// response (see [`fits`]).
    #[cfg(test)]
    fn from(&self, kind: ManifestKind, bytes: u64) -> bool {
        fits(self.kind, kind, bytes == self.bytes)
    }
}

/// Whether a stored manifest of `kind` can have given a response of
/// `served` kind, `same_size` telling whether it has the size served: as it
/// is stored, or rewritten for an old client (the 2.x registry gives a
/// client that does not accept manifest lists the list's linux/amd64 image,
/// and one that accepts only schema1 a conversion of the image).
fn fits(served: ManifestKind, kind: ManifestKind, same_size: bool) -> bool {
    (kind == served && same_size)
        || matches!(
            (kind, served),
            (
                ManifestKind::Index,
                ManifestKind::Image | ManifestKind::Schema1
            ) | (ManifestKind::Image, ManifestKind::Schema1)
        )
}

/// Reads logs into a table, attributing pulls by tag as it goes.
struct Reader<'a> {
    table: PullTable,
    histories: Histories<'a>,
    ignore_user_agents: &'a [regex::Regex],
    ignore_clients: &'a [ClientPattern],
    /// `--pull-log-format`.
    format: Option<ForcedFormat>,
    /// Pulls left out by `ignore_user_agents` and `ignore_clients`, so far.
    ignored: u64,
    /// Pulls by tag to narrow once the manifests are read, the latest per
    /// key.
    narrowable: FastMap<NarrowKey, Narrowable>,
    /// Where the manifests' sizes are.
    index: &'a Index,
}

impl Reader<'_> {
    /// Whether a pull by `user_agent` from `client` is left out. A pull that
    /// does not say who made it always counts.
    fn leaves_out(&self, user_agent: Option<&str>, client: Option<&str>) -> bool {
        user_agent.is_some_and(|ua| self.ignore_user_agents.iter().any(|p| p.is_match(ua)))
            || client.is_some_and(|c| self.ignore_clients.iter().any(|p| p.matches(c)))
    }

    fn record(&mut self, o: Observation) {
        if self.leaves_out(o.user_agent, o.client) {
            self.ignored += 1;
            return;
        }
        let user_agent = o.user_agent.map(|ua| self.table.agent(ua));
        if let Some(agent) = &user_agent {
            self.table.count_agent(o.repository, agent);
        }
        if parse::is_digest(o.reference) {
            let pull = LastPull {
                time: o.time,
                method: o.method,
                via: Via::Digest,
                user_agent,
            };
            self.table.update(o.repository, o.reference, pull, true);
            return;
        }
        let tag: Arc<str> = Arc::from(o.reference);
        let pull = LastPull {
            time: o.time,
            method: o.method,
            via: Via::Tag(tag),
            user_agent,
        };
        let history = self.histories.get(o.repository, o.reference);
        let Some(table) = self.table.repository(o.repository) else {
            return;
        };
        if let Some(served) = o.served {
            table.update(served, pull.clone(), false);
        }
        // The digest served decides, when the tag's history holds it. One
        // it never held (an old client given the list's amd64 child, or a
        // schema1 rewrite) leaves the history to say what the tag served.
        let exact = o
            .served
            .and_then(Digest::parse)
            .is_some_and(|d| history.is_some_and(|(_, h)| h.holds(&d)));
        if let (Some((position, history)), false) = (history, exact) {
            let candidates = history.possible(o.attribute_at);
            match o.response {
                Some(served) if candidates.len() > 1 && candidates.len() <= 64 => {
                    let mut same_size = 0u64;
                    for (i, digest) in candidates.iter().enumerate() {
                        let size = self.index.blob(digest).map(|b| b.bytes());
                        if size.is_none_or(|size| size == served.bytes) {
                            same_size |= 1 << i;
                        }
                    }
                    let key = NarrowKey {
                        tag: position,
                        pushes_before: history.pushes_before(o.attribute_at),
                        kind: served.kind,
                        same_size,
                    };
                    match self.narrowable.get_mut(&key) {
                        Some(last) if last.pull.time >= pull.time => {}
                        Some(last) => last.pull = pull.clone(),
                        None => {
                            let pull = pull.clone();
                            let candidates = candidates.into();
                            self.narrowable.insert(key, Narrowable { candidates, pull });
                        }
                    }
                }
                _ => {
                    for digest in candidates {
                        table.update_digest(digest, pull.clone(), false);
                    }
                }
            }
        }
        table.update(o.reference, pull, true);
    }

    /// Reads one input; pulls named by lines not read, in a file with no
    /// time at all, are returned.
    fn read(
        &mut self,
        source: &Source,
        interrupt: &Interrupt,
        task: &Task,
    ) -> crate::Result<(PullLogFile, Vec<(String, String)>)> {
        let opened = input::open(source).map_err(crate::Error::PullLog)?;
        let mut reader = opened.reader;
        let mut file = PullLogFile::new(source.name(), opened.compression);
        let mut uncertain: BTreeSet<(String, String)> = BTreeSet::new();
        let head = reader.fill_buf().map_err(|source| {
            crate::Error::PullLog(PullLogError::Read {
                path: file.path.clone(),
                source,
            })
        })?;
        let events = match self.format {
            Some(ForcedFormat::Events) => true,
            Some(ForcedFormat::Lines(_)) => false,
            None => events::looks_like_events(head),
        };
        if events {
            self.read_events(&mut *reader, &mut file, &mut uncertain, interrupt, task)?;
        } else {
            self.read_lines(&mut *reader, &mut file, &mut uncertain, interrupt, task)?;
        }
        file.uncertain_pulls = uncertain.len() as u64;
        let Some(last) = file.last else {
            return Ok((file, uncertain.into_iter().collect()));
        };
        for (repository, reference) in &uncertain {
            self.record(uncertain_pull(repository, reference, last));
        }
        Ok((file, Vec::new()))
    }

    /// Reads log lines, unwrapping what collectors wrapped them in.
    fn read_lines(
        &mut self,
        reader: &mut dyn io::BufRead,
        file: &mut PullLogFile,
        uncertain: &mut BTreeSet<(String, String)>,
        interrupt: &Interrupt,
        task: &Task,
    ) -> crate::Result<()> {
        let mut buf = Vec::new();
        let mut peeler = crate::retention::logwrap::Peeler::new();
        loop {
            let cut = match input::next_line(reader, &mut buf) {
                Ok(Some(cut)) => cut,
                Ok(None) => break,
                Err(source) => {
                    return Err(crate::Error::PullLog(PullLogError::ReadAt {
                        path: file.path.clone(),
                        line: file.lines,
                        source,
                    }));
                }
            };
            file.lines += 1;
            if file.lines % 65_536 == 0 {
                task.inc(65_536);
                interrupt.check(Phase::Plan)?;
            }
            if cut {
                let text = String::from_utf8_lossy(&buf);
                file.reject("longer than 1 MiB", &text);
                if let Some(pair) = parse::manifest_reference_anywhere(&text) {
                    uncertain.insert(pair);
                }
                continue;
            }
            if let Some(line) = peeler.plain(&buf) {
                let text = String::from_utf8_lossy(line);
                self.read_payload(file, uncertain, &text, None);
                continue;
            }
            // A collector's record: the registry's line is its payload, and
            // a line the collector split is read once it is whole again.
            if let Some(peeled) = peeler.push(&buf) {
                self.read_payload(file, uncertain, &peeled.payload, peeled.collected);
            }
        }
        // Lines the collector left unfinished are still read.
        while let Some(peeled) = peeler.finish() {
            self.read_payload(file, uncertain, &peeled.payload, peeled.collected);
        }
        file.wrappers = *peeler.counts();
        task.inc(file.lines % 65_536);
        Ok(())
    }

    /// Reads notification events ([`events`]); `file.lines` counts events.
    /// A document that breaks the stream ends the file there: what was read
    /// stays, and every manifest the rest names counts as pulled.
    fn read_events(
        &mut self,
        reader: &mut dyn io::BufRead,
        file: &mut PullLogFile,
        uncertain: &mut BTreeSet<(String, String)>,
        interrupt: &Interrupt,
        task: &Task,
    ) -> crate::Result<()> {
        let mut interrupted = None;
        let mut sink = |item: events::Item, line: u64| {
            file.lines += 1;
            if file.lines % 4096 == 0 {
                task.inc(4096);
                if let Err(e) = interrupt.check(Phase::Plan) {
                    interrupted = Some(e);
                    return false;
                }
            }
            match item {
                events::Item::Event(event) => self.read_event(file, uncertain, &event, line),
                events::Item::NotEvents(value) => file.reject_at(
                    line,
                    "a JSON value that is not an event, an envelope or an array of events",
                    &value.to_string(),
                ),
            }
            true
        };
        let result = events::decode(reader, &mut sink);
        if let Some(e) = interrupted {
            return Err(e);
        }
        task.inc(file.lines % 4096);
        let broken = match result {
            Ok(_) => return Ok(()),
            Err(broken) => broken,
        };
        if broken.error.is_io() {
            return Err(crate::Error::PullLog(PullLogError::ReadAt {
                path: file.path.clone(),
                line: broken.line,
                source: broken.error.into(),
            }));
        }
        uncertain.extend(parse::manifest_references_anywhere(&broken.partial));
        let mut buf = Vec::new();
        let mut more = 0u64;
        loop {
            match input::next_line(reader, &mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(source) => {
                    return Err(crate::Error::PullLog(PullLogError::ReadAt {
                        path: file.path.clone(),
                        line: broken.line + more,
                        source,
                    }));
                }
            }
            more += 1;
            uncertain.extend(parse::manifest_references_anywhere(
                &String::from_utf8_lossy(&buf),
            ));
        }
        file.reject_at(
            broken.line,
            "broken JSON: the rest of the file is not read, and every manifest it names counts as pulled",
            &format!(
                "{}; {} after it: {}",
                broken.error,
                crate::text::counted(more, "more line", "more lines"),
                broken.partial
            ),
        );
        Ok(())
    }

    /// Reads one notification event into `file`'s account and the table.
    fn read_event(
        &mut self,
        file: &mut PullLogFile,
        uncertain: &mut BTreeSet<(String, String)>,
        event: &serde_json::Value,
        line: u64,
    ) {
        let (time, pull, instance, host) = match events::read_event(event) {
            events::Reading::Rejected(reason, named) => {
                file.reject_at(line, reason, &event.to_string());
                uncertain.extend(named);
                return;
            }
            events::Reading::Event {
                time,
                pull,
                instance,
                host,
            } => (time, pull, instance, host),
        };
        *file.formats.entry(events::FORMAT).or_default() += 1;
        file.saw(time);
        note(&mut file.instances, instance.as_deref());
        note(&mut file.hosts, host.as_deref());
        let Some(pull) = pull else {
            return;
        };
        file.pulls += 1;
        let reference = pull.tag.as_deref().or(pull.digest.as_deref());
        let Some(reference) = reference else {
            return;
        };
        self.record(Observation {
            repository: &pull.repository,
            reference,
            time,
            attribute_at: resolved_by(time, None),
            method: pull.method,
            user_agent: pull.user_agent.as_deref(),
            client: pull.client.as_deref(),
            // Pulled by tag, the event also names the manifest served.
            served: pull.tag.as_ref().and(pull.digest.as_deref()),
            response: None,
        });
    }
}

impl Reader<'_> {
    /// Reads one registry log line, which a collector received at
    /// `collected` if it says, into `file`'s account and the table.
    fn read_payload(
        &mut self,
        file: &mut PullLogFile,
        uncertain: &mut BTreeSet<(String, String)>,
        text: &str,
        collected: Option<SystemTime>,
    ) {
        let only = match self.format {
            Some(ForcedFormat::Lines(format)) => Some(format),
            _ => None,
        };
        let parsed = parse::parse_line_in(text, parse::LineContext { collected, only });
        match parsed {
            Parsed::Blank => {}
            Parsed::Rejected(reason) => {
                file.reject(reason, text);
                if let Some(pair) = parse::manifest_reference_anywhere(text) {
                    uncertain.insert(pair);
                }
            }
            Parsed::Line {
                format,
                time,
                request,
                instance,
                host,
                version,
            } => {
                *file.formats.entry(format.name()).or_default() += 1;
                file.saw(time);
                file.saw_instance(instance.as_deref(), time);
                if request.is_some() {
                    if format.is_app_log() {
                        file.app_requests += 1;
                    } else {
                        file.access_requests += 1;
                    }
                }
                note(&mut file.hosts, host.as_deref());
                note(&mut file.versions, version.as_deref());
                let Some((repository, reference, method)) = request.as_ref().and_then(pull_of)
                else {
                    return;
                };
                file.pulls += 1;
                self.record(Observation {
                    repository: &repository,
                    reference: &reference,
                    time,
                    attribute_at: resolved_by(time, request.as_ref().and_then(|r| r.duration)),
                    method,
                    user_agent: request.as_ref().and_then(|r| r.user_agent.as_deref()),
                    client: request.as_ref().and_then(|r| r.client.as_deref()),
                    served: request.as_ref().and_then(|r| r.served.as_deref()),
                    response: request
                        .as_ref()
                        .filter(|r| format.is_app_log() && r.status == 200)
                        .and_then(|r| {
                            let kind = manifest::kind_of_content_type(r.content_type.as_deref()?)?;
                            let bytes = r.size.filter(|n| *n > 0)?;
                            Some(Served { kind, bytes })
                        }),
                });
            }
        }
    }
}

/// A request's line is written when it ends, or with its start to the
/// second; the tag it named was resolved when it began, and a push in that
/// second (or while it ran) must not look older than it. So the tag's
/// history is read this long before the line's time: the request's
/// duration when the line gives it, else a minute, and a second more for
/// one-second times and clocks.
const UNLOGGED_DURATION: Duration = Duration::from_secs(60);

/// The earliest time a request logged at `time`, that took `duration`,
/// may have resolved its tag (see [`UNLOGGED_DURATION`]).
fn resolved_by(time: SystemTime, duration: Option<Duration>) -> SystemTime {
    let before = duration
        .unwrap_or(UNLOGGED_DURATION)
        .saturating_add(Duration::from_secs(1));
    time.checked_sub(before).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn uncertain_pull<'a>(
    repository: &'a str,
    reference: &'a str,
    time: SystemTime,
) -> Observation<'a> {
    Observation {
        repository,
        reference,
        time,
        attribute_at: SystemTime::UNIX_EPOCH,
        method: Method::Unknown,
        user_agent: None,
        client: None,
        served: None,
        response: None,
    }
}

impl PullLogsRead {
    /// The pulls, once the manifests of `index` are read (`manifests`): a
    /// pull by tag whose app-log line gives what was served (its content
    /// type and size) counts for the manifests the tag could have served
    /// that match it, stored as they are or rewritten for an old client
    /// (see [`Served`]); for all of them when none matches, or when a
    /// manifest could not be read.
    pub fn settle(self, index: &Index, manifests: &DigestMap<Loaded>) -> PullLogs {
        let PullLogsRead {
            table,
            narrowable,
            report,
        } = self;
        let mut logs = PullLogs { table, report };
        let mut narrowed = 0;
        for (key, Narrowable { candidates, pull }) in narrowable {
            let fitting: Vec<Digest> = candidates
                .iter()
                .enumerate()
                .filter(|(i, digest)| match manifests.get(*digest) {
                    Some(Ok(refs)) => fits(key.kind, refs.kind, key.same_size & (1 << i) != 0),
                    // Not read: it may have served anything.
                    _ => true,
                })
                .map(|(_, digest)| *digest)
                .collect();
            let chosen: &[Digest] = if fitting.is_empty() {
                &candidates
            } else {
                &fitting
            };
            if chosen.len() < candidates.len() {
                narrowed += 1;
            }
            let Some(repository) = index.repositories.get(key.tag.0 as usize) else {
                continue;
            };
            if let Some(table) = logs.table.repository(&repository.name) {
                for digest in chosen {
                    table.update_digest(*digest, pull.clone(), false);
                }
            }
        }
        logs.report.narrowed = narrowed;
        logs
    }
}

impl PullLogs {
    /// Reads every input of `config`, attributing pulls by tag to the
    /// manifests of `index` they could have served (by the times of the
    /// tags' history entries, from `times`). A pull
    /// named by a line not read, in a file with no time, counts as of the
    /// latest time of any file, or `now`.
    pub fn read(
        config: &PullLogConfig,
        times: HistoryTimes,
        index: &Index,
        now: SystemTime,
        interrupt: &Interrupt,
        task: &Task,
    ) -> crate::Result<PullLogsRead> {
        let sources = input::expand(&config.inputs).map_err(crate::Error::PullLog)?;
        let mut reader = Reader {
            table: PullTable::default(),
            histories: Histories::with_times(times, index),
            ignore_user_agents: &config.ignore_user_agents,
            ignore_clients: &config.ignore_clients,
            ignored: 0,
            format: config.format,
            narrowable: FastMap::default(),
            index,
        };
        let mut files = Vec::new();
        let mut timeless = Vec::new();
        for source in &sources {
            interrupt.check(Phase::Plan)?;
            let ignored_before = reader.ignored;
            let (mut file, pairs) = reader.read(source, interrupt, task)?;
            file.ignored_pulls = reader.ignored - ignored_before;
            files.push(file);
            timeless.extend(pairs);
        }
        let first = files.iter().filter_map(|f| f.first).min();
        let last = files.iter().filter_map(|f| f.last).max();
        for (repository, reference) in &timeless {
            reader.record(uncertain_pull(repository, reference, last.unwrap_or(now)));
        }
        let report = PullLogReport {
            lines: files.iter().map(|f| f.lines).sum(),
            rejected: files.iter().map(|f| f.rejected).sum(),
            pulls: files.iter().map(|f| f.pulls).sum(),
            uncertain_pulls: files.iter().map(|f| f.uncertain_pulls).sum(),
            references: reader.table.named(),
            first,
            last,
            files,
            coverage: None,
            protected_by_digest_pull: 0,
            narrowed: 0,
            top_user_agents: reader.table.top_user_agents(),
        };
        Ok(PullLogsRead {
            table: reader.table,
            narrowable: reader.narrowable,
            report,
        })
    }

    /// What the logs say about `tag` of `repository`.
    pub fn tag_pulls(&self, repository: &str, tag: &Tag) -> TagPulls<'_> {
        TagPulls {
            by_name: self.table.get(repository, &tag.name),
            of_image: tag
                .current
                .and_then(|d| self.table.get_digest(repository, &d)),
        }
    }

    /// The manifests some line pulled by digest at or after `since`, with
    /// their repository: deployments pinned by digest.
    pub fn pulled_by_digest_since(&self, since: SystemTime) -> Vec<(&str, Digest)> {
        let mut pulled: Vec<(&str, Digest)> = self
            .table
            .repositories
            .iter()
            .flat_map(|(repository, table)| {
                table.digests.iter().filter_map(move |(digest, recorded)| {
                    (recorded.named && recorded.pull.time >= since)
                        .then_some((&**repository, *digest))
                })
            })
            .collect();
        pulled.sort();
        pulled
    }

    /// The last pull of `reference` (a tag or `sha256:...`) in `repository`;
    /// for a manifest, by any reference.
    pub fn last_pull(&self, repository: &str, reference: &str) -> Option<&LastPull> {
        self.table.get(repository, reference)
    }
}

impl PullLogs {
    /// Logs that held exactly `pulls`: (repository, reference, pull).
    #[cfg(test)]
    pub(crate) fn from_pulls(pulls: Vec<(&str, &str, LastPull)>) -> PullLogs {
        let mut table = PullTable::default();
        for (repository, reference, pull) in pulls {
            table.update(repository, reference, pull, true);
        }
        PullLogs {
            table,
            report: PullLogReport::default(),
        }
    }

    /// The latest pull a line named in `repository`, with the reference
    /// it named.
    pub fn last_pull_in(&self, repository: &str) -> Option<(Cow<'_, str>, &LastPull)> {
        let table = self.table.repositories.get(repository)?;
        let references = table
            .references
            .iter()
            .map(|(reference, recorded)| (Cow::Borrowed(&**reference), recorded));
        let digests = table
            .digests
            .iter()
            .map(|(digest, recorded)| (Cow::Owned(digest.to_string()), recorded));
        references
            .chain(digests)
            .filter(|(_, recorded)| recorded.named)
            .map(|(reference, recorded)| (reference, &recorded.pull))
            .max_by(|a, b| a.1.time.cmp(&b.1.time).then_with(|| b.0.cmp(&a.0)))
    }
}

fn file_list<'a>(files: impl IntoIterator<Item = &'a PullLogFile>) -> String {
    files
        .into_iter()
        .map(|f| f.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Several replicas write the logs of one registry, each with its own
/// `instance.id` (a new one at every restart). The most instances whose
/// lines run side by side for more than [`MAX_UNCOVERED`] is how many
/// replicas ran; any longer stretch of the window where fewer have lines
/// (but some do) lacks the logs of the others. A restart only swaps one
/// id for the next, and a rolling update's short overlap is too brief to
/// count, so neither is mistaken for a replica. A registry scaled down
/// looks the same, which the message says, and so does a replica that
/// logged nothing for hours between two of its files: a warning, then,
/// never a refusal.
fn replicas_missing(files: &[PullLogFile], from: SystemTime, to: SystemTime) -> Option<Warning> {
    if from >= to {
        return None;
    }
    // Per instance, the spans its lines cover, joined across files.
    let mut spans: BTreeMap<&str, Vec<(SystemTime, SystemTime)>> = BTreeMap::new();
    for file in files {
        for (name, span) in file.instances.iter().zip(&file.instance_spans) {
            spans.entry(name).or_default().push(*span);
        }
    }
    if spans.len() < 2 {
        return None;
    }
    let mut changes: Vec<(SystemTime, i64)> = Vec::new();
    for list in spans.values_mut() {
        list.sort();
        let mut joined: Vec<(SystemTime, SystemTime)> = Vec::new();
        for &(a, b) in list.iter() {
            match joined.last_mut() {
                Some(last) if a <= last.1 + MAX_UNCOVERED => last.1 = last.1.max(b),
                _ => joined.push((a, b)),
            }
        }
        for (a, b) in joined {
            let (a, b) = (a.max(from), b.min(to));
            if a < b {
                changes.push((a, 1));
                changes.push((b, -1));
            }
        }
    }
    changes.sort();
    // Stretches of time with how many instances have lines.
    let mut stretches: Vec<(SystemTime, SystemTime, i64)> = Vec::new();
    let mut running = 0;
    for pair in changes.windows(2) {
        running += pair[0].1;
        if pair[1].0 > pair[0].0 {
            stretches.push((pair[0].0, pair[1].0, running));
        }
    }
    let lasting = |a: SystemTime, b: SystemTime| crate::clock::age(b, a) > MAX_UNCOVERED;
    let replicas = stretches
        .iter()
        .filter(|(a, b, _)| lasting(*a, *b))
        .map(|s| s.2)
        .max()?;
    if replicas < 2 {
        return None;
    }
    let mut short: Vec<(SystemTime, SystemTime)> = Vec::new();
    for &(a, b, n) in &stretches {
        if n == 0 || n >= replicas {
            continue;
        }
        match short.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => short.push((a, b)),
        }
    }
    short.retain(|(a, b)| lasting(*a, *b));
    if short.is_empty() {
        return None;
    }
    let overlaps = |file: &PullLogFile, ranges: &[(SystemTime, SystemTime)]| {
        file.instance_spans
            .iter()
            .any(|(a, b)| ranges.iter().any(|(x, y)| a < y && b > x))
    };
    let thin: Vec<&PullLogFile> = files.iter().filter(|f| overlaps(f, &short)).collect();
    let full_ranges: Vec<(SystemTime, SystemTime)> = stretches
        .iter()
        .filter(|s| s.2 >= replicas)
        .map(|s| (s.0, s.1))
        .collect();
    let full: Vec<&PullLogFile> = files.iter().filter(|f| overlaps(f, &full_ranges)).collect();
    let missing: Vec<String> = short
        .iter()
        .map(|(a, b)| Span::new(*a, *b).to_string())
        .collect();
    let path = thin.first().or(full.first()).map(|f| f.path.clone())?;
    Some(Warning::new(
        WarningKind::PullLogReplicasMissing,
        path,
        None,
        format!(
            "the pull logs show {replicas} registry instances (instance.id) running at once (in {}), but over {} only fewer of them have lines (in {}): the logs of the other replicas over that time seem missing, and pulls they served go unseen (unless the registry ran fewer replicas then); give every replica's logs",
            file_list(full),
            missing.join(", "),
            file_list(thin)
        ),
    ))
}

/// The app log at `log.level: warn` or higher still writes warnings and
/// errors, but no `response completed`: pulls are then only in the access
/// lines, which carry no `instance.id` to tell replicas apart.
fn app_lines_missing(files: &[PullLogFile]) -> Option<Warning> {
    let app_lines = |f: &PullLogFile| {
        f.formats
            .get(parse::Format::AppText.name())
            .copied()
            .unwrap_or(0)
            + f.formats
                .get(parse::Format::AppJson.name())
                .copied()
                .unwrap_or(0)
    };
    let app: Vec<&PullLogFile> = files.iter().filter(|f| app_lines(f) > 0).collect();
    let access: Vec<&PullLogFile> = files.iter().filter(|f| f.access_requests > 0).collect();
    if app.is_empty() || access.is_empty() || files.iter().any(|f| f.app_requests > 0) {
        return None;
    }
    Some(Warning::new(
        WarningKind::PullLogAppLinesMissing,
        app[0].path.clone(),
        None,
        format!(
            "the registry's app log ({}) holds no \"response completed\" line while access lines ({}) record requests: its log.level is warn or higher, so pulls come from the access lines alone; make sure every replica's access log is given (they carry no instance.id, so missing replicas cannot be told)",
            file_list(app),
            file_list(access)
        ),
    ))
}

/// Registry 3.0.x returns from a HEAD of a manifest before anything is
/// written, so its app log has no "response completed" line for it (3.1.0
/// logs it again); the access log still has the request. Without access
/// lines, pulls by HEAD alone (kubelet's `Always`, a docker pull of an image
/// already present) are missing.
fn heads_missing(files: &[PullLogFile]) -> Option<Warning> {
    let is_3_0 = |v: &String| {
        let v = v.strip_prefix('v').unwrap_or(v);
        v == "3.0" || v.starts_with("3.0.") || v.starts_with("3.0-")
    };
    let v3_0: Vec<&PullLogFile> = files
        .iter()
        .filter(|f| f.versions.iter().any(is_3_0))
        .collect();
    if v3_0.is_empty() || files.iter().any(|f| f.access_requests > 0) {
        return None;
    }
    let versions: BTreeSet<&str> = v3_0
        .iter()
        .flat_map(|f| f.versions.iter().filter(|v| is_3_0(v)))
        .map(String::as_str)
        .collect();
    Some(Warning::new(
        WarningKind::PullLogHeadsMissing,
        v3_0[0].path.clone(),
        None,
        format!(
            "the app log ({}) is of registry {}, which logs no \"response completed\" line for a HEAD of a manifest (fixed in 3.1.0): pulls by HEAD alone (kubelet's imagePullPolicy Always, a docker pull of an image already present) are missing from it; give the registry's access log too (its stdout), which records them",
            file_list(v3_0.iter().copied()),
            versions.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ))
}

impl PullLogReport {
    /// Checks that the files together cover `window` back from `now`, for
    /// `rule`, and records it in the report. Unless `assume_complete`, a
    /// part no file covers is refused: over it, "no pull seen" would become
    /// "not pulled".
    pub fn check_coverage(
        &mut self,
        rule: &str,
        window: Age,
        now: SystemTime,
        assume_complete: bool,
    ) -> Result<(), PullLogError> {
        let start = crate::clock::cutoff(now, window.duration());
        let mut spans: Vec<(SystemTime, SystemTime)> = self
            .files
            .iter()
            .filter_map(|f| f.first.zip(f.last))
            .collect();
        spans.sort();
        let mut covered: Vec<(SystemTime, SystemTime)> = Vec::new();
        for (from, to) in spans {
            match covered.last_mut() {
                Some(last) if from <= last.1 + MAX_UNCOVERED => last.1 = last.1.max(to),
                _ => covered.push((from, to)),
            }
        }
        let mut missing = Vec::new();
        let mut reached = start;
        for (from, to) in &covered {
            if *to < start {
                continue;
            }
            if *from > reached {
                missing.push(Span::new(reached, (*from).min(now)));
            }
            reached = reached.max(*to);
        }
        // The hour allowed after the last line is for a quiet registry; logs
        // without a single dated line show nothing, however short the window.
        if covered.is_empty() || reached + MAX_UNCOVERED < now {
            missing.push(Span::new(reached, now));
        }
        let coverage = Coverage {
            rule: rule.to_owned(),
            window: window.to_string(),
            window_seconds: window.as_secs(),
            needed: Span::new(start, now),
            covered: covered.iter().map(|(f, t)| Span::new(*f, *t)).collect(),
            missing,
            assumed_complete: assume_complete,
        };
        let refusal = (!coverage.missing.is_empty() && !assume_complete).then(|| {
            let covered = if coverage.covered.is_empty() {
                "the pull logs hold no line with a time".to_owned()
            } else {
                format!(
                    "the pull logs cover {}",
                    coverage
                        .covered
                        .iter()
                        .map(Span::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let missing: Vec<String> = coverage.missing.iter().map(Span::to_string).collect();
            format!(
                "{covered}, but {rule} looks back to {}: missing {}; over that time a pull would go unseen, so the pull rules are refused (give the logs of that time, a shorter window, or --pull-log-assume-complete to take what the logs show as everything)",
                crate::clock::rfc3339(start),
                missing.join(", ")
            )
        });
        self.coverage = Some(coverage);
        match refusal {
            Some(message) => Err(PullLogError::Incomplete { message }),
            None => Ok(()),
        }
    }

    /// What the logs themselves suggest is missing from them, over the
    /// window starting at `window_start` (or over all they hold) up to
    /// `now`: the logs of some replicas, or the app log's request lines.
    pub fn warnings(&self, window_start: Option<SystemTime>, now: SystemTime) -> Vec<Warning> {
        let files = &self.files;
        let mut warnings = Vec::new();
        let from = window_start.or(self.first);
        let to = self.last.map(|last| last.min(now));
        if let Some((from, to)) = from.zip(to) {
            warnings.extend(replicas_missing(files, from, to));
        }
        warnings.extend(app_lines_missing(files));
        warnings.extend(heads_missing(files));
        warnings
    }

    /// One line for people, then one per file (with `all`, also the lines
    /// not read):
    ///
    /// ```text
    /// Pull logs: 2 files, 1,234 lines, 56 pulls of 12 references, 2026-11-01T00:00:00Z to 2026-12-06T01:00:00Z; 3 lines not read.
    ///   app.log: 1,000 lines (distribution-text 990), 40 pulls, ...
    /// ```
    pub fn write_human(&self, out: &mut impl io::Write, all: bool) -> io::Result<()> {
        use crate::text::{count, counted};
        let span = |first: Option<SystemTime>, last: Option<SystemTime>| match first.zip(last) {
            Some((f, l)) => format!(
                "{} to {}",
                crate::clock::rfc3339(f),
                crate::clock::rfc3339(l)
            ),
            None => "no line with a time".to_owned(),
        };
        write!(
            out,
            "Pull logs: {}, {}, {} of {}, {}",
            counted(self.files.len() as u64, "file", "files"),
            counted(self.lines, "line", "lines"),
            counted(self.pulls, "pull", "pulls"),
            counted(self.references, "reference", "references"),
            span(self.first, self.last)
        )?;
        if self.narrowed > 0 {
            write!(
                out,
                "; {} narrowed by what the app log says was served",
                counted(self.narrowed, "pull by tag", "pulls by tag")
            )?;
        }
        if self.rejected > 0 {
            write!(
                out,
                "; {} not read",
                counted(self.rejected, "line", "lines")
            )?;
        }
        writeln!(out, ".")?;
        for file in &self.files {
            let formats: Vec<String> = file
                .formats
                .iter()
                .map(|(name, n)| format!("{name} {}", count(*n)))
                .collect();
            let wrapped = file.wrappers.describe();
            write!(
                out,
                "  {}{}{}: {} ({}), {}, {}",
                file.path.display(),
                file.compression
                    .map_or(String::new(), |c| format!(" ({c})")),
                if wrapped.is_empty() {
                    String::new()
                } else {
                    format!(" (unwrapped: {wrapped})")
                },
                counted(file.lines, "line", "lines"),
                if formats.is_empty() {
                    "none recognised".to_owned()
                } else {
                    formats.join(", ")
                },
                if file.ignored_pulls > 0 {
                    format!(
                        "{} ({} by an ignored user agent)",
                        counted(file.pulls, "pull", "pulls"),
                        count(file.ignored_pulls)
                    )
                } else {
                    counted(file.pulls, "pull", "pulls")
                },
                span(file.first, file.last)
            )?;
            if file.rejected > 0 {
                write!(
                    out,
                    "; {} not read",
                    counted(file.rejected, "line", "lines")
                )?;
            }
            if file.uncertain_pulls > 0 {
                write!(
                    out,
                    ", {} of which name a manifest, counted as pulled",
                    count(file.uncertain_pulls)
                )?;
            }
            writeln!(out)?;
            if all {
                for sample in &file.rejected_samples {
                    writeln!(
                        out,
                        "    line {}: {}: {}",
                        sample.line, sample.reason, sample.text
                    )?;
                }
            }
        }
        if all && !self.top_user_agents.is_empty() {
            writeln!(out, "  Most frequent user agents per repository:")?;
            for repository in &self.top_user_agents {
                let top: Vec<String> = repository
                    .top
                    .iter()
                    .map(|a| format!("{} ({})", a.user_agent, count(a.pulls)))
                    .collect();
                let others = repository.user_agents - repository.top.len() as u64;
                writeln!(
                    out,
                    "    {}: {} by {}{}",
                    repository.repository,
                    counted(repository.pulls, "pull", "pulls"),
                    top.join(", "),
                    if others > 0 {
                        format!(
                            " and {} more {}",
                            count(others),
                            if others == 1 {
                                "user agent"
                            } else {
                                "user agents"
                            }
                        )
                    } else {
                        String::new()
                    }
                )?;
            }
        }
        if self.protected_by_digest_pull > 0 {
            writeln!(
                out,
                "  Kept as roots: {} pulled by digest within --protect-pulled-within.",
                counted(self.protected_by_digest_pull, "manifest", "manifests")
            )?;
        }
        if let Some(coverage) = &self.coverage {
            if coverage.missing.is_empty() {
                writeln!(
                    out,
                    "  They cover the pull window of {}: {}.",
                    coverage.rule, coverage.needed
                )?;
            } else {
                let missing: Vec<String> = coverage.missing.iter().map(Span::to_string).collect();
                writeln!(
                    out,
                    "  They do not cover the pull window of {} (missing {}); taken as complete (--pull-log-assume-complete): only the pulls they show count.",
                    coverage.rule,
                    missing.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
