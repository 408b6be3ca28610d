//! MUVERA fixed-dimensional encodings (Dhulipala, Hadian, Jayaram, Lee, Mirrokni: "MUVERA:
//! Multi-Vector Retrieval via Fixed Dimensional Encodings", NeurIPS 2024), following the reference
//! implementation (google/graph-mining, `sketching/point_cloud/fixed_dimensional_encoding.cc`).
//!
//! One vector per set, whose inner product approximates Chamfer similarity:
//!
//! ```text
//! for each repetition r in 0..R_reps (independent seeds):
//!   SimHash: k_sim Gaussian vectors g_1..g_k  ->  bucket(x) = Gray code of bits [⟨g_j, x⟩ > 0]
//!   inner projection ψ: each input coordinate goes to one of d_proj outputs with a random ±1
//!                       (identity when d_proj is None)
//!   query block    B_r[b] = Σ_{q in bucket b} ψ(q)                         (SUM)
//!   document block B_r[b] = (1/|D ∩ b|) Σ_{d in bucket b} ψ(d)            (AVERAGE)
//!     empty document bucket (fill_empty): ψ(d*) of the d* whose SimHash bits are nearest to b
//!     in Hamming distance (never for queries)
//! FDE = [B_0 | B_1 | ... | B_{R-1}]   (R_reps · 2^k_sim · d_proj floats)
//! optional final projection: a Count Sketch of the whole vector to d_final (seeded)
//! ```
//!
//! For a query `Q` and document `D`, `⟨FDE_q(Q), FDE_d(D)⟩ = Σ_r Σ_{q} ⟨ψ_r(q), avg ψ_r(D ∩ bucket_r(q))⟩`:
//! each query vector is matched against the centroid of the document vectors that share its bucket,
//! an estimate of its best match. With identity projection and no filling, each repetition's term
//! never exceeds Chamfer when inner products are non-negative (an average never beats the maximum).
//!
//! The inner projection is the reference's "AMS" sketch: one ±1 entry per input coordinate (no
//! scale), which keeps inner products unbiased. Randomness comes from [`SplitMix64`], fully
//! specified here, so the same [`FdeParams`] encode identically on every machine and across
//! releases (parameters are persisted with the field; encodings are never re-derived differently).

use super::MultiVectors;
use crate::{IndexError, Vectors};

/// MUVERA parameters. Persisted with a field: queries and documents must use the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdeParams {
    /// SimHash bits per repetition; `2^k_sim` buckets.
    pub k_sim: u32,
    /// Inner projection width; `None` keeps the vectors as they are (identity).
    pub d_proj: Option<usize>,
    /// Independent repetitions.
    pub r_reps: usize,
    /// Final Count Sketch width; `None` keeps all `R_reps · 2^k_sim · d_proj` coordinates.
    pub d_final: Option<usize>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Fill empty document buckets with the nearest vector by SimHash Hamming distance.
    pub fill_empty: bool,
}

impl Default for FdeParams {
    /// The paper's default configuration: `R_reps = 20`, `k_sim = 5`, `d_proj = 16` (10,240 dims).
    fn default() -> Self {
        FdeParams {
            k_sim: 5,
            d_proj: Some(16),
            r_reps: 20,
            d_final: None,
            seed: 42,
            fill_empty: true,
        }
    }
}

/// Largest FDE accepted (floats per encoding).
pub const MAX_FDE_DIM: usize = 1 << 20;

