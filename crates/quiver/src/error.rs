//! [`EngineError`]: what can go wrong between a request and its answer.

use quiver_query::QueryError;
use quiver_storage::StorageError;

/// An error of the engine API. Bad input (a document, a query, a plan) is reported with the part
/// that is wrong; nothing is written when a request fails.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed, or refused the request (unknown collection, invalid document, ...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A query or plan is invalid, or failed to run.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A document of a batch is invalid. `index` is its position in the batch.
    #[error("document {index}{}: {message}", field.as_ref().map(|f| format!(", field {f:?}")).unwrap_or_default())]
    Document {
        /// Position in the batch (0-based).
        index: usize,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A request (query, mode, flags) is invalid; the message names the part.
    #[error("{0}")]
    BadRequest(String),
    /// A model could not be fetched, loaded or run.
    #[error("model {name:?}: {message}")]
    Model {
        /// The model's registry name or directory.
        name: String,
        /// What failed.
        message: String,
    },
    /// The handle was opened read-only.
    #[error("{0} was opened read-only; open it with Database::open to write")]
    ReadOnly(String),
}

impl EngineError {
    /// The position in the batch of the document at fault, if this error is about one.
    pub fn document_index(&self) -> Option<usize> {
        match self {
            EngineError::Document { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// Result of the engine API.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
