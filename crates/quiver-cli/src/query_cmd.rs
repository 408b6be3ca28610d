//! `quiver query COLLECTION plan.json`: runs a JSON query plan (see `quiver_query::plan`) through
//! the engine (`Collection::query` with mode `plan`).

use crate::ops::open_db_read;
use anyhow::{Context, Result};
use clap::Args;
use quiver::{Plan, Query};
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
    let d = open_db_read(db)?;
    let c = d.collection(&a.collection)?;
    let res = c.query(&Query::plan(plan))?;
    crate::search_text::print_result(&res, as_json, a.explain)
}