impl FdeParams {
    /// Checks ranges: `k_sim <= 16`, `R_reps >= 1`, `d_proj >= 1`, `d_final >= 1`, and the encoding no
    /// longer than [`MAX_FDE_DIM`].
    pub fn validate(&self, dim: usize) -> Result<(), IndexError> {
        let bad = |m: String| Err(IndexError::InvalidParams(m));
        if self.k_sim > 16 {
            return bad(format!("k_sim must be <= 16, got {}", self.k_sim));
        }
        if self.r_reps == 0 {
            return bad("r_reps must be >= 1".into());
        }
        if self.d_proj == Some(0) {
            return bad("d_proj must be >= 1".into());
        }
        if self.d_final == Some(0) {
            return bad("d_final must be >= 1".into());
        }
        if dim == 0 {
            return bad("vector dimension must be >= 1".into());
        }
        let full = self
            .r_reps
            .checked_mul(1usize << self.k_sim)
            .and_then(|x| x.checked_mul(self.d_proj.unwrap_or(dim)));
        match full {
            Some(n) if n <= MAX_FDE_DIM => Ok(()),
            _ => bad(format!(
                "r_reps · 2^k_sim · d_proj must be <= {MAX_FDE_DIM} (r_reps {}, k_sim {}, d_proj {})",
                self.r_reps,
                self.k_sim,
                self.d_proj.unwrap_or(dim)
            )),
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): the fixed, portable generator behind every FDE draw.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn gaussian(&mut self) -> f32 {
        let (u1, u2) = (self.unit(), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Uniform in `0..n` (`n >= 1`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `+1.0` or `-1.0`.
    pub fn sign(&mut self) -> f32 {
        if self.next_u64() >> 63 == 1 {
            1.0
        } else {
            -1.0
        }
    }
}

/// Seed of stream `stream` of repetition `rep`.
fn derive(seed: u64, rep: u64, stream: u64) -> u64 {
    let mut g = SplitMix64::new(seed ^ rep.wrapping_mul(0xA24B_AED4_963E_E407) ^ (stream << 56));
    g.next_u64()
}

/// Appends a SimHash bit to a Gray-code bucket index (as the reference does).
#[inline]
fn append_to_gray_code(gray: u32, bit: bool) -> u32 {
    (gray << 1) + (bit as u32 ^ (gray & 1))
}

/// The bits a Gray-code bucket index stands for (the reference's `GrayCodeToBinary`).
#[inline]
fn gray_code_to_binary(num: u32) -> u32 {
    num ^ (num >> 1)
}

struct Rep {
    /// `k_sim × dim`, row j = Gaussian vector g_j.
    simhash: Vec<f32>,
    /// Per input coordinate: (output coordinate, ±1); empty for identity.
    proj: Vec<(u32, f32)>,
}

/// Encodes queries and documents for one field: built once from ([`FdeParams`], `dim`), then
/// shared (it is `Sync`).
pub struct FdeEncoder {
    dim: usize,
    params: FdeParams,
    reps: Vec<Rep>,
    /// Count Sketch of the concatenated blocks: per coordinate (output, ±1).
    final_sketch: Vec<(u32, f32)>,
}

impl std::fmt::Debug for FdeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdeEncoder")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("out_dim", &self.out_dim())
            .finish()
    }
}

impl FdeEncoder {
    /// Draws the SimHash vectors and projections of every repetition from `params.seed`.
    pub fn new(dim: usize, params: FdeParams) -> Result<FdeEncoder, IndexError> {
        params.validate(dim)?;
        let k = params.k_sim as usize;
        let reps = (0..params.r_reps as u64)
            .map(|r| {
                let mut g = SplitMix64::new(derive(params.seed, r, 1));
                let simhash = (0..k * dim).map(|_| g.gaussian()).collect();
                let proj = match params.d_proj {
                    None => Vec::new(),
                    Some(p) => {
                        let mut g = SplitMix64::new(derive(params.seed, r, 2));
                        (0..dim)
                            .map(|_| {
                                let idx = g.below(p) as u32;
                                (idx, g.sign())
                            })
                            .collect()
                    }
                };
                Rep { simhash, proj }
            })
            .collect();
        let mut enc = FdeEncoder {
            dim,
            params,
            reps,
            final_sketch: Vec::new(),
        };
        if let Some(f) = params.d_final {
            let mut g = SplitMix64::new(derive(params.seed, 0, 3));
            enc.final_sketch = (0..enc.block_dim())
                .map(|_| {
                    let idx = g.below(f) as u32;
                    (idx, g.sign())
                })
                .collect();
        }
        Ok(enc)
    }

    /// Input vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Parameters.
    pub fn params(&self) -> FdeParams {
        self.params
    }

    fn proj_dim(&self) -> usize {
        self.params.d_proj.unwrap_or(self.dim)
    }

    fn buckets(&self) -> usize {
        1usize << self.params.k_sim
    }

    /// Length before the final projection: `R_reps · 2^k_sim · d_proj`.
    fn block_dim(&self) -> usize {
        self.params.r_reps * self.buckets() * self.proj_dim()
    }

    /// Length of an encoding.
    pub fn out_dim(&self) -> usize {
        self.params.d_final.unwrap_or_else(|| self.block_dim())
    }

    /// SimHash projections of `x` for repetition `rep` (the bucket is their sign pattern).
    fn sketch(&self, rep: &Rep, x: &[f32], out: &mut [f32]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = quiver_linalg::dot(x, &rep.simhash[j * self.dim..(j + 1) * self.dim]);
        }
    }

    fn bucket_of(sketch: &[f32]) -> u32 {
        sketch
            .iter()
            .fold(0u32, |g, &s| append_to_gray_code(g, s > 0.0))
    }

    /// Hamming distance between the sign pattern of `sketch` and the bits of bucket `index`.
    fn distance_to_bucket(sketch: &[f32], index: u32) -> u32 {
        let mut binary = gray_code_to_binary(index);
        let mut d = 0;
        for &s in sketch.iter().rev() {
            d += ((s > 0.0) as u32 != (binary & 1)) as u32;
            binary >>= 1;
        }
        d
    }

    /// Adds `ψ(x)` into `out` (`proj_dim` long).
    fn add_projected(&self, rep: &Rep, x: &[f32], out: &mut [f32]) {
        if rep.proj.is_empty() {
            for (o, v) in out.iter_mut().zip(x) {
                *o += v;
            }
        } else {
            for (&(i, s), v) in rep.proj.iter().zip(x) {
                out[i as usize] += s * v;
            }
        }
    }

    /// The query encoding (bucket SUMs, no filling).
    pub fn encode_query(&self, query: Vectors<'_>) -> Vec<f32> {
        self.encode(query, false)
    }

    /// The document encoding (bucket AVERAGEs, empty buckets filled when `fill_empty`).
    pub fn encode_document(&self, doc: Vectors<'_>) -> Vec<f32> {
        self.encode(doc, true)
    }

    /// Document encodings of every document of `docs`, row-major (`docs.len() × out_dim`), in
    /// parallel.
    pub fn encode_documents(&self, docs: MultiVectors<'_>) -> Vec<f32> {
        use rayon::prelude::*;
        let od = self.out_dim();
        let mut out = vec![0.0f32; docs.len() * od];
        out.par_chunks_mut(od.max(1))
            .enumerate()
            .for_each(|(i, row)| row.copy_from_slice(&self.encode_document(docs.doc(i as u32))));
        out
    }

    fn encode(&self, points: Vectors<'_>, document: bool) -> Vec<f32> {
        let (k, p, nb) = (self.params.k_sim as usize, self.proj_dim(), self.buckets());
        let n = points.len();
        let mut out = vec![0.0f32; self.block_dim()];
        let mut sketches = vec![0.0f32; n * k];
        let mut counts = vec![0u32; nb];
        let mut projected = vec![0.0f32; p];
        for (r, rep) in self.reps.iter().enumerate() {
            let block = &mut out[r * nb * p..(r + 1) * nb * p];
            counts.iter_mut().for_each(|c| *c = 0);
            for i in 0..n {
                let x = points.row(i as u32);
                let sk = &mut sketches[i * k..(i + 1) * k];
                self.sketch(rep, x, sk);
                let b = if k > 0 {
                    Self::bucket_of(sk) as usize
                } else {
                    0
                };
                counts[b] += 1;
                self.add_projected(rep, x, &mut block[b * p..(b + 1) * p]);
            }
            if !document {
                continue;
            }
            for b in 0..nb {
                let cell = &mut block[b * p..(b + 1) * p];
                if counts[b] > 0 {
                    let inv = 1.0 / counts[b] as f32;
                    cell.iter_mut().for_each(|x| *x *= inv);
                } else if self.params.fill_empty && k > 0 && n > 0 {
                    let nearest = (0..n)
                        .min_by_key(|&i| {
                            (
                                Self::distance_to_bucket(&sketches[i * k..(i + 1) * k], b as u32),
                                i,
                            )
                        })
                        .unwrap_or(0);
                    projected.iter_mut().for_each(|x| *x = 0.0);
                    self.add_projected(rep, points.row(nearest as u32), &mut projected);
                    cell.copy_from_slice(&projected);
                }
            }
        }
        if let Some(f) = self.params.d_final {
            let mut fin = vec![0.0f32; f];
            for (&(i, s), v) in self.final_sketch.iter().zip(&out) {
                fin[i as usize] += s * v;
            }
            return fin;
        }
        out
    }
}
