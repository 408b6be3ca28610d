//! Multi-vector search over a snapshot, one path for every segment: exact MaxSim brute force, and
//! MUVERA (FDE candidates from each segment's encodings, reranked by exact MaxSim; a segment
//! without encodings, such as the mutable one, is scored exactly).
//!
//! ```text
//!   query set Q ──► MUVERA query FDE ──► per segment: HNSW over document FDEs
//!                                         (filter ∧ visible checked in traversal) ─► candidates
//!               └─ (optional ball carving) ───────────────► exact MaxSim over candidates ─► top k
//!   segment without FDEs (the mutable one): exact MaxSim over visible ∧ filtered rows
//!   merge by score ─► top k
//! ```

use crate::{Hit, QueryError, SearchResult, SegmentPlan};
use quiver_index::multi::{maxsim, prune::ball_carve};
use quiver_index::{Bitset, RowFilter, Vectors};
use quiver_storage::{Filter, Handle, Loc, MultiField, MultiIndex, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// A multi-vector query.
#[derive(Debug, Clone)]
pub struct MultiSearchRequest {
    /// Multi field.
    pub field: String,
    /// Query vectors (e.g. the query's token vectors).
    pub query: Vec<Vec<f32>>,
    /// Results wanted.
    pub k: usize,
    /// MUVERA: candidates per segment taken from the FDE index and reranked exactly
    /// (default `max(10·k, 100)`).
    pub candidates: Option<usize>,
    /// MUVERA: HNSW beam width (default: max(candidates, the field's `ef`)).
    pub ef: Option<usize>,
    /// MUVERA: ball-carve the query vectors at this inner-product threshold before the rerank.
    pub ball_carving: Option<f32>,
    /// Payload filter.
    pub filter: Option<Filter>,
    /// Include payloads in hits.
    pub with_payload: bool,
}

impl MultiSearchRequest {
    /// A plain request for the `k` best documents of `field` by MaxSim against `query`.
    pub fn new(field: impl Into<String>, query: Vec<Vec<f32>>, k: usize) -> Self {
        MultiSearchRequest {
            field: field.into(),
            query,
            k,
            candidates: None,
            ef: None,
            ball_carving: None,
            filter: None,
            with_payload: true,
        }
    }
}

/// Resolves the field and validates/normalises the query; returns it flat.
fn prepare(
    snap: &Snapshot,
    req: &MultiSearchRequest,
) -> Result<(MultiField, Vec<f32>), QueryError> {
    let field = snap
        .schema()
        .multi(&req.field)
        .ok_or_else(|| QueryError::UnknownMultiField(req.field.clone()))?;
    let bad = |msg: String| QueryError::BadVector {
        field: field.name.clone(),
        msg,
    };
    if req.query.is_empty() {
        return Err(bad("a multi-vector query needs at least one vector".into()));
    }
    let mut flat_q = Vec::with_capacity(req.query.len() * field.dim);
    for (j, v) in req.query.iter().enumerate() {
        if v.len() != field.dim {
            return Err(bad(format!(
                "query vector {j}: expected {} dimensions, got {}",
                field.dim,
                v.len()
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "query vector {j}, component {i} is not finite"
            )));
        }
        let mut v = v.clone();
        if field.metric.normalizes() && !quiver_linalg::normalize(&mut v) {
            return Err(bad(format!(
                "query vector {j} is zero and cannot be used with the cosine metric"
            )));
        }
        flat_q.extend_from_slice(&v);
    }
    Ok((field, flat_q))
}

type Found = (f32, Loc);

/// Best first; ties by location (deterministic).
fn sort_found(all: &mut [Found]) {
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
}

fn finish(
    snap: &Snapshot,
    mut all: Vec<Found>,
    req: &MultiSearchRequest,
    explain: Vec<SegmentPlan>,
) -> SearchResult {
    sort_found(&mut all);
    all.truncate(req.k);
    SearchResult {
        hits: all
            .into_iter()
            .map(|(score, loc)| Hit {
                id: snap.doc_id(loc),
                score,
                payload: req.with_payload.then(|| snap.payload(loc)),
            })
            .collect(),
        explain,
    }
}

/// Exact MaxSim over every visible document that matches the filter (the brute-force oracle).
pub fn maxsim_search(
    snap: &Snapshot,
    req: &MultiSearchRequest,
) -> Result<SearchResult, QueryError> {
    let (all, explain) = maxsim_locs(snap, req)?;
    Ok(finish(snap, all, req, explain))
}

/// MUVERA: per segment, candidates from the FDE index (HNSW, or an exact FDE scan for a flat
/// index), reranked by exact MaxSim. Segments without encodings (MUVERA off, or the mutable
/// segment) are scored exactly.
pub fn muvera_search(
    snap: &Snapshot,
    req: &MultiSearchRequest,
) -> Result<SearchResult, QueryError> {
    let (all, explain) = muvera_locs(snap, req)?;
    Ok(finish(snap, all, req, explain))
}

fn maxsim_locs(
    snap: &Snapshot,
    req: &MultiSearchRequest,
) -> Result<(Vec<Found>, Vec<SegmentPlan>), QueryError> {
    let (field, flat_q) = prepare(snap, req)?;
    let q = Vectors::new(&flat_q, field.dim);
    let mut all = Vec::new();
    let mut explain = Vec::new();
    for s in 0..snap.segments() {
        let t = Instant::now();
        let seg = snap.segment(s);
        let Some(index) = seg.multi(&field.name) else {
            continue;
        };
        let allowed: Bitset = snap.allowed(s, req.filter.as_ref());
        for h in index.maxsim_rows(q, req.k, &mut allowed.iter()) {
            all.push((h.score, snap.loc(s, h.id)));
        }
        explain.push(SegmentPlan {
            segment: seg.name().to_string(),
            rows: seg.rows(),
            allowed: allowed.count(),
            method: "maxsim",
            micros: t.elapsed().as_micros(),
        });
    }
    Ok((all, explain))
}

fn muvera_locs(
    snap: &Snapshot,
    req: &MultiSearchRequest,
) -> Result<(Vec<Found>, Vec<SegmentPlan>), QueryError> {
    let (field, flat_q) = prepare(snap, req)?;
    let q = Vectors::new(&flat_q, field.dim);
    let encoder = field.encoder().map_err(|e| QueryError::BadVector {
        field: field.name.clone(),
        msg: e.to_string(),
    })?;
    let q_fde = encoder.as_ref().map(|e| e.encode_query(q));
    let carved = req.ball_carving.map(|tau| ball_carve(q, tau));
    let rerank_q = carved.as_deref().map_or(q, |c| Vectors::new(c, field.dim));
    let cands = req.candidates.unwrap_or((10 * req.k).max(100)).max(req.k);
    let default_ef = field.spec.index.hnsw_params().map_or(128, |p| p.ef_search);
    let ef = req.ef.unwrap_or(default_ef).max(cands);
    let seq = snap.seq();
    let mut all = Vec::new();
    let mut explain = Vec::new();
    for s in 0..snap.segments() {
        let t = Instant::now();
        let seg = snap.segment(s);
        let Some(index) = seg.multi(&field.name) else {
            continue;
        };
        let visible = |r: u32| seg.visible(r, seq);
        let filtered: Option<Bitset> = req.filter.as_ref().map(|f| snap.allowed(s, Some(f)));
        let allowed: &dyn RowFilter = match &filtered {
            Some(a) => a,
            None => &visible,
        };
        let n = filtered.as_ref().map_or(seg.rows(), |a| a.count());
        let found = q_fde
            .as_ref()
            .and_then(|qf| index.fde_candidates(qf, cands, ef, allowed));
        // Candidates from the encodings reranked exactly; without encodings (MUVERA off, or the
        // mutable segment), exact MaxSim over the allowed rows.
        let (hits, method) = match found {
            Some(found) => (
                index.maxsim_rows(rerank_q, req.k, &mut found.iter().map(|h| h.id)),
                "muvera",
            ),
            None => {
                let a = filtered.unwrap_or_else(|| snap.allowed(s, None));
                let hits = index.maxsim_rows(q, req.k, &mut a.iter());
                (hits, "maxsim")
            }
        };
        for h in hits {
            all.push((h.score, snap.loc(s, h.id)));
        }
        explain.push(SegmentPlan {
            segment: seg.name().to_string(),
            rows: seg.rows(),
            allowed: n,
            method,
            micros: t.elapsed().as_micros(),
        });
    }
    Ok((all, explain))
}

/// A plan source on a multi field: `{"multi": {"field": "tok", "text": "..."}, "limit": 100}`.
/// MUVERA candidates reranked by exact MaxSim, or exact MaxSim with `"exact": true`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiQuery {
    /// Multi field.
    pub field: String,
    /// Query text, turned into token vectors by the field's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Query vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vec<Vec<f32>>>,
    /// Brute-force MaxSim instead of MUVERA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
    /// MUVERA candidates per segment reranked exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    /// MUVERA HNSW beam width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Ball carving threshold for the rerank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ball_carving: Option<f32>,
}

