//! The pipeline shared by transformer families: tokenize, sort by length, pack each batch's
//! tokens (no padding), encode, pool, normalise, truncate. A new family implements [`Encoder`] in one
//! file and adds one arm to `load`.

use candle_core::Device;

use crate::batching::length_buckets;
use crate::bert::{BertConfig, BertEncoder};
use crate::config::{require, Family, ModelLayout};
use crate::embedder::{
    default_name, make_pool, validate, EmbedOptions, EmbedStats, Embedder, Embeddings, LoadOptions,
    ModelInfo, StatsCounter, TokenEmbeddings,
};
use crate::error::{EmbedError, Result};
use crate::lowp::Activations;
use crate::pooling::{normalize, truncate_dims, Pooling};
use crate::tokenize::{TextTokenizer, TokenizedText};

/// A packed batch: the real tokens of every sequence back to back, no padding.
#[derive(Debug, Clone)]
pub(crate) struct PackedBatch {
    /// Token ids of all sequences, concatenated (`Σ lengths` of them).
    pub ids: Vec<u32>,
    /// Token type ids, aligned with `ids`.
    pub type_ids: Vec<u32>,
    /// Token count of each sequence, in order.
    pub lengths: Vec<usize>,
}

impl PackedBatch {
    fn new(items: &[&TokenizedText]) -> Self {
        let total = items.iter().map(|t| t.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut type_ids = Vec::with_capacity(total);
        let mut lengths = Vec::with_capacity(items.len());
        for t in items {
            ids.extend_from_slice(&t.ids);
            type_ids.extend_from_slice(&t.type_ids);
            lengths.push(t.len());
        }
        PackedBatch {
            ids,
            type_ids,
            lengths,
        }
    }

    /// Tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }
}

/// Buffers a forward pass writes into, kept across the batches of one call so that each batch
/// reuses the memory of the one before (batches come longest first, so they rarely grow).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Hidden states `[T, h]`: the input of a layer, then its output.
    pub x: Vec<f32>,
    /// `[T, h]`: attention's head-major scratch, then the attention block's output.
    pub attn: Vec<f32>,
    /// `[T, h]`: attention context, then the feed-forward output.
    pub ctx: Vec<f32>,
    /// `[T, max(3h, intermediate)]`: the fused QKV projection, then the feed-forward middle.
    pub wide: Vec<f32>,
    /// A reduced-precision layer's converted input.
    pub act: Activations,
}

/// The first `n` values of `v`, grown (never shrunk) to hold them.
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Receives `(input index, its tokens, its real-token hidden states)` from the pipeline.
type Sink<'a> = dyn FnMut(usize, &TokenizedText, &[f32]) -> Result<()> + Send + 'a;

/// A transformer body: token ids in, hidden states out.
pub(crate) trait Encoder: Send + Sync {
    /// Width of hidden states.
    fn hidden_size(&self) -> usize;
    /// Number of layers.
    fn num_layers(&self) -> usize;
    /// Longest sequence the position embeddings allow.
    fn max_positions(&self) -> usize;
    /// Hidden states after the first `layers` layers, row-major `[tokens, hidden]` in the
    /// batch's packed order, written into (and borrowed from) `scratch`.
    fn forward<'s>(
        &self,
        batch: &PackedBatch,
        layers: usize,
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]>;
}

/// A transformer model with its tokenizer and pooling.
pub(crate) struct TransformerEmbedder {
    info: ModelInfo,
    tokenizer: TextTokenizer,
    encoder: Box<dyn Encoder>,
    pool: rayon::ThreadPool,
    stats: StatsCounter,
}

