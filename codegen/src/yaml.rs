//! A YAML document as a tree of nodes that remember where they came from.
//!
//! The tree is read with serde-saphyr's `Spanned` so every scalar, sequence
//! and mapping keeps its line, column and byte offset. Mappings keep their
//! entries in file order, duplicates included, so the checker can report
//! duplicate keys itself, at the second key.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::ast::Pos;

/// One YAML node with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What kind of YAML value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (strings, integers, booleans), e.g. for map keys.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sp = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        let loc = sp.referenced;
        let span = loc.span();
        Ok(Node {
            value: sp.value,
            pos: Pos {
                line: loc.line() as u32,
                col: loc.column() as u32,
                offset: span.byte_offset().unwrap_or(0) as usize,
            },
        })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// A YAML syntax error: message and 1-based line and column.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub line: u32,
    pub col: u32,
}

/// Read a whole document. An empty document is a `Null` node.
pub fn load(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Ok(Node {
            value: Value::Null,
            pos: Pos {
                line: 1,
                col: 1,
                offset: 0,
            },
        }),
        Err(e) => {
            let (line, col) = e.location().map_or((1, 1), |l| {
                (l.line().max(1) as u32, l.column().max(1) as u32)
            });
            let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off, };
            let message = e.render_with_options(opts);
            Err(SyntaxError { message, line, col })
        }
    }
}
