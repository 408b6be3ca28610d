//! Reduced precisions (`bf16`, `int8`) of all-MiniLM-L6-v2 against the golden f32 vectors of
//! sentence-transformers (../shared/golden), with the tolerances they are held to:
//!
//! | precision | min cosine over the golden sentences | mean cosine |
//! |-----------|------------------------------------|-------------|
//! | bf16      | >= 0.999                           | >= 0.9995   |
//! | int8      | >= 0.99                            | >= 0.995    |
//!
//! bf16 keeps 8 significant bits of every layer input and weight (relative error 2⁻⁹ each);
//! int8 keeps a 254-step grid per token row and a 254-step grid per weight column. Both sum
//! exactly (int8) or in f32 (bf16), and everything outside the linear layers stays f32. The
//! retrieval cost (SciFact nDCG@10 through `quiver eval --precision`) is measured by the
//! benchmarks, not here.

use quiver_embed::pooling::cosine;
use quiver_embed::{load_model, EmbedOptions, Embedder, LoadOptions, Precision};

use crate::{f32s, golden, model_dir};

const MINILM: &str = "all-MiniLM-L6-v2";

fn load(name: &str, precision: Precision) -> Box<dyn Embedder> {
    let opts = LoadOptions {
        threads: Some(2),
        name: Some(name.into()),
        precision,
        ..Default::default()
    };
    load_model(&model_dir(name), &opts).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The golden sentence records: 3 to 256 tokens, the longest truncated.
fn sentences() -> Vec<serde_json::Value> {
    let recs: Vec<_> = golden(MINILM)
        .into_iter()
        .filter(|r| r["kind"] == "sentence")
        .collect();
    assert!(recs.len() >= 20, "{} golden sentence records", recs.len());
    recs
}

/// (min, mean) cosine of the model's vectors to the golden ones over the sentence records,
/// embedded in one batch.
fn against_golden(m: &dyn Embedder) -> (f32, f32) {
    let recs = sentences();
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let got = m.embed(&texts, &EmbedOptions::default()).unwrap();
    let cos: Vec<f32> = recs
        .iter()
        .zip(got.rows())
        .map(|(r, v)| cosine(v, &f32s(&r["vector"])))
        .collect();
    let min = cos.iter().copied().fold(1.0, f32::min);
    (min, cos.iter().sum::<f32>() / cos.len() as f32)
}

fn check(precision: Precision, min_floor: f32, mean_floor: f32) {
    let m = load(MINILM, precision);
    assert_eq!(m.info().precision, precision);
    let (min, mean) = against_golden(m.as_ref());
    println!("{MINILM} {precision}: cosine to f32 golden vectors min {min:.6}, mean {mean:.6}");
    assert!(
        min >= min_floor,
        "{precision}: min cosine {min} < {min_floor}"
    );
    assert!(
        mean >= mean_floor,
        "{precision}: mean cosine {mean} < {mean_floor}"
    );
    // Every linear layer works per token row, so a text's vector must not depend on what it
    // was batched with.
    let recs = sentences();
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let batched = m.embed(&texts, &EmbedOptions::default()).unwrap();
    for (i, t) in texts.iter().enumerate().step_by(5) {
        let alone = m.embed(&[t], &EmbedOptions::default()).unwrap();
        let c = cosine(alone.row(0), batched.row(i));
        assert!(
            c >= 0.99999,
            "{precision}: text {i} alone vs batched: cosine {c}"
        );
    }
}

#[test]
fn minilm_bf16_close_to_f32() {
    check(Precision::Bf16, 0.999, 0.9995);
}

#[test]
fn minilm_int8_close_to_f32() {
    check(Precision::Int8, 0.99, 0.995);
}

#[test]
fn precision_names_and_static_models() {
    for p in Precision::ALL {
        assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
    }
    for (reference, want) in [
        (
            "all-MiniLM-L6-v2:int8",
            ("all-MiniLM-L6-v2", Some(Precision::Int8)),
        ),
        ("/models/mini:bf16", ("/models/mini", Some(Precision::Bf16))),
        (
            "all-MiniLM-L6-v2:f32",
            ("all-MiniLM-L6-v2", Some(Precision::F32)),
        ),
        ("all-MiniLM-L6-v2", ("all-MiniLM-L6-v2", None)),
        (":int8", (":int8", None)),
        ("c:/models/int8", ("c:/models/int8", None)),
    ] {
        assert_eq!(
            Precision::split_reference(reference).unwrap(),
            want,
            "{reference}"
        );
    }
    let err = Precision::split_reference("m:INT8")
        .unwrap_err()
        .to_string();
    assert!(err.contains("f32, bf16 or int8"), "{err}");
    // A model directory whose name ends like a precision is taken whole.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("mini:int8");
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("config.json"), "{}").unwrap();
    let odd = odd.to_str().unwrap();
    assert_eq!(Precision::split_reference(odd).unwrap(), (odd, None));
    // An explicit precision beside the reference must agree with it; f32 is the default.
    assert_eq!(
        Precision::resolve("m", None).unwrap(),
        ("m", Precision::F32)
    );
    assert_eq!(
        Precision::resolve("m", Some(Precision::Int8)).unwrap(),
        ("m", Precision::Int8)
    );
    assert_eq!(
        Precision::resolve("m:bf16", Some(Precision::Bf16)).unwrap(),
        ("m", Precision::Bf16)
    );
    assert!(Precision::resolve("m:f32", Some(Precision::Int8)).is_err());
    assert!(Precision::resolve("m:int8", Some(Precision::F32)).is_err());
    assert_eq!(Precision::Int8.reference("m"), "m:int8");
    assert_eq!(Precision::F32.reference("m"), "m");
    let err = "fp16".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("f32, bf16 or int8"), "{err}");
    let opts = LoadOptions {
        precision: Precision::Int8,
        ..Default::default()
    };
    let err = match load_model(&model_dir("potion-base-8M"), &opts) {
        Ok(_) => panic!("a static model at int8 must be an error"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("static model") && err.contains("f32 only"),
        "{err}"
    );
}
