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
//! `mutable_max_bytes`), it is *frozen*: new writes go to a new mutable segment and a new log
//! generation, and a background thread *seals* the frozen one — writes it as a segment, then, in
//! one short step under the writer lock, lists it in the manifest with the new generation,
//! publishes the new version and removes the old log. Another background thread merges sealed
//! segments by a size-tiered policy, dropping deleted rows (`maintenance.rs`). While a seal is in
//! flight, writes are paced to the sealer's measured rate, and a write that finds the mutable
//! segment past 1.5x its bound waits for the seal: memory stays bounded and a fast writer sees
//! short delays spread over the seal instead of one stall at its end. A crash between
//! any two steps is repaired on open by sequence numbers (see ARCHITECTURE.md's table).
//!
//! A collection opened read-only (another process may be writing) replays the log as it is at
//! open and never changes a file.

mod backfill;
mod bulk;
mod evolve;
mod info;
mod jobs;

#[doc(hidden)]
pub use self::test_event as emit_test_event;
pub use backfill::{BackfillInfo, BackfillTask, FieldColumn};
pub use evolve::AlterReport;

use crate::db::Readers;
use crate::doc::{DocId, Document, StoredDoc};
use crate::filter::Filter;
use crate::maintenance::{plan_merge, Maintenance, MaintenanceRecord, SegmentSize};
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
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// The longest a write waits for a background seal to make room before it goes ahead anyway
/// (the mutable segment then grows past its bound until the seal catches up).
const MAX_BACKPRESSURE: Duration = Duration::from_secs(30);

/// Test hook: with `QUIVER_TEST_EVENTS=1` set, the automatic seal and compaction print
/// `quiver-event: seal-start|seal-end|seal-failed|compact-start|compact-end` on stderr, so crash
/// tests can prove where a SIGKILL landed. Otherwise one cached environment lookup, no output.
#[doc(hidden)]
pub fn test_event(what: &str) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("QUIVER_TEST_EVENTS").is_some_and(|v| v == "1")) {
        eprintln!("quiver-event: {what}");
    }
}

/// What readers load: a version and the last sequence number visible in it.
struct Published {
    version: Arc<Version>,
    seq: u64,
    /// The schema the version is read under (changed only by `evolve.rs`, with the writer lock).
    schema: Arc<Schema>,
}

struct Writer {
    next_seq: u64,
    manifest: Manifest,
    log: LogWriter,
    /// Deleted rows per segment as last persisted (a seal writes a new deletes file when it grew).
    persisted: HashMap<String, usize>,
    /// Last sequence number of the rows being sealed (the manifest's `flushed_seq` once the seal
    /// is installed).
    sealing_upto: u64,
    /// Names of segments being written and not installed yet (garbage collection spares them;
    /// one whose write failed stays until the next open collects it).
    writing: HashSet<String>,
    /// Segments merged away that a snapshot may still read (collected once unreferenced).
    retired: Vec<(String, Weak<Segment>)>,
}

/// Result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Documents written or deleted.
    pub count: usize,
    /// Sequence number of the last write (visible to snapshots from now on).
    pub seq: u64,
    /// The write is durable, but a background seal or merge failed since the last write (a seal
    /// is retried on the next write that finds the mutable segment full, and on `flush`).
    pub maintenance_error: Option<String>,
    /// How long back-pressure held the write before it was logged: paced to the sealer's rate
    /// while a seal was in flight, or waiting for that seal when the mutable segment was over
    /// its bound (1.5x `mutable_max_rows` / `mutable_max_bytes`).
    pub waited: Duration,
}

impl WriteReport {
    /// `count` documents written, the last with sequence number `seq`; no wait, no error.
    fn plain(count: usize, seq: u64) -> WriteReport {
        WriteReport {
            count,
            seq,
            maintenance_error: None,
            waited: Duration::ZERO,
        }
    }
}

