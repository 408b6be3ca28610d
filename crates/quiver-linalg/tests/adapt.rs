//! Adapters against planted maps: a random rotation, a random semi-orthogonal map and a random
//! linear map are recovered from the vectors they produce. Seeds are printed.

use nalgebra::DMatrix;
use quiver_linalg::{cosine, Adapter, AdapterKind, LinalgError};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn gaussian(rng: &mut rand::rngs::StdRng, rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| StandardNormal.sample(rng))
}

fn flat(m: &DMatrix<f64>) -> Vec<f32> {
    (0..m.nrows())
        .flat_map(|r| (0..m.ncols()).map(move |c| (r, c)))
        .map(|(r, c)| m[(r, c)] as f32)
        .collect()
}

/// `n` random unit rows of dimension `d`.
fn unit_rows(rng: &mut rand::rngs::StdRng, n: usize, d: usize) -> DMatrix<f64> {
    let mut m = gaussian(rng, n, d);
    for mut r in m.row_iter_mut() {
        let norm = r.norm();
        r /= norm;
    }
    m
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn procrustes_recovers_a_planted_rotation_to_1e_4() {
    let seed = 0xad_0001_u64;
    println!("seed = {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = 48;
    let rotation = gaussian(&mut rng, d, d).qr().q();
    let x = unit_rows(&mut rng, 600, d);
    let y = &x * &rotation;
    let a = Adapter::procrustes(&flat(&x), &flat(&y), d, d).expect("fit");
    let err = max_abs_diff(a.matrix().expect("linear"), &flat(&rotation));
    println!("max |W - R| = {err:e}");
    assert!(err < 1e-4, "rotation recovered to {err}");
    // A mapped query lands on its partner.
    let q = a.map_query(&flat(&x.rows(0, 1).into_owned())).expect("map");
    let want = flat(&y.rows(0, 1).into_owned());
    assert!(cosine(&q, &want) > 0.99999);
}

#[test]
fn procrustes_recovers_a_semi_orthogonal_map_between_dimensions() {
    let seed = 0xad_0002_u64;
    println!("seed = {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (d_in, d_out) = (24, 40);
    // 24 orthonormal rows in 40 dimensions: an isometry into the larger space.
    let q = gaussian(&mut rng, d_out, d_in).qr().q().transpose();
    let x = unit_rows(&mut rng, 400, d_in);
    let y = &x * &q;
    let a = Adapter::procrustes(&flat(&x), &flat(&y), d_in, d_out).expect("fit");
    let err = max_abs_diff(a.matrix().expect("linear"), &flat(&q));
    println!("into the larger space: max |W - Q| = {err:e}");
    assert!(err < 1e-4, "{err}");
    // And back out of it: the transpose.
    let b = Adapter::procrustes(&flat(&y), &flat(&x), d_out, d_in).expect("fit");
    let err = max_abs_diff(b.matrix().expect("linear"), &flat(&q.transpose()));
    println!("out of it: max |W - Qᵀ| = {err:e}");
    assert!(err < 1e-4, "{err}");
}

#[test]
fn ridge_recovers_a_planted_linear_map_and_chooses_a_small_penalty_on_clean_data() {
    let seed = 0xad_0003_u64;
    println!("seed = {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (d_in, d_out) = (32, 20);
    let map = gaussian(&mut rng, d_in, d_out);
    let x = unit_rows(&mut rng, 500, d_in);
    let y = &x * &map;
    let exact = Adapter::ridge(&flat(&x), &flat(&y), d_in, d_out, Some(1e-9)).expect("fit");
    let err = max_abs_diff(exact.matrix().expect("linear"), &flat(&map));
    println!("lambda 1e-9: max |W - A| = {err:e}");
    assert!(err < 1e-3, "{err}");
    let auto = Adapter::fit(AdapterKind::Ridge, &flat(&x), &flat(&y), d_in, d_out).expect("fit");
    // The grid is scaled by tr(xᵀx) / d_in of the rows kept for fitting (all but every tenth).
    let kept: Vec<usize> = (0..500).filter(|i| i % 10 != 9).collect();
    let xk = x.select_rows(&kept);
    let scale = (xk.transpose() * &xk).trace() / d_in as f64;
    println!("chosen lambda = {:e} (scale {scale:e})", auto.lambda());
    assert!(
        (auto.lambda() - 1e-4 * scale).abs() < 1e-12,
        "noise-free data wants the smallest"
    );
    // Noisy targets: the held-out choice is no worse than the smallest penalty on fresh data.
    let noisy = &y + gaussian(&mut rng, 500, d_out) * 0.5;
    let auto = Adapter::ridge(&flat(&x), &flat(&noisy), d_in, d_out, None).expect("fit");
    let fresh = unit_rows(&mut rng, 200, d_in);
    let truth = &fresh * &map;
    let mean_cos = |a: &Adapter| -> f32 {
        (0..200)
            .map(|r| {
                let q = a
                    .map_query(&flat(&fresh.rows(r, 1).into_owned()))
                    .expect("map");
                cosine(&q, &flat(&truth.rows(r, 1).into_owned()))
            })
            .sum::<f32>()
            / 200.0
    };
    println!(
        "noisy: lambda {:e}, fresh-data mean cosine {:.5}",
        auto.lambda(),
        mean_cos(&auto)
    );
    assert!(mean_cos(&auto) > 0.95);
}

#[test]
fn relative_representations_agree_across_a_rotation() {
    let seed = 0xad_0004_u64;
    println!("seed = {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = 32;
    let rotation = gaussian(&mut rng, d, d).qr().q();
    let anchors = unit_rows(&mut rng, 64, d);
    let a = Adapter::relative(&flat(&anchors), &flat(&(&anchors * &rotation)), d, d).expect("fit");
    assert_eq!(a.search_dim(), 64);
    let x = unit_rows(&mut rng, 20, d);
    let y = &x * &rotation;
    for r in 0..20 {
        let q = a.map_query(&flat(&x.rows(r, 1).into_owned())).expect("map");
        let s = a
            .map_stored(&flat(&y.rows(r, 1).into_owned()))
            .expect("map");
        assert!(max_abs_diff(&q, &s) < 1e-5, "row {r}");
    }
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let x = vec![0.5f32; 8 * 4];
    let y = vec![0.5f32; 8 * 3];
    let short = vec![0.5f32; 7 * 3];
    let msg = |e: LinalgError| e.to_string();
    let e = Adapter::procrustes(&x, &short, 4, 3).expect_err("length mismatch");
    assert!(msg(e).contains("differ in length"));
    let e = Adapter::procrustes(&x[..4], &y[..3], 4, 3).expect_err("one row");
    assert!(msg(e).contains("at least 2"));
    let mut nan = x.clone();
    nan[5] = f32::NAN;
    let e = Adapter::ridge(&nan, &y, 4, 3, Some(0.1)).expect_err("nan");
    assert_eq!(e, LinalgError::NonFinite { row: 1, col: 1 });
    let e = Adapter::ridge(&x, &y, 4, 3, Some(-1.0)).expect_err("negative lambda");
    assert!(msg(e).contains("lambda"));
    let e = Adapter::ridge(&x, &y, 4, 3, None).expect_err("too few to choose");
    assert!(msg(e).contains("at least 10"));
    let e = Adapter::procrustes(&x, &y, 0, 3).expect_err("zero dim");
    assert!(msg(e).contains("at least 1"));
    let a = Adapter::procrustes(&x, &y, 4, 3).expect("fit");
    let e = a.map_query(&[1.0, 2.0]).expect_err("wrong dim");
    assert!(e.to_string().contains("expects 4"), "{e}");
    let e = a.map_stored(&[1.0]).expect_err("wrong dim");
    assert!(e.to_string().contains("expects 3"), "{e}");
    assert_eq!(AdapterKind::parse("ridge"), Some(AdapterKind::Ridge));
    assert_eq!(AdapterKind::parse("nope"), None);
}
