//! Every SIMD kernel agrees with the scalar kernel on odd lengths and unaligned slices.

use quiver_linalg::{dot, dot4, dot_at, l2sq, l2sq_at, Level, Metric};
use rand::{Rng, SeedableRng};

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-4 * scale.max(1.0)
}

/// What this CPU offers, asked of the CPU here (not of the crate's own detection), so a level the
/// CPU has but the crate refuses fails the test instead of being skipped.
fn cpu_has(level: Level) -> bool {
    match level {
        Level::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

#[test]
fn simd_levels_match_scalar_on_odd_lengths() {
    let seed = 0x5eed_0001_u64;
    println!("seed = {seed}, detected level = {:?}", Level::detect());
    // Every level by an explicit call (`dot_at`/`l2sq_at`), not through `QUIVER_SIMD`.
    let levels = [Level::Avx2, Level::Avx512];
    for level in levels {
        if cpu_has(level) {
            println!("level {}: tested against scalar", level.name());
        } else {
            println!("level {}: SKIPPED (this CPU lacks it)", level.name());
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let lengths: Vec<usize> = (0..=70)
        .chain([95, 127, 128, 129, 255, 383, 384, 385, 767, 768, 1023, 1537])
        .collect();
    let mut compared = [0usize; 2];
    for &n in &lengths {
        // +1 and slicing from 1 gives unaligned starting addresses.
        let a: Vec<f32> = (0..n + 1).map(|_| rng.random_range(-2.0..2.0)).collect();
        let b: Vec<f32> = (0..n + 1).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (a, b) = (&a[1..], &b[1..]);
        let want_dot = dot_at(Level::Scalar, a, b).expect("scalar always available");
        let want_l2 = l2sq_at(Level::Scalar, a, b).expect("scalar always available");
        let naive_dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        assert!(
            close(want_dot, naive_dot as f32, n as f32),
            "scalar dot n={n}"
        );
        for (i, level) in levels.into_iter().enumerate() {
            let (got_dot, got_l2) = (dot_at(level, a, b), l2sq_at(level, a, b));
            // A level the CPU has must run; one it lacks must be refused, never faked.
            assert_eq!(
                got_dot.is_some(),
                cpu_has(level),
                "{level:?} dot availability"
            );
            assert_eq!(
                got_l2.is_some(),
                cpu_has(level),
                "{level:?} l2sq availability"
            );
            if let (Some(got_dot), Some(got_l2)) = (got_dot, got_l2) {
                assert!(
                    close(got_dot, want_dot, n as f32),
                    "{level:?} dot n={n}: {got_dot} vs {want_dot}"
                );
                assert!(
                    close(got_l2, want_l2, n as f32),
                    "{level:?} l2sq n={n}: {got_l2} vs {want_l2}"
                );
                compared[i] += 1;
            }
        }
        assert!(close(dot(a, b), want_dot, n as f32));
        assert!(close(l2sq(a, b), want_l2, n as f32));
        assert!(close(Metric::L2.score(a, b), -want_l2, n as f32));
        assert!(close((Metric::Dot.scorer())(a, b), want_dot, n as f32));
    }
    for (i, level) in levels.into_iter().enumerate() {
        println!(
            "level {}: {} lengths compared with scalar",
            level.name(),
            compared[i]
        );
    }
}

#[test]
fn normalize_and_cosine() {
    let mut v = vec![3.0f32, 4.0];
    assert!(quiver_linalg::normalize(&mut v));
    assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    let mut z = vec![0.0f32; 5];
    assert!(!quiver_linalg::normalize(&mut z));
    assert_eq!(quiver_linalg::cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
    assert!((quiver_linalg::cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-6);
}

#[test]
fn dot4_matches_four_dots_on_odd_lengths() {
    let seed = 0x5eed_0004_u64;
    println!("seed = {seed}, detected level = {:?}", Level::detect());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut compared = 0;
    for n in (0..=70).chain([95, 127, 128, 129, 383, 384, 385, 768, 1537]) {
        // +1 and slicing from 1 gives unaligned starting addresses.
        let mut v = || -> Vec<f32> { (0..n + 1).map(|_| rng.random_range(-2.0..2.0)).collect() };
        let (q, r0, r1, r2, r3) = (v(), v(), v(), v(), v());
        let rows = [&r0[1..], &r1[1..], &r2[1..], &r3[1..]];
        let got = dot4(&q[1..], rows);
        for (g, r) in got.iter().zip(rows) {
            let want = dot_at(Level::Scalar, &q[1..], r).expect("scalar always available");
            assert!(close(*g, want, n as f32), "n={n}: {g} vs {want}");
            compared += 1;
        }
    }
    // Rows of another length fall back to four separate products over the shorter length.
    let (q, short) = (vec![1.0f32; 20], vec![2.0f32; 17]);
    assert_eq!(dot4(&q, [&short, &q, &short, &q]), [34.0, 20.0, 34.0, 20.0]);
    println!("dot4: {compared} products equal the scalar kernel's");
}
