//! `quiver collection alter` and `quiver collection backfill`: fields added to or dropped from a
//! collection that holds documents, and the backfill that computes an added field from the
//! stored text (resumable: run `backfill` again after an interruption).

use crate::progress::Bars;
use anyhow::{bail, Context, Result};
use quiver::{BackfillOptions, Database, FieldSpec};
use serde_json::json;
use std::sync::Arc;

/// `alter NAME --add-field F --schema-json SPEC [--no-backfill]` or `alter NAME --drop-field F`.
pub fn alter(
    d: &Database,
    name: &str,
    add: Option<(String, String)>,
    drop: Option<String>,
    backfill: Option<BackfillOptions>,
    as_json: bool,
) -> Result<()> {
    let c = d.collection(name)?;
    let report = match (add, drop) {
        (Some((field, spec)), None) => {
            let spec: FieldSpec = serde_json::from_str(&spec)
                .with_context(|| format!("field {field:?}: --schema-json is not a field spec"))?;
            c.add_field(&field, spec)?
        }
        (None, Some(field)) => c.drop_field(&field)?,
        _ => bail!("give one of --add-field NAME --schema-json '{{...}}' or --drop-field NAME"),
    };
    let mut out = json!({"collection": name, "alter": report});
    if let (Some(opts), true) = (backfill, report.pending_documents > 0) {
        if !as_json {
            println!(
                "added {}: {} documents to backfill",
                report.field, report.pending_documents
            );
        }
        out["backfill"] = json!(run_backfill(&c, &opts, as_json)?);
    } else if !as_json {
        match report.rewritten_segments {
            0 if report.pending_documents == 0 => println!("altered {name}: {}", report.field),
            0 => println!(
                "added {}: {} documents pending; run `quiver collection backfill {name}`",
                report.field, report.pending_documents
            ),
            n => println!("dropped {}: {n} segments rewritten", report.field),
        }
    }
    if as_json {
        println!("{out}");
    }
    Ok(())
}

/// Runs the pending backfills of `c` to the end with a progress bar; prints the summary.
pub fn run_backfill(
    c: &quiver::Collection,
    opts: &BackfillOptions,
    as_json: bool,
) -> Result<quiver::BackfillReport> {
    c.set_progress(Arc::new(Bars::new()));
    let r = c.backfill(opts)?;
    if !as_json {
        println!(
            "backfilled {} rows into {} segments in {:.1}s ({:.0} rows/s busy{}); completed: {}{}",
            r.rows,
            r.segments,
            r.seconds,
            r.rows as f64 / r.busy_seconds.max(1e-9),
            if r.stopped { ", stopped" } else { "" },
            if r.completed.is_empty() {
                "none".to_string()
            } else {
                r.completed.join(", ")
            },
            match r.switched.as_slice() {
                [] => String::new(),
                s => format!("; switched to the new model: {}", s.join(", ")),
            }
        );
    }
    Ok(r)
}
