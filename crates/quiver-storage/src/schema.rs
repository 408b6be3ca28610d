//! Collection schemas: dense vector fields and indexed payload fields, read from TOML or JSON.
//!
//! ```toml
//! [fields.emb]
//! type = "dense"
//! dim = 384
//! metric = "cosine"                 # cosine | dot | l2
//! index = { type = "hnsw", m = 16, ef_construction = 200 }   # or { type = "flat" }
//!
//! [fields.year]
//! type = "integer"                  # keyword | integer | float | bool | datetime
//! ```

use crate::doc::{DocId, Document, StoredDoc};
use crate::multi::MultiField;
use crate::text::TextField;
use crate::tiers::{CodecConfig, Rotation, VectorTier};
use crate::StorageError;
use quiver_index::HnswParams;
use quiver_linalg::Metric;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A collection's schema: named fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Fields by name.
    pub fields: BTreeMap<String, FieldSpec>,
    /// Rows kept in the mutable segment before it is sealed into an immutable segment.
    #[serde(default = "default_segment_rows")]
    pub mutable_max_rows: usize,
    /// Bytes (vectors, vector sets, payload JSON) kept in the mutable segment before it is sealed,
    /// whatever its row count: this bounds memory and the log a reader replays on open.
    #[serde(default = "default_segment_bytes")]
    pub mutable_max_bytes: usize,
    /// Fields added to a collection that already held documents, whose sealed segments are still
    /// being filled in (`Collection::add_field`): a segment written before the field was added
    /// lacks its files until the backfill installs them; queries on the field skip it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub backfill: BTreeSet<String>,
    /// Fields dropped whose files are still being removed from sealed segments
    /// (`Collection::drop_field`; finished on the next writable open after a crash). A name in
    /// this list cannot be added again until that is done.
    /// Keyed by the name its files carry (see [`FieldSpec::files_name`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropping: BTreeMap<String, FieldSpec>,
    /// Dense fields being switched to a new model (`Collection::begin_switch`): field →
    /// its *successor*, a field named `<field>~<n>` computed by the new model and backfilled
    /// like any added field. A successor is hidden from default-field resolution
    /// ([`Schema::user_dense_fields`]); when its backfill is complete the field takes its
    /// spec and files in one schema write (`Collection::finish_switch`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub successors: BTreeMap<String, String>,
    /// Successors ever made in this collection: a new one is `<field>~<made + 1>`, so a
    /// successor's name (and its files and partial backfill files) is never reused, even
    /// after a switch was cancelled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successors_made: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_segment_rows() -> usize {
    20_000
}

