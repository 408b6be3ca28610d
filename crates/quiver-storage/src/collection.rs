//! A collection: schema + redb-backed mutable segment + sealed segments listed in a manifest.
//!
//! ```text
//! collections/<name>/
//!   schema.json
//!   wal.redb            tables: docs (key -> record), tombstones (key -> seq), meta (next_seq)
//!   manifest.json       {"segments": [...], "flushed_seq": S, "next_segment": N}  (tmp + rename)
//!   segments/seg-*/     immutable sealed segments (segment.rs)
//! ```
//!
//! Every write gets sequence numbers and is committed to redb (fsync) before it is acknowledged and
//! applied in memory. Readers take a [`Snapshot`]: the current version (segment list + mutable
//! segment) and the last committed sequence number; rows written or deleted later are invisible to
//! it. When the mutable segment reaches `mutable_max_rows` live rows it is sealed: written as a
//! segment, named in a new manifest (`flushed_seq` = the snapshot it holds), then the redb docs
//! table is cleared. Compaction merges all sealed segments into one, dropping deleted rows, and
//! clears the tombstones. A crash between any two steps is repaired on open by sequence numbers:
//! redb docs at or below `flushed_seq` are already sealed, unlisted segment directories are orphans.

use crate::doc::{DocId, Document, StoredDoc};
use crate::filter::Filter;
use crate::mutable::MutableSegment;
use crate::schema::Schema;
use crate::segment::{sync_dir, NoProgress, Progress, Segment, SegmentData, LIVE};
use crate::{io_err, StorageError};
use parking_lot::{Mutex, RwLock};
use quiver_index::Bitset;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("docs");
const TOMBSTONES: TableDefinition<&[u8], u64> = TableDefinition::new("tombstones");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Sealed segments beyond this count trigger a compaction after a seal.
const MAX_SEGMENTS: usize = 8;

/// Test hook: with `QUIVER_TEST_EVENTS=1` set, the automatic seal and compaction print
/// `quiver-event: seal-start|seal-end|seal-failed|compact-start|compact-end` on stderr, so crash
/// tests can prove where a SIGKILL landed. Otherwise one cached environment lookup, no output.
fn test_event(what: &str) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("QUIVER_TEST_EVENTS").is_some_and(|v| v == "1")) {
        eprintln!("quiver-event: {what}");
    }
}

/// Columns of the rows a compaction keeps: ids, sequence numbers, payloads, vectors by field.
type Gathered = (
    Vec<DocId>,
    Vec<u64>,
    Vec<serde_json::Map<String, serde_json::Value>>,
    BTreeMap<String, Vec<f32>>,
);

fn redb_err(e: impl Into<redb::Error>) -> StorageError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => StorageError::Locked {
            path: "wal.redb".into(),
        },
        other => StorageError::Redb(other.to_string()),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    segments: Vec<String>,
    flushed_seq: u64,
    next_segment: u64,
}

/// The sealed segments and mutable segment that one snapshot reads.
pub struct Version {
    /// Sealed segments, oldest first.
    pub segments: Vec<Arc<Segment>>,
    /// The mutable segment.
    pub mutable: Arc<RwLock<MutableSegment>>,
}

/// A consistent read view: what was committed up to `seq`.
#[derive(Clone)]
pub struct Snapshot {
    /// Segments.
    pub version: Arc<Version>,
    /// Last sequence number visible.
    pub seq: u64,
    /// Schema.
    pub schema: Arc<Schema>,
}

/// Where a document's row lives in a [`Version`]: the mutable segment or sealed segment `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    /// Row of the mutable segment.
    Mutable(u32),
    /// Segment index (into [`Version::segments`]) and row.
    Sealed(usize, u32),
}

struct Writer {
    next_seq: u64,
    manifest: Manifest,
}

/// Result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Documents written or deleted.
    pub count: usize,
    /// Sequence number of the last write (visible to snapshots from now on).
    pub seq: u64,
    /// The write is durable, but the seal or compaction it triggered failed (it is retried on
    /// the next write that crosses the threshold, and on `flush`).
    pub maintenance_error: Option<String>,
}

