//! `quiver adapt COLLECTION --field F --from-model NEW`: fit and store a query adapter, so text
//! queries on F are embedded by NEW and mapped onto F's stored vectors (`Collection::adapt`);
//! `--remove` takes it away. `--switch` also starts re-embedding F's documents with NEW
//! (`Collection::begin_switch`) and runs that backfill, after which F holds NEW's vectors and
//! the adapter is gone; an interrupted one resumes with `quiver collection backfill`.

use crate::ops::{open_db_with, Throttle};
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
    /// Also switch the field to NEW: re-embed its documents with NEW in a backfill; when that
    /// completes the field holds NEW's vectors (searched without adapter) and the old ones
    /// are dropped.
    #[arg(long, conflicts_with = "remove")]
    pub switch: bool,
    /// With --switch: only start it; `quiver collection backfill` runs it.
    #[arg(long, requires = "switch")]
    pub no_backfill: bool,
    #[command(flatten)]
    pub throttle: Throttle,
}

/// Runs `quiver adapt`.
pub fn run(db: &Path, as_json: bool, a: AdaptArgs) -> Result<()> {
    let d = open_db_with(db, false, a.throttle.threads)?;
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
    if !as_json {
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
    }
    let switch = match a.switch {
        true => Some(c.begin_switch(&a.field, &model)?),
        false => None,
    };
    let backfill = match (&switch, a.no_backfill) {
        (Some(_), false) => Some(crate::alter::run_backfill(
            &c,
            &a.throttle.options(),
            as_json,
        )?),
        _ => None,
    };
    if as_json {
        let mut out = serde_json::to_value(&info)?;
        if let Some(s) = &switch {
            out["switch"] = json!(s);
        }
        if let Some(b) = &backfill {
            out["backfill"] = json!(b);
        }
        println!("{out}");
        return Ok(());
    }
    match (&switch, &backfill) {
        (Some(_), Some(b)) if b.switched.contains(&info.field) => println!(
            "{} now holds {}'s vectors; the old ones and the adapter are gone",
            info.field, info.model
        ),
        (Some(s), _) => println!(
            "text queries on {} are embedded by {} and mapped until its {} documents are \
             re-embedded (`quiver collection backfill {}`); then it switches to {}'s vectors",
            info.field, info.model, s.pending_documents, a.collection, info.model
        ),
        (None, _) => println!(
            "text queries on {} are now embedded by {} and mapped (`quiver adapt {} --field {} --remove` undoes it)",
            info.field, info.model, a.collection, info.field
        ),
    }
    Ok(())
}
