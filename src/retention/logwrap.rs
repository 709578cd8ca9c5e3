//! Peels the wrappers log collectors put around each line a registry logs,
//! so that what is left is the registry's own line (its app log or its
//! access log), ready for a payload parser.
//!
//! Each line is recognised by itself, by the shape collectors give it:
//! - Docker's json-file driver: `{"log":"…\n","stream":"stderr","time":"…"}`;
//!   a line longer than 16 KiB is split into records whose `log` lacks the
//!   final `\n`, joined here;
//! - Kubernetes CRI container logs: `<RFC 3339> stderr F <payload>`, where
//!   `P` marks a record the next one of the same stream continues;
//! - `journalctl -o json` (or `json-seq`): `{"MESSAGE":…,"__REALTIME_TIMESTAMP":"<µs>",…}`,
//!   `MESSAGE` being a string or, when not UTF-8, an array of bytes; Docker's
//!   journald driver marks the records of a split line with
//!   `CONTAINER_PARTIAL_MESSAGE=true`;
//! - syslog and `journalctl -o short[-iso|-precise]` prefixes:
//!   `<time> <host> <ident>[<pid>]: <payload>`;
//! - an RFC 3339 timestamp and a space (`docker logs -t`,
//!   `kubectl logs --timestamps`);
//! - `docker compose logs`' service prefix: `registry-1  | <payload>`.
//!
//! A JSON line is a wrapper only when it has the keys of one (`log` and
//! `stream`, or `MESSAGE` and journald's `__REALTIME_TIMESTAMP` or
//! `__CURSOR`): the registry's own JSON formatter writes `msg`, `level` and
//! `time`, and such a line comes back untouched. Wrappers can nest (a
//! timestamp prefix before a syslog line); at most [`MAX_LAYERS`] are peeled.
//!
//! Records of several streams can interleave while a line is split: each
//! stream's partial line waits on its own. A partial line never grows past
//! [`MAX_PENDING_BYTES`] (what there is is emitted, marked truncated), and
//! one whose end never comes is still emitted by [`Peeler::finish`]: bad or
//! truncated input never loses a line.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::bytes::Regex;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::clock;

/// The most a partial line may hold while it waits for its end.
pub const MAX_PENDING_BYTES: usize = 1 << 20;

/// The most streams that may have a partial line waiting at once; a partial
/// record of one more stream is emitted alone.
pub const MAX_PENDING_STREAMS: usize = 32;

/// The most wrappers peeled off one line.
pub const MAX_LAYERS: u8 = 3;

/// What a line was wrapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wrapper {
    /// No wrapper: the line is the payload.
    Plain,
    /// A record of Docker's json-file log driver.
    DockerJsonFile,
    /// A Kubernetes CRI container log record.
    Cri,
    /// A `journalctl -o json` record.
    Journald,
    /// A syslog or `journalctl -o short*` prefix.
    Syslog,
    /// An RFC 3339 timestamp and a space.
    TimestampPrefix,
    /// `docker compose logs`' `<service>  | ` prefix.
    Compose,
}

impl Wrapper {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Wrapper::Plain => "plain",
            Wrapper::DockerJsonFile => "docker_json_file",
            Wrapper::Cri => "cri",
            Wrapper::Journald => "journald",
            Wrapper::Syslog => "syslog",
            Wrapper::TimestampPrefix => "timestamp_prefix",
            Wrapper::Compose => "compose",
        }
    }
}

/// The output stream a collector says the line came from: the registry
/// writes its app log to stderr and its access log to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line with its wrappers peeled off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    /// The registry's own line, without a trailing newline. Bytes that are
    /// not UTF-8 are replaced by U+FFFD.
    pub payload: String,
    /// The outermost wrapper ([`Wrapper::Plain`] when there was none).
    pub wrapper: Wrapper,
    /// How many wrappers were peeled (0 for a plain line).
    pub layers: u8,
    /// The stream the collector names, when it names one.
    pub stream: Option<Stream>,
    /// When the collector received the line (the outermost wrapper's time
    /// that can be read; a classic syslog time has no year and gives none).
    /// For a joined line, the time of its first record.
    pub collected: Option<SystemTime>,
    /// How many records were joined into this line (1 when it was whole).
    pub records: u32,
    /// The line was longer than [`MAX_PENDING_BYTES`] and its end was
    /// dropped, or its end never came.
    pub truncated: bool,
}

/// What a [`Peeler`] has emitted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Lines with no wrapper.
    pub plain: u64,
    /// Lines from Docker json-file records.
    pub docker_json_file: u64,
    /// Lines from CRI records.
    pub cri: u64,
    /// Lines from journald JSON records.
    pub journald: u64,
    /// Lines with a syslog prefix.
    pub syslog: u64,
    /// Lines with a timestamp prefix.
    pub timestamp_prefix: u64,
    /// Lines with a compose service prefix.
    pub compose: u64,
    /// Lines joined from more than one record.
    pub joined: u64,
    /// Lines cut at [`MAX_PENDING_BYTES`].
    pub truncated: u64,
    /// Partial lines emitted before their end came: at the end of input, or
    /// when more than [`MAX_PENDING_STREAMS`] streams had one waiting.
    pub dangling: u64,
}

impl Counts {
    /// Lines emitted.
    pub fn lines(&self) -> u64 {
        self.plain
            + self.docker_json_file
            + self.cri
            + self.journald
            + self.syslog
            + self.timestamp_prefix
            + self.compose
    }

    /// The wrappers seen, in words, for a report: `Docker json-file 3,
    /// CRI 2 (1 joined)`; empty when every line was plain.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = [
            ("Docker json-file", self.docker_json_file),
            ("CRI", self.cri),
            ("journald", self.journald),
            ("syslog", self.syslog),
            ("timestamp prefix", self.timestamp_prefix),
            ("compose", self.compose),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {}", crate::text::count(*n)))
        .collect();
        if parts.is_empty() {
            return String::new();
        }
        for (what, n) in [
            ("joined", self.joined),
            ("truncated", self.truncated),
            ("unfinished", self.dangling),
        ] {
            if n > 0 {
                parts.push(format!("{} {what}", crate::text::count(n)));
            }
        }
        parts.join(", ")
    }

    fn count(&mut self, wrapper: Wrapper) {
        let n = match wrapper {
            Wrapper::Plain => &mut self.plain,
            Wrapper::DockerJsonFile => &mut self.docker_json_file,
            Wrapper::Cri => &mut self.cri,
            Wrapper::Journald => &mut self.journald,
            Wrapper::Syslog => &mut self.syslog,
            Wrapper::TimestampPrefix => &mut self.timestamp_prefix,
            Wrapper::Compose => &mut self.compose,
        };
        *n += 1;
    }
}

