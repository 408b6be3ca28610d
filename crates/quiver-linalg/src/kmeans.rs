//! k-means clustering (Lloyd's algorithm with k-means++ seeding), the trainer behind product
//! quantization codebooks and token pruning.
//!
//! - Seeding: k-means++ (Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding",
//!   SODA 2007): each next centre is drawn with probability proportional to its squared distance
//!   to the nearest centre chosen so far. One seeding pass costs about one Lloyd iteration.
//! - Iterations: assignment in parallel (rayon) over points, centroid update as per-thread sums
//!   in `f64` merged at the end; stops early when no assignment changes.
//! - Empty clusters are re-seeded with the points farthest from their current centroid (one point
//!   per empty cluster), so `k` centroids always come back distinct when the data allows it.
//! - Fewer points than `k`: `k := n` and every point is its own centroid.
//! - More points than `max_samples`: a seeded uniform sample of `max_samples` rows is clustered
//!   (the usual choice for codebooks: 256 centroids are well placed by ~100 points each).
//!
//! ```
//! use quiver_linalg::kmeans::{kmeans, KMeansParams};
//! let data = [0.0_f32, 0.0, 0.1, 0.0, 10.0, 10.0, 10.1, 10.0];
//! let km = kmeans(&data, 2, &KMeansParams { k: 2, iters: 10, seed: 1, max_samples: 1000 }).unwrap();
//! let (a, _) = km.assign(&[0.05, 0.0]);
//! let (b, _) = km.assign(&[10.0, 10.1]);
//! assert_ne!(a, b);
//! ```

use crate::{l2sq, LinalgError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Parameters of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KMeansParams {
    /// Number of clusters (reduced to the number of points when there are fewer).
    pub k: usize,
    /// Maximum Lloyd iterations after seeding (0 = seeding only).
    pub iters: usize,
    /// Seed of the sampling and k-means++ draws; equal seeds give equal results.
    pub seed: u64,
    /// At most this many points are clustered (a seeded uniform sample); 0 means no limit.
    pub max_samples: usize,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            k: 256,
            iters: 25,
            seed: 0,
            max_samples: 65_536,
        }
    }
}

/// Trained centroids: `k` rows of `dim` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Centroids, `k * dim` values, row-major.
    pub centroids: Vec<f32>,
    /// Number of centroids.
    pub k: usize,
    /// Dimension of each centroid.
    pub dim: usize,
}

impl KMeans {
    /// Centroid `i` (panics if `i >= k`).
    #[inline]
    pub fn centroid(&self, i: usize) -> &[f32] {
        &self.centroids[i * self.dim..(i + 1) * self.dim]
    }

    /// The nearest centroid of `v` and its squared L2 distance. `v` must have `dim` values (a longer
    /// slice is cut to `dim`).
    pub fn assign(&self, v: &[f32]) -> (u32, f32) {
        nearest(&self.centroids, self.dim, &v[..self.dim.min(v.len())])
    }

    /// [`KMeans::assign`] for every row of a row-major matrix (in parallel).
    pub fn assign_all(&self, data: &[f32]) -> Vec<(u32, f32)> {
        data.par_chunks_exact(self.dim.max(1))
            .map(|v| self.assign(v))
            .collect()
    }

    /// Sum of squared distances of every row of `data` to its nearest centroid (the k-means objective).
    pub fn inertia(&self, data: &[f32]) -> f64 {
        self.assign_all(data).iter().map(|&(_, d)| d as f64).sum()
    }
}

#[inline]
fn nearest(centroids: &[f32], dim: usize, v: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    if dim <= 16 {
        // Short rows (PQ sub-spaces): an inlined loop beats a call into the dispatched kernel.
        for (i, c) in centroids.chunks_exact(dim).enumerate() {
            let d: f32 = c.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best.1 {
                best = (i as u32, d);
            }
        }
        return best;
    }
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let d = l2sq(v, c);
        if d < best.1 {
            best = (i as u32, d);
        }
    }
    best
}

/// Checks a row-major matrix: `dim > 0`, length a multiple of `dim`, all values finite.
pub(crate) fn check_matrix(data: &[f32], dim: usize) -> Result<usize, LinalgError> {
    if dim == 0 {
        return Err(LinalgError::InvalidInput("dimension must be >= 1".into()));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(LinalgError::InvalidInput(format!(
            "data length {} is not a multiple of dimension {dim}",
            data.len()
        )));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(LinalgError::NonFinite {
            row: i / dim,
            col: i % dim,
        });
    }
    Ok(data.len() / dim)
}

/// Rows `0..n`, or a seeded uniform sample of `max` of them (sorted, without repetition) when
/// `0 < max < n`. The sample [`kmeans`] and [`crate::Pca::fit`] train on.
pub fn sample_rows(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if max == 0 || n <= max {
        return (0..n).collect();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5A4D_504C_4553);
    let mut idx = rand::seq::index::sample(&mut rng, n, max).into_vec();
    idx.sort_unstable();
    idx
}

