//! Collections of format 1 kept recent writes in `wal.redb` (tables `docs`: key -> record,
//! `tombstones`: key -> seq, `meta`: `next_seq`). This module reads such a file, so that a
//! read-only open can serve it and a writable open can move it into the write-ahead log of
//! format 2 (`wal.rs`) and delete it. Fixture: `crates/quiver/tests/fixtures/format1`.

use crate::StorageError;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const DOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("docs");
const TOMBSTONES: TableDefinition<&[u8], u64> = TableDefinition::new("tombstones");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The contents of a format-1 `wal.redb`.
#[derive(Debug, Default)]
pub(crate) struct LegacyWal {
    /// (key, encoded record) of every document in the `docs` table.
    pub docs: Vec<(Vec<u8>, Vec<u8>)>,
    /// (key, seq) of every tombstone.
    pub tombstones: Vec<(Vec<u8>, u64)>,
    /// The `next_seq` counter (0 if absent).
    pub next_seq: u64,
}

fn err(path: &Path) -> impl Fn(redb::Error) -> StorageError + '_ {
    move |e| match e {
        redb::Error::DatabaseAlreadyOpen => StorageError::Locked {
            path: path.display().to_string(),
        },
        other => StorageError::Corrupt {
            file: path.display().to_string(),
            msg: other.to_string(),
        },
    }
}

fn read_tables(txn: &redb::ReadTransaction, path: &Path) -> Result<LegacyWal, StorageError> {
    let e = err(path);
    let mut out = LegacyWal::default();
    match txn.open_table(META) {
        Ok(t) => {
            out.next_seq = t
                .get("next_seq")
                .map_err(|x| e(x.into()))?
                .map(|v| v.value())
                .unwrap_or(0)
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(x) => return Err(e(x.into())),
    }
    match txn.open_table(TOMBSTONES) {
        Ok(t) => {
            for item in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = item.map_err(|x| e(x.into()))?;
                out.tombstones.push((k.value().to_vec(), v.value()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(x) => return Err(e(x.into())),
    }
    match txn.open_table(DOCS) {
        Ok(t) => {
            for item in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = item.map_err(|x| e(x.into()))?;
                out.docs.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(x) => return Err(e(x.into())),
    }
    Ok(out)
}

/// Reads `path`. `writable`: open it as redb's single writer (which repairs a file left by a
/// crash); otherwise as a read-only database (fails while an old-version writer holds it).
pub(crate) fn read(path: &Path, writable: bool) -> Result<LegacyWal, StorageError> {
    let e = err(path);
    if writable {
        let db = redb::Database::open(path).map_err(|x| e(x.into()))?;
        let txn = db.begin_read().map_err(|x| e(x.into()))?;
        read_tables(&txn, path)
    } else {
        let db = redb::ReadOnlyDatabase::open(path).map_err(|x| e(x.into()))?;
        let txn = db.begin_read().map_err(|x| e(x.into()))?;
        read_tables(&txn, path)
    }
}
