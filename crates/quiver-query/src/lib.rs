//! # quiver-query: planning and executing searches over a snapshot
//!
//! *Given a query vector, a filter and k: which documents, and how do we find them cheaply?*
//!
//! - [`SearchRequest`]: field, query vector, `k`, optional `ef`, optional [`Filter`], [`Strategy`].
//! - [`search`]: runs the request on a [`Snapshot`], one path for every segment (each a
//!   [`quiver_storage::SegmentReader`] handing out a [`quiver_storage::VectorIndex`] per field):
//!   the planner picks an HNSW walk with the filter checked during traversal, or an exact scan of
//!   the allowed rows when the filter leaves few (cardinality from the payload indexes) or the
//!   segment has no graph (the mutable segment); results are merged by score.
//! - [`SearchResult::explain`]: what was chosen per segment and why.
//! - [`bm25_search`] ([`Bm25Request`]): BM25 on a text field with collection-wide statistics;
//!   [`fusion`]: reciprocal rank and normalised score fusion of ranked lists.
//! - [`multi`]: multi-vector fields — [`maxsim_search`] (exact MaxSim) and [`muvera_search`]
//!   (MUVERA FDE candidates reranked by exact MaxSim).
//!
//! ```text
//!   SearchRequest ──► for each segment (sealed ones, then the mutable one):
//!                        allowed = filter ∧ visible(snapshot)   (payload indexes where sealed)
//!                        no graph, or |allowed| small? ── yes ──► exact scan over allowed rows
//!                                                     └ no ──► HNSW(ef), allowed checked in traversal
//!                     merge by score ─► top k ─► ids, scores, payloads
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bm25;
pub mod fusion;

pub mod multi;

pub use multi::{maxsim_search, muvera_search, MaxsimRescore, MultiQuery, MultiSearchRequest};

pub mod plan;
pub mod presets;

pub use bm25::{bm25_search, bm25_search_stats, bm25_stats, resolve_text_field, Bm25Request};
pub use fusion::{fuse_hits, rrf, score_fusion, DEFAULT_RRF_K};
pub use plan::{Candidate, Plan, PlanResult, QueryEncoder};
use quiver_index::{Bitset, RowFilter};
use quiver_storage::{DenseField, DocId, Filter, Knn, Snapshot};
pub use quiver_text::{Bm25Stats, CorpusStats};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Instant;

/// Errors of query validation.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The field is not a dense field of the collection.
    #[error("unknown dense field {0:?}")]
    UnknownField(String),
    /// The query vector does not fit the field.
    #[error("query vector for field {field:?}: {msg}")]
    BadVector {
        /// Field.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The field is not a multi field of the collection.
    #[error("unknown multi field {0:?}")]
    UnknownMultiField(String),
    /// The collection has several dense fields and the request names none.
    #[error("the collection has several dense fields ({0}); choose one")]
    AmbiguousField(String),
    /// The field is not a text field of the collection.
    #[error("unknown text field {0:?}")]
    UnknownTextField(String),
    /// The collection has several text fields and the request names none.
    #[error("the collection has several text fields ({0}); choose one")]
    AmbiguousTextField(String),
    /// A text index failed while searching.
    #[error("text search: {0}")]
    Text(String),
    /// Fusion parameters are invalid.
    #[error("fusion: {0}")]
    BadFusion(String),
    /// A query plan is malformed or does not fit the collection.
    #[error("bad query plan: {0}")]
    BadPlan(String),
}

/// How segments are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The planner decides per segment by filter cardinality.
    #[default]
    Auto,
    /// Always walk the graph (where a segment has one).
    Graph,
    /// Always scan exactly.
    Exact,
}

/// A k-nearest-neighbour request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Dense field; `None` picks the only one.
    pub field: Option<String>,
    /// Query vector.
    pub vector: Vec<f32>,
    /// Results wanted.
    pub k: usize,
    /// Beam width for graph search (default: the field's `ef`).
    pub ef: Option<usize>,
    /// Payload filter.
    pub filter: Option<Filter>,
    /// Planner override.
    pub strategy: Strategy,
    /// Include payloads in hits.
    pub with_payload: bool,
}

impl SearchRequest {
    /// A plain request for the `k` nearest to `vector`.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            field: None,
            vector,
            k,
            ef: None,
            filter: None,
            strategy: Strategy::Auto,
            with_payload: true,
        }
    }
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Document id.
    pub id: DocId,
    /// Score, higher is closer (negated squared distance for l2).
    pub score: f32,
    /// Payload, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Map<String, Value>>,
}

/// What the planner did on one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentPlan {
    /// Segment name (`mutable` for the mutable segment).
    pub segment: String,
    /// Rows in the segment.
    pub rows: usize,
    /// Rows visible and allowed by the filter.
    pub allowed: usize,
    /// `graph` or `exact`.
    pub method: &'static str,
    /// Microseconds spent.
    pub micros: u128,
}

/// Hits plus the per-segment plan.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    /// Best first.
    pub hits: Vec<Hit>,
    /// Per segment: what was done.
    pub explain: Vec<SegmentPlan>,
}

