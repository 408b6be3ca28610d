//! Parity against golden vectors from sentence-transformers / model2vec: ../shared/golden, and
//! `early_exit_golden.jsonl` beside this file (made by `early_exit_golden.py`, which says how).

use quiver_embed::pooling::cosine;
use quiver_embed::EmbedOptions;

use crate::{f32s, golden, model, u32s};

const MINILM: &str = "all-MiniLM-L6-v2";
const POTION: &str = "potion-base-8M";

#[test]
fn minilm_input_ids_match() {
    let m = model(MINILM);
    let recs = golden(MINILM);
    assert!(recs.len() >= 20, "{} golden records", recs.len());
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let toks = m.tokenize(&texts).unwrap();
    for (r, t) in recs.iter().zip(&toks) {
        assert_eq!(
            t.ids,
            u32s(&r["input_ids"]),
            "input ids differ for {:?}",
            r["text"]
        );
    }
    // The 256-token truncation (the tokenizer.json alone would cut at 128).
    assert!(
        toks.iter().any(|t| t.len() == 256),
        "expected a record truncated at 256 tokens"
    );
}

fn check_minilm_sentences(opts: &EmbedOptions, one_by_one: bool) -> f32 {
    let m = model(MINILM);
    let recs: Vec<_> = golden(MINILM)
        .into_iter()
        .filter(|r| r["kind"] == "sentence")
        .collect();
    // ../shared/golden has 20 sentence records; none would make every check below vacuous.
    assert!(
        recs.len() >= 20,
        "{} sentence records in the golden file",
        recs.len()
    );
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let vecs: Vec<Vec<f32>> = if one_by_one {
        texts
            .iter()
            .map(|t| m.embed(&[t], opts).unwrap().row(0).to_vec())
            .collect()
    } else {
        m.embed(&texts, opts).unwrap().into_vecs()
    };
    let mut min = 1.0f32;
    for (r, v) in recs.iter().zip(&vecs) {
        let c = cosine(v, &f32s(&r["vector"]));
        assert!(
            c >= 0.9999,
            "cosine {c} < 0.9999 for {:?} (batch_size {})",
            r["text"],
            opts.batch_size
        );
        min = min.min(c);
    }
    min
}

#[test]
fn minilm_sentence_vectors_match_batched() {
    // Mixed lengths in one batch: padding must not leak into pooling.
    let min = check_minilm_sentences(
        &EmbedOptions {
            batch_size: 32,
            ..Default::default()
        },
        false,
    );
    println!(
        "all-MiniLM-L6-v2 sentence cosine min (batch 32) = {min:.7} (1 - min = {:.1e})",
        1.0 - min
    );
    let min = check_minilm_sentences(
        &EmbedOptions {
            batch_size: 3,
            ..Default::default()
        },
        false,
    );
    println!(
        "all-MiniLM-L6-v2 sentence cosine min (batch 3) = {min:.7} (1 - min = {:.1e})",
        1.0 - min
    );
}

#[test]
fn minilm_sentence_vectors_match_one_by_one() {
    let min = check_minilm_sentences(&EmbedOptions::default(), true);
    println!(
        "all-MiniLM-L6-v2 sentence cosine min (one by one) = {min:.7} (1 - min = {:.1e})",
        1.0 - min
    );
}

#[test]
fn minilm_token_vectors_match() {
    let m = model(MINILM);
    let recs: Vec<_> = golden(MINILM)
        .into_iter()
        .filter(|r| r["kind"] == "tokens")
        .collect();
    assert!(!recs.is_empty());
    // Batch the token records with a long text so they are padded.
    let mut texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let long = "padding ".repeat(100);
    texts.push(&long);
    let out = m.embed_tokens(&texts, &EmbedOptions::default()).unwrap();
    let mut min = 1.0f32;
    for (r, t) in recs.iter().zip(&out) {
        assert_eq!(t.ids, u32s(&r["input_ids"]));
        let gold = r["vectors"].as_array().unwrap();
        assert_eq!(gold.len(), t.ids.len());
        assert!(t.special[0] && t.special[t.ids.len() - 1] && !t.special[1]);
        for (i, g) in gold.iter().enumerate() {
            let c = cosine(t.row(i), &f32s(g));
            assert!(c >= 0.999, "token {i} of {:?}: cosine {c}", r["text"]);
            min = min.min(c);
        }
    }
    println!(
        "all-MiniLM-L6-v2 token cosine min = {min:.7} (1 - min = {:.1e})",
        1.0 - min
    );
}

