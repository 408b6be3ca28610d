//! Every SIMD kernel agrees with the scalar kernel on odd lengths and unaligned slices.

use quiver_linalg::{dot, dot4, dot_1x16, dot_4x4, dot_at, l2sq, l2sq_at, Level, Metric};
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

#[test]
fn tiles_match_the_scalar_kernel_and_do_not_depend_on_position() {
    let seed = 0x5eed_0005_u64;
    println!("seed = {seed}, detected level = {:?}", Level::detect());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut compared = 0;
    for n in (0..=70).chain([95, 127, 128, 129, 383, 384, 385, 768, 1537]) {
        // +1 and slicing from 1 gives unaligned starting addresses.
        let vecs: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..n + 1).map(|_| rng.random_range(-2.0..2.0)).collect())
            .collect();
        let v = |i: usize| &vecs[i][1..];
        let q = [v(0), v(1), v(2), v(3)];
        let rows16: [&[f32]; 16] = std::array::from_fn(|j| v(4 + j));
        let one = dot_1x16(q[0], rows16);
        for (j, r) in rows16.iter().enumerate() {
            let want = dot_at(Level::Scalar, q[0], r).expect("scalar always available");
            assert!(
                close(one[j], want, n as f32),
                "1x16 n={n} row {j}: {} vs {want}",
                one[j]
            );
            compared += 1;
        }
        let rows4 = [v(4), v(5), v(6), v(7)];
        let four = dot_4x4(q, rows4);
        for (a, qa) in q.iter().enumerate() {
            for (b, r) in rows4.iter().enumerate() {
                let want = dot_at(Level::Scalar, qa, r).expect("scalar always available");
                let got = four[4 * a + b];
                assert!(
                    close(got, want, n as f32),
                    "4x4 n={n} ({a},{b}): {got} vs {want}"
                );
                compared += 1;
            }
        }
        // The same pair scores bit-identically in either kernel and in any slot of the tile.
        assert_eq!(four[0..4], one[0..4], "n={n}: 4x4 row 0 against 1x16");
        let mut shifted = rows16;
        shifted.rotate_left(5);
        let again = dot_1x16(q[0], shifted);
        for j in 0..16 {
            assert_eq!(
                again[j].to_bits(),
                one[(j + 5) % 16].to_bits(),
                "n={n}: slot {j}"
            );
        }
        let swapped = dot_4x4(
            [q[2], q[0], q[3], q[1]],
            [rows4[3], rows4[1], rows4[0], rows4[2]],
        );
        assert_eq!(
            swapped[4 + 2].to_bits(),
            four[0].to_bits(),
            "n={n}: (q0, r0) moved"
        );
        assert_eq!(
            swapped[4 * 3 + 1].to_bits(),
            four[4 + 1].to_bits(),
            "n={n}: (q1, r1) moved"
        );
    }
    // Inputs of another length fall back to separate products over the shorter length.
    let (q, short) = (vec![1.0f32; 20], vec![2.0f32; 17]);
    let mut rows: [&[f32]; 16] = [&q; 16];
    rows[3] = &short;
    let got = dot_1x16(&q, rows);
    assert_eq!((got[3], got[4]), (34.0, 20.0));
    let got = dot_4x4([&q, &q, &short, &q], [&q, &q, &q, &q]);
    assert_eq!((got[8], got[0]), (34.0, 20.0));
    println!("tiles: {compared} products equal the scalar kernel's");
}
