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

use crate::{Hit, QueryError, SegmentPlan, Strategy};
use quiver_index::{Bitset, Neighbor, TopK};
use quiver_linalg::pca::Pca;
use quiver_linalg::Metric;
use quiver_quant::QueryScorer;
use quiver_storage::{BorrowedCodes, CodecKind, DenseField, Filter, Loc, Rotation, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A multi-stage query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Candidate sources (at least one).
    pub prefetch: Vec<Prefetch>,
    /// How several sources' candidates merge (default RRF with k = 60 when there are several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// Stages applied in order to the merged candidates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rescore: Vec<Rescore>,
    /// Payload filter, in the syntax of [`Filter::from_json`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Results returned.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Results skipped before `limit`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
    /// Include payloads in hits.
    #[serde(default = "yes")]
    pub with_payload: bool,
}

fn default_limit() -> usize {
    10
}
fn yes() -> bool {
    true
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn default_prefetch_limit() -> usize {
    100
}

/// One candidate source and how many candidates it contributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PrefetchRepr", into = "PrefetchRepr")]
pub struct Prefetch {
    /// Where candidates come from.
    pub source: Source,
    /// Candidates kept from this source.
    pub limit: usize,
}

/// A candidate source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// Nearest neighbours on a dense field (full vector, a Matryoshka prefix, or compact codes).
    Dense(DenseQuery),
    /// Best documents by MaxSim on a multi field (MUVERA + rerank, or exact).
    Multi(crate::multi::MultiQuery),
    /// BM25 on a text field (see [`crate::bm25`]).
    Bm25(Bm25Query),
}

/// BM25 source: `{"bm25": {"field": "body", "text": "who likes quokkas?"}, "limit": 200}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bm25Query {
    /// Text field (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Query text, analyzed with the field's analyzer.
    pub text: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefetchRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dense: Option<DenseQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multi: Option<crate::multi::MultiQuery>,
    bm25: Option<Bm25Query>,
    #[serde(default = "default_prefetch_limit")]
    limit: usize,
}

impl TryFrom<PrefetchRepr> for Prefetch {
    type Error = String;
    fn try_from(r: PrefetchRepr) -> Result<Self, String> {
        let source = match (r.dense, r.bm25, r.multi) {
            (Some(d), None, None) => Source::Dense(d),
            (None, Some(b), None) => Source::Bm25(b),
            (None, None, Some(m)) => Source::Multi(m),
            (None, None, None) => {
                return Err("a prefetch needs a source: `dense`, `bm25` or `multi`".into())
            }
            _ => {
                return Err(
                    "a prefetch has one source: `dense`, `bm25` or `multi`, not several".into(),
                )
            }
        };
        Ok(Prefetch {
            source,
            limit: r.limit,
        })
    }
}

impl From<Prefetch> for PrefetchRepr {
    fn from(p: Prefetch) -> Self {
        match p.source {
            Source::Dense(d) => PrefetchRepr {
                dense: Some(d),
                bm25: None,
                multi: None,
                limit: p.limit,
            },
            Source::Bm25(b) => PrefetchRepr {
                dense: None,
                bm25: Some(b),
                multi: None,
                limit: p.limit,
            },
            Source::Multi(m) => PrefetchRepr {
                dense: None,
                bm25: None,
                multi: Some(m),
                limit: p.limit,
            },
        }
    }
}

/// Dense nearest-neighbour source.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseQuery {
    /// Dense field (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Query text, embedded with the field's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Query vector (full dimension of the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Dimensions searched: `"full"` or a prefix length (Matryoshka; renormalised for cosine).
    #[serde(default, skip_serializing_if = "Dims::is_full")]
    pub dims: Dims,
    /// Beam width of graph walks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Score compact codes instead of f32 vectors (the field must declare this codec on `dims`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<CodecKind>,
    /// Scan exactly instead of walking the graph.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
}

/// Which leading dimensions of a vector take part in scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dims {
    /// All of them.
    #[default]
    Full,
    /// The first `n` (a Matryoshka prefix).
    Prefix(usize),
}

impl Dims {
    fn is_full(&self) -> bool {
        matches!(self, Dims::Full)
    }

    /// Dimensions used out of `dim`.
    pub fn resolve(self, dim: usize) -> usize {
        match self {
            Dims::Full => dim,
            Dims::Prefix(n) => n.min(dim),
        }
    }
}

