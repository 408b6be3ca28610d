//! Candidate sources of a plan, one per prefetch: dense f32 (graph or scan), prefixes, compact
//! codes, with one path for every segment (sealed or mutable: each a `SegmentReader`).

use super::score::*;
use super::*;

pub(super) struct Exec<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) encoder: Option<&'a dyn QueryEncoder>,
    pub(super) filter: Option<Filter>,
    /// Allowed rows per segment, computed once.
    pub(super) allowed: BTreeMap<usize, Bitset>,
    /// Query vectors by field (full dimension, normalised for cosine).
    pub(super) vectors: HashMap<String, Vec<f32>>,
    /// Source texts, for stages that need a vector of another field.
    pub(super) texts: Vec<String>,
}

impl Exec<'_> {
    pub(super) fn field(&self, name: &Option<String>, at: &str) -> Result<DenseField, QueryError> {
        crate::resolve_dense(self.snap, name.as_deref())
            .map_err(|e| QueryError::BadPlan(format!("{at}.field: {e}")))
    }

    pub(super) fn allowed(&mut self, s: usize) -> &Bitset {
        let (snap, filter) = (self.snap, self.filter.as_ref());
        self.allowed
            .entry(s)
            .or_insert_with(|| snap.allowed(s, filter))
    }

    /// The query vector for `field`: `given` (validated), a cached one, or an embedded source text.
    pub(super) fn query_vector(
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

    pub(super) fn encode(
        &self,
        field: &DenseField,
        text: &str,
        at: &str,
    ) -> Result<Vec<f32>, QueryError> {
        let enc = self.encoder.ok_or_else(|| {
            QueryError::BadPlan(format!(
                "{at}: query text needs a model, but this caller has none; pass `vector`"
            ))
        })?;
        enc.encode_dense(field, text)
            .map_err(|e| QueryError::BadPlan(format!("{at}: embedding the query failed: {e}")))
    }

    pub(super) fn dense_source(
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

    /// Candidates from the compact codes `field.codecs[idx]` (on the first `n` dimensions), on
    /// every segment: an HNSW walk scored by the codes when they cover the full vector and the
    /// segment has a graph (unless `exact` or a selective filter favours scanning), else a scan
    /// of the allowed rows' codes. A segment without the codes (the mutable segment before any
    /// seal) is scanned exactly on the f32 prefix.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn code_source(
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
        for s in 0..snap.segments() {
            let t = Instant::now();
            let seg = snap.segment(s);
            let Some(index) = seg.dense(&field.name) else {
                continue;
            };
            let Some(scorer) = code_scorer(field, &*index, idx, q, n)? else {
                let (hits, plan) = self.prefix_segment(s, field, index, q, n, limit);
                out.extend(hits);
                plans.push(plan);
                continue;
            };
            let rows = seg.rows();
            let filtered = self.filter.is_some();
            let allowed = self.allowed(s);
            let n_allowed = allowed.count();
            let k = limit.min(rows);
            let graph = index.has_graph()
                && n == field.dim
                && !exact
                && !(filtered && crate::prefer_exact(n_allowed, rows, ef));
            let hits = index.search_codes(
                idx,
                &scorer,
                Knn {
                    k,
                    ef: ef.max(k),
                    allowed,
                    rows: Some(allowed),
                    graph,
                },
            );
            plans.push(SegmentPlan {
                segment: seg.name().to_string(),
                rows,
                allowed: n_allowed,
                method: if graph { "graph-codes" } else { "scan-codes" },
                micros: t.elapsed().as_micros(),
            });
            out.extend(hits.into_iter().map(|nb| Candidate {
                loc: snap.loc(s, nb.id),
                score: nb.score,
            }));
        }
        sort_candidates(snap, &mut out);
        out.truncate(limit);
        Ok((out, plans))
    }

    /// Exact scan of the allowed rows of segment `s` on the first `n` dimensions (of the rotated
    /// vectors on a rotated field; see [`prefix_dims`]).
    fn prefix_segment(
        &mut self,
        s: usize,
        field: &DenseField,
        index: Handle<'_, dyn VectorIndex + '_>,
        q: &[f32],
        n: usize,
        limit: usize,
    ) -> (Vec<Candidate>, SegmentPlan) {
        let t = Instant::now();
        let snap = self.snap;
        let seg = snap.segment(s);
        let rows = seg.rows();
        let rotated = index.rotation().is_some();
        let sc = PrefixScorer::new(field, index, q, n);
        let allowed = self.allowed(s);
        let hits = sc.index.scan_prefix(&sc.qp, allowed, limit.min(rows));
        let plan = SegmentPlan {
            segment: seg.name().to_string(),
            rows,
            allowed: allowed.count(),
            method: if rotated {
                "exact-prefix-rotated"
            } else {
                "exact-prefix"
            },
            micros: t.elapsed().as_micros(),
        };
        let hits = hits
            .into_iter()
            .map(|nb| Candidate {
                loc: snap.loc(s, nb.id),
                score: nb.score,
            })
            .collect();
        (hits, plan)
    }

    /// Exact scan of the allowed rows of every segment on the first `n` dimensions.
    pub(super) fn prefix_scan(
        &mut self,
        field: &DenseField,
        q: &[f32],
        n: usize,
        limit: usize,
    ) -> (Vec<Candidate>, Vec<SegmentPlan>) {
        let snap = self.snap;
        let mut out = Vec::new();
        let mut plans = Vec::new();
        for s in 0..snap.segments() {
            let Some(index) = snap.segment(s).dense(&field.name) else {
                continue;
            };
            let (hits, plan) = self.prefix_segment(s, field, index, q, n, limit);
            out.extend(hits);
            plans.push(plan);
        }
        sort_candidates(snap, &mut out);
        out.truncate(limit);
        (out, plans)
    }
}
