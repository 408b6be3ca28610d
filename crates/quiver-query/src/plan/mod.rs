//! Query plans: *which sources find candidates, how are they merged, and what re-scores them?*
//!
//! A [`Plan`] is plain data (JSON), executed on one [`Snapshot`]:
//!
//! ```text
//!   prefetch[0] ─┐  (dense f32 | dense prefix | dense codes | bm25 | multi), each with a limit
//!   prefetch[1] ─┼─► fusion (rrf | score) ──► rescore[0] ──► rescore[1] ──► offset, limit
//!   ...         ─┘   (one prefetch: no fusion)   each re-scores the candidates and keeps `limit`
//! ```
//!
//! The filter applies to every source (inside graph walks and scans), so rescoring never sees a
//! document the filter rejects. Rescore stages keep their own score: the final order is the last
//! stage's (or the fusion's, or the prefetch's).
//!
//! ```json
//! {
//!   "prefetch": [{"dense": {"field": "emb", "text": "who likes quokkas?", "dims": 64}, "limit": 1000}],
//!   "rescore": [{"dense": {"field": "emb", "dims": "full", "precision": "f32"}, "limit": 100}],
//!   "filter": {"field": "year", "gte": 2020},
//!   "limit": 10
//! }
//! ```
//!
//! Query vectors: a dense source takes `vector` or `text` (embedded by the caller's
//! [`QueryEncoder`], since this crate knows no models). A rescore stage on a field reuses the
//! query vector of a source on the same field, or embeds the first source text it finds.
//!
//! Files: `spec.rs` (the plan as data and its JSON), this file ([`execute`]: prefetch, fusion,
//! rescore stages, reports), `sources.rs` (candidates of one prefetch over every segment),
//! `score.rs` (prefix, rotated and code scores, and rescoring).

use crate::{Hit, QueryError, SegmentPlan, Strategy};
use quiver_index::Bitset;
use quiver_quant::QueryScorer;
use quiver_storage::{
    CodecKind, DenseField, Filter, Handle, Knn, Loc, Rotation, Snapshot, VectorIndex,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

mod score;
mod sources;
mod spec;

use score::{codec_index, rescore_codes, rescore_dense};
use sources::Exec;
use spec::rrf_k;
pub use spec::*;

/// Turns query text into vectors; implemented by callers that own models (the CLI, the server).
pub trait QueryEncoder {
    /// The query vector of `text` for dense `field` (its model and query prefix).
    fn encode_dense(&self, field: &DenseField, text: &str) -> Result<Vec<f32>, String>;

    /// The query vectors of `text` for multi `field` (its model's token vectors).
    fn encode_multi(
        &self,
        field: &quiver_storage::MultiField,
        text: &str,
    ) -> Result<Vec<Vec<f32>>, String> {
        let _ = text;
        Err(format!(
            "multi field {:?}: this encoder cannot embed text; give `vectors`",
            field.name
        ))
    }
}

/// What one stage of an executed plan did.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// `prefetch[i] dense emb dims=64`, `fusion rrf`, `rescore[0] dense f32 full` ...
    pub stage: String,
    /// Candidates in (0 for sources).
    pub candidates_in: usize,
    /// Candidates out.
    pub candidates_out: usize,
    /// Best score after the stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_score: Option<f32>,
    /// Microseconds spent.
    pub micros: u128,
    /// Per-segment choices of a source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentPlan>,
}

/// Hits plus a report per stage.
#[derive(Debug, Clone, Serialize)]
pub struct PlanResult {
    /// Best first.
    pub hits: Vec<Hit>,
    /// One report per stage, in execution order.
    pub explain: Vec<StageReport>,
}

/// A candidate: a row of the snapshot and its current score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Where the document lives.
    pub loc: Loc,
    /// Current score (higher is better).
    pub score: f32,
}