impl Serialize for Dims {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dims::Full => s.serialize_str("full"),
            Dims::Prefix(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Dims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "full" => Ok(Dims::Full),
            Value::Number(n) => match n.as_u64() {
                Some(v) if v > 0 => Ok(Dims::Prefix(v as usize)),
                _ => Err(serde::de::Error::custom(format!(
                    "dims must be \"full\" or a positive integer, got {n}"
                ))),
            },
            other => Err(serde::de::Error::custom(format!(
                "dims must be \"full\" or a positive integer, got {other}"
            ))),
        }
    }
}

/// Precision of a dense rescore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The stored f32 vectors.
    #[default]
    F32,
    /// The field's int8 codes on `dims`.
    Int8,
    /// The field's binary codes on `dims` (asymmetric scoring).
    Binary,
    /// The field's PQ codes on `dims`.
    Pq,
}

impl Precision {
    /// The codec this precision reads, `None` for f32.
    pub fn codec(self) -> Option<CodecKind> {
        match self {
            Precision::F32 => None,
            Precision::Int8 => Some(CodecKind::Int8),
            Precision::Binary => Some(CodecKind::Binary),
            Precision::Pq => Some(CodecKind::Pq),
        }
    }
}

/// A rescore stage and how many candidates it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RescoreRepr", into = "RescoreRepr")]
pub struct Rescore {
    /// How candidates are re-scored.
    pub stage: Stage,
    /// Candidates kept, best first.
    pub limit: usize,
}

/// How a rescore stage scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stage {
    /// Dense similarity on a field, at a prefix length and precision.
    Dense(DenseRescore),
    /// Exact MaxSim on a multi field.
    Maxsim(crate::multi::MaxsimRescore),
}

/// Dense rescoring.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseRescore {
    /// Dense field (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Dimensions used.
    #[serde(default, skip_serializing_if = "Dims::is_full")]
    pub dims: Dims,
    /// Precision of the vectors scored.
    #[serde(default)]
    pub precision: Precision,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescoreRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dense: Option<DenseRescore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maxsim: Option<crate::multi::MaxsimRescore>,
    #[serde(default = "default_prefetch_limit")]
    limit: usize,
}

impl TryFrom<RescoreRepr> for Rescore {
    type Error = String;
    fn try_from(r: RescoreRepr) -> Result<Self, String> {
        let stage = match (r.dense, r.maxsim) {
            (Some(_), Some(_)) => {
                return Err("a rescore stage has one kind: `dense` or `maxsim`".into())
            }
            (None, Some(m)) => Stage::Maxsim(m),
            (Some(d), None) => Stage::Dense(d),
            (None, None) => return Err("a rescore stage needs a kind: `dense`".into()),
        };
        Ok(Rescore {
            stage,
            limit: r.limit,
        })
    }
}

impl From<Rescore> for RescoreRepr {
    fn from(r: Rescore) -> Self {
        match r.stage {
            Stage::Dense(d) => RescoreRepr {
                dense: Some(d),
                maxsim: None,
                limit: r.limit,
            },
            Stage::Maxsim(m) => RescoreRepr {
                dense: None,
                maxsim: Some(m),
                limit: r.limit,
            },
        }
    }
}

/// How the candidate lists of several sources merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Fusion {
    /// Reciprocal rank fusion: `sum_i w_i / (k + rank_i)`, ranks from 1.
    Rrf {
        /// Rank offset (60 in the RRF paper).
        #[serde(default = "rrf_k")]
        k: f32,
        /// Per-source weights (default 1 each).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        weights: Vec<f32>,
    },
    /// Normalised score fusion: `sum_i w_i * norm_i(score)`; absent from a list counts as that
    /// list's lowest normalised score (0 for min-max).
    Score {
        /// Normalisation per list.
        #[serde(default)]
        norm: Norm,
        /// Per-source weights (default 1 each).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        weights: Vec<f32>,
    },
}

fn rrf_k() -> f32 {
    60.0
}

/// Score normalisation for [`Fusion::Score`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `(s - min) / (max - min)` (1 when all equal).
    #[default]
    Minmax,
    /// `(s - mean) / std` (0 when std is 0).
    Zscore,
}

