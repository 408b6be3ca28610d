//! `manifest.json`: which sealed segments make up a collection, and where the write-ahead log
//! starts. Replaced atomically (`manifest.json.tmp`, fsync, rename, fsync of the directory).
//!
//! ```text
//! {"format": 2, "segments": ["seg-…", …], "flushed_seq": S, "next_segment": N,
//!  "wal_gen": G, "deletes": {"seg-…": "seg-….<gen>.del"}, "resolved": true}
//! ```
//! - `flushed_seq`: every write up to S is in the listed segments (log records at or below it are
//!   skipped on replay, deletes excepted).
//! - `wal_gen`: the first log generation to replay; every later one is replayed too.
//! - `deletes`: the rows of each segment deleted or replaced by writes up to S (`deletes.rs`).
//!
//! Format 1 (before the log) had no `wal_gen`; its recent writes live in `wal.redb` (`legacy.rs`).

use crate::segment::sync_dir;
use crate::{io_err, StorageError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The format this version writes.
pub(crate) const FORMAT: u32 = 2;

/// The manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub segments: Vec<String>,
    pub flushed_seq: u64,
    pub next_segment: u64,
    #[serde(default)]
    pub wal_gen: u64,
    /// Deletes file (in `deletes/`) of each segment that has deleted or replaced rows.
    #[serde(default)]
    pub deletes: std::collections::BTreeMap<String, String>,
    /// Whether `deletes` is complete: every sealed row deleted or replaced before `flushed_seq`
    /// is in it. Otherwise (format 1) open resolves ids across segments and writers complete it.
    #[serde(default)]
    pub resolved: bool,
}

impl Manifest {
    /// The manifest of a new, empty collection.
    pub(crate) fn new() -> Manifest {
        Manifest {
            format: FORMAT,
            wal_gen: 1,
            resolved: true,
            ..Default::default()
        }
    }
}

/// Reads `dir/manifest.json`. A missing manifest is an empty collection of the current format,
/// unless `segments/` holds data (then it is damage, not emptiness).
pub(crate) fn read(dir: &Path) -> Result<Manifest, StorageError> {
    let mp = dir.join("manifest.json");
    match std::fs::read(&mp) {
        Ok(b) => {
            let m: Manifest = serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt {
                file: mp.display().to_string(),
                msg: e.to_string(),
            })?;
            if m.format == 0 || m.format > FORMAT {
                return Err(StorageError::Corrupt {
                    file: mp.display().to_string(),
                    msg: format!(
                        "collection format {} (this version reads 1 to {FORMAT})",
                        m.format
                    ),
                });
            }
            Ok(m)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_segments = std::fs::read_dir(dir.join("segments"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if has_segments {
                return Err(StorageError::Corrupt {
                    file: mp.display().to_string(),
                    msg: "missing, but segments/ holds data; refusing to guess".into(),
                });
            }
            Ok(Manifest::new())
        }
        Err(e) => Err(io_err(&mp)(e)),
    }
}

/// Replaces `dir/manifest.json` atomically and durably.
pub(crate) fn write(dir: &Path, m: &Manifest) -> Result<(), StorageError> {
    let path = dir.join("manifest.json");
    let tmp = dir.join("manifest.json.tmp");
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| StorageError::Io {
        path: tmp.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}
