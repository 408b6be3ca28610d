//! A sealed segment's files as its sections read them: mapped on demand and checked against
//! `meta.json` (length at open, xxh3-64 on first use), with failures kept per section.

use crate::segment_write::{corrupt, FileMeta};
use crate::{io_err, StorageError};
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A section that failed its checks: the file and what was wrong.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) file: String,
    pub(crate) msg: String,
}

impl From<StorageError> for Failed {
    fn from(e: StorageError) -> Failed {
        match e {
            StorageError::Corrupt { file, msg } => Failed { file, msg },
            StorageError::Io { path, source } => Failed {
                file: path,
                msg: source.to_string(),
            },
            other => Failed {
                file: String::new(),
                msg: other.to_string(),
            },
        }
    }
}

impl Failed {
    pub(crate) fn error(&self) -> StorageError {
        StorageError::Corrupt {
            file: self.file.clone(),
            msg: self.msg.clone(),
        }
    }
}

/// A section read on first use: its value, or why it could not be read.
pub(crate) type Section<T> = OnceLock<Result<T, Failed>>;

/// The failure of a section that was read and failed, if any.
pub(crate) fn failed<T>(c: &Section<T>) -> Option<&Failed> {
    c.get().and_then(|r| r.as_ref().err())
}

pub(crate) fn map_file(path: &Path) -> Result<Mmap, StorageError> {
    let f = File::open(path).map_err(io_err(path))?;
    // SAFETY: sealed segment files are never modified after they are renamed into place (they are
    // only ever deleted, which keeps existing mappings valid on POSIX systems).
    unsafe { Mmap::map(&f) }.map_err(io_err(path))
}

/// The files of one sealed segment, as listed in its `meta.json`.
pub(crate) struct SegmentFiles {
    pub(crate) dir: PathBuf,
    pub(crate) files: BTreeMap<String, FileMeta>,
}

impl SegmentFiles {
    /// Bytes of `name` (0 when the segment has no such file).
    pub(crate) fn bytes(&self, name: &str) -> usize {
        self.files.get(name).map_or(0, |f| f.bytes as usize)
    }

    /// The mapping of `fname` without checking its contents (`None`: an empty file).
    pub(crate) fn mapped(&self, fname: &str) -> Result<Option<Mmap>, StorageError> {
        let path = self.dir.join(fname);
        match self.files.get(fname) {
            None => Err(corrupt(&path, "missing from segment")),
            Some(f) if f.bytes == 0 => Ok(None),
            Some(_) => map_file(&path).map(Some),
        }
    }

    /// The mapping of `fname` after checking it against `meta.json` (`None`: an empty file).
    pub(crate) fn checked(&self, fname: &str) -> Result<Option<Mmap>, StorageError> {
        let path = self.dir.join(fname);
        let fm = self
            .files
            .get(fname)
            .ok_or_else(|| corrupt(&path, "missing from segment"))?;
        let m = if fm.bytes == 0 {
            None
        } else {
            Some(map_file(&path)?)
        };
        let sum = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(m.as_deref().unwrap_or(&[]))
        );
        if sum != fm.xxh3 {
            return Err(corrupt(
                &path,
                format!("checksum mismatch: {sum}, expected {}", fm.xxh3),
            ));
        }
        Ok(m)
    }

    /// Checked mappings of every file whose name starts with `prefix`.
    pub(crate) fn checked_all(&self, prefix: &str) -> Result<HashMap<String, Mmap>, StorageError> {
        let mut out = HashMap::new();
        for fname in self.files.keys().filter(|n| n.starts_with(prefix)) {
            if let Some(m) = self.checked(fname)? {
                out.insert(fname.clone(), m);
            }
        }
        Ok(out)
    }
}
