//! YAML decoded as the registry's reader, gopkg.in/yaml.v2, decodes it.
//!
//! The parser (yaml-rust2's event parser) builds a node tree in which an alias
//! is a reference, never a copy, so reading costs what the file's size costs.
//! Aliases are expanded only while decoding, and counted as yaml.v2 counts
//! them: a document whose decoding is mostly alias expansion ("billion
//! laughs") is refused as yaml.v2 refuses it ("excessive aliasing"), after a
//! few thousand nodes rather than gigabytes.
//!
//! Merge keys (`<<`) apply where they stand, as in yaml.v2: a key written
//! after a merge overrides the merged one, a merge written after a key
//! overrides that key, and in a sequence of maps (`<<: [*a, *b]`) the earlier
//! map wins. (Checked against registry 2.8.2.)

use std::collections::HashMap;

use yaml_rust2::parser::{Event, EventReceiver, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// What a plain or tagged scalar resolves to in yaml.v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (quoted, `!!str`, or plain text that is nothing else).
    Str,
    /// `true`, `yes`, `on`, `y` ... and their negations.
    Bool(bool),
    /// `~`, `null`, an empty value.
    Null,
}

/// A scalar: its text as written and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The text as written (for a key decoded into a Go string, what yaml.v2 uses).
    pub text: String,
    /// What it resolves to.
    pub kind: Kind,
}

/// A decoded value, as yaml.v2 decodes into `interface{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping.
    Map(Map),
}

impl Value {
    /// Null, as a Go nil.
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Scalar(Scalar {
                kind: Kind::Null,
                ..
            })
        )
    }

    /// The text of a scalar as a Go string would hold it; `None` for a
    /// sequence or mapping.
    pub fn as_go_string(&self) -> Option<String> {
        match self {
            Value::Scalar(Scalar {
                kind: Kind::Null, ..
            }) => Some(String::new()),
            Value::Scalar(s) => Some(s.text.clone()),
            _ => None,
        }
    }
}

/// A mapping, in the order its keys were first set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    /// Keys and values; a key is set once (a later value replaces it).
    pub entries: Vec<(Value, Value)>,
    /// A Go `map[string]interface{}` (made by the registry's environment
    /// overrides), not the `map[interface{}]interface{}` yaml.v2 makes.
    pub string_keys: bool,
}

impl Map {
    /// An empty `map[string]interface{}`.
    pub fn go_parameters() -> Map {
        Map {
            entries: Vec::new(),
            string_keys: true,
        }
    }

    /// Sets `key`, replacing an equal key's value.
    pub fn insert(&mut self, key: Value, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value of the string key `name`.
    pub fn get_str(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            Value::Scalar(Scalar {
                text,
                kind: Kind::Str,
            }) if text == name => Some(v),
            _ => None,
        })
    }
}

/// A node of the parsed document.
#[derive(Debug)]
enum Node {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<Tag>,
    },
    Seq(Vec<usize>),
    Map(Vec<usize>),
    Alias(usize),
}

/// The first document of a YAML text, parsed but not decoded.
#[derive(Debug, Default)]
pub struct Document {
    nodes: Vec<Node>,
    root: Option<usize>,
}

/// Builds the node tree from parser events.
#[derive(Default)]
struct Builder {
    doc: Document,
    /// Open sequences and mappings.
    open: Vec<usize>,
    /// Parser anchor id → node.
    anchors: HashMap<usize, usize>,
    /// Set once the first document is complete.
    done: bool,
    error: Option<String>,
}

impl Builder {
    fn add(&mut self, node: Node, anchor: usize) -> usize {
        let id = self.doc.nodes.len();
        self.doc.nodes.push(node);
        if anchor != 0 {
            self.anchors.insert(anchor, id);
        }
        match self.open.last() {
            Some(&parent) => match &mut self.doc.nodes[parent] {
                Node::Seq(items) | Node::Map(items) => items.push(id),
                _ => unreachable!("only collections are open"),
            },
            None if self.doc.root.is_none() => self.doc.root = Some(id),
            None => {}
        }
        id
    }
}

