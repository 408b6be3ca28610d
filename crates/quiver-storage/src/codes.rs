//! Compact codes of sealed segments: *which small codes stand in for the full vectors in RAM?*
//!
//! For every codec a dense field declares (see [`crate::tiers`]) a segment, when sealed, trains the
//! codec on its own rows (the `dims`-prefix, renormalised for cosine), encodes every row and writes
//!
//! ```text
//! codes.<field>.<i>.bin   u64 codec_len | codec (quiver-quant format) | rows x code_len bytes
//! ```
//!
//! checksummed in `meta.json` like the other files. With `rotation = "pca"` the segment also
//! keeps `rot.<field>.bin` (quiver-linalg `Pca` format) and the codes encode prefixes of the
//! rotated vectors. On first use the codes are read into RAM (and checked); the full vectors stay
//! where the field's tier puts them.

use crate::schema::DenseField;
use crate::segment::{corrupt, write_file, FileMeta};
use crate::tiers::{CodecConfig, CodecKind, Rotation};
use crate::StorageError;
use memmap2::Mmap;
use quiver_linalg::pca::Pca;
use quiver_quant::prefix::prefix_all;
use quiver_quant::{Codec, CodecSpec};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The codes of one dense field in one segment, and the rotation they were computed under.
#[derive(Debug, Default)]
pub struct SegmentCodes {
    /// PCA rotation applied before prefixes were taken (`rotation = "pca"`).
    pub rotation: Option<Pca>,
    /// One entry per declared codec, in schema order.
    pub codecs: Vec<FieldCodes>,
}

/// One trained codec of a field in one segment, with the codes of every row (in RAM).
pub struct FieldCodes {
    /// The schema declaration these codes implement.
    pub config: CodecConfig,
    /// Dimensions encoded (the prefix length).
    pub dims: usize,
    /// The trained codec.
    pub codec: Codec,
    /// `rows x codec.code_len()` bytes, row-major.
    pub codes: Vec<u8>,
}

impl std::fmt::Debug for FieldCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCodes")
            .field("config", &self.config)
            .field("code_len", &self.codec.code_len())
            .finish()
    }
}

impl FieldCodes {
    /// Bytes in RAM: codes plus the codec's own tables.
    pub fn ram_bytes(&self) -> usize {
        self.codes.len() + self.codec.model_bytes()
    }
}

/// The quiver-quant spec of a schema codec declaration.
pub fn spec_of(c: &CodecConfig) -> CodecSpec {
    match c.kind {
        CodecKind::Int8 => CodecSpec::Int8,
        CodecKind::Binary => CodecSpec::Binary,
        CodecKind::Pq => CodecSpec::Pq {
            m: c.m.unwrap_or(1),
        },
    }
}

fn file_name(field: &str, i: usize) -> String {
    format!("codes.{field}.{i}.bin")
}

fn rotation_file(field: &str) -> String {
    format!("rot.{field}.bin")
}

/// Rows used to fit a segment's PCA rotation.
const PCA_SAMPLES: usize = 20_000;

