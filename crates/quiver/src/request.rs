//! [`Query`]: one request type for every kind of search, compiled into a [`Plan`].
//!
//! ```json
//! {"text": "who likes quokkas?", "mode": "hybrid", "limit": 10,
//!  "filter": {"field": "year", "gte": 2020}, "fusion": {"rrf": {"k": 60}}}
//! ```
//!
//! Simple modes are presets of the plan model, so there is one executor, one fusion and one
//! tie-break rule for all of them:
//!
//! | mode     | plan                                                                      |
//! |----------|---------------------------------------------------------------------------|
//! | `dense`  | one dense source (`field`, `text` or `vector`, `ef`, `exact`)             |
//! | `bm25`   | one bm25 source on `text_field`                                           |
//! | `hybrid` | a dense and a bm25 source, `candidates` each, fused (`fusion`, RRF k=60)  |
//! | `multi`  | one multi source on `multi_field` (MUVERA + MaxSim rerank, or `exact`)    |
//! | `funnel` | the dense field's codec or Matryoshka cascade (`shortlist`)               |
//! | `plan`   | `plan` as given (its own filter and limit, unless the query sets them)     |

use crate::error::{EngineError, Result};
use quiver_query::plan::{Bm25Query, DenseQuery, Fusion, Plan, Prefetch, Source};
use quiver_query::{MultiQuery, QueryError};
use quiver_storage::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a [`Query`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// k-NN on a dense field (a text is embedded with the field's model).
    Dense,
    /// BM25 on a text field.
    Bm25,
    /// Dense and BM25 candidates, fused.
    Hybrid,
    /// MaxSim on a multi-vector field.
    Multi,
    /// The dense field's funnel: cheapest codec (or shortest prefix) shortlist, then richer
    /// codes, then full f32 vectors.
    Funnel,
    /// A full [`Plan`] (`plan`).
    Plan,
}

impl Mode {
    /// Every mode, in documentation order.
    pub const ALL: [Mode; 6] = [
        Mode::Dense,
        Mode::Bm25,
        Mode::Hybrid,
        Mode::Multi,
        Mode::Funnel,
        Mode::Plan,
    ];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dense => "dense",
            Mode::Bm25 => "bm25",
            Mode::Hybrid => "hybrid",
            Mode::Multi => "multi",
            Mode::Funnel => "funnel",
            Mode::Plan => "plan",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn ten() -> usize {
    10
}
fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A search request: text or vectors, a mode, a filter, how many results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Query text: embedded with the field's model (dense, multi), analysed (bm25), or both
    /// (hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Query vector of a dense field (instead of `text` for dense and funnel; beside `text` in
    /// hybrid, where the text then serves BM25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Query vectors of a multi field (instead of `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vec<Vec<f32>>>,
    /// What to run (default: see [`Query::resolve_mode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Dense field (default: the only one, or the only one with a model for text queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Text field for BM25 (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_field: Option<String>,
    /// Multi field (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_field: Option<String>,
    /// Payload filter (see [`quiver_storage::Filter::from_json`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Results returned.
    #[serde(default = "ten")]
    pub limit: usize,
    /// Results skipped before `limit`.
    #[serde(default)]
    pub offset: usize,
    /// HNSW beam width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Exact scan (dense, hybrid's dense source) or brute-force MaxSim (multi).
    #[serde(default, skip_serializing_if = "is_false")]
    pub exact: bool,
    /// Candidates per source before fusion (hybrid; default max(100, offset + limit)), or MUVERA
    /// candidates reranked per segment (multi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    /// Fusion of hybrid's sources (default RRF, k = 60, equal weights: dense then bm25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// First-stage shortlist of the funnel (default max(100·limit, 1000)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortlist: Option<usize>,
    /// Multi: ball-carve the query vectors at this inner-product threshold before the rerank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ball_carving: Option<f32>,
    /// Include payloads in hits.
    #[serde(default = "yes")]
    pub with_payload: bool,
    /// A full plan (mode `plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: None,
            vector: None,
            vectors: None,
            mode: None,
            field: None,
            text_field: None,
            multi_field: None,
            filter: None,
            limit: 10,
            offset: 0,
            ef: None,
            exact: false,
            candidates: None,
            fusion: None,
            shortlist: None,
            ball_carving: None,
            with_payload: true,
            plan: None,
        }
    }
}

