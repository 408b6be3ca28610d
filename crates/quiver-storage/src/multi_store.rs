//! A sealed segment's multi fields: *which documents' vector sets score best against these query
//! vectors?* The files of each field (see `multi.rs` for the layout) opened as one
//! [`SegmentMulti`], which answers as a [`MultiIndex`].

use crate::multi::MultiColumn;
use crate::reader::MultiIndex;
use crate::schema::Schema;
use crate::segment::Progress;
use crate::StorageError;
use memmap2::Mmap;
use quiver_index::{flat, Hnsw, MultiVectors, Neighbor, RowFilter, Vectors};
use quiver_linalg::Metric;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A sealed segment's multi field: mmap-ed vectors, offsets, raw counts, FDEs and their graph.
pub(crate) struct SegmentMulti {
    data: Option<Mmap>,
    offsets: Vec<u64>,
    raw: Vec<u32>,
    dim: usize,
    fde: Option<(Option<Mmap>, usize)>,
    graph: Option<Hnsw>,
}

fn f32_view(m: &Option<Mmap>) -> &[f32] {
    let Some(m) = m else {
        return &[];
    };
    // SAFETY: the mapping is page-aligned (so 4-byte aligned), its length was checked to be a
    // multiple of 4 at open, f32 has no invalid bit patterns, and files are little-endian which is
    // asserted at compile time for this crate (see lib.rs).
    unsafe { std::slice::from_raw_parts(m.as_ptr() as *const f32, m.len() / 4) }
}

impl SegmentMulti {
    /// The vectors of every row.
    pub(crate) fn vectors(&self) -> Option<MultiVectors<'_>> {
        MultiVectors::new(f32_view(&self.data), &self.offsets, self.dim)
    }

    /// FDEs and their graph.
    pub(crate) fn fde(&self) -> Option<(Vectors<'_>, Option<&Hnsw>)> {
        self.fde
            .as_ref()
            .map(|(m, d)| (Vectors::new(f32_view(m), *d), self.graph.as_ref()))
    }

    /// Raw (pre-pruning) counts.
    pub(crate) fn raw(&self) -> &[u32] {
        &self.raw
    }

    /// Bytes of the FDE graph.
    pub(crate) fn graph_bytes(&self) -> usize {
        self.graph.as_ref().map_or(0, |g| g.stats().bytes)
    }
}

/// Writes the multi files of a segment: vectors, index, and (MUVERA on) FDEs and their HNSW.
pub(crate) fn write_segment_files(
    schema: &Schema,
    dir: &Path,
    rows: usize,
    cols: &BTreeMap<String, MultiColumn>,
    files: &mut BTreeMap<String, crate::segment::FileMeta>,
    progress: &dyn Progress,
) -> Result<(), StorageError> {
    for f in schema.multi_fields() {
        let empty = MultiColumn::new(f.dim);
        let col = cols.get(&f.name).unwrap_or(&empty);
        if col.raw.len() != rows || col.vectors.offsets.len() != rows + 1 {
            return Err(StorageError::Corrupt {
                file: dir.display().to_string(),
                msg: format!(
                    "multi field {}: {} sets for {rows} rows",
                    f.name,
                    col.raw.len()
                ),
            });
        }
        let bytes: Vec<u8> = col
            .vectors
            .data
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        crate::segment::write_file(dir, &format!("multi.{}.f32", f.name), &bytes, files)?;
        let mut idx = Vec::with_capacity((rows + 1) * 8 + rows * 4);
        for o in &col.vectors.offsets {
            idx.extend_from_slice(&o.to_le_bytes());
        }
        for r in &col.raw {
            idx.extend_from_slice(&r.to_le_bytes());
        }
        crate::segment::write_file(dir, &format!("multi.{}.idx", f.name), &idx, files)?;
        if let Some(enc) = f.encoder()? {
            progress.start(&format!("MUVERA {} ({rows} sets)", f.name), rows as u64);
            let fdes = enc.encode_documents(col.vectors.view());
            progress.inc(rows as u64);
            progress.finish();
            let bytes: Vec<u8> = fdes.iter().flat_map(|x| x.to_le_bytes()).collect();
            crate::segment::write_file(dir, &format!("fde.{}.f32", f.name), &bytes, files)?;
            if let (Some(params), true) = (f.fde_hnsw(), rows > 0) {
                progress.start(
                    &format!("HNSW {} FDEs ({rows} vectors)", f.name),
                    rows as u64,
                );
                let g = Hnsw::build_with_progress(
                    Vectors::new(&fdes, enc.out_dim()),
                    Metric::Dot,
                    params,
                    0x4D55_5645 ^ rows as u64,
                    &|n| progress.inc(n),
                );
                progress.finish();
                crate::segment::write_file(
                    dir,
                    &format!("hnsw.fde.{}.bin", f.name),
                    &g.to_bytes(),
                    files,
                )?;
            }
        }
    }
    Ok(())
}