/// Peels lines one at a time, joining split lines.
///
/// Feed it the lines of one log file with [`Peeler::push`], then call
/// [`Peeler::finish`] until it returns `None` before the next file: a partial
/// line of one file must not be joined to a record of another.
#[derive(Debug, Default)]
pub struct Peeler {
    pending: Vec<Pending>,
    counts: Counts,
}

/// A split line waiting for its end.
#[derive(Debug)]
struct Pending {
    key: JoinKey,
    bytes: Vec<u8>,
    stream: Option<Stream>,
    collected: Option<SystemTime>,
    records: u32,
    /// Already emitted, truncated: its remaining records are dropped until
    /// the final one.
    discarding: bool,
}

/// The records of one line share this: the wrapper, and the stream within it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JoinKey {
    wrapper: Wrapper,
    stream: String,
}

impl Peeler {
    /// A peeler with nothing pending.
    pub fn new() -> Peeler {
        Peeler::default()
    }

    /// What has been emitted so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Takes one line (a trailing `\n` or `\r\n` is ignored). Returns the
    /// peeled line, or `None` while a split line waits for its next record
    /// (or when the line was already emitted, truncated).
    pub fn push(&mut self, line: &[u8]) -> Option<Peeled> {
        let line = strip_line_end(line);
        let Some(record) = peel_record(line) else {
            return Some(self.emit(Wrapper::Plain, line.to_vec(), None, None, 1, false));
        };
        let Some(key) = record.join_key.clone() else {
            return Some(self.emit_record(record));
        };
        let index = self.pending.iter().position(|p| p.key == key);
        match (index, record.partial) {
            (Some(i), true) => {
                let pending = &mut self.pending[i];
                if pending.discarding {
                    return None;
                }
                pending.records += 1;
                if append_bounded(&mut pending.bytes, &record.payload) {
                    return self.emit_truncated(i);
                }
                None
            }
            (Some(i), false) => {
                let mut pending = self.pending.swap_remove(i);
                if pending.discarding {
                    return None;
                }
                pending.records += 1;
                let truncated = append_bounded(&mut pending.bytes, &record.payload);
                if truncated {
                    self.counts.truncated += 1;
                }
                Some(self.emit_pending(pending, truncated))
            }
            (None, true) if self.pending.len() >= MAX_PENDING_STREAMS => {
                self.counts.dangling += 1;
                let mut peeled = self.emit_record(record);
                peeled.truncated = true;
                Some(peeled)
            }
            (None, true) => {
                let mut bytes = Vec::new();
                let truncated = append_bounded(&mut bytes, &record.payload);
                self.pending.push(Pending {
                    key,
                    bytes,
                    stream: record.stream,
                    collected: record.collected,
                    records: 1,
                    discarding: false,
                });
                if truncated {
                    return self.emit_truncated(self.pending.len() - 1);
                }
                None
            }
            (None, false) => Some(self.emit_record(record)),
        }
    }

    /// The line itself (its line end cut) when it can only be a payload
    /// with no wrapper, counted as [`Wrapper::Plain`]: the registry's app
    /// log in the text formatter (`time="...`), which no collector's record
    /// starts like. The caller reads it in place; otherwise `None`, and the
    /// line goes to [`Peeler::push`].
    pub fn plain<'l>(&mut self, line: &'l [u8]) -> Option<&'l [u8]> {
        if !line.starts_with(b"time=\"") {
            return None;
        }
        self.counts.count(Wrapper::Plain);
        Some(strip_line_end(line))
    }

    /// [`Peeler::push`] for a line already known to be text.
    pub fn push_str(&mut self, line: &str) -> Option<Peeled> {
        self.push(line.as_bytes())
    }

    /// At the end of input: one partial line whose end never came, marked
    /// truncated, or `None` when none is left. Call it until `None`.
    pub fn finish(&mut self) -> Option<Peeled> {
        loop {
            if self.pending.is_empty() {
                return None;
            }
            let pending = self.pending.remove(0);
            if pending.discarding {
                continue;
            }
            self.counts.dangling += 1;
            return Some(self.emit_pending(pending, true));
        }
    }

    /// Emits the pending line at `index`, cut at the bound, and drops its
    /// further records.
    fn emit_truncated(&mut self, index: usize) -> Option<Peeled> {
        self.counts.truncated += 1;
        let pending = &mut self.pending[index];
        pending.discarding = true;
        let peeled = Pending {
            key: pending.key.clone(),
            bytes: std::mem::take(&mut pending.bytes),
            stream: pending.stream,
            collected: pending.collected,
            records: pending.records,
            discarding: false,
        };
        Some(self.emit_pending(peeled, true))
    }

    fn emit_pending(&mut self, pending: Pending, truncated: bool) -> Peeled {
        let mut bytes = pending.bytes;
        if truncated {
            trim_split_char(&mut bytes);
        }
        self.emit(
            pending.key.wrapper,
            bytes,
            pending.stream,
            pending.collected,
            pending.records,
            truncated,
        )
    }

    fn emit_record(&mut self, record: Record<'_>) -> Peeled {
        let wrapper = record.wrapper;
        self.emit(
            wrapper,
            record.payload.into_owned(),
            record.stream,
            record.collected,
            1,
            false,
        )
    }

    /// Peels the inner wrappers of a whole line, and counts it.
    fn emit(
        &mut self,
        wrapper: Wrapper,
        mut payload: Vec<u8>,
        mut stream: Option<Stream>,
        mut collected: Option<SystemTime>,
        records: u32,
        truncated: bool,
    ) -> Peeled {
        let mut layers = u8::from(wrapper != Wrapper::Plain);
        while layers > 0 && layers < MAX_LAYERS {
            let Some(inner) = peel_record(&payload) else {
                break;
            };
            stream = stream.or(inner.stream);
            collected = collected.or(inner.collected);
            payload = inner.payload.into_owned();
            layers += 1;
        }
        self.counts.count(wrapper);
        if records > 1 {
            self.counts.joined += 1;
        }
        let payload = match String::from_utf8(payload) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Peeled {
            payload,
            wrapper,
            layers,
            stream,
            collected,
            records,
            truncated,
        }
    }
}

/// Peels a whole input at once: every line, then what [`Peeler::finish`]
/// leaves.
pub fn peel_all<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Peeled>, Counts) {
    let mut peeler = Peeler::new();
    let mut out: Vec<Peeled> = lines.into_iter().filter_map(|l| peeler.push(l)).collect();
    out.extend(std::iter::from_fn(|| peeler.finish()));
    (out, peeler.counts)
}

/// One record with its outermost wrapper peeled.
#[derive(Debug)]
struct Record<'a> {
    wrapper: Wrapper,
    payload: Cow<'a, [u8]>,
    /// The next record of the same stream continues this one.
    partial: bool,
    /// Where records are joined (`None`: the wrapper never splits lines).
    join_key: Option<JoinKey>,
    stream: Option<Stream>,
    collected: Option<SystemTime>,
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Appends up to the bound; whether anything had to be left out.
fn append_bounded(bytes: &mut Vec<u8>, more: &[u8]) -> bool {
    let room = MAX_PENDING_BYTES.saturating_sub(bytes.len());
    bytes.extend_from_slice(&more[..more.len().min(room)]);
    more.len() > room
}