/// Sizes, for `collection info`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Live documents.
    pub documents: usize,
    /// Live rows in the mutable segment (and the one being sealed).
    pub mutable_rows: usize,
    /// Sealed segments: (name, rows, live rows).
    pub segments: Vec<(String, usize, usize)>,
    /// Bytes of HNSW graphs in memory.
    pub graph_bytes: usize,
    /// Last committed sequence number.
    pub seq: u64,
    /// Bytes of the write-ahead log files on disk.
    pub wal_bytes: u64,
    /// Bytes of the sealed segments' files.
    pub segment_bytes: u64,
    /// Bytes of every file of the collection on disk (segments, logs, deletes files, manifest,
    /// schema, and any leftovers a reader kept from garbage collection).
    pub disk_bytes: u64,
    /// `disk_bytes / documents` (0 for an empty collection).
    pub disk_bytes_per_document: f64,
    /// Vectors per document of each multi field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multi: Vec<crate::multi::MultiInfo>,
    /// Memory and disk use per dense field.
    pub dense: Vec<crate::tiers::DenseTierInfo>,
    /// Fields being backfilled and how far each is (empty when none is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfill: Vec<BackfillInfo>,
}

/// An open collection. All methods take `&self`; writes serialise on an internal lock, reads take
/// no lock at all.
pub struct Collection {
    name: String,
    dir: PathBuf,
    current: ArcSwap<Published>,
    /// `None`: opened read-only.
    writer: Option<Mutex<Writer>>,
    readers: Arc<Readers>,
    progress: RwLock<Arc<dyn Progress>>,
    dropped: std::sync::atomic::AtomicBool,
    /// The background sealer and merger (writers only; `maintenance.rs`).
    sealer: Arc<Maintenance>,
    merger: Arc<Maintenance>,
}

