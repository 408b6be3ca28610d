//! Opening a collection: read the manifest, open the sealed segments it lists, resolve which
//! version of each id is live, and replay the write-ahead log into a mutable segment.
//!
//! A writer also repairs: it cuts a torn tail off the last log, moves a format-1 `wal.redb` into
//! the log (`legacy.rs`), and leaves cleanup of unlisted files to [`crate::db::Readers`]-guarded
//! garbage collection. A reader changes nothing on disk.

use crate::doc::DocId;
use crate::manifest::{self, Manifest};
use crate::mutable::{MutableSegment, NewRow};
use crate::schema::Schema;
use crate::segment::{Segment, LIVE};
use crate::snapshot::Loc;
use crate::wal::{self, LogWriter, Record};
use crate::{io_err, StorageError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Everything an open collection starts from.
pub(crate) struct Recovered {
    pub manifest: Manifest,
    pub segments: Vec<Arc<Segment>>,
    pub mutable: MutableSegment,
    /// Last sequence number used.
    pub last_seq: u64,
    /// The log to append to (writers only).
    pub log: Option<LogWriter>,
}

/// Applies records to the state being rebuilt.
struct Replay<'a> {
    schema: &'a Schema,
    flushed_seq: u64,
    segments: &'a [Arc<Segment>],
    /// Ids written or deleted by the log so far: their live version (`None`: deleted).
    ids: HashMap<DocId, Option<(u64, Loc)>>,
    rows: Vec<NewRow>,
    superseded: Vec<u64>,
    max_seq: u64,
}

impl Replay<'_> {
    /// The live version of `id`: from the log if it touched the id, else the newest live sealed
    /// row (a lookup in each segment's sorted ids).
    fn live(&self, id: &DocId) -> Option<(u64, Loc)> {
        if let Some(v) = self.ids.get(id) {
            return *v;
        }
        self.segments.iter().enumerate().rev().find_map(|(s, seg)| {
            let r = seg.find_row(id)?;
            seg.is_live(r).then(|| (seg.seq(r), Loc::Sealed(s, r)))
        })
    }

    fn supersede(&mut self, loc: Loc, seq: u64) {
        match loc {
            Loc::Sealed(s, r) => self.segments[s].mark_deleted(r, seq),
            // Replay builds one mutable segment: nothing is being sealed.
            Loc::Mutable(r) | Loc::Sealing(r) => {
                let s = &mut self.superseded[r as usize];
                *s = (*s).min(seq);
            }
        }
    }

    fn upsert(&mut self, key: &[u8], rec: &[u8], file: &str) -> Result<(), StorageError> {
        let id = DocId::from_key(key)?;
        let doc = self.schema.decode(id, rec, file)?;
        self.max_seq = self.max_seq.max(doc.seq);
        if doc.seq <= self.flushed_seq {
            return Ok(());
        }
        let row = self.rows.len() as u32;
        let seq = doc.seq;
        let prev = self.live(&doc.id);
        self.superseded.push(LIVE);
        let id = doc.id.clone();
        self.rows.push(doc);
        match prev {
            Some((old_seq, _)) if old_seq >= seq => self.supersede(Loc::Mutable(row), old_seq),
            prev => {
                if let Some((_, loc)) = prev {
                    self.supersede(loc, seq);
                }
                self.ids.insert(id, Some((seq, Loc::Mutable(row))));
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8], t: u64) -> Result<(), StorageError> {
        self.max_seq = self.max_seq.max(t);
        let id = DocId::from_key(key)?;
        if let Some((seq, loc)) = self.live(&id) {
            if seq < t {
                self.supersede(loc, t);
                self.ids.insert(id, None);
            }
        }
        Ok(())
    }

    fn apply(&mut self, rec: Record, file: &str) -> Result<(), StorageError> {
        match rec {
            Record::Upsert(docs) => {
                for (k, r) in docs {
                    self.upsert(&k, &r, file)?;
                }
            }
            Record::Delete { seq, keys } => {
                for k in keys {
                    self.delete(&k, seq)?;
                }
            }
            Record::Carried(list) => {
                for (k, t) in list {
                    self.delete(&k, t)?;
                }
            }
            Record::NextSeq(s) => self.max_seq = self.max_seq.max(s.saturating_sub(1)),
        }
        Ok(())
    }
}

/// Format 1 kept no deletes files: the live version of every id over the sealed segments, older
/// versions marked deleted (O(rows); complete manifests skip it).
fn resolve_sealed(segments: &[Arc<Segment>]) -> u64 {
    let mut ids: HashMap<DocId, (u64, Loc)> = HashMap::new();
    let mut max_seq = 0;
    for (si, seg) in segments.iter().enumerate() {
        for row in 0..seg.rows() as u32 {
            let (id, seq) = (seg.id(row), seg.seq(row));
            max_seq = max_seq.max(seq);
            match ids.get(&id) {
                Some(&(old_seq, _)) if old_seq >= seq => seg.mark_deleted(row, old_seq),
                prev => {
                    if let Some(&(_, Loc::Sealed(os, orow))) = prev {
                        segments[os].mark_deleted(orow, seq);
                    }
                    ids.insert(id, (seq, Loc::Sealed(si, row)));
                }
            }
        }
    }
    max_seq
}

