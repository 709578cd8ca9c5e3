//! One line of a registry log, recognised by its shape: the registry's app
//! log in logrus' text or JSON formatter, or a combined-format access line
//! (the registry's own access log, nginx, Apache).
//!
//! Every line that has a time of its own counts towards the time the log
//! covers, whatever it says; a completed request is also returned, for the
//! caller to decide whether it is a pull. A line of no known shape is
//! rejected with a reason, never guessed at.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde_json::{Map, Value};

/// The payload formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// The registry's app log, logrus text formatter (the default):
    /// `time="..." level=info msg="response completed" http.request.uri=...`.
    AppText,
    /// The registry's app log with `log.formatter: json`.
    AppJson,
    /// A combined-format access line: the registry's access log (stdout),
    /// nginx or Apache.
    Combined,
}

impl Format {
    /// How reports name the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::AppText => "distribution-text",
            Format::AppJson => "distribution-json",
            Format::Combined => "combined",
        }
    }
}

/// A completed HTTP request, as one line records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `HEAD`, ...
    pub method: Cow<'a, str>,
    /// The request URI, query included.
    pub uri: Cow<'a, str>,
    /// The response status.
    pub status: u16,
    /// The client's `User-Agent`, when logged and not empty.
    pub user_agent: Option<Cow<'a, str>>,
    /// The client's address as logged (`http.request.remoteaddr`, an access
    /// line's first field): `10.0.0.7:51234`, `[::1]:5000`, `10.0.0.7`.
    pub client: Option<Cow<'a, str>>,
}

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Nothing but whitespace.
    Blank,
    /// A line of a known format.
    Line {
        /// Which.
        format: Format,
        /// Its time: the app log's completion time, or the end of the
        /// second an access line names (they have one-second resolution).
        time: SystemTime,
        /// The request it records, for a completed request.
        request: Option<Request<'a>>,
        /// The registry instance that wrote it (`instance.id`, v3 and JSON
        /// logs), when named.
        instance: Option<Cow<'a, str>>,
        /// The host the request named (`http.request.host`).
        host: Option<Cow<'a, str>>,
    },
    /// A line of no known format, or of a known one that cannot be read.
    Rejected(&'static str),
}

/// Reads one line (without its line end).
pub fn parse_line(line: &str) -> Parsed<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim_start();
    if trimmed.is_empty() {
        return Parsed::Blank;
    }
    if trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    if trimmed.starts_with("time=") {
        return parse_text(trimmed);
    }
    if TTY.is_match(trimmed) {
        return Parsed::Rejected(
            "logrus terminal format (INFO[0042]): no absolute time; run the registry without a terminal, or give the log with its own timestamps",
        );
    }
    if let Some(parsed) = parse_combined(trimmed) {
        return parsed;
    }
    Parsed::Rejected("not a registry app log or combined-format access line")
}

/// `INFO[0042] ...`: logrus' format when stderr is a terminal.
static TTY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:DEBU|INFO|WARN|ERRO|FATA|PANI|TRAC)\[[0-9]+\] ").expect("valid regex")
});

/// `msg` of the line logged once per request answered 200 to 399.
const RESPONSE_COMPLETED: &str = "response completed";

/// The request a "response completed" line records, from its fields in
/// either formatter; a line without one of them is rejected.
fn completed<'a>(
    method: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    status: Option<u16>,
    user_agent: Option<Cow<'a, str>>,
) -> Result<Request<'a>, &'static str> {
    let (Some(method), Some(uri), Some(status)) = (method, uri, status) else {
        return Err(
            "\"response completed\" without http.request.method, http.request.uri or http.response.status",
        );
    };
    Ok(Request {
        method,
        uri,
        status,
        user_agent: user_agent.filter(|ua| !ua.is_empty()),
        client: None,
    })
}

