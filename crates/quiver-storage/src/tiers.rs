//! Storage tiers of a dense field: compact codes kept in RAM, and where the full-precision
//! vectors live.
//!
//! ```toml
//! [fields.emb]
//! type = "dense"
//! dim = 384
//! matryoshka = [64, 128, 256]            # prefix lengths the model was trained for
//! vectors = "disk"                       # full f32 vectors: "disk" (mmap, default) or "ram"
//! codecs = [
//!   { type = "binary", dims = 64 },      # 1 bit per dimension of the 64-d prefix: 8 bytes/vector
//!   { type = "int8" },                   # 1 byte per dimension of the full vector
//!   { type = "pq", m = 48 },             # 48 sub-spaces x 8 bits: 48 bytes/vector
//! ]
//! ```
//!
//! `rotation = "pca"` learns, when a segment is sealed, an orthonormal rotation `R` whose axes are
//! sorted by variance (quiver-linalg's `Pca`, applied without mean subtraction). Codes are computed
//! from the prefixes of `R·v`, and queries are rotated the same way (per segment) before they
//! score those codes, so a prefix of any model carries the most variance first. `R` preserves dot
//! products, so full-dimension scores do not change; the stored f32 vectors stay as given (what
//! `get` returns). An f32 prefix stage (`dims < dim`, precision f32) on a rotated field rotates
//! the stored vectors of the rows it scores on the fly; the mutable segment, which has no rotation
//! yet, is scored at full dimension by such stages.
//!
//! Codes are trained and written when a segment is sealed (`codes.<field>.<i>.bin`, checksummed
//! like the other segment files) and loaded into RAM when it opens. The mutable segment has no
//! codes: plans that ask for a codec score its rows exactly with f32 instead (`explain` says so).

use crate::StorageError;
use serde::{Deserialize, Serialize};

/// Where a dense field's full-precision vectors live in sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorTier {
    /// Memory-mapped from the segment file: the OS pages in what rescoring touches.
    #[default]
    Disk,
    /// Read into process memory when the segment opens.
    Ram,
}

impl VectorTier {
    /// Whether this is the default (for serialisation).
    pub fn is_default(&self) -> bool {
        *self == VectorTier::Disk
    }
}

/// Rotation applied to a dense field's vectors before prefixes are taken for codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// Prefixes of the vectors as given (Matryoshka-trained models).
    #[default]
    None,
    /// A PCA rotation learned per sealed segment.
    Pca,
}

impl Rotation {
    /// Whether this is the default (for serialisation).
    pub fn is_none(&self) -> bool {
        *self == Rotation::None
    }
}

/// Codec kinds, as named in schemas and plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecKind {
    /// One byte per dimension, per-dimension trained ranges.
    Int8,
    /// One bit per dimension (sign), Hamming or asymmetric scoring.
    Binary,
    /// Product quantisation: `m` sub-spaces of 256 centroids.
    Pq,
}

impl CodecKind {
    /// Schema name.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Int8 => "int8",
            CodecKind::Binary => "binary",
            CodecKind::Pq => "pq",
        }
    }
}

/// One compact code kept for a dense field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecConfig {
    /// Codec.
    #[serde(rename = "type")]
    pub kind: CodecKind,
    /// Prefix length encoded (default: the full vector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// PQ sub-spaces (PQ only; must divide the encoded dimension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
}

impl CodecConfig {
    /// Dimensions encoded, for a field of `dim` dimensions.
    pub fn dims_of(&self, dim: usize) -> usize {
        self.dims.unwrap_or(dim)
    }

    /// Bytes per vector of the codes.
    pub fn code_bytes(&self, dim: usize) -> usize {
        let d = self.dims_of(dim);
        match self.kind {
            CodecKind::Int8 => d,
            CodecKind::Binary => d.div_ceil(8),
            CodecKind::Pq => self.m.unwrap_or(0),
        }
    }

    /// Short label, e.g. `binary/64` or `pq48/384`.
    pub fn label(&self, dim: usize) -> String {
        let d = self.dims_of(dim);
        match self.kind {
            CodecKind::Pq => format!("pq{}/{d}", self.m.unwrap_or(0)),
            k => format!("{}/{d}", k.name()),
        }
    }
}

