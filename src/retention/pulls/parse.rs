//! One line of a registry log, recognised by its shape: the registry's app
//! log in logrus' text, terminal or JSON formatter, a combined-format access
//! line (the registry's own access log, nginx, Apache, Traefik's default),
//! or a proxy's JSON access line (Caddy, Traefik).
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

use crate::digest::Digest;

/// The payload formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// The registry's app log, logrus text formatter (the default):
    /// `time="..." level=info msg="response completed" http.request.uri=...`.
    AppText,
    /// The same formatter when stderr was a terminal: `INFO[0042] response
    /// completed   key=value ...`, in colour, timed only by seconds since
    /// the start; read only with a collector's time for the line.
    AppTty,
    /// The registry's app log with `log.formatter: json`.
    AppJson,
    /// A combined-format access line: the registry's access log (stdout),
    /// nginx, Apache, Traefik's default (CLF).
    Combined,
    /// Caddy's JSON access log (`"msg":"handled request"`).
    CaddyJson,
    /// Traefik's JSON access log (`"RequestPath"`, `"DownstreamStatus"`).
    TraefikJson,
}

impl Format {
    /// Every format, in the order `--pull-log-format` lists them.
    pub const ALL: [Format; 6] = [
        Format::AppText,
        Format::AppTty,
        Format::AppJson,
        Format::Combined,
        Format::CaddyJson,
        Format::TraefikJson,
    ];

    /// How reports (and `--pull-log-format`) name the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::AppText => "distribution-text",
            Format::AppTty => "distribution-tty",
            Format::AppJson => "distribution-json",
            Format::Combined => "combined",
            Format::CaddyJson => "caddy-json",
            Format::TraefikJson => "traefik-json",
        }
    }

    /// The format [`Format::name`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether lines of this format come from the registry's app log.
    pub fn is_app_log(self) -> bool {
        matches!(self, Format::AppText | Format::AppTty | Format::AppJson)
    }

    /// Why a line is rejected when `--pull-log-format` forces this format
    /// and the line has another shape.
    fn other_shape(self) -> &'static str {
        match self {
            Format::AppText => "not a distribution-text line (--pull-log-format)",
            Format::AppTty => "not a distribution-tty line (--pull-log-format)",
            Format::AppJson => "not a distribution-json line (--pull-log-format)",
            Format::Combined => "not a combined-format line (--pull-log-format)",
            Format::CaddyJson => "not a caddy-json line (--pull-log-format)",
            Format::TraefikJson => "not a traefik-json line (--pull-log-format)",
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
    /// The digest the response named (`Docker-Content-Digest`), when the
    /// line logs it: a proxy's response header, nginx's
    /// `$upstream_http_docker_content_digest`.
    pub served: Option<Cow<'a, str>>,
    /// Bytes of the response body, when logged.
    pub size: Option<u64>,
    /// The response's `Content-Type`, when logged.
    pub content_type: Option<Cow<'a, str>>,
    /// How long the request took, when logged: the tag it named was
    /// resolved that long before the line's time.
    pub duration: Option<Duration>,
}

impl Request<'_> {
    fn into_owned(self) -> Request<'static> {
        let owned = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Request {
            method: owned(self.method),
            uri: owned(self.uri),
            status: self.status,
            user_agent: self.user_agent.map(owned),
            client: self.client.map(owned),
            served: self.served.map(owned),
            size: self.size,
            content_type: self.content_type.map(owned),
            duration: self.duration,
        }
    }
}

/// What a line says.
// One lives per line read and none is kept: boxing the large variant would
// cost an allocation per line.
#[allow(clippy::large_enum_variant)]
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
        /// The registry's version (`version=`), when the line names it.
        version: Option<Cow<'a, str>>,
    },
    /// A line of no known format, or of a known one that cannot be read.
    Rejected(&'static str),
}

