//! `quiver demo`: the main job on a fresh machine — text in, ranked results out.
//!
//! Pulls the default model (all-MiniLM-L6-v2, verified by sha256) on first use, indexes Quiver's own
//! documentation (README.md, ARCHITECTURE.md, bench/README.md — compiled into the binary, chunked
//! by section) into the collection `quiver-docs`, and answers a query.

use crate::ingest::write_batches;
use crate::text::text_documents;
use anyhow::Result;
use clap::Args;
use quiver::{Query, Schema};
use serde_json::json;
use std::path::Path;

const DOCS: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../README.md")),
    ("ARCHITECTURE.md", include_str!("../../../ARCHITECTURE.md")),
    ("bench/README.md", include_str!("../../../bench/README.md")),
];

const SCHEMA: &str = r#"
[fields.emb]
type = "dense"
dim = 384
metric = "cosine"
model = "all-MiniLM-L6-v2"
embed = ["title", "text"]

[fields.path]
type = "keyword"
"#;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The question to ask of Quiver's documentation.
    #[arg(default_value = "What happens to my data if the process is killed during ingest?")]
    pub query: String,
    /// Results to show.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub k: usize,
    /// Collection to (re)create.
    #[arg(long, default_value = "quiver-docs")]
    pub collection: String,
}

pub fn run(db: &Path, as_json: bool, a: DemoArgs) -> Result<()> {
    let d = crate::ops::open_db(db)?;
    if d.list_collections()?.contains(&a.collection) {
        d.drop_collection(&a.collection)?;
    }
    let schema = Schema::parse(SCHEMA)?;
    let c = d.create_collection(&a.collection, &schema)?;
    let mut docs = Vec::new();
    for (path, text) in DOCS {
        let start = docs.len();
        docs.extend(text_documents(path, text, start));
    }
    let t = std::time::Instant::now();
    let mut plain: Vec<quiver::Document> = docs.into_iter().map(|(_, d)| d).collect();
    c.set_progress(std::sync::Arc::new(crate::progress::Bars::new()));
    c.embed(&mut plain)?;
    let n = plain.len();
    write_batches(&c, plain.into_iter().enumerate().collect(), 256, false)?;
    let index_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let res = c.query(&Query::text(a.query.as_str()).with_limit(a.k))?;
    let query_ms = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        println!(
            "{}",
            json!({"collection": a.collection, "documents": n, "index_s": index_s, "query": a.query, "query_ms": query_ms, "hits": res.hits})
        );
        return Ok(());
    }
    println!("indexed {n} sections of Quiver's documentation into {:?} in {index_s:.1}s (model all-MiniLM-L6-v2)", a.collection);
    println!("query: {}\n", a.query);
    for (i, h) in res.hits.iter().enumerate() {
        let p = h.payload.clone().unwrap_or_default();
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let snippet = crate::text::snippet(&s("text"), 220);
        println!(
            "{}. [{:.3}] {} — {}\n   {snippet}\n",
            i + 1,
            h.score,
            s("path"),
            s("title")
        );
    }
    println!("({query_ms:.1} ms; try: quiver demo \"your question\", or index your own folder with `quiver ingest COLLECTION DIR`)");
    Ok(())
}
