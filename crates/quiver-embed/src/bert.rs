//! BERT encoder on packed batches, able to stop after any layer.
//!
//! Loads the tensor names of Hugging Face `BertModel` checkpoints as saved by
//! sentence-transformers (`embeddings.*`, `encoder.layer.N.*`; a `bert.` prefix is also accepted).
//! Config: <https://huggingface.co/docs/transformers/model_doc/bert#transformers.BertConfig>.
//!
//! ```text
//! ids, type ids ─► word + position + type embeddings ─► LayerNorm
//!                 ─► layer 0 ─► layer 1 ─► ... ─► layer L-1      (early exit: stop at any L)
//! layer: x ─► QKV (one fused matmul) ─► softmax(QKᵀ/√d) V per sequence ─► dense ─► +x ─► LN
//!          ─► dense ─► gelu ─► dense ─► +x ─► LN
//! ```
//!
//! Weights are read with candle (safetensors, names and shapes checked); the forward pass runs
//! on plain buffers: matrix multiplies in [`crate::linear`], attention in [`crate::attention`]
//! and the element-wise work in [`crate::kernels`], all writing into a [`Scratch`] reused
//! across batches.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::attention::{self, Heads};
use crate::embedder::Precision;
use crate::error::{EmbedError, Result};
use crate::kernels;
use crate::linear::Linear;
use crate::transformer::{sized, Encoder, PackedBatch, Scratch};

/// The fields of `config.json` this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation (`gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Number of learned positions.
    pub max_position_embeddings: usize,
    /// Number of token types.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pos() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

/// One encoder layer.
struct Layer {
    /// Query, key and value projections stacked: `[3h, h]`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: (Vec<f32>, Vec<f32>),
    inter: Linear,
    out: Linear,
    out_norm: (Vec<f32>, Vec<f32>),
}

/// A BERT encoder with per-layer early exit.
pub struct BertEncoder {
    /// `[vocab, h]`.
    word: Vec<f32>,
    /// `[max_positions, h]`.
    position: Vec<f32>,
    /// `[type_vocab, h]`.
    token_type: Vec<f32>,
    emb_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    max_positions: usize,
    act: Activation,
    eps: f32,
}

/// Fetch a weight, turning a missing tensor or a shape mismatch into [`EmbedError::BadTensor`].
fn checked<T>(vb: &VarBuilder, name: &str, r: candle_core::Result<T>) -> Result<T> {
    r.map_err(|e| EmbedError::BadTensor {
        name: if vb.prefix().is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", vb.prefix())
        },
        message: e.to_string(),
    })
}

fn norm(vb: &VarBuilder, name: &str, size: usize, eps: f64) -> Result<LayerNorm> {
    checked(vb, name, candle_nn::layer_norm(size, eps, vb.pp(name)))
}

/// An embedding table `[n, d]`, flattened.
fn table(vb: &VarBuilder, name: &str, n: usize, d: usize) -> Result<Vec<f32>> {
    let e = checked(vb, name, candle_nn::embedding(n, d, vb.pp(name)))?;
    to_vec(e.embeddings())
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Weight `[o, i]` and bias `[o]` of a linear layer.
fn weight_bias(vb: &VarBuilder, name: &str, i: usize, o: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let l = checked(vb, name, candle_nn::linear(i, o, vb.pp(name)))?;
    let bias = match l.bias() {
        Some(b) => to_vec(b)?,
        None => vec![0.0; o],
    };
    Ok((to_vec(l.weight())?, bias))
}

/// A linear layer `i -> o` at `precision`.
fn linear(vb: &VarBuilder, name: &str, i: usize, o: usize, precision: Precision) -> Result<Linear> {
    let (w, b) = weight_bias(vb, name, i, o)?;
    Linear::new(w, b, i, precision)
}

/// LayerNorm gamma and beta.
fn norm_params(vb: &VarBuilder, name: &str, size: usize, eps: f64) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = norm(vb, name, size, eps)?;
    let beta = match n.bias() {
        Some(b) => to_vec(b)?,
        None => vec![0.0; size],
    };
    Ok((to_vec(n.weight())?, beta))
}