/// Runs `plan` on `snap`.
pub fn execute(
    snap: &Snapshot,
    plan: &Plan,
    encoder: Option<&dyn QueryEncoder>,
) -> Result<PlanResult, QueryError> {
    plan.check_shape()?;
    let filter = match &plan.filter {
        Some(v) => Some(Filter::from_json(v).map_err(|e| QueryError::BadPlan(e.to_string()))?),
        None => None,
    };
    let mut cx = Exec {
        snap,
        encoder,
        filter,
        allowed: BTreeMap::new(),
        vectors: HashMap::new(),
        texts: Vec::new(),
    };
    for p in &plan.prefetch {
        match &p.source {
            Source::Dense(d) => {
                if let Some(t) = &d.text {
                    cx.texts.push(t.clone());
                }
            }
            Source::Multi(_) => {}
            Source::Bm25(b) => cx.texts.push(b.text.clone()),
        }
    }
    let mut explain = Vec::new();
    let mut lists = Vec::with_capacity(plan.prefetch.len());
    for (i, p) in plan.prefetch.iter().enumerate() {
        let t = Instant::now();
        let (mut list, segments, label) = prefetch(&mut cx, i, p)?;
        // Every source's list in the one order (score, then document id) before fusion ranks it.
        sort_candidates(snap, &mut list);
        explain.push(report(label, 0, &list, t, segments));
        lists.push(list);
    }
    let mut cands = if lists.len() == 1 {
        lists.pop().unwrap_or_default()
    } else {
        let t = Instant::now();
        let fusion = plan.fusion.clone().unwrap_or(Fusion::Rrf {
            k: rrf_k(),
            weights: Vec::new(),
        });
        let n_in = lists.iter().map(Vec::len).sum();
        let fused = fuse(snap, &lists, &fusion)?;
        let label = match fusion {
            Fusion::Rrf { k, .. } => format!("fusion rrf k={k}"),
            Fusion::Score { norm, .. } => format!("fusion score {norm:?}").to_lowercase(),
        };
        explain.push(report(label, n_in, &fused, t, Vec::new()));
        fused
    };
    for (i, r) in plan.rescore.iter().enumerate() {
        let t = Instant::now();
        let n_in = cands.len();
        let label = rescore(&mut cx, plan, i, r, &mut cands)?;
        sort_candidates(snap, &mut cands);
        cands.truncate(r.limit);
        explain.push(report(label, n_in, &cands, t, Vec::new()));
    }
    let hits = cands
        .into_iter()
        .skip(plan.offset)
        .take(plan.limit)
        .map(|c| Hit {
            id: snap.doc_id(c.loc),
            score: c.score,
            payload: plan.with_payload.then(|| snap.payload(c.loc)),
        })
        .collect();
    Ok(PlanResult { hits, explain })
}

/// Candidates of one prefetch, what each segment did, and the stage's label.
type SourceList = (Vec<Candidate>, Vec<SegmentPlan>, String);

/// Runs prefetch `i`.
fn prefetch(cx: &mut Exec<'_>, i: usize, p: &Prefetch) -> Result<SourceList, QueryError> {
    let snap = cx.snap;
    let as_candidates = |l: Vec<(Loc, f32)>| -> Vec<Candidate> {
        l.into_iter()
            .map(|(loc, score)| Candidate { loc, score })
            .collect()
    };
    Ok(match &p.source {
        Source::Dense(d) => {
            let (l, s) = cx.dense_source(i, d, p.limit)?;
            let field = cx.field(&d.field, &format!("prefetch[{i}].dense"))?;
            let label = format!(
                "prefetch[{i}] dense {} {} dims={}",
                field.name,
                d.codec.map_or("f32", CodecKind::name),
                dims_label(d.dims)
            );
            (l, s, label)
        }
        Source::Multi(m) => {
            let at = format!("prefetch[{i}].multi");
            let q = crate::multi::plan_query(snap, cx.encoder, &m.field, &m.text, &m.vectors, &at)?;
            let (l, s) = crate::multi::plan_source(snap, m, q, p.limit, cx.filter.clone())?;
            let how = if m.exact { "maxsim" } else { "muvera" };
            (
                as_candidates(l),
                s,
                format!("prefetch[{i}] multi {} {how}", m.field),
            )
        }
        Source::Bm25(b) => {
            let at = format!("prefetch[{i}].bm25");
            let bad = |e: QueryError| QueryError::BadPlan(format!("{at}: {e}"));
            let field = crate::bm25::resolve_text_field(snap, b.field.as_deref()).map_err(bad)?;
            let c = crate::bm25::bm25_candidates(
                snap,
                Some(&field.name),
                &b.text,
                p.limit,
                cx.filter.as_ref(),
                b.stats.as_ref(),
            )
            .map_err(bad)?;
            (
                as_candidates(c.hits),
                c.segments,
                format!("prefetch[{i}] bm25 {}", field.name),
            )
        }
    })
}

