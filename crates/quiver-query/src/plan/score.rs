//! Scores a plan compares: prefix and rotated-prefix queries, f32 and code rescoring. Sealed
//! rows are scored with their segment's rotation and codes, mutable rows with the ones the
//! mutable segment borrowed, so every cut compares one scale.

use super::*;

/// The query's first `n` dimensions, renormalised for cosine.
pub(super) fn prefix_query(metric: Metric, q: &[f32], n: usize) -> Vec<f32> {
    let mut p = q[..n].to_vec();
    if metric.normalizes() {
        quiver_linalg::normalize(&mut p);
    }
    p
}

/// The query prepared for sealed segment `s` on the first `n` dimensions: rotated by the
/// segment's PCA rotation when it has one, then cut and renormalised for cosine.
pub(super) fn seg_query(
    snap: &Snapshot,
    field: &DenseField,
    s: usize,
    q: &[f32],
    n: usize,
) -> Vec<f32> {
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
pub(super) fn borrowed_query(
    field: &DenseField,
    b: &BorrowedCodes,
    q: &[f32],
    n: usize,
) -> Vec<f32> {
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
pub(super) fn row_prefix_score(
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
pub(super) fn prefix_score(metric: Metric, qp: &[f32], v: &[f32]) -> f32 {
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
pub(super) fn rescore_dense(
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

/// Re-scores `cands` with the codes `field.codecs[idx]`; rows of the mutable segment, which has
/// no codes, are scored with the f32 prefix.
pub(super) fn rescore_codes(
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
pub(super) fn seg_scorer<'a>(
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