impl TransformerEmbedder {
    pub(crate) fn load(layout: &ModelLayout, options: &LoadOptions) -> Result<Self> {
        let dir = &layout.dir;
        let config_path = dir.join("config.json");
        let (encoder, vocab): (Box<dyn Encoder>, usize) = match layout.family {
            Family::Bert => {
                let cfg: BertConfig =
                    serde_json::from_value(layout.config.clone()).map_err(|e| {
                        EmbedError::Config {
                            path: config_path.clone(),
                            message: e.to_string(),
                        }
                    })?;
                let weights = require(dir.join("model.safetensors"))?;
                let tensors =
                    candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
                        EmbedError::Config {
                            path: weights.clone(),
                            message: format!("cannot read safetensors: {e}"),
                        }
                    })?;
                (
                    Box::new(BertEncoder::load(&cfg, tensors, options.precision)?),
                    cfg.vocab_size,
                )
            }
            Family::Static => {
                return Err(EmbedError::UnsupportedFamily(
                    "static (not a transformer)".into(),
                ))
            }
        };
        let mut max_len = layout
            .max_seq_length
            .unwrap_or(encoder.max_positions())
            .min(encoder.max_positions());
        if let Some(m) = options.max_seq_length {
            max_len = max_len.min(m.max(2));
        }
        let tokenizer =
            TextTokenizer::from_file(&require(dir.join("tokenizer.json"))?, Some(max_len), true)?;
        if tokenizer.vocab_size() > vocab {
            return Err(EmbedError::Config {
                path: dir.join("tokenizer.json"),
                message: format!(
                    "tokenizer has {} tokens but the model only {vocab}",
                    tokenizer.vocab_size()
                ),
            });
        }
        let info = ModelInfo {
            name: default_name(dir, options),
            family: layout.family,
            dim: encoder.hidden_size(),
            max_seq_length: max_len,
            num_layers: encoder.num_layers(),
            pooling: layout.pooling,
            normalize: layout.normalize,
            dir: dir.clone(),
            precision: options.precision,
        };
        Ok(TransformerEmbedder {
            info,
            tokenizer,
            encoder,
            pool: make_pool(options.threads)?,
            stats: StatsCounter::default(),
        })
    }

    /// Run the encoder over `texts` in length-sorted packed batches and hand each text's
    /// hidden states (`len x hidden`) to `sink` with its input index.
    fn run(&self, texts: &[&str], options: &EmbedOptions, sink: &mut Sink<'_>) -> Result<()> {
        validate(&self.info, texts, options)?;
        let layers = options.layers.unwrap_or(self.info.num_layers);
        let hidden = self.info.dim;
        let started = std::time::Instant::now();
        let done = self.pool.install(|| {
            let tokens = self.tokenizer.encode_batch(texts)?;
            let lengths: Vec<usize> = tokens.iter().map(TokenizedText::len).collect();
            let mut scratch = Scratch::default();
            for bucket in length_buckets(&lengths, options.batch_size) {
                let items: Vec<&TokenizedText> = bucket.iter().map(|i| &tokens[*i]).collect();
                let batch = PackedBatch::new(&items);
                let out = self.encoder.forward(&batch, layers, &mut scratch)?;
                self.stats.add(items.len(), 1);
                let mut start = 0;
                for (idx, &n) in bucket.iter().zip(&batch.lengths) {
                    sink(
                        *idx,
                        &tokens[*idx],
                        &out[start * hidden..(start + n) * hidden],
                    )?;
                    start += n;
                }
            }
            Ok(())
        });
        self.stats.time(started);
        done
    }
}

impl Embedder for TransformerEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        self.pool.install(|| self.tokenizer.encode_batch(texts))
    }

    fn embed(&self, texts: &[&str], options: &EmbedOptions) -> Result<Embeddings> {
        let dim = options.dims.unwrap_or(self.info.dim);
        let mut data = vec![0f32; texts.len() * dim];
        self.run(texts, options, &mut |idx, tok, hidden| {
            let v = self.sentence_vector(tok, hidden, dim);
            data[idx * dim..(idx + 1) * dim].copy_from_slice(&v[..dim]);
            Ok(())
        })?;
        Embeddings::from_flat(dim, data)
    }

    fn embed_tokens(&self, texts: &[&str], options: &EmbedOptions) -> Result<Vec<TokenEmbeddings>> {
        let dim = options.dims.unwrap_or(self.info.dim);
        let mut out: Vec<Option<TokenEmbeddings>> = vec![None; texts.len()];
        self.run(texts, options, &mut |idx, tok, hidden| {
            out[idx] = Some(self.token_vectors(tok, hidden, dim));
            Ok(())
        })?;
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn embed_with_tokens(
        &self,
        texts: &[&str],
        options: &EmbedOptions,
    ) -> Result<(Embeddings, Vec<TokenEmbeddings>)> {
        let dim = options.dims.unwrap_or(self.info.dim);
        let mut data = vec![0f32; texts.len() * dim];
        let mut out: Vec<Option<TokenEmbeddings>> = vec![None; texts.len()];
        self.run(texts, options, &mut |idx, tok, hidden| {
            let v = self.sentence_vector(tok, hidden, dim);
            data[idx * dim..(idx + 1) * dim].copy_from_slice(&v[..dim]);
            out[idx] = Some(self.token_vectors(tok, hidden, dim));
            Ok(())
        })?;
        Ok((
            Embeddings::from_flat(dim, data)?,
            out.into_iter().map(Option::unwrap_or_default).collect(),
        ))
    }

    fn stats(&self) -> EmbedStats {
        self.stats.get()
    }
}

impl TransformerEmbedder {
    /// Pooled, normalised (per the model's config) and Matryoshka-truncated sentence vector of
    /// one text's real-token hidden states.
    fn sentence_vector(&self, tok: &TokenizedText, hidden: &[f32], dim: usize) -> Vec<f32> {
        let (pooling, norm): (Pooling, bool) = (self.info.pooling, self.info.normalize);
        let mut v = pooling.pool(hidden, tok.len(), self.info.dim);
        if norm {
            normalize(&mut v);
        }
        truncate_dims(&mut v, dim, norm);
        v
    }

    /// The token vectors of one text, each cut to its first `dim` components.
    fn token_vectors(&self, tok: &TokenizedText, hidden: &[f32], dim: usize) -> TokenEmbeddings {
        let data = hidden
            .chunks_exact(self.info.dim)
            .flat_map(|r| r[..dim].iter().copied())
            .collect();
        TokenEmbeddings {
            ids: tok.ids.clone(),
            special: tok.special.clone(),
            dim,
            data,
        }
    }
}