impl Drop for Collection {
    fn drop(&mut self) {
        self.stop_maintenance();
    }
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
        let version = Arc::new(Version::new(rec.segments, Arc::new(rec.mutable)));
        // Replay has marked rows deleted by the log in memory; the deletes files hold only what
        // was persisted before it. Nothing counts as persisted, so the first install after open
        // writes every segment's deletes file afresh (before its log can be retired).
        let persisted = HashMap::new();
        let writer = rec.log.map(|log| {
            Mutex::new(Writer {
                next_seq: rec.last_seq + 1,
                manifest: rec.manifest,
                log,
                persisted,
                sealing_upto: 0,
                writing: HashSet::new(),
                retired: Vec::new(),
            })
        });
        let c = Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(Published {
                version,
                seq: rec.last_seq,
                schema: Arc::new(schema),
            }),
            writer,
            readers,
            progress: RwLock::new(Arc::new(NoProgress)),
            dropped: std::sync::atomic::AtomicBool::new(false),
            sealer: Arc::default(),
            merger: Arc::default(),
        };
        if let Some(w) = &c.writer {
            let _ = std::fs::remove_file(dir.join("manifest.json.tmp"));
            let _ = std::fs::remove_file(dir.join("schema.json.tmp"));
            c.collect_garbage(&w.lock())?;
            // A drop a crash interrupted.
            c.finish_drops()?;
        }
        Ok(c)
    }

    /// The collection's directory (files the engine keeps beside the storage's, such as
    /// fitted query adapters, live under it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current schema (fields added or dropped since the collection was opened included).
    pub fn schema(&self) -> Arc<Schema> {
        self.current.load().schema.clone()
    }

    /// Whether this handle refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// Marks this handle dropped (its files are about to be removed): every later write fails with
    /// [`StorageError::CollectionNotFound`], so a stale handle can never write into a new
    /// collection created under the same name.
    pub(crate) fn mark_dropped(&self) {
        // Lock order: seal job, merge job, writer.
        let _s = self.sealer.job.lock();
        let _m = self.merger.job.lock();
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
        Snapshot::new(cur.version.clone(), cur.seq, cur.schema.clone())
    }

    fn publish(&self, version: Arc<Version>, seq: u64) {
        let schema = self.current.load().schema.clone();
        self.current.store(Arc::new(Published {
            version,
            seq,
            schema,
        }));
    }

    fn supersede(version: &Version, loc: Loc, seq: u64) {
        match (loc, &version.sealing) {
            (Loc::Mutable(r), _) => version.mutable.mark_superseded(r, seq),
            (Loc::Sealing(r), Some(m)) => m.mark_superseded(r, seq),
            (Loc::Sealed(s, r), _) => version.segments[s].mark_deleted(r, seq),
            // A `Loc` comes from a snapshot taken under the writer lock, as this version was.
            (Loc::Sealing(_), None) => {
                debug_assert!(false, "a sealing row without a sealing segment")
            }
        }
    }

    /// Validates a batch: every document against the schema, no id twice; multi fields pruned.
    fn prepare(&self, docs: Vec<Document>) -> Result<Vec<(DocId, Document)>, StorageError> {
        let mut prepared = Vec::with_capacity(docs.len());
        let mut seen: HashMap<DocId, usize> = HashMap::with_capacity(docs.len());
        let schema = self.schema();
        for (i, d) in docs.into_iter().enumerate() {
            let (id, doc) = schema.prepare(d).map_err(|e| StorageError::InBatch {
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
        crate::multi::prune_batch(&schema, &mut prepared)?;
        Ok(prepared)
    }

    /// Inserts or replaces documents, atomically: either the whole batch is validated and
    /// committed (durable when this returns), or nothing is written. Errors name the offending
    /// document (by position in the batch and id) and field.
    pub fn upsert(&self, docs: Vec<Document>) -> Result<WriteReport, StorageError> {
        let waited = self.make_room(docs.len());
        let mut w = self.writer()?;
        self.upsert_locked(&mut w, docs, waited)
    }

    /// [`Collection::upsert`], if the schema is still `expected` (the one the caller computed
    /// the documents' vectors under): otherwise nothing is written and the documents come back
    /// (`Ok(Err(docs))`), to be completed for the current schema and written again. The check
    /// and the write happen under the writer lock, which a schema change also takes.
    pub fn upsert_under(
        &self,
        docs: Vec<Document>,
        expected: &Arc<Schema>,
    ) -> Result<Result<WriteReport, Vec<Document>>, StorageError> {
        let waited = self.make_room(docs.len());
        let mut w = self.writer()?;
        if !Arc::ptr_eq(&self.schema(), expected) {
            return Ok(Err(docs));
        }
        self.upsert_locked(&mut w, docs, waited).map(Ok)
    }

    /// Upserts those of `docs` whose visible version was written at or before sequence number
    /// `since` — unchanged since a snapshot at `since` was read — and returns the ids of the
    /// others (rewritten or deleted since), which are left alone. The check and the write
    /// happen under the writer lock, so no write in between is overwritten: a read-modify-write
    /// of stored documents (`quiver classify` writing labels) loses no concurrent update. Every
    /// document needs an id.
    pub fn upsert_unchanged(
        &self,
        docs: Vec<Document>,
        since: u64,
    ) -> Result<(WriteReport, Vec<DocId>), StorageError> {
        if let Some(i) = docs.iter().position(|d| d.id.is_none()) {
            return Err(StorageError::InBatch {
                index: i,
                source: Box::new(StorageError::InvalidDocument {
                    id: "(none)".into(),
                    field: "id".into(),
                    msg: "a conditional upsert needs the document's id".into(),
                }),
            });
        }
        let waited = self.make_room(docs.len());
        let mut w = self.writer()?;
        let snap = self.snapshot();
        let (mut keep, mut at, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, d) in docs.into_iter().enumerate() {
            let unchanged =
                d.id.as_ref()
                    .and_then(|id| snap.find(id))
                    .is_some_and(|loc| {
                        let (s, r) = snap.place(loc);
                        snap.segment(s).seq(r) <= since
                    });
            if unchanged {
                keep.push(d);
                at.push(i);
            } else if let Some(id) = d.id {
                changed.push(id);
            }
        }
        // A batch error names the caller's position, not the position among those kept.
        let report = self
            .upsert_locked(&mut w, keep, waited)
            .map_err(|e| match e {
                StorageError::InBatch { index, source } => StorageError::InBatch {
                    index: at.get(index).copied().unwrap_or(index),
                    source,
                },
                e => e,
            })?;
        Ok((report, changed))
    }

    fn upsert_locked(
        &self,
        w: &mut Writer,
        docs: Vec<Document>,
        waited: Duration,
    ) -> Result<WriteReport, StorageError> {
        let prepared = self.prepare(docs)?;
        if prepared.is_empty() {
            return Ok(WriteReport {
                waited,
                ..WriteReport::plain(0, w.next_seq - 1)
            });
        }
        // Fixed while the writer lock is held (a schema change takes it).
        let schema = self.schema();
        let seq0 = w.next_seq;
        let last = seq0 + prepared.len() as u64 - 1;
        let record = Record::Upsert(
            prepared
                .iter()
                .enumerate()
                .map(|(i, (id, doc))| (id.to_key(), schema.encode(seq0 + i as u64, doc)))
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
                    &schema, seg,
                ));
                &fresh
            }
            _ => m.as_ref(),
        };
        let (mutable, _) = base.append(&schema, rows);
        let version = Version {
            segments: snap.version.segments.clone(),
            sealing: snap.version.sealing.clone(),
            mutable: Arc::new(mutable),
        };
        for (i, old) in old.into_iter().enumerate() {
            if let Some(loc) = old {
                Self::supersede(&version, loc, seq0 + i as u64);
            }
        }
        let full = self.is_full(&version.mutable);
        self.publish(Arc::new(version), last);
        let count = (last + 1 - seq0) as usize;
        let mut maintenance_error = self
            .sealer
            .take_error()
            .or_else(|| self.merger.take_error());
        if full {
            if let Err(e) = self.seal_in_background(w) {
                maintenance_error = Some(e.to_string());
            }
        }
        Ok(WriteReport {
            count,
            seq: last,
            maintenance_error,
            waited,
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
            return Ok(WriteReport::plain(0, w.next_seq - 1));
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
        Ok(WriteReport::plain(present.len(), seq))
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

    /// Seals the mutable segment now, and waits for it (no-op when it is empty); the segment
    /// being sealed in the background, if any, is sealed first. Merges stay in the background.
    pub fn flush(&self) -> Result<(), StorageError> {
        drop(self.writer()?);
        let _job = self.sealer.job.lock();
        self.seal_sealing()?;
        self.freeze_locked(&mut *self.writer()?)?;
        self.seal_sealing()?;
        self.merger.notify();
        Ok(())
    }

    /// Finishes the background work due now, in this thread: the seal in flight (or waiting),
    /// then every merge the policy finds. Afterwards the segment layout is settled until the next
    /// write fills the mutable segment. For tests, benchmarks, and callers that want a known
    /// layout; writes never need it.
    pub fn wait_for_maintenance(&self) -> Result<(), StorageError> {
        drop(self.writer()?);
        {
            let _job = self.sealer.job.lock();
            self.seal_sealing()?;
        }
        // The caller waits for these: they build on every core.
        self.run_merges(false);
        match self.merger.take_error() {
            Some(e) => Err(StorageError::Maintenance(e)),
            None => Ok(()),
        }
    }

    /// Merges all sealed segments into one, dropping deleted and replaced rows.
    pub fn compact(&self) -> Result<(), StorageError> {
        drop(self.writer()?);
        let _job = self.merger.job.lock();
        let snap = self.snapshot();
        if let Some(f) = snap.schema.backfill.iter().next() {
            return Err(StorageError::Maintenance(format!(
                "field {f:?} is being backfilled: compaction waits until it is done \
                 (`quiver collection backfill {}`)",
                self.name
            )));
        }
        let all: Vec<usize> = (0..snap.version.segments.len()).collect();
        self.merge(&snap, &all, false)
    }

    /// Empty columns of a new segment of this collection's fields.
    fn empty_data(&self) -> SegmentData {
        let schema = self.schema();
        SegmentData {
            ids: Vec::new(),
            seqs: Vec::new(),
            payloads: Vec::new(),
            vectors: schema
                .dense_fields()
                .iter()
                .map(|f| (f.name.clone(), Vec::new()))
                .collect(),
            multi: crate::multi::columns(&schema),
            base_graph: None,
        }
    }

    /// The rows at `locs` as the columns of a new segment.
    fn gather(&self, snap: &Snapshot, locs: &[Loc]) -> SegmentData {
        let mut data = self.empty_data();
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
}
