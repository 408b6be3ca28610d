//! Static embedding models (model2vec, e.g. `minishlab/potion-base-8M`).
//!
//! A sentence vector is the mean of the rows of one embedding table, one row per token, exactly
//! as `model2vec.StaticModel.encode` computes it:
//!
//! 1. cut the text to `max_length x median_token_length` characters (`max_length` = 512),
//! 2. tokenize without special tokens, drop `[UNK]` ids, keep at most `max_length` ids,
//! 3. average the rows; normalise when `config.json` says `"normalize": true`.
//!
//! A text with no known tokens (or an empty text, when allowed) gets the zero vector, as in
//! model2vec. Files: `config.json`, `tokenizer.json`, `model.safetensors` (tensor `embeddings`,
//! `[vocab, dim]`).

use candle_core::{DType, Device};

use crate::config::{require, ModelLayout};
use crate::embedder::{
    default_name, make_pool, validate, EmbedOptions, EmbedStats, Embedder, Embeddings, LoadOptions,
    ModelInfo, Precision, StatsCounter, TokenEmbeddings,
};
use crate::error::{EmbedError, Result};
use crate::pooling::{normalize, truncate_dims, Pooling};
use crate::tokenize::{TextTokenizer, TokenizedText};
use rayon::prelude::*;

/// model2vec's default `max_length` in tokens.
pub const DEFAULT_MAX_TOKENS: usize = 512;

/// A model2vec static model.
pub struct StaticEmbedder {
    info: ModelInfo,
    tokenizer: TextTokenizer,
    table: Vec<f32>,
    rows: usize,
    max_chars: usize,
    pool: rayon::ThreadPool,
    stats: StatsCounter,
}

impl StaticEmbedder {
    pub(crate) fn load(layout: &ModelLayout, options: &LoadOptions) -> Result<Self> {
        let dir = &layout.dir;
        if options.precision != Precision::F32 {
            return Err(EmbedError::InvalidOption(format!(
                "precision {}: {} is a static model (a table lookup, no matrix multiplies); \
                 it loads at f32 only",
                options.precision,
                default_name(dir, options)
            )));
        }
        let weights = require(dir.join("model.safetensors"))?;
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
            EmbedError::Config {
                path: weights.clone(),
                message: format!("cannot read safetensors: {e}"),
            }
        })?;
        for unsupported in ["weights", "mapping", "mappings"] {
            if tensors.contains_key(unsupported) {
                return Err(EmbedError::BadTensor {
                    name: unsupported.into(),
                    message: "vocabulary-quantized model2vec models are not supported".into(),
                });
            }
        }
        let emb = tensors
            .get("embeddings")
            .ok_or_else(|| EmbedError::BadTensor {
                name: "embeddings".into(),
                message: format!("missing from {}", weights.display()),
            })?;
        let (rows, dim) = emb.dims2().map_err(|_| EmbedError::BadTensor {
            name: "embeddings".into(),
            message: format!(
                "expected a 2-d [vocab, dim] table, got shape {:?}",
                emb.dims()
            ),
        })?;
        if rows == 0 || dim == 0 {
            return Err(EmbedError::BadTensor {
                name: "embeddings".into(),
                message: format!("empty table {rows}x{dim}"),
            });
        }
        let table = emb.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let tokenizer =
            TextTokenizer::from_file(&require(dir.join("tokenizer.json"))?, None, false)?;
        if tokenizer.vocab_size() > rows {
            return Err(EmbedError::BadTensor {
                name: "embeddings".into(),
                message: format!(
                    "{rows} rows but the tokenizer has {} tokens",
                    tokenizer.vocab_size()
                ),
            });
        }
        let max_tokens = options.max_seq_length.unwrap_or(DEFAULT_MAX_TOKENS).max(1);
        let max_chars = max_tokens * median_token_length(&dir.join("tokenizer.json"))?;
        let info = ModelInfo {
            name: default_name(dir, options),
            family: layout.family,
            dim,
            max_seq_length: max_tokens,
            num_layers: 0,
            pooling: Pooling::Mean,
            normalize: layout.normalize,
            dir: dir.clone(),
            precision: Precision::F32,
        };
        Ok(StaticEmbedder {
            info,
            tokenizer,
            table,
            rows,
            max_chars,
            pool: make_pool(options.threads)?,
            stats: StatsCounter::default(),
        })
    }

    /// Token ids that are pooled for each text (steps 1–2 above).
    fn ids(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        let cut: Vec<&str> = texts.iter().map(|t| cut_chars(t, self.max_chars)).collect();
        let mut toks = self.tokenizer.encode_batch(&cut)?;
        let unk = self.tokenizer.unk_id();
        for t in &mut toks {
            let keep: Vec<usize> = (0..t.ids.len())
                .filter(|i| Some(t.ids[*i]) != unk && (t.ids[*i] as usize) < self.rows)
                .collect();
            let keep = &keep[..keep.len().min(self.info.max_seq_length)];
            t.ids = keep.iter().map(|i| t.ids[*i]).collect();
            t.type_ids = keep.iter().map(|i| t.type_ids[*i]).collect();
            t.special = keep.iter().map(|i| t.special[*i]).collect();
        }
        Ok(toks)
    }

    fn row(&self, id: u32) -> &[f32] {
        let d = self.info.dim;
        let i = id as usize;
        &self.table[i * d..(i + 1) * d]
    }
}

