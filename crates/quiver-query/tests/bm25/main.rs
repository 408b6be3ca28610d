//! BM25 through collections: scores against a brute-force oracle (ADI, Cranfield), independence
//! from segmentation, deletes, filters, analyzer options, schema errors, reopen, corruption, and
//! a quick quality check on SciFact (nDCG@10) and LIMIT-small (recall@2).
//!
//! `common.rs`: data and the brute-force oracle; `oracle.rs`: scores and storage behaviour
//! against it; `quality.rs`: published figures; `plans.rs`: BM25 inside query plans.

mod common;
mod oracle;
mod plans;
mod quality;