impl BertEncoder {
    /// Build from a config and the tensors of `model.safetensors`, the linear layers kept at
    /// `precision`.
    pub fn load(
        cfg: &BertConfig,
        tensors: HashMap<String, Tensor>,
        precision: Precision,
    ) -> Result<Self> {
        let bad = |m: String| EmbedError::InvalidOption(format!("unsupported BERT config: {m}"));
        if cfg.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type '{}'",
                cfg.position_embedding_type
            )));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            )));
        }
        let act = match cfg.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(bad(format!("hidden_act '{other}'"))),
        };
        let has_prefix = !tensors.contains_key("embeddings.word_embeddings.weight")
            && tensors.contains_key("bert.embeddings.word_embeddings.weight");
        let root = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let root = if has_prefix { root.pp("bert") } else { root };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let e = root.pp("embeddings");
        let word = table(&e, "word_embeddings", cfg.vocab_size, h)?;
        let position = table(&e, "position_embeddings", cfg.max_position_embeddings, h)?;
        let token_type = table(&e, "token_type_embeddings", cfg.type_vocab_size, h)?;
        let emb_norm = norm_params(&e, "LayerNorm", h, eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = root.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let ao = a.pp("output");
            let (qw, qb) = weight_bias(&s, "query", h, h)?;
            let (kw, kb) = weight_bias(&s, "key", h, h)?;
            let (vw, vb) = weight_bias(&s, "value", h, h)?;
            layers.push(Layer {
                qkv: Linear::new([qw, kw, vw].concat(), [qb, kb, vb].concat(), h, precision)?,
                attn_out: linear(&ao, "dense", h, h, precision)?,
                attn_norm: norm_params(&ao, "LayerNorm", h, eps)?,
                inter: linear(
                    &l.pp("intermediate"),
                    "dense",
                    h,
                    cfg.intermediate_size,
                    precision,
                )?,
                out: linear(
                    &l.pp("output"),
                    "dense",
                    cfg.intermediate_size,
                    h,
                    precision,
                )?,
                out_norm: norm_params(&l.pp("output"), "LayerNorm", h, eps)?,
            });
        }
        Ok(BertEncoder {
            word,
            position,
            token_type,
            emb_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            hidden: h,
            max_positions: cfg.max_position_embeddings,
            act,
            eps: eps as f32,
        })
    }
}

impl Layer {
    /// One layer over the packed hidden states in `scratch.x` (`[T, h]`), in place.
    fn forward(&self, enc: &BertEncoder, batch: &PackedBatch, scratch: &mut Scratch) -> Result<()> {
        let t = batch.tokens();
        let h = enc.hidden;
        let Scratch {
            x,
            attn,
            ctx,
            wide,
            act,
        } = &mut *scratch;
        let x = &x[..t * h];
        let qkv = sized(wide, t * self.qkv.outputs());
        self.qkv.apply(x, t, qkv, act)?;
        let shape = Heads {
            heads: enc.heads,
            head_dim: enc.head_dim,
            scale: 1.0 / (enc.head_dim as f32).sqrt(),
        };
        let attn = sized(attn, t * h);
        let ctx = sized(ctx, t * h);
        attention::attention(qkv, &batch.lengths, shape, attn, ctx);
        self.attn_out.apply(ctx, t, attn, act)?;
        kernels::residual_layer_norm(attn, x, &self.attn_norm.0, &self.attn_norm.1, enc.eps);
        let inter = sized(wide, t * self.inter.outputs());
        self.inter.apply(attn, t, inter, act)?;
        match enc.act {
            Activation::GeluErf => kernels::gelu(inter, false),
            Activation::GeluTanh => kernels::gelu(inter, true),
            Activation::Relu => kernels::relu(inter),
        }
        self.out.apply(inter, t, ctx, act)?;
        kernels::residual_layer_norm(ctx, attn, &self.out_norm.0, &self.out_norm.1, enc.eps);
        // The output becomes the next layer's input; the old input's buffer is free again.
        std::mem::swap(&mut scratch.x, &mut scratch.ctx);
        Ok(())
    }
}

impl Encoder for BertEncoder {
    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn max_positions(&self) -> usize {
        self.max_positions
    }

    fn forward<'s>(
        &self,
        batch: &PackedBatch,
        layers: usize,
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]> {
        let (t, h) = (batch.tokens(), self.hidden);
        if batch.lengths.iter().sum::<usize>() != t || batch.type_ids.len() != t {
            return Err(bad_batch("sequence lengths do not add up to the tokens"));
        }
        let x = sized(&mut scratch.x, t * h);
        let positions = batch.lengths.iter().flat_map(|&len| 0..len);
        let tokens = batch.ids.iter().zip(&batch.type_ids).zip(positions);
        for (row, ((&id, &kind), pos)) in x.chunks_exact_mut(h).zip(tokens) {
            let word = lookup(&self.word, id as usize, h, "token id")?;
            let kind = lookup(&self.token_type, kind as usize, h, "token type id")?;
            let pos = lookup(&self.position, pos, h, "position")?;
            for (((v, a), b), c) in row.iter_mut().zip(word).zip(kind).zip(pos) {
                *v = *a + *b + *c;
            }
        }
        kernels::layer_norm(x, &self.emb_norm.0, &self.emb_norm.1, self.eps);
        for layer in self.layers.iter().take(layers) {
            layer.forward(self, batch, scratch)?;
        }
        Ok(&scratch.x[..t * h])
    }
}

/// Row `i` of a `[n, h]` table, or an error naming what was out of range.
fn lookup<'a>(table: &'a [f32], i: usize, h: usize, what: &str) -> Result<&'a [f32]> {
    table.get(i * h..(i + 1) * h).ok_or_else(|| {
        bad_batch(&format!(
            "{what} {i} is outside the model's table of {}",
            table.len() / h
        ))
    })
}

fn bad_batch(message: &str) -> EmbedError {
    EmbedError::InvalidOption(format!("BERT forward pass: {message}"))
}