/// Opens the multi files of a segment from its verified mappings (removed from `maps`).
pub(crate) fn open_segment_files(
    schema: &Schema,
    dir: &Path,
    rows: usize,
    maps: &mut HashMap<String, Mmap>,
) -> Result<HashMap<String, SegmentMulti>, StorageError> {
    let mut out = HashMap::new();
    for f in schema.multi_fields() {
        let corrupt = |name: &str, msg: String| StorageError::Corrupt {
            file: dir.join(name).display().to_string(),
            msg,
        };
        let idx_name = format!("multi.{}.idx", f.name);
        let idx_len = (rows + 1) * 8 + rows * 4;
        let idx = maps
            .remove(&idx_name)
            .ok_or_else(|| corrupt(&idx_name, "missing from segment".into()))?;
        if idx.len() != idx_len {
            return Err(corrupt(
                &idx_name,
                format!("{} bytes for {rows} rows, expected {idx_len}", idx.len()),
            ));
        }
        let offsets: Vec<u64> = idx[..(rows + 1) * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let raw: Vec<u32> = idx[(rows + 1) * 8..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let data_name = format!("multi.{}.f32", f.name);
        // An empty file is never mapped (see Segment::open); an empty mapping stands in for it.
        let data = maps.remove(&data_name);
        let data_len = data.as_ref().map_or(0, |m| m.len());
        let total = offsets.last().copied().unwrap_or(0) as usize;
        if offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || total.checked_mul(f.dim * 4) != Some(data_len)
        {
            return Err(corrupt(
                &idx_name,
                format!(
                    "offsets do not describe {} bytes of {}-dim vectors",
                    data_len, f.dim
                ),
            ));
        }
        let mut fde = None;
        let mut graph = None;
        if let Some(enc) = f.encoder()? {
            let name = format!("fde.{}.f32", f.name);
            let od = enc.out_dim();
            let m = maps.remove(&name);
            let m_len = m.as_ref().map_or(0, |m| m.len());
            if m_len != rows * od * 4 {
                return Err(corrupt(
                    &name,
                    format!("{m_len} bytes for {rows} rows of dim {od}"),
                ));
            }
            if f.fde_hnsw().is_some() && rows > 0 {
                let gname = format!("hnsw.fde.{}.bin", f.name);
                let raw = maps
                    .remove(&gname)
                    .ok_or_else(|| corrupt(&gname, "missing from segment".into()))?;
                let g = Hnsw::from_bytes(&raw).map_err(|e| corrupt(&gname, e.to_string()))?;
                if g.capacity() != rows {
                    return Err(corrupt(
                        &gname,
                        format!("graph of {} nodes for {rows} rows", g.capacity()),
                    ));
                }
                graph = Some(g);
            }
            fde = Some((m, od));
        }
        out.insert(
            f.name.clone(),
            SegmentMulti {
                data,
                offsets,
                raw,
                dim: f.dim,
                fde,
                graph,
            },
        );
    }
    Ok(out)
}

/// Offsets were checked at open (monotone, from 0, within the data), so rows and sets are read
/// without building (and re-checking) a `MultiVectors` per call.
impl MultiIndex for SegmentMulti {
    fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn set(&self, row: u32) -> Vectors<'_> {
        let r = row as usize;
        let data = f32_view(&self.data);
        match (self.offsets.get(r), self.offsets.get(r + 1)) {
            (Some(&a), Some(&b)) => data
                .get(a as usize * self.dim..b as usize * self.dim)
                .map_or(Vectors::new(&[], self.dim), |v| Vectors::new(v, self.dim)),
            _ => Vectors::new(&[], self.dim),
        }
    }

    fn raw(&self, row: u32) -> u32 {
        self.raw.get(row as usize).copied().unwrap_or(0)
    }

    fn fde_candidates(
        &self,
        qf: &[f32],
        n: usize,
        ef: usize,
        allowed: &dyn RowFilter,
    ) -> Option<Vec<Neighbor>> {
        let (fdes, graph) = self.fde()?;
        Some(match graph {
            Some(g) => g.search(fdes, qf, n, ef, allowed),
            None => flat::search(fdes, Metric::Dot, qf, n, allowed),
        })
    }
}
