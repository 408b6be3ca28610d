//! Query adapters through the engine API (issue 17, model migration), on planted data: a
//! collection whose stored vectors are potion-base-8M's vectors of 300 SciFact documents turned
//! by a known random rotation R (an orthogonal product of Householder reflections, seed printed).
//! `Collection::adapt(field, potion)` must recover Rᵀ to 1e-4 (the stored map), and a text query
//! must then answer exactly as the vector query R·potion(q) does. A second field holds a planted
//! 256 -> 64 linear map (then normalised): the dimensions differ, so ridge is fitted. The adapter
//! survives a reopen; removing it makes text queries use the field's model again; bad input
//! fails and stores nothing.
//!
//! Needs potion-base-8M in the model cache (`./x setup`).

mod common;

use quiver::{AdaptOptions, Document, Query, Schema};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const MODEL: &str = "potion-base-8M";
const N: usize = 300;
const D: usize = 256;
const LOW: usize = 64;

fn scifact() -> Vec<Document> {
    common::scifact_docs(N)
}

/// A random orthogonal D x D matrix (row-major): the product of 8 Householder reflections.
fn rotation(seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut m = vec![0f64; D * D];
    for i in 0..D {
        m[i * D + i] = 1.0;
    }
    for _ in 0..8 {
        let mut v: Vec<f64> = (0..D).map(|_| rng.random_range(-1.0..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        // m <- (I - 2 v vᵀ) m
        for c in 0..D {
            let dot: f64 = (0..D).map(|r| v[r] * m[r * D + c]).sum();
            for r in 0..D {
                m[r * D + c] -= 2.0 * v[r] * dot;
            }
        }
    }
    m.into_iter().map(|x| x as f32).collect()
}

/// `m · x` for a row-major `rows x cols` matrix.
fn apply(m: &[f32], rows: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| (0..x.len()).map(|c| m[r * x.len() + c] * x[c]).sum())
        .collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

#[test]
fn adapters_recover_planted_maps_and_serve_text_queries() {
    let seed: u64 = std::env::var("QUIVER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    println!("seed {seed} (QUIVER_TEST_SEED={seed} repeats this run)");
    let dir = tempfile::tempdir().unwrap();
    let pool = common::pool(&[MODEL]);
    let open = || common::open(dir.path(), &pool);
    let db = open();
    // potion's own vectors of the documents, as the ingest computes them.
    let spec = |dim: usize| {
        json!({"type": "dense", "dim": dim, "metric": "cosine", "model": MODEL,
               "embed": ["title", "text"]})
    };
    let plain = db
        .create_collection(
            "plain",
            &Schema::parse(&json!({"fields": {"emb": spec(D)}}).to_string()).unwrap(),
        )
        .unwrap();
    plain.upsert(scifact()).unwrap();
    let r = rotation(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let low: Vec<f32> = (0..LOW * D).map(|_| rng.random_range(-1.0..1.0)).collect();
    let schema = json!({"fields": {"emb": spec(D), "low": spec(LOW)}, "mutable_max_rows": 100});
    let c = db
        .create_collection("c", &Schema::parse(&schema.to_string()).unwrap())
        .unwrap();
    let planted: Vec<Document> = scifact()
        .into_iter()
        .map(|mut d| {
            let p = plain.get(d.id.as_ref().unwrap()).unwrap().unwrap().vectors["emb"].clone();
            d.vectors.insert("emb".into(), apply(&r, D, &p));
            d.vectors.insert("low".into(), unit(apply(&low, LOW, &p)));
            d
        })
        .collect();
    for chunk in planted.chunks(50) {
        c.upsert(chunk.to_vec()).unwrap();
    }
    c.wait_for_maintenance().unwrap();
    println!("segments {:?}", c.info().segments);

    // Bad input fails and stores nothing.
    let opts = AdaptOptions::default();
    for (field, model, kind, want) in [
        ("emb", "no-such-model", None, "no-such-model"),
        ("nope", MODEL, None, "nope"),
        (
            "emb",
            MODEL,
            Some(quiver::linalg::AdapterKind::Relative),
            "relative",
        ),
    ] {
        let e = c
            .adapt(
                field,
                model,
                &AdaptOptions {
                    kind,
                    ..opts.clone()
                },
            )
            .unwrap_err()
            .to_string();
        println!("adapt {field} {model} {kind:?}: {e}");
        assert!(e.contains(want), "{e}");
        assert!(c.adapters().is_empty());
        assert!(!c.storage().dir().join("adapters/emb.json").exists());
    }

    // Same dimension: Procrustes recovers Rᵀ (y = x W with y = R x).
    let info = c.adapt("emb", MODEL, &opts).unwrap();
    println!("{info:?}");
    assert_eq!(
        (info.kind.as_str(), info.d_in, info.d_out),
        ("procrustes", D, D)
    );
    assert_eq!(info.sample, N);
    assert!(info.holdout_cosine > 0.9999, "{info:?}");
    let stored: Value = serde_json::from_slice(
        &std::fs::read(c.storage().dir().join("adapters/emb.json")).unwrap(),
    )
    .unwrap();
    let w: Vec<f32> = serde_json::from_value(stored["matrix"].clone()).unwrap();
    let mut worst = 0f32;
    for i in 0..D {
        for j in 0..D {
            worst = worst.max((w[i * D + j] - r[j * D + i]).abs());
        }
    }
    println!("max |W - Rᵀ| = {worst:e}");
    assert!(worst < 1e-4, "max |W - Rᵀ| = {worst}");

    // A text query now answers as the vector query R·potion(q) does.
    let check = |c: &quiver::Collection| {
        for q in [
            "brain development in infants",
            "vitamin D deficiency",
            "cancer cells",
        ] {
            let pq = plain.embed_query("emb", q).unwrap();
            let by_vec = c
                .query(&Query {
                    field: Some("emb".into()),
                    ..Query::vector(apply(&r, D, &pq)).with_limit(10)
                })
                .unwrap();
            let text = Query {
                field: Some("emb".into()),
                exact: true,
                ..Query::text(q).with_limit(10)
            };
            let by_vec_exact = c
                .query(&Query {
                    field: Some("emb".into()),
                    exact: true,
                    ..Query::vector(apply(&r, D, &pq)).with_limit(10)
                })
                .unwrap();
            let by_text = c.query(&text).unwrap();
            let ids = |h: &[quiver::Hit]| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&by_text.hits), ids(&by_vec_exact.hits), "{q}");
            for (a, b) in by_text.hits.iter().zip(&by_vec_exact.hits) {
                assert!(
                    (a.score - b.score).abs() < 1e-4,
                    "{q}: {} vs {}",
                    a.score,
                    b.score
                );
            }
            assert_eq!(by_vec.hits.len(), 10);
        }
    };
    check(&c);

    // Different dimensions: ridge, on the planted 256 -> 64 map.
    let info = c.adapt("low", MODEL, &opts).unwrap();
    println!("{info:?}");
    assert_eq!(
        (info.kind.as_str(), info.d_in, info.d_out),
        ("ridge", D, LOW)
    );
    // The stored vectors are the map's output normalised, which no linear map fits exactly.
    assert!(info.holdout_cosine > 0.95, "{info:?}");
    let fields: Vec<String> = c.adapters().into_iter().map(|a| a.field).collect();
    assert_eq!(fields, ["emb", "low"]);

    // An adapter name never leaves the adapters folder.
    for bad in ["../schema", "../manifest", ".hidden", "a/b"] {
        let e = c.remove_adapter(bad).unwrap_err().to_string();
        assert!(e.contains("cannot name an adapter"), "{bad}: {e}");
    }
    assert!(c.storage().dir().join("schema.json").exists());
    // Classification waits for every backfill: written-back documents must hold every field.
    c.add_field(
        "body",
        serde_json::from_value(json!({"type": "text", "source": ["text"]})).unwrap(),
    )
    .unwrap();
    let labels = quiver::Label::parse_list(r#"[{"label": "a"}, {"label": "b"}]"#).unwrap();
    let e = c
        .classify(&quiver::ClassifyOptions {
            field: Some("emb".into()),
            labels,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("still being backfilled"), "{e}");
    c.backfill(&quiver::BackfillOptions::default()).unwrap();

    // Durable: a reopened collection has both adapters and answers the same.
    drop(c);
    drop(db);
    let db = open();
    let c = db.collection("c").unwrap();
    assert_eq!(c.adapters().len(), 2);
    check(&c);
    assert!(
        c.describe().unwrap()["adapters"][0]["holdout_cosine"]
            .as_f64()
            .unwrap()
            > 0.9999
    );

    // A dropped field takes its adapter along.
    c.drop_field("low").unwrap();
    assert_eq!(c.adapters().len(), 1);
    assert!(!c.storage().dir().join("adapters/low.json").exists());
    // A file that does not read as an adapter is reported, not fatal, and can be removed.
    std::fs::write(c.storage().dir().join("adapters/junk.json"), "not json").unwrap();
    drop(c);
    drop(db);
    let db = open();
    let c = db.collection("c").unwrap();
    assert_eq!(c.adapters().len(), 1);
    let errors = c.adapter_errors();
    assert!(
        errors.len() == 1 && errors[0].contains("junk.json"),
        "{errors:?}"
    );
    assert!(c.remove_adapter("junk").unwrap());
    assert!(c.adapter_errors().is_empty());

    // Removed: text queries embed with the field's own model (potion, unrotated) again.
    assert!(c.remove_adapter("emb").unwrap());
    assert!(!c.remove_adapter("emb").unwrap());
    let q = Query {
        field: Some("emb".into()),
        exact: true,
        ..Query::text("cancer cells").with_limit(10)
    };
    let pq = plain.embed_query("emb", "cancer cells").unwrap();
    let by_plain = c
        .query(&Query {
            field: Some("emb".into()),
            exact: true,
            ..Query::vector(pq).with_limit(10)
        })
        .unwrap();
    let got = c.query(&q).unwrap();
    assert_eq!(got.hits[0].id, by_plain.hits[0].id);
    assert!((got.hits[0].score - by_plain.hits[0].score).abs() < 1e-5);
}
