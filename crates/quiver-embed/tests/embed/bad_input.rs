//! Bad input never panics: it is a typed error or documented behaviour.

use std::collections::HashMap;
use std::path::Path;

use quiver_embed::{load_model, EmbedError, EmbedOptions, LoadOptions};

use crate::model;

const MINILM: &str = "all-MiniLM-L6-v2";
const POTION: &str = "potion-base-8M";

#[test]
fn empty_and_whitespace_are_errors_by_default() {
    for name in [MINILM, POTION] {
        let m = model(name);
        for bad in ["", "   ", "\t\n"] {
            let err = m
                .embed(&["fine", bad], &EmbedOptions::default())
                .unwrap_err();
            assert!(
                matches!(err, EmbedError::EmptyInput { index: 1 }),
                "{name}: {err}"
            );
            let err = m
                .embed_tokens(&[bad], &EmbedOptions::default())
                .unwrap_err();
            assert!(
                matches!(err, EmbedError::EmptyInput { index: 0 }),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn empty_allowed_follows_the_reference_library() {
    let opts = EmbedOptions {
        allow_empty: true,
        ..Default::default()
    };
    // BERT: "[CLS] [SEP]" gives a normal unit vector.
    let v = model(MINILM).embed(&["", "x"], &opts).unwrap();
    assert!((crate::norm(v.row(0)) - 1.0).abs() < 1e-5);
    // model2vec: no tokens -> the zero vector.
    let v = model(POTION).embed(&[""], &opts).unwrap();
    assert!(v.row(0).iter().all(|x| *x == 0.0));
}

#[test]
fn over_long_text_is_truncated() {
    let m = model(MINILM);
    let long = "quokka ".repeat(20_000);
    let longer = format!("{long} and then something entirely different at the end");
    let t = m.tokenize(&[&long]).unwrap();
    assert_eq!(t[0].len(), m.info().max_seq_length);
    assert_eq!(m.info().max_seq_length, 256);
    let v = m
        .embed(&[&long, &longer], &EmbedOptions::default())
        .unwrap();
    assert_eq!(
        v.row(0),
        v.row(1),
        "text past the truncation point must not matter"
    );
    let p = model(POTION)
        .embed(&[&long], &EmbedOptions::default())
        .unwrap();
    assert!((crate::norm(p.row(0)) - 1.0).abs() < 1e-5);
}

#[test]
fn invalid_options_are_errors() {
    let m = model(MINILM);
    let t = ["hello"];
    for opts in [
        EmbedOptions {
            dims: Some(0),
            ..Default::default()
        },
        EmbedOptions {
            dims: Some(385),
            ..Default::default()
        },
        EmbedOptions {
            layers: Some(0),
            ..Default::default()
        },
        EmbedOptions {
            layers: Some(7),
            ..Default::default()
        },
        EmbedOptions {
            batch_size: 0,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(m.embed(&t, &opts), Err(EmbedError::InvalidOption(_))),
            "{opts:?}"
        );
    }
    let err = model(POTION)
        .embed(
            &t,
            &EmbedOptions {
                layers: Some(1),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, EmbedError::InvalidOption(_)), "{err}");
    assert!(m.embed(&[], &EmbedOptions::default()).unwrap().is_empty());
}

#[test]
fn invalid_utf8_in_a_file_names_the_line() {
    let err =
        quiver_embed::input::read_lines(&b"first\nsecond\n\xc3\x28 broken\n"[..]).unwrap_err();
    assert!(
        matches!(err, EmbedError::InvalidUtf8 { line: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("line 3"));
}

#[test]
fn unknown_model_is_an_error() {
    let err = quiver_embed::fetch::cached_model("no-such-model").unwrap_err();
    assert!(matches!(err, EmbedError::UnknownModel { .. }), "{err}");
    assert!(err.to_string().contains("all-MiniLM-L6-v2"));
}

/// Copy (hard-link when possible) a model directory into a temp dir.
fn copy_model(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in walk(src) {
        let rel = entry.strip_prefix(src).unwrap();
        let dst = tmp.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if std::fs::hard_link(&entry, &dst).is_err() {
            std::fs::copy(&entry, &dst).unwrap();
        }
    }
    tmp
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn replace(path: &Path, contents: &str) {
    std::fs::remove_file(path).unwrap(); // break the hard link first
    std::fs::write(path, contents).unwrap();
}

#[test]
fn missing_files_are_named() {
    let opts = LoadOptions::default();
    for (name, file) in [
        (MINILM, "tokenizer.json"),
        (MINILM, "model.safetensors"),
        (MINILM, "config.json"),
        (POTION, "model.safetensors"),
    ] {
        let tmp = copy_model(&crate::model_dir(name));
        std::fs::remove_file(tmp.path().join(file)).unwrap();
        let err = load_model(tmp.path(), &opts).unwrap_err();
        match &err {
            EmbedError::MissingFile { path } => assert!(path.ends_with(file), "{err}"),
            other => panic!("{name} without {file}: expected MissingFile, got {other}"),
        }
    }
    let err = load_model(Path::new("/definitely/not/here"), &opts).unwrap_err();
    assert!(matches!(err, EmbedError::MissingFile { .. }), "{err}");
}

#[test]
fn checksum_mismatch_is_detected() {
    let reg = quiver_embed::registry::Registry::builtin().unwrap();
    let entry = reg.get(MINILM).unwrap();
    let tmp = copy_model(&crate::model_dir(MINILM));
    quiver_embed::fetch::verify_dir(entry, tmp.path()).unwrap();
    let cfg = std::fs::read_to_string(tmp.path().join("modules.json")).unwrap();
    replace(&tmp.path().join("modules.json"), &format!("{cfg} "));
    let err = quiver_embed::fetch::verify_dir(entry, tmp.path()).unwrap_err();
    assert!(matches!(err, EmbedError::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn wrong_tensor_shapes_are_errors() {
    // BERT: a config that disagrees with the weights.
    let tmp = copy_model(&crate::model_dir(MINILM));
    let cfg = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    replace(
        &tmp.path().join("config.json"),
        &cfg.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024"),
    );
    let err = load_model(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, EmbedError::BadTensor { .. }), "{err}");
    assert!(err.to_string().contains("intermediate.dense"), "{err}");

    // Static: a table with fewer rows than the tokenizer has tokens, and a 1-d table.
    for shape in [vec![10usize, 4], vec![40]] {
        let tmp = copy_model(&crate::model_dir(POTION));
        let n: usize = shape.iter().product();
        let t = candle_core::Tensor::from_vec(
            vec![0.5f32; n],
            shape.as_slice(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let path = tmp.path().join("model.safetensors");
        std::fs::remove_file(&path).unwrap();
        candle_core::safetensors::save(&HashMap::from([("embeddings".to_string(), t)]), &path)
            .unwrap();
        let err = load_model(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err, EmbedError::BadTensor { .. }),
            "{shape:?}: {err}"
        );
    }

    // Truncated weights file.
    let tmp = copy_model(&crate::model_dir(POTION));
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes[..1000]).unwrap();
    let err = load_model(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, EmbedError::Config { .. }), "{err}");
}

#[test]
fn unsupported_family_is_an_error() {
    let tmp = copy_model(&crate::model_dir(MINILM));
    let cfg = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    replace(
        &tmp.path().join("config.json"),
        &cfg.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""),
    );
    let err = load_model(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, EmbedError::UnsupportedFamily(ref f) if f == "gpt2"),
        "{err}"
    );
    replace(&tmp.path().join("config.json"), "{ not json");
    let err = load_model(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, EmbedError::Config { .. }), "{err}");
}