impl Query {
    /// A text query (the mode follows from the schema).
    pub fn text(text: impl Into<String>) -> Query {
        Query {
            text: Some(text.into()),
            ..Default::default()
        }
    }

    /// A dense-vector query.
    pub fn vector(vector: Vec<f32>) -> Query {
        Query {
            vector: Some(vector),
            ..Default::default()
        }
    }

    /// A full plan.
    pub fn plan(plan: Plan) -> Query {
        Query {
            mode: Some(Mode::Plan),
            plan: Some(plan),
            ..Default::default()
        }
    }

    /// This query in mode `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Query {
        self.mode = Some(mode);
        self
    }

    /// This query returning `limit` hits.
    pub fn with_limit(mut self, limit: usize) -> Query {
        self.limit = limit;
        self
    }

    /// This query with a payload filter (JSON, see [`quiver_storage::Filter::from_json`]).
    pub fn with_filter(mut self, filter: Value) -> Query {
        self.filter = Some(filter);
        self
    }

    /// Parses a query from JSON; errors name the offending key.
    pub fn from_json(text: &str) -> Result<Query> {
        serde_json::from_str(text).map_err(|e| EngineError::BadRequest(format!("query: {e}")))
    }

    /// The mode to run: `mode` if set; `plan` when a plan is given; `multi` for query vector
    /// sets or a `multi_field`; `dense` for a query vector; for a text: `dense` if a dense field
    /// has a model, else `bm25` if there is a text field, else `multi` if a multi field has a
    /// model.
    pub fn resolve_mode(&self, schema: &Schema) -> Result<Mode> {
        if let Some(m) = self.mode {
            return Ok(m);
        }
        if self.plan.is_some() {
            return Ok(Mode::Plan);
        }
        if self.vectors.is_some() || self.multi_field.is_some() {
            return Ok(Mode::Multi);
        }
        if self.vector.is_some() {
            return Ok(Mode::Dense);
        }
        if self.text.is_none() {
            return Err(EngineError::BadRequest(
                "give a query text, a vector, vectors (multi) or a plan".into(),
            ));
        }
        if schema
            .dense_fields()
            .iter()
            .any(|f| f.embedding.model.is_some())
        {
            Ok(Mode::Dense)
        } else if !schema.text_fields().is_empty() {
            Ok(Mode::Bm25)
        } else if schema
            .multi_fields()
            .iter()
            .any(|f| f.embedding.model.is_some())
        {
            Ok(Mode::Multi)
        } else {
            Err(EngineError::BadRequest(
                "this collection has no model-backed dense or multi field and no text field, so a text query cannot run; give a vector".into(),
            ))
        }
    }

    /// Compiles the query into the plan that runs it, checking that its parts fit the mode.
    pub fn to_plan(&self, schema: &Schema) -> Result<(Mode, Plan)> {
        let mode = self.resolve_mode(schema)?;
        self.check_parts(mode)?;
        let depth = self.offset + self.limit;
        let plan = match mode {
            Mode::Plan => {
                let mut plan = self.plan.clone().ok_or_else(|| {
                    EngineError::BadRequest("mode \"plan\" needs a `plan`".into())
                })?;
                if self.filter.is_some() {
                    plan.filter = self.filter.clone();
                }
                return Ok((mode, plan));
            }
            Mode::Dense => self.wrap(vec![Prefetch {
                source: Source::Dense(self.dense_query(schema, mode)?),
                limit: depth,
            }]),
            Mode::Bm25 => self.wrap(vec![Prefetch {
                source: Source::Bm25(self.bm25_query(mode)?),
                limit: depth,
            }]),
            Mode::Hybrid => {
                let n = self.candidates.unwrap_or(100).max(depth);
                let mut plan = self.wrap(vec![
                    Prefetch {
                        source: Source::Dense(self.dense_query(schema, mode)?),
                        limit: n,
                    },
                    Prefetch {
                        source: Source::Bm25(self.bm25_query(mode)?),
                        limit: n,
                    },
                ]);
                plan.fusion = Some(self.fusion.clone().unwrap_or(Fusion::Rrf {
                    k: quiver_query::DEFAULT_RRF_K,
                    weights: Vec::new(),
                }));
                plan
            }
            Mode::Multi => self.wrap(vec![Prefetch {
                source: Source::Multi(self.multi_query(schema)?),
                limit: depth,
            }]),
            Mode::Funnel => {
                let field = dense_field(schema, self.field.as_deref(), self.text.is_some())?;
                let q = self.dense_query(schema, mode)?;
                let mut plan = quiver_query::presets::funnel(&field, q, depth, self.shortlist)?;
                plan.filter = self.filter.clone();
                plan.limit = self.limit;
                plan.offset = self.offset;
                plan.with_payload = self.with_payload;
                plan
            }
        };
        Ok((mode, plan))
    }

    fn wrap(&self, prefetch: Vec<Prefetch>) -> Plan {
        Plan {
            prefetch,
            fusion: None,
            rescore: Vec::new(),
            filter: self.filter.clone(),
            limit: self.limit,
            offset: self.offset,
            with_payload: self.with_payload,
        }
    }

    /// Rejects parts the mode would silently ignore.
    fn check_parts(&self, mode: Mode) -> Result<()> {
        let bad = |part: &str| {
            Err(EngineError::BadRequest(format!(
                "`{part}` does not apply to mode {mode:?} (modes: dense, bm25, hybrid, multi, funnel, plan)",
                mode = mode.name()
            )))
        };
        let dense_like = matches!(mode, Mode::Dense | Mode::Hybrid | Mode::Funnel);
        if self.plan.is_some() && mode != Mode::Plan {
            return bad("plan");
        }
        if mode == Mode::Plan {
            for (set, part) in [
                (self.text.is_some(), "text"),
                (self.vector.is_some(), "vector"),
                (self.vectors.is_some(), "vectors"),
                (self.fusion.is_some(), "fusion"),
                (self.candidates.is_some(), "candidates"),
            ] {
                if set {
                    return Err(EngineError::BadRequest(format!(
                        "`{part}` does not apply to mode \"plan\": put it in the plan's sources"
                    )));
                }
            }
            return Ok(());
        }
        if self.vector.is_some() && !dense_like {
            return bad("vector");
        }
        if self.vectors.is_some() && mode != Mode::Multi {
            return bad("vectors");
        }
        if self.multi_field.is_some() && mode != Mode::Multi {
            return bad("multi_field");
        }
        if self.text_field.is_some() && !matches!(mode, Mode::Bm25 | Mode::Hybrid) {
            return bad("text_field");
        }
        if self.field.is_some() && !dense_like {
            return bad("field");
        }
        if self.fusion.is_some() && mode != Mode::Hybrid {
            return bad("fusion");
        }
        if self.candidates.is_some() && !matches!(mode, Mode::Hybrid | Mode::Multi) {
            return bad("candidates");
        }
        if self.shortlist.is_some() && mode != Mode::Funnel {
            return bad("shortlist");
        }
        if self.ball_carving.is_some() && mode != Mode::Multi {
            return bad("ball_carving");
        }
        if self.exact && matches!(mode, Mode::Bm25 | Mode::Funnel) {
            return bad("exact");
        }
        if self.ef.is_some() && mode == Mode::Bm25 {
            return bad("ef");
        }
        if mode == Mode::Hybrid && self.text.is_none() {
            return Err(EngineError::BadRequest(
                "mode \"hybrid\" needs a query text (for BM25; the dense side may take `vector`)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn dense_query(&self, schema: &Schema, mode: Mode) -> Result<DenseQuery> {
        let (text, vector) = match (&self.vector, &self.text) {
            (Some(v), _) => (None, Some(v.clone())),
            (None, Some(t)) => (Some(t.clone()), None),
            (None, None) => {
                return Err(EngineError::BadRequest(format!(
                    "mode {:?} needs a query text or a vector",
                    mode.name()
                )))
            }
        };
        let field = dense_field(schema, self.field.as_deref(), text.is_some())?;
        Ok(DenseQuery {
            field: Some(field.name),
            text,
            vector,
            ef: self.ef,
            exact: self.exact,
            ..Default::default()
        })
    }

    fn bm25_query(&self, mode: Mode) -> Result<Bm25Query> {
        let text = self.text.clone().ok_or_else(|| {
            EngineError::BadRequest(format!("mode {:?} needs a query text", mode.name()))
        })?;
        Ok(Bm25Query {
            field: self.text_field.clone(),
            text,
            stats: None,
        })
    }

    fn multi_query(&self, schema: &Schema) -> Result<MultiQuery> {
        let field = match &self.multi_field {
            Some(f) => schema
                .multi(f)
                .ok_or_else(|| EngineError::Query(QueryError::UnknownMultiField(f.to_string())))?,
            None => match schema.multi_fields().as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(EngineError::BadRequest(
                        "this collection has no multi field".into(),
                    ))
                }
                many => {
                    return Err(EngineError::BadRequest(format!(
                        "several multi fields ({}): name one with `multi_field`",
                        many.iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            },
        };
        if self.text.is_some() == self.vectors.is_some() {
            return Err(EngineError::BadRequest(
                "mode \"multi\" needs exactly one of a query text and `vectors`".into(),
            ));
        }
        Ok(MultiQuery {
            field: field.name,
            text: self.text.clone(),
            vectors: self.vectors.clone(),
            exact: self.exact,
            candidates: self.candidates,
            ef: self.ef,
            ball_carving: self.ball_carving,
        })
    }
}

/// The dense field a query runs on: the named one; else the only one; else, for a text query,
/// the only one with a model.
pub(crate) fn dense_field(
    schema: &Schema,
    name: Option<&str>,
    text: bool,
) -> Result<quiver_storage::DenseField> {
    if let Some(n) = name {
        return schema
            .dense(n)
            .ok_or_else(|| EngineError::Query(QueryError::UnknownField(n.to_string())));
    }
    let all = schema.user_dense_fields();
    if let [one] = all.as_slice() {
        return Ok(one.clone());
    }
    let with_model: Vec<_> = all.iter().filter(|f| f.embedding.model.is_some()).collect();
    match (all.len(), with_model.as_slice()) {
        (0, _) => Err(EngineError::BadRequest(
            "this collection has no dense field".into(),
        )),
        (_, [one]) if text => Ok((*one).clone()),
        _ => Err(EngineError::BadRequest(format!(
            "several dense fields ({}): name one with `field`",
            all.iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One hit of a query.
pub use quiver_query::Hit;

/// The answer to a [`Query`].
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    /// Best first.
    pub hits: Vec<Hit>,
    /// The mode that ran.
    pub mode: Mode,
    /// What each stage of the plan did (candidates, best score, time, per-segment choices).
    pub explain: Vec<quiver_query::plan::StageReport>,
    /// Milliseconds spent (embedding included).
    pub took_ms: f64,
    /// For each field the query read whose backfill is not finished: how many visible
    /// documents do not hold it yet (they cannot be found through it). Empty otherwise.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pending: std::collections::BTreeMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "cosine"},
                           "body": {"type": "text"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn modes_compile_to_plans() {
        let s = schema();
        let (m, p) = Query::vector(vec![1.0, 0.0]).to_plan(&s).unwrap();
        assert_eq!(m, Mode::Dense);
        assert_eq!(p.prefetch.len(), 1);
        // A text query on a schema without a model runs BM25.
        let (m, p) = Query::text("q").to_plan(&s).unwrap();
        assert_eq!(m, Mode::Bm25);
        assert!(matches!(p.prefetch[0].source, Source::Bm25(_)));
        let q = Query {
            text: Some("q".into()),
            vector: Some(vec![1.0, 0.0]),
            mode: Some(Mode::Hybrid),
            limit: 5,
            offset: 2,
            ..Default::default()
        };
        let (_, p) = q.to_plan(&s).unwrap();
        assert_eq!(p.prefetch.len(), 2);
        assert_eq!(p.prefetch[0].limit, 100);
        assert_eq!((p.limit, p.offset), (5, 2));
        assert!(matches!(p.fusion, Some(Fusion::Rrf { .. })));
    }

    #[test]
    fn parts_a_mode_would_ignore_are_rejected() {
        let s = schema();
        let mut q = Query::text("q").with_mode(Mode::Bm25);
        q.fusion = Some(Fusion::Rrf {
            k: 60.0,
            weights: vec![],
        });
        let e = q.to_plan(&s).unwrap_err().to_string();
        assert!(e.contains("`fusion` does not apply"), "{e}");
        let mut q = Query::text("q").with_mode(Mode::Bm25);
        q.multi_field = Some("tok".into());
        assert!(q.to_plan(&s).is_err());
        assert!(Query::default().to_plan(&s).is_err());
        let e = Query::from_json(r#"{"text": "q", "limt": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limt"), "{e}");
    }
}
