//! Documents: a user id (integer or string), a JSON payload and named vectors; their validation
//! against a schema and their binary encoding.
//!
//! ```text
//! record = seq u64 LE | payload_len u32 LE | payload (JSON) | vectors (f32 LE, dense fields in name order)
//! key    = 0x00 u64 BE (integer id)  |  0x01 UTF-8 bytes (string id)
//! ```

use crate::schema::{PayloadKind, Schema};
use crate::StorageError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Longest string id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// A document's user-facing id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DocId {
    /// A non-negative integer id.
    Int(u64),
    /// A string id.
    Str(String),
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::Int(i) => write!(f, "{i}"),
            DocId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl DocId {
    /// Key bytes (ordered: integers before strings, integers numerically).
    pub fn to_key(&self) -> Vec<u8> {
        match self {
            DocId::Int(i) => {
                let mut k = vec![0u8];
                k.extend_from_slice(&i.to_be_bytes());
                k
            }
            DocId::Str(s) => {
                let mut k = vec![1u8];
                k.extend_from_slice(s.as_bytes());
                k
            }
        }
    }

    /// Inverse of [`DocId::to_key`].
    pub fn from_key(k: &[u8]) -> Result<DocId, StorageError> {
        match k.split_first() {
            Some((0, rest)) if rest.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(rest);
                Ok(DocId::Int(u64::from_be_bytes(a)))
            }
            Some((1, rest)) => String::from_utf8(rest.to_vec())
                .map(DocId::Str)
                .map_err(|_| StorageError::Corrupt {
                    file: "id key".into(),
                    msg: "invalid UTF-8 in string id".into(),
                }),
            _ => Err(StorageError::Corrupt {
                file: "id key".into(),
                msg: format!("bad id key of {} bytes", k.len()),
            }),
        }
    }

    /// Parses a JSON value as an id: a non-negative integer or a non-empty string.
    pub fn from_json(v: &Value) -> Option<DocId> {
        match v {
            Value::Number(n) => n.as_u64().map(DocId::Int),
            Value::String(s) if !s.is_empty() => Some(DocId::Str(s.clone())),
            _ => None,
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            DocId::Int(i) => Value::from(*i),
            DocId::Str(s) => Value::from(s.clone()),
        }
    }
}

/// A document as written by users.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Document {
    /// The id; upserting an existing id replaces that document.
    pub id: Option<DocId>,
    /// Free-form JSON object; declared payload fields are type-checked and indexed.
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// Vectors by dense field name.
    #[serde(default)]
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Vector sets by multi field name (see the `multi` module).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub multi: BTreeMap<String, Vec<Vec<f32>>>,
    /// Per multi field, how many vectors the document had before index-time pruning (set by the
    /// collection at upsert; not part of the JSON input). A field listed here is taken as
    /// pruned already and is not pruned again (a stored document written back).
    #[serde(skip)]
    pub multi_raw: BTreeMap<String, u32>,
}

/// A stored document as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    /// Id.
    pub id: DocId,
    /// Sequence number of the write that stored this version.
    pub seq: u64,
    /// Payload.
    pub payload: Map<String, Value>,
    /// Vectors by dense field name (unit length for cosine fields).
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Vector sets by multi field name (after pruning).
    pub multi: BTreeMap<String, Vec<Vec<f32>>>,
    /// Per multi field, vectors before pruning.
    pub multi_raw: BTreeMap<String, u32>,
}

impl StoredDoc {
    /// The document to upsert to store this one again (possibly edited): its payload, its
    /// vectors and its vector sets as stored, already pruned, so nothing is recomputed.
    pub fn into_document(self) -> Document {
        Document {
            id: Some(self.id),
            payload: self.payload,
            vectors: self.vectors,
            multi: self.multi,
            multi_raw: self.multi_raw,
        }
    }

    /// JSON form: `{"id", "payload", "vectors"}`.
    pub fn to_json(&self, with_vectors: bool) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), self.id.to_json());
        o.insert("payload".into(), Value::Object(self.payload.clone()));
        if with_vectors {
            let v: Map<String, Value> = self
                .vectors
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            o.insert("vectors".into(), Value::Object(v));
            if !self.multi.is_empty() {
                let m: Map<String, Value> = self
                    .multi
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                o.insert("multi".into(), Value::Object(m));
            }
        }
        Value::Object(o)
    }
}

fn invalid(id: &Option<DocId>, field: &str, msg: impl Into<String>) -> StorageError {
    StorageError::InvalidDocument {
        id: id
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "<none>".into()),
        field: field.to_string(),
        msg: msg.into(),
    }
}

/// Parses an RFC 3339 timestamp (or a date `YYYY-MM-DD`) to seconds since the epoch.
pub fn parse_datetime(s: &str) -> Option<f64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 * 1e-9);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp() as f64)
}

