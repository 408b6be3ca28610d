//! # quiver-linalg: distance kernels
//!
//! The compute leaf of Quiver. It answers one question: *how close are these two vectors?*
//!
//! - [`Metric`] is the persisted choice (cosine, dot, l2). Its [`Metric::score`] is always
//!   "higher is closer" (L2 is negated), so every index and merge in Quiver sorts one way.
//! - [`dot_1x16`] and [`dot_4x4`] compute sixteen dot products per call with the inputs held in
//!   registers (exact scans: one query against 16 rows, or 4 queries against 4 rows).
//! - [`dot`] and [`l2sq`] dispatch at run time to the best kernel this CPU supports
//!   ([`Level::Avx512`], [`Level::Avx2`], [`Level::Scalar`]); [`dot_at`] / [`l2sq_at`] force a level
//!   (for tests and benchmarks).
//!
//! Cosine is computed as a dot product over unit vectors: callers normalise with [`normalize`] once,
//! at ingest and at query time, instead of dividing by norms in every comparison.
//!
//! [`adapt`] maps one embedding model's space into another's ([`Adapter`]: orthogonal
//! Procrustes, ridge least squares, relative representations), so a new model's queries can search
//! an old model's vectors.
//! [`classify`] assigns labels by similarity to label vectors, plain or refined from the
//! documents' centroids (zero-shot classification).
//!
//! Beyond distances: [`kmeans`] (k-means++ seeding, parallel Lloyd iterations; codebooks and token
//! pruning) and [`pca`] (an orthonormal rotation sorted by variance, for Matryoshka-style prefixes
//! of any model's vectors). Their errors are [`LinalgError`].
//!
//! ```
//! use quiver_linalg::{dot, l2sq, Metric};
//! let a = [1.0_f32, 2.0, 3.0];
//! let b = [4.0_f32, 5.0, 6.0];
//! assert_eq!(dot(&a, &b), 32.0);
//! assert_eq!(l2sq(&a, &b), 27.0);
//! assert_eq!(Metric::L2.score(&a, &b), -27.0);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod adapt;
pub mod classify;
mod kernels;
pub mod kmeans;
pub mod pca;
mod tile;

pub use kernels::{dot_at, l2sq_at, Level};
pub use tile::{dot_1x16, dot_1x16_block, dot_1x16_up_to, dot_4x4, dot_4x4_block};

use std::sync::OnceLock;

pub use adapt::{Adapter, AdapterKind};
pub use kmeans::{kmeans, KMeans, KMeansParams};
pub use pca::Pca;

/// Errors of the training routines (k-means, PCA) and of decoding their serialised forms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// Bad shape or parameter (the message names it).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A NaN or infinity in the input matrix.
    #[error("non-finite value at row {row}, column {col}")]
    NonFinite {
        /// Row of the offending value.
        row: usize,
        /// Column of the offending value.
        col: usize,
    },
    /// A serialised block failed validation.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

/// The similarity a dense field is searched with. Persisted in schemas; scores are "higher is closer".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine similarity. Vectors are stored unit-length, so the score is their dot product.
    Cosine,
    /// Raw inner product.
    Dot,
    /// Euclidean distance; the score is the negated squared distance.
    L2,
}

impl Metric {
    /// Similarity of `a` and `b` under this metric, higher is closer.
    /// For [`Metric::Cosine`] both inputs must already be unit-length (see [`normalize`]).
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        let k = kernels_for_cpu();
        match self {
            Metric::Cosine | Metric::Dot => (k.dot)(a, b),
            Metric::L2 => -(k.l2sq)(a, b),
        }
    }

    /// The scoring function for this metric, resolved once for the running CPU. Hot loops fetch it
    /// once and call it many times (a per-query "distance calculator").
    pub fn scorer(self) -> fn(&[f32], &[f32]) -> f32 {
        match (self, detected_level()) {
            (Metric::Cosine | Metric::Dot, Level::Avx512) => kernels::score_dot_avx512,
            (Metric::Cosine | Metric::Dot, Level::Avx2) => kernels::score_dot_avx2,
            (Metric::Cosine | Metric::Dot, Level::Scalar) => kernels::score_dot_scalar,
            (Metric::L2, Level::Avx512) => kernels::score_l2_avx512,
            (Metric::L2, Level::Avx2) => kernels::score_l2_avx2,
            (Metric::L2, Level::Scalar) => kernels::score_l2_scalar,
        }
    }

    /// Whether stored and query vectors are normalised to unit length before use.
    pub fn normalizes(self) -> bool {
        matches!(self, Metric::Cosine)
    }

    /// Lower-case name used in schemas and output.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }

    /// Parses a metric name (`cosine`, `dot`, `l2`).
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "cosine" => Some(Metric::Cosine),
            "dot" | "ip" => Some(Metric::Dot),
            "l2" | "euclid" => Some(Metric::L2),
            _ => None,
        }
    }
}

struct Kernels {
    dot: fn(&[f32], &[f32]) -> f32,
    l2sq: fn(&[f32], &[f32]) -> f32,
}

fn kernels_for_cpu() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| match detected_level() {
        Level::Avx512 => Kernels {
            dot: kernels::score_dot_avx512,
            l2sq: kernels::l2sq_avx512_entry,
        },
        Level::Avx2 => Kernels {
            dot: kernels::score_dot_avx2,
            l2sq: kernels::l2sq_avx2_entry,
        },
        Level::Scalar => Kernels {
            dot: kernels::score_dot_scalar,
            l2sq: kernels::l2sq_scalar_entry,
        },
    })
}

/// The best kernel level this CPU supports (detected once). `QUIVER_SIMD=scalar|avx2|avx512` caps it.
pub fn detected_level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        let best = Level::detect();
        match std::env::var("QUIVER_SIMD").ok().as_deref() {
            Some("scalar") => Level::Scalar,
            Some("avx2") if best >= Level::Avx2 => Level::Avx2,
            _ => best,
        }
    })
}

/// Inner product of two equal-length slices with the best kernel for this CPU.
///
/// # Panics
/// Never; if lengths differ, the shorter length is used (callers validate dimensions at the boundary).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels_for_cpu().dot)(a, b)
}

/// Inner products of `q` with four rows at once (MaxSim's inner loop): on AVX-512 each chunk of
/// `q` is loaded once for the four rows; elsewhere four [`dot`] calls. Agrees with [`dot`] up to
/// float reassociation.
#[inline]
pub fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    kernels::dot4(q, rows)
}

/// Squared Euclidean distance with the best kernel for this CPU.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    (kernels_for_cpu().l2sq)(a, b)
}

/// Cosine similarity of two arbitrary (not necessarily unit) vectors; 0 if either is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let na = dot(a, a).sqrt();
    let nb = dot(b, b).sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na * nb)
    }
}

/// Scales `v` to unit length in place. Returns `false` (and leaves `v` unchanged) for a zero vector.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = dot(v, v).sqrt();
    if n == 0.0 || !n.is_finite() {
        return false;
    }
    let inv = 1.0 / n;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}
