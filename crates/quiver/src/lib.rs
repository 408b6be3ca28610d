//! # Quiver: a retrieval engine for modern embeddings
//!
//! The facade: everything a library user needs, re-exported from the layered crates.
//!
//! - [`Database`] (a directory) holds [`Collection`]s, each with a [`Schema`].
//! - [`Collection::upsert`], [`Collection::delete`], [`Collection::get`], [`Collection::count`],
//!   [`Collection::scroll`] manage documents; [`search`] answers k-NN queries with filters on a
//!   [`Collection::snapshot`].
//!
//! ```
//! use quiver::{Database, Schema, Document, DocId, SearchRequest, search};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path()).unwrap();
//! let schema = Schema::parse(r#"{"fields": {"emb": {"type": "dense", "dim": 3, "metric": "cosine"}}}"#).unwrap();
//! let c = db.create_collection("notes", &schema).unwrap();
//! let docs = (0..10u64).map(|i| {
//!     let mut d = Document { id: Some(DocId::Int(i)), ..Default::default() };
//!     d.vectors.insert("emb".into(), vec![1.0, i as f32, 0.5]);
//!     d
//! }).collect();
//! c.upsert(docs).unwrap();
//! let res = search(&c.snapshot(), &SearchRequest::new(vec![1.0, 9.0, 0.5], 3)).unwrap();
//! assert_eq!(res.hits[0].id, DocId::Int(9));
//! ```

/// Oracles and test data generators are in `quiver-eval`; index internals here.
pub use quiver_index as index;
pub use quiver_index::{flat, AllRows, Bitset, Hnsw, HnswParams, Neighbor, RowFilter, Vectors};
pub use quiver_index::{MultiVectors, MultiVectorsBuf};
/// Distance kernels.
pub use quiver_linalg as linalg;
pub use quiver_linalg::Metric;
/// Vector codecs (int8, binary, PQ) and Matryoshka prefixes.
pub use quiver_quant as quant;
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
pub use quiver_storage::{
    parse_datetime, Collection, CollectionInfo, Database, DenseField, DocId, Document, Embedding,
    FieldSpec, Filter, IndexSpec, NoProgress, PayloadKind, Progress, Schema, Snapshot,
    StorageError, StoredDoc, WriteReport,
};
pub use quiver_storage::{MultiField, MultiInfo, MultiSpec, MuveraSpec, PruneSpec};
/// Analyzers and BM25 internals.
pub use quiver_storage::{TextField, TextFieldStats};
pub use quiver_text as text;

/// Crate versions, for `--version` output and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
