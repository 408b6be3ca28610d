//! # quiver-quant: compact vector codes
//!
//! *These vectors cost too much RAM: what small code keeps their ranking?*
//!
//! - [`CodecSpec`]: the persisted choice (`int8`, `binary`, `{pq = {m = 16}}`).
//! - [`Codec`]: a trained codec — [`Int8Codec`] (per-dimension trained ranges, one byte per
//!   dimension), [`BinaryCodec`] (one bit per dimension, Hamming or asymmetric scoring) or
//!   [`PqCodec`] (product quantization, `m` sub-spaces × 256 k-means centroids). It trains on
//!   sample vectors, encodes vectors into fixed-length byte codes and serialises itself
//!   ([`Codec::to_bytes`], versioned and validated).
//! - [`QueryScorer`]: built once per query ([`Codec::query`]: a quantised query for int8, a weight
//!   table for binary, a lookup table for PQ), then called in the hot loop on codes
//!   ([`QueryScorer::score`], [`QueryScorer::scan_topk`], or as an HNSW node scorer through
//!   [`CodesScorer`]).
//!
//! ```text
//!   train(sample) ──► Codec ──encode_all──► codes: n × code_len bytes (RAM)
//!                       │
//!   query q ──► Codec::query(q) ──► QueryScorer ──score(code)──► ≈ Metric::score(q, x)
//!                                        └─ scan_topk(codes, filter, k) ──► shortlist ──► exact rerank
//! ```
//!
//! Scores approximate [`Metric::score`] ("higher is closer"): the dot product for dot and cosine
//! (cosine inputs are unit vectors, normalised by the caller), the negated squared distance for L2.
//! Codes are meant for shortlists: the full vectors (on disk) re-score the best candidates
//! ([`quiver_index::rerank`]).
//!
//! [`prefix`] holds the Matryoshka helpers (a renormalised prefix of one stored vector).
//!
//! ```
//! use quiver_quant::{Codec, CodecSpec};
//! use quiver_index::AllRows;
//! use quiver_linalg::Metric;
//! let dim = 8;
//! let data: Vec<f32> = (0..64 * dim).map(|i| ((i * 31 % 17) as f32) - 8.0).collect();
//! let codec = Codec::train(CodecSpec::Int8, &data, dim, Metric::Dot, 1).unwrap();
//! let codes = codec.encode_all(&data).unwrap();
//! assert_eq!(codes.len(), 64 * codec.code_len());
//! let hits = codec.query(&data[..dim]).unwrap().scan_topk(&codes, &AllRows, 3);
//! assert_eq!(hits.len(), 3);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod binary;
mod bytes;
mod int8;
mod kernels;
mod pq;
pub mod prefix;
mod scorer;

pub use binary::BinaryCodec;
pub use int8::Int8Codec;
pub use pq::PqCodec;
pub use scorer::{CodesScorer, QueryScorer};

use quiver_linalg::{LinalgError, Metric};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Errors of training, encoding and decoding codecs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    /// Bad shapes or parameters (the message names the value).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A NaN or infinity in a vector.
    #[error("non-finite value in row {row}, dimension {col}")]
    NonFinite {
        /// Row of the offending value (0 for a single vector).
        row: usize,
        /// Dimension of the offending value.
        col: usize,
    },
    /// k-means or another trainer failed.
    #[error("training failed: {0}")]
    Train(#[from] LinalgError),
    /// A serialised codec failed validation.
    #[error("corrupt codec: {0}")]
    Corrupt(String),
}

/// Which codec a field uses: the persisted, closed choice.
///
/// Serialised in lower case, externally tagged: JSON `"int8"`, `"binary"`, `{"pq": {"m": 16}}`;
/// TOML `codec = "int8"`, `codec = "binary"`, `codec = { pq = { m = 16 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum CodecSpec {
    /// One byte per dimension; per-dimension ranges learned from the data (4x smaller than f32).
    Int8,
    /// One bit per dimension (32x smaller than f32): Hamming or asymmetric scoring.
    Binary,
    /// Product quantization: `m` sub-spaces of one byte each (`4·dim/m` times smaller than f32).
    Pq {
        /// Number of sub-spaces (bytes per code), `1 <= m <= dim`.
        m: usize,
    },
}

impl CodecSpec {
    /// Short name: `int8`, `binary`, `pq16`.
    pub fn name(&self) -> String {
        match self {
            CodecSpec::Int8 => "int8".into(),
            CodecSpec::Binary => "binary".into(),
            CodecSpec::Pq { m } => format!("pq{m}"),
        }
    }

