//! The [`Embedder`] trait, its options and outputs, and [`load_model`].

use std::path::{Path, PathBuf};

use crate::config::{Family, ModelLayout};
use crate::error::{EmbedError, Result};
use crate::pooling::Pooling;
use crate::tokenize::TokenizedText;

/// Static description of a loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// Display name (registry name, or the directory name).
    pub name: String,
    /// Model family.
    pub family: Family,
    /// Width of sentence and token vectors.
    pub dim: usize,
    /// Longest input in tokens (special tokens included); longer inputs are truncated.
    pub max_seq_length: usize,
    /// Encoder layers (0 for static models); valid `layers` options are `1..=num_layers`.
    pub num_layers: usize,
    /// Pooling used for sentence vectors.
    pub pooling: Pooling,
    /// Whether sentence vectors are L2-normalised.
    pub normalize: bool,
    /// Directory the model was loaded from.
    pub dir: PathBuf,
    /// Precision of the encoder's linear layers.
    pub precision: Precision,
}

/// Precision of a transformer's linear layers (the matrix multiplies that take most of the
/// time). Reduced precision is only ever chosen explicitly; the default is exact f32.
///
/// - `f32`: the checkpoint's weights as they are (parity with sentence-transformers).
/// - `bf16`: weights and layer inputs rounded to bf16, products summed in f32 (AVX-512 BF16).
/// - `int8`: dynamic quantisation, as onnxruntime's quantised BERT: weights int8 per output
///   column, each layer input quantised per row on every call, integer dot products (VNNI).
///
/// Attention, LayerNorm, GELU and pooling stay f32 at every precision. On CPUs without the
/// instructions a portable loop computes the same numbers, slower.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Exact f32 (the default).
    #[default]
    F32,
    /// bf16 inputs and weights, f32 sums.
    Bf16,
    /// int8 weights, per-row int8 inputs, i32 sums.
    Int8,
}

impl Precision {
    /// Every precision, exact first.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// A model reference split into the model and the precision it names, if any:
    /// `all-MiniLM-L6-v2:int8` is `(all-MiniLM-L6-v2, Some(Int8))`, `all-MiniLM-L6-v2` is
    /// `(all-MiniLM-L6-v2, None)`. This is how a schema, a request or a command line asks for a
    /// reduced precision (`"model": "all-MiniLM-L6-v2:int8"`).
    ///
    /// A reference that is itself a model directory (its `config.json` exists) is taken whole,
    /// whatever it ends with. A suffix that spells a precision in another case (`:INT8`) is an
    /// error rather than part of a model name.
    pub fn split_reference(reference: &str) -> Result<(&str, Option<Precision>)> {
        if Path::new(reference).join("config.json").exists() {
            return Ok((reference, None));
        }
        let Some((model, suffix)) = reference.rsplit_once(':') else {
            return Ok((reference, None));
        };
        if model.is_empty() {
            return Ok((reference, None));
        }
        if let Some(p) = Precision::ALL.into_iter().find(|p| p.as_str() == suffix) {
            return Ok((model, Some(p)));
        }
        if Precision::ALL
            .iter()
            .any(|p| p.as_str().eq_ignore_ascii_case(suffix))
        {
            return Err(EmbedError::InvalidOption(format!(
                "model reference {reference}: precision '{suffix}' is written f32, bf16 or int8"
            )));
        }
        Ok((reference, None))
    }

    /// The model and precision of `reference` with an optional precision asked for apart from
    /// it (a `--precision` flag): the two must agree when both are given; neither is f32.
    pub fn resolve(reference: &str, asked: Option<Precision>) -> Result<(&str, Precision)> {
        let (model, named) = Precision::split_reference(reference)?;
        match (named, asked) {
            (Some(n), Some(a)) if n != a => Err(EmbedError::InvalidOption(format!(
                "precision {a} contradicts the model reference {reference}"
            ))),
            (n, a) => Ok((model, n.or(a).unwrap_or_default())),
        }
    }