fn default_segment_bytes() -> usize {
    256 << 20
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum FieldSpec {
    /// One vector per document.
    Dense {
        /// Vector length.
        dim: usize,
        /// Similarity.
        #[serde(default = "default_metric")]
        metric: MetricName,
        /// Index built for sealed segments.
        #[serde(default)]
        index: IndexSpec,
        /// Embedding model that computes the vectors (see [`Embedding`]); absent: vectors are supplied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Payload text fields embedded by `model`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        embed: Vec<String>,
        /// Prefix for query texts.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        query_prefix: String,
        /// Prefix for document texts.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        document_prefix: String,
        /// Matryoshka prefix lengths (ascending); see [`crate::tiers`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        matryoshka: Vec<usize>,
        /// Compact codes kept in RAM for sealed segments; see [`crate::tiers`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        codecs: Vec<CodecConfig>,
        /// Where the full-precision vectors live.
        #[serde(default, skip_serializing_if = "VectorTier::is_default")]
        vectors: VectorTier,
        /// Rotation applied before prefixes are taken for codes (see [`crate::tiers`]).
        #[serde(default, skip_serializing_if = "Rotation::is_none")]
        rotation: Rotation,
        /// The name the field's segment files carry, when it is not the field's own: set
        /// when the field switched to a successor's vectors (`<field>~<n>`, see
        /// [`Schema::successors`]). Not written by users.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stored_as: Option<String>,
    },
    /// Many vectors per document, scored with MaxSim (see the `multi` module).
    Multi(crate::multi::MultiSpec),
    /// Exact-match strings (equality, in-set).
    Keyword,
    /// 64-bit integers (equality, in-set, range).
    Integer,
    /// Floats (range).
    Float,
    /// Booleans (equality).
    Bool,
    /// RFC 3339 timestamps (range, equality).
    Datetime,
    /// Text indexed for BM25 (see `text.rs`): `source` payload string fields (default: the
    /// payload field of this name), joined with a space.
    Text {
        /// Payload fields the text comes from; empty: the payload field named like this field.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        source: Vec<String>,
        /// Tokenizer, lowercase, stop words, stemmer.
        #[serde(default)]
        analyzer: quiver_text::AnalyzerSpec,
        /// BM25 `k1` and `b`.
        #[serde(default)]
        bm25: quiver_text::Bm25Params,
    },
}

/// A dense field's embedding model: when `model` is set, documents carry text in the payload
/// fields listed in `embed` (joined with a blank line) and the vectors are computed from them at
/// ingest; text queries are embedded with the same model. Storage only records this; the model
/// runs in the embedding layer (`quiver-embed`) above it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Embedding {
    /// Registry name of the model (e.g. `all-MiniLM-L6-v2`), or a local model directory.
    pub model: Option<String>,
    /// Payload text fields the vector is computed from.
    pub embed: Vec<String>,
    /// Prepended to query texts (e.g. `"query: "` for E5-style models).
    pub query_prefix: String,
    /// Prepended to document texts (e.g. `"passage: "`).
    pub document_prefix: String,
}

/// Metric name as written in schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricName {
    /// Cosine similarity (vectors are normalised at ingest).
    Cosine,
    /// Inner product.
    Dot,
    /// Euclidean distance.
    L2,
}

impl From<MetricName> for Metric {
    fn from(m: MetricName) -> Metric {
        match m {
            MetricName::Cosine => Metric::Cosine,
            MetricName::Dot => Metric::Dot,
            MetricName::L2 => Metric::L2,
        }
    }
}

fn default_metric() -> MetricName {
    MetricName::Cosine
}

/// The index a dense field gets in sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum IndexSpec {
    /// Exact scan.
    Flat,
    /// HNSW graph.
    Hnsw {
        /// Links per node.
        #[serde(default = "default_m")]
        m: usize,
        /// Build beam width.
        #[serde(default = "default_efc")]
        ef_construction: usize,
        /// Default query beam width.
        #[serde(default = "default_ef")]
        ef: usize,
    },
}

impl Default for IndexSpec {
    fn default() -> Self {
        IndexSpec::Hnsw {
            m: default_m(),
            ef_construction: default_efc(),
            ef: default_ef(),
        }
    }
}

fn default_m() -> usize {
    16
}
fn default_efc() -> usize {
    200
}
fn default_ef() -> usize {
    128
}

impl IndexSpec {
    /// HNSW parameters, if this is an HNSW index.
    pub fn hnsw_params(&self) -> Option<HnswParams> {
        match *self {
            IndexSpec::Flat => None,
            IndexSpec::Hnsw {
                m,
                ef_construction,
                ef,
            } => Some(HnswParams {
                m,
                ef_construction,
                ef_search: ef,
            }),
        }
    }
}

/// The payload index kinds, for fields that are not vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// See [`FieldSpec::Keyword`].
    Keyword,
    /// See [`FieldSpec::Integer`].
    Integer,
    /// See [`FieldSpec::Float`].
    Float,
    /// See [`FieldSpec::Bool`].
    Bool,
    /// See [`FieldSpec::Datetime`].
    Datetime,
}