    /// Parses [`CodecSpec::name`] (`int8`, `binary`, `pq<m>`).
    pub fn parse(s: &str) -> Option<CodecSpec> {
        match s {
            "int8" | "sq8" => Some(CodecSpec::Int8),
            "binary" | "bit" => Some(CodecSpec::Binary),
            _ => s
                .strip_prefix("pq")
                .and_then(|m| m.parse().ok())
                .map(|m| CodecSpec::Pq { m }),
        }
    }
}

/// How a binary codec scores a query (other codecs have one mode and ignore this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreMode {
    /// Full-precision query against the code's reconstruction (`f32 query · bits`); the better
    /// estimate, and the default.
    #[default]
    Asymmetric,
    /// Query binarised too; score = −Hamming distance (fastest, coarsest).
    Symmetric,
}

/// A trained codec.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    /// See [`Int8Codec`].
    Int8(Int8Codec),
    /// See [`BinaryCodec`].
    Binary(BinaryCodec),
    /// See [`PqCodec`].
    Pq(PqCodec),
}

/// Checks a row-major matrix: `dim >= 1`, whole rows, finite values. Returns the row count.
pub(crate) fn check_rows(data: &[f32], dim: usize) -> Result<usize, QuantError> {
    if dim == 0 {
        return Err(QuantError::InvalidInput("dimension must be >= 1".into()));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(QuantError::InvalidInput(format!(
            "{} values are not whole rows of dimension {dim}",
            data.len()
        )));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(QuantError::NonFinite {
            row: i / dim,
            col: i % dim,
        });
    }
    Ok(data.len() / dim)
}

impl Codec {
    /// Trains `spec` on the rows of `data` (row-major, `dim` columns) for `metric`. Cosine rows
    /// must already be unit length. `seed` fixes the sampling and k-means draws.
    ///
    /// Errors: no rows, a partial row, a non-finite value, or a spec out of range (`pq` with
    /// `m == 0` or `m > dim`).
    pub fn train(
        spec: CodecSpec,
        data: &[f32],
        dim: usize,
        metric: Metric,
        seed: u64,
    ) -> Result<Codec, QuantError> {
        let n = check_rows(data, dim)?;
        if n == 0 {
            return Err(QuantError::InvalidInput(
                "training needs at least one vector".into(),
            ));
        }
        Ok(match spec {
            CodecSpec::Int8 => Codec::Int8(Int8Codec::train(data, dim, metric)),
            CodecSpec::Binary => Codec::Binary(BinaryCodec::train(data, dim, metric)),
            CodecSpec::Pq { m } => Codec::Pq(PqCodec::train(data, dim, metric, m, seed)?),
        })
    }

    /// The spec this codec was trained for.
    pub fn spec(&self) -> CodecSpec {
        match self {
            Codec::Int8(_) => CodecSpec::Int8,
            Codec::Binary(_) => CodecSpec::Binary,
            Codec::Pq(c) => CodecSpec::Pq { m: c.m() },
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Codec::Int8(c) => c.dim(),
            Codec::Binary(c) => c.dim(),
            Codec::Pq(c) => c.dim(),
        }
    }

    /// Metric the scores approximate.
    pub fn metric(&self) -> Metric {
        match self {
            Codec::Int8(c) => c.metric(),
            Codec::Binary(c) => c.metric(),
            Codec::Pq(c) => c.metric(),
        }
    }

    /// Bytes per code. For L2, int8 and binary codes end with the reconstruction's squared norm
    /// (4 bytes), so the distance needs no second pass.
    pub fn code_len(&self) -> usize {
        match self {
            Codec::Int8(c) => c.code_len(),
            Codec::Binary(c) => c.code_len(),
            Codec::Pq(c) => c.code_len(),
        }
    }

    /// Bytes the trained parameters (ranges, thresholds, codebooks) take in RAM.
    pub fn model_bytes(&self) -> usize {
        match self {
            Codec::Int8(c) => c.model_bytes(),
            Codec::Binary(c) => c.model_bytes(),
            Codec::Pq(c) => c.model_bytes(),
        }
    }