impl EventReceiver for Builder {
    fn on_event(&mut self, event: Event) {
        if self.done || self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                self.add(Node::Scalar { text, plain, tag }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                let id = self.add(Node::Seq(Vec::new()), anchor);
                self.open.push(id);
            }
            Event::MappingStart(anchor, _) => {
                let id = self.add(Node::Map(Vec::new()), anchor);
                self.open.push(id);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.open.pop();
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor) {
                Some(&target) => {
                    self.add(Node::Alias(target), 0);
                }
                None => self.error = Some("an alias names an unknown anchor".into()),
            },
            Event::DocumentEnd => self.done = self.doc.root.is_some(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

/// Parses the first document of `text` (yaml.v2's `Unmarshal` reads no other).
pub fn parse(text: &str) -> Result<Document, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| format!("not YAML: {e}"))?;
    match builder.error {
        Some(error) => Err(error),
        None => Ok(builder.doc),
    }
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

fn core_tag(tag: &Option<Tag>) -> Option<&str> {
    tag.as_ref()
        .filter(|t| t.handle == CORE_TAG)
        .map(|t| t.suffix.as_str())
}

/// What yaml.v2's resolver makes of a scalar.
fn resolve(text: &str, plain: bool, tag: &Option<Tag>) -> Result<Kind, String> {
    let bool_of = |text: &str| match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    };
    let is_null = |text: &str| matches!(text, "" | "~" | "null" | "Null" | "NULL");
    if tag.is_some() {
        return match core_tag(tag) {
            Some("bool") => bool_of(text)
                .map(Kind::Bool)
                .ok_or_else(|| format!("cannot decode {text:?} as a !!bool")),
            Some("null") => Ok(Kind::Null),
            _ => Ok(Kind::Str),
        };
    }
    Ok(match text {
        _ if !plain => Kind::Str,
        _ if is_null(text) => Kind::Null,
        _ => bool_of(text).map_or(Kind::Str, Kind::Bool),
    })
}

// yaml.v2's bound on alias expansion: once more than 100 decoded nodes came
// through aliases and more than 1000 were decoded, the share that came
// through aliases may not exceed 99% (falling to 10% for documents of
// millions of nodes).
const ALIAS_RATIO_RANGE_LOW: u64 = 400_000;
const ALIAS_RATIO_RANGE_HIGH: u64 = 4_000_000;

fn allowed_alias_ratio(decoded: u64) -> f64 {
    if decoded <= ALIAS_RATIO_RANGE_LOW {
        0.99
    } else if decoded >= ALIAS_RATIO_RANGE_HIGH {
        0.10
    } else {
        let range = (ALIAS_RATIO_RANGE_HIGH - ALIAS_RATIO_RANGE_LOW) as f64;
        0.99 - 0.89 * ((decoded - ALIAS_RATIO_RANGE_LOW) as f64 / range)
    }
}

/// Decodes nodes of one document as yaml.v2 decodes into `interface{}`.
pub struct Decoder<'a> {
    doc: &'a Document,
    decoded: u64,
    through_aliases: u64,
    alias_depth: u32,
    /// Anchored nodes being expanded, to refuse one that contains itself.
    expanding: Vec<usize>,
}

