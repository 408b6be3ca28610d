//! Engine errors as Python exceptions: `QuiverError` and its subclasses.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;
use quiver::{EngineError, QueryError, StorageError};

create_exception!(
    _quiver,
    QuiverError,
    PyException,
    "Any error of the Quiver engine."
);
create_exception!(
    _quiver,
    InvalidInput,
    QuiverError,
    "A request, document, vector or filter is invalid; the message names the part. Nothing was written."
);
create_exception!(
    _quiver,
    SchemaError,
    InvalidInput,
    "A schema is invalid, or a request names a field the schema does not have."
);
create_exception!(
    _quiver,
    NotFound,
    QuiverError,
    "The collection (or model) does not exist."
);
create_exception!(
    _quiver,
    AlreadyExists,
    QuiverError,
    "A collection of that name exists already."
);
create_exception!(
    _quiver,
    Locked,
    QuiverError,
    "Another process holds the database's writer lock; open it with read_only=True to read beside it."
);
create_exception!(
    _quiver,
    ReadOnly,
    QuiverError,
    "A write through a database opened with read_only=True."
);

/// The exception an engine error is raised as.
pub(crate) fn to_py(e: EngineError) -> PyErr {
    let msg = e.to_string();
    match &e {
        EngineError::Storage(s) => storage(s, msg),
        EngineError::Query(
            QueryError::UnknownField(_)
            | QueryError::UnknownMultiField(_)
            | QueryError::UnknownTextField(_),
        ) => SchemaError::new_err(msg),
        EngineError::Query(_) => InvalidInput::new_err(msg),
        EngineError::Document { .. } | EngineError::BadRequest(_) => InvalidInput::new_err(msg),
        EngineError::ReadOnly(_) => ReadOnly::new_err(msg),
        EngineError::Model { .. } => {
            if msg.contains("unknown model") {
                NotFound::new_err(msg)
            } else {
                QuiverError::new_err(msg)
            }
        }
    }
}

fn storage(s: &StorageError, msg: String) -> PyErr {
    match s {
        StorageError::CollectionNotFound(_) => NotFound::new_err(msg),
        StorageError::CollectionExists(_) => AlreadyExists::new_err(msg),
        StorageError::Schema(_) => SchemaError::new_err(msg),
        StorageError::InvalidDocument { .. }
        | StorageError::DuplicateId { .. }
        | StorageError::InvalidFilter(_)
        | StorageError::InvalidName(_) => InvalidInput::new_err(msg),
        StorageError::InBatch { source, .. } => storage(source, msg),
        StorageError::ReadOnly { .. } => ReadOnly::new_err(msg),
        StorageError::Locked { .. } => Locked::new_err(msg),
        _ => QuiverError::new_err(msg),
    }
}

/// An [`InvalidInput`] with this message.
pub(crate) fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidInput::new_err(msg.into())
}