impl Parsed<'_> {
    fn into_owned(self) -> Parsed<'static> {
        let owned = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        match self {
            Parsed::Blank => Parsed::Blank,
            Parsed::Rejected(reason) => Parsed::Rejected(reason),
            Parsed::Line {
                format,
                time,
                request,
                instance,
                host,
                version,
            } => Parsed::Line {
                format,
                time,
                request: request.map(Request::into_owned),
                instance: instance.map(owned),
                host: host.map(owned),
                version: version.map(owned),
            },
        }
    }
}

/// What a line is read with, besides its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineContext {
    /// When a collector received the line (a wrapper's time): the time of
    /// a line that has none of its own.
    pub collected: Option<SystemTime>,
    /// `--pull-log-format`: the only format recognised; a line of another
    /// shape is rejected.
    pub only: Option<Format>,
}

/// Reads one line (without its line end), alone.
pub fn parse_line(line: &str) -> Parsed<'_> {
    parse_line_in(line, LineContext::default())
}

/// Reads one line (without its line end) in `context`.
pub fn parse_line_in(line: &str, context: LineContext) -> Parsed<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim_start();
    if trimmed.is_empty() {
        return Parsed::Blank;
    }
    let parsed = recognise(trimmed, context.collected);
    match (context.only, &parsed) {
        (Some(only), Parsed::Line { format, .. }) if *format != only => {
            Parsed::Rejected(only.other_shape())
        }
        (Some(only), Parsed::Rejected(_)) if !shaped_like(only, trimmed) => {
            Parsed::Rejected(only.other_shape())
        }
        _ => parsed,
    }
}

/// Whether `line` begins the way lines of `format` do: a forced format's
/// own reason for rejecting a line is kept only for such lines.
fn shaped_like(format: Format, line: &str) -> bool {
    match format {
        Format::AppText => line.starts_with("time="),
        Format::AppTty => line.starts_with('\u{1b}') || TTY.is_match(line),
        Format::AppJson | Format::CaddyJson | Format::TraefikJson => line.starts_with('{'),
        Format::Combined => COMBINED_HEAD.is_match(line),
    }
}

fn recognise(trimmed: &str, collected: Option<SystemTime>) -> Parsed<'_> {
    if trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    if trimmed.starts_with("time=") {
        return parse_text(trimmed);
    }
    if trimmed.starts_with('\u{1b}') {
        // The terminal format is coloured: read it without the escapes.
        let plain = strip_ansi(trimmed);
        if TTY.is_match(&plain) {
            return parse_tty(&plain, collected).into_owned();
        }
        return Parsed::Rejected(UNKNOWN_SHAPE);
    }
    if TTY.is_match(trimmed) {
        return parse_tty(trimmed, collected);
    }
    if let Some(parsed) = parse_combined(trimmed) {
        return parsed;
    }
    Parsed::Rejected(UNKNOWN_SHAPE)
}

/// Why a line of no known shape is rejected.
const UNKNOWN_SHAPE: &str = "not a registry app log or combined-format access line";

/// `INFO[0042] ...`: logrus' format when stderr is a terminal. The bracket
/// holds seconds since the start, or a time with `FullTimestamp`.
static TTY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:DEBU|INFO|WARN|ERRO|FATA|PANI|TRAC)\[([^\] ]+)\] ").expect("valid regex")
});

/// `text` without its ANSI SGR sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    static SGR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("\u{1b}\\[[0-9;]*m").expect("valid regex"));
    SGR.replace_all(text, "").into_owned()
}

/// `msg` of the line logged once per request answered 200 to 399.
const RESPONSE_COMPLETED: &str = "response completed";

/// The fields of an app log line that matter here, in either formatter.
#[derive(Default)]
struct AppFields<'a> {
    time: Option<Cow<'a, str>>,
    msg: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    status: Option<u16>,
    user_agent: Option<Cow<'a, str>>,
    client: Option<Cow<'a, str>>,
    instance: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    written: Option<u64>,
    content_type: Option<Cow<'a, str>>,
    duration: Option<Duration>,
}

