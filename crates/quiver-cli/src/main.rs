//! `quiver`: the command-line face of the engine.
//!
//! Flags are parsed in two stages (ripgrep style): clap gives the raw arguments, each command turns
//! them into typed requests (schemas, filters, documents) and reports errors that name the input.
//! Benchmarks and evaluation (`quiver bench ...`, `quiver eval`) are the `quiver-bench` library's;
//! their flags are its option structs, forwarded as they are.

mod adapt_cmd;
mod alter;
mod classify_cmd;
mod demo;
mod embed_cmd;
mod ingest;
mod ops;
mod progress;
mod query_cmd;
mod search_text;
mod serve;
mod text;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Quiver: a retrieval engine for modern embeddings.
#[derive(Parser, Debug)]
#[command(name = "quiver", version, about)]
pub struct Cli {
    /// Database directory.
    #[arg(
        long,
        global = true,
        default_value = "./quiver-data",
        env = "QUIVER_DB"
    )]
    pub db: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// The main job: index Quiver's own documentation with all-MiniLM-L6-v2 and answer a question.
    Demo(demo::DemoArgs),
    /// Create the database directory.
    Init,
    /// Manage collections.
    #[command(subcommand)]
    Collection(ops::CollectionCmd),
    /// Load documents from JSONL, Parquet, or a folder of Markdown/text files.
    Ingest(ingest::IngestArgs),
    /// Search: dense k-NN, BM25 (--mode bm25) or hybrid (--mode hybrid).
    Search(ops::SearchArgs),
    /// Run a JSON query plan (prefetch -> fusion -> rescore -> limit).
    Query(query_cmd::QueryArgs),
    /// Fetch documents by id.
    Get(ops::GetArgs),
    /// Delete documents by id or by filter.
    Delete(ops::DeleteArgs),
    /// Count documents (optionally matching a filter).
    Count(ops::CountArgs),
    /// Label every document by similarity to label descriptions, into a payload keyword field.
    Classify(classify_cmd::ClassifyArgs),
    /// Fit and store a query adapter: text queries on a field embedded by a new model and mapped
    /// onto the vectors the old one stored.
    Adapt(adapt_cmd::AdaptArgs),
    /// Embed texts (arguments, --input file, or stdin lines) and print JSON lines.
    Embed(embed_cmd::EmbedArgs),
    /// List, pull and verify embedding models.
    Models(embed_cmd::ModelsArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Evaluate retrieval quality and cost on a BEIR-layout dataset (nDCG, recall, MAP, MRR, P).
    Eval(quiver_bench::eval::EvalOptions),
    /// Serve the database over HTTP: a Qdrant-shaped REST API (see `quiver_server`).
    Serve(serve::ServeArgs),
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// HNSW recall/QPS sweep on GloVe-6B-50d.
    Ann(quiver_bench::ann::AnnOptions),
    /// Codecs (int8, binary, PQ), HNSW over codes and Matryoshka/PCA funnels: recall@10, QPS, RAM.
    Codecs(quiver_bench::codecs::CodecsOptions),
    /// Embedding throughput on SciFact (long documents and short queries).
    Embed(quiver_bench::embed::EmbedBenchOptions),
    /// Multi-vector retrieval: MUVERA + MaxSim rerank against brute-force MaxSim (SciFact tokens).
    Multivector(quiver_bench::multivector::MultivectorOptions),
    /// Streamed ingest: docs/s per tenth, acknowledgement latency, RSS, seals/merges, recall.
    Ingest(quiver_bench::ingest::IngestOptions),
    /// Zero-shot classification by label similarity: accuracy and macro-F1, plain and refined.
    Classify(quiver_bench::classify::ClassifyOptions),
    /// Backfill of a field added to a populated collection: rows/s, and the latency of paced
    /// searches beside it against a baseline, per duty cycle.
    Backfill(quiver_bench::backfill::BackfillBenchOptions),
}

fn main() {
    restore_sigpipe();
    let cli = Cli::parse();
    let json = cli.json;
    if let Err(e) = run(cli) {
        if json {
            println!("{}", serde_json::json!({"error": format!("{e:#}")}));
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `quiver search ... | head` must end quietly when the reader goes away, as Unix tools do: Rust
/// ignores SIGPIPE (so `println!` would panic on EPIPE); restore the default action, which ends
/// the process silently.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; `signal` with `SIG_DFL`
    // only resets the disposition of SIGPIPE and touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Demo(a) => demo::run(&cli.db, cli.json, a),
        Cmd::Init => ops::init(&cli.db, cli.json),
        Cmd::Collection(c) => ops::collection(&cli.db, cli.json, c),
        Cmd::Ingest(a) => ingest::run(&cli.db, cli.json, a),
        Cmd::Search(a) => ops::search_cmd(&cli.db, cli.json, a),
        Cmd::Query(a) => query_cmd::run(&cli.db, cli.json, a),
        Cmd::Get(a) => ops::get(&cli.db, cli.json, a),
        Cmd::Delete(a) => ops::delete(&cli.db, cli.json, a),
        Cmd::Count(a) => ops::count(&cli.db, cli.json, a),
        Cmd::Classify(a) => classify_cmd::run(&cli.db, cli.json, a),
        Cmd::Adapt(a) => adapt_cmd::run(&cli.db, cli.json, a),
        Cmd::Bench(BenchCmd::Ann(a)) => Ok(quiver_bench::ann::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Codecs(a)) => Ok(quiver_bench::codecs::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Embed(a)) => Ok(quiver_bench::embed::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Multivector(a)) => Ok(quiver_bench::multivector::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Ingest(a)) => Ok(quiver_bench::ingest::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Classify(a)) => Ok(quiver_bench::classify::run(cli.json, a)?),
        Cmd::Bench(BenchCmd::Backfill(a)) => Ok(quiver_bench::backfill::run(cli.json, a)?),
        Cmd::Embed(a) => embed_cmd::run_embed(a),
        Cmd::Models(a) => embed_cmd::run_models(a, cli.json),
        Cmd::Eval(a) => Ok(quiver_bench::eval::run(&cli.db, cli.json, a)?),
        Cmd::Serve(a) => serve::run(&cli.db, cli.json, a),
    }
}