/// Runs rescore stage `i` on `cands` (re-scored in place); returns the stage's label.
fn rescore(
    cx: &mut Exec<'_>,
    plan: &Plan,
    i: usize,
    r: &Rescore,
    cands: &mut [Candidate],
) -> Result<String, QueryError> {
    let snap = cx.snap;
    Ok(match &r.stage {
        Stage::Dense(d) => {
            let at = format!("rescore[{i}].dense");
            let field = cx.field(&d.field, &at)?;
            let q = cx.query_vector(&field, None, &at)?;
            let n = check_dims(&field, d.dims, &at)?;
            match d.precision.codec() {
                None => rescore_dense(snap, &field, &q, n, cands),
                Some(kind) => {
                    let idx = codec_index(&field, kind, n, &at)?;
                    rescore_codes(snap, &field, idx, &q, n, cands)?;
                }
            }
            format!(
                "rescore[{i}] dense {} {:?} dims={}",
                field.name,
                d.precision,
                dims_label(d.dims)
            )
            .to_lowercase()
        }
        Stage::Maxsim(m) => {
            let at = format!("rescore[{i}].maxsim");
            let (text, vectors) = match (&m.text, &m.vectors) {
                (None, None) => plan
                    .prefetch
                    .iter()
                    .find_map(|p| match &p.source {
                        Source::Multi(q) if q.field == m.field => {
                            Some((q.text.clone(), q.vectors.clone()))
                        }
                        _ => None,
                    })
                    .ok_or_else(|| {
                        QueryError::BadPlan(format!(
                            "{at}: give `text` or `vectors`, or a `multi` prefetch on field {:?}",
                            m.field
                        ))
                    })?,
                (t, v) => (t.clone(), v.clone()),
            };
            let q = crate::multi::plan_query(snap, cx.encoder, &m.field, &text, &vectors, &at)?;
            let locs: Vec<Loc> = cands.iter().map(|c| c.loc).collect();
            let scores = crate::multi::plan_rescore(snap, &m.field, q, &locs)?;
            for (c, s) in cands.iter_mut().zip(scores) {
                c.score = s;
            }
            format!("rescore[{i}] maxsim {}", m.field)
        }
    })
}

fn dims_label(d: Dims) -> String {
    match d {
        Dims::Full => "full".into(),
        Dims::Prefix(n) => n.to_string(),
    }
}

fn report(
    stage: String,
    candidates_in: usize,
    out: &[Candidate],
    t: Instant,
    segments: Vec<SegmentPlan>,
) -> StageReport {
    StageReport {
        stage,
        candidates_in,
        candidates_out: out.len(),
        top_score: out.first().map(|c| c.score),
        micros: t.elapsed().as_micros(),
        segments,
    }
}

/// Best first; ties by document id (the one tie-break rule of plans, so results do not depend
/// on how documents are spread over segments).
fn sort_candidates(snap: &Snapshot, c: &mut [Candidate]) {
    c.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| snap.doc_id(a.loc).cmp(&snap.doc_id(b.loc)))
    });
}

fn check_dims(field: &DenseField, dims: Dims, at: &str) -> Result<usize, QueryError> {
    match dims {
        Dims::Full => Ok(field.dim),
        Dims::Prefix(n) if n <= field.dim => Ok(n),
        Dims::Prefix(n) => Err(QueryError::BadPlan(format!(
            "{at}.dims: {n} exceeds the {} dimensions of field {:?}",
            field.dim, field.name
        ))),
    }
}

/// Merges ranked lists (each best first) into one, best first (see [`crate::fusion`]: RRF, or
/// normalised score fusion where a location missing from a list gets that list's lowest score).
/// Candidates are keyed by (document id, location), so fused ties break by document id.
pub fn fuse(
    snap: &Snapshot,
    lists: &[Vec<Candidate>],
    fusion: &Fusion,
) -> Result<Vec<Candidate>, QueryError> {
    let keyed: Vec<Vec<((quiver_storage::DocId, Loc), f32)>> = lists
        .iter()
        .map(|l| {
            l.iter()
                .map(|c| ((snap.doc_id(c.loc), c.loc), c.score))
                .collect()
        })
        .collect();
    Ok(crate::fusion::fuse_keyed(&keyed, fusion)?
        .into_iter()
        .map(|((_, loc), score)| Candidate { loc, score })
        .collect())
}
