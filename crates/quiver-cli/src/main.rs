//! `quiver`: the command-line face of the engine.
//!
//! Flags are parsed in two stages (ripgrep style): clap gives the raw arguments, each command turns
//! them into typed requests (schemas, filters, documents) and reports errors that name the input.

mod bench_ann;
mod bench_codecs;
mod bench_multi;
mod demo;
mod embed_cmd;
mod eval_cache;
mod eval_cmd;
mod ingest;
mod multi_cmd;
mod ops;
mod progress;
mod query_cmd;
mod search_text;
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
    /// Embed texts (arguments, --input file, or stdin lines) and print JSON lines.
    Embed(embed_cmd::EmbedArgs),
    /// List, pull and verify embedding models.
    Models(embed_cmd::ModelsArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Evaluate retrieval quality and cost on a BEIR-layout dataset (nDCG, recall, MAP, MRR, P).
    Eval(eval_cmd::EvalArgs),
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// HNSW recall/QPS sweep on GloVe-6B-50d.
    Ann(bench_ann::AnnArgs),
    /// Codecs (int8, binary, PQ), HNSW over codes and Matryoshka/PCA funnels: recall@10, QPS, RAM.
    Codecs(bench_codecs::CodecsArgs),
    /// Embedding throughput on SciFact (long documents and short queries).
    Embed(embed_cmd::BenchEmbedArgs),
    /// Multi-vector retrieval: MUVERA + MaxSim rerank against brute-force MaxSim (SciFact tokens).
    Multivector(bench_multi::MultiBenchArgs),
}

fn main() {
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
        Cmd::Bench(BenchCmd::Ann(a)) => bench_ann::run(cli.json, a),
        Cmd::Bench(BenchCmd::Codecs(a)) => bench_codecs::run(cli.json, a),
        Cmd::Bench(BenchCmd::Embed(a)) => embed_cmd::run_bench_embed(a, cli.json),
        Cmd::Bench(BenchCmd::Multivector(a)) => bench_multi::run(a, cli.json),
        Cmd::Embed(a) => embed_cmd::run_embed(a),
        Cmd::Models(a) => embed_cmd::run_models(a, cli.json),
        Cmd::Eval(a) => eval_cmd::run(&cli.db, cli.json, a),
    }
}
