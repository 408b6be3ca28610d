//! `quiver bench embed`: sentences per second on SciFact documents (long texts) and queries
//! (short texts), one model, fixed threads and batch size. `bench/compare embed` runs the same
//! texts through sentence-transformers and reports the ratio.

use crate::error::{data_err, Result};
use clap::Args;
use quiver_embed::{EmbedOptions, Embedder, Precision};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `quiver bench embed`.
#[derive(Args, Debug, Clone)]
pub struct EmbedBenchOptions {
    /// Registry model name or model directory.
    #[arg(long, short, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// BEIR SciFact directory (corpus.jsonl, queries.jsonl).
    #[arg(long, alias = "dataset", default_value = "../shared/data/scifact")]
    pub data: PathBuf,
    /// Number of corpus documents (title + " " + text) for the long-text rate.
    #[arg(long, default_value_t = 2000)]
    pub docs: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Precision of the linear layers: f32 (default), bf16 or int8.
    #[arg(long)]
    pub precision: Option<Precision>,
}

/// One kind of text's rate.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// Texts embedded.
    pub texts: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Texts per second.
    pub sentences_per_s: f64,
}

/// What `quiver bench embed --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    /// Always `quiver`.
    pub engine: &'static str,
    /// The model's name.
    pub model: String,
    /// Precision of its linear layers.
    pub precision: Precision,
    /// CPU threads.
    pub threads: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// SciFact documents.
    pub long: Rate,
    /// SciFact queries.
    pub short: Rate,
}

fn rate(model: &dyn Embedder, texts: &[String], opts: &EmbedOptions) -> Result<Rate> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let out = model.embed(&refs, opts)?;
    let seconds = t.elapsed().as_secs_f64();
    if out.len() != texts.len() {
        return Err(data_err!("embedded {} of {} texts", out.len(), texts.len()));
    }
    Ok(Rate {
        texts: texts.len(),
        seconds,
        sentences_per_s: texts.len() as f64 / seconds.max(1e-9),
    })
}

/// Measures the model on the SciFact texts (after a warm-up batch).
pub fn measure(a: &EmbedBenchOptions) -> Result<EmbedReport> {
    let (long, short) = crate::data::scifact_inputs(&a.data, a.docs)?;
    let reference = crate::data::model_reference(&a.model, a.precision)?;
    let model = crate::data::load_model(&reference, Some(a.threads))?;
    let opts = EmbedOptions {
        batch_size: a.batch_size,
        allow_empty: true,
        ..Default::default()
    };
    // Warm-up: page in weights, start the thread pool.
    let warm: Vec<&str> = long.iter().take(a.batch_size).map(String::as_str).collect();
    model.embed(&warm, &opts)?;
    let long = rate(model.as_ref(), &long, &opts)?;
    let short = rate(model.as_ref(), &short, &opts)?;
    Ok(EmbedReport {
        engine: "quiver",
        model: model.info().name.clone(),
        precision: model.info().precision,
        threads: a.threads,
        batch_size: a.batch_size,
        long,
        short,
    })
}

/// `quiver bench embed`.
pub fn run(as_json: bool, a: EmbedBenchOptions) -> Result<()> {
    let r = measure(&a)?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "model {} ({}, {} threads, batch {})",
        r.model, r.precision, r.threads, r.batch_size
    );
    println!(
        "long  (SciFact docs, n={:>5}): {:>9.1} sentences/s  ({:.2}s)",
        r.long.texts, r.long.sentences_per_s, r.long.seconds
    );
    println!(
        "short (SciFact queries, n={:>4}): {:>9.1} sentences/s  ({:.2}s)",
        r.short.texts, r.short.sentences_per_s, r.short.seconds
    );
    Ok(())
}