impl<'a> Decoder<'a> {
    /// A decoder of `doc`.
    pub fn new(doc: &'a Document) -> Decoder<'a> {
        Decoder {
            doc,
            decoded: 0,
            through_aliases: 0,
            alias_depth: 0,
            expanding: Vec::new(),
        }
    }

    fn count(&mut self) -> Result<(), String> {
        self.decoded += 1;
        if self.alias_depth > 0 {
            self.through_aliases += 1;
        }
        if self.through_aliases > 100
            && self.decoded > 1000
            && self.through_aliases as f64 / self.decoded as f64 > allowed_alias_ratio(self.decoded)
        {
            return Err(
                "document contains excessive aliasing (refused, as the registry's YAML reader refuses it)"
                    .into(),
            );
        }
        Ok(())
    }

    fn enter_alias(&mut self, target: usize) -> Result<(), String> {
        if self.expanding.contains(&target) {
            return Err("an anchor's value contains an alias of itself".into());
        }
        self.expanding.push(target);
        self.alias_depth += 1;
        Ok(())
    }

    fn leave_alias(&mut self) {
        self.expanding.pop();
        self.alias_depth -= 1;
    }

    /// The document's top-level mapping as yaml.v2 reads it into a struct:
    /// keys (as strings) and value nodes, merges expanded in place, in the
    /// order a struct's fields would be set (a later one replaces an earlier).
    pub fn top_level(&mut self) -> Result<Vec<(String, usize)>, String> {
        let Some(root) = self.doc.root else {
            return Ok(Vec::new());
        };
        let mut fields = Vec::new();
        self.struct_fields(root, &mut fields)?;
        Ok(fields)
    }

    fn struct_fields(&mut self, id: usize, out: &mut Vec<(String, usize)>) -> Result<(), String> {
        self.count()?;
        match &self.doc.nodes[id] {
            Node::Alias(target) => {
                let target = *target;
                self.enter_alias(target)?;
                let result = self.struct_fields(target, out);
                self.leave_alias();
                result
            }
            Node::Map(items) => {
                for pair in items.chunks(2) {
                    let [key, value] = [pair[0], pair[1]];
                    if self.is_merge(key) {
                        for source in self.merge_sources(value)? {
                            self.struct_fields(source, out)?;
                        }
                        continue;
                    }
                    let name = self
                        .decode(key)?
                        .as_go_string()
                        .ok_or("a top-level key is not a scalar")?;
                    out.push((name, value));
                }
                Ok(())
            }
            Node::Scalar { .. } if self.decode(id)?.is_null() => Ok(()),
            _ => Err("the document is not a mapping".into()),
        }
    }

    fn is_merge(&self, id: usize) -> bool {
        match &self.doc.nodes[id] {
            Node::Scalar { text, plain, tag } => {
                text == "<<" && ((*plain && tag.is_none()) || core_tag(tag) == Some("merge"))
            }
            _ => false,
        }
    }

    /// The nodes a merge key's value merges, in the order they are applied
    /// (so that, in a sequence, the earlier map is applied last and wins).
    fn merge_sources(&self, id: usize) -> Result<Vec<usize>, String> {
        let want_map = || "a merge key (<<) needs a map or a sequence of maps".to_string();
        let is_map = |id: usize| match &self.doc.nodes[id] {
            Node::Map(_) => true,
            Node::Alias(target) => matches!(self.doc.nodes[*target], Node::Map(_)),
            _ => false,
        };
        match &self.doc.nodes[id] {
            Node::Seq(items) => {
                if !items.iter().all(|&i| is_map(i)) {
                    return Err(want_map());
                }
                Ok(items.iter().rev().copied().collect())
            }
            _ if is_map(id) => Ok(vec![id]),
            _ => Err(want_map()),
        }
    }

    /// Decodes node `id` as into a Go `interface{}`.
    pub fn decode(&mut self, id: usize) -> Result<Value, String> {
        self.count()?;
        match &self.doc.nodes[id] {
            Node::Alias(target) => {
                let target = *target;
                self.enter_alias(target)?;
                let value = self.decode(target);
                self.leave_alias();
                value
            }
            Node::Scalar { text, plain, tag } => Ok(Value::Scalar(Scalar {
                kind: resolve(text, *plain, tag)?,
                text: text.clone(),
            })),
            Node::Seq(items) => {
                let items = items.clone();
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(self.decode(item)?);
                }
                Ok(Value::Seq(values))
            }
            Node::Map(_) => {
                let mut map = Map::default();
                self.mapping_into(id, &mut map)?;
                Ok(Value::Map(map))
            }
        }
    }

