//! A staged row's properties as the JSON object text the store reads, written straight from
//! the normalized columns: no map and no JSON value per property, so staging a wide row costs
//! one buffer and a list of names.

use bytes::BufMut;
use serde::Serialize;
use serde_json::Value;
use sluice_proto::PropertyType;
use std::error::Error;
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
    /// The value's JSON text in the object's text.
    pub span: Range<usize>,
}

/// The properties a row sets: a JSON object (its text without the closing brace), each name
/// in it once, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Props {
    json: Vec<u8>,
    fields: Vec<Field>,
}

impl Default for Props {
    fn default() -> Self {
        Props::with_capacity(2)
    }
}

impl Props {
    /// Starts an object with room for `capacity` bytes of text.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut json = Vec::with_capacity(capacity);
        json.push(b'{');
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
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.json.len() > 1 {
            self.json.push(b',');
        }
        write_json(&mut self.json, &*name);
        self.json.push(b':');
        let start = self.json.len();
        write(&mut self.json);
        let span = start..self.json.len();
        self.fields.push(Field { name, kind, span });
    }

    /// Adds a property whose value is `value` serialized as JSON (a string, a number, a JSON
    /// value).
    pub fn push<T: Serialize + ?Sized>(
        &mut self,
        name: Arc<str>,
        kind: Option<PropertyType>,
        value: &T,
    ) {
        self.push_with(name, kind, |out| write_json(out, value));
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

    /// A field's value as JSON.
    pub fn value(&self, field: &Field) -> Value {
        serde_json::from_slice(&self.json[field.span.clone()]).unwrap_or(Value::Null)
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
}

/// Appends `value` as JSON; writing to memory cannot fail, and these values always serialize.
pub fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("a string, number or JSON value serializes");
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
        out.put_slice(&self.json);
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
        let text = |props: &Props| {
            let mut out = bytes::BytesMut::new();
            props.to_sql(&Type::JSONB, &mut out).unwrap();
            assert_eq!(out[0], 1, "jsonb's binary version");
            serde_json::from_slice::<Value>(&out[1..]).unwrap()
        };
        let mut props = Props::default();
        props.push(
            Arc::from("name"),
            Some(PropertyType::String),
            "A \"quoted\"\n\u{1}é",
        );
        props.push_with(Arc::from("n"), Some(PropertyType::Integer), |o| {
            o.push(b'1')
        });
        assert_eq!(
            text(&props),
            serde_json::json!({"name": "A \"quoted\"\n\u{1}é", "n": 1})
        );
        props.replace("name");
        props.push(
            Arc::from("name"),
            Some(PropertyType::Json),
            &serde_json::json!({"a": [1.5]}),
        );
        assert_eq!(props.fields().len(), 2);
        let expected = serde_json::json!({"n": 1, "name": {"a": [1.5]}});
        assert_eq!(props.to_value(), expected);
        assert_eq!(
            text(&props),
            expected,
            "the store keeps the last value of a name"
        );
        assert_eq!(text(&Props::default()), serde_json::json!({}));
    }
}
