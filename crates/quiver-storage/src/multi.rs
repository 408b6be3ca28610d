//! `multi` fields: a *set* of vectors per document (per-token embeddings, ColBERT-style), scored
//! with MaxSim and indexed through MUVERA fixed-dimensional encodings (`quiver_index::multi`).
//!
//! ```toml
//! [fields.tok]
//! type = "multi"
//! dim = 384
//! metric = "cosine"                     # cosine | dot
//! model = "all-MiniLM-L6-v2"            # optional: token vectors computed from `embed` text fields
//! embed = ["title", "text"]
//! drop_special = true                   # drop [CLS]/[SEP] token vectors (model fields)
//! drop_punctuation = false              # drop punctuation-only tokens (model fields)
//! muvera = { k_sim = 5, d_proj = 16, r_reps = 20, d_final = 0, seed = 42, fill_empty = true }
//! index = { type = "hnsw", m = 16, ef_construction = 200 }   # over the FDEs; or { type = "flat" }
//! prune = { fraction = 0.33 }           # or { count = 32 }: per-document k-means at upsert
//! ```
//!
//! Storage layout:
//!
//! ```text
//! record (doc.rs)   ... dense vectors | per multi field, in name order: raw u32 | n u32 | n·dim f32
//! segment files     multi.<f>.f32        all vectors of all rows, row-major, mmap-ed
//!                   multi.<f>.idx        (rows+1) u64 row offsets (in vectors) | rows u32 raw counts
//!                   fde.<f>.f32          rows × FDE dim document encodings (when MUVERA is on)
//!                   hnsw.fde.<f>.bin     HNSW over the FDEs (inner product)
//! ```
//!
//! `raw` is how many vectors a document arrived with, before index-time pruning; `collection info`
//! reports it beside the vectors kept. MUVERA parameters are written into `schema.json` in full,
//! so encodings never change under a stored collection.

use crate::doc::Document;
use crate::schema::{Embedding, FieldSpec, IndexSpec, MetricName, Schema};
use crate::StorageError;
use quiver_index::multi::muvera::{FdeEncoder, FdeParams};
use quiver_index::{HnswParams, MultiVectorsBuf, Vectors};
use quiver_linalg::Metric;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Most vectors one document may carry in one multi field.
pub const MAX_MULTI_VECTORS: usize = 1 << 16;

/// The schema entry of a `multi` field (see the module docs for the TOML form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiSpec {
    /// Width of each vector.
    pub dim: usize,
    /// `cosine` (vectors normalised at ingest and query) or `dot`.
    #[serde(default = "default_metric")]
    pub metric: MetricName,
    /// Embedding model computing token vectors from `embed`; absent: vectors are supplied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Payload text fields whose tokens are embedded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embed: Vec<String>,
    /// Prefix for query texts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query_prefix: String,
    /// Prefix for document texts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub document_prefix: String,
    /// Model fields: drop the special tokens' vectors (`[CLS]`, `[SEP]`).
    #[serde(default = "yes")]
    pub drop_special: bool,
    /// Model fields: drop vectors of tokens that are only punctuation.
    #[serde(default)]
    pub drop_punctuation: bool,
    /// MUVERA encodings.
    #[serde(default)]
    pub muvera: MuveraSpec,
    /// Index over the encodings in sealed segments.
    #[serde(default)]
    pub index: IndexSpec,
    /// Index-time pruning by per-document k-means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSpec>,
}

fn default_metric() -> MetricName {
    MetricName::Cosine
}
fn yes() -> bool {
    true
}

/// MUVERA parameters as written in schemas (see [`FdeParams`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuveraSpec {
    /// Build encodings and their index at seal (otherwise multi search is exact MaxSim only).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// SimHash bits per repetition.
    #[serde(default = "d_k_sim")]
    pub k_sim: u32,
    /// Inner projection width; 0 = identity.
    #[serde(default = "d_d_proj")]
    pub d_proj: usize,
    /// Repetitions.
    #[serde(default = "d_r_reps")]
    pub r_reps: usize,
    /// Final projection width; 0 = none.
    #[serde(default)]
    pub d_final: usize,
    /// Seed.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Fill empty document buckets.
    #[serde(default = "yes")]
    pub fill_empty: bool,
}

fn d_k_sim() -> u32 {
    5
}
fn d_d_proj() -> usize {
    16
}
fn d_r_reps() -> usize {
    20
}
fn d_seed() -> u64 {
    42
}

impl Default for MuveraSpec {
    fn default() -> Self {
        MuveraSpec {
            enabled: true,
            k_sim: d_k_sim(),
            d_proj: d_d_proj(),
            r_reps: d_r_reps(),
            d_final: 0,
            seed: d_seed(),
            fill_empty: true,
        }
    }
}

