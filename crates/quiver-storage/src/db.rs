//! A database: a directory of collections, opened for writing by one process at a time and for
//! reading by any number of processes beside it.
//!
//! ```text
//! <db>/LOCK                      exclusive OS file lock of the one writer
//! <db>/READERS                   shared OS file lock of every read-only handle
//! <db>/collections/<name>/       one directory per collection (collection/)
//! ```
//!
//! The rule between them: a writer removes a file that a reader could still need (a segment
//! directory or log generation the manifest no longer lists, a dropped collection) only while it
//! can take `READERS` exclusively, i.e. while no read-only handle is open anywhere; otherwise the
//! file stays until a later seal, compaction or open finds the database unread. A reader takes its
//! shared lock before it reads a manifest, so everything that manifest names stays on disk for as
//! long as the reader is open. Readers never touch `LOCK`, and the writer never waits for readers.

use crate::collection::Collection;
use crate::schema::Schema;
use crate::{io_err, StorageError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `READERS` lock file: shared by read-only handles, tried exclusively by the writer before it
/// removes files a reader might use.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
}

impl Readers {
    fn file(&self) -> Result<File, StorageError> {
        File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.path)
            .or_else(|_| File::open(&self.path))
            .map_err(io_err(&self.path))
    }

    /// Runs `f` while holding `READERS` exclusively, if no read-only handle holds it; returns
    /// whether `f` ran.
    pub(crate) fn when_unread(
        &self,
        f: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        let file = self.file()?;
        match file.try_lock() {
            Ok(()) => {
                let r = f();
                let _ = file.unlock();
                r.map(|_| true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&self.path)(e)),
        }
    }

    /// Takes `READERS` shared (waiting out a writer's short cleanup) and returns the held file.
    fn share(&self) -> Result<File, StorageError> {
        let file = self.file()?;
        file.lock_shared().map_err(io_err(&self.path))?;
        Ok(file)
    }
}

/// An open database directory.
pub struct Database {
    dir: PathBuf,
    /// The held lock: `LOCK` (exclusive) for a writer, `READERS` (shared) for a reader.
    _lock: File,
    read_only: bool,
    readers: Arc<Readers>,
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

impl Drop for Database {
    /// Stops every open collection's background seals and merges (after the job each is doing,
    /// and a seal already asked for) before the lock is released, so no other writer can open
    /// the directory while they run.
    fn drop(&mut self) {
        for c in self.open.lock().values() {
            c.stop_maintenance();
        }
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
        let readers = Arc::new(Readers {
            path: dir.join("READERS"),
        });
        // Leftovers of interrupted create/drop.
        let cdir = dir.join("collections");
        readers.when_unread(|| {
            for e in std::fs::read_dir(&cdir).map_err(io_err(&cdir))? {
                let e = e.map_err(io_err(&cdir))?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    std::fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
                }
            }
            Ok(())
        })?;
        Ok(Database {
            dir,
            _lock: lock,
            read_only: false,
            readers,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// Opens the existing database at `dir` for reading, beside any writer: collections opened
    /// through it show what was committed when each was opened, change nothing on disk, and refuse
    /// writes with [`StorageError::ReadOnly`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Database, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let cdir = dir.join("collections");
        if !cdir.is_dir() {
            return Err(StorageError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a Quiver database (no collections/ folder)",
                ),
            });
        }
        let readers = Arc::new(Readers {
            path: dir.join("READERS"),
        });
        let lock = readers.share()?;
        Ok(Database {
            dir,
            _lock: lock,
            read_only: true,
            readers,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether this handle is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly {
                path: self.dir.display().to_string(),
            });
        }
        Ok(())
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
        self.writable()?;
        valid_name(name)?;
        schema.validate()?;
        schema.check_user_written()?;
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
        let c = Arc::new(Collection::open(
            name,
            &dir,
            self.read_only,
            self.readers.clone(),
        )?);
        c.start_maintenance();
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
        self.writable()?;
        valid_name(name)?;
        let dir = self.cdir(name);
        if !dir.exists() {
            return Err(StorageError::CollectionNotFound(name.to_string()));
        }
        // Not under the `open` lock: marking waits for a running seal or merge.
        let open = self.open.lock().remove(name);
        if let Some(c) = open {
            c.mark_dropped();
            c.stop_maintenance();
        }
        let tomb = self.dir.join("collections").join(format!(
            ".dropping-{name}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::rename(&dir, &tomb).map_err(io_err(&dir))?;
        crate::segment::sync_dir(&self.dir.join("collections"))?;
        // A reader may still use the files: then they go at the next writable open.
        self.readers
            .when_unread(|| std::fs::remove_dir_all(&tomb).map_err(io_err(&tomb)))?;
        Ok(())
    }
}