/// Sizes, for `collection info`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Live documents.
    pub documents: usize,
    /// Live rows in the mutable segment.
    pub mutable_rows: usize,
    /// Sealed segments: (name, rows, live rows).
    pub segments: Vec<(String, usize, usize)>,
    /// Bytes of HNSW graphs in memory.
    pub graph_bytes: usize,
    /// Last committed sequence number.
    pub seq: u64,
    /// Vectors per document of each multi field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multi: Vec<crate::multi::MultiInfo>,
    /// Memory and disk use per dense field.
    pub dense: Vec<crate::tiers::DenseTierInfo>,
}

/// An open collection. All methods take `&self`; writes serialise on an internal lock.
pub struct Collection {
    name: String,
    dir: PathBuf,
    schema: Arc<Schema>,
    wal: redb::Database,
    current: RwLock<(Arc<Version>, u64)>,
    ids: RwLock<HashMap<DocId, Loc>>,
    writer: Mutex<Writer>,
    progress: RwLock<Arc<dyn Progress>>,
    dropped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish()
    }
}

fn dims(schema: &Schema) -> BTreeMap<String, usize> {
    schema
        .dense_fields()
        .into_iter()
        .map(|f| (f.name, f.dim))
        .collect()
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), StorageError> {
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

impl Collection {
    /// Creates the collection directory contents (the directory must exist and be empty).
    pub(crate) fn create_in(dir: &Path, schema: &Schema) -> Result<(), StorageError> {
        schema.validate()?;
        let sp = dir.join("schema.json");
        std::fs::write(&sp, schema.to_json()).map_err(io_err(&sp))?;
        std::fs::create_dir_all(dir.join("segments")).map_err(io_err(dir))?;
        write_manifest(
            dir,
            &Manifest {
                format: 1,
                ..Default::default()
            },
        )
    }

    /// Opens (and recovers) the collection stored in `dir`.
    pub fn open(name: &str, dir: &Path) -> Result<Collection, StorageError> {
        let sp = dir.join("schema.json");
        let schema_text = std::fs::read_to_string(&sp).map_err(io_err(&sp))?;
        let schema = Schema::parse(&schema_text).map_err(|e| StorageError::Corrupt {
            file: sp.display().to_string(),
            msg: e.to_string(),
        })?;
        let mp = dir.join("manifest.json");
        let manifest: Manifest = match std::fs::read(&mp) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt {
                file: mp.display().to_string(),
                msg: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The manifest is created with the collection and only ever replaced atomically:
                // if it is gone while sealed data exists, that is damage, not an empty collection.
                let has_segments = std::fs::read_dir(dir.join("segments"))
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if has_segments {
                    return Err(StorageError::Corrupt {
                        file: mp.display().to_string(),
                        msg: "missing, but segments/ holds data; refusing to guess".into(),
                    });
                }
                Manifest {
                    format: 1,
                    ..Default::default()
                }
            }
            Err(e) => {
                return Err(StorageError::Io {
                    path: mp.display().to_string(),
                    source: e,
                })
            }
        };
        let _ = std::fs::remove_file(dir.join("manifest.json.tmp"));
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io_err(&seg_dir))?;
        // Orphans: segment directories the manifest does not name (a crash before the manifest
        // swap, or after it but before old segments were removed).
        let listed: HashSet<&str> = manifest.segments.iter().map(|s| s.as_str()).collect();
        for entry in std::fs::read_dir(&seg_dir).map_err(io_err(&seg_dir))? {
            let entry = entry.map_err(io_err(&seg_dir))?;
            let n = entry.file_name().to_string_lossy().to_string();
            if !listed.contains(n.as_str()) {
                let p = entry.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(io_err(&p))?;
            }
        }
        let segments: Vec<Arc<Segment>> = manifest
            .segments
            .iter()
            .map(|n| Segment::open(&schema, &seg_dir, n).map(Arc::new))
            .collect::<Result<_, _>>()?;

        let wal_path = dir.join("wal.redb");
        let wal = redb::Database::create(&wal_path).map_err(|e| match redb_err(e) {
            StorageError::Locked { .. } => StorageError::Locked {
                path: wal_path.display().to_string(),
            },
            StorageError::Redb(m) => StorageError::Corrupt {
                file: wal_path.display().to_string(),
                msg: m,
            },
            other => other,
        })?;
        let mut ids: HashMap<DocId, (u64, Loc)> = HashMap::new();
        let mut mutable = MutableSegment::new(dims(&schema));
        let mut max_seq = manifest.flushed_seq;
        let mut stale: Vec<Vec<u8>> = Vec::new();
        let mut meta_next = 0;
        let mut tombstones: Vec<(DocId, u64)> = Vec::new();
        let mut pending: Vec<StoredDoc> = Vec::new();
        {
            let txn = wal.begin_read().map_err(redb_err)?;
            match txn.open_table(META) {
                Ok(t) => {
                    meta_next = t
                        .get("next_seq")
                        .map_err(redb_err)?
                        .map(|v| v.value())
                        .unwrap_or(0)
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(redb_err(e)),
            }
            match txn.open_table(TOMBSTONES) {
                Ok(t) => {
                    for item in t.iter().map_err(redb_err)? {
                        let (k, v) = item.map_err(redb_err)?;
                        tombstones.push((DocId::from_key(k.value())?, v.value()));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(redb_err(e)),
            }
            match txn.open_table(DOCS) {
                Ok(t) => {
                    for item in t.iter().map_err(redb_err)? {
                        let (k, v) = item.map_err(redb_err)?;
                        let id = DocId::from_key(k.value())?;
                        let doc = schema.decode(id, v.value(), &wal_path.display().to_string())?;
                        if doc.seq <= manifest.flushed_seq {
                            stale.push(k.value().to_vec());
                        } else {
                            pending.push(doc);
                        }
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(redb_err(e)),
            }
        }
        let mut version_segments = segments;
        // Resolve the live version of every id by sequence number.
        for (si, seg) in version_segments.iter().enumerate() {
            for row in 0..seg.rows() as u32 {
                let (id, seq) = (seg.id(row).clone(), seg.seq(row));
                max_seq = max_seq.max(seq);
                match ids.get(&id) {
                    Some(&(old_seq, _)) if old_seq >= seq => {
                        seg.mark_deleted(row, old_seq);
                    }
                    prev => {
                        if let Some(&(_, Loc::Sealed(os, orow))) = prev {
                            version_segments[os].mark_deleted(orow, seq);
                        }
                        ids.insert(id, (seq, Loc::Sealed(si, row)));
                    }
                }
            }
        }
        pending.sort_by_key(|d| d.seq);
        for doc in pending {
            max_seq = max_seq.max(doc.seq);
            mutable.push_multi(&schema, &doc.multi, &doc.multi_raw);
            let row = mutable.push(doc.id.clone(), doc.seq, doc.payload, &doc.vectors);
            match ids.get(&doc.id) {
                Some(&(old_seq, _)) if old_seq >= doc.seq => mutable.mark_superseded(row, old_seq),
                prev => {
                    match prev {
                        Some(&(_, Loc::Sealed(os, orow))) => {
                            version_segments[os].mark_deleted(orow, doc.seq)
                        }
                        Some(&(_, Loc::Mutable(orow))) => mutable.mark_superseded(orow, doc.seq),
                        None => {}
                    }
                    ids.insert(doc.id, (doc.seq, Loc::Mutable(row)));
                }
            }
        }
        for (id, t) in tombstones {
            max_seq = max_seq.max(t);
            if let Some(&(seq, loc)) = ids.get(&id) {
                if seq < t {
                    match loc {
                        Loc::Sealed(s, r) => version_segments[s].mark_deleted(r, t),
                        Loc::Mutable(r) => mutable.mark_superseded(r, t),
                    }
                    ids.remove(&id);
                }
            }
        }
        if !stale.is_empty() {
            let txn = wal.begin_write().map_err(redb_err)?;
            {
                let mut t = txn.open_table(DOCS).map_err(redb_err)?;
                for k in &stale {
                    t.remove(k.as_slice()).map_err(redb_err)?;
                }
            }
            txn.commit().map_err(redb_err)?;
        }
        let next_seq = meta_next.max(max_seq + 1).max(1);
        let version = Arc::new(Version {
            segments: std::mem::take(&mut version_segments),
            mutable: Arc::new(RwLock::new(mutable)),
        });
        Ok(Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            schema: Arc::new(schema),
            wal,
            current: RwLock::new((version, next_seq - 1)),
            ids: RwLock::new(ids.into_iter().map(|(k, (_, l))| (k, l)).collect()),
            writer: Mutex::new(Writer { next_seq, manifest }),
            progress: RwLock::new(Arc::new(NoProgress)),
            dropped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Marks this handle dropped (its files are about to be removed): every later write fails with
    /// [`StorageError::CollectionNotFound`], so a stale handle can never write into a new
    /// collection created under the same name.
    pub(crate) fn mark_dropped(&self) {
        let _w = self.writer.lock();
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_live(&self) -> Result<(), StorageError> {
        if self.dropped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::CollectionNotFound(format!(
                "{} (dropped)",
                self.name
            )));
        }
        Ok(())
    }

    /// Where index-build progress is reported.
    pub fn set_progress(&self, p: Arc<dyn Progress>) {
        *self.progress.write() = p;
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Snapshot {
        let cur = self.current.read();
        Snapshot {
            version: cur.0.clone(),
            seq: cur.1,
            schema: self.schema.clone(),
        }
    }

    fn supersede(version: &Version, loc: Loc, seq: u64) {
        match loc {
            Loc::Mutable(r) => version.mutable.write().mark_superseded(r, seq),
            Loc::Sealed(s, r) => version.segments[s].mark_deleted(r, seq),
        }
    }

    /// Inserts or replaces documents, atomically: either the whole batch is validated and
    /// committed (durable when this returns), or nothing is written. Errors name the offending
    /// document (by position in the batch and id) and field.
    pub fn upsert(&self, docs: Vec<Document>) -> Result<WriteReport, StorageError> {
        let mut w = self.writer.lock();
        self.check_live()?;
        let mut prepared = Vec::with_capacity(docs.len());
        let mut seen: HashMap<DocId, usize> = HashMap::with_capacity(docs.len());
        for (i, d) in docs.into_iter().enumerate() {
            let (id, doc) = self.schema.prepare(d).map_err(|e| StorageError::InBatch {
                index: i,
                source: Box::new(e),
            })?;
            if let Some(first) = seen.insert(id.clone(), i) {
                return Err(StorageError::InBatch {
                    index: i,
                    source: Box::new(StorageError::DuplicateId {
                        id: id.to_string(),
                        first,
                    }),
                });
            }
            prepared.push((id, doc));
        }
        crate::multi::prune_batch(&self.schema, &mut prepared)?;
        if prepared.is_empty() {
            return Ok(WriteReport {
                count: 0,
                seq: w.next_seq - 1,
                maintenance_error: None,
            });
        }
        let seq0 = w.next_seq;
        let last = seq0 + prepared.len() as u64 - 1;
        let txn = self.wal.begin_write().map_err(redb_err)?;
        {
            let mut t = txn.open_table(DOCS).map_err(redb_err)?;
            for (i, (id, doc)) in prepared.iter().enumerate() {
                t.insert(
                    id.to_key().as_slice(),
                    self.schema.encode(seq0 + i as u64, doc).as_slice(),
                )
                .map_err(redb_err)?;
            }
            let mut m = txn.open_table(META).map_err(redb_err)?;
            m.insert("next_seq", last + 1).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        // Durable. Apply in memory and publish.
        w.next_seq = last + 1;
        let mut ids = self.ids.write();
        let mut cur = self.current.write();
        let version = cur.0.clone();
        {
            let mut m = version.mutable.write();
            for (i, (id, doc)) in prepared.into_iter().enumerate() {
                let seq = seq0 + i as u64;
                m.push_multi(&self.schema, &doc.multi, &doc.multi_raw);
                let row = m.push(id.clone(), seq, doc.payload, &doc.vectors);
                if let Some(old) = ids.insert(id, Loc::Mutable(row)) {
                    match old {
                        Loc::Mutable(r) => m.mark_superseded(r, seq),
                        Loc::Sealed(s, r) => version.segments[s].mark_deleted(r, seq),
                    }
                }
            }
        }
        cur.1 = last;
        let (live, rows) = {
            let m = version.mutable.read();
            (m.live_rows(), m.rows())
        };
        drop(cur);
        drop(ids);
        let count = (last + 1 - seq0) as usize;
        // Seal on live rows, or on all rows when the same ids are rewritten over and over.
        let mut maintenance_error = None;
        if live >= self.schema.mutable_max_rows || rows >= 2 * self.schema.mutable_max_rows {
            test_event("seal-start");
            let sealed = self.seal_locked(&mut w);
            test_event(if sealed.is_ok() {
                "seal-end"
            } else {
                "seal-failed"
            });
            if let Err(e) = sealed {
                maintenance_error = Some(e.to_string());
            }
        }
        Ok(WriteReport {
            count,
            seq: last,
            maintenance_error,
        })
    }

    /// Deletes documents by id (ids that do not exist are skipped). Durable when this returns.
    pub fn delete(&self, doc_ids: &[DocId]) -> Result<WriteReport, StorageError> {
        let mut w = self.writer.lock();
        self.delete_locked(&mut w, doc_ids)
    }

    fn delete_locked(
        &self,
        w: &mut Writer,
        doc_ids: &[DocId],
    ) -> Result<WriteReport, StorageError> {
        self.check_live()?;
        let present: Vec<DocId> = {
            let ids = self.ids.read();
            let mut seen = HashSet::new();
            doc_ids
                .iter()
                .filter(|i| ids.contains_key(i) && seen.insert((*i).clone()))
                .cloned()
                .collect()
        };
        if present.is_empty() {
            return Ok(WriteReport {
                count: 0,
                seq: w.next_seq - 1,
                maintenance_error: None,
            });
        }
        let seq = w.next_seq;
        let txn = self.wal.begin_write().map_err(redb_err)?;
        {
            let mut d = txn.open_table(DOCS).map_err(redb_err)?;
            let mut t = txn.open_table(TOMBSTONES).map_err(redb_err)?;
            for id in &present {
                let k = id.to_key();
                d.remove(k.as_slice()).map_err(redb_err)?;
                t.insert(k.as_slice(), seq).map_err(redb_err)?;
            }
            let mut m = txn.open_table(META).map_err(redb_err)?;
            m.insert("next_seq", seq + 1).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        w.next_seq = seq + 1;
        let mut ids = self.ids.write();
        let mut cur = self.current.write();
        for id in &present {
            if let Some(loc) = ids.remove(id) {
                Self::supersede(&cur.0, loc, seq);
            }
        }
        cur.1 = seq;
        Ok(WriteReport {
            count: present.len(),
            seq,
            maintenance_error: None,
        })
    }

    /// Deletes every document matching `filter`.
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<WriteReport, StorageError> {
        // The writer lock is held from evaluation to commit, so no write in between can change
        // which documents match.
        let mut w = self.writer.lock();
        let mut victims = Vec::new();
        self.snapshot()
            .for_each_visible(Some(filter), |id| victims.push(id.clone()));
        self.delete_locked(&mut w, &victims)
    }

    /// The current version of a document.
    pub fn get(&self, id: &DocId) -> Option<StoredDoc> {
        let ids = self.ids.read();
        let loc = *ids.get(id)?;
        let cur = self.current.read();
        Some(doc_at(&cur.0, &self.schema, loc))
    }

    /// Live documents (matching `filter`, if given).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let mut n = 0;
        self.snapshot().for_each_visible(filter, |_| n += 1);
        n
    }

    /// Up to `limit` documents in id order, starting after `after`; returns them and the cursor for
    /// the next page (`None` at the end).
    pub fn scroll(
        &self,
        after: Option<&DocId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> (Vec<StoredDoc>, Option<DocId>) {
        let snap = self.snapshot();
        let mut all: Vec<(DocId, Loc)> = Vec::new();
        snap.for_each_visible_loc(filter, |id, loc| {
            if after.is_none_or(|a| id > a) {
                all.push((id.clone(), loc));
            }
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|x| x.0.clone())
        } else {
            None
        };
        (
            all.into_iter()
                .map(|(_, loc)| doc_at(&snap.version, &self.schema, loc))
                .collect(),
            next,
        )
    }

    /// Seals the mutable segment now (no-op when it is empty).
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut w = self.writer.lock();
        self.seal_locked(&mut w)
    }

    /// Merges all sealed segments into one, dropping deleted and replaced rows.
    pub fn compact(&self) -> Result<(), StorageError> {
        let mut w = self.writer.lock();
        self.compact_locked(&mut w)
    }

    fn gather(&self, rows: &[(Loc, &Version)]) -> Gathered {
        let dense = self.schema.dense_fields();
        let mut ids = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        let mut vectors: BTreeMap<String, Vec<f32>> = dense
            .iter()
            .map(|f| (f.name.clone(), Vec::with_capacity(rows.len() * f.dim)))
            .collect();
        for &(loc, version) in rows {
            let d = doc_at(version, &self.schema, loc);
            ids.push(d.id);
            seqs.push(d.seq);
            payloads.push(d.payload);
            for (name, v) in d.vectors {
                if let Some(store) = vectors.get_mut(&name) {
                    store.extend_from_slice(&v);
                }
            }
        }
        (ids, seqs, payloads, vectors)
    }

    fn gather_multi(
        &self,
        rows: &[(Loc, &Version)],
    ) -> BTreeMap<String, crate::multi::MultiColumn> {
        let mut cols = crate::multi::columns(&self.schema);
        if cols.is_empty() {
            return cols;
        }
        for &(loc, version) in rows {
            match loc {
                Loc::Mutable(r) => {
                    let m = version.mutable.read();
                    crate::multi::copy_row(&mut cols, &m.multi, r);
                }
                Loc::Sealed(s, r) => version.segments[s].copy_multi_row(&mut cols, r),
            }
        }
        cols
    }

    fn seal_locked(&self, w: &mut Writer) -> Result<(), StorageError> {
        self.check_live()?;
        let (version, seq) = self.current.read().clone();
        let live: Vec<u32> = {
            let m = version.mutable.read();
            if m.rows() == 0 {
                return Ok(());
            }
            (0..m.rows() as u32)
                .filter(|&r| m.superseded_at[r as usize] == LIVE)
                .collect()
        };
        let rows: Vec<(Loc, &Version)> = live
            .iter()
            .map(|&r| (Loc::Mutable(r), version.as_ref()))
            .collect();
        let (ids, seqs, payloads, vectors) = self.gather(&rows);
        let multi = self.gather_multi(&rows);
        let mut manifest = w.manifest.clone();
        let mut new_segments = version.segments.clone();
        if !ids.is_empty() {
            let name = format!("seg-{:016x}", manifest.next_segment);
            manifest.next_segment += 1;
            // Never reuse a name, even if this seal fails half-way.
            w.manifest.next_segment = manifest.next_segment;
            let data = SegmentData {
                ids: ids.clone(),
                seqs,
                payloads: payloads.iter().collect(),
                vectors,
                multi,
            };
            let progress = self.progress.read().clone();
            let seg = Segment::write(
                &self.schema,
                &self.dir.join("segments"),
                &name,
                data,
                progress.as_ref(),
            )?;
            manifest.segments.push(name);
            new_segments.push(Arc::new(seg));
        }
        manifest.flushed_seq = seq;
        write_manifest(&self.dir, &manifest)?;
        w.manifest = manifest;
        // Everything in the docs table is now in a sealed segment (the writer lock is held, so
        // nothing newer than `seq` exists).
        let txn = self.wal.begin_write().map_err(redb_err)?;
        txn.delete_table(DOCS).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        let new_index = new_segments.len().saturating_sub(1);
        let new_version = Arc::new(Version {
            segments: new_segments,
            mutable: Arc::new(RwLock::new(MutableSegment::new(dims(&self.schema)))),
        });
        {
            let mut idmap = self.ids.write();
            let mut cur = self.current.write();
            // Row numbers come from the segment itself: it stores rows in its own (graph) order.
            if let (false, Some(seg)) = (ids.is_empty(), new_version.segments.get(new_index)) {
                for r in 0..seg.rows() as u32 {
                    idmap.insert(seg.id(r).clone(), Loc::Sealed(new_index, r));
                }
            }
            *cur = (new_version, seq);
        }
        if w.manifest.segments.len() > MAX_SEGMENTS {
            test_event("compact-start");
            self.compact_locked(w)?;
            test_event("compact-end");
        }
        Ok(())
    }

    fn compact_locked(&self, w: &mut Writer) -> Result<(), StorageError> {
        self.check_live()?;
        let (version, seq) = self.current.read().clone();
        if version.segments.is_empty() {
            return Ok(());
        }
        let vref: &Version = version.as_ref();
        let rows: Vec<(Loc, &Version)> = vref
            .segments
            .iter()
            .enumerate()
            .flat_map(|(s, seg)| {
                (0..seg.rows() as u32)
                    .filter(move |&r| seg.visible(r, seq))
                    .map(move |r| (Loc::Sealed(s, r), vref))
            })
            .collect();
        let (ids, seqs, payloads, vectors) = self.gather(&rows);
        let multi = self.gather_multi(&rows);
        let mut manifest = w.manifest.clone();
        let old = std::mem::take(&mut manifest.segments);
        let mut segments = Vec::new();
        if !ids.is_empty() {
            let name = format!("seg-{:016x}", manifest.next_segment);
            manifest.next_segment += 1;
            // Never reuse a name, even if this seal fails half-way.
            w.manifest.next_segment = manifest.next_segment;
            let data = SegmentData {
                ids: ids.clone(),
                seqs,
                payloads: payloads.iter().collect(),
                vectors,
                multi,
            };
            let progress = self.progress.read().clone();
            segments.push(Arc::new(Segment::write(
                &self.schema,
                &self.dir.join("segments"),
                &name,
                data,
                progress.as_ref(),
            )?));
            manifest.segments.push(name);
        }
        write_manifest(&self.dir, &manifest)?;
        w.manifest = manifest;
        let txn = self.wal.begin_write().map_err(redb_err)?;
        txn.delete_table(TOMBSTONES).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        let new_version = Arc::new(Version {
            segments,
            mutable: version.mutable.clone(),
        });
        {
            let mut idmap = self.ids.write();
            let mut cur = self.current.write();
            idmap.retain(|_, l| matches!(l, Loc::Mutable(_)));
            if let Some(seg) = new_version.segments.first() {
                for r in 0..seg.rows() as u32 {
                    // A newer version in the mutable segment wins.
                    idmap.entry(seg.id(r).clone()).or_insert(Loc::Sealed(0, r));
                }
            }
            // Rows of the new segment already replaced by mutable rows must stay invisible.
            if let Some(seg) = new_version.segments.first() {
                for r in 0..seg.rows() as u32 {
                    if idmap.get(seg.id(r)) != Some(&Loc::Sealed(0, r)) {
                        seg.mark_deleted(r, seq);
                    }
                }
            }
            *cur = (new_version, seq);
        }
        for name in old {
            let p = self.dir.join("segments").join(&name);
            std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Sizes and counts.
    pub fn info(&self) -> CollectionInfo {
        let snap = self.snapshot();
        let segments = snap
            .version
            .segments
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.rows(),
                    (0..s.rows() as u32)
                        .filter(|&r| s.visible(r, snap.seq))
                        .count(),
                )
            })
            .collect();
        let m = snap.version.mutable.read();
        let mutable_rows = (0..m.rows() as u32)
            .filter(|&r| m.visible(r, snap.seq))
            .count();
        drop(m);
        CollectionInfo {
            name: self.name.clone(),
            documents: self.ids.read().len(),
            mutable_rows,
            segments,
            graph_bytes: snap.version.segments.iter().map(|s| s.graph_bytes()).sum(),
            seq: snap.seq,
            multi: snap.multi_info(),
            dense: crate::tiers::dense_info(&snap),
        }
    }
}

fn doc_at(version: &Version, schema: &Schema, loc: Loc) -> StoredDoc {
    match loc {
        Loc::Mutable(r) => {
            let m = version.mutable.read();
            StoredDoc {
                id: m.id(r).clone(),
                seq: m.seq(r),
                payload: m.payload(r).clone(),
                vectors: schema
                    .dense_fields()
                    .into_iter()
                    .filter_map(|f| m.vector(&f.name, r).map(|v| (f.name, v.to_vec())))
                    .collect(),
                multi: m.multi_sets(r).0,
                multi_raw: m.multi_sets(r).1,
            }
        }
        Loc::Sealed(s, r) => {
            let seg = &version.segments[s];
            StoredDoc {
                id: seg.id(r).clone(),
                seq: seg.seq(r),
                payload: seg.payload(r),
                vectors: schema
                    .dense_fields()
                    .into_iter()
                    .filter_map(|f| seg.vectors(&f.name).map(|v| (f.name, v.row(r).to_vec())))
                    .collect(),
                multi: seg.multi_sets(r).0,
                multi_raw: seg.multi_sets(r).1,
            }
        }
    }
}

impl Snapshot {
    /// Rows of sealed segment `s` that are visible and match `filter` (all visible rows if `None`).
    pub fn allowed(&self, s: usize, filter: Option<&Filter>) -> Bitset {
        let seg = &self.version.segments[s];
        let mut b = match filter {
            Some(f) => seg.payload_index().evaluate(f, &|r| Some(seg.payload(r))),
            None => Bitset::full(seg.rows()),
        };
        for r in 0..seg.rows() as u32 {
            if !seg.visible(r, self.seq) {
                b.remove(r);
            }
        }
        b
    }

    fn for_each_visible_loc(&self, filter: Option<&Filter>, mut f: impl FnMut(&DocId, Loc)) {
        for (s, seg) in self.version.segments.iter().enumerate() {
            for r in self.allowed(s, filter).iter() {
                f(seg.id(r), Loc::Sealed(s, r));
            }
        }
        let m = self.version.mutable.read();
        for r in 0..m.rows() as u32 {
            if m.visible(r, self.seq) && filter.is_none_or(|fl| fl.matches(m.payload(r))) {
                f(m.id(r), Loc::Mutable(r));
            }
        }
    }

    /// Id of the document at `loc`.
    pub fn doc_id(&self, loc: Loc) -> DocId {
        match loc {
            Loc::Mutable(r) => self.version.mutable.read().id(r).clone(),
            Loc::Sealed(s, r) => self.version.segments[s].id(r).clone(),
        }
    }

    /// Payload of the document at `loc`.
    pub fn payload(&self, loc: Loc) -> Map<String, Value> {
        match loc {
            Loc::Mutable(r) => self.version.mutable.read().payload(r).clone(),
            Loc::Sealed(s, r) => self.version.segments[s].payload(r),
        }
    }

    /// Calls `f` with the stored vector of dense `field` at `loc` (`None` if it has none).
    pub fn with_vector<R>(&self, field: &str, loc: Loc, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        match loc {
            Loc::Mutable(r) => self.version.mutable.read().vector(field, r).map(f),
            Loc::Sealed(s, r) => self.version.segments[s].vectors(field).map(|v| f(v.row(r))),
        }
    }

    /// Calls `f(id)` for every visible document matching `filter`.
    pub fn for_each_visible(&self, filter: Option<&Filter>, mut f: impl FnMut(&DocId)) {
        self.for_each_visible_loc(filter, |id, _| f(id));
    }
}