impl MuveraSpec {
    /// Encoder parameters, or `None` when MUVERA is off.
    pub fn params(&self) -> Option<FdeParams> {
        self.enabled.then_some(FdeParams {
            k_sim: self.k_sim,
            d_proj: (self.d_proj > 0).then_some(self.d_proj),
            r_reps: self.r_reps,
            d_final: (self.d_final > 0).then_some(self.d_final),
            seed: self.seed,
            fill_empty: self.fill_empty,
        })
    }
}

/// Index-time pruning: each document's vectors are clustered by k-means into
/// `ceil(fraction · n)` (or `count`) centroids, which are stored instead (never more than `n`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSpec {
    /// Keep this fraction of each document's vectors (0 < fraction <= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f32>,
    /// Keep at most this many vectors per document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Lloyd iterations.
    #[serde(default = "d_iters")]
    pub iters: usize,
    /// k-means seed.
    #[serde(default = "d_prune_seed")]
    pub seed: u64,
}

fn d_iters() -> usize {
    10
}
fn d_prune_seed() -> u64 {
    7
}

impl PruneSpec {
    /// Vectors kept for a document of `n` vectors.
    pub fn target(&self, n: usize) -> usize {
        let t = match (self.fraction, self.count) {
            (Some(f), _) => (f as f64 * n as f64).ceil() as usize,
            (None, Some(c)) => c,
            (None, None) => n,
        };
        t.clamp(1.min(n), n)
    }
}

/// A multi field, resolved from the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiField {
    /// Field name.
    pub name: String,
    /// Vector width.
    pub dim: usize,
    /// Metric (cosine or dot; scores are MaxSim of inner products).
    pub metric: Metric,
    /// Embedding model, if token vectors are computed from text.
    pub embedding: Embedding,
    /// The full schema entry.
    pub spec: MultiSpec,
}

impl MultiField {
    /// HNSW parameters of the FDE index, if MUVERA is on and the index is HNSW.
    pub fn fde_hnsw(&self) -> Option<HnswParams> {
        self.spec.muvera.params().and(self.spec.index.hnsw_params())
    }

    /// The (shared, cached) MUVERA encoder of this field, if MUVERA is on.
    pub fn encoder(&self) -> Result<Option<Arc<FdeEncoder>>, StorageError> {
        let Some(p) = self.spec.muvera.params() else {
            return Ok(None);
        };
        encoder(self.dim, p)
            .map(Some)
            .map_err(|e| StorageError::Schema(format!("field {:?}: {e}", self.name)))
    }
}

type EncoderCache = Mutex<HashMap<(usize, u32, usize, usize, usize, u64, bool), Arc<FdeEncoder>>>;

/// One encoder per (dim, parameters) per process: drawing the random matrices is not free.
fn encoder(dim: usize, p: FdeParams) -> Result<Arc<FdeEncoder>, quiver_index::IndexError> {
    static CACHE: OnceLock<EncoderCache> = OnceLock::new();
    let key = (
        dim,
        p.k_sim,
        p.d_proj.unwrap_or(0),
        p.r_reps,
        p.d_final.unwrap_or(0),
        p.seed,
        p.fill_empty,
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(e);
    }
    let e = Arc::new(FdeEncoder::new(dim, p)?);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, e.clone());
    }
    Ok(e)
}

