//! k-means and PCA against known structure: planted clusters, planted principal axes, exact
//! score preservation of a full-dimension rotation.

use quiver_linalg::kmeans::{kmeans, KMeansParams};
use quiver_linalg::{dot, l2sq, LinalgError, Pca};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// `per` points around each of `centres` (row-major, `dim` columns), Gaussian noise `sigma`.
fn blobs(centres: &[f32], dim: usize, per: usize, sigma: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, sigma).unwrap();
    let mut data = Vec::new();
    let mut label = Vec::new();
    for (c, centre) in centres.chunks(dim).enumerate() {
        for _ in 0..per {
            data.extend(centre.iter().map(|&x| x + noise.sample(&mut rng)));
            label.push(c);
        }
    }
    (data, label)
}

#[test]
fn kmeans_recovers_planted_clusters() {
    let seed = 20261130;
    println!("seed {seed}");
    let dim = 8;
    let k = 12;
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..k * dim)
        .map(|_| rng.random_range(-10.0..10.0))
        .collect();
    let (data, label) = blobs(&centres, dim, 200, 0.3, seed + 1);
    let km = kmeans(
        &data,
        dim,
        &KMeansParams {
            k,
            iters: 30,
            seed,
            max_samples: 0,
        },
    )
    .unwrap();
    assert_eq!(km.k, k);
    // Every planted centre has a learned centroid within 3 noise-sigmas of the mean's error.
    for c in centres.chunks(dim) {
        let (_, d2) = km.assign(c);
        assert!(
            d2 < 0.1,
            "planted centre {c:?} is {d2} (squared) from its nearest centroid"
        );
    }
    // Purity: all points of one planted cluster share one learned cluster.
    let assign = km.assign_all(&data);
    for c in 0..k {
        let first = assign[c * 200].0;
        let same = (0..200).filter(|&i| assign[c * 200 + i].0 == first).count();
        assert_eq!(same, 200, "planted cluster {c} split ({same}/200 together)");
        assert!(label[c * 200] == c);
    }
    // assign agrees with a brute-force nearest-centroid scan.
    for (i, v) in data.chunks(dim).enumerate().step_by(97) {
        let best = (0..km.k)
            .min_by(|&a, &b| l2sq(v, km.centroid(a)).total_cmp(&l2sq(v, km.centroid(b))))
            .unwrap();
        assert_eq!(assign[i].0 as usize, best);
    }
}

