//! The plan as data: sources, fusion, rescore stages and their JSON forms.

use super::*;
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
    /// Corpus statistics to score with instead of the collection's own: `{"docs": N,
    /// "total_len": L, "df": {"term": n}}`, summed over every shard of a sharded collection so
    /// that each shard scores as one collection holding all documents would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<quiver_text::CorpusStats>,
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

pub(super) fn rrf_k() -> f32 {
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
