//! # Quiver: a retrieval engine for modern embeddings
//!
//! The engine API, the one that the CLI, the HTTP server and the Python package all call:
//!
//! - [`Database`] (a directory) holds [`Collection`]s, each with a [`Schema`].
//! - [`Collection::upsert`] takes plain documents and computes the vectors of every model-backed
//!   field itself (dense and multi; one forward pass per model and text, models shared through a
//!   process-wide [`ModelPool`]); [`Collection::get`], [`Collection::delete`],
//!   [`Collection::count`] and [`Collection::scroll`] manage them.
//! - [`Collection::query`] answers a [`Query`]: text or vectors, a [`Mode`] (dense, bm25,
//!   hybrid, multi, funnel) or a full [`Plan`], a filter, a limit. Every mode compiles into a
//!   plan, so there is one executor and one fusion.
//! - [`document`]: the JSON document format (`{"id", "payload", "vectors", "multi"}`) and the
//!   rule for a document's text.
//!
//! Models are behind the default-on cargo feature `embed`; without it collections take the
//! vectors you supply.
//!
//! ```
//! use quiver::{Database, Document, DocId, Query, Schema};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path()).unwrap();
//! let schema = Schema::parse(r#"{"fields": {"emb": {"type": "dense", "dim": 3, "metric": "cosine"},
//!                                           "body": {"type": "text", "source": ["text"]}}}"#).unwrap();
//! let c = db.create_collection("notes", &schema).unwrap();
//! let docs = (0..10u64).map(|i| {
//!     let mut d = Document { id: Some(DocId::Int(i)), ..Default::default() };
//!     d.vectors.insert("emb".into(), vec![1.0, i as f32, 0.5]);
//!     d.payload.insert("text".into(), format!("note number {i}").into());
//!     d
//! }).collect();
//! c.upsert(docs).unwrap();
//! let res = c.query(&Query::vector(vec![1.0, 9.0, 0.5]).with_limit(3)).unwrap();
//! assert_eq!(res.hits[0].id, DocId::Int(9));
//! let res = c.query(&Query::text("number 4")).unwrap(); // no model: BM25
//! assert_eq!(res.hits[0].id, DocId::Int(4));
//! ```
//!
//! With a model-backed field (`"model": "all-MiniLM-L6-v2", "embed": ["title", "text"]`) the same
//! `upsert` embeds the documents and `Query::text` embeds the query; see `examples/engine.rs`.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod adapt;
pub mod classify;
mod describe;
pub mod document;
#[cfg(feature = "embed")]
pub mod embedding;
mod engine;
pub mod error;
mod evolve;
#[cfg(feature = "embed")]
pub mod models;
pub mod request;

pub use adapt::{AdaptOptions, AdapterInfo};
pub use classify::{ClassifyOptions, ClassifyReport, Label};
pub use engine::{Collection, Database, IdLookup, OpenOptions};
pub use error::{EngineError, Result};
pub use evolve::{BackfillOptions, BackfillReport};
#[cfg(feature = "embed")]
pub use models::{EmbeddedTexts, ModelPool, PoolOptions};
pub use request::{Mode, Query, QueryResult};

/// The storage layer (segments, durability, payload indexes); [`Database`] and [`Collection`]
/// wrap its types of the same names.
pub use quiver_storage as storage;
pub use quiver_storage::{
    parse_datetime, CollectionInfo, DenseField, DocId, Document, Embedding, FieldSpec, Filter,
    IndexSpec, NoProgress, PayloadKind, Progress, Schema, Snapshot, StorageError, StoredDoc,
    WriteReport,
};
pub use quiver_storage::{MultiField, MultiInfo, MultiSpec, MuveraSpec, PruneSpec};
/// Analyzers and BM25 internals.
pub use quiver_storage::{TextField, TextFieldStats};

/// Embedding models (candle): the `Embedder` trait, loading, the model registry and fetcher.
#[cfg(feature = "embed")]
pub use quiver_embed as embed;
/// Oracles and test data generators are in `quiver-eval`; index internals here.
pub use quiver_index as index;
pub use quiver_index::{flat, AllRows, Bitset, Hnsw, HnswParams, Neighbor, RowFilter, Vectors};
pub use quiver_index::{MultiVectors, MultiVectorsBuf};
/// Distance kernels.
pub use quiver_linalg as linalg;
pub use quiver_linalg::Metric;
/// Vector codecs (int8, binary, PQ) and Matryoshka prefixes.
pub use quiver_quant as quant;
/// Plans, the planner and the per-segment search functions the engine runs.
pub use quiver_query as query;
pub use quiver_query::plan::{execute, Plan, PlanResult, QueryEncoder};
/// BM25 search and fusion.
pub use quiver_query::{
    bm25_search, bm25_search_stats, fuse_hits, rrf, score_fusion, Bm25Request, DEFAULT_RRF_K,
};
pub use quiver_query::{maxsim_search, muvera_search, MultiSearchRequest};
pub use quiver_query::{
    prefer_exact, search, Hit, QueryError, SearchRequest, SearchResult, SegmentPlan, Strategy,
};
pub use quiver_text as text;

/// Crate versions, for `--version` output and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(not(feature = "embed"))]
mod embedding_off {
    use crate::error::{EngineError, Result};
    use quiver_storage::{Document, Schema};

    /// Without models, a model-backed field's vectors must be supplied.
    pub(crate) fn check_supplied(schema: &Schema, docs: &[Document]) -> Result<()> {
        for (i, d) in docs.iter().enumerate() {
            for f in schema.dense_fields() {
                if f.embedding.model.is_some() && !d.vectors.contains_key(&f.name) {
                    return Err(off(i, &f.name));
                }
            }
            for f in schema.multi_fields() {
                if f.embedding.model.is_some() && !d.multi.contains_key(&f.name) {
                    return Err(off(i, &f.name));
                }
            }
        }
        Ok(())
    }

    fn off(index: usize, field: &str) -> EngineError {
        EngineError::Document {
            index,
            field: Some(field.to_string()),
            message: "this field is computed by a model, but quiver was built without the `embed` feature: supply its vectors".into(),
        }
    }
}