/// Drops an incomplete UTF-8 sequence the cut left at the end.
fn trim_split_char(bytes: &mut Vec<u8>) {
    if let Err(e) = std::str::from_utf8(bytes) {
        if e.error_len().is_none() {
            bytes.truncate(e.valid_up_to());
        }
    }
}

/// The outermost wrapper of `line`, or `None` when it has none.
fn peel_record(line: &[u8]) -> Option<Record<'_>> {
    match line {
        [b'{', ..] => return peel_json(line),
        // `journalctl -o json-seq` starts each record with RS (RFC 7464).
        [0x1e, b'{', ..] => return peel_json(&line[1..]),
        _ => {}
    }
    peel_cri(line)
        .or_else(|| peel_syslog(line))
        .or_else(|| peel_timestamp_prefix(line))
        .or_else(|| peel_compose(line))
}

fn stream_named(name: &str) -> Option<Stream> {
    match name {
        "stdout" => Some(Stream::Stdout),
        "stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

/// The fields of both JSON wrappers; anything else in the object is skipped.
#[derive(Deserialize)]
struct JsonRecord {
    log: Option<String>,
    stream: Option<String>,
    time: Option<IgnoredOr<String>>,
    #[serde(rename = "MESSAGE", default, deserialize_with = "present")]
    message: Option<Message>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<IgnoredOr<String>>,
    #[serde(rename = "__CURSOR")]
    cursor: Option<IgnoredAny>,
    #[serde(rename = "CONTAINER_PARTIAL_MESSAGE")]
    partial_message: Option<IgnoredOr<String>>,
    #[serde(rename = "CONTAINER_ID")]
    container_id: Option<IgnoredOr<String>>,
    #[serde(rename = "PRIORITY")]
    priority: Option<IgnoredOr<String>>,
}

/// A field read when it has the expected type, and ignored otherwise: a
/// wrapper's optional field of an odd type does not make it a payload.
#[derive(Deserialize)]
#[serde(untagged)]
enum IgnoredOr<T> {
    Value(T),
    #[allow(dead_code)]
    Other(IgnoredAny),
}

impl<T> IgnoredOr<T> {
    fn value(self) -> Option<T> {
        match self {
            IgnoredOr::Value(v) => Some(v),
            IgnoredOr::Other(_) => None,
        }
    }
}

/// journald's `MESSAGE`: text, bytes when it is not UTF-8, several values
/// when the field was set more than once, or `null` when journalctl left out
/// a field larger than 4096 bytes (without `--all`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Message {
    Text(String),
    Bytes(Vec<u8>),
    Several(Vec<Message>),
    Other(IgnoredAny),
}

/// `Some` whenever the field is there, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Message>, D::Error> {
    Message::deserialize(d).map(Some)
}

impl Message {
    fn into_bytes(self) -> Vec<u8> {
        match self {
            Message::Text(text) => text.into_bytes(),
            Message::Bytes(bytes) => bytes,
            Message::Several(values) => values
                .into_iter()
                .next()
                .map(Message::into_bytes)
                .unwrap_or_default(),
            Message::Other(_) => Vec::new(),
        }
    }
}

fn peel_json(line: &[u8]) -> Option<Record<'_>> {
    // Most JSON lines are the registry's own: not parsed twice when no
    // wrapper key can be in them.
    if !contains(line, b"\"log\"") && !contains(line, b"\"MESSAGE\"") {
        return None;
    }
    let record: JsonRecord = serde_json::from_slice(line).ok()?;
    if let (Some(log), Some(stream)) = (record.log, record.stream.as_deref()) {
        let (payload, partial) = match log.strip_suffix('\n') {
            Some(whole) => (whole.to_owned(), false),
            None => (log, true),
        };
        let collected = record
            .time
            .and_then(IgnoredOr::value)
            .and_then(|t| clock::parse_rfc3339(&t));
        return Some(Record {
            wrapper: Wrapper::DockerJsonFile,
            payload: Cow::Owned(payload.into_bytes()),
            partial,
            join_key: Some(JoinKey {
                wrapper: Wrapper::DockerJsonFile,
                stream: stream.to_owned(),
            }),
            stream: stream_named(stream),
            collected,
        });
    }
    let message = record.message?;
    let realtime = record.realtime.map(IgnoredOr::value);
    if realtime.is_none() && record.cursor.is_none() {
        return None;
    }
    let collected = realtime.flatten().and_then(|micros| {
        let micros: u64 = micros.parse().ok()?;
        UNIX_EPOCH.checked_add(Duration::from_micros(micros))
    });
    let partial = record
        .partial_message
        .and_then(IgnoredOr::value)
        .is_some_and(|p| p == "true");
    let container = record.container_id.and_then(IgnoredOr::value);
    let priority = record.priority.and_then(IgnoredOr::value);
    Some(Record {
        wrapper: Wrapper::Journald,
        payload: Cow::Owned(message.into_bytes()),
        partial,
        join_key: Some(JoinKey {
            wrapper: Wrapper::Journald,
            stream: format!(
                "{}\0{}",
                container.unwrap_or_default(),
                priority.unwrap_or_default()
            ),
        }),
        stream: None,
        collected,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `<RFC 3339> <stdout|stderr> <P|F>[:<more tags>] <payload>`, as kubelet
/// reads it (`pkg/kubelet/kuberuntime/logs`): the first tag says whether the
/// line is partial.
static CRI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A([0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]+) (stdout|stderr) ([PF])(?::[^ ]*)?(?: |\z)")
        .expect("CRI pattern")
});

fn peel_cri(line: &[u8]) -> Option<Record<'_>> {
    let caps = CRI.captures(line)?;
    let time = std::str::from_utf8(&caps[1]).ok()?;
    let collected = Some(clock::parse_rfc3339(time)?);
    let stream = std::str::from_utf8(&caps[2]).ok()?;
    let partial = &caps[3] == b"P";
    let end = caps.get(0)?.end();
    Some(Record {
        wrapper: Wrapper::Cri,
        payload: Cow::Borrowed(&line[end..]),
        partial,
        join_key: Some(JoinKey {
            wrapper: Wrapper::Cri,
            stream: stream.to_owned(),
        }),
        stream: stream_named(stream),
        collected,
    })
}

/// `<time> <host> <ident>[<pid>]: <payload>`, the time being ISO 8601
/// (`journalctl -o short-iso[-precise]`, rsyslog's high-precision format) or
/// `Mmm dd HH:MM:SS[.ffffff]` (`journalctl -o short[-precise]`, classic
/// syslog).
static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\A(?:([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2}))|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?) [A-Za-z0-9_.:-]+ [A-Za-z0-9_.@/-]+(?:\[[0-9]+\])?:(?: |\z)",
    )
    .expect("syslog pattern")
});