    /// The canonical reference `reference` names with `asked` ([`Precision::resolve`], then
    /// [`Precision::reference`]): `m` and `m:f32` are both `m`.
    pub fn canonical(reference: &str, asked: Option<Precision>) -> Result<String> {
        let (model, p) = Precision::resolve(reference, asked)?;
        Ok(p.reference(model))
    }

    /// The canonical reference of `model` at this precision: the model alone at f32 (so
    /// `m` and `m:f32` name one model), `model:precision` otherwise.
    pub fn reference(self, model: &str) -> String {
        match self {
            Precision::F32 => model.to_string(),
            p => format!("{model}:{p}"),
        }
    }

    /// The name used in schemas and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = EmbedError;

    fn from_str(s: &str) -> Result<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                EmbedError::InvalidOption(format!("precision '{s}': expected f32, bf16 or int8"))
            })
    }
}

/// Options fixed when a model is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// CPU threads for inference and tokenization (default: all cores). Work runs on a dedicated
    /// rayon pool of this size, which also bounds candle's matrix-multiply threads.
    pub threads: Option<usize>,
    /// Name reported in [`ModelInfo::name`] (default: the directory name).
    pub name: Option<String>,
    /// Lower the truncation length below the model's `max_seq_length`.
    pub max_seq_length: Option<usize>,
    /// Precision of a transformer's linear layers (default f32). Static models are lookups
    /// and only load at f32.
    pub precision: Precision,
}

/// Per-call options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Matryoshka: keep the first `dims` components and renormalise (when the model normalises).
    /// Applies to token vectors too (truncated, not normalised).
    pub dims: Option<usize>,
    /// Early exit: run only the first `layers` encoder layers (transformer models only).
    pub layers: Option<usize>,
    /// Texts per forward pass (after sorting by length). Default 32.
    pub batch_size: usize,
    /// Embed empty or whitespace-only texts instead of failing with
    /// [`EmbedError::EmptyInput`]. They then get what the reference library gives them:
    /// `[CLS] [SEP]` for BERT models, the zero vector for static models.
    pub allow_empty: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            dims: None,
            layers: None,
            batch_size: 32,
            allow_empty: false,
        }
    }
}

/// Sentence vectors, one row per input, stored row-major in one buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Build from a row-major buffer (`data.len()` must be a multiple of `dim`).
    pub fn from_flat(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(EmbedError::InvalidOption(format!(
                "buffer of {} floats is not a whole number of {dim}-dim rows",
                data.len()
            )));
        }
        Ok(Embeddings { dim, data })
    }

    /// Width of each row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i` (panics if out of range, like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterate over rows.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// The row-major buffer.
    pub fn as_flat(&self) -> &[f32] {
        &self.data
    }

    /// One `Vec` per row.
    pub fn into_vecs(self) -> Vec<Vec<f32>> {
        self.rows().map(<[f32]>::to_vec).collect()
    }
}

/// Token vectors of one text: the encoder's last (or early-exit) hidden state per token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenEmbeddings {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `true` for special tokens (`[CLS]`, `[SEP]`); filter them out for ColBERT-style use.
    pub special: Vec<bool>,
    /// Width of each vector.
    pub dim: usize,
    /// Row-major `ids.len() x dim` (not normalised).
    pub data: Vec<f32>,
}

impl TokenEmbeddings {
    /// Vector of token `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// A text embedding model. Object-safe: hold it as `Box<dyn Embedder>` / `Arc<dyn Embedder>`.
///
/// All methods take a batch; order of outputs equals order of inputs.
pub trait Embedder: Send + Sync {
    /// What the model is.
    fn info(&self) -> &ModelInfo;

    /// Token ids the model sees for each text (after truncation).
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>>;

    /// Sentence vectors (pooled, normalised per the model's config, optionally truncated).
    fn embed(&self, texts: &[&str], options: &EmbedOptions) -> Result<Embeddings>;

    /// Per-token vectors, special tokens flagged.
    fn embed_tokens(&self, texts: &[&str], options: &EmbedOptions) -> Result<Vec<TokenEmbeddings>>;

