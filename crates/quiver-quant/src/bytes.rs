//! The serialised form of a codec (little-endian):
//!
//! ```text
//! "QCDC" | version u32 = 1 | kind u8 (1 int8, 2 binary, 3 pq) | metric u8 (0 cosine, 1 dot, 2 l2)
//!        | reserved u16 = 0 | dim u32 | codec parameters (see each codec's `write`)
//! ```
//!
//! Checksums are storage's job (segment files carry xxh3); this layer validates structure and
//! values so a corrupt block is an error, never a panic or a silently wrong codec.

use crate::QuantError;
use quiver_linalg::Metric;

const MAGIC: &[u8; 4] = b"QCDC";
const VERSION: u32 = 1;
pub(crate) const KIND_INT8: u8 = 1;
pub(crate) const KIND_BINARY: u8 = 2;
pub(crate) const KIND_PQ: u8 = 3;
/// Largest dimension accepted when reading (guards allocations driven by corrupt headers).
const MAX_DIM: usize = 1 << 16;

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(kind: u8, metric: Metric, dim: usize) -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.push(kind);
        buf.push(metric_code(metric));
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&(dim as u32).to_le_bytes());
        Writer { buf }
    }

    pub(crate) fn u32(&mut self, x: usize) {
        self.buf.extend_from_slice(&(x as u32).to_le_bytes());
    }

    pub(crate) fn f32s(&mut self, xs: &[f32]) {
        for x in xs {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the header; returns kind, metric, dim and a reader positioned after it.
    pub(crate) fn open(b: &'a [u8]) -> Result<(u8, Metric, usize, Reader<'a>), QuantError> {
        if b.len() < 16 || &b[..4] != MAGIC {
            return Err(QuantError::Corrupt(
                "bad magic: not a codec block (expected \"QCDC\")".into(),
            ));
        }
        let mut r = Reader { b, pos: 4 };
        let version = r.u32("version")?;
        if version != VERSION {
            return Err(QuantError::Corrupt(format!(
                "unsupported codec format version {version} (this build reads {VERSION})"
            )));
        }
        let kind = r.u8("kind")?;
        let metric = match r.u8("metric")? {
            0 => Metric::Cosine,
            1 => Metric::Dot,
            2 => Metric::L2,
            m => return Err(QuantError::Corrupt(format!("unknown metric code {m}"))),
        };
        r.pos += 2;
        let dim = r.u32("dim")? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(QuantError::Corrupt(format!(
                "dimension {dim} out of range 1..={MAX_DIM}"
            )));
        }
        Ok((kind, metric, dim, r))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], QuantError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(QuantError::Corrupt(format!(
                "truncated: {what} needs {n} bytes at offset {}, block has {}",
                self.pos,
                self.b.len()
            )));
        };
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, QuantError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, QuantError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// `n` finite floats.
    pub(crate) fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>, QuantError> {
        let bytes = n
            .checked_mul(4)
            .ok_or_else(|| QuantError::Corrupt(format!("{what}: length overflow")))?;
        let s = self.take(bytes, what)?;
        let v: Vec<f32> = s
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(QuantError::Corrupt(format!(
                "{what}: non-finite value at index {i}"
            )));
        }
        Ok(v)
    }

    pub(crate) fn finish(self) -> Result<(), QuantError> {
        if self.pos != self.b.len() {
            return Err(QuantError::Corrupt(format!(
                "{} trailing bytes after the codec",
                self.b.len() - self.pos
            )));
        }
        Ok(())
    }
}