impl<'a> AppFields<'a> {
    /// Takes a text line's `key=value` pair.
    fn take(&mut self, key: &str, value: Cow<'a, str>) {
        match key {
            "time" => self.time = Some(value),
            "msg" => self.msg = Some(value),
            "http.request.method" => self.method = Some(value),
            "http.request.uri" => self.uri = Some(value),
            "http.response.status" => self.status = value.parse().ok(),
            "http.request.useragent" => self.user_agent = Some(value),
            "http.request.remoteaddr" => self.client = Some(value),
            "instance.id" => self.instance = Some(value),
            "http.request.host" => self.host = Some(value),
            "version" => self.version = Some(value),
            "http.response.written" => self.written = value.parse().ok(),
            "http.response.contenttype" => self.content_type = Some(value),
            "http.response.duration" => self.duration = go_duration(&value),
            _ => {}
        }
    }

    /// The line, at `time`: a "response completed" line without its
    /// method, URI or status is rejected.
    fn into_line(self, format: Format, time: SystemTime) -> Parsed<'a> {
        let Some(msg) = self.msg else {
            return Parsed::Rejected("app log line without msg=");
        };
        let request = if msg == RESPONSE_COMPLETED {
            let (Some(method), Some(uri), Some(status)) = (self.method, self.uri, self.status)
            else {
                return Parsed::Rejected(
                    "\"response completed\" without http.request.method, http.request.uri or http.response.status",
                );
            };
            Some(Request {
                method,
                uri,
                status,
                user_agent: self.user_agent.filter(|ua| !ua.is_empty()),
                client: self.client,
                served: None,
                size: self.written,
                content_type: self.content_type,
                duration: self.duration,
            })
        } else {
            None
        };
        Parsed::Line {
            format,
            time,
            request,
            instance: self.instance,
            host: self.host,
            version: self.version,
        }
    }
}

/// The app log in logrus' text formatter. Keys are sorted; values are bare
/// or quoted. 2.8's logrus quotes without escaping (a `"` inside a value
/// stays as it is), v3's escapes like Go's `%q`: a quoted value ends at the
/// first `"` followed by the end of the line or by ` key=`.
fn parse_text(line: &str) -> Parsed<'_> {
    let mut fields = AppFields::default();
    for (key, value) in logfmt_pairs(line) {
        fields.take(key, value);
    }
    let Some(time) = fields.time.as_deref().and_then(crate::clock::parse_rfc3339) else {
        return Parsed::Rejected("app log line without a readable time=");
    };
    fields.into_line(Format::AppText, time)
}

/// The terminal format, its escapes removed: `INFO[0042] message   key=value
/// ...`, the message padded to 44 characters. Its time is the collector's,
/// or the bracket's when it holds a full time.
fn parse_tty(line: &str, collected: Option<SystemTime>) -> Parsed<'_> {
    let Some(head) = TTY.captures(line) else {
        return Parsed::Rejected(UNKNOWN_SHAPE);
    };
    let bracket = head.get(1).map_or("", |m| m.as_str());
    let own = (!bracket.bytes().all(|b| b.is_ascii_digit()))
        .then(|| crate::clock::parse_rfc3339(bracket))
        .flatten();
    let Some(time) = own.or(collected) else {
        return Parsed::Rejected(
            "logrus terminal format (INFO[0042]): no absolute time; run the registry without a terminal, or give the log with its collector's timestamps (docker json-file, CRI, journald)",
        );
    };
    let rest = &line[head.get(0).map_or(0, |m| m.end())..];
    // The message runs to the first ` key=`.
    let bytes = rest.as_bytes();
    let fields_at = (0..bytes.len())
        .find(|&i| bytes[i] == b' ' && starts_with_key(&bytes[i..]))
        .unwrap_or(bytes.len());
    let mut fields = AppFields {
        msg: Some(Cow::Borrowed(rest[..fields_at].trim())),
        ..AppFields::default()
    };
    for (key, value) in logfmt_pairs(&rest[fields_at..]) {
        if key != "msg" && key != "time" {
            fields.take(key, value);
        }
    }
    fields.into_line(Format::AppTty, time)
}

