//! Scores a plan compares: prefix and rotated-prefix queries, f32 and code rescoring. Every
//! segment's rows are scored by that segment's own index — a sealed segment's rotation and
//! codes, the mutable segment's borrowed ones — so every cut compares one scale.

use super::*;

/// Dimensions a prefix of `n` is compared on in `index`: `n`, except that on a PCA-rotated
/// field an index without a rotation compares full vectors: a prefix of unrotated vectors is not
/// the prefix such a field means. That is the mutable segment before any seal (and a sealed
/// segment written before rotations were fitted for fields without codecs, or whose rotation
/// failed its checks).
pub(super) fn prefix_dims(field: &DenseField, index: &dyn VectorIndex, n: usize) -> usize {
    if field.rotation == Rotation::Pca && index.rotation().is_none() {
        field.dim
    } else {
        n
    }
}

/// One segment's index and a query prepared for prefix scoring on it.
pub(super) struct PrefixScorer<'a> {
    pub(super) index: Handle<'a, dyn VectorIndex + 'a>,
    pub(super) qp: Vec<f32>,
    buf: Vec<f32>,
}

impl<'a> PrefixScorer<'a> {
    pub(super) fn new(
        field: &DenseField,
        index: Handle<'a, dyn VectorIndex + 'a>,
        q: &[f32],
        n: usize,
    ) -> Self {
        let n = prefix_dims(field, &*index, n);
        let qp = index.prepare_prefix(q, n);
        PrefixScorer {
            buf: vec![0.0; n],
            index,
            qp,
        }
    }

    pub(super) fn score(&mut self, row: u32) -> f32 {
        self.index.prefix_score(&self.qp, row, &mut self.buf)
    }
}

/// Re-scores `cands` with the stored f32 vectors of `field` on the first `n` dimensions (of the
/// rotated vectors on a rotated field).
pub(super) fn rescore_dense(
    snap: &Snapshot,
    field: &DenseField,
    q: &[f32],
    n: usize,
    cands: &mut [Candidate],
) {
    let mut per_seg: HashMap<usize, Option<PrefixScorer<'_>>> = HashMap::new();
    for c in cands.iter_mut() {
        let (s, r) = snap.place(c.loc);
        let sc = per_seg.entry(s).or_insert_with(|| {
            let index = snap.segment(s).dense(&field.name)?;
            Some(PrefixScorer::new(field, index, q, n))
        });
        c.score = sc.as_mut().map_or(f32::NEG_INFINITY, |sc| sc.score(r));
    }
}

/// Position of the codec `kind` on `n` dimensions among `field.codecs`.
pub(super) fn codec_index(
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

/// The scorer of codec `idx` of `index` for query `q` on `n` dimensions (`None`: the index has
/// no such codes).
pub(super) fn code_scorer(
    field: &DenseField,
    index: &dyn VectorIndex,
    idx: usize,
    q: &[f32],
    n: usize,
) -> Result<Option<QueryScorer>, QueryError> {
    let Some(codec) = index.codec(idx) else {
        return Ok(None);
    };
    codec
        .query(&index.prepare(q, n))
        .map(Some)
        .map_err(|e| QueryError::BadPlan(format!("codes of {:?}: {e}", field.name)))
}

/// Re-scores `cands` with the codes `field.codecs[idx]`; rows of a segment without them (the
/// mutable segment before any seal) are scored with the f32 prefix.
pub(super) fn rescore_codes(
    snap: &Snapshot,
    field: &DenseField,
    idx: usize,
    q: &[f32],
    n: usize,
    cands: &mut [Candidate],
) -> Result<(), QueryError> {
    type Scorers<'a> = Option<(PrefixScorer<'a>, Option<QueryScorer>)>;
    let mut per_seg: HashMap<usize, Scorers<'_>> = HashMap::new();
    for c in cands.iter_mut() {
        let (s, r) = snap.place(c.loc);
        let entry = match per_seg.entry(s) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let scorers = match snap.segment(s).dense(&field.name) {
                    None => None,
                    Some(index) => {
                        let codes = code_scorer(field, &*index, idx, q, n)?;
                        Some((PrefixScorer::new(field, index, q, n), codes))
                    }
                };
                e.insert(scorers)
            }
        };
        let Some((prefix, codes)) = entry else {
            c.score = f32::NEG_INFINITY;
            continue;
        };
        let coded = codes
            .as_ref()
            .and_then(|sc| prefix.index.code(idx, r).map(|code| sc.score(code)));
        c.score = match coded {
            Some(x) => x,
            None => prefix.score(r),
        };
    }
    Ok(())
}
