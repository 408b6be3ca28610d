//! A collection: schema + write-ahead log + mutable segment + sealed segments listed in a manifest.
//!
//! ```text
//! collections/<name>/
//!   schema.json
//!   manifest.json       segments, flushed_seq, wal_gen, deletes files (manifest.rs)
//!   deletes/*.del       rows of sealed segments deleted or replaced (deletes.rs)
//!   wal/<gen>.log       the write-ahead log, one generation per seal (wal.rs)
//!   segments/seg-*/     immutable sealed segments (segment.rs)
//! ```
//!
//! Every write gets sequence numbers and is appended to the log (fdatasync) before it is
//! acknowledged; then it is applied to a new frozen version of the mutable segment and published
//! with one pointer swap. Readers take a [`Snapshot`]: the current version and the last committed
//! sequence number; rows written or deleted later are invisible to it, and no reader ever waits on
//! the writer. When the mutable segment reaches `mutable_max_rows` live rows (or
//! `mutable_max_bytes`), it is *sealed*: written as a segment, a new log generation is started
//! (carrying the deletes since the last compaction), the manifest names both, and the old log is
//! removed. Compaction merges all sealed segments into one, dropping deleted rows. A crash between
//! any two steps is repaired on open by sequence numbers (see ARCHITECTURE.md's table).
//!
//! A collection opened read-only (another process may be writing) replays the log as it is at
//! open and never changes a file.

use crate::db::Readers;
use crate::doc::{DocId, Document, StoredDoc};
use crate::filter::Filter;
use crate::manifest::{self, Manifest};
use crate::mutable::{MutableSegment, NewRow};
use crate::schema::Schema;
use crate::segment::{NoProgress, Progress, Segment, SegmentData};
use crate::snapshot::{Loc, Snapshot, Version};
use crate::wal::{LogWriter, Record};
use crate::{io_err, StorageError};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// What readers load: a version and the last sequence number visible in it.
struct Published {
    version: Arc<Version>,
    seq: u64,
}

struct Writer {
    next_seq: u64,
    manifest: Manifest,
    log: LogWriter,
    /// Deleted rows per segment as last persisted (a seal writes a new deletes file when it grew).
    persisted: HashMap<String, usize>,
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
    /// Bytes of the write-ahead log files on disk.
    pub wal_bytes: u64,
    /// Vectors per document of each multi field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multi: Vec<crate::multi::MultiInfo>,
    /// Memory and disk use per dense field.
    pub dense: Vec<crate::tiers::DenseTierInfo>,
}

/// An open collection. All methods take `&self`; writes serialise on an internal lock, reads take
/// no lock at all.
pub struct Collection {
    name: String,
    dir: PathBuf,
    schema: Arc<Schema>,
    current: ArcSwap<Published>,
    /// `None`: opened read-only.
    writer: Option<Mutex<Writer>>,
    readers: Arc<Readers>,
    progress: RwLock<Arc<dyn Progress>>,
    dropped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("read_only", &self.writer.is_none())
            .finish()
    }
}

impl Collection {
    /// Creates the collection directory contents (the directory must exist and be empty).
    pub(crate) fn create_in(dir: &Path, schema: &Schema) -> Result<(), StorageError> {
        schema.validate()?;
        let sp = dir.join("schema.json");
        std::fs::write(&sp, schema.to_json()).map_err(io_err(&sp))?;
        std::fs::create_dir_all(dir.join("segments")).map_err(io_err(dir))?;
        let m = Manifest::new();
        LogWriter::create(dir, m.wal_gen)?;
        manifest::write(dir, &m)
    }

    fn read_schema(dir: &Path) -> Result<Schema, StorageError> {
        let sp = dir.join("schema.json");
        let text = std::fs::read_to_string(&sp).map_err(io_err(&sp))?;
        Schema::parse(&text).map_err(|e| StorageError::Corrupt {
            file: sp.display().to_string(),
            msg: e.to_string(),
        })
    }