/// Validates a dense field's tier settings.
pub(crate) fn validate(
    name: &str,
    dim: usize,
    matryoshka: &[usize],
    codecs: &[CodecConfig],
) -> Result<(), StorageError> {
    let bad = |m: String| Err(StorageError::Schema(format!("field {name:?}: {m}")));
    for w in matryoshka.windows(2) {
        if w[0] >= w[1] {
            return bad(format!(
                "matryoshka levels must be strictly ascending, got {matryoshka:?}"
            ));
        }
    }
    if let Some(&l) = matryoshka.iter().find(|&&l| l == 0 || l > dim) {
        return bad(format!("matryoshka level {l} is not in 1..={dim}"));
    }
    for (i, c) in codecs.iter().enumerate() {
        let d = c.dims_of(dim);
        if d == 0 || d > dim {
            return bad(format!("codecs[{i}]: dims {d} is not in 1..={dim}"));
        }
        match (c.kind, c.m) {
            (CodecKind::Pq, None) => {
                return bad(format!("codecs[{i}]: pq needs `m` (sub-spaces)"));
            }
            (CodecKind::Pq, Some(m)) if m == 0 || d % m != 0 => {
                return bad(format!(
                    "codecs[{i}]: pq m = {m} must divide the {d} encoded dimensions"
                ));
            }
            (CodecKind::Int8 | CodecKind::Binary, Some(_)) => {
                return bad(format!("codecs[{i}]: `m` applies to pq only"));
            }
            _ => {}
        }
        if codecs[..i]
            .iter()
            .any(|o| o.kind == c.kind && o.dims_of(dim) == d)
        {
            return bad(format!(
                "codecs[{i}]: {} on {d} dimensions is declared twice",
                c.kind.name()
            ));
        }
    }
    Ok(())
}

/// Where a dense field's bytes are: RAM (codes, graphs, vectors of the `ram` tier and of the
/// mutable segment) and disk (memory-mapped vectors), in total and per stored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenseTierInfo {
    /// Field name.
    pub field: String,
    /// Dimensions.
    pub dim: usize,
    /// Tier of the full vectors in sealed segments.
    pub vectors: VectorTier,
    /// Declared codecs: label and bytes per vector.
    pub codecs: Vec<(String, usize)>,
    /// Rows stored (sealed and mutable, live or not yet compacted away).
    pub rows: usize,
    /// Bytes of codes (and codec tables) in RAM.
    pub ram_codes: usize,
    /// Bytes of HNSW graphs in RAM.
    pub ram_graph: usize,
    /// Bytes of full vectors in RAM (`ram` tier, plus the mutable segment's).
    pub ram_vectors: usize,
    /// Bytes of full vectors memory-mapped from disk.
    pub disk_vectors: usize,
    /// All RAM bytes divided by `rows`.
    pub ram_bytes_per_vector: f64,
    /// Disk bytes divided by `rows`.
    pub disk_bytes_per_vector: f64,
}

/// Tier figures of every dense field in `snap`.
pub(crate) fn dense_info(snap: &crate::Snapshot) -> Vec<DenseTierInfo> {
    let m = &snap.version.mutable;
    snap.schema
        .dense_fields()
        .into_iter()
        .map(|f| {
            let (mut codes, mut graph, mut ram, mut disk, mut rows) = (0, 0, 0, 0, 0);
            for seg in &snap.version.segments {
                let (c, g, v) = seg.ram_bytes(&f.name);
                codes += c;
                graph += g;
                ram += v;
                disk += seg.mapped_bytes(&f.name);
                rows += seg.rows();
            }
            rows += m.rows();
            ram += m
                .chunks()
                .iter()
                .filter_map(|c| c.vectors(&f.name))
                .map(|v| v.as_slice().len() * 4)
                .sum::<usize>();
            let per = |b: usize| {
                if rows > 0 {
                    b as f64 / rows as f64
                } else {
                    0.0
                }
            };
            DenseTierInfo {
                codecs: f
                    .codecs
                    .iter()
                    .map(|c| (c.label(f.dim), c.code_bytes(f.dim)))
                    .collect(),
                field: f.name,
                dim: f.dim,
                vectors: f.vectors,
                rows,
                ram_codes: codes,
                ram_graph: graph,
                ram_vectors: ram,
                disk_vectors: disk,
                ram_bytes_per_vector: per(codes + graph + ram),
                disk_bytes_per_vector: per(disk),
            }
        })
        .collect()
}
