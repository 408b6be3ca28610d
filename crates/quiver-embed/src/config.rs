//! Reading a model directory in the sentence-transformers layout.
//!
//! ```text
//! model_dir/
//!   config.json                  architecture (model_type, sizes) — or model2vec's config
//!   tokenizer.json               Hugging Face tokenizers definition
//!   model.safetensors            weights
//!   modules.json                 pipeline: Transformer -> Pooling -> Normalize (optional file)
//!   sentence_bert_config.json    max_seq_length (optional file)
//!   1_Pooling/config.json        pooling mode (path taken from modules.json)
//! ```
//!
//! Everything that decides *what* a sentence vector is — pooling, normalisation, truncation —
//! is read here, from the model's own files, so callers never re-implement it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{EmbedError, Result};
use crate::pooling::Pooling;

/// Model families the crate can run. Each family is one module (`bert.rs`, `static_model.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT-style transformer encoders (`model_type: "bert"`).
    Bert,
    /// Static token-embedding models (model2vec, e.g. potion-base-8M).
    Static,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Bert => "bert",
            Family::Static => "static",
        })
    }
}

/// What the model directory says about how to embed, independent of the family's weights.
#[derive(Debug, Clone)]
pub struct ModelLayout {
    /// The directory.
    pub dir: PathBuf,
    /// Detected family.
    pub family: Family,
    /// Pooling from `1_Pooling/config.json` (mean when the file is absent).
    pub pooling: Pooling,
    /// Whether a `Normalize` module (or model2vec's `normalize`) is present.
    pub normalize: bool,
    /// `max_seq_length` from `sentence_bert_config.json`, if present.
    pub max_seq_length: Option<usize>,
    /// The raw `config.json`.
    pub config: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

/// Read a JSON file, mapping a missing file to [`EmbedError::MissingFile`].
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| EmbedError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read a file, mapping a missing file to [`EmbedError::MissingFile`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(EmbedError::MissingFile {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(EmbedError::io(path, e)),
    }
}

/// Require that `path` exists.
pub(crate) fn require(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmbedError::MissingFile { path })
    }
}

impl ModelLayout {
    /// Inspect `dir` and decide family, pooling, normalisation and truncation.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(EmbedError::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let config_path = dir.join("config.json");
        let config: serde_json::Value = read_json(&config_path)?;
        let modules: Vec<ModuleEntry> = {
            let p = dir.join("modules.json");
            if p.is_file() {
                read_json(&p)?
            } else {
                Vec::new()
            }
        };
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let is_static = model_type == "model2vec"
            || modules.iter().any(|m| m.kind.ends_with("StaticEmbedding"))
            || config
                .get("architectures")
                .and_then(|a| a.as_array())
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("StaticModel")));
        let family = if is_static {
            Family::Static
        } else {
            match model_type {
                "bert" => Family::Bert,
                "" => {
                    return Err(EmbedError::Config {
                        path: config_path,
                        message: "no model_type".into(),
                    })
                }
                other => return Err(EmbedError::UnsupportedFamily(other.to_string())),
            }
        };

        let mut normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        if family == Family::Static {
            normalize |= config
                .get("normalize")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
        }

        let pooling = match modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
            Some(m) => Pooling::from_config_file(&dir.join(&m.path).join("config.json"))?,
            None if family == Family::Static => Pooling::Mean,
            None => {
                let p = dir.join("1_Pooling").join("config.json");
                if p.is_file() {
                    Pooling::from_config_file(&p)?
                } else {
                    Pooling::Mean
                }
            }
        };

        let max_seq_length = {
            let p = dir.join("sentence_bert_config.json");
            if p.is_file() {
                read_json::<SbertConfig>(&p)?.max_seq_length
            } else {
                None
            }
        };

        Ok(ModelLayout {
            dir: dir.to_path_buf(),
            family,
            pooling,
            normalize,
            max_seq_length,
            config,
        })
    }
}
