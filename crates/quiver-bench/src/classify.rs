//! `quiver bench classify`: zero-shot classification by label similarity on a labelled set
//! (issue 17): accuracy and macro-F1 of the plain label-description vectors (the SBERT baseline)
//! and of the refined, Lbl2TransformerVec-style vectors (`quiver_linalg::classify`), beside the
//! majority-class baseline.
//!
//! A data folder holds `test.jsonl` (`{"id", "text", "label"}` a line) and `labels.json` (a list
//! of `{"label", "description", "keywords"?}`, read as `quiver::Label`s, whose text is embedded:
//! `"{label}: {description}"`, followed by its keywords when given; `quiver classify` labels a
//! collection the same way). Document vectors are cached like `quiver eval`'s.

use crate::error::{data_err, invalid, Context, Result};
use crate::eval::cache;
use clap::Args;
use quiver::linalg::classify::{accuracy_and_macro_f1, assign, label_vectors, LabelParams};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `quiver bench classify`.
#[derive(Args, Debug, Clone)]
pub struct ClassifyOptions {
    /// Data folder(s), comma separated: `test.jsonl` and `labels.json` each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "../shared/data/classify/agnews"
    )]
    pub data: Vec<PathBuf>,
    /// Embedding models, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "all-MiniLM-L6-v2")]
    pub models: Vec<String>,
    /// Refinement rounds to report (0 = plain label descriptions).
    #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
    pub iterations: Vec<usize>,
    /// Documents averaged per label and round (default: half a balanced share).
    #[arg(long)]
    pub top_docs: Option<usize>,
    /// Use only the first N documents of each set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Do not read or write the document embedding cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(deserialize_with = "id_string")]
    id: String,
    text: String,
    label: String,
}

fn id_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// A labelled set: label texts, document texts, document class indices.
struct LabelledSet {
    name: String,
    labels: Vec<String>,
    label_texts: Vec<String>,
    ids: Vec<String>,
    texts: Vec<String>,
    truth: Vec<usize>,
}

fn read_set(dir: &Path, limit: Option<usize>) -> Result<LabelledSet> {
    let lp = dir.join("labels.json");
    let specs: Vec<quiver::Label> = serde_json::from_slice(
        &std::fs::read(&lp).with_context(|| format!("reading {}", lp.display()))?,
    )
    .with_context(|| format!("parsing {}", lp.display()))?;
    if specs.is_empty() {
        return invalid!("{}: no labels", lp.display());
    }
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.as_str(), i))
        .collect();
    if index.len() != specs.len() {
        return invalid!("{}: a label is listed twice", lp.display());
    }
    let tp = dir.join("test.jsonl");
    let f = std::fs::File::open(&tp).with_context(|| format!("opening {}", tp.display()))?;
    let (mut ids, mut texts, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        if limit.is_some_and(|l| ids.len() >= l) {
            break;
        }
        let line = line.with_context(|| format!("reading {}", tp.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let d: Doc = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}", tp.display(), n + 1))?;
        let Some(&c) = index.get(d.label.as_str()) else {
            return invalid!(
                "{} line {}: label {:?} is not in labels.json",
                tp.display(),
                n + 1,
                d.label
            );
        };
        ids.push(d.id);
        texts.push(d.text);
        truth.push(c);
    }
    if ids.is_empty() {
        return invalid!("{}: no documents", tp.display());
    }
    let label_texts = specs.iter().map(quiver::Label::text).collect();
    Ok(LabelledSet {
        name: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        labels: specs.into_iter().map(|s| s.label).collect(),
        label_texts,
        ids,
        texts,
        truth,
    })
}

/// `quiver bench classify`.
pub fn run(as_json: bool, a: ClassifyOptions) -> Result<()> {
    if a.data.is_empty() || a.models.is_empty() || a.iterations.is_empty() {
        return invalid!("--data, --models and --iterations need at least one value each");
    }
    let mut results = Vec::new();
    for dir in &a.data {
        let set = read_set(dir, a.limit)?;
        let m = set.labels.len();
        let mut counts = vec![0usize; m];
        set.truth.iter().for_each(|&c| counts[c] += 1);
        let majority = (0..m)
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0);
        let (maj_acc, maj_f1) =
            accuracy_and_macro_f1(&vec![majority; set.truth.len()], &set.truth, m);
        for name in &a.models {
            let model = crate::data::load_model(name, None)?;
            let dim = model.info().dim;
            let id_refs: Vec<&str> = set.ids.iter().map(String::as_str).collect();
            let t = Instant::now();
            let label = format!("{} ({name})", set.name);
            let docs =
                cache::vectors_or_embed(model.as_ref(), &id_refs, &set.texts, !a.no_cache, &label)?;
            let embed_s = t.elapsed().as_secs_f64();
            let desc = crate::data::embed_texts(model.as_ref(), &set.label_texts, "labels")?;
            let mut rows = Vec::new();
            for &iterations in &a.iterations {
                let params = LabelParams {
                    iterations,
                    top_docs: a.top_docs,
                };
                let t = Instant::now();
                let lv = label_vectors(&desc, &docs, dim, params)
                    .map_err(|e| data_err!("{}: label vectors: {e}", set.name))?;
                let pred: Vec<usize> = assign(&lv, &docs, dim, None)
                    .map_err(|e| data_err!("{}: assignment: {e}", set.name))?
                    .into_iter()
                    .map(|x| x.best)
                    .collect();
                let (acc, f1) = accuracy_and_macro_f1(&pred, &set.truth, m);
                rows.push(json!({
                    "method": if iterations == 0 { "plain label description".to_string() }
                              else { format!("refined, {iterations} round(s)") },
                    "iterations": iterations, "accuracy": acc, "macro_f1": f1,
                    "classify_s": t.elapsed().as_secs_f64(),
                }));
            }
            results.push(json!({
                "dataset": set.name, "model": name, "documents": set.texts.len(), "labels": m,
                "top_docs": LabelParams { iterations: 1, top_docs: a.top_docs }.top_docs_for(set.texts.len(), m),
                "majority": {"label": set.labels[majority], "accuracy": maj_acc, "macro_f1": maj_f1},
                "embed_s": embed_s, "rows": rows,
            }));
        }
    }
    if as_json {
        println!("{}", json!({ "results": results }));
        return Ok(());
    }
    for r in &results {
        println!(
            "{} ({} documents, {} labels), {}: majority class {} acc {:.4} macro-F1 {:.4}",
            r["dataset"].as_str().unwrap_or(""),
            r["documents"],
            r["labels"],
            r["model"].as_str().unwrap_or(""),
            r["majority"]["label"].as_str().unwrap_or(""),
            r["majority"]["accuracy"].as_f64().unwrap_or(0.0),
            r["majority"]["macro_f1"].as_f64().unwrap_or(0.0)
        );
        for row in r["rows"].as_array().into_iter().flatten() {
            println!(
                "  {:<28} accuracy {:.4}  macro-F1 {:.4}",
                row["method"].as_str().unwrap_or(""),
                row["accuracy"].as_f64().unwrap_or(0.0),
                row["macro_f1"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
