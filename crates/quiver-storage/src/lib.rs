//! # quiver-storage: collections on disk
//!
//! *Here is my document: keep it, survive a crash, and give me a consistent view of everything.*
//!
//! - [`Database`]: a directory of collections: one writer process at a time (exclusive lock), and
//!   any number of read-only processes beside it ([`Database::open_read_only`]).
//! - [`Collection`]: upsert / delete / get / count / scroll over a [`Schema`]; recent writes in a
//!   write-ahead log and a mutable segment, older ones in immutable [`Segment`]s listed in a
//!   manifest.
//! - [`Snapshot`]: what a reader sees — segments plus a sequence number, taken with one atomic
//!   load; readers never wait on the writer. Each segment, sealed or mutable, reads as a
//!   [`SegmentReader`]; each dense field of it as a [`VectorIndex`] (vectors, graph, codes,
//!   rotation), each multi field as a [`MultiIndex`].
//! - [`Filter`] and [`PayloadIndex`]: payload conditions and the per-segment indexes that answer them.
//!
//! ```
//! use quiver_storage::{Database, Schema, Document, DocId};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path()).unwrap();
//! let schema = Schema::parse(r#"
//!     [fields.emb]
//!     type = "dense"
//!     dim = 2
//!     metric = "l2"
//!     [fields.year]
//!     type = "integer"
//! "#).unwrap();
//! let c = db.create_collection("docs", &schema).unwrap();
//! let mut d = Document { id: Some(DocId::Int(1)), ..Default::default() };
//! d.vectors.insert("emb".into(), vec![0.5, 1.0]);
//! d.payload.insert("year".into(), 2024.into());
//! c.upsert(vec![d]).unwrap();
//! assert_eq!(c.count(None), 1);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codes;
mod collection;
mod db;
mod deletes;
mod dense_index;
mod doc;
mod files;
mod filter;
mod legacy;
mod maintenance;
mod manifest;
mod multi;
mod multi_store;
mod mutable;
mod mutable_read;
mod payload_index;
mod reader;
mod recovery;
mod schema;
mod segment;
mod segment_write;
mod snapshot;
mod text;
pub mod tiers;
mod wal;

#[doc(hidden)]
pub use collection::emit_test_event as test_event;
pub use collection::{
    AlterReport, BackfillInfo, BackfillTask, Collection, CollectionInfo, FieldColumn, WriteReport,
};
pub use db::Database;
pub use dense_index::DenseIndex;
pub use doc::{parse_datetime, DocId, Document, StoredDoc, MAX_ID_BYTES};
pub use filter::{Filter, Range};
pub use maintenance::MaintenanceRecord;
pub use multi::{
    MultiColumn, MultiField, MultiInfo, MultiSpec, MuveraSpec, PruneSpec, MAX_MULTI_VECTORS,
};
pub use mutable::CHUNK_ROWS;
pub use payload_index::PayloadIndex;
pub use reader::{
    prefix_query, prefix_score, Handle, Knn, MultiIndex, Offset, SegmentReader, VectorIndex,
};
pub use schema::{DenseField, Embedding, FieldSpec, IndexSpec, MetricName, PayloadKind, Schema};
pub use segment::{NoProgress, Progress, Segment, LIVE};
pub use snapshot::{Loc, Snapshot};
pub use text::{TextField, TextFieldStats};
pub use tiers::{CodecConfig, CodecKind, DenseTierInfo, Rotation, VectorTier};

#[cfg(not(target_endian = "little"))]
compile_error!(
    "quiver-storage maps little-endian f32 files directly and needs a little-endian target"
);

/// Errors of the storage layer. Every error about a file names the file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An OS-level I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A file failed its integrity checks; it is never served.
    #[error("corrupt file {file}: {msg}")]
    Corrupt {
        /// File.
        file: String,
        /// What failed.
        msg: String,
    },
    /// The transactional store failed.
    #[error("write-ahead store: {0}")]
    Redb(String),
    /// A background seal or merge failed (the documents it covered are safe in the log).
    #[error("{0}")]
    Maintenance(String),
    /// Another process (or handle) holds the database open for writing.
    #[error("{path} is open for writing by another process (only one writer at a time)")]
    Locked {
        /// The database or file.
        path: String,
    },
    /// The database or collection was opened read-only.
    #[error("{path} is open read-only: writes need a writable open")]
    ReadOnly {
        /// The database or collection.
        path: String,
    },
    /// A schema is invalid.
    #[error("schema: {0}")]
    Schema(String),
    /// A document does not fit the schema.
    #[error("document {id}, field {field:?}: {msg}")]
    InvalidDocument {
        /// Its id.
        id: String,
        /// The field at fault.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The same id twice in one batch.
    #[error("duplicate id {id} in one batch (first at position {first})")]
    DuplicateId {
        /// The id.
        id: String,
        /// Position of its first occurrence.
        first: usize,
    },
    /// An error about the `index`-th document of a batch; nothing of the batch was written.
    #[error("batch position {index}: {source}")]
    InBatch {
        /// Position in the batch.
        index: usize,
        /// The error.
        source: Box<StorageError>,
    },
    /// A filter is malformed.
    #[error("filter: {0}")]
    InvalidFilter(String),
    /// A collection name is not allowed.
    #[error("invalid collection name {0:?}: use letters, digits, '_', '-', '.' (not leading)")]
    InvalidName(String),
    /// Collection exists already.
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    /// No such collection.
    #[error("no collection named {0:?}")]
    CollectionNotFound(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}