/// The `key=value` pairs of a logrus text line, in order. Words that are not
/// pairs are skipped.
pub(crate) fn logfmt_pairs(line: &str) -> LogfmtPairs<'_> {
    LogfmtPairs { line, at: 0 }
}

/// An iterator over [`logfmt_pairs`].
pub(crate) struct LogfmtPairs<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Iterator for LogfmtPairs<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.line;
        let bytes = line.as_bytes();
        let mut i = self.at;
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
            let value = if i < bytes.len() && bytes[i] == b'"' {
                let start = i + 1;
                let end = closing_quote(line, start).unwrap_or(bytes.len());
                i = (end + 1).min(bytes.len());
                unescape(&line[start..end])
            } else {
                let start = i;
                // Bare values are short: a plain loop beats a search's setup.
                while i < bytes.len() && bytes[i] != b' ' {
                    i += 1;
                }
                Cow::Borrowed(&line[start..i])
            };
            self.at = i;
            return Some((key, value));
        }
        self.at = bytes.len();
        None
    }
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

/// A JSON line: the registry's app log with `log.formatter: json` (`msg`,
/// `time`; 2.8's logstash formatter writes `message` and `@timestamp`),
/// Caddy's access log, or Traefik's.
fn parse_json(line: &str) -> Parsed<'_> {
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(line) else {
        return Parsed::Rejected("not a JSON object");
    };
    if object.contains_key("RequestPath") || object.contains_key("DownstreamStatus") {
        return parse_traefik(&object);
    }
    if object.contains_key("ts")
        && (object.contains_key("logger") || object.get("request").is_some_and(Value::is_object))
    {
        return parse_caddy(&object);
    }
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let msg = text("msg").or_else(|| text("message"));
    let time = text("time").or_else(|| text("@timestamp"));
    let (Some(_), Some(time)) = (msg, time) else {
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
    let fields = AppFields {
        time: None,
        msg: msg.map(|m| Cow::Owned(m.to_owned())),
        method: owned("http.request.method"),
        uri: owned("http.request.uri"),
        status: object.get("http.response.status").and_then(number),
        user_agent: owned("http.request.useragent"),
        client: owned("http.request.remoteaddr"),
        instance: owned("instance.id"),
        host: owned("http.request.host"),
        version: owned("version"),
        written: object.get("http.response.written").and_then(number),
        content_type: owned("http.response.contenttype"),
        duration: text("http.response.duration").and_then(go_duration),
    };
    fields.into_line(Format::AppJson, time)
}

/// A Go duration as `time.Duration.String` writes it: `2.773353ms`,
/// `1.6697112s`, `850µs`, `1m2.5s`, `0s`.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A JSON number, or a string holding one.
fn number<T: TryFrom<u64>>(value: &Value) -> Option<T> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| T::try_from(n).ok()),
        Value::String(s) => s.parse::<u64>().ok().and_then(|n| T::try_from(n).ok()),
        _ => None,
    }
}

/// A `sha256:` digest as a `Docker-Content-Digest` header gives it.
fn digest_value(text: &str) -> Option<Cow<'static, str>> {
    Digest::parse(text.trim()).map(|digest| Cow::Owned(digest.to_string()))
}

/// A header of a JSON map of headers (`{"Name": ["value"]}` as Caddy logs
/// them, or a bare string), its name matched in any case.
fn header<'v>(headers: Option<&'v Value>, name: &str) -> Option<&'v str> {
    let (_, value) = headers?
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))?;
    match value {
        Value::String(s) => Some(s),
        Value::Array(values) => values.first()?.as_str(),
        _ => None,
    }
}

