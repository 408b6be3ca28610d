//! Seeded data generators for tests. Every test that uses them prints its seed.

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// `n` vectors of dimension `dim` drawn around `clusters` Gaussian centres (spread `sigma`), which
/// gives an ANN index realistic neighbourhoods. If `normalize` is set, rows are unit length.
pub fn clustered(
    seed: u64,
    n: usize,
    dim: usize,
    clusters: usize,
    sigma: f32,
    normalize: bool,
) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1))
        .map(|_| {
            (0..dim)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            let mut v: Vec<f32> = c
                .iter()
                .map(|x| x + sigma * rng.sample::<f32, _>(StandardNormal))
                .collect();
            if normalize {
                quiver_linalg::normalize(&mut v);
            }
            v
        })
        .collect()
}

/// A reproducible random generator for tests.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}