/// `text[:n]` in Unicode scalar values (Python string slicing).
fn cut_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((byte, _)) => &text[..byte],
        None => text,
    }
}

/// Median length in characters of the vocabulary's tokens, as model2vec computes it
/// (`int(np.median([len(t) for t in vocab]))`), at least 1.
fn median_token_length(tokenizer_json: &std::path::Path) -> Result<usize> {
    let v: serde_json::Value = crate::config::read_json(tokenizer_json)?;
    let vocab = v
        .pointer("/model/vocab")
        .and_then(|x| x.as_object())
        .ok_or_else(|| EmbedError::Config {
            path: tokenizer_json.to_path_buf(),
            message: "model.vocab is not a token -> id map".into(),
        })?;
    let mut lens: Vec<usize> = vocab.keys().map(|k| k.chars().count()).collect();
    if lens.is_empty() {
        return Ok(1);
    }
    lens.sort_unstable();
    let n = lens.len();
    let median = if n % 2 == 1 {
        lens[n / 2] as f64
    } else {
        (lens[n / 2 - 1] + lens[n / 2]) as f64 / 2.0
    };
    Ok((median as usize).max(1))
}

impl Embedder for StaticEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        self.pool.install(|| self.ids(texts))
    }

    fn embed(&self, texts: &[&str], options: &EmbedOptions) -> Result<Embeddings> {
        validate(&self.info, texts, options)?;
        let dim = options.dims.unwrap_or(self.info.dim);
        let full = self.info.dim;
        let norm = self.info.normalize;
        self.stats.add(texts.len(), 1);
        let started = std::time::Instant::now();
        let done = self.pool.install(|| {
            let toks = self.ids(texts)?;
            let rows: Vec<Vec<f32>> = toks
                .par_iter()
                .map(|t| {
                    let mut v = vec![0f32; full];
                    for id in &t.ids {
                        for (o, x) in v.iter_mut().zip(self.row(*id)) {
                            *o += *x;
                        }
                    }
                    if !t.ids.is_empty() {
                        let n = t.ids.len() as f32;
                        v.iter_mut().for_each(|x| *x /= n);
                    }
                    if norm {
                        normalize(&mut v);
                    }
                    truncate_dims(&mut v, dim, norm);
                    v
                })
                .collect();
            Embeddings::from_flat(dim, rows.concat())
        });
        self.stats.time(started);
        done
    }

    fn stats(&self) -> EmbedStats {
        self.stats.get()
    }

    fn embed_tokens(&self, texts: &[&str], options: &EmbedOptions) -> Result<Vec<TokenEmbeddings>> {
        validate(&self.info, texts, options)?;
        let dim = options.dims.unwrap_or(self.info.dim);
        let started = std::time::Instant::now();
        let toks = self.pool.install(|| self.ids(texts))?;
        self.stats.add(texts.len(), 1);
        let out = toks
            .into_iter()
            .map(|t| {
                let data = t
                    .ids
                    .iter()
                    .flat_map(|id| self.row(*id)[..dim].iter().copied())
                    .collect();
                TokenEmbeddings {
                    ids: t.ids,
                    special: t.special,
                    dim,
                    data,
                }
            })
            .collect();
        self.stats.time(started);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::cut_chars;

    #[test]
    fn cut_counts_characters_not_bytes() {
        assert_eq!(cut_chars("héllo", 2), "hé");
        assert_eq!(cut_chars("ab", 5), "ab");
        assert_eq!(cut_chars("🚀🔥x", 2), "🚀🔥");
    }
}