/// Multi fields in name order.
pub(crate) fn multi_fields(schema: &Schema) -> Vec<MultiField> {
    schema
        .fields
        .iter()
        .filter_map(|(name, f)| match f {
            FieldSpec::Multi(s) => Some(MultiField {
                name: name.clone(),
                dim: s.dim,
                metric: s.metric.into(),
                embedding: Embedding {
                    model: s.model.clone(),
                    embed: s.embed.clone(),
                    query_prefix: s.query_prefix.clone(),
                    document_prefix: s.document_prefix.clone(),
                },
                spec: s.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The multi field called `name`.
pub(crate) fn multi(schema: &Schema, name: &str) -> Option<MultiField> {
    schema.multi_fields().into_iter().find(|f| f.name == name)
}

/// Checks the multi fields of a schema.
pub(crate) fn validate_multi(schema: &Schema) -> Result<(), StorageError> {
    for f in schema.multi_fields() {
        let name = &f.name;
        let err = |m: String| Err(StorageError::Schema(format!("field {name:?}: {m}")));
        let s = &f.spec;
        if s.dim == 0 || s.dim > 65_536 {
            return err(format!("dim must be in 1..=65536, got {}", s.dim));
        }
        if s.metric == MetricName::L2 {
            return err(
                "multi fields are scored by MaxSim of inner products: metric must be cosine or dot"
                    .into(),
            );
        }
        if s.model.is_some() == s.embed.is_empty() {
            return err("`model` and `embed` (the text fields to embed) go together".into());
        }
        for t in &s.embed {
            if schema.fields.contains_key(t) {
                return err(format!(
                    "text field {t:?} must be a plain payload field, not a declared index field"
                ));
            }
        }
        if let Some(p) = s.muvera.params() {
            p.validate(s.dim)
                .map_err(|e| StorageError::Schema(format!("field {name:?}: muvera: {e}")))?;
        }
        if let Some(p) = s.index.hnsw_params() {
            p.validate()
                .map_err(|e| StorageError::Schema(format!("field {name:?}: {e}")))?;
        }
        if let Some(p) = &s.prune {
            match (p.fraction, p.count) {
                (Some(x), None) if x > 0.0 && x <= 1.0 => {}
                (None, Some(c)) if c >= 1 => {}
                (Some(x), None) => {
                    return err(format!("prune.fraction must be in (0, 1], got {x}"))
                }
                (None, Some(_)) => return err("prune.count must be >= 1".into()),
                _ => return err("prune needs exactly one of `fraction` or `count`".into()),
            }
            if p.iters == 0 {
                return err("prune.iters must be >= 1".into());
            }
        }
    }
    Ok(())
}

/// Validates a document's multi vectors: known fields, every multi field present with at least
/// one vector of the right width, finite values (unit length for cosine), and no payload key
/// named like a multi field.
pub(crate) fn prepare_multi(schema: &Schema, doc: &mut Document) -> Result<(), StorageError> {
    let fields = schema.multi_fields();
    let id = doc
        .id
        .as_ref()
        .map(|i| i.to_string())
        .unwrap_or_else(|| "<none>".into());
    let invalid = |field: &str, msg: String| StorageError::InvalidDocument {
        id: id.clone(),
        field: field.to_string(),
        msg,
    };
    for name in doc.multi.keys() {
        if !fields.iter().any(|f| &f.name == name) {
            return Err(invalid(
                name,
                "unknown multi-vector field (not a multi field of the schema)".into(),
            ));
        }
    }
    for f in &fields {
        if doc.payload.contains_key(&f.name) {
            return Err(invalid(
                &f.name,
                "payload key collides with a multi field name".into(),
            ));
        }
        let set = doc
            .multi
            .get_mut(&f.name)
            .ok_or_else(|| invalid(&f.name, "missing multi vectors".into()))?;
        if set.is_empty() {
            return Err(invalid(&f.name, "needs at least one vector".into()));
        }
        if set.len() > MAX_MULTI_VECTORS {
            return Err(invalid(
                &f.name,
                format!("{} vectors; the limit is {MAX_MULTI_VECTORS}", set.len()),
            ));
        }
        for (j, v) in set.iter_mut().enumerate() {
            if v.len() != f.dim {
                return Err(invalid(
                    &f.name,
                    format!(
                        "vector {j}: wrong dimension: expected {}, got {}",
                        f.dim,
                        v.len()
                    ),
                ));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(invalid(
                    &f.name,
                    format!(
                        "vector {j}, component {i} is {} (NaN and infinity are not allowed)",
                        v[i]
                    ),
                ));
            }
            if f.metric.normalizes() && !quiver_linalg::normalize(v) {
                return Err(invalid(
                    &f.name,
                    format!("vector {j} is zero and cannot be used with the cosine metric"),
                ));
            }
        }
    }
    Ok(())
}

/// Applies index-time pruning to a prepared document and records each field's raw count. A set
/// whose raw count is given already (a stored document written back,
/// [`crate::StoredDoc::into_document`]) was pruned when first written and is kept as it is.
pub(crate) fn prune_multi(schema: &Schema, doc: &mut Document) -> Result<(), StorageError> {
    for f in schema.multi_fields() {
        let Some(set) = doc.multi.get_mut(&f.name) else {
            continue;
        };
        if doc.multi_raw.contains_key(&f.name) {
            continue;
        }
        doc.multi_raw.insert(f.name.clone(), set.len() as u32);
        if let Some(p) = &f.spec.prune {
            let target = p.target(set.len());
            if target < set.len() {
                *set = crate::multi::prune_set(set, f.dim, target, p, f.metric)?;
            }
        }
    }
    Ok(())
}

/// Appends the multi part of a record.
pub(crate) fn encode_multi(schema: &Schema, doc: &Document, out: &mut Vec<u8>) {
    for f in schema.multi_fields() {
        let set = doc.multi.get(&f.name).map(|s| s.as_slice()).unwrap_or(&[]);
        let raw = doc
            .multi_raw
            .get(&f.name)
            .copied()
            .unwrap_or(set.len() as u32);
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for v in set {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Reads the multi part of a record starting at `pos`; returns the sets, raw counts and the
/// position after them. `Err` carries a message for the caller's corruption error.
#[allow(clippy::type_complexity)]
pub(crate) fn decode_multi(
    schema: &Schema,
    bytes: &[u8],
    mut pos: usize,
) -> Result<
    (
        BTreeMap<String, Vec<Vec<f32>>>,
        BTreeMap<String, u32>,
        usize,
    ),
    &'static str,
> {
    let mut sets = BTreeMap::new();
    let mut raws = BTreeMap::new();
    for f in schema.multi_fields() {
        let h = bytes
            .get(pos..pos + 8)
            .ok_or("multi-vector header truncated")?;
        let raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let n = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        pos += 8;
        let len = n
            .checked_mul(f.dim * 4)
            .ok_or("multi-vector count out of range")?;
        let body = bytes
            .get(pos..pos + len)
            .ok_or("multi-vector data truncated")?;
        let set: Vec<Vec<f32>> = body
            .chunks_exact(f.dim * 4)
            .map(|v| {
                v.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .collect();
        pos += len;
        sets.insert(f.name.clone(), set);
        raws.insert(f.name.clone(), raw);
    }
    Ok((sets, raws, pos))
}

/// Clusters `set` into `target` centroids (k-means, seeded per spec); the centroids are
/// renormalised for cosine fields.
fn prune_set(
    set: &[Vec<f32>],
    dim: usize,
    target: usize,
    spec: &PruneSpec,
    metric: Metric,
) -> Result<Vec<Vec<f32>>, StorageError> {
    let flat: Vec<f32> = set.iter().flatten().copied().collect();
    let mut centroids = quiver_index::multi::prune::kmeans_prune(
        Vectors::new(&flat, dim),
        target,
        spec.iters,
        spec.seed,
    )
    .map_err(|e| StorageError::Schema(format!("pruning: {e}")))?;
    let mut out: Vec<Vec<f32>> = centroids.chunks_exact(dim).map(|c| c.to_vec()).collect();
    if metric.normalizes() {
        out.retain_mut(|v| quiver_linalg::normalize(v));
    }
    if out.is_empty() {
        centroids.clear();
        return Ok(set.to_vec());
    }
    Ok(out)
}

/// A multi field's column in the mutable segment or in a segment under construction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultiColumn {
    /// Vectors of every row.
    pub vectors: MultiVectorsBuf,
    /// Raw (pre-pruning) vector count per row.
    pub raw: Vec<u32>,
}

impl MultiColumn {
    /// Empty column of width `dim`.
    pub fn new(dim: usize) -> Self {
        MultiColumn {
            vectors: MultiVectorsBuf::new(dim),
            raw: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, set: &[Vec<f32>], raw: u32) {
        self.vectors.push(set);
        self.raw.push(raw);
    }

    /// The same rows in the order `order`.
    pub(crate) fn permuted(&self, order: &[u32]) -> MultiColumn {
        let v = self.vectors.view();
        let mut out = MultiColumn::new(self.vectors.dim);
        for &i in order {
            out.vectors.push_flat(v.doc(i).as_slice());
            out.raw.push(self.raw[i as usize]);
        }
        out
    }
}

/// Empty columns for every multi field of `schema`.
pub(crate) fn columns(schema: &Schema) -> BTreeMap<String, MultiColumn> {
    schema
        .multi_fields()
        .into_iter()
        .map(|f| (f.name, MultiColumn::new(f.dim)))
        .collect()
}

/// Appends a document's sets to `cols` (a missing set becomes an empty row).
pub(crate) fn push_row(
    cols: &mut BTreeMap<String, MultiColumn>,
    sets: &BTreeMap<String, Vec<Vec<f32>>>,
    raws: &BTreeMap<String, u32>,
) {
    for (name, col) in cols.iter_mut() {
        let set = sets.get(name).map(|s| s.as_slice()).unwrap_or(&[]);
        let raw = raws.get(name).copied().unwrap_or(set.len() as u32);
        col.push(set, raw);
    }
}

/// Vectors per document of one multi field, for `collection info`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MultiInfo {
    /// Field.
    pub field: String,
    /// Live documents counted.
    pub documents: usize,
    /// Vectors the documents arrived with (before pruning).
    pub raw_vectors: u64,
    /// Vectors stored.
    pub kept_vectors: u64,
    /// `raw_vectors / documents`.
    pub raw_per_document: f64,
    /// `kept_vectors / documents`.
    pub kept_per_document: f64,
}

/// Prunes every document of a prepared batch (in parallel) and records raw counts.
pub(crate) fn prune_batch(
    schema: &Schema,
    prepared: &mut [(crate::doc::DocId, Document)],
) -> Result<(), StorageError> {
    use rayon::prelude::*;
    if schema.multi_fields().is_empty() {
        return Ok(());
    }
    prepared
        .par_iter_mut()
        .enumerate()
        .try_for_each(|(i, (_, doc))| {
            schema.prune_multi(doc).map_err(|e| StorageError::InBatch {
                index: i,
                source: Box::new(e),
            })
        })
}