/// Caddy's JSON log: `ts` (epoch seconds, or a time string when
/// `time_format` is set) on every line; an access line (`handled
/// request`) adds `request` (`method`, `uri`, `remote_ip`/`client_ip`,
/// `host`, `headers`), `status`, `size` and `resp_headers`, which hold the
/// registry's `Docker-Content-Digest`.
fn parse_caddy(object: &Map<String, Value>) -> Parsed<'static> {
    let time = match object.get("ts") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s)),
        Some(Value::String(s)) => crate::clock::parse_rfc3339(s),
        _ => None,
    };
    let Some(time) = time else {
        return Parsed::Rejected("caddy line with an unreadable ts");
    };
    let request = object.get("request").and_then(Value::as_object);
    let request = match request {
        Some(request) if object.contains_key("status") => {
            let text = |key: &str| request.get(key).and_then(Value::as_str);
            let (Some(method), Some(uri), Some(status)) = (
                text("method"),
                text("uri"),
                object.get("status").and_then(number::<u16>),
            ) else {
                return Parsed::Rejected(
                    "caddy access line without request.method, request.uri or status",
                );
            };
            let resp_headers = object.get("resp_headers");
            Some(Request {
                method: Cow::Owned(method.to_owned()),
                uri: Cow::Owned(uri.to_owned()),
                status,
                user_agent: header(request.get("headers"), "User-Agent")
                    .filter(|ua| !ua.is_empty())
                    .map(|ua| Cow::Owned(ua.to_owned())),
                client: text("client_ip")
                    .or_else(|| text("remote_ip"))
                    .map(|c| Cow::Owned(c.to_owned())),
                served: header(resp_headers, "Docker-Content-Digest").and_then(digest_value),
                size: object.get("size").and_then(number),
                content_type: header(resp_headers, "Content-Type")
                    .map(|c| Cow::Owned(c.to_owned())),
                duration: object
                    .get("duration")
                    .and_then(Value::as_f64)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            })
        }
        _ => None,
    };
    let host = request
        .as_ref()
        .and(object.get("request"))
        .and_then(|r| r.get("host"))
        .and_then(Value::as_str)
        .map(|h| Cow::Owned(h.to_owned()));
    Parsed::Line {
        format: Format::CaddyJson,
        time,
        request,
        instance: None,
        host,
        version: None,
    }
}

/// Traefik's JSON access log: `StartUTC` (the request's start, to which
/// `Duration` in nanoseconds is added), `RequestMethod`, `RequestPath`
/// (query included), `DownstreamStatus`, `DownstreamContentSize`,
/// `ClientHost`; headers only when kept, as `request_User-Agent` and
/// `downstream_Docker-Content-Digest`.
fn parse_traefik(object: &Map<String, Value>) -> Parsed<'static> {
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let start = text("StartUTC")
        .or_else(|| text("StartLocal"))
        .and_then(crate::clock::parse_rfc3339);
    let Some(start) = start else {
        return Parsed::Rejected("traefik line without a readable StartUTC");
    };
    let took = object
        .get("Duration")
        .and_then(number::<u64>)
        .map_or(Duration::ZERO, Duration::from_nanos);
    let time = start.checked_add(took).unwrap_or(start);
    let owned = |key: &str| text(key).map(|s| Cow::Owned(s.to_owned()));
    let (Some(method), Some(uri), Some(status)) = (
        owned("RequestMethod"),
        owned("RequestPath"),
        object.get("DownstreamStatus").and_then(number::<u16>),
    ) else {
        return Parsed::Rejected(
            "traefik line without RequestMethod, RequestPath or DownstreamStatus",
        );
    };
    let served = [
        "downstream_Docker-Content-Digest",
        "origin_Docker-Content-Digest",
    ]
    .into_iter()
    .find_map(|key| text(key).and_then(digest_value));
    let request = Request {
        method,
        uri,
        status,
        user_agent: owned("request_User-Agent").filter(|ua| !ua.is_empty()),
        client: owned("ClientHost").or_else(|| owned("ClientAddr")),
        served,
        size: object.get("DownstreamContentSize").and_then(number),
        content_type: owned("downstream_Content-Type").or_else(|| owned("origin_Content-Type")),
        duration: Some(took),
    };
    Parsed::Line {
        format: Format::TraefikJson,
        time,
        request: Some(request),
        instance: None,
        host: owned("RequestHost"),
        version: None,
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
/// and user agent are optional (common format). Inside quotes, `\"` and
/// `\\` are escapes (gorilla, Apache).
static COMBINED_REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^"([A-Z]+) (\S+)(?: [^"]*)?" ([0-9]{3}) ([0-9]+|-)(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?"#,
    )
    .expect("valid regex")
});