/// A rescore stage by exact MaxSim on a multi field: `{"maxsim": {"field": "tok"}, "limit": 10}`.
/// The query vectors come from the stage (`text` or `vectors`) or else from the plan's first
/// `multi` source on the same field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxsimRescore {
    /// Multi field.
    pub field: String,
    /// Query text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Query vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vec<Vec<f32>>>,
}

/// Candidates (location, score) best first, and the per-segment report.
type SourceOut = (Vec<(Loc, f32)>, Vec<SegmentPlan>);

/// Runs a plan's multi source: (score, location) best first, and the per-segment report.
pub(crate) fn plan_source(
    snap: &Snapshot,
    m: &MultiQuery,
    query: Vec<Vec<f32>>,
    limit: usize,
    filter: Option<Filter>,
) -> Result<SourceOut, QueryError> {
    let req = MultiSearchRequest {
        field: m.field.clone(),
        query,
        k: limit,
        candidates: m.candidates,
        ef: m.ef,
        ball_carving: m.ball_carving,
        filter,
        with_payload: false,
    };
    let (mut all, explain) = if m.exact {
        maxsim_locs(snap, &req)?
    } else {
        muvera_locs(snap, &req)?
    };
    sort_found(&mut all);
    all.truncate(limit);
    Ok((all.into_iter().map(|(s, l)| (l, s)).collect(), explain))
}