impl Plan {
    /// Parses and validates a plan from JSON text; errors name the offending part.
    pub fn from_json(text: &str) -> Result<Plan, QueryError> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| QueryError::BadPlan(e.to_string()))?;
        plan.check_shape()?;
        Ok(plan)
    }

    /// Checks what can be checked without a collection.
    pub fn check_shape(&self) -> Result<(), QueryError> {
        let bad = |m: String| Err(QueryError::BadPlan(m));
        if self.prefetch.is_empty() {
            return bad("`prefetch` needs at least one source".into());
        }
        if self.limit == 0 {
            return bad("`limit` must be at least 1".into());
        }
        for (i, p) in self.prefetch.iter().enumerate() {
            if p.limit == 0 {
                return bad(format!("prefetch[{i}].limit must be at least 1"));
            }
            match &p.source {
                Source::Dense(d) => {
                    if d.text.is_some() == d.vector.is_some() {
                        return bad(format!(
                            "prefetch[{i}].dense needs exactly one of `text` and `vector`"
                        ));
                    }
                }
                Source::Multi(m) => {
                    if m.text.is_some() == m.vectors.is_some() {
                        return bad(format!(
                            "prefetch[{i}].multi needs exactly one of `text` and `vectors`"
                        ));
                    }
                }
                Source::Bm25(b) => {
                    if b.text.trim().is_empty() {
                        return bad(format!("prefetch[{i}].bm25.text is empty"));
                    }
                }
            }
        }
        for (i, r) in self.rescore.iter().enumerate() {
            if r.limit == 0 {
                return bad(format!("rescore[{i}].limit must be at least 1"));
            }
        }
        if let Some(f) = &self.fusion {
            let (Fusion::Rrf { weights, .. } | Fusion::Score { weights, .. }) = f;
            if !weights.is_empty() && weights.len() != self.prefetch.len() {
                return bad(format!(
                    "fusion has {} weights for {} prefetch sources",
                    weights.len(),
                    self.prefetch.len()
                ));
            }
            if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
                return bad("fusion weights must be finite and non-negative".into());
            }
            if let Fusion::Rrf { k, .. } = f {
                if !k.is_finite() || *k < 0.0 {
                    return bad(format!("fusion rrf k must be finite and >= 0, got {k}"));
                }
            }
        }
        if let Some(f) = &self.filter {
            Filter::from_json(f).map_err(|e| QueryError::BadPlan(format!("filter: {e}")))?;
        }
        Ok(())
    }
}

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
        let (list, segments, label) = match &p.source {
            Source::Dense(d) => {
                let (l, s) = cx.dense_source(i, d, p.limit)?;
                let field = cx.field(&d.field, &format!("prefetch[{i}].dense"))?;
                (
                    l,
                    s,
                    format!(
                        "prefetch[{i}] dense {} {} dims={}",
                        field.name,
                        d.codec.map_or("f32", CodecKind::name),
                        dims_label(d.dims)
                    ),
                )
            }
            Source::Multi(m) => {
                let at = format!("prefetch[{i}].multi");
                let q =
                    crate::multi::plan_query(snap, encoder, &m.field, &m.text, &m.vectors, &at)?;
                let (l, s) = crate::multi::plan_source(snap, m, q, p.limit, cx.filter.clone())?;
                let list = l
                    .into_iter()
                    .map(|(loc, score)| Candidate { loc, score })
                    .collect();
                let how = if m.exact { "maxsim" } else { "muvera" };
                (list, s, format!("prefetch[{i}] multi {} {how}", m.field))
            }
            Source::Bm25(b) => {
                let at = format!("prefetch[{i}].bm25");
                let bad = |e: QueryError| QueryError::BadPlan(format!("{at}: {e}"));
                let field =
                    crate::bm25::resolve_text_field(snap, b.field.as_deref()).map_err(bad)?;
                let c = crate::bm25::bm25_candidates(
                    snap,
                    Some(&field.name),
                    &b.text,
                    p.limit,
                    cx.filter.as_ref(),
                )
                .map_err(bad)?;
                let list = c
                    .hits
                    .into_iter()
                    .map(|(loc, score)| Candidate { loc, score })
                    .collect();
                (
                    list,
                    c.segments,
                    format!("prefetch[{i}] bm25 {}", field.name),
                )
            }
        };
        // Every source's list in the one order (score, then document id) before fusion ranks it.
        let mut list = list;
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
        let label = match &r.stage {
            Stage::Dense(d) => {
                let field = cx.field(&d.field, &format!("rescore[{i}].dense"))?;
                let q = cx.query_vector(&field, None, &format!("rescore[{i}].dense"))?;
                let at = format!("rescore[{i}].dense");
                let n = check_dims(&field, d.dims, &at)?;
                match d.precision.codec() {
                    None => rescore_dense(snap, &field, &q, n, &mut cands),
                    Some(kind) => {
                        let idx = codec_index(&field, kind, n, &at)?;
                        rescore_codes(snap, &field, idx, &q, n, &mut cands)?;
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
                let q = crate::multi::plan_query(snap, encoder, &m.field, &text, &vectors, &at)?;
                let locs: Vec<Loc> = cands.iter().map(|c| c.loc).collect();
                let scores = crate::multi::plan_rescore(snap, &m.field, q, &locs)?;
                for (c, s) in cands.iter_mut().zip(scores) {
                    c.score = s;
                }
                format!("rescore[{i}] maxsim {}", m.field)
            }
        };
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

struct Exec<'a> {
    snap: &'a Snapshot,
    encoder: Option<&'a dyn QueryEncoder>,
    filter: Option<Filter>,
    /// Allowed rows per sealed segment, computed once.
    allowed: BTreeMap<usize, Bitset>,
    /// Query vectors by field (full dimension, normalised for cosine).
    vectors: HashMap<String, Vec<f32>>,
    /// Source texts, for stages that need a vector of another field.
    texts: Vec<String>,
}

impl Exec<'_> {
    fn field(&self, name: &Option<String>, at: &str) -> Result<DenseField, QueryError> {
        crate::resolve_dense(self.snap, name.as_deref())
            .map_err(|e| QueryError::BadPlan(format!("{at}.field: {e}")))
    }

    fn allowed(&mut self, s: usize) -> &Bitset {
        let (snap, filter) = (self.snap, self.filter.as_ref());
        self.allowed
            .entry(s)
            .or_insert_with(|| snap.allowed(s, filter))
    }

    /// The query vector for `field`: `given` (validated), a cached one, or an embedded source text.
    fn query_vector(
        &mut self,
        field: &DenseField,
        given: Option<(&Option<Vec<f32>>, &Option<String>)>,
        at: &str,
    ) -> Result<Vec<f32>, QueryError> {
        let raw = match given {
            Some((Some(v), _)) => v.clone(),
            Some((None, Some(t))) => self.encode(field, t, at)?,
            _ => {
                if let Some(v) = self.vectors.get(&field.name) {
                    return Ok(v.clone());
                }
                let Some(t) = self.texts.first().cloned() else {
                    return Err(QueryError::BadPlan(format!(
                        "{at}: no query vector for field {:?}: no source on that field and no \
                         source text to embed",
                        field.name
                    )));
                };
                self.encode(field, &t, at)?
            }
        };
        let q = crate::prepare_query(field, &raw)?;
        self.vectors.insert(field.name.clone(), q.clone());
        Ok(q)
    }

    fn encode(&self, field: &DenseField, text: &str, at: &str) -> Result<Vec<f32>, QueryError> {
        let enc = self.encoder.ok_or_else(|| {
            QueryError::BadPlan(format!(
                "{at}: query text needs a model, but this caller has none; pass `vector`"
            ))
        })?;
        enc.encode_dense(field, text)
            .map_err(|e| QueryError::BadPlan(format!("{at}: embedding the query failed: {e}")))
    }

    fn dense_source(
        &mut self,
        i: usize,
        d: &DenseQuery,
        limit: usize,
    ) -> Result<(Vec<Candidate>, Vec<SegmentPlan>), QueryError> {
        let at = format!("prefetch[{i}].dense");
        let field = self.field(&d.field, &at)?;
        let n = check_dims(&field, d.dims, &at)?;
        let q = self.query_vector(&field, Some((&d.vector, &d.text)), &at)?;
        let ef =
            d.ef.unwrap_or_else(|| field.index.hnsw_params().map_or(128, |p| p.ef_search));
        if let Some(kind) = d.codec {
            let idx = codec_index(&field, kind, n, &at)?;
            return self.code_source(&field, idx, &q, n, limit, ef, d.exact);
        }
        if n == field.dim {
            let strategy = if d.exact {
                Strategy::Exact
            } else {
                Strategy::Auto
            };
            let filter = self.filter.clone();
            return Ok(crate::dense_candidates(
                self.snap,
                &field,
                &q,
                limit,
                ef,
                filter.as_ref(),
                strategy,
            ));
        }
        Ok(self.prefix_scan(&field, &q, n, limit))
    }

    /// Candidates from the compact codes `field.codecs[idx]` (on the first `n` dimensions): an
    /// HNSW walk scored by the codes when they cover the full vector and the segment has a graph
    /// (unless `exact` or a selective filter favours scanning), else a scan of the allowed rows'
    /// codes. The mutable segment has no codes and is scanned exactly on the f32 prefix.
    #[allow(clippy::too_many_arguments)]
    fn code_source(
        &mut self,
        field: &DenseField,
        idx: usize,
        q: &[f32],
        n: usize,
        limit: usize,
        ef: usize,
        exact: bool,
    ) -> Result<(Vec<Candidate>, Vec<SegmentPlan>), QueryError> {
        let snap = self.snap;
        let mut out = Vec::new();
        let mut plans = Vec::new();
        for s in 0..snap.version.segments.len() {
            let t = Instant::now();
            let seg = &snap.version.segments[s];
            let Some(fc) = seg.codes(&field.name).get(idx) else {
                continue;
            };
            let qp = seg_query(snap, field, s, q, n);
            let scorer = fc
                .codec
                .query(&qp)
                .map_err(|e| QueryError::BadPlan(format!("codes of {:?}: {e}", field.name)))?;
            let rows = seg.rows();
            let filtered = self.filter.is_some();
            let allowed = self.allowed(s);
            let n_allowed = allowed.count();
            let k = limit.min(rows);
            let graph = seg.graph(&field.name).filter(|_| n == field.dim && !exact);
            let (hits, method) = match graph {
                Some(g) if !(filtered && crate::prefer_exact(n_allowed, rows, ef)) => (
                    g.search_by(&scorer.over(&fc.codes), k, ef.max(k), allowed),
                    "graph-codes",
                ),
                _ => (scorer.scan_topk(&fc.codes, allowed, k), "scan-codes"),
            };
            plans.push(SegmentPlan {
                segment: seg.name.clone(),
                rows,
                allowed: n_allowed,
                method,
                micros: t.elapsed().as_micros(),
            });
            out.extend(hits.into_iter().map(|nb| Candidate {
                loc: Loc::Sealed(s, nb.id),
                score: nb.score,
            }));
        }
        let (mutable, mplans) = self.mutable_codes(field, idx, q, n, limit);
        out.extend(mutable);
        plans.extend(mplans);
        sort_candidates(self.snap, &mut out);
        out.truncate(limit);
        Ok((out, plans))
    }

    /// The mutable segment's rows scored by the codes it borrowed from a sealed segment (so they
    /// merge with sealed rows on one scale); an exact prefix scan when it has none.
    fn mutable_codes(
        &self,
        field: &DenseField,
        idx: usize,
        q: &[f32],
        n: usize,
        limit: usize,
    ) -> (Vec<Candidate>, Vec<SegmentPlan>) {
        let snap = self.snap;
        let m = &snap.version.mutable;
        let scorer = m.borrowed().and_then(|b| {
            let (dims, codec) = b.codec(&field.name, idx).filter(|(d, _)| *d == n)?;
            codec.query(&borrowed_query(field, b, q, dims)).ok()
        });
        let Some(scorer) = scorer else {
            return self.mutable_scan(field, q, n, limit);
        };
        let t = Instant::now();
        let (mut out, mut n_allowed) = (Vec::new(), 0);
        let filter = self.filter.as_ref();
        for c in m.chunks() {
            let Some(codes) = c.codes(&field.name, idx) else {
                continue;
            };
            let ok =
                |r: u32| c.visible(r, snap.seq) && filter.is_none_or(|f| f.matches(c.payload(r)));
            n_allowed += (0..c.rows() as u32).filter(|&r| ok(r)).count();
            out.extend(
                scorer
                    .scan_topk(codes, &ok, limit)
                    .into_iter()
                    .map(|nb| Candidate {
                        loc: Loc::Mutable(c.start() + nb.id),
                        score: nb.score,
                    }),
            );
        }
        let plans = vec![SegmentPlan {
            segment: "mutable".into(),
            rows: m.rows(),
            allowed: n_allowed,
            method: "scan-codes",
            micros: t.elapsed().as_micros(),
        }];
        (out, plans)
    }

    /// Exact scan of the allowed rows on the first `n` dimensions.
    fn prefix_scan(
        &mut self,
        field: &DenseField,
        q: &[f32],
        n: usize,
        limit: usize,
    ) -> (Vec<Candidate>, Vec<SegmentPlan>) {
        let mut out = Vec::new();
        let mut plans = Vec::new();
        let snap = self.snap;
        let mut buf = vec![0.0f32; n];
        for s in 0..snap.version.segments.len() {
            let t = Instant::now();
            let seg = &snap.version.segments[s];
            let Some(vectors) = seg.vectors(&field.name) else {
                continue;
            };
            let qp = seg_query(snap, field, s, q, n);
            let rot = seg.rotation(&field.name);
            let allowed = self.allowed(s);
            let mut heap = TopK::new(limit.min(seg.rows()));
            for r in allowed.iter() {
                heap.push(Neighbor {
                    id: r,
                    score: row_prefix_score(field.metric, &qp, vectors.row(r), rot, &mut buf),
                });
            }
            plans.push(SegmentPlan {
                segment: seg.name.clone(),
                rows: seg.rows(),
                allowed: allowed.count(),
                method: if rot.is_some() {
                    "exact-prefix-rotated"
                } else {
                    "exact-prefix"
                },
                micros: t.elapsed().as_micros(),
            });
            out.extend(heap.into_sorted().into_iter().map(|nb| Candidate {
                loc: Loc::Sealed(s, nb.id),
                score: nb.score,
            }));
        }
        let (mutable, mplans) = self.mutable_scan(field, q, n, limit);
        out.extend(mutable);
        plans.extend(mplans);
        sort_candidates(self.snap, &mut out);
        out.truncate(limit);
        (out, plans)
    }

    /// Exact scan of the mutable segment's visible, allowed rows on the first `n` dimensions; on
    /// a rotated field, of its rows rotated by the rotation it borrowed (at full dimension when it
    /// borrowed none: then no sealed segment exists to be on another scale).
    fn mutable_scan(
        &self,
        field: &DenseField,
        q: &[f32],
        n: usize,
        limit: usize,
    ) -> (Vec<Candidate>, Vec<SegmentPlan>) {
        let snap = self.snap;
        let borrowed = snap
            .version
            .mutable
            .borrowed()
            .filter(|b| field.rotation == Rotation::Pca && b.rotation(&field.name).is_some());
        let (n, qp) = match borrowed {
            Some(b) => (n, borrowed_query(field, b, q, n)),
            None if field.rotation == Rotation::Pca => {
                (field.dim, prefix_query(field.metric, q, field.dim))
            }
            None => (n, prefix_query(field.metric, q, n)),
        };
        let qp = &qp[..];
        let mut out = Vec::new();
        let mut plans = Vec::new();
        let t = Instant::now();
        let m = &snap.version.mutable;
        if snap.schema.dense(&field.name).is_some() {
            let mut heap = TopK::new(limit.min(m.rows()));
            let mut n_allowed = 0;
            for c in m.chunks() {
                let rows = match borrowed {
                    Some(_) => c.rotated(&field.name),
                    None => c.vectors(&field.name),
                };
                let Some(vectors) = rows else {
                    continue;
                };
                for r in 0..c.rows() as u32 {
                    if c.visible(r, snap.seq)
                        && self.filter.as_ref().is_none_or(|f| f.matches(c.payload(r)))
                    {
                        n_allowed += 1;
                        heap.push(Neighbor {
                            id: c.start() + r,
                            score: prefix_score(field.metric, qp, &vectors.row(r)[..n]),
                        });
                    }
                }
            }
            plans.push(SegmentPlan {
                segment: "mutable".into(),
                rows: m.rows(),
                allowed: n_allowed,
                method: "exact-prefix",
                micros: t.elapsed().as_micros(),
            });
            out.extend(heap.into_sorted().into_iter().map(|nb| Candidate {
                loc: Loc::Mutable(nb.id),
                score: nb.score,
            }));
        }
        (out, plans)
    }
}

