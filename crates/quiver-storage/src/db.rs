//! A database: a directory of collections, opened for writing by one process at a time.
//!
//! ```text
//! <db>/LOCK                      held with an exclusive OS file lock while open
//! <db>/collections/<name>/       one directory per collection (collection.rs)
//! ```

use crate::collection::Collection;
use crate::schema::Schema;
use crate::{io_err, StorageError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open database directory.
pub struct Database {
    dir: PathBuf,
    _lock: File,
    open: Mutex<BTreeMap<String, Arc<Collection>>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("dir", &self.dir).finish()
    }
}

fn valid_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_string()))
    }
}

impl Database {
    /// Opens (creating if needed) the database at `dir`, taking its write lock. A second process
    /// (or a second `open` in this one) gets [`StorageError::Locked`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Database, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("collections")).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: dir.display().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StorageError::Io {
                    path: lock_path.display().to_string(),
                    source: e,
                })
            }
        }
        // Leftovers of interrupted create/drop.
        let cdir = dir.join("collections");
        for e in std::fs::read_dir(&cdir).map_err(io_err(&cdir))? {
            let e = e.map_err(io_err(&cdir))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                std::fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
            }
        }
        Ok(Database {
            dir,
            _lock: lock,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn cdir(&self, name: &str) -> PathBuf {
        self.dir.join("collections").join(name)
    }

    /// Creates a collection (atomically: a temp directory renamed into place).
    pub fn create_collection(
        &self,
        name: &str,
        schema: &Schema,
    ) -> Result<Arc<Collection>, StorageError> {
        valid_name(name)?;
        schema.validate()?;
        let dest = self.cdir(name);
        if dest.exists() {
            return Err(StorageError::CollectionExists(name.to_string()));
        }
        let tmp = self
            .dir
            .join("collections")
            .join(format!(".creating-{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Collection::create_in(&tmp, schema)?;
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        crate::segment::sync_dir(&self.dir.join("collections"))?;
        self.collection(name)
    }

    /// Opens a collection (cached: the same `Arc` on every call).
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>, StorageError> {
        valid_name(name)?;
        let mut open = self.open.lock();
        if let Some(c) = open.get(name) {
            return Ok(c.clone());
        }
        let dir = self.cdir(name);
        if !dir.join("schema.json").exists() {
            return Err(StorageError::CollectionNotFound(name.to_string()));
        }
        let c = Arc::new(Collection::open(name, &dir)?);
        open.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Names of all collections.
    pub fn list_collections(&self) -> Result<Vec<String>, StorageError> {
        let cdir = self.dir.join("collections");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&cdir).map_err(io_err(&cdir))? {
            let e = e.map_err(io_err(&cdir))?;
            let n = e.file_name().to_string_lossy().to_string();
            if !n.starts_with('.') && e.path().join("schema.json").exists() {
                out.push(n);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a collection and its files.
    pub fn drop_collection(&self, name: &str) -> Result<(), StorageError> {
        valid_name(name)?;
        let dir = self.cdir(name);
        if !dir.exists() {
            return Err(StorageError::CollectionNotFound(name.to_string()));
        }
        if let Some(c) = self.open.lock().remove(name) {
            c.mark_dropped();
        }
        let tomb = self
            .dir
            .join("collections")
            .join(format!(".dropping-{name}"));
        std::fs::rename(&dir, &tomb).map_err(io_err(&dir))?;
        crate::segment::sync_dir(&self.dir.join("collections"))?;
        std::fs::remove_dir_all(&tomb).map_err(io_err(&tomb))
    }
}