impl PayloadKind {
    /// Schema name.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Keyword => "keyword",
            PayloadKind::Integer => "integer",
            PayloadKind::Float => "float",
            PayloadKind::Bool => "bool",
            PayloadKind::Datetime => "datetime",
        }
    }
}

/// A dense field, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseField {
    /// Field name.
    pub name: String,
    /// Vector length.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// Index for sealed segments.
    pub index: IndexSpec,
    /// The name its segment files carry (`vec.<stored>.f32`, ...): the field's own name
    /// unless it switched models (see [`FieldSpec::files_name`]).
    pub stored: String,
    /// Embedding model, if vectors are computed from text.
    pub embedding: Embedding,
    /// Matryoshka prefix lengths (ascending; may be empty).
    pub matryoshka: Vec<usize>,
    /// Compact codes kept for sealed segments.
    pub codecs: Vec<CodecConfig>,
    /// Where full-precision vectors live.
    pub vectors: VectorTier,
    /// Rotation applied before prefixes are taken.
    pub rotation: Rotation,
}

impl Schema {
    /// Parses TOML or JSON (chosen by the first non-blank character) and validates.
    pub fn parse(text: &str) -> Result<Schema, StorageError> {
        let schema: Schema = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| StorageError::Schema(format!("invalid JSON schema: {e}")))?
        } else {
            toml::from_str(text)
                .map_err(|e| StorageError::Schema(format!("invalid TOML schema: {e}")))?
        };
        schema.validate()?;
        Ok(schema)
    }

    /// Checks that the schema is usable: at least one field, names well-formed, dims and index
    /// parameters in range.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.fields.is_empty() {
            return Err(StorageError::Schema(
                "a schema needs at least one field".into(),
            ));
        }
        if self.mutable_max_rows == 0 {
            return Err(StorageError::Schema("mutable_max_rows must be >= 1".into()));
        }
        if self.mutable_max_bytes < 1 << 20 {
            return Err(StorageError::Schema(
                "mutable_max_bytes must be >= 1048576 (1 MiB)".into(),
            ));
        }
        for (name, f) in &self.fields {
            let successor = self.successors.values().any(|s| s == name);
            if !successor && !well_formed(name) {
                return Err(StorageError::Schema(format!(
                    "field name {name:?}: use letters, digits, '_', '-', '.'"
                )));
            }
            if let FieldSpec::Dense {
                dim,
                index,
                model,
                embed,
                matryoshka,
                codecs,
                stored_as,
                ..
            } = f
            {
                if let Some(s) = stored_as {
                    if generation(name, s).is_none() {
                        return Err(StorageError::Schema(format!(
                            "field {name:?}: stored_as {s:?} must be {name:?}~<n>"
                        )));
                    }
                }
                crate::tiers::validate(name, *dim, matryoshka, codecs)?;
                if model.is_some() == embed.is_empty() {
                    return Err(StorageError::Schema(format!(
                        "field {name:?}: `model` and `embed` (the text fields to embed) go together"
                    )));
                }
                for t in embed {
                    if self.fields.contains_key(t)
                        && !matches!(self.fields.get(t), Some(FieldSpec::Text { .. }))
                    {
                        return Err(StorageError::Schema(format!(
                            "field {name:?}: text field {t:?} must be a plain payload field, not a declared index field"
                        )));
                    }
                }
                if *dim == 0 || *dim > 65_536 {
                    return Err(StorageError::Schema(format!(
                        "field {name:?}: dim must be in 1..=65536, got {dim}"
                    )));
                }
                if let Some(p) = index.hnsw_params() {
                    p.validate()
                        .map_err(|e| StorageError::Schema(format!("field {name:?}: {e}")))?;
                }
            }
        }
        self.validate_multi()?;
        self.validate_text()?;
        if let Some(f) = self.backfill.iter().find(|f| !self.fields.contains_key(*f)) {
            return Err(StorageError::Schema(format!(
                "backfill names {f:?}, which is not a field of the schema"
            )));
        }
        let stored: BTreeSet<String> = self
            .fields
            .iter()
            .map(|(n, f)| f.files_name(n).to_string())
            .collect();
        if stored.len() != self.fields.len() {
            return Err(StorageError::Schema(
                "two fields' files carry the same name".into(),
            ));
        }
        if let Some(f) = self.dropping.keys().find(|f| stored.contains(*f)) {
            return Err(StorageError::Schema(format!(
                "field files {f:?} are both in the schema and being dropped"
            )));
        }
        for (base, succ) in &self.successors {
            let dense = |n: &str| matches!(self.fields.get(n), Some(FieldSpec::Dense { .. }));
            if !dense(base) || !dense(succ) || generation(base, succ).is_none() {
                return Err(StorageError::Schema(format!(
                    "successor {succ:?} of {base:?}: both must be dense fields of the schema, \
                     named {base:?}~<n>"
                )));
            }
        }
        Ok(())
    }

    /// A schema of the one field `name` (default segment bounds): what the field-wise helpers
    /// (`dense`, `text`, payload checks, index writers, embedding) need to work on that field
    /// alone.
    pub fn single(name: &str, spec: FieldSpec) -> Schema {
        Schema {
            fields: BTreeMap::from([(name.to_string(), spec)]),
            mutable_max_rows: default_segment_rows(),
            mutable_max_bytes: default_segment_bytes(),
            backfill: BTreeSet::new(),
            dropping: BTreeMap::new(),
            successors: BTreeMap::new(),
            successors_made: 0,
        }
    }

    /// Refuses what only the engine writes into a schema (a dense field's `stored_as`, the
    /// `successors` of fields switching models): a schema or field spec from a user must not
    /// carry them.
    pub fn check_user_written(&self) -> Result<(), StorageError> {
        for (name, spec) in &self.fields {
            if spec.files_name(name) != name {
                return Err(StorageError::Schema(format!(
                    "field {name:?}: `stored_as` is set by a model switch, not written"
                )));
            }
        }
        if !self.successors.is_empty() || self.successors_made != 0 {
            return Err(StorageError::Schema(
                "`successors` are made by a model switch (`begin_switch`), not written".into(),
            ));
        }
        Ok(())
    }

    /// Dense fields a query, document or listing names by default: all but the successors
    /// of fields switching models (see [`Schema::successors`]), in name order.
    pub fn user_dense_fields(&self) -> Vec<DenseField> {
        let mut all = self.dense_fields();
        all.retain(|f| !self.successors.values().any(|s| s == &f.name));
        all
    }

    /// This schema as seen by a sealed segment whose files are `has_file`: fields still being
    /// backfilled that the segment has no files of yet are left out, so the segment reads as
    /// not holding them (every other field's files must be there).
    pub(crate) fn for_segment(&self, has_file: impl Fn(&str) -> bool) -> Schema {
        let mut s = self.clone();
        for name in &self.backfill {
            let Some(spec) = self.fields.get(name) else {
                continue;
            };
            if !field_marker(spec.files_name(name), spec).is_some_and(|m| has_file(&m)) {
                s.fields.remove(name);
            }
        }
        s
    }

    /// Whether field `name` of kind `spec` has files in a sealed segment (dense, multi and text
    /// fields), and whether segment file `fname` is one of them.
    pub(crate) fn is_field_file(name: &str, spec: &FieldSpec, fname: &str) -> bool {
        let name = spec.files_name(name);
        match spec {
            FieldSpec::Dense { .. } => {
                fname == format!("vec.{name}.f32")
                    || fname == format!("hnsw.{name}.bin")
                    || fname == format!("rot.{name}.bin")
                    || fname
                        .strip_prefix(&format!("codes.{name}."))
                        .and_then(|rest| rest.strip_suffix(".bin"))
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            }
            FieldSpec::Multi(_) => {
                fname == format!("multi.{name}.f32")
                    || fname == format!("multi.{name}.idx")
                    || fname == format!("fde.{name}.f32")
                    || fname == format!("hnsw.fde.{name}.bin")
            }
            FieldSpec::Text { .. } => fname.starts_with(&format!("text.{name}/")),
            _ => false,
        }
    }

    /// Whether a field of this kind has files in sealed segments (dense, multi, text).
    pub fn has_segment_files(spec: &FieldSpec) -> bool {
        matches!(
            spec,
            FieldSpec::Dense { .. } | FieldSpec::Multi(_) | FieldSpec::Text { .. }
        )
    }

    /// Dense fields in name order.
    pub fn dense_fields(&self) -> Vec<DenseField> {
        self.fields
            .iter()
            .filter_map(|(name, f)| match f {
                FieldSpec::Dense {
                    dim,
                    metric,
                    index,
                    model,
                    embed,
                    query_prefix,
                    document_prefix,
                    matryoshka,
                    codecs,
                    vectors,
                    rotation,
                    stored_as,
                } => Some(DenseField {
                    name: name.clone(),
                    stored: stored_as.clone().unwrap_or_else(|| name.clone()),
                    dim: *dim,
                    metric: (*metric).into(),
                    index: *index,
                    embedding: Embedding {
                        model: model.clone(),
                        embed: embed.clone(),
                        query_prefix: query_prefix.clone(),
                        document_prefix: document_prefix.clone(),
                    },
                    matryoshka: matryoshka.clone(),
                    codecs: codecs.clone(),
                    vectors: *vectors,
                    rotation: *rotation,
                }),
                _ => None,
            })
            .collect()
    }

    /// The dense field called `name`.
    pub fn dense(&self, name: &str) -> Option<DenseField> {
        self.dense_fields().into_iter().find(|f| f.name == name)
    }

    /// Payload index kind of field `name`, if declared.
    pub fn payload_kind(&self, name: &str) -> Option<PayloadKind> {
        match self.fields.get(name)? {
            FieldSpec::Dense { .. } => None,
            FieldSpec::Multi(_) => None,
            FieldSpec::Text { .. } => None,
            FieldSpec::Keyword => Some(PayloadKind::Keyword),
            FieldSpec::Integer => Some(PayloadKind::Integer),
            FieldSpec::Float => Some(PayloadKind::Float),
            FieldSpec::Bool => Some(PayloadKind::Bool),
            FieldSpec::Datetime => Some(PayloadKind::Datetime),
        }
    }

    /// Declared payload fields and their kinds.
    pub fn payload_fields(&self) -> Vec<(String, PayloadKind)> {
        self.fields
            .keys()
            .filter_map(|n| self.payload_kind(n).map(|k| (n.clone(), k)))
            .collect()
    }

    /// JSON form (as stored in the collection directory).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Field names users write: letters, digits, '_', '-', '.' (a successor's `~<n>` is the
