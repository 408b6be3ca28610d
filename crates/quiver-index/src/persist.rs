//! Serialized form of an [`Hnsw`] graph (little-endian):
//!
//! ```text
//! "QHNSW001" | metric u8 | m u32 | ef_construction u32 | ef_search u32 | seed u64 | capacity u64
//! | inserted u64 | has_entry u8 | entry u32 | top u8 | levels [u8; capacity]
//! | links0 [u32; capacity * (2m + 1)] | for each node with level > 0, for l in 1..=level: count u32, ids
//! ```
//! Integrity (checksums) is the storage layer's job; this layer checks structure: lengths, ids in
//! range, levels in range.

use crate::hnsw::{Hnsw, HnswParams};
use crate::IndexError;
use quiver_linalg::Metric;
use std::sync::atomic::Ordering::Relaxed;

const MAGIC: &[u8; 8] = b"QHNSW001";

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| IndexError::Corrupt(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, IndexError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

impl Hnsw {
    /// Serializes the graph (not the vectors).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.levels.len() + self.links0.len() * 4);
        out.extend_from_slice(MAGIC);
        out.push(metric_code(self.metric));
        out.extend_from_slice(&(self.params.m as u32).to_le_bytes());
        out.extend_from_slice(&(self.params.ef_construction as u32).to_le_bytes());
        out.extend_from_slice(&(self.params.ef_search as u32).to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&(self.levels.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.inserted.load(Relaxed) as u64).to_le_bytes());
        let entry = *self.entry.read();
        out.push(entry.is_some() as u8);
        out.extend_from_slice(&entry.map_or(0, |e| e.0).to_le_bytes());
        out.push(entry.map_or(0, |e| e.1));
        out.extend(self.levels.iter().map(|l| l.load(Relaxed)));
        for a in &self.links0 {
            out.extend_from_slice(&a.load(Relaxed).to_le_bytes());
        }
        for (i, lvl) in self.levels.iter().enumerate() {
            let lvl = lvl.load(Relaxed);
            if lvl == u8::MAX || lvl == 0 {
                continue;
            }
            let up = self.upper[i].read();
            for l in 0..lvl as usize {
                let list = up.get(l).map(|v| v.as_slice()).unwrap_or(&[]);
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for id in list {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a graph written by [`Hnsw::to_bytes`], checking its structure.
    pub fn from_bytes(buf: &[u8]) -> Result<Hnsw, IndexError> {
        let mut r = Reader { buf, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err(IndexError::Corrupt(
                "bad magic (not a Quiver HNSW graph)".into(),
            ));
        }
        let metric = match r.u8()? {
            0 => Metric::Cosine,
            1 => Metric::Dot,
            2 => Metric::L2,
            x => return Err(IndexError::Corrupt(format!("unknown metric code {x}"))),
        };
        let params = HnswParams {
            m: r.u32()? as usize,
            ef_construction: r.u32()? as usize,
            ef_search: r.u32()? as usize,
        };
        params
            .validate()
            .map_err(|e| IndexError::Corrupt(e.to_string()))?;
        let seed = r.u64()?;
        let cap = r.u64()? as usize;
        let inserted = r.u64()? as usize;
        let m0 = 2 * params.m;
        let min_len = cap.saturating_mul(1 + (m0 + 1) * 4);
        if min_len > buf.len() || inserted > cap {
            return Err(IndexError::Corrupt(format!(
                "capacity {cap} / inserted {inserted} inconsistent with {} bytes",
                buf.len()
            )));
        }
        let has_entry = r.u8()? != 0;
        let entry_id = r.u32()?;
        let top = r.u8()?;
        let g = Hnsw::with_capacity(metric, params, seed, cap);
        let levels = r.take(cap)?;
        for (a, &l) in g.levels.iter().zip(levels) {
            if l != u8::MAX && l > 16 {
                return Err(IndexError::Corrupt(format!("level {l} out of range")));
            }
            a.store(l, Relaxed);
        }
        let links = r.take(g.links0.len() * 4)?;
        let stride = g.m0 + 1;
        for (i, (a, b)) in g.links0.iter().zip(links.chunks_exact(4)).enumerate() {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let bad = if i % stride == 0 {
                v as usize > g.m0
            } else {
                v as usize >= cap
            };
            if bad {
                return Err(IndexError::Corrupt(format!(
                    "layer-0 link slot {i} holds {v}"
                )));
            }
            a.store(v, Relaxed);
        }
        for (i, &lvl) in levels.iter().enumerate() {
            if lvl == u8::MAX || lvl == 0 {
                continue;
            }
            let mut layers = Vec::with_capacity(lvl as usize);
            for _ in 0..lvl {
                let cnt = r.u32()? as usize;
                if cnt > params.m {
                    return Err(IndexError::Corrupt(format!(
                        "node {i}: {cnt} upper links > m"
                    )));
                }
                let mut list = Vec::with_capacity(cnt);
                for _ in 0..cnt {
                    let id = r.u32()?;
                    if id as usize >= cap {
                        return Err(IndexError::Corrupt(format!(
                            "node {i}: link {id} out of range"
                        )));
                    }
                    list.push(id);
                }
                layers.push(list);
            }
            *g.upper[i].write() = layers;
        }
        if r.pos != buf.len() {
            return Err(IndexError::Corrupt(format!(
                "{} trailing bytes",
                buf.len() - r.pos
            )));
        }
        if has_entry {
            if entry_id as usize >= cap || levels[entry_id as usize] != top {
                return Err(IndexError::Corrupt(
                    "entry point inconsistent with levels".into(),
                ));
            }
            *g.entry.write() = Some((entry_id, top));
        }
        g.inserted.store(inserted, Relaxed);
        Ok(g)
    }
}
