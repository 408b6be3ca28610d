//! `quiver query COLLECTION plan.json`: runs a JSON query plan (see `quiver_query::plan`).

use crate::ops::open_db;
use crate::text::{embed_query, Models};
use anyhow::{Context, Result};
use clap::Args;
use quiver::query::plan::{execute, Plan, PlanResult, QueryEncoder};
use quiver::DenseField;
use serde_json::json;
use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Collection.
    pub collection: String,
    /// Plan file (JSON); `-` reads standard input.
    pub plan: PathBuf,
    /// Print what each stage did (candidates, best score, time).
    #[arg(long)]
    pub explain: bool,
}

/// Embeds query texts with the models named by the schema, loading each once.
#[derive(Default)]
pub struct ModelEncoder {
    models: RefCell<Models>,
}

impl QueryEncoder for ModelEncoder {
    fn encode_dense(&self, field: &DenseField, text: &str) -> Result<Vec<f32>, String> {
        embed_query(field, text, &mut self.models.borrow_mut()).map_err(|e| format!("{e:#}"))
    }
}

pub fn run(db: &Path, as_json: bool, a: QueryArgs) -> Result<()> {
    let text = if a.plan.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the plan from standard input")?;
        s
    } else {
        std::fs::read_to_string(&a.plan)
            .with_context(|| format!("reading plan {}", a.plan.display()))?
    };
    let plan = Plan::from_json(&text).with_context(|| format!("plan {}", a.plan.display()))?;
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let encoder = ModelEncoder::default();
    let t = std::time::Instant::now();
    let res = execute(&c.snapshot(), &plan, Some(&encoder))?;
    print_result(&res, t.elapsed().as_secs_f64() * 1e3, as_json, a.explain)
}

/// Prints plan results as a table (or JSON), with the per-stage report when asked.
pub fn print_result(res: &PlanResult, took_ms: f64, as_json: bool, explain: bool) -> Result<()> {
    if as_json {
        let mut v = json!({"hits": res.hits, "took_ms": took_ms});
        if explain {
            v["explain"] = serde_json::to_value(&res.explain)?;
        }
        println!("{v}");
        return Ok(());
    }
    for (i, h) in res.hits.iter().enumerate() {
        println!(
            "{:>3}. {:<24} {:>10.5}  {}",
            i + 1,
            h.id.to_string(),
            h.score,
            crate::ops::describe(h.payload.as_ref())
        );
    }
    if explain {
        for s in &res.explain {
            let top = s.top_score.map_or("-".to_string(), |x| format!("{x:.5}"));
            println!(
                "  {:<48} in {:>7} out {:>7} top {:>9} {:>8} us",
                s.stage, s.candidates_in, s.candidates_out, top, s.micros
            );
            for p in &s.segments {
                println!(
                    "      {:<24} rows {:>8} allowed {:>8} {:<12} {} us",
                    p.segment, p.rows, p.allowed, p.method, p.micros
                );
            }
        }
    }
    eprintln!("{} hits in {took_ms:.2} ms", res.hits.len());
    Ok(())
}