    /// Opens (and recovers) the collection stored in `dir`; `read_only`: change nothing on disk
    /// and refuse writes (another process may hold the database for writing).
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        read_only: bool,
        readers: Arc<Readers>,
    ) -> Result<Collection, StorageError> {
        let schema = Self::read_schema(dir)?;
        let rec = crate::recovery::recover(dir, &schema, !read_only)?;
        let version = Arc::new(Version {
            segments: rec.segments,
            mutable: Arc::new(rec.mutable),
        });
        let persisted = version
            .segments
            .iter()
            .map(|s| (s.name.clone(), s.deleted_rows().count()))
            .collect();
        let writer = rec.log.map(|log| {
            Mutex::new(Writer {
                next_seq: rec.last_seq + 1,
                manifest: rec.manifest,
                log,
                persisted,
            })
        });
        let c = Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            schema: Arc::new(schema),
            current: ArcSwap::from_pointee(Published {
                version,
                seq: rec.last_seq,
            }),
            writer,
            readers,
            progress: RwLock::new(Arc::new(NoProgress)),
            dropped: std::sync::atomic::AtomicBool::new(false),
        };
        if let Some(w) = &c.writer {
            let _ = std::fs::remove_file(dir.join("manifest.json.tmp"));
            c.collect_garbage(&w.lock().manifest)?;
        }
        Ok(c)
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Whether this handle refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// Marks this handle dropped (its files are about to be removed): every later write fails with
    /// [`StorageError::CollectionNotFound`], so a stale handle can never write into a new
    /// collection created under the same name.
    pub(crate) fn mark_dropped(&self) {
        let _w = self.writer.as_ref().map(|w| w.lock());
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

    fn writer(&self) -> Result<parking_lot::MutexGuard<'_, Writer>, StorageError> {
        let w = self.writer.as_ref().ok_or_else(|| StorageError::ReadOnly {
            path: self.dir.display().to_string(),
        })?;
        let g = w.lock();
        self.check_live()?;
        Ok(g)
    }

    /// Where index-build progress is reported.
    pub fn set_progress(&self, p: Arc<dyn Progress>) {
        *self.progress.write() = p;
    }

    /// A consistent read view of everything committed so far (one atomic load).
    pub fn snapshot(&self) -> Snapshot {
        let cur = self.current.load();
        Snapshot::new(cur.version.clone(), cur.seq, self.schema.clone())
    }

    fn publish(&self, version: Arc<Version>, seq: u64) {
        self.current.store(Arc::new(Published { version, seq }));
    }

    fn supersede(version: &Version, loc: Loc, seq: u64) {
        match loc {
            Loc::Mutable(r) => version.mutable.mark_superseded(r, seq),
            Loc::Sealed(s, r) => version.segments[s].mark_deleted(r, seq),
        }
    }

    /// Validates a batch: every document against the schema, no id twice; multi fields pruned.
    fn prepare(&self, docs: Vec<Document>) -> Result<Vec<(DocId, Document)>, StorageError> {
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
        Ok(prepared)
    }

    /// Inserts or replaces documents, atomically: either the whole batch is validated and
    /// committed (durable when this returns), or nothing is written. Errors name the offending
    /// document (by position in the batch and id) and field.
    pub fn upsert(&self, docs: Vec<Document>) -> Result<WriteReport, StorageError> {
        let mut w = self.writer()?;
        let prepared = self.prepare(docs)?;
        if prepared.is_empty() {
            return Ok(WriteReport {
                count: 0,
                seq: w.next_seq - 1,
                maintenance_error: None,
            });
        }
        let seq0 = w.next_seq;
        let last = seq0 + prepared.len() as u64 - 1;
        let record = Record::Upsert(
            prepared
                .iter()
                .enumerate()
                .map(|(i, (id, doc))| (id.to_key(), self.schema.encode(seq0 + i as u64, doc)))
                .collect(),
        );
        w.log.append(&record)?;
        drop(record);
        // Durable. Build the next version and publish it.
        w.next_seq = last + 1;
        let snap = self.snapshot();
        // The versions these documents replace (the writer holds the lock: visible = live).
        let old: Vec<Option<Loc>> = prepared.iter().map(|(id, _)| snap.find(id)).collect();
        let rows: Vec<NewRow> = prepared
            .into_iter()
            .enumerate()
            .map(|(i, (id, doc))| NewRow {
                id,
                seq: seq0 + i as u64,
                payload: doc.payload,
                vectors: doc.vectors,
                multi: doc.multi,
                multi_raw: doc.multi_raw,
            })
            .collect();
        let m = &snap.version.mutable;
        // An empty mutable segment borrows the newest sealed segment's codecs for its rows.
        let fresh;
        let base = match snap.version.segments.last() {
            Some(seg) if m.rows() == 0 && m.borrowed().is_none() => {
                fresh = MutableSegment::with_codes(crate::mutable::BorrowedCodes::from_segment(
                    &self.schema,
                    seg,
                ));
                &fresh
            }
            _ => m.as_ref(),
        };
        let (mutable, _) = base.append(&self.schema, rows);
        let version = Version {
            segments: snap.version.segments.clone(),
            mutable: Arc::new(mutable),
        };
        for (i, old) in old.into_iter().enumerate() {
            if let Some(loc) = old {
                Self::supersede(&version, loc, seq0 + i as u64);
            }
        }
        let (live, rows, bytes) = (
            version.mutable.live_rows(),
            version.mutable.rows(),
            version.mutable.bytes(),
        );
        self.publish(Arc::new(version), last);
        let count = (last + 1 - seq0) as usize;
        // Seal on live rows, on bytes, or on all rows when the same ids are rewritten over and over.
        let max = self.schema.mutable_max_rows;
        let mut maintenance_error = None;
        if live >= max || rows >= 2 * max || bytes >= self.schema.mutable_max_bytes {
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
        let mut w = self.writer()?;
        self.delete_locked(&mut w, doc_ids)
    }

    fn delete_locked(
        &self,
        w: &mut Writer,
        doc_ids: &[DocId],
    ) -> Result<WriteReport, StorageError> {
        let snap = self.snapshot();
        let present: Vec<(DocId, Loc)> = {
            let mut seen = HashSet::new();
            doc_ids
                .iter()
                .filter(|i| seen.insert((*i).clone()))
                .filter_map(|i| snap.find(i).map(|loc| (i.clone(), loc)))
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
        w.log.append(&Record::Delete {
            seq,
            keys: present.iter().map(|(id, _)| id.to_key()).collect(),
        })?;
        w.next_seq = seq + 1;
        for (_, loc) in &present {
            Self::supersede(&snap.version, *loc, seq);
        }
        self.publish(snap.version.clone(), seq);
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
        let mut w = self.writer()?;
        let mut victims = Vec::new();
        self.snapshot()
            .for_each_visible(Some(filter), |id| victims.push(id.clone()));
        self.delete_locked(&mut w, &victims)
    }

    /// The current version of a document.
    pub fn get(&self, id: &DocId) -> Option<StoredDoc> {
        self.snapshot().get(id)
    }

    /// Live documents (matching `filter`, if given).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.snapshot().count(filter)
    }

    /// Up to `limit` documents in id order, starting after `after`; returns them and the cursor for
    /// the next page (`None` at the end).
    pub fn scroll(
        &self,
        after: Option<&DocId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> (Vec<StoredDoc>, Option<DocId>) {
        self.snapshot().scroll(after, limit, filter)
    }

    /// Seals the mutable segment now (no-op when it is empty).
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut w = self.writer()?;
        self.seal_locked(&mut w)
    }

    /// Merges all sealed segments into one, dropping deleted and replaced rows.
    pub fn compact(&self) -> Result<(), StorageError> {
        let mut w = self.writer()?;
        self.compact_locked(&mut w)
    }

    /// The rows at `locs` as the columns of a new segment.
    fn gather(&self, snap: &Snapshot, locs: &[Loc]) -> SegmentData {
        let dense = self.schema.dense_fields();
        let mut data = SegmentData {
            ids: Vec::with_capacity(locs.len()),
            seqs: Vec::with_capacity(locs.len()),
            payloads: Vec::with_capacity(locs.len()),
            vectors: dense
                .iter()
                .map(|f| (f.name.clone(), Vec::with_capacity(locs.len() * f.dim)))
                .collect(),
            multi: crate::multi::columns(&self.schema),
        };
        for &loc in locs {
            let d = snap.doc(loc);
            data.ids.push(d.id);
            data.seqs.push(d.seq);
            data.payloads.push(d.payload);
            for (name, v) in d.vectors {
                if let Some(store) = data.vectors.get_mut(&name) {
                    store.extend_from_slice(&v);
                }
            }
            crate::multi::push_row(&mut data.multi, &d.multi, &d.multi_raw);
        }
        data
    }

    /// Writes `data` as a new segment named from the manifest's counter.
    fn write_segment(
        &self,
        w: &mut Writer,
        manifest: &mut Manifest,
        data: SegmentData,
    ) -> Result<Arc<Segment>, StorageError> {
        let name = format!("seg-{:016x}", manifest.next_segment);
        manifest.next_segment += 1;
        // Never reuse a name, even if this write fails half-way.
        w.manifest.next_segment = manifest.next_segment;
        let progress = self.progress.read().clone();
        let seg = Segment::write(
            &self.schema,
            &self.dir.join("segments"),
            &name,
            data,
            progress.as_ref(),
        )?;
        manifest.segments.push(name);
        Ok(Arc::new(seg))
    }

    fn seal_locked(&self, w: &mut Writer) -> Result<(), StorageError> {
        self.check_live()?;
        let snap = self.snapshot();
        let m = &snap.version.mutable;
        if m.rows() == 0 {
            return Ok(());
        }
        let live: Vec<Loc> = (0..m.rows() as u32)
            .filter(|&r| m.is_live(r))
            .map(Loc::Mutable)
            .collect();
        let mut manifest = w.manifest.clone();
        let mut segments = snap.version.segments.clone();
        if !live.is_empty() {
            let data = self.gather(&snap, &live);
            segments.push(self.write_segment(w, &mut manifest, data)?);
        }
        // The log about to be retired recorded deletes of sealed rows: persist them first.
        let gen = w.log.gen + 1;
        let persisted = &w.persisted;
        crate::recovery::persist_deletes(&self.dir, &mut manifest, &segments, gen, |s, n| {
            persisted.get(&s.name) != Some(&n)
        })?;
        let log = LogWriter::create(&self.dir, gen)?;
        manifest.flushed_seq = snap.seq;
        manifest.wal_gen = log.gen;
        manifest::write(&self.dir, &manifest)?;
        w.manifest = manifest;
        w.log = log;
        w.persisted = segments
            .iter()
            .map(|s| (s.name.clone(), s.deleted_rows().count()))
            .collect();
        self.publish(
            Arc::new(Version {
                segments,
                mutable: Arc::new(MutableSegment::new()),
            }),
            snap.seq,
        );
        self.collect_garbage(&w.manifest)?;
        if w.manifest.segments.len() > MAX_SEGMENTS {
            test_event("compact-start");
            self.compact_locked(w)?;
            test_event("compact-end");
        }
        Ok(())
    }

    fn compact_locked(&self, w: &mut Writer) -> Result<(), StorageError> {
        self.check_live()?;
        let snap = self.snapshot();
        if snap.version.segments.is_empty() {
            return Ok(());
        }
        let rows: Vec<Loc> = snap
            .version
            .segments
            .iter()
            .enumerate()
            .flat_map(|(s, seg)| {
                (0..seg.rows() as u32)
                    .filter(move |&r| seg.visible(r, snap.seq))
                    .map(move |r| Loc::Sealed(s, r))
            })
            .collect();
        let mut manifest = w.manifest.clone();
        manifest.segments.clear();
        let merged = if rows.is_empty() {
            None
        } else {
            let data = self.gather(&snap, &rows);
            Some(self.write_segment(w, &mut manifest, data)?)
        };
        // The merged rows are exactly the visible ones: no deletes file to carry over.
        manifest.deletes.clear();
        manifest::write(&self.dir, &manifest)?;
        w.manifest = manifest;
        w.persisted.clear();
        if let Some(seg) = &merged {
            // A newer version in the mutable segment wins; the merged row stays invisible (the
            // log that holds the newer version marks it again on replay).
            let m = &snap.version.mutable;
            for c in m.chunks() {
                for r in 0..c.rows() as u32 {
                    if c.visible(r, snap.seq) {
                        if let Some(row) = seg.find_row(c.id(r)) {
                            seg.mark_deleted(row, c.seq(r));
                        }
                    }
                }
            }
        }
        self.publish(
            Arc::new(Version {
                segments: merged.into_iter().collect(),
                mutable: snap.version.mutable.clone(),
            }),
            snap.seq,
        );
        self.collect_garbage(&w.manifest)
    }

    /// Removes segment directories the manifest does not list and logs before its `wal_gen`, if
    /// no read-only handle (in any process) holds the database; otherwise they stay until a later
    /// seal, compaction or open finds it unread.
    fn collect_garbage(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let seg_dir = self.dir.join("segments");
        let listed: HashSet<&str> = manifest.segments.iter().map(|s| s.as_str()).collect();
        let dir = &self.dir;
        self.readers.when_unread(|| {
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
            let dd = crate::deletes::deletes_dir(dir);
            if dd.is_dir() {
                let kept: HashSet<&str> = manifest.deletes.values().map(|s| s.as_str()).collect();
                for entry in std::fs::read_dir(&dd).map_err(io_err(&dd))? {
                    let entry = entry.map_err(io_err(&dd))?;
                    if !kept.contains(entry.file_name().to_string_lossy().as_ref()) {
                        std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
                    }
                }
            }
            for gen in crate::wal::generations(dir)? {
                if gen < manifest.wal_gen {
                    let p = crate::wal::log_path(dir, gen);
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
            let redb = dir.join("wal.redb");
            if manifest.format >= 2 && redb.exists() {
                std::fs::remove_file(&redb).map_err(io_err(&redb))?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Checks everything on disk: every file of every sealed segment against its checksum
    /// (memory-mapped vectors included), every section parsed, the manifest, the deletes files
    /// and the log. Returns every problem found, each naming its file (empty: all good).
    pub fn verify(&self) -> Vec<StorageError> {
        let snap = self.snapshot();
        let mut out: Vec<StorageError> = snap
            .version
            .segments
            .iter()
            .flat_map(|s| s.verify())
            .collect();
        match manifest::read(&self.dir) {
            Ok(m) => {
                for seg in &snap.version.segments {
                    if let Some(f) = m.deletes.get(&seg.name) {
                        if let Err(e) = crate::deletes::read(&self.dir, f, seg.rows()) {
                            out.push(e);
                        }
                    }
                }
                match crate::wal::generations(&self.dir) {
                    Ok(gens) => {
                        for g in gens.into_iter().filter(|&g| g >= m.wal_gen) {
                            if let Err(e) = crate::wal::read_log(&self.dir, g) {
                                out.push(e);
                            }
                        }
                    }
                    Err(e) => out.push(e),
                }
            }
            Err(e) => out.push(e),
        }
        out
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
            .collect::<Vec<_>>();
        let m = &snap.version.mutable;
        let mutable_rows = (0..m.rows() as u32)
            .filter(|&r| m.visible(r, snap.seq))
            .count();
        let sealed_live: usize = segments.iter().map(|s| s.2).sum();
        CollectionInfo {
            name: self.name.clone(),
            documents: sealed_live + mutable_rows,
            mutable_rows,
            segments,
            graph_bytes: snap.version.segments.iter().map(|s| s.graph_bytes()).sum(),
            seq: snap.seq,
            wal_bytes: wal_disk_bytes(&self.dir),
            multi: snap.multi_info(),
            dense: crate::tiers::dense_info(&snap),
        }
    }
}

/// Bytes of every log file of the collection in `dir`.
fn wal_disk_bytes(dir: &Path) -> u64 {
    crate::wal::generations(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| std::fs::metadata(crate::wal::log_path(dir, g)).ok())
        .map(|m| m.len())
        .sum()
}
