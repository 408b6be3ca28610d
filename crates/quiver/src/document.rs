//! The document format every face reads and writes, and the rules for a document's text.
//!
//! A document in JSON (JSONL lines, HTTP bodies, Python dicts):
//!
//! ```json
//! {"id": 1, "payload": {"title": "...", "text": "..."}, "vectors": {"emb": [0.1, ...]},
//!  "multi": {"tok": [[0.1, ...], [0.3, ...]]}}
//! ```
//!
//! `id` is a non-negative integer or a non-empty string; `"vector": [...]` stands for `vectors`
//! when the schema has exactly one dense field. Vectors of model-backed fields may be left out:
//! the engine computes them from the payload ([`document_text`]).

use quiver_storage::{DocId, Document, Embedding, Schema};
use serde_json::{Map, Value};

/// A JSON document that does not parse: the key at fault (`"id"`, `"vectors.emb"`, ...) and what
/// is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The key at fault (empty for the whole object).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "field {:?}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for DocumentError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses one JSON document (see the module docs). Types, dimensions and finiteness are checked
/// later, against the schema, by the collection.
pub fn document_from_json(v: Value, schema: &Schema) -> Result<Document, DocumentError> {
    let Value::Object(mut o) = v else {
        return Err(err("", "a document must be a JSON object"));
    };
    let mut doc = Document::default();
    let id = o.remove("id").ok_or_else(|| err("id", "missing id"))?;
    doc.id = Some(DocId::from_json(&id).ok_or_else(|| {
        err(
            "id",
            format!("id must be a non-negative integer or a non-empty string, got {id}"),
        )
    })?);
    match o.remove("payload") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => doc.payload = m,
        Some(other) => {
            return Err(err(
                "payload",
                format!("payload must be an object, got {other}"),
            ))
        }
    }
    let mut raw: Vec<(String, Value)> = Vec::new();
    if let Some(v) = o.remove("vector") {
        match schema.user_dense_fields().as_slice() {
            [one] => raw.push((one.name.clone(), v)),
            _ => {
                return Err(err(
                    "vector",
                    "`vector` is only allowed when the schema has exactly one dense field; use `vectors`",
                ))
            }
        }
    }
    match o.remove("vectors") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => raw.extend(m),
        Some(_) => {
            return Err(err(
                "vectors",
                "vectors must be an object of field -> array",
            ))
        }
    }
    if let Some(m) = o.remove("multi") {
        parse_multi(m, &mut doc)?;
    }
    if let Some(k) = o.keys().next() {
        return Err(err(
            k.clone(),
            "unknown key (expected id, payload, vectors, vector, multi)",
        ));
    }
    for (name, v) in raw {
        let at = format!("vectors.{name}");
        let vector = numbers(&v).map_err(|m| err(at, m))?;
        doc.vectors.insert(name, vector);
    }
    Ok(doc)
}

/// A stored or returned document as JSON: `{"id", "payload"}`, plus `vectors` / `multi` when
/// `with_vectors`.
pub fn document_to_json(doc: &quiver_storage::StoredDoc, with_vectors: bool) -> Value {
    doc.to_json(with_vectors)
}

fn numbers(v: &Value) -> Result<Vec<f32>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| "must be an array of numbers".to_string())?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| format!("component {i} is not a number: {x}"))
        })
        .collect()
}

/// `multi`: field -> array of vectors.
fn parse_multi(v: Value, doc: &mut Document) -> Result<(), DocumentError> {
    let Value::Object(m) = v else {
        return Err(err(
            "multi",
            "multi must be an object of field -> array of vectors",
        ));
    };
    for (name, sets) in m {
        let at = format!("multi.{name}");
        let arr = sets.as_array().ok_or_else(|| {
            err(
                at.clone(),
                "must be an array of vectors (arrays of numbers)",
            )
        })?;
        let mut out = Vec::with_capacity(arr.len());
        for (j, v) in arr.iter().enumerate() {
            out.push(numbers(v).map_err(|m| err(at.clone(), format!("vector {j}: {m}")))?);
        }
        doc.multi.insert(name, out);
    }
    Ok(())
}

