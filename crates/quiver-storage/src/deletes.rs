//! Deletes of sealed rows, persisted when a seal retires the log that recorded them.
//!
//! ```text
//! deletes/<segment>.<gen:016x>.del   magic "QVDEL001" | rows u64 | bitset (rows+7)/8 bytes | xxh3-64
//! ```
//!
//! A sealed segment never changes, so the rows deleted or replaced since it was written are kept
//! beside it: the manifest names one deletes file per segment that has any (a new file, never an
//! overwrite, each time the set grows at a seal). Opening reads these bit sets (an eighth of a
//! byte per row) instead of resolving every id of every segment.

use crate::segment::{corrupt, sync_dir};
use crate::{io_err, StorageError};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"QVDEL001";

/// The folder of deletes files of collection directory `dir`.
pub(crate) fn deletes_dir(dir: &Path) -> PathBuf {
    dir.join("deletes")
}

/// Writes the deleted `rows` of segment `segment` (of `n` rows) as generation `gen`; returns the
/// file name (relative to [`deletes_dir`]). Durable on return.
pub(crate) fn write(
    dir: &Path,
    segment: &str,
    gen: u64,
    n: usize,
    rows: impl Iterator<Item = u32>,
) -> Result<String, StorageError> {
    let dd = deletes_dir(dir);
    std::fs::create_dir_all(&dd).map_err(io_err(&dd))?;
    let name = format!("{segment}.{gen:016x}.del");
    let path = dd.join(&name);
    let mut bytes = Vec::with_capacity(24 + n.div_ceil(8));
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(n as u64).to_le_bytes());
    let start = bytes.len();
    bytes.resize(start + n.div_ceil(8), 0);
    for r in rows {
        bytes[start + r as usize / 8] |= 1 << (r % 8);
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    // Written aside and renamed: a later write of the same name (a seal and a merge in one log
    // generation) replaces the file whole, so a manifest never names a torn one.
    let tmp = dd.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(&dd)?;
    Ok(name)
}

/// The deleted rows recorded in `name` for a segment of `n` rows.
pub(crate) fn read(dir: &Path, name: &str, n: usize) -> Result<Vec<u32>, StorageError> {
    let path = deletes_dir(dir).join(name);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let body_len = 16 + n.div_ceil(8);
    if bytes.len() != body_len + 8 || &bytes[..8] != MAGIC {
        return Err(corrupt(&path, format!("not a deletes file for {n} rows")));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[body_len..]);
    if xxhash_rust::xxh3::xxh3_64(&bytes[..body_len]) != u64::from_le_bytes(a) {
        return Err(corrupt(&path, "checksum mismatch"));
    }
    a.copy_from_slice(&bytes[8..16]);
    if u64::from_le_bytes(a) != n as u64 {
        return Err(corrupt(
            &path,
            format!("written for another row count, not {n}"),
        ));
    }
    let bits = &bytes[16..body_len];
    Ok((0..n as u32)
        .filter(|&r| bits[r as usize / 8] & (1 << (r % 8)) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = [0u32, 7, 8, 63, 99];
        let name = super::write(dir.path(), "seg-1", 3, 100, rows.iter().copied()).expect("write");
        assert_eq!(super::read(dir.path(), &name, 100).expect("read"), rows);
        assert!(super::read(dir.path(), &name, 101).is_err());
        let p = super::deletes_dir(dir.path()).join(&name);
        let mut b = std::fs::read(&p).expect("bytes");
        b[17] ^= 4;
        std::fs::write(&p, b).expect("write");
        let e = super::read(dir.path(), &name, 100)
            .expect_err("damage")
            .to_string();
        assert!(e.contains(&name) && e.contains("checksum"), "{e}");
    }
}
