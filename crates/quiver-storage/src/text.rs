//! Text fields: payload text indexed for BM25 (`quiver-text`, tantivy).
//!
//! ```toml
//! [fields.body]
//! type = "text"
//! source = ["title", "text"]     # payload string fields, joined with a space; default: the
//!                                 # payload field named like this field ("body")
//! analyzer = { tokenizer = "standard", lowercase = true, stopwords = "english", stemmer = "porter" }
//! bm25 = { k1 = 0.9, b = 0.4 }
//! ```
//!
//! A source value may be a string, a list of strings (joined with a space) or absent/null (no
//! text); anything else is rejected at ingest, naming the document and field. The text itself
//! stays in the payload; the index holds only terms.
//!
//! Sealed segments get one tantivy index per text field in `text.<field>/` (written at seal
//! time, listed with lengths and xxh3 checksums in the segment's `meta.json` like every other
//! segment file); the mutable segment keeps an in-memory inverted index built with the same
//! analyzer, filled lazily by the first BM25 query after a write ([`MutableSegment::text_index`]).

use crate::doc::DocId;
use crate::schema::{FieldSpec, Schema};
use crate::{io_err, StorageError};
use quiver_text::{Analyzer, AnalyzerSpec, Bm25Params, SealedText};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A text field, resolved from the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TextField {
    /// Field name.
    pub name: String,
    /// Payload fields the text comes from (never empty: the field's own name by default).
    pub source: Vec<String>,
    /// Analyzer.
    pub analyzer: AnalyzerSpec,
    /// BM25 parameters.
    pub bm25: Bm25Params,
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|x| push_value(out, x)),
        _ => {}
    }
}

impl TextField {
    /// The text this field indexes for `payload`: its source values joined with a space.
    pub fn text_of(&self, payload: &Map<String, Value>) -> String {
        let mut out = String::new();
        for s in &self.source {
            if let Some(v) = payload.get(s) {
                push_value(&mut out, v);
            }
        }
        out
    }

    /// The analyzer, built.
    pub fn build_analyzer(&self) -> Analyzer {
        Analyzer::new(self.analyzer)
    }
}

fn text_dir_name(field: &str) -> String {
    format!("text.{field}")
}

/// Text fields in name order.
pub(crate) fn text_fields(schema: &Schema) -> Vec<TextField> {
    schema
        .fields
        .iter()
        .filter_map(|(name, f)| match f {
            FieldSpec::Text {
                source,
                analyzer,
                bm25,
            } => Some(TextField {
                name: name.clone(),
                source: if source.is_empty() {
                    vec![name.clone()]
                } else {
                    source.clone()
                },
                analyzer: *analyzer,
                bm25: *bm25,
            }),
            _ => None,
        })
        .collect()
}

/// The text field called `name`.
pub(crate) fn text(schema: &Schema, name: &str) -> Option<TextField> {
    schema.text_fields().into_iter().find(|f| f.name == name)
}