/// The planner's rule: scan exactly when the allowed rows are few enough that scoring them all
/// costs less than a filtered graph walk, which visits about `10·ef / selectivity` rows. With
/// selectivity `s = allowed/rows` that is `allowed² <= 10·ef·rows`.
pub fn prefer_exact(allowed: usize, rows: usize, ef: usize) -> bool {
    (allowed as f64) * (allowed as f64) <= 10.0 * ef as f64 * rows as f64
}

/// Runs `req` against `snap`.
pub fn search(snap: &Snapshot, req: &SearchRequest) -> Result<SearchResult, QueryError> {
    let field = resolve_dense(snap, req.field.as_deref())?;
    let q = prepare_query(&field, &req.vector)?;
    let default_ef = field.index.hnsw_params().map_or(128, |p| p.ef_search);
    let ef = req.ef.unwrap_or(default_ef);
    let (cands, explain) = dense_candidates(
        snap,
        &field,
        &q,
        req.k,
        ef,
        req.filter.as_ref(),
        req.strategy,
    );
    Ok(SearchResult {
        hits: cands
            .into_iter()
            .map(|c| Hit {
                id: snap.doc_id(c.loc),
                score: c.score,
                payload: req.with_payload.then(|| snap.payload(c.loc)),
            })
            .collect(),
        explain,
    })
}

/// The dense field called `name`, or the collection's only dense field when `name` is `None`.
pub fn resolve_dense(snap: &Snapshot, name: Option<&str>) -> Result<DenseField, QueryError> {
    match name {
        Some(f) => snap
            .schema()
            .dense(f)
            .ok_or_else(|| QueryError::UnknownField(f.to_string())),
        None => {
            let dense = snap.schema().user_dense_fields();
            match dense.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(QueryError::UnknownField(
                    "<none: the collection has no dense field>".into(),
                )),
                many => Err(QueryError::AmbiguousField(
                    many.iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            }
        }
    }
}

/// Checks a query vector against `field` (length, finiteness) and normalises it for cosine.
pub fn prepare_query(field: &DenseField, vector: &[f32]) -> Result<Vec<f32>, QueryError> {
    let bad = |msg: String| QueryError::BadVector {
        field: field.name.clone(),
        msg,
    };
    if vector.len() != field.dim {
        return Err(bad(format!(
            "expected {} dimensions, got {}",
            field.dim,
            vector.len()
        )));
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!("component {i} is not finite")));
    }
    let mut q = vector.to_vec();
    if field.metric.normalizes() && !quiver_linalg::normalize(&mut q) {
        return Err(bad(
            "zero vector cannot be used with the cosine metric".into()
        ));
    }
    Ok(q)
}

/// The best `k` rows for prepared query `q` on `field` over all segments, best first, plus what
/// was done per segment. On each segment the planner walks the graph (the filter checked during
/// traversal) or scans the allowed rows exactly; the mutable segment has no graph and is scanned.
pub fn dense_candidates(
    snap: &Snapshot,
    field: &DenseField,
    q: &[f32],
    k: usize,
    ef: usize,
    filter: Option<&Filter>,
    strategy: Strategy,
) -> (Vec<Candidate>, Vec<SegmentPlan>) {
    // No segment can return more rows than it holds: clamping keeps absurd k/ef from sizing heaps.
    let total_rows = snap.total_rows();
    let k = k.min(total_rows);
    let ef = ef.max(k).min(total_rows.max(1));
    let seq = snap.seq();
    let mut all: Vec<Candidate> = Vec::new();
    let mut explain = Vec::new();
    for s in 0..snap.segments() {
        let t = Instant::now();
        let seg = snap.segment(s);
        let Some(index) = seg.dense(&field.name) else {
            continue;
        };
        let rows = seg.rows();
        let visible = |r: u32| seg.visible(r, seq);
        let filtered: Option<Bitset> = filter.map(|f| seg.allowed(Some(f), seq));
        let (allowed, n): (&dyn RowFilter, usize) = match &filtered {
            Some(b) => (b, b.count()),
            None => (&visible, rows),
        };
        let graph = index.has_graph()
            && match strategy {
                Strategy::Exact => false,
                Strategy::Graph => true,
                Strategy::Auto => filter.is_none() || !prefer_exact(n, rows, ef),
            };
        let hits = index.search(
            q,
            Knn {
                k,
                ef,
                allowed,
                rows: filtered.as_ref(),
                graph,
            },
        );
        all.extend(hits.into_iter().map(|h| Candidate {
            loc: snap.loc(s, h.id),
            score: h.score,
        }));
        explain.push(SegmentPlan {
            segment: seg.name().to_string(),
            rows,
            allowed: n,
            method: if graph { "graph" } else { "exact" },
            micros: t.elapsed().as_micros(),
        });
    }
    // Ties by id, so results do not depend on how documents are spread over segments.
    let mut keyed: Vec<(Candidate, DocId)> =
        all.into_iter().map(|c| (c, snap.doc_id(c.loc))).collect();
    keyed.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then_with(|| a.1.cmp(&b.1)));
    keyed.truncate(k);
    (keyed.into_iter().map(|(c, _)| c).collect(), explain)
}
