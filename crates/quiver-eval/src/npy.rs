//! Minimal `.npy` (NumPy format versions 1–3) reader and writer for little-endian `<f4` and `<i4`
//! 2-D arrays (C or Fortran order on read; C order on write): the exchange format between `quiver bench` and the peers in `bench/compare`.

use std::io::{Read, Write};
use std::path::Path;

/// Errors reading or writing `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a supported `.npy` array.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

/// A 2-D array read from a `.npy` file.
#[derive(Debug, Clone)]
pub struct Array2<T> {
    /// Row count.
    pub rows: usize,
    /// Column count.
    pub cols: usize,
    /// Row-major data.
    pub data: Vec<T>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> NpyError + '_ {
    move |source| NpyError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn fmt_err(path: &Path, msg: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Rows, columns, whether the data is column-major (Fortran order), and the raw data bytes.
type Raw = (usize, usize, bool, Vec<u8>);

fn read_raw(path: &Path, want_descr: &str) -> Result<Raw, NpyError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err(path))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt_err(path, "not a .npy file (bad magic)"));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(fmt_err(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| fmt_err(path, "truncated header"))?;
    let header = String::from_utf8_lossy(header);
    if !header.contains(&format!("'descr': '{want_descr}'")) {
        return Err(fmt_err(
            path,
            format!("expected dtype {want_descr}, header is {header}"),
        ));
    }
    let fortran = header.contains("'fortran_order': True");
    let shape_start = header
        .find("'shape': (")
        .ok_or_else(|| fmt_err(path, "no shape in header"))?
        + 10;
    let shape_end = header[shape_start..]
        .find(')')
        .ok_or_else(|| fmt_err(path, "bad shape"))?
        + shape_start;
    let dims: Vec<usize> = header[shape_start..shape_end]
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| fmt_err(path, format!("bad shape entry {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims.as_slice() {
        [r, c] => (*r, *c),
        [r] => (*r, 1),
        _ => {
            return Err(fmt_err(
                path,
                format!("expected a 2-D array, shape {dims:?}"),
            ))
        }
    };
    let data = bytes.split_off(hstart + hlen);
    if data.len() != rows * cols * 4 {
        return Err(fmt_err(
            path,
            format!(
                "truncated: {} data bytes for shape ({rows}, {cols})",
                data.len()
            ),
        ));
    }
    Ok((rows, cols, fortran, data))
}

/// Decodes 4-byte little-endian elements into row-major order.
fn decode<T: Copy + Default>(
    rows: usize,
    cols: usize,
    fortran: bool,
    raw: &[u8],
    f: impl Fn([u8; 4]) -> T,
) -> Vec<T> {
    let vals: Vec<T> = raw
        .chunks_exact(4)
        .map(|c| f([c[0], c[1], c[2], c[3]]))
        .collect();
    if !fortran {
        return vals;
    }
    let mut out = vec![T::default(); rows * cols];
    for c in 0..cols {
        for r in 0..rows {
            out[r * cols + c] = vals[c * rows + r];
        }
    }
    out
}

/// Reads a float32 2-D array.
pub fn read_f32(path: &Path) -> Result<Array2<f32>, NpyError> {
    let (rows, cols, fortran, raw) = read_raw(path, "<f4")?;
    let data = decode(rows, cols, fortran, &raw, f32::from_le_bytes);
    Ok(Array2 { rows, cols, data })
}

/// Reads an int32 2-D array.
pub fn read_i32(path: &Path) -> Result<Array2<i32>, NpyError> {
    let (rows, cols, fortran, raw) = read_raw(path, "<i4")?;
    let data = decode(rows, cols, fortran, &raw, i32::from_le_bytes);
    Ok(Array2 { rows, cols, data })
}

fn write_raw(
    path: &Path,
    descr: &str,
    rows: usize,
    cols: usize,
    payload: &[u8],
) -> Result<(), NpyError> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let tmp = path.with_extension("npy.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(b"\x93NUMPY\x01\x00").map_err(io_err(&tmp))?;
    f.write_all(&(header.len() as u16).to_le_bytes())
        .map_err(io_err(&tmp))?;
    f.write_all(header.as_bytes()).map_err(io_err(&tmp))?;
    f.write_all(payload).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes a float32 2-D array (atomically: temp file then rename).
pub fn write_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result<(), NpyError> {
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_raw(path, "<f4", rows, cols, &bytes)
}

/// Writes an int32 2-D array (atomically).
pub fn write_i32(path: &Path, rows: usize, cols: usize, data: &[i32]) -> Result<(), NpyError> {
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_raw(path, "<i4", rows, cols, &bytes)
}