/// Parses a query's vector sets (`[[...], [...]]`).
pub fn parse_vector_sets(v: &Value) -> Result<Vec<Vec<f32>>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| "must be an array of vectors (arrays of numbers)".to_string())?;
    arr.iter()
        .enumerate()
        .map(|(j, x)| numbers(x).map_err(|m| format!("vector {j}: {m}")))
        .collect()
}

/// The text a document contributes to a model-backed field (dense or multi): the field's `embed`
/// payload fields that are present and non-empty, joined with a blank line, after the field's
/// document prefix. This is the one place that rule lives: ingest, backfills and evaluation all
/// call it.
pub fn document_text(
    embedding: &Embedding,
    payload: &Map<String, Value>,
) -> Result<String, String> {
    let mut parts = Vec::new();
    for name in &embedding.embed {
        match payload.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) => parts.push(s.as_str()),
            Some(other) => {
                return Err(format!("text field {name:?} must be a string, got {other}"))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "no text to embed: fields {:?} are missing or empty",
            embedding.embed
        ));
    }
    Ok(format!(
        "{}{}",
        embedding.document_prefix,
        parts.join("\n\n")
    ))
}

/// The text a query is embedded from for a model-backed field: the field's query prefix and the
/// query.
pub fn query_text(embedding: &Embedding, text: &str) -> String {
    format!("{}{}", embedding.query_prefix, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"},
                           "tok": {"type": "multi", "dim": 2, "metric": "dot"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_every_key_and_names_the_bad_one() {
        let d = document_from_json(
            serde_json::json!({"id": "a", "payload": {"x": 1}, "vector": [1, 2],
                               "multi": {"tok": [[1, 0], [0, 1]]}}),
            &schema(),
        )
        .unwrap();
        assert_eq!(d.id, Some(DocId::Str("a".into())));
        assert_eq!(d.vectors["emb"], vec![1.0, 2.0]);
        assert_eq!(d.multi["tok"].len(), 2);
        let e = document_from_json(
            serde_json::json!({"id": 1, "vectors": {"emb": [1, "x"]}}),
            &schema(),
        )
        .unwrap_err();
        assert_eq!(e.field, "vectors.emb");
        assert!(e.message.contains("component 1"), "{e}");
        let e =
            document_from_json(serde_json::json!({"id": 1, "extra": 2}), &schema()).unwrap_err();
        assert_eq!(e.field, "extra");
        let e = document_from_json(serde_json::json!({"id": -1}), &schema()).unwrap_err();
        assert_eq!(e.field, "id");
        let e = document_from_json(
            serde_json::json!({"id": 1, "multi": {"tok": [[1, 0], 3]}}),
            &schema(),
        )
        .unwrap_err();
        assert_eq!(e.field, "multi.tok");
    }

    #[test]
    fn document_text_joins_present_fields_after_the_prefix() {
        let e = Embedding {
            model: Some("m".into()),
            embed: vec!["title".into(), "text".into()],
            query_prefix: "query: ".into(),
            document_prefix: "passage: ".into(),
        };
        let p: Map<String, Value> =
            serde_json::from_str(r#"{"title": "T", "text": "body"}"#).unwrap();
        assert_eq!(document_text(&e, &p).unwrap(), "passage: T\n\nbody");
        let p: Map<String, Value> = serde_json::from_str(r#"{"title": " ", "text": "b"}"#).unwrap();
        assert_eq!(document_text(&e, &p).unwrap(), "passage: b");
        let p: Map<String, Value> = serde_json::from_str(r#"{"title": 3}"#).unwrap();
        assert!(document_text(&e, &p)
            .unwrap_err()
            .contains("must be a string"));
        assert!(document_text(&e, &Map::new())
            .unwrap_err()
            .contains("no text"));
        assert_eq!(query_text(&e, "q"), "query: q");
    }
}