pub(crate) fn check_payload_value(kind: PayloadKind, v: &Value) -> Result<(), String> {
    let one = |x: &Value| -> Result<(), String> {
        let ok = match kind {
            PayloadKind::Keyword => x.is_string(),
            PayloadKind::Integer => x.as_i64().is_some(),
            PayloadKind::Float => x.as_f64().is_some(),
            PayloadKind::Bool => x.is_boolean(),
            PayloadKind::Datetime => x.as_str().and_then(parse_datetime).is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {} (or a list of them, or null), got {x}",
                kind.name()
            ))
        }
    };
    match v {
        Value::Null => Ok(()),
        Value::Array(items) => items.iter().try_for_each(one),
        x => one(x),
    }
}

/// Validates `doc` and returns it ready to store: every dense field present with the right
/// length and finite values (normalised for cosine), declared payload fields of the right type.
pub(crate) fn prepare(
    schema: &Schema,
    mut doc: Document,
) -> Result<(DocId, Document), StorageError> {
    let id = doc
        .id
        .clone()
        .ok_or_else(|| invalid(&None, "id", "missing id"))?;
    if let DocId::Str(s) = &id {
        if s.len() > MAX_ID_BYTES {
            let msg = format!(
                "string id of {} bytes; the limit is {MAX_ID_BYTES}",
                s.len()
            );
            return Err(invalid(&None, "id", msg));
        }
    }
    for name in doc.vectors.keys() {
        if schema.dense(name).is_none() {
            return Err(invalid(
                &doc.id,
                name,
                "unknown vector field (not a dense field of the schema)",
            ));
        }
    }
    for f in schema.dense_fields() {
        let v = doc
            .vectors
            .get_mut(&f.name)
            .ok_or_else(|| invalid(&doc.id, &f.name, "missing vector"))?;
        if v.len() != f.dim {
            return Err(invalid(
                &doc.id,
                &f.name,
                format!("wrong dimension: expected {}, got {}", f.dim, v.len()),
            ));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(invalid(
                &doc.id,
                &f.name,
                format!(
                    "component {i} is {} (NaN and infinity are not allowed)",
                    v[i]
                ),
            ));
        }
        if f.metric.normalizes() && !quiver_linalg::normalize(v) {
            return Err(invalid(
                &doc.id,
                &f.name,
                "zero vector cannot be used with the cosine metric",
            ));
        }
    }
    schema.prepare_multi(&mut doc)?;
    for (name, value) in &doc.payload {
        if let Some(kind) = schema.payload_kind(name) {
            check_payload_value(kind, value).map_err(|m| invalid(&doc.id, name, m))?;
        } else if schema.dense(name).is_some() {
            return Err(invalid(
                &doc.id,
                name,
                "payload key collides with a dense field name",
            ));
        }
    }
    schema.check_text_payload(&doc.id, &doc.payload)?;
    Ok((id, doc))
}

/// Encodes a prepared document with its sequence number.
pub(crate) fn encode(schema: &Schema, seq: u64, doc: &Document) -> Vec<u8> {
    let payload = serde_json::to_vec(&doc.payload).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(
        12 + payload.len() + doc.vectors.values().map(|v| v.len() * 4).sum::<usize>(),
    );
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    for f in schema.dense_fields() {
        if let Some(v) = doc.vectors.get(&f.name) {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    schema.encode_multi(doc, &mut out);
    out
}

/// Decodes a record written by [`Schema::encode`].
pub(crate) fn decode(
    schema: &Schema,
    id: DocId,
    bytes: &[u8],
    file: &str,
) -> Result<StoredDoc, StorageError> {
    let corrupt = |msg: &str| StorageError::Corrupt {
        file: file.to_string(),
        msg: format!("record of {id}: {msg}"),
    };
    if bytes.len() < 12 {
        return Err(corrupt("truncated header"));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    let seq = u64::from_le_bytes(a);
    let plen = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let pend = 12usize
        .checked_add(plen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| corrupt("payload length out of range"))?;
    let payload: Map<String, Value> = serde_json::from_slice(&bytes[12..pend])
        .map_err(|_| corrupt("payload is not a JSON object"))?;
    let mut vectors = BTreeMap::new();
    let mut pos = pend;
    for f in schema.dense_fields() {
        let end = pos + f.dim * 4;
        let raw = bytes
            .get(pos..end)
            .ok_or_else(|| corrupt("vector data truncated"))?;
        vectors.insert(
            f.name.clone(),
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        pos = end;
    }
    let (multi, multi_raw, pos) = schema.decode_multi(bytes, pos).map_err(corrupt)?;
    if pos != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(StoredDoc {
        id,
        seq,
        payload,
        vectors,
        multi,
        multi_raw,
    })
}
