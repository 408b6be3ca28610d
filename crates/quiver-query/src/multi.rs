//! Multi-vector search over a snapshot: exact MaxSim brute force, and MUVERA (FDE candidates from
//! each sealed segment's HNSW, reranked by exact MaxSim).
//!
//! ```text
//!   query set Q ──► MUVERA query FDE ──► per sealed segment: HNSW over document FDEs
//!                                         (filter ∧ visible checked in traversal) ─► candidates
//!               └─ (optional ball carving) ───────────────► exact MaxSim over candidates ─► top k
//!   mutable segment: exact MaxSim over visible ∧ filtered rows
//!   merge by score ─► top k
//! ```

use crate::{Hit, QueryError, SearchResult, SegmentPlan};
use quiver_index::multi::{maxsim, prune::ball_carve};
use quiver_index::{flat, Bitset, Neighbor, Vectors};
use quiver_linalg::Metric;
use quiver_storage::{Filter, Loc, MultiField, Snapshot};
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
        .schema
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

/// The mutable segment: exact MaxSim over visible, filtered rows.
fn search_mutable(
    snap: &Snapshot,
    req: &MultiSearchRequest,
    field: &MultiField,
    q: Vectors<'_>,
    all: &mut Vec<Found>,
    explain: &mut Vec<SegmentPlan>,
) {
    let t = Instant::now();
    let m = &snap.version.mutable;
    let mut n = 0;
    let mut any = false;
    for c in m.chunks() {
        let Some(sets) = c.multi(&field.name) else {
            continue;
        };
        any = true;
        let rows = c.rows().min(sets.len());
        let allowed: Vec<u32> = (0..rows as u32)
            .filter(|&r| {
                c.visible(r, snap.seq)
                    && req.filter.as_ref().is_none_or(|f| f.matches(c.payload(r)))
            })
            .collect();
        n += allowed.len();
        for h in maxsim::search_rows(sets, q, req.k, allowed) {
            all.push((h.score, Loc::Mutable(c.start() + h.id)));
        }
    }
    if any {
        explain.push(SegmentPlan {
            segment: "mutable".into(),
            rows: m.rows(),
            allowed: n,
            method: "maxsim",
            micros: t.elapsed().as_micros(),
        });
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

/// MUVERA: per sealed segment, candidates from the FDE index (HNSW, or an exact FDE scan for a
/// flat index), reranked by exact MaxSim; the mutable segment is scored exactly. Segments without
/// encodings (MUVERA off) are scored exactly.
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
    for (s, seg) in snap.version.segments.iter().enumerate() {
        let t = Instant::now();
        let Some(sets) = seg.multi(&field.name) else {
            continue;
        };
        let allowed: Bitset = snap.allowed(s, req.filter.as_ref());
        let n = allowed.count();
        for h in maxsim::search(sets, q, req.k, &allowed) {
            all.push((h.score, Loc::Sealed(s, h.id)));
        }
        explain.push(SegmentPlan {
            segment: seg.name.clone(),
            rows: seg.rows(),
            allowed: n,
            method: "maxsim",
            micros: t.elapsed().as_micros(),
        });
    }
    search_mutable(snap, req, &field, q, &mut all, &mut explain);
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
    let mut all = Vec::new();
    let mut explain = Vec::new();
    for (s, seg) in snap.version.segments.iter().enumerate() {
        let t = Instant::now();
        let Some(sets) = seg.multi(&field.name) else {
            continue;
        };
        let vis = |r: u32| seg.visible(r, snap.seq);
        let allowed: Option<Bitset> = req.filter.as_ref().map(|f| snap.allowed(s, Some(f)));
        let n = allowed.as_ref().map_or(seg.rows(), |a| a.count());
        let (hits, method) = match (seg.fde(&field.name), &q_fde) {
            (Some((fdes, graph)), Some(qf)) => {
                let found: Vec<Neighbor> = match (graph, &allowed) {
                    (Some(g), Some(a)) => g.search(fdes, qf, cands, ef, a),
                    (Some(g), None) => g.search(fdes, qf, cands, ef, &vis),
                    (None, Some(a)) => flat::search(fdes, Metric::Dot, qf, cands, a),
                    (None, None) => flat::search(fdes, Metric::Dot, qf, cands, &vis),
                };
                (
                    maxsim::search_rows(sets, rerank_q, req.k, found.iter().map(|h| h.id)),
                    "muvera",
                )
            }
            _ => {
                let a = allowed.unwrap_or_else(|| snap.allowed(s, None));
                (maxsim::search(sets, q, req.k, &a), "maxsim")
            }
        };
        for h in hits {
            all.push((h.score, Loc::Sealed(s, h.id)));
        }
        explain.push(SegmentPlan {
            segment: seg.name.clone(),
            rows: seg.rows(),
            allowed: n,
            method,
            micros: t.elapsed().as_micros(),
        });
    }
    search_mutable(snap, req, &field, q, &mut all, &mut explain);
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
    let m = &snap.version.mutable;
    let mut cache: HashMap<usize, Option<quiver_index::MultiVectors<'_>>> = HashMap::new();
    Ok(locs
        .iter()
        .map(|&loc| match loc {
            Loc::Mutable(r) => {
                let (c, local) = m.locate(r);
                c.multi(&f.name)
                    .filter(|s| (local as usize) < s.len())
                    .map_or(f32::NEG_INFINITY, |s| maxsim::maxsim(q, s.doc(local)))
            }
            Loc::Sealed(si, r) => {
                let sets = *cache.entry(si).or_insert_with(|| {
                    snap.version
                        .segments
                        .get(si)
                        .and_then(|seg| seg.multi(&f.name))
                });
                sets.filter(|s| (r as usize) < s.len())
                    .map_or(f32::NEG_INFINITY, |s| maxsim::maxsim(q, s.doc(r)))
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
        .schema
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