fn peel_syslog(line: &[u8]) -> Option<Record<'_>> {
    let caps = SYSLOG.captures(line)?;
    let collected = caps
        .get(1)
        .and_then(|t| std::str::from_utf8(t.as_bytes()).ok())
        .and_then(parse_iso_time);
    let end = caps.get(0)?.end();
    Some(Record {
        wrapper: Wrapper::Syslog,
        payload: Cow::Borrowed(&line[end..]),
        partial: false,
        join_key: None,
        stream: None,
        collected,
    })
}

/// RFC 3339, or ISO 8601 with a `+HHMM` offset as journalctl writes it.
fn parse_iso_time(text: &str) -> Option<SystemTime> {
    clock::parse_rfc3339(text).or_else(|| {
        let split = text.len().checked_sub(2)?;
        let (head, minutes) = (text.get(..split)?, text.get(split..)?);
        clock::parse_rfc3339(&format!("{head}:{minutes}"))
    })
}

static TIMESTAMP_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})) ")
        .expect("timestamp pattern")
});

fn peel_timestamp_prefix(line: &[u8]) -> Option<Record<'_>> {
    let caps = TIMESTAMP_PREFIX.captures(line)?;
    let time = std::str::from_utf8(&caps[1]).ok()?;
    let collected = Some(clock::parse_rfc3339(time)?);
    let end = caps.get(0)?.end();
    Some(Record {
        wrapper: Wrapper::TimestampPrefix,
        payload: Cow::Borrowed(&line[end..]),
        partial: false,
        join_key: None,
        stream: None,
        collected,
    })
}

/// `<service>  | `: compose v2 (`registry-1`) and v1 (`registry_1`) pad the
/// name with at least one space. Without a terminal it writes no colours.
static COMPOSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A[A-Za-z0-9][A-Za-z0-9_.-]* +\|(?: |\z)").expect("compose pattern")
});