/// Schema checks of text fields (called by [`Schema::validate`]).
pub(crate) fn validate_text(schema: &Schema) -> Result<(), StorageError> {
    // A model may embed a text field only when that field's text is its own payload field.
    for (name, f) in &schema.fields {
        if let FieldSpec::Dense { embed, .. } = f {
            for t in embed {
                if let Some(FieldSpec::Text { source, .. }) = schema.fields.get(t) {
                    if !source.is_empty() {
                        return Err(StorageError::Schema(format!(
                            "field {name:?}: embeds text field {t:?}, whose text comes from {source:?}; embed those payload fields instead"
                        )));
                    }
                }
            }
        }
    }
    for (name, f) in &schema.fields {
        let FieldSpec::Text { source, bm25, .. } = f else {
            continue;
        };
        let err = |msg: String| StorageError::Schema(format!("field {name:?}: {msg}"));
        bm25.validate().map_err(|e| err(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for s in source {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(err(format!(
                    "source field {s:?}: use letters, digits, '_', '-', '.'"
                )));
            }
            if !seen.insert(s) {
                return Err(err(format!("source field {s:?} is listed twice")));
            }
            if s == name {
                return Err(err(format!(
                    "source {s:?} is the field itself; leave `source` out to index the payload field {name:?}"
                )));
            }
            match schema.fields.get(s) {
                None | Some(FieldSpec::Keyword) => {}
                Some(_) => {
                    return Err(err(format!(
                        "source {s:?} must be a payload string field (plain or keyword), not a declared {} field",
                        match schema.fields.get(s) {
                            Some(FieldSpec::Dense { .. }) => "dense",
                            Some(FieldSpec::Text { .. }) => "text",
                            _ => "non-string",
                        }
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Ingest checks of text fields (called by [`Schema::prepare`]): every source value is a
/// string, a list of strings, or null.
pub(crate) fn check_text_payload(
    schema: &Schema,
    id: &Option<DocId>,
    payload: &Map<String, Value>,
) -> Result<(), StorageError> {
    for f in schema.text_fields() {
        for s in &f.source {
            let ok = match payload.get(s) {
                None | Some(Value::Null) | Some(Value::String(_)) => true,
                Some(Value::Array(items)) => items.iter().all(Value::is_string),
                Some(_) => false,
            };
            if !ok {
                return Err(StorageError::InvalidDocument {
                    id: id
                        .as_ref()
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "<none>".into()),
                    field: s.clone(),
                    msg: format!(
                        "text field {:?} indexes this value: expected a string, a list of strings or null",
                        f.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A file written into a segment directory: (relative name, bytes, xxh3-64 hex).
pub(crate) type WrittenFile = (String, u64, String);

/// Writes the text indexes of a new segment into `seg_dir` (rows in `payloads` order), fsyncs
/// them and returns every file with its length and checksum for the segment's `meta.json`.
pub(crate) fn write_text_indexes(
    schema: &Schema,
    seg_dir: &Path,
    payloads: &[Map<String, Value>],
) -> Result<Vec<WrittenFile>, StorageError> {
    let mut out = Vec::new();
    for f in schema.text_fields() {
        let dname = text_dir_name(&f.name);
        let dir = seg_dir.join(&dname);
        let texts: Vec<String> = payloads.iter().map(|p| f.text_of(p)).collect();
        SealedText::write(&dir, &f.build_analyzer(), &texts).map_err(|e| StorageError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let fname = entry.file_name().to_string_lossy().to_string();
            if entry.path().is_file() && !fname.ends_with(".lock") {
                names.push(fname);
            }
        }
        names.sort();
        for fname in names {
            let path = dir.join(&fname);
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            std::fs::File::open(&path)
                .and_then(|fh| fh.sync_all())
                .map_err(io_err(&path))?;
            out.push((
                format!("{dname}/{fname}"),
                bytes.len() as u64,
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
            ));
        }
        crate::segment::sync_dir(&dir)?;
    }
    Ok(out)
}

/// Opens the text indexes of a segment (its files were verified against `meta.json` already).
pub(crate) fn open_text_indexes(
    schema: &Schema,
    seg_dir: &Path,
    rows: usize,
) -> Result<BTreeMap<String, SealedText>, StorageError> {
    let mut out = BTreeMap::new();
    for f in schema.text_fields() {
        let dir = seg_dir.join(text_dir_name(&f.name));
        if !dir.join("meta.json").is_file() {
            return Err(StorageError::Corrupt {
                file: dir.display().to_string(),
                msg: "text index missing from segment".into(),
            });
        }
        let t = SealedText::open(&dir, &f.build_analyzer(), rows).map_err(|e| {
            StorageError::Corrupt {
                file: dir.display().to_string(),
                msg: e.to_string(),
            }
        })?;
        out.insert(f.name, t);
    }
    Ok(out)
}

/// Sizes of one text field in a snapshot, for `collection info`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TextFieldStats {
    /// Field name.
    pub field: String,
    /// Visible documents with at least one term.
    pub docs: u64,
    /// Average number of terms of those documents.
    pub avg_len: f64,
    /// Distinct terms per segment (sealed segments by name, then `mutable`); a term present in
    /// several segments counts in each.
    pub terms: Vec<(String, usize)>,
}