#[test]
fn potion_vectors_match() {
    let m = model(POTION);
    let recs = golden(POTION);
    assert!(recs.len() >= 20, "{} golden records", recs.len());
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let out = m.embed(&texts, &EmbedOptions::default()).unwrap();
    let mut min = 1.0f32;
    for (i, r) in recs.iter().enumerate() {
        let c = cosine(out.row(i), &f32s(&r["vector"]));
        assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", r["text"]);
        min = min.min(c);
    }
    println!(
        "potion-base-8M cosine min = {min:.7} (1 - min = {:.1e})",
        1.0 - min
    );
}

#[test]
fn matryoshka_prefix_is_renormalised_prefix() {
    let m = model(MINILM);
    let full = m
        .embed(&["Who likes quokkas?"], &EmbedOptions::default())
        .unwrap();
    let small = m
        .embed(
            &["Who likes quokkas?"],
            &EmbedOptions {
                dims: Some(64),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(small.dim(), 64);
    assert!((crate::norm(small.row(0)) - 1.0).abs() < 1e-5);
    assert!(cosine(small.row(0), &full.row(0)[..64]) > 0.99999);
    let p = model(POTION);
    let s = p
        .embed(
            &["Who likes quokkas?"],
            &EmbedOptions {
                dims: Some(32),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(s.row(0).len(), 32);
    assert!((crate::norm(s.row(0)) - 1.0).abs() < 1e-5);
}

/// Early exit against the reference: sentence-transformers' output for MiniLM cut to its first 1
/// and 3 layers (`early_exit_golden.jsonl`), for texts of 8 to 252 tokens embedded as one padded
/// batch; the full 6 layers equal the default.
#[test]
fn early_exit_layers() {
    let m = model(MINILM);
    let text = ["Vitamin D deficiency is associated with increased risk of multiple sclerosis."];
    let full = m.embed(&text, &EmbedOptions::default()).unwrap();
    let all = m
        .embed(
            &text,
            &EmbedOptions {
                layers: Some(6),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(full, all);

    let recs: Vec<serde_json::Value> = include_str!("early_exit_golden.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for layers in [1usize, 3] {
        let want: Vec<_> = recs
            .iter()
            .filter(|r| r["layers"].as_u64() == Some(layers as u64))
            .collect();
        assert_eq!(want.len(), 4, "golden records for {layers} layers");
        let texts: Vec<&str> = want.iter().map(|r| r["text"].as_str().unwrap()).collect();
        let got = m
            .embed(
                &texts,
                &EmbedOptions {
                    layers: Some(layers),
                    ..Default::default()
                },
            )
            .unwrap();
        let mut min = 1.0f32;
        for (i, r) in want.iter().enumerate() {
            assert!((crate::norm(got.row(i)) - 1.0).abs() < 1e-5);
            let c = cosine(got.row(i), &f32s(&r["vector"]));
            assert!(
                c >= 0.9999,
                "{layers} layers: cosine {c} < 0.9999 to sentence-transformers for {:?}",
                r["text"]
            );
            min = min.min(c);
        }
        println!(
            "all-MiniLM-L6-v2 early exit at {layers} layers: cosine min to sentence-transformers = {min:.7} (1 - min = {:.1e})",
            1.0 - min
        );
    }

    let t = m
        .embed_tokens(
            &text,
            &EmbedOptions {
                layers: Some(1),
                dims: Some(16),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(t[0].dim, 16);
    assert_eq!(t[0].data.len(), t[0].ids.len() * 16);
}

#[test]
fn thread_count_does_not_change_results() {
    let dir = crate::model_dir(MINILM);
    let one = quiver_embed::load_model(
        &dir,
        &quiver_embed::LoadOptions {
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let texts = ["A man is eating food.", "The new movie is awesome."];
    let a = one.embed(&texts, &EmbedOptions::default()).unwrap();
    let b = model(MINILM)
        .embed(&texts, &EmbedOptions::default())
        .unwrap();
    for i in 0..2 {
        assert!(cosine(a.row(i), b.row(i)) > 0.99999);
    }
}
