//! BERT encoder, written against candle-nn layers so that it can stop after any layer.
//!
//! Loads the tensor names of Hugging Face `BertModel` checkpoints as saved by
//! sentence-transformers (`embeddings.*`, `encoder.layer.N.*`; a `bert.` prefix is also accepted).
//! Config: <https://huggingface.co/docs/transformers/model_doc/bert#transformers.BertConfig>.
//!
//! ```text
//! ids, type ids ─► word + position + type embeddings ─► LayerNorm
//!                 ─► layer 0 ─► layer 1 ─► ... ─► layer L-1      (early exit: stop at any L)
//! layer: x ─► Q,K,V ─► softmax(QKᵀ/√d + mask) V ─► dense ─► +x ─► LN ─► dense·gelu ─► dense ─► +x ─► LN
//! ```

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use crate::error::{EmbedError, Result};
use crate::kernels;
use crate::transformer::{Encoder, PaddedBatch};

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
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
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

/// One encoder layer. Matrix multiplies go through candle; the element-wise work between them
/// is fused in [`crate::kernels`].
struct Layer {
    /// Query, key and value projections stacked: `[3h, h]`.
    qkv_w: Tensor,
    qkv_b: Vec<f32>,
    attn_out_w: Tensor,
    attn_out_b: Vec<f32>,
    attn_norm: (Vec<f32>, Vec<f32>),
    inter_w: Tensor,
    inter_b: Vec<f32>,
    out_w: Tensor,
    out_b: Vec<f32>,
    out_norm: (Vec<f32>, Vec<f32>),
}

/// A BERT encoder with per-layer early exit.
pub struct BertEncoder {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
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

fn linear(vb: &VarBuilder, name: &str, i: usize, o: usize) -> Result<Linear> {
    checked(vb, name, candle_nn::linear(i, o, vb.pp(name)))
}

fn norm(vb: &VarBuilder, name: &str, size: usize, eps: f64) -> Result<LayerNorm> {
    checked(vb, name, candle_nn::layer_norm(size, eps, vb.pp(name)))
}

fn embedding(vb: &VarBuilder, name: &str, n: usize, d: usize) -> Result<Embedding> {
    checked(vb, name, candle_nn::embedding(n, d, vb.pp(name)))
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Weight `[o, i]` and bias `[o]` of a linear layer.
fn weight_bias(vb: &VarBuilder, name: &str, i: usize, o: usize) -> Result<(Tensor, Vec<f32>)> {
    let l = linear(vb, name, i, o)?;
    let bias = match l.bias() {
        Some(b) => to_vec(b)?,
        None => vec![0.0; o],
    };
    Ok((l.weight().clone(), bias))
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

/// `x [rows, i] @ wᵀ` for a weight `w [o, i]`, as a row-major `[rows, o]` buffer.
fn matmul_t(x: Tensor, w: &Tensor) -> Result<Vec<f32>> {
    to_vec(&x.matmul(&w.t()?)?)
}

impl BertEncoder {
    /// Build from a config and the tensors of `model.safetensors`.
    pub fn load(cfg: &BertConfig, tensors: HashMap<String, Tensor>) -> Result<Self> {
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
        let word = embedding(&e, "word_embeddings", cfg.vocab_size, h)?;
        let position = embedding(&e, "position_embeddings", cfg.max_position_embeddings, h)?;
        let token_type = embedding(&e, "token_type_embeddings", cfg.type_vocab_size, h)?;
        let emb_norm = norm(&e, "LayerNorm", h, eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = root.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let ao = a.pp("output");
            let (qw, qb) = weight_bias(&s, "query", h, h)?;
            let (kw, kb) = weight_bias(&s, "key", h, h)?;
            let (vw, vb) = weight_bias(&s, "value", h, h)?;
            let (attn_out_w, attn_out_b) = weight_bias(&ao, "dense", h, h)?;
            let (inter_w, inter_b) =
                weight_bias(&l.pp("intermediate"), "dense", h, cfg.intermediate_size)?;
            let (out_w, out_b) = weight_bias(&l.pp("output"), "dense", cfg.intermediate_size, h)?;
            layers.push(Layer {
                qkv_w: Tensor::cat(&[&qw, &kw, &vw], 0)?.contiguous()?,
                qkv_b: [qb, kb, vb].concat(),
                attn_out_w,
                attn_out_b,
                attn_norm: norm_params(&ao, "LayerNorm", h, eps)?,
                inter_w,
                inter_b,
                out_w,
                out_b,
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
    /// `x`: `[b*s, h]` row-major; returns the same shape.
    fn forward(&self, x: &[f32], enc: &BertEncoder, batch: &PaddedBatch) -> Result<Vec<f32>> {
        let (b, s) = (batch.batch, batch.seq_len);
        let (nh, hd, h) = (enc.heads, enc.head_dim, enc.hidden);
        let t = b * s;
        let dev = Device::Cpu;
        let dims = (b, s, nh, hd);
        let qkv = matmul_t(Tensor::from_slice(x, (t, h), &dev)?, &self.qkv_w)?;
        let [q, k, v] = kernels::split_heads(&qkv, &self.qkv_b, dims, 1.0 / (hd as f32).sqrt());
        drop(qkv);
        let ctx = kernels::merge_heads(&kernels::attention(&q, &k, &v, &batch.lengths, dims), dims);
        let mut a = matmul_t(Tensor::from_vec(ctx, (t, h), &dev)?, &self.attn_out_w)?;
        kernels::bias_residual_layer_norm(
            &mut a,
            x,
            &self.attn_out_b,
            &self.attn_norm.0,
            &self.attn_norm.1,
            enc.eps,
        );
        let mut inter = matmul_t(Tensor::from_slice(&a, (t, h), &dev)?, &self.inter_w)?;
        match enc.act {
            Activation::GeluErf => kernels::bias_gelu(&mut inter, &self.inter_b, false),
            Activation::GeluTanh => kernels::bias_gelu(&mut inter, &self.inter_b, true),
            Activation::Relu => kernels::bias_relu(&mut inter, &self.inter_b),
        }
        let width = self.inter_b.len();
        let mut out = matmul_t(Tensor::from_vec(inter, (t, width), &dev)?, &self.out_w)?;
        kernels::bias_residual_layer_norm(
            &mut out,
            &a,
            &self.out_b,
            &self.out_norm.0,
            &self.out_norm.1,
            enc.eps,
        );
        Ok(out)
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

    fn forward(&self, batch: &PaddedBatch, layers: usize) -> Result<Vec<f32>> {
        let (b, s) = (batch.batch, batch.seq_len);
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&batch.ids, (b * s,), &dev)?;
        let types = Tensor::from_slice(&batch.type_ids, (b * s,), &dev)?;
        let pos: Vec<u32> = (0..b).flat_map(|_| 0..s as u32).collect();
        let pos = Tensor::from_vec(pos, (b * s,), &dev)?;
        let x = ((self.word.forward(&ids)? + self.token_type.forward(&types)?)?
            + self.position.forward(&pos)?)?;
        let mut x = to_vec(&self.emb_norm.forward(&x)?)?;
        for layer in self.layers.iter().take(layers) {
            x = layer.forward(&x, self, batch)?;
        }
        Ok(x)
    }
}