/// The query's first `n` dimensions, renormalised for cosine.
fn prefix_query(metric: Metric, q: &[f32], n: usize) -> Vec<f32> {
    let mut p = q[..n].to_vec();
    if metric.normalizes() {
        quiver_linalg::normalize(&mut p);
    }
    p
}

/// The query prepared for sealed segment `s` on the first `n` dimensions: rotated by the
/// segment's PCA rotation when it has one, then cut and renormalised for cosine.
fn seg_query(snap: &Snapshot, field: &DenseField, s: usize, q: &[f32], n: usize) -> Vec<f32> {
    match snap.version.segments[s].rotation(&field.name) {
        Some(rot) => {
            let mut r = vec![0.0f32; field.dim];
            rot.apply(q, &mut r);
            prefix_query(field.metric, &r, n)
        }
        None => prefix_query(field.metric, q, n),
    }
}

/// The query prepared for the mutable segment's borrowed codes on the first `n` dimensions: as
/// [`seg_query`] does for the segment they were borrowed from.
fn borrowed_query(field: &DenseField, b: &BorrowedCodes, q: &[f32], n: usize) -> Vec<f32> {
    match b.rotation(&field.name) {
        Some(rot) => {
            let mut r = vec![0.0f32; field.dim];
            rot.apply(q, &mut r);
            prefix_query(field.metric, &r, n)
        }
        None => prefix_query(field.metric, q, n),
    }
}

