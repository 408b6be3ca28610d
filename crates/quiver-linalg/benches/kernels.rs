//! Kernels against the naive loop and simsimd, at the dimensions Quiver meets in practice.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use quiver_linalg::{dot, dot_at, l2sq, Level};
use rand::{Rng, SeedableRng};
use simsimd::SpatialSimilarity;
use std::hint::black_box;

fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for i in 0..a.len() {
        s += a[i] * b[i];
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut g = c.benchmark_group("dot");
    for dim in [50usize, 128, 384, 768] {
        let a: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        g.bench_with_input(BenchmarkId::new("naive", dim), &dim, |bn, _| {
            bn.iter(|| naive_dot(black_box(&a), black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("quiver", dim), &dim, |bn, _| {
            bn.iter(|| dot(black_box(&a), black_box(&b)))
        });
        for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
            if dot_at(level, &a, &b).is_some() {
                g.bench_with_input(
                    BenchmarkId::new(format!("quiver-{}", level.name()), dim),
                    &dim,
                    |bn, _| bn.iter(|| dot_at(level, black_box(&a), black_box(&b))),
                );
            }
        }
        g.bench_with_input(BenchmarkId::new("simsimd", dim), &dim, |bn, _| {
            bn.iter(|| f32::dot(black_box(&a), black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("quiver-l2sq", dim), &dim, |bn, _| {
            bn.iter(|| l2sq(black_box(&a), black_box(&b)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