/// A digest logged after the user agent: nginx's
/// `$upstream_http_docker_content_digest`, or any `sha256:` word an
/// operator's `log_format` adds there.
static SERVED_DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s"=])(sha256:[0-9a-f]{64})(?:$|[\s"])"#).expect("valid regex")
});

/// A combined-format access line; `None` when the line does not start like
/// one. A line with a time but a request that cannot be read (a TLS
/// handshake sent to a plain port: `"\x16\x03..." 400`) still covers its
/// time. What follows the user agent (Traefik's router and duration, a
/// `log_format`'s extra fields) is read only for a digest served.
fn parse_combined(line: &str) -> Option<Parsed<'_>> {
    let head = COMBINED_HEAD.captures(line)?;
    let Some(time) = clf_time(&head[2]) else {
        return Some(Parsed::Rejected("access line with an unreadable time"));
    };
    let rest = &line[head.get(0)?.end()..];
    let request = COMBINED_REQUEST.captures(rest).and_then(|c| {
        let end = c.get(0)?.end();
        let extra = c.get(5).map(|_| &rest[end..]);
        Some(Request {
            method: Cow::Borrowed(c.get(1)?.as_str()),
            uri: Cow::Borrowed(c.get(2)?.as_str()),
            status: c[3].parse().ok()?,
            user_agent: c
                .get(5)
                .map(|ua| unescape(ua.as_str()))
                .filter(|ua| !ua.is_empty() && ua != "-"),
            client: head.get(1).map(|c| Cow::Borrowed(c.as_str())),
            served: extra
                .and_then(|extra| SERVED_DIGEST.captures(extra))
                .and_then(|d| d.get(1))
                .map(|d| Cow::Borrowed(d.as_str())),
            size: c[4].parse().ok(),
            content_type: None,
            duration: None,
        })
    });
    Some(Parsed::Line {
        format: Format::Combined,
        time,
        request,
        instance: None,
        host: None,
        version: None,
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
pub fn manifest_reference(uri: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    let end = uri
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(uri.len());
    match percent_decode(&uri[..end]) {
        Cow::Borrowed(path) => {
            let (name, reference) = split_manifest_path(path)?;
            Some((Cow::Borrowed(name), Cow::Borrowed(reference)))
        }
        Cow::Owned(path) => {
            let (name, reference) = split_manifest_path(&path)?;
            Some((
                Cow::Owned(name.to_owned()),
                Cow::Owned(reference.to_owned()),
            ))
        }
    }
}

/// `/v2/<name>/manifests/<reference>` (decoded, no query) in its parts.
fn split_manifest_path(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_start_matches('/').strip_prefix("v2/")?;
    let at = path.rfind("/manifests/")?;
    let (name, reference) = (&path[..at], &path[at + "/manifests/".len()..]);
    (is_repository_name(name) && is_reference(reference)).then_some((name, reference))
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
    ANYWHERE.captures_iter(text).filter_map(|found| {
        manifest_reference(&format!("/v2/{}", &found[1]))
            .map(|(name, reference)| (name.into_owned(), reference.into_owned()))
    })
}
