//! Zero-shot classification by similarity: documents take the label whose vector is nearest.
//!
//! Two ways of making the label vectors from the same inputs (unit vectors of each label's
//! description, and of the documents to classify):
//!
//! - **plain** (the SBERT baseline of Schopf et al., 2022): the description's vector itself;
//! - **refined** (in the manner of Lbl2TransformerVec, same paper): starting from the description,
//!   each label vector is replaced by the centroid of the documents nearest to it, `iterations`
//!   times. A label keeps only documents that are nearer to it than to any other label (so a
//!   strong label does not absorb its neighbours'), the `top_docs` most similar of them; a label
//!   that has none keeps its vector.
//!
//! Assignment is by cosine (argmax), and with a threshold every label at or above it (multi-label).
//! Inputs are row-major; vectors are normalised here, so any scale is accepted.

use crate::{dot, normalize, LinalgError};

/// How label vectors are made from descriptions and documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelParams {
    /// Refinement rounds (0 = plain description vectors).
    pub iterations: usize,
    /// Documents averaged per label and round; `None`: half a balanced share, `n / (2 * labels)`
    /// (at least 1).
    pub top_docs: Option<usize>,
}

impl LabelParams {
    /// Documents averaged per label and round for `n` documents and `labels` labels.
    pub fn top_docs_for(&self, n: usize, labels: usize) -> usize {
        self.top_docs.unwrap_or(n / (2 * labels.max(1))).max(1)
    }
}

impl Default for LabelParams {
    fn default() -> Self {
        LabelParams {
            iterations: 1,
            top_docs: None,
        }
    }
}

/// One document's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Index of the most similar label.
    pub best: usize,
    /// Its cosine.
    pub score: f32,
    /// With a threshold: every label whose cosine is at least it, most similar first (may be
    /// empty); without one, just `best`.
    pub labels: Vec<usize>,
}

fn unit_rows(m: &[f32], d: usize, what: &str) -> Result<Vec<f32>, LinalgError> {
    if d == 0 || m.is_empty() || !m.len().is_multiple_of(d) {
        return Err(LinalgError::InvalidInput(format!(
            "{what}: {} values do not make rows of {d}",
            m.len()
        )));
    }
    if let Some(i) = m.iter().position(|v| !v.is_finite()) {
        return Err(LinalgError::NonFinite {
            row: i / d,
            col: i % d,
        });
    }
    let mut m = m.to_vec();
    for r in m.chunks_mut(d) {
        normalize(r);
    }
    Ok(m)
}

/// For each document, the nearest label and its cosine.
fn nearest(labels: &[f32], docs: &[f32], d: usize) -> Vec<(usize, f32)> {
    docs.chunks_exact(d)
        .map(|v| {
            labels.chunks_exact(d).map(|l| dot(v, l)).enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (j, s)| if s > b.1 { (j, s) } else { b },
            )
        })
        .collect()
}

/// The label vectors (`labels x d`, unit) for `descriptions` (`labels x d`) over `docs`
/// (`n x d`), refined as `params` says.
pub fn label_vectors(
    descriptions: &[f32],
    docs: &[f32],
    d: usize,
    params: LabelParams,
) -> Result<Vec<f32>, LinalgError> {
    let mut labels = unit_rows(descriptions, d, "label descriptions")?;
    let docs = unit_rows(docs, d, "documents")?;
    let (m, n) = (labels.len() / d, docs.len() / d);
    let top = params.top_docs_for(n, m);
    for _ in 0..params.iterations {
        let near = nearest(&labels, &docs, d);
        for j in 0..m {
            let mut mine: Vec<(f32, usize)> = near
                .iter()
                .enumerate()
                .filter(|(_, &(l, _))| l == j)
                .map(|(i, &(_, s))| (s, i))
                .collect();
            if mine.is_empty() {
                continue;
            }
            mine.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut c = vec![0.0f32; d];
            for &(_, i) in mine.iter().take(top) {
                c.iter_mut()
                    .zip(&docs[i * d..(i + 1) * d])
                    .for_each(|(a, x)| *a += x);
            }
            if normalize(&mut c) {
                labels[j * d..(j + 1) * d].copy_from_slice(&c);
            }
        }
    }
    Ok(labels)
}

/// Assigns every document (`n x d`) to the label vectors (`labels x d`); `threshold` makes it
/// multi-label.
pub fn assign(
    labels: &[f32],
    docs: &[f32],
    d: usize,
    threshold: Option<f32>,
) -> Result<Vec<Assignment>, LinalgError> {
    let labels = unit_rows(labels, d, "labels")?;
    let docs = unit_rows(docs, d, "documents")?;
    if let Some(t) = threshold.filter(|t| !t.is_finite()) {
        return Err(LinalgError::InvalidInput(format!(
            "threshold {t} is not finite"
        )));
    }
    Ok(docs
        .chunks_exact(d)
        .map(|v| {
            let scores: Vec<f32> = labels.chunks_exact(d).map(|l| dot(v, l)).collect();
            let (best, score) =
                scores
                    .iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (j, s)| if s > b.1 { (j, s) } else { b },
                    );
            let labels = match threshold {
                None => vec![best],
                Some(t) => {
                    let mut over: Vec<usize> =
                        (0..scores.len()).filter(|&j| scores[j] >= t).collect();
                    over.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                    over
                }
            };
            Assignment {
                best,
                score,
                labels,
            }
        })
        .collect())
}

/// Accuracy and macro-F1 (the unweighted mean of each class's F1; a class never predicted nor
/// present is skipped, one present but never predicted counts 0) of `predicted` against `truth`.
pub fn accuracy_and_macro_f1(predicted: &[usize], truth: &[usize], classes: usize) -> (f64, f64) {
    let n = predicted.len().min(truth.len());
    if n == 0 || classes == 0 {
        return (0.0, 0.0);
    }
    let (mut tp, mut fp, mut fneg) = (
        vec![0usize; classes],
        vec![0usize; classes],
        vec![0usize; classes],
    );
    let mut right = 0;
    for (&p, &t) in predicted.iter().zip(truth) {
        if p == t {
            right += 1;
            if p < classes {
                tp[p] += 1;
            }
        } else {
            if p < classes {
                fp[p] += 1;
            }
            if t < classes {
                fneg[t] += 1;
            }
        }
    }
    let mut f1s = Vec::new();
    for c in 0..classes {
        if tp[c] + fp[c] + fneg[c] == 0 {
            continue;
        }
        f1s.push(2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fneg[c]) as f64);
    }
    let macro_f1 = f1s.iter().sum::<f64>() / f1s.len().max(1) as f64;
    (right as f64 / n as f64, macro_f1)
}
