//! A staged row's properties as the JSON object text the store reads, written straight from
//! the normalized columns: no map and no JSON value per property, so staging a wide row costs
//! one buffer and a list of names.

use bytes::BufMut;
use serde_json::Value;
use sluice_proto::PropertyType;
use std::error::Error;
use std::fmt::Write;
use std::ops::Range;
use std::sync::Arc;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// One property of a row: its name, the type its value is checked as against the schema
/// registry (none for a JSON null), and where its value sits in the object text.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The property's name, shared by every row of a chunk when it is mapped or a constant.
    pub name: Arc<str>,
    /// The declared type of a mapped property, the JSON value's own type otherwise.
    pub kind: Option<PropertyType>,
    /// The value's JSON text in [`Props::json`].
    pub span: Range<usize>,
}

/// The properties a row sets: a JSON object, each name in it once, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Props {
    json: String,
    fields: Vec<Field>,
}

impl Default for Props {
    fn default() -> Self {
        Props {
            json: String::from("{"),
            fields: Vec::new(),
        }
    }
}

impl Props {
    /// Starts an object with room for `capacity` bytes of text.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut json = String::with_capacity(capacity);
        json.push('{');
        Props {
            json,
            fields: Vec::new(),
        }
    }

    /// Adds a property whose value `write` appends as JSON text; the caller knows the name is
    /// not there yet (see [`Props::replace`]).
    pub fn push_with(
        &mut self,
        name: Arc<str>,
        kind: Option<PropertyType>,
        write: impl FnOnce(&mut String),
    ) {
        if self.json.len() > 1 {
            self.json.push(',');
        }
        write_string(&mut self.json, &name);
        self.json.push(':');
        let start = self.json.len();
        write(&mut self.json);
        let span = start..self.json.len();
        self.fields.push(Field { name, kind, span });
    }

    /// Adds a property with a JSON value.
    pub fn push_value(&mut self, name: Arc<str>, kind: Option<PropertyType>, value: &Value) {
        self.push_with(name, kind, |out| {
            write!(out, "{value}").expect("writes to a string")
        });
    }

    /// Adds a property with a string value.
    pub fn push_str(&mut self, name: Arc<str>, kind: Option<PropertyType>, value: &str) {
        self.push_with(name, kind, |out| write_string(out, value));
    }

    /// Forgets the field of `name`, if there is one, so that a value added next replaces it:
    /// the store keeps the last of a name's values in the text.
    pub fn replace(&mut self, name: &str) {
        self.fields.retain(|f| &*f.name != name);
    }

    /// The fields, in the order they were added.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Whether the row sets no property.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// A field's value as JSON.
    pub fn value(&self, field: &Field) -> Value {
        serde_json::from_str(&self.json[field.span.clone()]).unwrap_or(Value::Null)
    }

    /// The object as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|f| (f.name.to_string(), self.value(f)))
                .collect(),
        )
    }

    /// The object's text.
    pub fn text(&self) -> String {
        format!("{}}}", self.json)
    }
}

/// Appends `value` as a JSON string, quoted and escaped.
pub fn write_string(out: &mut String, value: &str) {
    out.push('"');
    let mut from = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[from..at]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        from = at + 1;
    }
    out.push_str(&value[from..]);
    out.push('"');
}

/// The object is written as `jsonb` in binary COPY (a version byte and the text) without
/// being parsed into a value first.
impl ToSql for Props {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.json.as_bytes());
        out.put_u8(b'}');
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_json_of_the_fields_and_a_later_value_replaces_an_earlier() {
        let mut props = Props::default();
        props.push_str(
            Arc::from("name"),
            Some(PropertyType::String),
            "A \"quoted\"\n\u{1}é",
        );
        props.push_with(Arc::from("n"), Some(PropertyType::Integer), |o| o.push('1'));
        props.replace("name");
        props.push_value(
            Arc::from("name"),
            Some(PropertyType::Json),
            &serde_json::json!({"a": [1.5]}),
        );
        let text = props.text();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["n"], 1);
        assert_eq!(props.fields().len(), 2);
        assert_eq!(
            props.to_value(),
            serde_json::json!({"n": 1, "name": {"a": [1.5]}})
        );
        let mut lone = Props::default();
        lone.push_str(Arc::from("s"), None, "A \"quoted\"\n\u{1}é");
        let back: Value = serde_json::from_str(&lone.text()).unwrap();
        assert_eq!(back["s"], "A \"quoted\"\n\u{1}é");
        assert_eq!(Props::default().text(), "{}");
    }
}