/// The app log in logrus' text formatter. Keys are sorted; values are bare
/// or quoted. 2.8's logrus quotes without escaping (a `"` inside a value
/// stays as it is), v3's escapes like Go's `%q`: a quoted value ends at the
/// first `"` followed by the end of the line or by ` key=`.
fn parse_text(line: &str) -> Parsed<'_> {
    let mut time = None;
    let mut msg = None;
    let mut method = None;
    let mut uri = None;
    let mut status = None;
    let mut user_agent = None;
    let mut client = None;
    let mut instance = None;
    let mut host = None;
    for (key, value) in logfmt_pairs(line) {
        match key {
            "time" => time = Some(value),
            "msg" => msg = Some(value),
            "http.request.method" => method = Some(value),
            "http.request.uri" => uri = Some(value),
            "http.response.status" => status = Some(value),
            "http.request.useragent" => user_agent = Some(value),
            "http.request.remoteaddr" => client = Some(value),
            "instance.id" => instance = Some(value),
            "http.request.host" => host = Some(value),
            _ => {}
        }
    }
    let Some(time) = time.and_then(|t| crate::clock::parse_rfc3339(&t)) else {
        return Parsed::Rejected("app log line without a readable time=");
    };
    let Some(msg) = msg else {
        return Parsed::Rejected("app log line without msg=");
    };
    let request = if msg == RESPONSE_COMPLETED {
        match completed(method, uri, status.and_then(|s| s.parse().ok()), user_agent) {
            Ok(request) => Some(Request { client, ..request }),
            Err(reason) => return Parsed::Rejected(reason),
        }
    } else {
        None
    };
    Parsed::Line {
        format: Format::AppText,
        time,
        request,
        instance,
        host,
    }
}

/// The `key=value` pairs of a logrus text line, in order. Words that are not
/// pairs are skipped.
pub(crate) fn logfmt_pairs(line: &str) -> Vec<(&str, Cow<'_, str>)> {
    let bytes = line.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b' ' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b' ' {
            continue;
        }
        let key = &line[key_start..i];
        i += 1;
        if i < bytes.len() && bytes[i] == b'"' {
            let start = i + 1;
            let end = closing_quote(line, start).unwrap_or(bytes.len());
            pairs.push((key, unescape(&line[start..end])));
            i = (end + 1).min(bytes.len());
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            pairs.push((key, Cow::Borrowed(&line[start..i])));
        }
    }
    pairs
}

/// The index of the `"` closing a value that starts at `start`: the first
/// one followed by the end of the line or by ` key=` (a key is letters,
/// digits, `.`, `_`, `-`).
fn closing_quote(line: &str, start: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut at = start;
    while let Some(offset) = line[at..].find('"') {
        let quote = at + offset;
        let rest = &bytes[quote + 1..];
        if rest.is_empty() || starts_with_key(rest) {
            return Some(quote);
        }
        at = quote + 1;
    }
    None
}

/// Whether `rest` is ` key=...`.
fn starts_with_key(rest: &[u8]) -> bool {
    let Some(rest) = rest.strip_prefix(b" ") else {
        return false;
    };
    let key_len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        .count();
    key_len > 0 && rest.get(key_len) == Some(&b'=')
}

/// `\"` and `\\` as Go's `%q` writes them; nothing else is touched (2.8
/// writes values verbatim).
fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON line: the app log with `log.formatter: json` (`msg`, `time`; 2.8's
/// logstash formatter writes `message` and `@timestamp`).
fn parse_json(line: &str) -> Parsed<'_> {
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(line) else {
        return Parsed::Rejected("not a JSON object");
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let msg = text("msg").or_else(|| text("message"));
    let time = text("time").or_else(|| text("@timestamp"));
    let (Some(msg), Some(time)) = (msg, time) else {
        return Parsed::Rejected(
            if object.contains_key("log") && object.contains_key("stream") {
                "a Docker json-file record that could not be unwrapped"
            } else if object.contains_key("__REALTIME_TIMESTAMP") {
                "a journalctl JSON record that could not be unwrapped"
            } else {
                "a JSON object without msg and time"
            },
        );
    };
    let Some(time) = crate::clock::parse_rfc3339(time) else {
        return Parsed::Rejected("app log line without a readable time");
    };
    let owned = |key: &str| text(key).map(|s| Cow::Owned(s.to_owned()));
    let request = if msg == RESPONSE_COMPLETED {
        let status = match object.get("http.response.status") {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        match completed(
            owned("http.request.method"),
            owned("http.request.uri"),
            status,
            owned("http.request.useragent"),
        ) {
            Ok(request) => Some(Request {
                client: owned("http.request.remoteaddr"),
                ..request
            }),
            Err(reason) => return Parsed::Rejected(reason),
        }
    } else {
        None
    };
    Parsed::Line {
        format: Format::AppJson,
        time,
        request,
        instance: owned("instance.id"),
        host: owned("http.request.host"),
    }
}

/// `host ident user [02/Jan/2006:15:04:05 -0700] `: the part every
/// combined-format line has.
static COMBINED_HEAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\S+) \S+ \S+ \[([0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4})\] ",
    )
    .expect("valid regex")
});

