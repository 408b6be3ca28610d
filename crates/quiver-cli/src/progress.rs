//! indicatif progress bars on stderr, drawn only when it is a terminal (or `QUIVER_PROGRESS=1`):
//! the harness crate's, so every command draws them alike.

pub use quiver_bench::progress::{bar, enabled, Bars};
