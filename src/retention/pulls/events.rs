//! The registry's notification events, as operators keep them: the bodies
//! the registry POSTs to an endpoint (`{"events": [...]}`, media type
//! `application/vnd.docker.distribution.events.v1+json`, pretty-printed over
//! many lines), appended to a file one after another, or one JSON value per
//! line (an envelope, or a single event), or a JSON array of events.
//!
//! The values are decoded as a stream, one event at a time: an envelope's
//! `events` array is never held whole, so a file of any size reads in the
//! memory of its largest event.
//!
//! A pull is an event with `"action": "pull"` whose target is a manifest
//! (by its URL, `/v2/<name>/manifests/...`, or else its media type); blob
//! pulls also arrive as `pull` and are left out. The registry (2.8) sets
//! `target.tag` only when the request named a tag; `target.digest` is the
//! manifest it served. HEAD emits a pull as GET does (`request.method`
//! tells them apart); a 304 answer emits none.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, Read};
use std::time::SystemTime;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Method;
use super::parse;

/// How reports name the format.
pub const FORMAT: &str = "events";

/// How `--pull-log-format` names it.
pub const FORCED_NAME: &str = "notification";

/// Bytes of the event being decoded kept for a report, should it break.
const KEEP: usize = super::input::MAX_LINE;

/// Whether a file beginning with `head` holds notification events rather
/// than log lines: its first non-space byte opens a JSON array, or an
/// object whose first line is `{` alone (a pretty-printed document), or
/// names `events`, or is an event (`action` and `target`). A JSON log line
/// (the app log's JSON formatter, a Docker json-file record) is none of
/// these.
pub fn looks_like_events(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let rest = &head[start..];
    match rest.first() {
        Some(b'[') => return true,
        Some(b'{') => {}
        _ => return false,
    }
    let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    if line == "{" {
        return true;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => is_envelope_or_event(&object),
        Ok(_) => false,
        // A line cut by the end of `head`, or a document spread over lines.
        Err(_) => {
            let after_brace = line[1..].trim_start();
            after_brace.starts_with("\"events\"")
                || (line.contains("\"action\"") && line.contains("\"target\""))
        }
    }
}

fn is_envelope_or_event(object: &Map<String, Value>) -> bool {
    object.contains_key("events")
        || (object.contains_key("action") && object.contains_key("target"))
}

/// What the stream yields.
#[derive(Debug)]
pub enum Item {
    /// An element of an envelope's `events`, an element of a top-level
    /// array, or a top-level object without `events`: an event, if it reads
    /// as one.
    Event(Value),
    /// A top-level value that is neither an object nor an array, or an
    /// envelope whose `events` is not an array.
    NotEvents(Value),
}

/// A stream that cannot go on: the rest of the input is not read.
#[derive(Debug)]
pub struct Broken {
    /// Why (a syntax error, an end in the middle of a value, or a read
    /// error: see [`serde_json::Error::is_io`]).
    pub error: serde_json::Error,
    /// The line it broke at, from 1.
    pub line: u64,
    /// The text since the last whole event (at most the last MiB of it).
    pub partial: String,
}

/// What the stream has read so far, shared by the reader and the decoder.
#[derive(Default)]
struct Seen {
    /// Bytes since the last whole event.
    bytes: Vec<u8>,
    /// Line ends read.
    newlines: u64,
}

impl Seen {
    /// The line the decoder is on, from 1.
    fn line(&self) -> u64 {
        self.newlines + 1
    }
}

/// Reads through to the decoder, keeping what it read.
struct Tee<'r, 's> {
    inner: &'r mut dyn BufRead,
    seen: &'s RefCell<Seen>,
}

impl Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        let mut seen = self.seen.borrow_mut();
        seen.newlines += got.iter().filter(|&&b| b == b'\n').count() as u64;
        if seen.bytes.len() + n > KEEP {
            let drop = seen.bytes.len() / 2;
            seen.bytes.drain(..drop);
        }
        seen.bytes.extend_from_slice(got);
        Ok(n)
    }
}

/// The decoder's side: hands each value to the sink, with its line.
struct Context<'s, 'f> {
    seen: &'s RefCell<Seen>,
    sink: &'f mut dyn FnMut(Item, u64) -> bool,
    /// The sink asked to stop.
    stopped: bool,
}