/// `"METHOD URI PROTO" status bytes "referer" "user agent"`; the referer
/// and user agent are optional (common format), anything after them is
/// ignored. Inside quotes, `\"` and `\\` are escapes (gorilla, Apache).
static COMBINED_REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^"([A-Z]+) (\S+)(?: [^"]*)?" ([0-9]{3}) (?:[0-9]+|-)(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?"#,
    )
    .expect("valid regex")
});

/// A combined-format access line; `None` when the line does not start like
/// one. A line with a time but a request that cannot be read (a TLS
/// handshake sent to a plain port: `"\x16\x03..." 400`) still covers its
/// time.
fn parse_combined(line: &str) -> Option<Parsed<'_>> {
    let head = COMBINED_HEAD.captures(line)?;
    let Some(time) = clf_time(&head[2]) else {
        return Some(Parsed::Rejected("access line with an unreadable time"));
    };
    let rest = &line[head.get(0)?.end()..];
    let request = COMBINED_REQUEST.captures(rest).and_then(|c| {
        Some(Request {
            method: Cow::Borrowed(c.get(1)?.as_str()),
            uri: Cow::Borrowed(c.get(2)?.as_str()),
            status: c[3].parse().ok()?,
            user_agent: c
                .get(4)
                .map(|ua| unescape(ua.as_str()))
                .filter(|ua| !ua.is_empty() && ua != "-"),
            client: head.get(1).map(|c| Cow::Borrowed(c.as_str())),
        })
    });
    Some(Parsed::Line {
        format: Format::Combined,
        time,
        request,
        instance: None,
        host: None,
    })
}

/// `02/Jan/2006:15:04:05 -0700`, taken as the end of that second: the
/// access log has one-second resolution, and a pull in that second must not
/// look older than it was.
fn clf_time(text: &str) -> Option<SystemTime> {
    let ts = jiff::Timestamp::strptime("%d/%b/%Y:%H:%M:%S %z", text).ok()?;
    let t = SystemTime::try_from(ts).ok()?;
    t.checked_add(Duration::from_nanos(999_999_999))
}

/// What a request names when it is a manifest request:
/// `/v2/<name>/manifests/<reference>`, the query left out, percent-escapes
/// decoded, leading slashes collapsed (`//v2/` is seen in real logs), and
/// the last `/manifests/` taken (a repository may be called `manifests`).
pub fn manifest_reference(uri: &str) -> Option<(String, String)> {
    let path = uri.split(['?', '#']).next()?;
    let path = percent_decode(path);
    let path = path.trim_start_matches('/').strip_prefix("v2/")?;
    let at = path.rfind("/manifests/")?;
    let (name, reference) = (&path[..at], &path[at + "/manifests/".len()..]);
    (is_repository_name(name) && is_reference(reference))
        .then(|| (name.to_owned(), reference.to_owned()))
}

/// Lowercase path components of `[a-z0-9._-]`, none empty.
pub(crate) fn is_repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// A tag (`[\w][\w.-]{0,127}`) or a digest (`algorithm:encoded`).
fn is_reference(reference: &str) -> bool {
    if let Some((algorithm, encoded)) = reference.split_once(':') {
        return !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = reference.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// Whether `reference` names a digest rather than a tag.
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A manifest path anywhere in a line that could not be read: the line may
/// record a pull, so its repository and reference are kept, as a pull at an
/// unknown time.
pub fn manifest_reference_anywhere(line: &str) -> Option<(String, String)> {
    manifest_references_anywhere(line).next()
}

/// Every manifest path in a text that could not be read (a broken JSON
/// document may hold several events).
pub fn manifest_references_anywhere(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    static ANYWHERE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"/v2/([a-z0-9._/-]+/manifests/[A-Za-z0-9_.:=+-]+)").expect("valid regex")
    });
    ANYWHERE
        .captures_iter(text)
        .filter_map(|found| manifest_reference(&format!("/v2/{}", &found[1])))
}
