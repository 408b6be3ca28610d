//! `quiver classify COLLECTION --labels labels.json`: zero-shot classification of the stored
//! documents by label similarity, written into a payload keyword field (`Collection::classify`).

use crate::ops::open_db;
use crate::progress::Bars;
use anyhow::{Context, Result};
use clap::Args;
use quiver::{ClassifyOptions, Label};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `quiver classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Collection.
    pub collection: String,
    /// JSON array of labels: `[{"label": "Sports", "description": "...", "keywords": [...]}]`.
    #[arg(long)]
    pub labels: PathBuf,
    /// Dense field compared (default: the only one); it needs a model for the label texts.
    #[arg(long)]
    pub field: Option<String>,
    /// Payload keyword field written (added to the schema when absent).
    #[arg(long, default_value = "label")]
    pub into: String,
    /// Refinement rounds, Lbl2TransformerVec-style (0: plain label-description similarity).
    #[arg(long, default_value_t = 1)]
    pub iterations: usize,
    /// Documents averaged per label and round (default: half a balanced share).
    #[arg(long)]
    pub top_docs: Option<usize>,
    /// Multi-label: every label with cosine >= this (a document may get none).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
}

/// Runs `quiver classify`.
pub fn run(db: &Path, as_json: bool, a: ClassifyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.labels)
        .with_context(|| format!("reading labels {}", a.labels.display()))?;
    let labels =
        Label::parse_list(&text).with_context(|| format!("labels {}", a.labels.display()))?;
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    c.set_progress(Arc::new(Bars::new()));
    let r = c.classify(&ClassifyOptions {
        field: a.field,
        into: a.into,
        labels,
        iterations: a.iterations,
        top_docs: a.top_docs,
        threshold: a.threshold,
        ..Default::default()
    })?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "classified {} documents of {} by {} into {:?} in {:.1}s{}",
        r.documents,
        a.collection,
        r.field,
        r.into,
        r.seconds,
        if r.added_field { " (field added)" } else { "" }
    );
    for (label, n) in &r.counts {
        println!("  {label:<32} {n:>8}");
    }
    if r.unlabelled > 0 {
        println!("  {:<32} {:>8}", "(no label)", r.unlabelled);
    }
    if r.changed > 0 {
        println!(
            "{} documents were rewritten or deleted meanwhile and were left as they are",
            r.changed
        );
    }
    Ok(())
}