impl Context<'_, '_> {
    fn give<E: de::Error>(&mut self, item: Item) -> Result<(), E> {
        let line = {
            let mut seen = self.seen.borrow_mut();
            seen.bytes.clear();
            seen.line()
        };
        if (self.sink)(item, line) {
            Ok(())
        } else {
            self.stopped = true;
            Err(E::custom("stopped"))
        }
    }
}

/// Decodes every JSON value `reader` holds, handing the sink each event
/// (with the line it ends on) as soon as it is read. The sink returns
/// false to stop: then `Ok(false)`. A value that breaks the stream ends it
/// with [`Broken`]; the events read before are kept.
pub fn decode(
    reader: &mut dyn BufRead,
    sink: &mut dyn FnMut(Item, u64) -> bool,
) -> Result<bool, Broken> {
    let seen = RefCell::new(Seen::default());
    let tee = Tee {
        inner: reader,
        seen: &seen,
    };
    let mut de = serde_json::Deserializer::from_reader(tee);
    let mut context = Context {
        seen: &seen,
        sink,
        stopped: false,
    };
    loop {
        // Skips the space between documents; at the end, done.
        match de.end() {
            Ok(()) => return Ok(true),
            Err(e) if e.is_io() => return Err(broken(e, &seen)),
            Err(_) => {}
        }
        let result = Document {
            context: &mut context,
        }
        .deserialize(&mut de);
        if context.stopped {
            return Ok(false);
        }
        if let Err(error) = result {
            return Err(broken(error, &seen));
        }
    }
}

fn broken(error: serde_json::Error, seen: &RefCell<Seen>) -> Broken {
    let seen = seen.borrow();
    Broken {
        line: seen.line(),
        partial: String::from_utf8_lossy(&seen.bytes).trim().to_owned(),
        error,
    }
}

/// A top-level value.
struct Document<'c, 's, 'f> {
    context: &'c mut Context<'s, 'f>,
}

/// An envelope's `events`.
struct Events<'c, 's, 'f> {
    context: &'c mut Context<'s, 'f>,
}

/// One element of an array of events.
struct EventSeed<'c, 's, 'f> {
    context: &'c mut Context<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for Document<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> DeserializeSeed<'de> for Events<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let value = <Value as serde::Deserialize>::deserialize(d)?;
        self.context.give(Item::Event(value))
    }
}

/// Streams the elements of an array of events.
fn stream_events<'de, A: SeqAccess<'de>>(
    context: &mut Context<'_, '_>,
    mut seq: A,
) -> Result<(), A::Error> {
    while seq
        .next_element_seed(EventSeed {
            context: &mut *context,
        })?
        .is_some()
    {}
    Ok(())
}

/// Scalars, where events were expected, go to the sink whole.
macro_rules! scalars_are_not_events {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::from(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::from(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.context.give(Item::NotEvents(Value::Null))
        }
    };
}

impl<'de> Visitor<'de> for Document<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an events envelope, an event, or an array of events")
    }

    scalars_are_not_events!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        stream_events(self.context, seq)
    }

    /// An envelope streams its `events`; any other object is one event.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = Map::new();
        let mut envelope = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "events" && !envelope {
                envelope = true;
                map.next_value_seed(Events {
                    context: &mut *self.context,
                })?;
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        if envelope {
            return Ok(());
        }
        self.context.give(Item::Event(Value::Object(fields)))
    }
}

impl<'de> Visitor<'de> for Events<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }

    scalars_are_not_events!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        stream_events(self.context, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value =
            <Value as serde::Deserialize>::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.context.give(Item::NotEvents(value))
    }
}

/// What one event says.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading {
    /// An event with a time; `pull` when it is a manifest pull.
    Event {
        /// `timestamp`.
        time: SystemTime,
        /// The manifest pull it records.
        pull: Option<Pull>,
        /// `source.instanceID`.
        instance: Option<String>,
        /// `request.host`.
        host: Option<String>,
    },
    /// Not read: why, and the manifests it names when it may be a pull.
    Rejected(&'static str, Vec<(String, String)>),
}