/// Marks the rows that each segment's deletes file lists.
fn apply_deletes(dir: &Path, m: &Manifest, segments: &[Arc<Segment>]) -> Result<(), StorageError> {
    for seg in segments {
        if let Some(file) = m.deletes.get(&seg.name) {
            for r in crate::deletes::read(dir, file, seg.rows())? {
                seg.mark_deleted(r, 0);
            }
        }
    }
    Ok(())
}

/// Writes a deletes file for every segment with deleted rows (as generation `gen`) into `m`.
pub(crate) fn persist_deletes(
    dir: &Path,
    m: &mut Manifest,
    segments: &[Arc<Segment>],
    gen: u64,
    changed: impl Fn(&Segment, usize) -> bool,
) -> Result<(), StorageError> {
    for seg in segments {
        let n = seg.deleted_rows().count();
        if n > 0 && changed(seg, n) {
            let name = crate::deletes::write(dir, &seg.name, gen, seg.rows(), seg.deleted_rows())?;
            m.deletes.insert(seg.name.clone(), name);
        }
    }
    m.deletes
        .retain(|name, _| segments.iter().any(|s| &s.name == name));
    m.resolved = true;
    Ok(())
}

/// A format-1 `wal.redb` as log records, in sequence order.
fn legacy_records(dir: &Path, writable: bool) -> Result<Vec<Record>, StorageError> {
    let path = dir.join("wal.redb");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let old = crate::legacy::read(&path, writable)?;
    let mut docs = old.docs;
    // Records start with their sequence number (doc.rs).
    docs.sort_by_key(|(_, r)| {
        r.get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    });
    Ok(vec![
        Record::Upsert(docs),
        Record::Carried(old.tombstones),
        Record::NextSeq(old.next_seq),
    ])
}

/// Opens the collection in `dir`. `writable`: also repair and prepare the log for appending.
pub(crate) fn recover(
    dir: &Path,
    schema: &Schema,
    writable: bool,
) -> Result<Recovered, StorageError> {
    let mut manifest = manifest::read(dir)?;
    let seg_dir = dir.join("segments");
    if writable {
        std::fs::create_dir_all(&seg_dir).map_err(io_err(&seg_dir))?;
    }
    let segments: Vec<Arc<Segment>> = manifest
        .segments
        .iter()
        .map(|n| Segment::open(schema, &seg_dir, n).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let sealed_max = if manifest.resolved {
        apply_deletes(dir, &manifest, &segments)?;
        0
    } else {
        resolve_sealed(&segments)
    };
    let mut rp = Replay {
        schema,
        flushed_seq: manifest.flushed_seq,
        segments: &segments,
        ids: HashMap::new(),
        rows: Vec::new(),
        superseded: Vec::new(),
        max_seq: sealed_max.max(manifest.flushed_seq),
    };
    let legacy = manifest.format < manifest::FORMAT;
    let mut last_log: Option<(u64, u64)> = None;
    let mut migrate: Vec<Record> = Vec::new();
    if legacy {
        let file = dir.join("wal.redb").display().to_string();
        for rec in legacy_records(dir, writable)? {
            if writable {
                migrate.push(rec.clone());
            }
            rp.apply(rec, &file)?;
        }
    } else {
        for gen in wal::generations(dir)? {
            if gen < manifest.wal_gen {
                continue;
            }
            let path = wal::log_path(dir, gen);
            // Logs are removed only while no reader holds the database (db.rs), so a listed log
            // cannot vanish under a reader.
            let read = wal::read_log(dir, gen)?.ok_or_else(|| StorageError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "write-ahead log removed while it was being opened",
                ),
            })?;
            let file = path.display().to_string();
            for rec in read.records {
                rp.apply(rec, &file)?;
            }
            last_log = Some((gen, read.valid_len));
        }
    }
    let Replay {
        rows,
        superseded,
        max_seq,
        ..
    } = rp;
    let borrowed = match segments.last() {
        Some(seg) if !rows.is_empty() => crate::mutable::BorrowedCodes::from_segment(schema, seg),
        _ => None,
    };
    let (mutable, _) = MutableSegment::with_codes(borrowed).append(schema, rows);
    for (r, &s) in superseded.iter().enumerate() {
        if s != LIVE {
            mutable.mark_superseded(r as u32, s);
        }
    }
    let log = if !writable {
        None
    } else if legacy {
        // Copy the redb WAL's records into a fresh log, switch the manifest to format 2, and only
        // then remove wal.redb (a crash in between repeats the move).
        let gen = manifest.wal_gen.max(1);
        let mut log = LogWriter::create(dir, gen)?;
        for rec in &migrate {
            log.append(rec)?;
        }
        manifest.format = manifest::FORMAT;
        manifest.wal_gen = gen;
        persist_deletes(dir, &mut manifest, &segments, gen, |_, _| true)?;
        manifest::write(dir, &manifest)?;
        let redb = dir.join("wal.redb");
        if redb.exists() {
            std::fs::remove_file(&redb).map_err(io_err(&redb))?;
        }
        Some(log)
    } else {
        let log = match last_log {
            Some((gen, valid)) => LogWriter::append_to(dir, gen, valid)?,
            None => LogWriter::create(dir, manifest.wal_gen.max(1))?,
        };
        if !manifest.resolved {
            persist_deletes(dir, &mut manifest, &segments, log.gen, |_, _| true)?;
            manifest::write(dir, &manifest)?;
        }
        Some(log)
    };
    Ok(Recovered {
        manifest,
        segments,
        mutable,
        last_seq: max_seq,
        log,
    })
}