    /// Sentence vectors *and* token vectors of the same texts. Transformer models compute both
    /// from one forward pass (a schema with a dense and a multi field on one model embeds each
    /// text once); the default runs [`Embedder::embed`] and [`Embedder::embed_tokens`].
    fn embed_with_tokens(
        &self,
        texts: &[&str],
        options: &EmbedOptions,
    ) -> Result<(Embeddings, Vec<TokenEmbeddings>)> {
        Ok((
            self.embed(texts, options)?,
            self.embed_tokens(texts, options)?,
        ))
    }

    /// Work done so far by this model instance (texts encoded, forward passes).
    fn stats(&self) -> EmbedStats {
        EmbedStats::default()
    }
}

/// Counters of the work an [`Embedder`] has done since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EmbedStats {
    /// Texts encoded: one per text per encoder run (a text embedded twice counts twice).
    pub texts: u64,
    /// Encoder forward passes (batches).
    pub batches: u64,
    /// Wall-clock seconds spent in embedding calls (tokenising, encoding and pooling), summed
    /// over calls: two threads embedding for one second each count two.
    pub seconds: f64,
}

/// Thread-safe counters behind [`Embedder::stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCounter {
    texts: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

impl StatsCounter {
    pub(crate) fn add(&self, texts: usize, batches: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.texts.fetch_add(texts as u64, Relaxed);
        self.batches.fetch_add(batches as u64, Relaxed);
    }

    /// Adds the time since `started` to the embedding time.
    pub(crate) fn time(&self, started: std::time::Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> EmbedStats {
        use std::sync::atomic::Ordering::Relaxed;
        EmbedStats {
            texts: self.texts.load(Relaxed),
            batches: self.batches.load(Relaxed),
            seconds: self.nanos.load(Relaxed) as f64 * 1e-9,
        }
    }
}

impl std::fmt::Debug for dyn Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", self.info())
            .finish()
    }
}

/// Load the model in `dir`, choosing the family from its config files.
pub fn load_model(dir: &Path, options: &LoadOptions) -> Result<Box<dyn Embedder>> {
    let layout = ModelLayout::read(dir)?;
    match layout.family {
        Family::Bert => Ok(Box::new(crate::transformer::TransformerEmbedder::load(
            &layout, options,
        )?)),
        Family::Static => Ok(Box::new(crate::static_model::StaticEmbedder::load(
            &layout, options,
        )?)),
    }
}

/// Default display name of a model directory.
pub(crate) fn default_name(dir: &Path, options: &LoadOptions) -> String {
    options.name.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    })
}

/// A rayon pool of the requested size.
pub(crate) fn make_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("quiver-embed-{i}"));
    if let Some(t) = threads {
        if t == 0 {
            return Err(EmbedError::InvalidOption(
                "threads must be at least 1".into(),
            ));
        }
        b = b.num_threads(t);
    }
    b.build()
        .map_err(|e| EmbedError::InvalidOption(format!("cannot start thread pool: {e}")))
}

/// Check inputs and options shared by all families.
pub(crate) fn validate(info: &ModelInfo, texts: &[&str], options: &EmbedOptions) -> Result<()> {
    if options.batch_size == 0 {
        return Err(EmbedError::InvalidOption(
            "batch_size must be at least 1".into(),
        ));
    }
    if let Some(d) = options.dims {
        if d == 0 || d > info.dim {
            return Err(EmbedError::InvalidOption(format!(
                "dims must be in 1..={} for {}, got {d}",
                info.dim, info.name
            )));
        }
    }
    if let Some(l) = options.layers {
        if info.num_layers == 0 {
            return Err(EmbedError::InvalidOption(format!(
                "{} is a static model and has no layers to exit early from",
                info.name
            )));
        }
        if l == 0 || l > info.num_layers {
            return Err(EmbedError::InvalidOption(format!(
                "layers must be in 1..={} for {}, got {l}",
                info.num_layers, info.name
            )));
        }
    }
    if !options.allow_empty {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbedError::EmptyInput { index });
        }
    }
    Ok(())
}