/// A manifest pull an event records.
#[derive(Debug, PartialEq, Eq)]
pub struct Pull {
    /// `target.repository`.
    pub repository: String,
    /// `target.tag`, when the request named one.
    pub tag: Option<String>,
    /// `target.digest`: the manifest served.
    pub digest: Option<String>,
    /// `request.method`.
    pub method: Method,
    /// `request.useragent`, when not empty.
    pub user_agent: Option<String>,
    /// `request.addr`: the client's address.
    pub client: Option<String>,
}

/// Reads one event.
pub fn read_event(event: &Value) -> Reading {
    let Some(object) = event.as_object() else {
        return Reading::Rejected("an event that is not a JSON object", Vec::new());
    };
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let action = object.get("action").and_then(Value::as_str);
    // What it names, should it not be read: only when it may be a pull.
    let named = || match action {
        Some(a) if a != "pull" => Vec::new(),
        _ => parse::manifest_references_anywhere(&event.to_string()).collect(),
    };
    let Some(action) = action else {
        return Reading::Rejected("an event without \"action\"", named());
    };
    let Some(time) = object
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(crate::clock::parse_rfc3339)
    else {
        return Reading::Rejected("an event without a readable \"timestamp\"", named());
    };
    let null = Value::Null;
    let target = object.get("target").unwrap_or(&null);
    let request = object.get("request").unwrap_or(&null);
    let source = object.get("source").unwrap_or(&null);
    let instance = text(source, "instanceID");
    let host = text(request, "host");
    if action != "pull" || !is_manifest(target) {
        return Reading::Event {
            time,
            pull: None,
            instance,
            host,
        };
    }
    let repository = text(target, "repository").filter(|r| parse::is_repository_name(r));
    let tag = text(target, "tag");
    let digest = text(target, "digest").filter(|d| crate::digest::Digest::parse(d).is_some());
    let Some(repository) = repository else {
        return Reading::Rejected(
            "a manifest pull without a readable \"target.repository\"",
            named(),
        );
    };
    if tag.is_none() && digest.is_none() {
        return Reading::Rejected(
            "a manifest pull without \"target.tag\" or a readable \"target.digest\"",
            named(),
        );
    }
    let method = match text(request, "method").as_deref() {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Unknown,
    };
    Reading::Event {
        time,
        pull: Some(Pull {
            repository,
            tag,
            digest,
            method,
            user_agent: text(request, "useragent"),
            client: text(request, "addr"),
        }),
        instance,
        host,
    }
}

/// Manifest media types, for a target without a URL.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
];

/// A manifest rather than a blob: the URL the registry gives tells, else
/// the media type.
fn is_manifest(target: &Value) -> bool {
    if let Some(url) = target.get("url").and_then(Value::as_str) {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if path.contains("/manifests/") {
            return true;
        }
        if path.contains("/blobs/") {
            return false;
        }
    }
    target
        .get("mediaType")
        .and_then(Value::as_str)
        .is_some_and(|t| MANIFEST_TYPES.contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that fails once its text is used up, as a file still being
    /// written, or one too large to hold, would stop.
    struct ThenFails<'a>(&'a [u8]);

    impl Read for ThenFails<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("no more"));
            }
            self.0.read(buf)
        }
    }

    #[test]
    fn an_envelopes_events_are_handed_over_before_it_ends() {
        let text = br#"{"events": [{"action": "pull", "n": 1}, {"action": "pull", "n": 2}, {"act"#;
        let mut reader = io::BufReader::with_capacity(8, ThenFails(text));
        let mut seen = Vec::new();
        let result = decode(&mut reader, &mut |item, line| {
            seen.push((format!("{item:?}"), line));
            true
        });
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].0.contains("\"n\": Number(2)"), "{seen:?}");
        let broken = result.unwrap_err();
        assert!(broken.error.is_io(), "{}", broken.error);
        assert_eq!(broken.partial, r#", {"act"#);
    }

    #[test]
    fn the_sink_can_stop_the_stream() {
        let text = b"{\"action\": \"pull\"}\n{\"action\": \"pull\"}\n";
        let mut reader: &[u8] = text;
        let mut calls = 0;
        let result = decode(&mut reader, &mut |_, line| {
            calls += 1;
            assert_eq!(line, 1);
            false
        });
        assert_eq!((result.unwrap(), calls), (false, 1));
    }
}