fn peel_compose(line: &[u8]) -> Option<Record<'_>> {
    let end = COMPOSE.find(line)?.end();
    Some(Record {
        wrapper: Wrapper::Compose,
        payload: Cow::Borrowed(&line[end..]),
        partial: false,
        join_key: None,
        stream: None,
        collected: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Real lines of docker-registry 2.8.2+ds1 (Debian build, go1.19.8) on
    // 127.0.0.1, captured from its stderr (app log) and stdout (access log)
    // while `skopeo copy` (skopeo 1.9.3) pushed library/hello:v1 and
    // `skopeo inspect` pulled it.

    /// Text formatter: the manifest pull.
    const TEXT_MANIFEST_PULL: &str = r#"time="2026-12-06T01:54:37.347869572Z" level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:5871" http.request.id=5719d130-881a-41f2-b9ca-690e022900b5 http.request.method=GET http.request.remoteaddr="127.0.0.1:43714" http.request.uri=/v2/library/hello/manifests/v1 http.request.useragent=skopeo/1.9.3 http.response.contenttype=application/vnd.oci.image.manifest.v1+json http.response.duration=2.02887ms http.response.status=200 http.response.written=418"#;
    /// Text formatter: a duration in µs, the registry's non-ASCII character.
    const TEXT_MICROSECONDS: &str = r#"time="2026-12-06T01:54:37.345280376Z" level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:5871" http.request.id=a53ddfb4-f585-495f-80ce-c889453de3d0 http.request.method=GET http.request.remoteaddr="127.0.0.1:43700" http.request.uri=/v2/ http.request.useragent=skopeo/1.9.3 http.response.contenttype="application/json; charset=utf-8" http.response.duration="946.863µs" http.response.status=200 http.response.written=2"#;
    /// Text formatter: a blob upload's end, with `&` and `%3A` in the URI.
    const TEXT_BLOB_PUT: &str = r#"time="2026-12-06T01:54:37.304783262Z" level=info msg="response completed" go.version=go1.19.8 http.request.contenttype=application/octet-stream http.request.host="127.0.0.1:5871" http.request.id=1179d3aa-e37e-43f2-a4b1-1ddfeb427452 http.request.method=PUT http.request.remoteaddr="127.0.0.1:43644" http.request.uri="/v2/library/hello/blobs/uploads/5f0285a2-bcf1-415e-aa39-6919df1d62b6?_state=BvHs9QCcn5uweIG6NRNf35uy1db3a3-EfmCSGMBMX6l7Ik5hbWUiOiJsaWJyYXJ5L2hlbGxvIiwiVVVJRCI6IjVmMDI4NWEyLWJjZjEtNDE1ZS1hYTM5LTY5MTlkZjFkNjJiNiIsIk9mZnNldCI6MTA3LCJTdGFydGVkQXQiOiIyMDI2LTEyLTA2VDAxOjU0OjM3WiJ9&digest=sha256%3A1e93cf090ac787e2248b4e962d9496cd6ac868a58825a9ee0e318221969db529" http.request.useragent=skopeo/1.9.3 http.response.duration=5.524997ms http.response.status=201 http.response.written=0"#;
    /// JSON formatter (`log.formatter: json`): the manifest pull.
    const JSON_MANIFEST_PULL: &str = r#"{"go.version":"go1.19.8","http.request.host":"127.0.0.1:5872","http.request.id":"09e7b18d-59fb-44ea-b293-4203de2fd3d3","http.request.method":"GET","http.request.remoteaddr":"127.0.0.1:60036","http.request.uri":"/v2/library/hello/manifests/v1","http.request.useragent":"skopeo/1.9.3","http.response.contenttype":"application/vnd.oci.image.manifest.v1+json","http.response.duration":"1.651293ms","http.response.status":200,"http.response.written":418,"level":"info","msg":"response completed","time":"2026-12-06T01:54:39.453688243Z"}"#;
    /// JSON formatter: 2.8 escapes `&` as `\u0026`, which must stay as is.
    const JSON_BLOB_PUT: &str = r#"{"go.version":"go1.19.8","http.request.contenttype":"application/octet-stream","http.request.host":"127.0.0.1:5872","http.request.id":"0a5cb732-568c-48b5-ab7c-86bbdc5e2acc","http.request.method":"PUT","http.request.remoteaddr":"127.0.0.1:59934","http.request.uri":"/v2/library/hello/blobs/uploads/ecb3321b-b896-4528-8c3c-ac6afd9715b9?_state=GXlzqKdagelsE81rPNq2cHu64ubF7wFl8R9R-dgpqY57Ik5hbWUiOiJsaWJyYXJ5L2hlbGxvIiwiVVVJRCI6ImVjYjMzMjFiLWI4OTYtNDUyOC04YzNjLWFjNmFmZDk3MTViOSIsIk9mZnNldCI6MTA3LCJTdGFydGVkQXQiOiIyMDI2LTEyLTA2VDAxOjU0OjM5WiJ9\u0026digest=sha256%3A1e93cf090ac787e2248b4e962d9496cd6ac868a58825a9ee0e318221969db529","http.request.useragent":"skopeo/1.9.3","http.response.duration":"3.530787ms","http.response.status":201,"http.response.written":0,"level":"info","msg":"response completed","time":"2026-12-06T01:54:39.408464286Z"}"#;
    /// Access log (stdout, combined format): the manifest pull.
    const ACCESS_MANIFEST_PULL: &str = r#"127.0.0.1 - - [06/Dec/2026:01:54:37 +0000] "GET /v2/library/hello/manifests/v1 HTTP/1.1" 200 418 "" "skopeo/1.9.3""#;

    const REAL_LINES: [&str; 6] = [
        TEXT_MANIFEST_PULL,
        TEXT_MICROSECONDS,
        TEXT_BLOB_PUT,
        JSON_MANIFEST_PULL,
        JSON_BLOB_PUT,
        ACCESS_MANIFEST_PULL,
    ];

    const COLLECTED: &str = "2026-12-06T01:54:37.348012345Z";

    fn at(rfc3339: &str) -> Option<SystemTime> {
        Some(clock::parse_rfc3339(rfc3339).unwrap())
    }

    fn stream_of(line: &str) -> &'static str {
        if line == ACCESS_MANIFEST_PULL {
            "stdout"
        } else {
            "stderr"
        }
    }

    /// A JSON string as moby's json-file driver writes it
    /// (`daemon/logger/jsonfilelog/jsonlog`): Go's encoding, which also
    /// escapes `<`, `>` and `&`.
    fn docker_string(text: &str) -> String {
        let mut out = String::from('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// The json-file records of one line: split into pieces of at most
    /// `chunk` bytes (16 KiB in Docker), the last one ending in `\n`.
    fn docker_records(payload: &str, stream: &str, chunk: usize) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut rest = payload;
        while rest.len() > chunk {
            let mut cut = chunk;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == 0 {
                cut = rest.chars().next().map_or(1, char::len_utf8);
            }
            pieces.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        pieces.push(format!("{rest}\n"));
        pieces
            .iter()
            .map(|piece| {
                format!(
                    r#"{{"log":{},"stream":"{stream}","time":"{COLLECTED}"}}"#,
                    docker_string(piece)
                )
            })
            .collect()
    }

    /// The CRI records of one line cut at the byte offsets `cuts` (which
    /// may fall inside a UTF-8 character, as the runtime cuts bytes).
    fn cri_records(payload: &[u8], stream: &str, cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(payload.len());
        bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let tag = if i + 2 == bounds.len() { "F" } else { "P" };
                let mut record = format!("{COLLECTED} {stream} {tag} ").into_bytes();
                record.extend_from_slice(&payload[w[0]..w[1]]);
                record
            })
            .collect()
    }

    /// A `journalctl -o json` record of the Debian `docker-registry.service`.
    fn journald_record(message: serde_json::Value, extra: &[(&str, &str)]) -> String {
        let mut record = serde_json::json!({
            "__CURSOR": "s=2f1c;i=1a2b;b=9e0f;m=3b9aca00;t=62a8b1e4c6f40;x=77",
            "__REALTIME_TIMESTAMP": "1765000000123456",
            "__MONOTONIC_TIMESTAMP": "1000000000",
            "_BOOT_ID": "9e0f0e4c2b3a4d5e8f7a6b5c4d3e2f10",
            "PRIORITY": "6",
            "SYSLOG_FACILITY": "3",
            "SYSLOG_IDENTIFIER": "docker-registry",
            "_PID": "4242",
            "_COMM": "docker-registry",
            "_SYSTEMD_UNIT": "docker-registry.service",
            "MESSAGE": message,
        });
        for (k, v) in extra {
            record[*k] = serde_json::Value::from(*v);
        }
        record.to_string()
    }

    fn push_all(peeler: &mut Peeler, records: &[impl AsRef<[u8]>]) -> Vec<Peeled> {
        let mut out: Vec<Peeled> = records
            .iter()
            .filter_map(|r| peeler.push(r.as_ref()))
            .collect();
        out.extend(std::iter::from_fn(|| peeler.finish()));
        out
    }

    fn peel_one(line: &str) -> Peeled {
        let mut out = push_all(&mut Peeler::new(), &[line]);
        assert_eq!(out.len(), 1, "one line out of {line:?}");
        out.remove(0)
    }

    #[test]
    fn real_registry_lines_without_wrapper_come_back_plain_and_untouched() {
        for line in REAL_LINES {
            let peeled = peel_one(line);
            assert_eq!(peeled.payload, line);
            assert_eq!(peeled.wrapper, Wrapper::Plain);
            assert_eq!((peeled.layers, peeled.records), (0, 1));
            assert_eq!((peeled.collected, peeled.stream), (None, None));
            assert!(!peeled.truncated);
        }
        // `\u0026` of the JSON formatter is not unescaped.
        assert!(peel_one(JSON_BLOB_PUT).payload.contains(r"\u0026digest="));
    }

    #[test]
    fn the_fast_path_for_text_app_lines_gives_what_push_gives() {
        let mut fast = Peeler::new();
        let mut slow = Peeler::new();
        let mut taken = 0;
        for line in REAL_LINES {
            let with_end = format!("{line}\r\n");
            let pushed = slow.push(with_end.as_bytes()).expect("a whole line");
            match fast.plain(with_end.as_bytes()) {
                Some(plain) => {
                    taken += 1;
                    assert_eq!(plain, pushed.payload.as_bytes());
                    assert_eq!(pushed.wrapper, Wrapper::Plain);
                }
                None => {
                    assert!(!line.starts_with("time="), "{line}");
                    fast.push(with_end.as_bytes());
                }
            }
        }
        assert!(taken > 0, "some real lines are text app lines");
        assert_eq!(fast.counts(), slow.counts());
        // A collector's record never starts like one.
        let mut peeler = Peeler::new();
        for record in [
            r#"{"log":"time=\"x\"\n","stream":"stderr","time":"2024-05-01T10:00:00Z"}"#,
            "2024-05-01T10:00:00.1Z stderr F time=\"x\"",
        ] {
            assert_eq!(peeler.plain(record.as_bytes()), None, "{record}");
        }
    }

    #[test]
    fn json_lines_without_wrapper_keys_are_payloads() {
        for line in [
            // A `log` key, but no `stream`.
            r#"{"log":"x\n","time":"2026-12-06T01:54:37Z"}"#,
            // `log` and `stream` of the wrong types.
            r#"{"log":1,"stream":"stderr"}"#,
            r#"{"log":"x\n","stream":2}"#,
            // `MESSAGE` without journald's own keys.
            r#"{"MESSAGE":"x","msg":"response completed"}"#,
            // Not JSON after all.
            r#"{"log":"x\n","stream":"stderr","#,
            // A duplicate key: not something either collector writes.
            r#"{"log":"a\n","log":"b\n","stream":"stderr"}"#,
        ] {
            let peeled = peel_one(line);
            assert_eq!(
                (peeled.wrapper, peeled.payload.as_str()),
                (Wrapper::Plain, line)
            );
        }
    }

    #[test]
    fn docker_json_file_records_round_trip_to_the_exact_line() {
        for line in REAL_LINES {
            let records = docker_records(line, stream_of(line), 16 * 1024);
            assert_eq!(records.len(), 1);
            let peeled = peel_one(&records[0]);
            assert_eq!(peeled.payload, line, "from {}", records[0]);
            assert_eq!(peeled.wrapper, Wrapper::DockerJsonFile);
            assert_eq!(peeled.layers, 1);
            assert_eq!(peeled.collected, at(COLLECTED));
            let stream = if line == ACCESS_MANIFEST_PULL {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            assert_eq!(peeled.stream, Some(stream));
        }
        // What the escaping looks like, for the record.
        let record = &docker_records(TEXT_BLOB_PUT, "stderr", 16 * 1024)[0];
        assert!(record.contains(r#"\"127.0.0.1:5871\""#) && record.contains(r"\u0026digest="));
        assert!(record.contains(r#"\n","stream":"stderr""#));
    }

    #[test]
    fn docker_json_file_joins_a_line_split_at_16k_across_stdout_records() {
        // A user agent of 40 000 bytes makes a line Docker splits in three.
        let long_agent = format!("skopeo/1.9.3 {}µ", "x".repeat(40_000));
        let long = TEXT_MANIFEST_PULL.replace("skopeo/1.9.3", &format!("\"{long_agent}\""));
        let parts = docker_records(&long, "stderr", 16 * 1024);
        assert_eq!(parts.len(), 3);
        let access = &docker_records(ACCESS_MANIFEST_PULL, "stdout", 16 * 1024)[0];
        let records = [&parts[0], access, &parts[1], access, &parts[2]];
        let out = push_all(&mut Peeler::new(), &records);
        let payloads: Vec<&str> = out.iter().map(|p| p.payload.as_str()).collect();
        assert_eq!(
            payloads,
            [ACCESS_MANIFEST_PULL, ACCESS_MANIFEST_PULL, long.as_str()]
        );
        assert_eq!((out[2].records, out[2].truncated), (3, false));
        assert_eq!(out[2].stream, Some(Stream::Stderr));
    }

    #[test]
    fn cri_records_split_at_every_byte_join_to_the_exact_line() {
        // Every cut, including the two inside `µ`.
        let line = TEXT_MICROSECONDS.as_bytes();
        let micro = TEXT_MICROSECONDS.find('µ').unwrap();
        for cut in 0..=line.len() {
            let records = cri_records(line, "stderr", &[cut]);
            let out = push_all(&mut Peeler::new(), &records);
            assert_eq!(out.len(), 1, "cut at {cut}");
            assert_eq!(out[0].payload, TEXT_MICROSECONDS, "cut at {cut}");
            assert_eq!((out[0].wrapper, out[0].records), (Wrapper::Cri, 2));
            assert_eq!(out[0].collected, at(COLLECTED));
            assert_eq!(out[0].stream, Some(Stream::Stderr));
        }
        let records = cri_records(line, "stderr", &[micro + 1, micro + 2, line.len()]);
        assert_eq!(
            push_all(&mut Peeler::new(), &records)[0].payload,
            TEXT_MICROSECONDS
        );
    }

    #[test]
    fn cri_records_of_real_lines_round_trip_whole() {
        for line in REAL_LINES {
            let records = cri_records(line.as_bytes(), stream_of(line), &[]);
            let peeled = peel_one(std::str::from_utf8(&records[0]).unwrap());
            assert_eq!(peeled.payload, line);
            assert_eq!((peeled.wrapper, peeled.layers), (Wrapper::Cri, 1));
        }
        // An empty line, with and without the space after the tag; and a
        // tag with more after a colon.
        for record in [
            format!("{COLLECTED} stdout F "),
            format!("{COLLECTED} stdout F"),
        ] {
            let peeled = peel_one(&record);
            assert_eq!(
                (peeled.wrapper, peeled.payload.as_str()),
                (Wrapper::Cri, "")
            );
        }
        let tagged = format!("{COLLECTED} stderr F:x {TEXT_MANIFEST_PULL}");
        assert_eq!(peel_one(&tagged).payload, TEXT_MANIFEST_PULL);
    }

    #[test]
    fn partial_lines_are_joined_across_interleaved_cri_streams() {
        let text = TEXT_BLOB_PUT.as_bytes();
        let parts = cri_records(text, "stderr", &[100, 500]);
        let access = cri_records(ACCESS_MANIFEST_PULL.as_bytes(), "stdout", &[]);
        let access_split = cri_records(ACCESS_MANIFEST_PULL.as_bytes(), "stdout", &[30]);
        let records = [
            &parts[0],
            &access[0],
            &parts[1],
            &access_split[0],
            &parts[2],
            &access_split[1],
        ];
        let mut peeler = Peeler::new();
        let out = push_all(&mut peeler, &records);
        let got: Vec<(&str, Option<Stream>, u32)> = out
            .iter()
            .map(|p| (p.payload.as_str(), p.stream, p.records))
            .collect();
        assert_eq!(
            got,
            [
                (ACCESS_MANIFEST_PULL, Some(Stream::Stdout), 1),
                (TEXT_BLOB_PUT, Some(Stream::Stderr), 3),
                (ACCESS_MANIFEST_PULL, Some(Stream::Stdout), 2),
            ]
        );
        assert_eq!(peeler.counts().cri, 3);
        assert_eq!(peeler.counts().joined, 2);
        assert_eq!(peeler.counts().dangling, 0);
    }

    #[test]
    fn journald_json_records_round_trip_and_give_their_time() {
        let expected = UNIX_EPOCH.checked_add(Duration::from_micros(1_765_000_000_123_456));
        for line in REAL_LINES {
            let record = journald_record(serde_json::Value::from(line), &[]);
            let peeled = peel_one(&record);
            assert_eq!(peeled.payload, line);
            assert_eq!((peeled.wrapper, peeled.layers), (Wrapper::Journald, 1));
            assert_eq!(peeled.collected, expected);
        }
        // Not UTF-8: journalctl writes the bytes; what is not UTF-8 becomes
        // U+FFFD and the rest is kept.
        let mut bytes = TEXT_MANIFEST_PULL.as_bytes().to_vec();
        bytes.extend_from_slice(b" extra=\xff");
        let record = journald_record(serde_json::Value::from(bytes), &[]);
        let peeled = peel_one(&record);
        assert_eq!(
            peeled.payload,
            format!("{TEXT_MANIFEST_PULL} extra=\u{fffd}")
        );
        // `-o json-seq`.
        let peeled = peel_one(&format!("\u{1e}{record}"));
        assert_eq!(
            (peeled.wrapper, peeled.payload.len()),
            (Wrapper::Journald, TEXT_MANIFEST_PULL.len() + 10)
        );
        // A field journalctl left out as too large: an empty payload, still
        // a journald line.
        let peeled = peel_one(&journald_record(serde_json::Value::Null, &[]));
        assert_eq!(
            (peeled.wrapper, peeled.payload.as_str()),
            (Wrapper::Journald, "")
        );
    }

    #[test]
    fn journald_partial_messages_of_docker_are_joined_per_container() {
        let (head, tail) = TEXT_MANIFEST_PULL.split_at(200);
        let partial = [
            ("CONTAINER_ID", "0123456789ab"),
            ("CONTAINER_PARTIAL_MESSAGE", "true"),
        ];
        let other = [("CONTAINER_ID", "ba9876543210")];
        let records = [
            journald_record(head.into(), &partial),
            journald_record(ACCESS_MANIFEST_PULL.into(), &other),
            journald_record(tail.into(), &[("CONTAINER_ID", "0123456789ab")]),
        ];
        let out = push_all(&mut Peeler::new(), &records);
        let payloads: Vec<&str> = out.iter().map(|p| p.payload.as_str()).collect();
        assert_eq!(payloads, [ACCESS_MANIFEST_PULL, TEXT_MANIFEST_PULL]);
        assert_eq!(out[1].records, 2);
    }

    #[test]
    fn syslog_and_journalctl_short_prefixes_are_peeled() {
        let cases = [
            (
                "2026-12-06T01:54:37+0000 reghost docker-registry[4242]: ",
                at("2026-12-06T01:54:37Z"),
            ),
            (
                "2026-12-06T01:54:37.347901+00:00 reghost docker-registry[4242]: ",
                at("2026-12-06T01:54:37.347901Z"),
            ),
            ("Dec  6 01:54:37 reghost docker-registry[4242]: ", None),
            (
                "Dec 06 01:54:37.347901 reghost docker-registry[4242]: ",
                None,
            ),
            ("Dec  6 01:54:37 reghost registry: ", None),
        ];
        for line in REAL_LINES {
            for (prefix, collected) in &cases {
                let peeled = peel_one(&format!("{prefix}{line}"));
                assert_eq!(peeled.payload, line, "after {prefix:?}");
                assert_eq!(peeled.wrapper, Wrapper::Syslog);
                assert_eq!(peeled.collected, *collected, "{prefix:?}");
            }
        }
    }

    #[test]
    fn timestamp_prefixes_are_peeled() {
        for line in REAL_LINES {
            for (prefix, time) in [
                (
                    "2026-12-06T01:54:37.348012345Z ",
                    "2026-12-06T01:54:37.348012345Z",
                ),
                ("2026-12-06T02:54:37+01:00 ", "2026-12-06T01:54:37Z"),
            ] {
                let peeled = peel_one(&format!("{prefix}{line}"));
                assert_eq!(peeled.payload, line);
                assert_eq!(peeled.wrapper, Wrapper::TimestampPrefix);
                assert_eq!(peeled.collected, at(time));
            }
        }
        // Not a time after all: left alone.
        let peeled = peel_one("2026-13-45T99:00:00Z not a time");
        assert_eq!(peeled.wrapper, Wrapper::Plain);
    }

    #[test]
    fn compose_prefixes_are_peeled_and_their_timestamps_read() {
        for line in REAL_LINES {
            for prefix in ["registry-1  | ", "registry_1    | ", "r |"] {
                let text = format!("{prefix}{line}");
                let peeled = peel_one(&text);
                let expected = if prefix.ends_with(' ') {
                    line.to_owned()
                } else {
                    // `|` directly followed by the payload is not compose's.
                    text.clone()
                };
                assert_eq!(peeled.payload, expected);
            }
            // `docker compose logs -t`: the time follows the service name.
            let peeled = peel_one(&format!("registry-1  | {COLLECTED} {line}"));
            assert_eq!(peeled.payload, line);
            assert_eq!((peeled.wrapper, peeled.layers), (Wrapper::Compose, 2));
            assert_eq!(peeled.collected, at(COLLECTED));
        }
    }

    #[test]
    fn nested_wrappers_are_peeled_down_to_the_registry_line() {
        // `kubectl logs --timestamps` of a pod whose output is a syslog
        // stream, and a CRI record of the JSON formatter's line.
        let nested =
            format!("{COLLECTED} Dec  6 01:54:37 reghost docker-registry[1]: {TEXT_MANIFEST_PULL}");
        let peeled = peel_one(&nested);
        assert_eq!(peeled.payload, TEXT_MANIFEST_PULL);
        assert_eq!(
            (peeled.wrapper, peeled.layers),
            (Wrapper::TimestampPrefix, 2)
        );
        assert_eq!(peeled.collected, at(COLLECTED));

        let cri = format!("{COLLECTED} stderr F {JSON_BLOB_PUT}");
        let peeled = peel_one(&cri);
        assert_eq!(peeled.payload, JSON_BLOB_PUT);
        assert_eq!((peeled.wrapper, peeled.layers), (Wrapper::Cri, 1));

        // journald's MESSAGE holding the JSON formatter's line.
        let record = journald_record(JSON_MANIFEST_PULL.into(), &[]);
        let peeled = peel_one(&record);
        assert_eq!(
            (peeled.payload.as_str(), peeled.layers),
            (JSON_MANIFEST_PULL, 1)
        );

        // No more than MAX_LAYERS.
        let deep = format!("{COLLECTED} {COLLECTED} {COLLECTED} {COLLECTED} x");
        let peeled = peel_one(&deep);
        assert_eq!(peeled.layers, MAX_LAYERS);
        assert_eq!(peeled.payload, format!("{COLLECTED} x"));
    }

    #[test]
    fn truncated_input_still_yields_its_line() {
        // A CRI partial whose end never came.
        let (head, _) = TEXT_MICROSECONDS.as_bytes().split_at(300);
        let mut record = format!("{COLLECTED} stderr P ").into_bytes();
        record.extend_from_slice(head);
        let mut peeler = Peeler::new();
        assert_eq!(peeler.push(&record), None);
        let dangling = peeler.finish().expect("the partial line");
        assert_eq!(dangling.payload.as_bytes(), head);
        assert!(dangling.truncated);
        assert_eq!(peeler.finish(), None);
        assert_eq!(peeler.counts().dangling, 1);
        assert_eq!(peeler.counts().cri, 1);

        // A json-file record without its `\n`, then a cut in the middle of
        // a record: the first is still a line, the second comes back as is.
        let record = docker_records(TEXT_MANIFEST_PULL, "stderr", 16 * 1024).remove(0);
        let unfinished = record.replace(r#"\n","stream""#, r#"","stream""#);
        let cut = &record[..record.len() / 2];
        let out = push_all(&mut Peeler::new(), &[unfinished.as_str(), cut]);
        let got: Vec<(&str, Wrapper, bool)> = out
            .iter()
            .map(|p| (p.payload.as_str(), p.wrapper, p.truncated))
            .collect();
        assert_eq!(
            got,
            [
                (cut, Wrapper::Plain, false),
                (TEXT_MANIFEST_PULL, Wrapper::DockerJsonFile, true),
            ]
        );
    }

    #[test]
    fn a_partial_line_is_emitted_once_at_the_memory_bound() {
        // `a` then `µ`s: the bound falls inside a `µ`, which is left out.
        let mut body = String::from("a");
        while body.len() < MAX_PENDING_BYTES + 100_000 {
            body.push('µ');
        }
        // The bound crossed by a partial record (the final one is then
        // dropped), and by the final record.
        for cuts in [&[400_000, 800_000, 1_100_000][..], &[400_000, 800_000][..]] {
            let records = cri_records(body.as_bytes(), "stderr", cuts);
            let mut peeler = Peeler::new();
            let mut out = Vec::new();
            for (i, record) in records.iter().enumerate() {
                if let Some(p) = peeler.push(record) {
                    out.push((i, p));
                }
            }
            assert_eq!(out.len(), 1, "{cuts:?}");
            let (at_record, peeled) = &out[0];
            assert_eq!(*at_record, 2, "emitted when the bound is reached");
            assert!(peeled.truncated);
            assert_eq!(peeled.records, 3);
            assert_eq!(peeled.payload.len(), MAX_PENDING_BYTES - 1);
            assert!(body.starts_with(&peeled.payload));
            assert_eq!(peeler.finish(), None, "the rest of the line is dropped");
            assert_eq!(peeler.counts().truncated, 1);
            assert_eq!(peeler.counts().dangling, 0);
            // The stream goes on normally.
            let next = cri_records(TEXT_MANIFEST_PULL.as_bytes(), "stderr", &[]);
            assert_eq!(peeler.push(&next[0]).unwrap().payload, TEXT_MANIFEST_PULL);
        }
    }

    #[test]
    fn partial_lines_of_too_many_streams_are_emitted_alone() {
        let mut peeler = Peeler::new();
        for i in 0..MAX_PENDING_STREAMS {
            let id = format!("{i:012}");
            let record = journald_record(
                "head".into(),
                &[("CONTAINER_ID", &id), ("CONTAINER_PARTIAL_MESSAGE", "true")],
            );
            assert_eq!(peeler.push(record.as_bytes()), None);
        }
        let record = journald_record(
            "alone".into(),
            &[("CONTAINER_ID", "x"), ("CONTAINER_PARTIAL_MESSAGE", "true")],
        );
        let peeled = peeler.push(record.as_bytes()).expect("emitted alone");
        assert_eq!((peeled.payload.as_str(), peeled.truncated), ("alone", true));
        let rest: Vec<Peeled> = std::iter::from_fn(|| peeler.finish()).collect();
        assert_eq!(rest.len(), MAX_PENDING_STREAMS);
        assert_eq!(peeler.counts().dangling, MAX_PENDING_STREAMS as u64 + 1);
    }

    #[test]
    fn counts_name_each_wrapper_once_per_line() {
        let docker = docker_records(TEXT_MANIFEST_PULL, "stderr", 100);
        let mut records: Vec<String> = docker.clone();
        records.push(format!("{COLLECTED} stdout F {ACCESS_MANIFEST_PULL}"));
        records.push(journald_record(TEXT_MANIFEST_PULL.into(), &[]));
        records.push(format!("Dec  6 01:54:37 h r[1]: {TEXT_MANIFEST_PULL}"));
        records.push(format!("{COLLECTED} {TEXT_MANIFEST_PULL}"));
        records.push(format!("{JSON_MANIFEST_PULL}\r\n"));
        records.push(format!("registry-1  | {ACCESS_MANIFEST_PULL}"));
        let (out, counts) = peel_all(records.iter().map(|r| r.as_bytes()));
        assert_eq!(out.len(), 7);
        assert_eq!(out[5].payload, JSON_MANIFEST_PULL, "CRLF dropped");
        let expected = Counts {
            plain: 1,
            docker_json_file: 1,
            cri: 1,
            journald: 1,
            syslog: 1,
            timestamp_prefix: 1,
            compose: 1,
            joined: 1,
            truncated: 0,
            dangling: 0,
        };
        assert_eq!(counts, expected);
        assert_eq!(counts.lines(), 7);
        assert_eq!(out[0].records as usize, docker.len());
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(lines in proptest::collection::vec(".*", 0..8)) {
            let mut peeler = Peeler::new();
            let mut emitted = 0u64;
            for line in &lines {
                emitted += u64::from(peeler.push_str(line).is_some());
            }
            while peeler.finish().is_some() {
                emitted += 1;
            }
            prop_assert_eq!(emitted, peeler.counts().lines());
        }

        #[test]
        fn arbitrary_bytes_never_panic(lines in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 0..8)
        ) {
            let (out, counts) = peel_all(lines.iter().map(|l| l.as_slice()));
            prop_assert_eq!(out.len() as u64, counts.lines());
        }

        #[test]
        fn wrapper_shaped_garbage_never_panics(
            stream in "(stdout|stderr|x)",
            tag in "(P|F|P:.*|F:x|Q)",
            payload in ".*",
            json in r#"\{"(log|MESSAGE|__CURSOR|stream)":.{0,20}(,"(stream|__REALTIME_TIMESTAMP|CONTAINER_PARTIAL_MESSAGE)":.{0,20})?\}"#,
        ) {
            let lines = [
                format!("{COLLECTED} {stream} {tag} {payload}"),
                json,
                format!("Dec  6 01:54:37 h r[1]: {payload}"),
            ];
            let (out, counts) = peel_all(lines.iter().map(|l| l.as_bytes()));
            prop_assert_eq!(out.len() as u64, counts.lines());
        }

        #[test]
        fn cri_splits_join_to_the_original(
            payload in "[^\n\r]*",
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let bytes = payload.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let records = cri_records(bytes, "stderr", &cuts);
            let (out, _) = peel_all(records.iter().map(|r| r.as_slice()));
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(&out[0].payload, &payload);
        }

        #[test]
        fn docker_records_join_to_the_original(
            payload in "[^\n]*",
            chunk in 1usize..64,
        ) {
            let records = docker_records(&payload, "stdout", chunk);
            let (out, _) = peel_all(records.iter().map(|r| r.as_bytes()));
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(&out[0].payload, &payload);
        }
    }
}
