//! Candidate sources of a plan, one per prefetch: dense f32 (graph or scan), prefixes, compact
//! codes, over every sealed segment and the mutable segment.

use super::score::*;
use super::*;

pub(super) struct Exec<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) encoder: Option<&'a dyn QueryEncoder>,
    pub(super) filter: Option<Filter>,
    /// Allowed rows per sealed segment, computed once.
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

    /// Candidates from the compact codes `field.codecs[idx]` (on the first `n` dimensions): an
    /// HNSW walk scored by the codes when they cover the full vector and the segment has a graph
    /// (unless `exact` or a selective filter favours scanning), else a scan of the allowed rows'
    /// codes. The mutable segment has no codes and is scanned exactly on the f32 prefix.
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
    pub(super) fn mutable_codes(
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
    pub(super) fn prefix_scan(
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
    pub(super) fn mutable_scan(
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
