//! Pooling token vectors into one sentence vector, normalisation and Matryoshka truncation.
//!
//! Pooling follows sentence-transformers' `Pooling` module: it sees only the real tokens of a
//! sequence (padding is cut off before pooling, never masked after the fact), and mean pooling
//! includes the special tokens (`[CLS]`, `[SEP]`) exactly as the reference does.

use std::path::Path;

use serde::Deserialize;

use crate::config::read_json;
use crate::error::{EmbedError, Result};

/// How token vectors become one sentence vector (from `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over tokens (`pooling_mode_mean_tokens`).
    Mean,
    /// The first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
    /// Element-wise max over tokens (`pooling_mode_max_tokens`).
    Max,
    /// Sum over tokens divided by sqrt(token count) (`pooling_mode_mean_sqrt_len_tokens`).
    MeanSqrtLen,
    /// The last real token (`pooling_mode_lasttoken`).
    LastToken,
}

#[derive(Debug, Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode: Option<String>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
}

impl Pooling {
    /// Parse a sentence-transformers pooling config. Exactly one mode must be set (combined modes,
    /// which concatenate vectors, and weighted mean are rejected with [`EmbedError::Config`]).
    pub fn from_config_file(path: &Path) -> Result<Self> {
        let c: PoolingConfig = read_json(path)?;
        let bad = |message: String| EmbedError::Config {
            path: path.to_path_buf(),
            message,
        };
        if let Some(mode) = c.pooling_mode.as_deref() {
            return match mode {
                "mean" => Ok(Pooling::Mean),
                "cls" => Ok(Pooling::Cls),
                "max" => Ok(Pooling::Max),
                "mean_sqrt_len_tokens" => Ok(Pooling::MeanSqrtLen),
                "lasttoken" => Ok(Pooling::LastToken),
                other => Err(bad(format!("unsupported pooling_mode '{other}'"))),
            };
        }
        if c.pooling_mode_weightedmean_tokens {
            return Err(bad("weighted-mean pooling is not supported".into()));
        }
        let modes = [
            (c.pooling_mode_mean_tokens, Pooling::Mean),
            (c.pooling_mode_cls_token, Pooling::Cls),
            (c.pooling_mode_max_tokens, Pooling::Max),
            (c.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
            (c.pooling_mode_lasttoken, Pooling::LastToken),
        ];
        let set: Vec<Pooling> = modes
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, p)| *p)
            .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err(bad("no pooling mode is set".into())),
            _ => Err(bad(format!(
                "combined pooling modes {set:?} are not supported"
            ))),
        }
    }

    /// Pool `n` token vectors of width `dim`, stored row-major in `tokens` (only real tokens).
    /// An empty sequence pools to the zero vector.
    pub fn pool(&self, tokens: &[f32], n: usize, dim: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; dim];
        if n == 0 || tokens.len() < n * dim {
            return out;
        }
        let rows = tokens[..n * dim].chunks_exact(dim);
        match self {
            Pooling::Cls => out.copy_from_slice(&tokens[..dim]),
            Pooling::LastToken => out.copy_from_slice(&tokens[(n - 1) * dim..n * dim]),
            Pooling::Max => {
                out.fill(f32::NEG_INFINITY);
                for row in rows {
                    for (o, x) in out.iter_mut().zip(row) {
                        *o = o.max(*x);
                    }
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                for row in rows {
                    for (o, x) in out.iter_mut().zip(row) {
                        *o += *x;
                    }
                }
                let div = if *self == Pooling::Mean {
                    n as f32
                } else {
                    (n as f32).sqrt()
                };
                for o in &mut out {
                    *o /= div;
                }
            }
        }
        out
    }
}

/// Scale `v` to unit L2 norm, as `torch.nn.functional.normalize` does (norm clamped at 1e-12,
/// so a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

/// Matryoshka truncation: keep the first `dims` components; renormalise when `renormalize`.
pub fn truncate_dims(v: &mut Vec<f32>, dims: usize, renormalize: bool) {
    if dims < v.len() {
        v.truncate(dims);
        if renormalize {
            normalize(v);
        }
    }
}

/// Cosine similarity of two equal-length vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        ab += f64::from(*x) * f64::from(*y);
        aa += f64::from(*x) * f64::from(*x);
        bb += f64::from(*y) * f64::from(*y);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_ignores_nothing_but_what_it_is_given() {
        let t = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(Pooling::Mean.pool(&t, 2, 2), vec![2.0, 3.0]);
        assert_eq!(Pooling::Cls.pool(&t, 2, 2), vec![1.0, 2.0]);
        assert_eq!(Pooling::Max.pool(&t, 2, 2), vec![3.0, 4.0]);
        assert_eq!(Pooling::LastToken.pool(&t, 2, 2), vec![3.0, 4.0]);
        assert_eq!(Pooling::Mean.pool(&t, 0, 2), vec![0.0, 0.0]);
    }

    #[test]
    fn truncation_renormalises() {
        let mut v = vec![3.0, 4.0, 12.0];
        normalize(&mut v);
        truncate_dims(&mut v, 2, true);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 4];
        normalize(&mut z);
        assert!(z.iter().all(|x| *x == 0.0));
    }
}