/// Trains, encodes and writes the codes of `field` for a segment of `rows` rows.
pub(crate) fn write(
    dir: &Path,
    field: &DenseField,
    vectors: &[f32],
    rows: usize,
    seed: u64,
    files: &mut BTreeMap<String, FileMeta>,
) -> Result<(), StorageError> {
    // A rotation is fitted even for a field without codecs: its prefixes are taken of R·v.
    if rows == 0 || (field.codecs.is_empty() && field.rotation == Rotation::None) {
        return Ok(());
    }
    let rotated;
    let vectors = if field.rotation == Rotation::Pca {
        let rpath = dir.join(rotation_file(&field.stored));
        let pca = Pca::fit(vectors, field.dim, PCA_SAMPLES, seed)
            .map_err(|e| corrupt(&rpath, format!("fitting the PCA rotation: {e}")))?;
        write_file(dir, &rotation_file(&field.stored), &pca.to_bytes(), files)?;
        rotated = pca.apply_all(vectors);
        &rotated[..]
    } else {
        vectors
    };
    let path = |i| dir.join(file_name(&field.stored, i));
    for (i, c) in field.codecs.iter().enumerate() {
        let dims = c.dims_of(field.dim);
        let quant_err = |e: quiver_quant::QuantError| {
            corrupt(
                &path(i),
                format!("training {} codes: {e}", c.label(field.dim)),
            )
        };
        let prefix;
        let data = if dims == field.dim {
            vectors
        } else {
            prefix = prefix_all(vectors, field.dim, dims, field.metric).map_err(quant_err)?;
            &prefix[..]
        };
        let codec = Codec::train(spec_of(c), data, dims, field.metric, seed ^ i as u64)
            .map_err(quant_err)?;
        let codes = codec.encode_all(data).map_err(quant_err)?;
        let model = codec.to_bytes();
        let mut bytes = Vec::with_capacity(8 + model.len() + codes.len());
        bytes.extend_from_slice(&(model.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&model);
        bytes.extend_from_slice(&codes);
        write_file(dir, &file_name(&field.stored, i), &bytes, files)?;
    }
    Ok(())
}

/// Reads the codes of `field` from checked file images `maps` of a segment of `rows` rows.
pub(crate) fn open(
    dir: &Path,
    field: &DenseField,
    maps: &HashMap<String, Mmap>,
    rows: usize,
) -> Result<SegmentCodes, StorageError> {
    if rows == 0 || (field.codecs.is_empty() && field.rotation == Rotation::None) {
        return Ok(SegmentCodes::default());
    }
    let rotation = match field.rotation {
        Rotation::None => None,
        // Segments sealed before rotations were fitted for fields without codecs have none.
        Rotation::Pca
            if field.codecs.is_empty() && !maps.contains_key(&rotation_file(&field.stored)) =>
        {
            None
        }
        Rotation::Pca => {
            let name = rotation_file(&field.stored);
            let path = dir.join(&name);
            let raw = maps
                .get(&name)
                .ok_or_else(|| corrupt(&path, "missing from segment"))?;
            let pca = Pca::from_bytes(raw).map_err(|e| corrupt(&path, e.to_string()))?;
            if pca.dim() != field.dim {
                return Err(corrupt(
                    &path,
                    format!(
                        "rotation of dimension {}, field has {}",
                        pca.dim(),
                        field.dim
                    ),
                ));
            }
            Some(pca)
        }
    };
    let mut out = Vec::with_capacity(field.codecs.len());
    for (i, c) in field.codecs.iter().enumerate() {
        let name = file_name(&field.stored, i);
        let path = dir.join(&name);
        let raw = maps
            .get(&name)
            .ok_or_else(|| corrupt(&path, "missing from segment"))?;
        let head = raw
            .get(..8)
            .ok_or_else(|| corrupt(&path, "truncated header"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(head);
        let model_len = u64::from_le_bytes(a) as usize;
        let model = raw
            .get(8..8usize.saturating_add(model_len))
            .ok_or_else(|| corrupt(&path, "codec length beyond the file"))?;
        let codec = Codec::from_bytes(model).map_err(|e| corrupt(&path, e.to_string()))?;
        let dims = c.dims_of(field.dim);
        if codec.spec() != spec_of(c) || codec.dim() != dims {
            return Err(corrupt(
                &path,
                format!(
                    "holds {} on {} dimensions, the schema declares {}",
                    codec.spec().name(),
                    codec.dim(),
                    c.label(field.dim)
                ),
            ));
        }
        let codes = &raw[8 + model_len..];
        if codes.len() != rows * codec.code_len() {
            return Err(corrupt(
                &path,
                format!(
                    "{} code bytes for {rows} rows of {} bytes",
                    codes.len(),
                    codec.code_len()
                ),
            ));
        }
        out.push(FieldCodes {
            config: *c,
            dims,
            codec,
            codes: codes.to_vec(),
        });
    }
    Ok(SegmentCodes {
        rotation,
        codecs: out,
    })
}