/// Exact MaxSim of `query` against the documents at `locs` (unknown field or query: an error).
pub(crate) fn plan_rescore(
    snap: &Snapshot,
    field: &str,
    query: Vec<Vec<f32>>,
    locs: &[Loc],
) -> Result<Vec<f32>, QueryError> {
    let req = MultiSearchRequest::new(field, query, 1);
    let (f, flat_q) = prepare(snap, &req)?;
    let q = Vectors::new(&flat_q, f.dim);
    let mut cache: HashMap<usize, Option<Handle<'_, dyn MultiIndex + '_>>> = HashMap::new();
    Ok(locs
        .iter()
        .map(|&loc| {
            let (s, r) = snap.place(loc);
            let index = cache
                .entry(s)
                .or_insert_with(|| snap.segment(s).multi(&f.name));
            match index {
                Some(ix) if (r as usize) < ix.rows() => maxsim::maxsim(q, ix.set(r)),
                _ => f32::NEG_INFINITY,
            }
        })
        .collect())
}

/// The query vectors of a plan's multi source or maxsim stage: given, or embedded from `text`.
pub(crate) fn plan_query(
    snap: &Snapshot,
    encoder: Option<&dyn crate::plan::QueryEncoder>,
    field: &str,
    text: &Option<String>,
    vectors: &Option<Vec<Vec<f32>>>,
    at: &str,
) -> Result<Vec<Vec<f32>>, QueryError> {
    if let Some(v) = vectors {
        return Ok(v.clone());
    }
    let f = snap
        .schema()
        .multi(field)
        .ok_or_else(|| QueryError::UnknownMultiField(field.to_string()))?;
    let t = text
        .as_ref()
        .ok_or_else(|| QueryError::BadPlan(format!("{at}: give `text` or `vectors`")))?;
    let enc = encoder.ok_or_else(|| {
        QueryError::BadPlan(format!(
            "{at}: text queries need an encoder; give `vectors`"
        ))
    })?;
    enc.encode_multi(&f, t)
        .map_err(|e| QueryError::BadPlan(format!("{at}: {e}")))
}