    fn check_vector(&self, v: &[f32]) -> Result<(), QuantError> {
        if v.len() != self.dim() {
            return Err(QuantError::InvalidInput(format!(
                "vector has {} dimensions, the codec expects {}",
                v.len(),
                self.dim()
            )));
        }
        if let Some(col) = v.iter().position(|x| !x.is_finite()) {
            return Err(QuantError::NonFinite { row: 0, col });
        }
        Ok(())
    }

    /// Encodes one vector into `out` (exactly [`Codec::code_len`] bytes).
    pub fn encode(&self, v: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
        self.check_vector(v)?;
        if out.len() != self.code_len() {
            return Err(QuantError::InvalidInput(format!(
                "code buffer has {} bytes, the codec writes {}",
                out.len(),
                self.code_len()
            )));
        }
        self.encode_unchecked(v, out);
        Ok(())
    }

    fn encode_unchecked(&self, v: &[f32], out: &mut [u8]) {
        match self {
            Codec::Int8(c) => c.encode(v, out),
            Codec::Binary(c) => c.encode(v, out),
            Codec::Pq(c) => c.encode(v, out),
        }
    }

    /// Encodes every row of `data` (in parallel): `rows × code_len` bytes, row-major.
    pub fn encode_all(&self, data: &[f32]) -> Result<Vec<u8>, QuantError> {
        let n = check_rows(data, self.dim())?;
        let len = self.code_len();
        let mut codes = vec![0u8; n * len];
        codes
            .par_chunks_exact_mut(len)
            .zip(data.par_chunks_exact(self.dim()))
            .for_each(|(out, v)| self.encode_unchecked(v, out));
        Ok(codes)
    }

    /// The vector a code stands for (its reconstruction), written to `out` (`dim` values).
    pub fn decode(&self, code: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
        if code.len() != self.code_len() || out.len() != self.dim() {
            return Err(QuantError::InvalidInput(format!(
                "decode needs a {}-byte code and {} outputs, got {} and {}",
                self.code_len(),
                self.dim(),
                code.len(),
                out.len()
            )));
        }
        match self {
            Codec::Int8(c) => c.decode(code, out),
            Codec::Binary(c) => c.decode(code, out),
            Codec::Pq(c) => c.decode(code, out),
        }
        Ok(())
    }

    /// The per-query scorer in the default mode ([`ScoreMode::Asymmetric`]).
    pub fn query(&self, q: &[f32]) -> Result<QueryScorer, QuantError> {
        self.query_with(q, ScoreMode::Asymmetric)
    }

    /// The per-query scorer in `mode` (only binary codecs distinguish the modes).
    pub fn query_with(&self, q: &[f32], mode: ScoreMode) -> Result<QueryScorer, QuantError> {
        self.check_vector(q)?;
        Ok(match self {
            Codec::Int8(c) => c.query(q),
            Codec::Binary(c) => match mode {
                ScoreMode::Asymmetric => c.query(q),
                ScoreMode::Symmetric => c.query_hamming(q),
            },
            Codec::Pq(c) => c.query(q),
        })
    }

    /// Serialises the trained codec (versioned; see [`Codec::from_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = bytes::Writer::new(self.spec_kind(), self.metric(), self.dim());
        match self {
            Codec::Int8(c) => c.write(&mut w),
            Codec::Binary(c) => c.write(&mut w),
            Codec::Pq(c) => c.write(&mut w),
        }
        w.finish()
    }

    fn spec_kind(&self) -> u8 {
        match self {
            Codec::Int8(_) => bytes::KIND_INT8,
            Codec::Binary(_) => bytes::KIND_BINARY,
            Codec::Pq(_) => bytes::KIND_PQ,
        }
    }

    /// Reads [`Codec::to_bytes`] output. Every field is validated (magic, version, kind, metric,
    /// dimension, lengths, finite parameters, trailing bytes); errors say which one failed.
    pub fn from_bytes(b: &[u8]) -> Result<Codec, QuantError> {
        let (kind, metric, dim, mut r) = bytes::Reader::open(b)?;
        let codec = match kind {
            bytes::KIND_INT8 => Codec::Int8(Int8Codec::read(&mut r, dim, metric)?),
            bytes::KIND_BINARY => Codec::Binary(BinaryCodec::read(&mut r, dim, metric)?),
            bytes::KIND_PQ => Codec::Pq(PqCodec::read(&mut r, dim, metric)?),
            k => return Err(QuantError::Corrupt(format!("unknown codec kind {k}"))),
        };
        r.finish()?;
        Ok(codec)
    }
}
