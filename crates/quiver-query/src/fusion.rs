//! Fusion: many ranked lists of [`Hit`]s (dense, BM25, ...) into one.
//!
//! - **Reciprocal rank fusion** (Cormack, Clarke & Büttcher, SIGIR 2009):
//!   `score(d) = Σ_i w_i / (k + rank_i(d))`, ranks from 1, `k = 60` by default; a list that does
//!   not contain `d` adds nothing. Only ranks matter, so scores of different scales mix safely.
//! - **Normalised score fusion**: each list's scores are rescaled, then `score(d) = Σ_i w_i ·
//!   norm_i(d)`. `min-max` maps a list onto [0, 1] (all equal: 1); `z-score` subtracts the list's
//!   mean and divides by its standard deviation (all equal: 0). A document missing from a list
//!   gets that list's lowest normalised score (0 for min-max), i.e. it counts as the worst seen.
//!
//! Ties are broken by key (id, or location inside a plan), so the result does not depend on the
//! order of equal-scored inputs. A document's payload is taken from the first list carrying it.
//! The core works on any key (`*_keyed`); [`crate::plan`] fuses row locations with it, and
//! [`rrf`], [`score_fusion`], [`fuse_hits`] fuse [`Hit`] lists by id.

use crate::plan::{Fusion, Norm};
use crate::{Hit, QueryError};
use quiver_storage::DocId;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Default `k` of reciprocal rank fusion (the paper's value).
pub const DEFAULT_RRF_K: f32 = 60.0;

fn check_weights(lists: usize, weights: &[f32]) -> Result<Vec<f32>, QueryError> {
    if weights.is_empty() {
        return Ok(vec![1.0; lists]);
    }
    if weights.len() != lists {
        return Err(QueryError::BadFusion(format!(
            "{} weights for {lists} result lists",
            weights.len()
        )));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(QueryError::BadFusion(format!(
            "weight {w} is not a finite number >= 0"
        )));
    }
    Ok(weights.to_vec())
}

/// Fused scores in first-seen order, then sorted best first (ties: smaller key first).
struct Acc<K> {
    index: HashMap<K, usize>,
    out: Vec<(K, f64)>,
}

impl<K: Clone + Eq + Hash + Ord> Acc<K> {
    fn new() -> Self {
        Acc {
            index: HashMap::new(),
            out: Vec::new(),
        }
    }

    fn add(&mut self, key: &K, s: f64) {
        match self.index.get(key) {
            Some(&i) => self.out[i].1 += s,
            None => {
                self.index.insert(key.clone(), self.out.len());
                self.out.push((key.clone(), s));
            }
        }
    }

    fn finish(mut self) -> Vec<(K, f32)> {
        self.out
            .sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.out.into_iter().map(|(k, s)| (k, s as f32)).collect()
    }
}

/// Reciprocal rank fusion of keyed lists (each best first); all fused keys, best first.
pub fn rrf_keyed<K: Clone + Eq + Hash + Ord>(
    lists: &[Vec<(K, f32)>],
    weights: &[f32],
    k: f32,
) -> Result<Vec<(K, f32)>, QueryError> {
    if !(k.is_finite() && k >= 0.0) {
        return Err(QueryError::BadFusion(format!(
            "rrf k must be a finite number >= 0, got {k}"
        )));
    }
    let w = check_weights(lists.len(), weights)?;
    let mut acc = Acc::new();
    for (list, &wi) in lists.iter().zip(&w) {
        let mut seen = HashSet::new();
        for (rank, (key, _)) in list.iter().enumerate() {
            // A key listed twice in one list counts once, at its best rank.
            if seen.insert(key) {
                acc.add(key, wi as f64 / (k as f64 + rank as f64 + 1.0));
            }
        }
    }
    Ok(acc.finish())
}

/// The normalised scores of one list, and the value a missing document gets.
fn normalize<K>(list: &[(K, f32)], how: Norm) -> (Vec<f64>, f64) {
    if list.is_empty() {
        return (Vec::new(), 0.0);
    }
    let s: Vec<f64> = list.iter().map(|x| x.1 as f64).collect();
    let n = s.len() as f64;
    match how {
        Norm::Minmax => {
            let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if hi > lo {
                (s.iter().map(|x| (x - lo) / (hi - lo)).collect(), 0.0)
            } else {
                (vec![1.0; s.len()], 0.0)
            }
        }
        Norm::Zscore => {
            let mean = s.iter().sum::<f64>() / n;
            let var = s.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let sd = var.sqrt();
            if sd > 0.0 {
                let z: Vec<f64> = s.iter().map(|x| (x - mean) / sd).collect();
                let lo = z.iter().copied().fold(f64::INFINITY, f64::min);
                (z, lo)
            } else {
                (vec![0.0; s.len()], 0.0)
            }
        }
    }
}

/// Normalised score fusion of keyed lists; all fused keys, best first.
pub fn score_keyed<K: Clone + Eq + Hash + Ord>(
    lists: &[Vec<(K, f32)>],
    weights: &[f32],
    how: Norm,
) -> Result<Vec<(K, f32)>, QueryError> {
    let w = check_weights(lists.len(), weights)?;
    let normed: Vec<(Vec<f64>, f64)> = lists.iter().map(|l| normalize(l, how)).collect();
    // Every key starts from the weighted sum of the lists' "missing" values; each list it appears
    // in replaces its missing value by the key's normalised score there.
    let base: f64 = normed
        .iter()
        .zip(&w)
        .map(|((_, m), wi)| *wi as f64 * m)
        .sum();
    let mut acc = Acc::new();
    for list in lists {
        for (key, _) in list {
            if !acc.index.contains_key(key) {
                acc.add(key, base);
            }
        }
    }
    for ((list, (norm, missing)), &wi) in lists.iter().zip(&normed).zip(&w) {
        let mut seen = HashSet::new();
        for ((key, _), x) in list.iter().zip(norm) {
            if seen.insert(key) {
                acc.add(key, wi as f64 * (x - missing));
            }
        }
    }
    Ok(acc.finish())
}

/// Fuses keyed lists with a plan's [`Fusion`].
pub fn fuse_keyed<K: Clone + Eq + Hash + Ord>(
    lists: &[Vec<(K, f32)>],
    fusion: &Fusion,
) -> Result<Vec<(K, f32)>, QueryError> {
    match fusion {
        Fusion::Rrf { k, weights } => rrf_keyed(lists, weights, *k),
        Fusion::Score { norm, weights } => score_keyed(lists, weights, *norm),
    }
}

/// Runs a keyed fusion on hits (keyed by id) and gives each fused hit the first payload found.
fn on_hits(
    lists: &[Vec<Hit>],
    limit: usize,
    f: impl FnOnce(&[Vec<(DocId, f32)>]) -> Result<Vec<(DocId, f32)>, QueryError>,
) -> Result<Vec<Hit>, QueryError> {
    let keyed: Vec<Vec<(DocId, f32)>> = lists
        .iter()
        .map(|l| l.iter().map(|h| (h.id.clone(), h.score)).collect())
        .collect();
    let mut payloads = HashMap::new();
    for h in lists.iter().flatten() {
        if let Some(p) = &h.payload {
            payloads.entry(h.id.clone()).or_insert_with(|| p.clone());
        }
    }
    let mut fused = f(&keyed)?;
    fused.truncate(limit);
    Ok(fused
        .into_iter()
        .map(|(id, score)| Hit {
            payload: payloads.remove(&id),
            id,
            score,
        })
        .collect())
}

/// Reciprocal rank fusion of `lists` (each best first) with per-list `weights` (empty: all 1).
pub fn rrf(
    lists: &[Vec<Hit>],
    weights: &[f32],
    k: f32,
    limit: usize,
) -> Result<Vec<Hit>, QueryError> {
    on_hits(lists, limit, |l| rrf_keyed(l, weights, k))
}

/// Normalised score fusion of `lists` with per-list `weights` (empty: all 1).
pub fn score_fusion(
    lists: &[Vec<Hit>],
    weights: &[f32],
    how: Norm,
    limit: usize,
) -> Result<Vec<Hit>, QueryError> {
    on_hits(lists, limit, |l| score_keyed(l, weights, how))
}

/// Fuses `lists` of hits with a plan's [`Fusion`], keeping the best `limit`.
pub fn fuse_hits(
    lists: &[Vec<Hit>],
    fusion: &Fusion,
    limit: usize,
) -> Result<Vec<Hit>, QueryError> {
    on_hits(lists, limit, |l| fuse_keyed(l, fusion))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(u64, f32)]) -> Vec<Hit> {
        items
            .iter()
            .map(|&(id, score)| Hit {
                id: DocId::Int(id),
                score,
                payload: None,
            })
            .collect()
    }

    fn ids(h: &[Hit]) -> Vec<u64> {
        h.iter()
            .map(|h| match h.id {
                DocId::Int(i) => i,
                DocId::Str(_) => u64::MAX,
            })
            .collect()
    }

    /// Brute-force RRF straight from the formula, for comparison.
    fn rrf_oracle(lists: &[Vec<Hit>], w: &[f32], k: f32) -> HashMap<DocId, f64> {
        let mut m = HashMap::new();
        for (l, wi) in lists.iter().zip(w) {
            for (i, h) in l.iter().enumerate() {
                *m.entry(h.id.clone()).or_insert(0.0) += *wi as f64 / (k as f64 + (i + 1) as f64);
            }
        }
        m
    }

    #[test]
    fn rrf_matches_formula_on_random_lists() {
        let seed = 0x5eed_u64;
        println!("seed {seed}");
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50 {
            let lists: Vec<Vec<Hit>> = (0..3)
                .map(|_| {
                    let mut ids: Vec<u64> = (0..40).collect();
                    for i in (1..ids.len()).rev() {
                        ids.swap(i, (next() % (i as u64 + 1)) as usize);
                    }
                    let n = 5 + (next() % 30) as usize;
                    ids.truncate(n);
                    ids.iter()
                        .enumerate()
                        .map(|(r, &id)| Hit {
                            id: DocId::Int(id),
                            score: 100.0 - r as f32,
                            payload: None,
                        })
                        .collect()
                })
                .collect();
            let w = [1.0, 0.5, 2.0];
            let got = rrf(&lists, &w, 60.0, 1000).unwrap();
            let want = rrf_oracle(&lists, &w, 60.0);
            assert_eq!(got.len(), want.len());
            for h in &got {
                assert!((h.score as f64 - want[&h.id]).abs() < 1e-6);
            }
            for p in got.windows(2) {
                assert!(p[0].score >= p[1].score);
            }
        }
    }

    #[test]
    fn rrf_by_hand() {
        // a: [1, 2, 3], b: [3, 1]; k = 1: 1 -> 1/2 + 1/3, 3 -> 1/4 + 1/2, 2 -> 1/3.
        let a = list(&[(1, 9.0), (2, 8.0), (3, 7.0)]);
        let b = list(&[(3, 0.9), (1, 0.8)]);
        let f = rrf(&[a.clone(), b.clone()], &[], 1.0, 10).unwrap();
        assert_eq!(ids(&f), vec![1, 3, 2]);
        assert!((f[0].score - (0.5 + 1.0 / 3.0)).abs() < 1e-6);
        assert!((f[1].score - 0.75).abs() < 1e-6);
        // Weighting b by 3 puts 3 first: 3 -> 1/4 + 3/2, 1 -> 1/2 + 1.
        let f = rrf(&[a, b], &[1.0, 3.0], 1.0, 2).unwrap();
        assert_eq!(ids(&f), vec![3, 1]);
    }

    #[test]
    fn minmax_and_zscore_by_hand() {
        let a = list(&[(1, 10.0), (2, 5.0), (3, 0.0)]);
        let b = list(&[(2, 0.9), (4, 0.3)]);
        // min-max: a -> 1, .5, 0; b -> 2: 1, 4: 0. Sum: 1: 1, 2: 1.5, 3: 0, 4: 0.
        let f = score_fusion(&[a.clone(), b.clone()], &[], Norm::Minmax, 10).unwrap();
        assert_eq!(ids(&f), vec![2, 1, 3, 4]);
        assert!((f[0].score - 1.5).abs() < 1e-6);
        assert!((f[1].score - 1.0).abs() < 1e-6);
        // z-score: a: mean 5, sd sqrt(50/3) -> 1.2247, 0, -1.2247; b: 1, -1.
        // Missing: a's min -1.2247 for 4, b's min -1 for 1 and 3.
        let f = score_fusion(&[a, b], &[], Norm::Zscore, 10).unwrap();
        let z = (50.0f64 / 3.0).sqrt();
        let want = [
            (2u64, 0.0 + 1.0),
            (1, 5.0 / z - 1.0),
            (3, -5.0 / z - 1.0),
            (4, -5.0 / z - 1.0),
        ];
        for (id, s) in want {
            let h = f.iter().find(|h| h.id == DocId::Int(id)).unwrap();
            assert!(
                (h.score as f64 - s).abs() < 1e-5,
                "{id}: {} vs {s}",
                h.score
            );
        }
        assert_eq!(ids(&f)[..2], [2, 1]);
        // Ties (3 and 4) are broken by id.
        assert_eq!(ids(&f)[2..], [3, 4]);
    }

    #[test]
    fn constant_lists_and_bad_input() {
        let a = list(&[(1, 2.0), (2, 2.0)]);
        let f = score_fusion(&[a.clone()], &[], Norm::Minmax, 10).unwrap();
        assert!(f.iter().all(|h| h.score == 1.0));
        let f = score_fusion(&[a.clone()], &[], Norm::Zscore, 10).unwrap();
        assert!(f.iter().all(|h| h.score == 0.0));
        assert!(rrf(&[a.clone()], &[1.0, 2.0], 60.0, 10).is_err());
        assert!(rrf(&[a.clone()], &[-1.0], 60.0, 10).is_err());
        assert!(rrf(&[a.clone()], &[], -1.0, 10).is_err());
        let f = Fusion::Rrf {
            k: 60.0,
            weights: vec![],
        };
        assert!(fuse_hits(&[], &f, 10).unwrap().is_empty());
        // A plan's fusion and the hit functions agree.
        let b = list(&[(2, 1.0), (3, 0.5)]);
        let via_plan = fuse_hits(&[a.clone(), b.clone()], &f, 10).unwrap();
        let direct = rrf(&[a, b], &[], 60.0, 10).unwrap();
        assert_eq!(ids(&via_plan), ids(&direct));
    }
}