#[test]
fn lloyd_iterations_do_not_increase_the_objective_and_are_deterministic() {
    let seed = 7;
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dim = 6;
    let data: Vec<f32> = (0..3000 * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let p = |iters| KMeansParams {
        k: 32,
        iters,
        seed,
        max_samples: 0,
    };
    let seeded_only = kmeans(&data, dim, &p(0)).unwrap().inertia(&data);
    let few = kmeans(&data, dim, &p(3)).unwrap().inertia(&data);
    let many = kmeans(&data, dim, &p(20)).unwrap().inertia(&data);
    println!("inertia: seeding {seeded_only:.1}, 3 iters {few:.1}, 20 iters {many:.1}");
    assert!(few <= seeded_only * 1.0001 && many <= few * 1.0001);
    assert!(
        many < seeded_only * 0.9,
        "Lloyd should improve on k-means++ seeding on uniform data"
    );
    assert_eq!(
        kmeans(&data, dim, &p(5)).unwrap(),
        kmeans(&data, dim, &p(5)).unwrap()
    );
}

#[test]
fn fewer_points_than_k_and_duplicates() {
    let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let km = kmeans(
        &data,
        2,
        &KMeansParams {
            k: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(km.k, 3);
    assert_eq!(km.centroids, data.to_vec());
    // 4 distinct points, each repeated: k = 4 must find each exactly, no NaN from empty clusters.
    let distinct = [[0.0f32, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]];
    let data: Vec<f32> = (0..400).flat_map(|i| distinct[i % 4]).collect();
    let km = kmeans(
        &data,
        2,
        &KMeansParams {
            k: 4,
            iters: 10,
            seed: 3,
            max_samples: 0,
        },
    )
    .unwrap();
    assert!(km.centroids.iter().all(|x| x.is_finite()));
    for d in distinct {
        assert_eq!(
            km.assign(&d).1,
            0.0,
            "{d:?} should be a centroid: {:?}",
            km.centroids
        );
    }
    // More clusters than distinct points: still finite, every point at distance 0.
    let km = kmeans(
        &data,
        2,
        &KMeansParams {
            k: 6,
            iters: 10,
            seed: 3,
            max_samples: 0,
        },
    )
    .unwrap();
    assert!(km.centroids.iter().all(|x| x.is_finite()));
    assert_eq!(km.inertia(&data), 0.0);
}

#[test]
fn sampling_keeps_quality_on_planted_clusters() {
    let seed = 11;
    println!("seed {seed}");
    let dim = 4;
    let centres: Vec<f32> = (0..4 * dim).map(|i| (i as f32 * 7.3) % 20.0).collect();
    let (data, _) = blobs(&centres, dim, 2000, 0.2, seed);
    let km = kmeans(
        &data,
        dim,
        &KMeansParams {
            k: 4,
            iters: 20,
            seed,
            max_samples: 500,
        },
    )
    .unwrap();
    for c in centres.chunks(dim) {
        assert!(km.assign(c).1 < 0.05);
    }
}

#[test]
fn kmeans_rejects_bad_input() {
    let p = KMeansParams::default();
    assert!(matches!(
        kmeans(&[1.0, 2.0, 3.0], 2, &p),
        Err(LinalgError::InvalidInput(_))
    ));
    assert!(matches!(
        kmeans(&[], 2, &p),
        Err(LinalgError::InvalidInput(_))
    ));
    assert!(matches!(
        kmeans(&[1.0], 0, &p),
        Err(LinalgError::InvalidInput(_))
    ));
    let e = kmeans(&[1.0, 2.0, f32::NAN, 4.0], 2, &p).unwrap_err();
    assert_eq!(e, LinalgError::NonFinite { row: 1, col: 0 });
    assert!(e.to_string().contains("row 1"));
    assert!(kmeans(&[1.0, 2.0], 2, &KMeansParams { k: 0, ..p }).is_err());
}

/// Random orthonormal basis (Gram-Schmidt on Gaussian vectors), row-major.
fn random_basis(dim: usize, rng: &mut StdRng) -> Vec<f32> {
    let g = Normal::new(0.0f32, 1.0).unwrap();
    let mut b: Vec<Vec<f32>> = Vec::new();
    while b.len() < dim {
        let mut v: Vec<f32> = (0..dim).map(|_| g.sample(rng)).collect();
        for u in &b {
            let p = dot(&v, u);
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= p * y);
        }
        let n = dot(&v, &v).sqrt();
        if n > 1e-3 {
            b.push(v.iter().map(|x| x / n).collect());
        }
    }
    b.concat()
}

#[test]
fn pca_finds_planted_axes_and_preserves_scores() {
    let seed = 42;
    println!("seed {seed}");
    let dim = 16;
    let mut rng = StdRng::seed_from_u64(seed);
    let basis = random_basis(dim, &mut rng);
    // Standard deviations 16, 8, 4, ... along the planted axes, plus an offset mean.
    let sd: Vec<f32> = (0..dim)
        .map(|i| 16.0 / 2f32.powi(i as i32).max(1.0))
        .map(|s| s.max(0.05))
        .collect();
    let g = Normal::new(0.0f32, 1.0).unwrap();
    let n = 20_000;
    let mut data = vec![0.0f32; n * dim];
    for row in data.chunks_mut(dim) {
        for (i, s) in sd.iter().enumerate() {
            let c = g.sample(&mut rng) * s;
            row.iter_mut()
                .zip(&basis[i * dim..(i + 1) * dim])
                .for_each(|(x, b)| *x += c * b);
        }
        row.iter_mut().for_each(|x| *x += 3.0);
    }
    let pca = Pca::fit(&data, dim, 0, seed).unwrap();
    for i in 0..4 {
        let c = dot(pca.axis(i), &basis[i * dim..(i + 1) * dim]).abs();
        assert!(c > 0.99, "axis {i}: |cos| with planted axis = {c}");
        let rel = (pca.variances()[i] - sd[i] * sd[i]).abs() / (sd[i] * sd[i]);
        assert!(
            rel < 0.05,
            "axis {i}: variance {} vs planted {}",
            pca.variances()[i],
            sd[i] * sd[i]
        );
    }
    assert!(pca.variances().windows(2).all(|w| w[0] >= w[1]));
    assert!(pca.explained(2) > 0.9);
    // Orthonormal rows.
    for i in 0..dim {
        for j in 0..dim {
            let d = dot(pca.axis(i), pca.axis(j));
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((d - want).abs() < 1e-4, "R R^T [{i},{j}] = {d}");
        }
    }
    // Full-dimension rotation preserves dot, L2 and cosine (no mean subtraction).
    let rot = pca.apply_all(&data[..200 * dim]);
    for p in 0..100 {
        let (a, b) = (
            &data[p * dim..(p + 1) * dim],
            &data[(p + 100) * dim..(p + 101) * dim],
        );
        let (ra, rb) = (
            &rot[p * dim..(p + 1) * dim],
            &rot[(p + 100) * dim..(p + 101) * dim],
        );
        let scale = dot(a, a).sqrt() * dot(b, b).sqrt();
        assert!(
            (dot(a, b) - dot(ra, rb)).abs() <= 1e-4 * scale,
            "dot pair {p}"
        );
        assert!(
            (l2sq(a, b) - l2sq(ra, rb)).abs() <= 1e-4 * scale,
            "l2 pair {p}"
        );
        let cos = quiver_linalg::cosine(a, b) - quiver_linalg::cosine(ra, rb);
        assert!(cos.abs() < 1e-5, "cosine pair {p}");
    }
    // A prefix is the first coordinates of the full rotation.
    let mut pre = [0.0f32; 3];
    pca.apply(&data[..dim], &mut pre);
    assert_eq!(&pre[..], &rot[..3]);
}

#[test]
fn pca_bytes_round_trip_and_corruption() {
    let mut rng = StdRng::seed_from_u64(5);
    let data: Vec<f32> = (0..500 * 8).map(|_| rng.random_range(-1.0..1.0)).collect();
    let pca = Pca::fit(&data, 8, 100, 5).unwrap();
    let bytes = pca.to_bytes();
    assert_eq!(Pca::from_bytes(&bytes).unwrap(), pca);
    let err = |b: &[u8]| Pca::from_bytes(b).unwrap_err().to_string();
    assert!(err(&bytes[..bytes.len() - 1]).contains("length"));
    assert!(err(b"nope").contains("magic"));
    let mut v = bytes.clone();
    v[4] = 9;
    assert!(err(&v).contains("version"));
    let mut v = bytes.clone();
    v[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(err(&v).contains("non-finite"));
}