/// engine's).
fn well_formed(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// `n` when `name` is `base~<n>` (n >= 1) and `base` is a well-formed field name.
pub(crate) fn generation(base: &str, name: &str) -> Option<u32> {
    let n = name.strip_prefix(base)?.strip_prefix('~')?;
    let ok = well_formed(base) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    n.parse().ok().filter(|&g| ok && g >= 1)
}

impl FieldSpec {
    /// The name field `name`'s segment files carry: `stored_as` of a dense field that switched
    /// models, else `name`.
    pub fn files_name<'a>(&'a self, name: &'a str) -> &'a str {
        match self {
            FieldSpec::Dense {
                stored_as: Some(s), ..
            } => s,
            _ => name,
        }
    }
}

/// The file whose presence in a sealed segment means it holds the field whose files carry
/// `name` (`None`: payload fields, which live in `payload.bin`).
fn field_marker(name: &str, spec: &FieldSpec) -> Option<String> {
    match spec {
        FieldSpec::Dense { .. } => Some(format!("vec.{name}.f32")),
        FieldSpec::Multi(_) => Some(format!("multi.{name}.idx")),
        FieldSpec::Text { .. } => Some(format!("text.{name}/meta.json")),
        _ => None,
    }
}

/// Documents against the schema: validation and the record encoding (logic in `doc.rs`).
impl Schema {
    /// Validates `doc` and returns it ready to store: every dense field present with the right
    /// length and finite values (normalised for cosine), declared payload fields of the right type.
    pub fn prepare(&self, doc: Document) -> Result<(DocId, Document), StorageError> {
        crate::doc::prepare(self, doc)
    }

    /// Encodes a prepared document with its sequence number.
    pub(crate) fn encode(&self, seq: u64, doc: &Document) -> Vec<u8> {
        crate::doc::encode(self, seq, doc)
    }

    /// Decodes a record written by [`Schema::encode`].
    pub(crate) fn decode(
        &self,
        id: DocId,
        bytes: &[u8],
        file: &str,
    ) -> Result<StoredDoc, StorageError> {
        crate::doc::decode(self, id, bytes, file)
    }
}

/// Text fields of the schema (logic in `text.rs`).
impl Schema {
    /// Text fields in name order.
    pub fn text_fields(&self) -> Vec<TextField> {
        crate::text::text_fields(self)
    }

    /// The text field called `name`.
    pub fn text(&self, name: &str) -> Option<TextField> {
        crate::text::text(self, name)
    }

    /// Schema checks of text fields (called by [`Schema::validate`]).
    pub(crate) fn validate_text(&self) -> Result<(), StorageError> {
        crate::text::validate_text(self)
    }

    /// Ingest checks of text fields (called by [`Schema::prepare`]): every source value is a
    /// string, a list of strings, or null.
    pub(crate) fn check_text_payload(
        &self,
        id: &Option<DocId>,
        payload: &Map<String, Value>,
    ) -> Result<(), StorageError> {
        crate::text::check_text_payload(self, id, payload)
    }
}

/// Multi-vector fields of the schema (logic in `multi.rs`).
impl Schema {
    /// Multi fields in name order.
    pub fn multi_fields(&self) -> Vec<MultiField> {
        crate::multi::multi_fields(self)
    }

    /// The multi field called `name`.
    pub fn multi(&self, name: &str) -> Option<MultiField> {
        crate::multi::multi(self, name)
    }

    /// Checks the multi fields of a schema.
    pub(crate) fn validate_multi(&self) -> Result<(), StorageError> {
        crate::multi::validate_multi(self)
    }

    /// Validates a document's multi vectors: known fields, every multi field present with at least
    /// one vector of the right width, finite values (unit length for cosine), and no payload key
    /// named like a multi field.
    pub(crate) fn prepare_multi(&self, doc: &mut Document) -> Result<(), StorageError> {
        crate::multi::prepare_multi(self, doc)
    }

    /// Applies index-time pruning to a prepared document and records each field's raw count.
    pub(crate) fn prune_multi(&self, doc: &mut Document) -> Result<(), StorageError> {
        crate::multi::prune_multi(self, doc)
    }

    /// Appends the multi part of a record.
    pub(crate) fn encode_multi(&self, doc: &Document, out: &mut Vec<u8>) {
        crate::multi::encode_multi(self, doc, out)
    }

    /// Reads the multi part of a record starting at `pos`; returns the sets, raw counts and the
    /// position after them. `Err` carries a message for the caller's corruption error.
    #[allow(clippy::type_complexity)]
    pub(crate) fn decode_multi(
        &self,
        bytes: &[u8],
        pos: usize,
    ) -> Result<
        (
            BTreeMap<String, Vec<Vec<f32>>>,
            BTreeMap<String, u32>,
            usize,
        ),
        &'static str,
    > {
        crate::multi::decode_multi(self, bytes, pos)
    }
}