/// Prefix score of stored vector `v` against `qp` (length `n`), rotating `v` first (into `buf`)
/// when the segment has a rotation.
fn row_prefix_score(
    metric: Metric,
    qp: &[f32],
    v: &[f32],
    rot: Option<&Pca>,
    buf: &mut [f32],
) -> f32 {
    let n = qp.len();
    match rot {
        Some(r) => {
            r.apply(v, &mut buf[..n]);
            prefix_score(metric, qp, &buf[..n])
        }
        None => prefix_score(metric, qp, &v[..n]),
    }
}

/// Score of a stored prefix against a prepared prefix query; cosine divides by the prefix norm.
fn prefix_score(metric: Metric, qp: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => {
            let nv = quiver_linalg::dot(v, v).sqrt();
            if nv > 0.0 {
                quiver_linalg::dot(qp, v) / nv
            } else {
                0.0
            }
        }
        m => m.score(qp, v),
    }
}

/// Re-scores `cands` with the stored f32 vectors of `field` on the first `n` dimensions.
fn rescore_dense(
    snap: &Snapshot,
    field: &DenseField,
    q: &[f32],
    n: usize,
    cands: &mut [Candidate],
) {
    // On a rotated field a prefix is taken of the rotated vector; rows of the mutable segment,
    // which has no rotation, are scored at full dimension.
    let rotated = n < field.dim && field.rotation == Rotation::Pca;
    if !rotated {
        let qp = prefix_query(field.metric, q, n);
        for c in cands.iter_mut() {
            c.score = snap
                .with_vector(&field.name, c.loc, |v| {
                    prefix_score(field.metric, &qp, &v[..n])
                })
                .unwrap_or(f32::NEG_INFINITY);
        }
        return;
    }
    let full = prefix_query(field.metric, q, field.dim);
    let mut per_seg: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut buf = vec![0.0f32; n];
    // Mutable rows, rotated by the rotation the mutable segment borrowed, score on the same scale.
    let borrowed = snap.version.mutable.borrowed();
    let mutable_q = borrowed.map(|b| borrowed_query(field, b, q, n));
    let mutable_rot = borrowed
        .and_then(|b| b.rotation(&field.name))
        .zip(mutable_q.as_ref());
    for c in cands.iter_mut() {
        c.score = match c.loc {
            Loc::Sealed(s, r) => {
                let seg = &snap.version.segments[s];
                let qp = per_seg
                    .entry(s)
                    .or_insert_with(|| seg_query(snap, field, s, q, n));
                match seg.vectors(&field.name) {
                    Some(v) => row_prefix_score(
                        field.metric,
                        qp,
                        v.row(r),
                        seg.rotation(&field.name),
                        &mut buf,
                    ),
                    None => f32::NEG_INFINITY,
                }
            }
            Loc::Mutable(_) => match mutable_rot {
                Some((rot, qp)) => snap
                    .with_vector(&field.name, c.loc, |v| {
                        row_prefix_score(field.metric, qp, v, Some(rot), &mut buf)
                    })
                    .unwrap_or(f32::NEG_INFINITY),
                None => snap
                    .with_vector(&field.name, c.loc, |v| prefix_score(field.metric, &full, v))
                    .unwrap_or(f32::NEG_INFINITY),
            },
        };
    }
}