/// Clusters the rows of `data` (row-major, `dim` columns) into `params.k` clusters under squared L2.
///
/// Errors: `dim == 0`, a length that is not a multiple of `dim`, no rows, `k == 0`, or a
/// non-finite value (named by row and column).
pub fn kmeans(data: &[f32], dim: usize, params: &KMeansParams) -> Result<KMeans, LinalgError> {
    let n_all = check_matrix(data, dim)?;
    if n_all == 0 {
        return Err(LinalgError::InvalidInput(
            "k-means needs at least one row".into(),
        ));
    }
    if params.k == 0 {
        return Err(LinalgError::InvalidInput("k-means needs k >= 1".into()));
    }
    let rows = sample_rows(n_all, params.max_samples, params.seed);
    let pts: Vec<f32> = if rows.len() == n_all {
        data.to_vec()
    } else {
        rows.iter()
            .flat_map(|&r| data[r * dim..(r + 1) * dim].iter().copied())
            .collect()
    };
    let n = rows.len();
    if n <= params.k {
        return Ok(KMeans {
            centroids: pts,
            k: n,
            dim,
        });
    }
    let k = params.k;
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut centroids = seed_plus_plus(&pts, dim, k, &mut rng);
    let mut assign: Vec<(u32, f32)> = vec![(u32::MAX, 0.0); n];
    for _ in 0..params.iters {
        let changed: usize = pts
            .par_chunks_exact(dim)
            .zip(assign.par_iter_mut())
            .map(|(v, a)| {
                let new = nearest(&centroids, dim, v);
                let moved = usize::from(new.0 != a.0);
                *a = new;
                moved
            })
            .sum();
        if changed == 0 {
            break;
        }
        update_centroids(&pts, dim, k, &assign, &mut centroids);
    }
    Ok(KMeans { centroids, k, dim })
}

/// k-means++ seeding: the first centre uniformly, every next one with probability proportional to
/// the squared distance to the nearest centre so far.
fn seed_plus_plus(pts: &[f32], dim: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = pts.len() / dim;
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(&pts[first * dim..(first + 1) * dim]);
    let mut d2: Vec<f32> = pts
        .par_chunks_exact(dim)
        .map(|v| l2sq(v, &centroids[..dim]))
        .collect();
    for c in 1..k {
        let total: f64 = d2.iter().map(|&x| x as f64).sum();
        let pick = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &x) in d2.iter().enumerate() {
                target -= x as f64;
                if target <= 0.0 && x > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point coincides with a centre already: duplicates are unavoidable.
            rng.random_range(0..n)
        };
        let start = centroids.len();
        centroids.extend_from_slice(&pts[pick * dim..(pick + 1) * dim]);
        let new_c = &centroids[start..start + dim];
        debug_assert_eq!(start, c * dim);
        d2.par_iter_mut()
            .zip(pts.par_chunks_exact(dim))
            .for_each(|(d, v)| {
                let e = l2sq(v, new_c);
                if e < *d {
                    *d = e;
                }
            });
    }
    centroids
}

/// Lloyd's update: each centroid becomes the mean of its points; empty clusters take the points
/// farthest from their centroids.
fn update_centroids(
    pts: &[f32],
    dim: usize,
    k: usize,
    assign: &[(u32, f32)],
    centroids: &mut [f32],
) {
    let (sums, counts) = pts
        .par_chunks_exact(dim)
        .zip(assign.par_iter())
        .fold(
            || (vec![0.0f64; k * dim], vec![0usize; k]),
            |(mut s, mut c), (v, &(a, _))| {
                let a = a as usize;
                c[a] += 1;
                for (acc, &x) in s[a * dim..(a + 1) * dim].iter_mut().zip(v) {
                    *acc += x as f64;
                }
                (s, c)
            },
        )
        .reduce(
            || (vec![0.0f64; k * dim], vec![0usize; k]),
            |(mut s1, mut c1), (s2, c2)| {
                s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                (s1, c1)
            },
        );
    let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
    for c in 0..k {
        if counts[c] > 0 {
            let inv = 1.0 / counts[c] as f64;
            for (dst, &s) in centroids[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&sums[c * dim..(c + 1) * dim])
            {
                *dst = (s * inv) as f32;
            }
        }
    }
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..assign.len()).collect();
        far.sort_unstable_by(|&a, &b| assign[b].1.total_cmp(&assign[a].1).then(a.cmp(&b)));
        for (&c, &p) in empty.iter().zip(&far) {
            centroids[c * dim..(c + 1) * dim].copy_from_slice(&pts[p * dim..(p + 1) * dim]);
        }
    }
}
