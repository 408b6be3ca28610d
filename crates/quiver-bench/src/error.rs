//! [`BenchError`]: what can go wrong in a benchmark or an evaluation, one variant per source.

use std::path::PathBuf;

/// An error of the harness. Lower layers' errors are wrapped as they are; [`BenchError::Context`]
/// adds what the harness was doing (the chain prints as `context: cause`).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad option or input (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// Inconsistent data or cache files.
    #[error("{0}")]
    Data(String),
    /// A file operation failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        #[source]
        source: std::io::Error,
    },
    /// A file operation failed (the path is in the context).
    #[error(transparent)]
    RawIo(#[from] std::io::Error),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] quiver::EngineError),
    /// The storage layer refused or failed.
    #[error(transparent)]
    Storage(#[from] quiver::StorageError),
    /// A model could not be fetched, loaded or run.
    #[error(transparent)]
    Embed(#[from] quiver_embed::EmbedError),
    /// An index could not be built or read.
    #[error(transparent)]
    Index(#[from] quiver::index::IndexError),
    /// A codec could not be trained or applied.
    #[error(transparent)]
    Quant(#[from] quiver::quant::QuantError),
    /// A linear-algebra routine (PCA) failed.
    #[error(transparent)]
    Linalg(#[from] quiver::linalg::LinalgError),
    /// A BEIR dataset does not load.
    #[error(transparent)]
    Beir(#[from] quiver_eval::beir::BeirError),
    /// A measure does not parse.
    #[error(transparent)]
    Metric(#[from] quiver_eval::metrics::MetricError),
    /// An `.npy` file does not read or write.
    #[error(transparent)]
    Npy(#[from] quiver_eval::npy::NpyError),
    /// JSON does not parse or serialise.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A thread pool could not be built.
    #[error(transparent)]
    Threads(#[from] rayon::ThreadPoolBuildError),
    /// `source`, while doing `context`.
    #[error("{context}")]
    Context {
        /// What the harness was doing.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<BenchError>,
    },
}

/// The harness's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl BenchError {
    /// A file error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

/// `anyhow`-style context on results whose error converts into [`BenchError`].
pub(crate) trait Context<T> {
    /// Adds `context` to an error.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Adds the context `f()` computes to an error.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<BenchError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

/// `Err(BenchError::Invalid(format!(..)))`.
macro_rules! invalid {
    ($($t:tt)*) => {
        Err($crate::error::BenchError::Invalid(format!($($t)*)))
    };
}

/// `BenchError::Data(format!(..))`.
macro_rules! data_err {
    ($($t:tt)*) => {
        $crate::error::BenchError::Data(format!($($t)*))
    };
}

pub(crate) use {data_err, invalid};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_to_the_cause() {
        let r: std::result::Result<(), std::io::Error> = Err(std::io::Error::other("disk on fire"));
        let e = r.context("writing the cache").unwrap_err();
        assert_eq!(e.to_string(), "writing the cache");
        let cause = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(cause.as_deref(), Some("disk on fire"));
    }
}