/// Position of the codec `kind` on `n` dimensions among `field.codecs`.
fn codec_index(
    field: &DenseField,
    kind: CodecKind,
    n: usize,
    at: &str,
) -> Result<usize, QueryError> {
    field
        .codecs
        .iter()
        .position(|c| c.kind == kind && c.dims_of(field.dim) == n)
        .ok_or_else(|| {
            let declared: Vec<String> = field.codecs.iter().map(|c| c.label(field.dim)).collect();
            QueryError::BadPlan(format!(
                "{at}: field {:?} has no {} codes on {n} dimensions (declared: {})",
                field.name,
                kind.name(),
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ))
        })
}

/// Re-scores `cands` with the codes `field.codecs[idx]`; rows of the mutable segment, which has
/// no codes, are scored with the f32 prefix.
fn rescore_codes(
    snap: &Snapshot,
    field: &DenseField,
    idx: usize,
    q: &[f32],
    n: usize,
    cands: &mut [Candidate],
) -> Result<(), QueryError> {
    let mut scorers: HashMap<usize, Option<QueryScorer>> = HashMap::new();
    // Mutable rows: the codes they borrowed from a sealed segment; without any (no sealed
    // segment existed), f32 on the prefix, or on the full vector when the field is rotated.
    let m = &snap.version.mutable;
    let mutable_scorer = m.borrowed().and_then(|b| {
        let (dims, codec) = b.codec(&field.name, idx).filter(|(d, _)| *d == n)?;
        codec.query(&borrowed_query(field, b, q, dims)).ok()
    });
    let (nm, qm) = if field.rotation == Rotation::Pca {
        (field.dim, prefix_query(field.metric, q, field.dim))
    } else {
        (n, prefix_query(field.metric, q, n))
    };
    for c in cands.iter_mut() {
        let coded = match c.loc {
            Loc::Sealed(s, r) => match seg_scorer(snap, field, idx, s, q, n, &mut scorers)? {
                Some((sc, codes)) => {
                    let len = sc.code_len();
                    let at = r as usize * len;
                    Some(sc.score(&codes[at..at + len]))
                }
                None => None,
            },
            Loc::Mutable(r) => mutable_scorer.as_ref().and_then(|sc| {
                let (chunk, local) = m.locate(r);
                let codes = chunk.codes(&field.name, idx)?;
                let len = sc.code_len();
                let at = local as usize * len;
                codes.get(at..at + len).map(|code| sc.score(code))
            }),
        };
        c.score = match coded {
            Some(x) => x,
            None => snap
                .with_vector(&field.name, c.loc, |v| {
                    prefix_score(field.metric, &qm, &v[..nm])
                })
                .unwrap_or(f32::NEG_INFINITY),
        };
    }
    Ok(())
}

/// The query scorer of segment `s`'s codes `idx` (built once per segment) and those codes.
fn seg_scorer<'a>(
    snap: &'a Snapshot,
    field: &DenseField,
    idx: usize,
    s: usize,
    q: &[f32],
    n: usize,
    cache: &'a mut HashMap<usize, Option<QueryScorer>>,
) -> Result<Option<(&'a QueryScorer, &'a [u8])>, QueryError> {
    let Some(fc) = snap.version.segments[s].codes(&field.name).get(idx) else {
        return Ok(None);
    };
    let slot = match cache.entry(s) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let sc = fc
                .codec
                .query(&seg_query(snap, field, s, q, n))
                .map_err(|e| QueryError::BadPlan(format!("codes of {:?}: {e}", field.name)))?;
            e.insert(Some(sc))
        }
    };
    Ok(slot.as_ref().map(|sc| (sc, fc.codes.as_slice())))
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
