//! `quiver adapt COLLECTION --field F --from-model NEW`: fit and store a query adapter, so text
//! queries on F are embedded by NEW and mapped onto F's stored vectors (`Collection::adapt`);
//! `--remove` takes it away.

use crate::ops::open_db;
use crate::progress::Bars;
use anyhow::{bail, Result};
use clap::Args;
use quiver::linalg::adapt::AdapterKind;
use quiver::AdaptOptions;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// Options of `quiver adapt`.
#[derive(Args, Debug)]
pub struct AdaptArgs {
    /// Collection.
    pub collection: String,
    /// Dense field whose stored vectors queries are mapped onto.
    #[arg(long)]
    pub field: String,
    /// The model text queries are embedded by from now on.
    #[arg(long, required_unless_present = "remove")]
    pub from_model: Option<String>,
    /// Stored documents embedded by the new model to fit the map.
    #[arg(long, default_value_t = 2000)]
    pub sample: usize,
    /// `procrustes` or `ridge` (default: procrustes when the dimensions match, else ridge).
    #[arg(long)]
    pub method: Option<String>,
    /// Seed of the sample draw.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Remove the field's adapter instead (queries use the field's own model again).
    #[arg(long, conflicts_with = "from_model")]
    pub remove: bool,
}

/// Runs `quiver adapt`.
pub fn run(db: &Path, as_json: bool, a: AdaptArgs) -> Result<()> {
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    if a.remove {
        let had = c.remove_adapter(&a.field)?;
        if as_json {
            println!("{}", json!({"field": a.field, "removed": had}));
        } else if had {
            println!("removed the adapter of {}", a.field);
        } else {
            println!("{} had no adapter", a.field);
        }
        return Ok(());
    }
    let kind = match a.method.as_deref() {
        None => None,
        Some(m) => match AdapterKind::parse(m) {
            Some(k) => Some(k),
            None => bail!("--method: {m:?} is not procrustes or ridge"),
        },
    };
    let Some(model) = a.from_model else {
        bail!("give --from-model NEW (or --remove)");
    };
    c.set_progress(Arc::new(Bars::new()));
    let info = c.adapt(
        &a.field,
        &model,
        &AdaptOptions {
            sample: a.sample,
            kind,
            seed: a.seed,
        },
    )?;
    if as_json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    println!(
        "adapter {} -> {} ({}, {} x {}) fitted on {} documents; held-out documents map to \
         their stored vectors at mean cosine {:.4} ({} held out)",
        info.model,
        info.field,
        info.kind,
        info.d_in,
        info.d_out,
        info.sample,
        info.holdout_cosine,
        info.holdout
    );
    println!(
        "text queries on {} are now embedded by {} and mapped (`quiver adapt {} --field {} --remove` undoes it)",
        info.field, info.model, a.collection, info.field
    );
    Ok(())
}