    /// Sets the keys of mapping `id` into `out`, as yaml.v2 does for a map.
    fn mapping_into(&mut self, id: usize, out: &mut Map) -> Result<(), String> {
        let Node::Map(items) = &self.doc.nodes[id] else {
            unreachable!("merge sources and mappings are maps");
        };
        for pair in items.clone().chunks(2) {
            let [key, value] = [pair[0], pair[1]];
            if self.is_merge(key) {
                for source in self.merge_sources(value)? {
                    self.merge_into(source, out)?;
                }
                continue;
            }
            let key = self.decode(key)?;
            if !matches!(key, Value::Scalar(_)) {
                return Err("a mapping key is itself a sequence or a mapping".into());
            }
            let value = self.decode(value)?;
            out.insert(key, value);
        }
        Ok(())
    }

    fn merge_into(&mut self, id: usize, out: &mut Map) -> Result<(), String> {
        self.count()?;
        match &self.doc.nodes[id] {
            Node::Alias(target) => {
                let target = *target;
                self.enter_alias(target)?;
                let result = self.merge_into(target, out);
                self.leave_alias();
                result
            }
            _ => self.mapping_into(id, out),
        }
    }
}

/// Decodes a whole text (the value of an environment override) as yaml.v2
/// decodes it into `interface{}`; an empty text is null.
pub fn decode_text(text: &str) -> Result<Value, String> {
    let doc = parse(text)?;
    match doc.root {
        Some(root) => Decoder::new(&doc).decode(root),
        None => Ok(Value::Scalar(Scalar {
            text: String::new(),
            kind: Kind::Null,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        decode_text(text).unwrap()
    }

    fn string(text: &str) -> Value {
        Value::Scalar(Scalar {
            text: text.into(),
            kind: Kind::Str,
        })
    }

    #[test]
    fn scalars_resolve_as_yaml_v2_resolves_them() {
        for (text, kind) in [
            ("yes", Kind::Bool(true)),
            ("y", Kind::Bool(true)),
            ("On", Kind::Bool(true)),
            ("off", Kind::Bool(false)),
            ("'true'", Kind::Str),
            ("!!str true", Kind::Str),
            ("!!bool yes", Kind::Bool(true)),
            ("~", Kind::Null),
            ("", Kind::Null),
            ("/srv", Kind::Str),
        ] {
            let kind_of = match value(text) {
                Value::Scalar(s) => s.kind,
                other => panic!("{text}: {other:?}"),
            };
            assert_eq!(kind_of, kind, "{text}");
        }
        assert!(decode_text("!!bool maybe").is_err());
    }

    #[test]
    fn merges_apply_where_they_stand_and_earlier_maps_win() {
        let Value::Map(m) = value("a: &a {k: 1}\nb: &b {k: 2}\nc: {<<: [*a, *b]}\n") else {
            panic!()
        };
        let Some(Value::Map(c)) = m.get_str("c") else {
            panic!()
        };
        assert_eq!(c.get_str("k"), Some(&value("1")));
        let Value::Map(m) = value("{k: explicit, <<: {k: merged}}") else {
            panic!()
        };
        assert_eq!(m.get_str("k"), Some(&string("merged")));
        let Value::Map(m) = value("{<<: {k: merged}, k: explicit}") else {
            panic!()
        };
        assert_eq!(m.get_str("k"), Some(&string("explicit")));
        assert!(decode_text("a: &a [1]\nb: {<<: *a}\n").is_err());
        assert!(decode_text("b: {<<: scalar}\n").is_err());
    }

    #[test]
    fn an_anchor_containing_itself_is_refused() {
        assert!(decode_text("a: &a [*a]\n").is_err());
    }
}
