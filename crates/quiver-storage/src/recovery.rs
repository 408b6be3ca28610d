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
    /// Live location of every id.
    pub ids: HashMap<DocId, Loc>,
    /// Last sequence number used.
    pub last_seq: u64,
    /// Deletes since the last compaction (key -> seq): carried into each new log generation.
    pub carried: HashMap<Vec<u8>, u64>,
    /// The log to append to (writers only).
    pub log: Option<LogWriter>,
}

/// Applies records to the state being rebuilt.
struct Replay<'a> {
    schema: &'a Schema,
    flushed_seq: u64,
    compacted_seq: u64,
    segments: &'a [Arc<Segment>],
    ids: HashMap<DocId, (u64, Loc)>,
    rows: Vec<NewRow>,
    superseded: Vec<u64>,
    max_seq: u64,
    carried: HashMap<Vec<u8>, u64>,
}

impl Replay<'_> {
    fn supersede(&mut self, loc: Loc, seq: u64) {
        match loc {
            Loc::Sealed(s, r) => self.segments[s].mark_deleted(r, seq),
            Loc::Mutable(r) => {
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
        let prev = self.ids.get(&doc.id).copied();
        self.superseded.push(LIVE);
        let id = doc.id.clone();
        self.rows.push(doc);
        match prev {
            Some((old_seq, _)) if old_seq >= seq => self.supersede(Loc::Mutable(row), old_seq),
            prev => {
                if let Some((_, loc)) = prev {
                    self.supersede(loc, seq);
                }
                self.ids.insert(id, (seq, Loc::Mutable(row)));
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8], t: u64) -> Result<(), StorageError> {
        self.max_seq = self.max_seq.max(t);
        if t > self.compacted_seq {
            let e = self.carried.entry(key.to_vec()).or_insert(t);
            *e = (*e).max(t);
        }
        let id = DocId::from_key(key)?;
        if let Some(&(seq, loc)) = self.ids.get(&id) {
            if seq < t {
                self.supersede(loc, t);
                self.ids.remove(&id);
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

/// The live version of every id over the sealed segments (older versions marked deleted).
fn resolve_sealed(segments: &[Arc<Segment>]) -> (HashMap<DocId, (u64, Loc)>, u64) {
    let mut ids: HashMap<DocId, (u64, Loc)> = HashMap::new();
    let mut max_seq = 0;
    for (si, seg) in segments.iter().enumerate() {
        for row in 0..seg.rows() as u32 {
            let (id, seq) = (seg.id(row).clone(), seg.seq(row));
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
    (ids, max_seq)
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
        r.get(..8).map(|b| b.to_vec()).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b);
            u64::from_le_bytes(a)
        })
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
    let (ids, sealed_max) = resolve_sealed(&segments);
    let mut rp = Replay {
        schema,
        flushed_seq: manifest.flushed_seq,
        compacted_seq: manifest.compacted_seq,
        segments: &segments,
        ids,
        rows: Vec::new(),
        superseded: Vec::new(),
        max_seq: sealed_max.max(manifest.flushed_seq),
        carried: HashMap::new(),
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
        ids,
        rows,
        superseded,
        max_seq,
        carried,
        ..
    } = rp;
    let (mutable, _) = MutableSegment::new().append(schema, rows);
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
        manifest::write(dir, &manifest)?;
        let redb = dir.join("wal.redb");
        if redb.exists() {
            std::fs::remove_file(&redb).map_err(io_err(&redb))?;
        }
        Some(log)
    } else {
        Some(match last_log {
            Some((gen, valid)) => LogWriter::append_to(dir, gen, valid)?,
            None => LogWriter::create(dir, manifest.wal_gen.max(1))?,
        })
    };
    Ok(Recovered {
        manifest,
        segments,
        mutable,
        ids: ids.into_iter().map(|(k, (_, l))| (k, l)).collect(),
        last_seq: max_seq,
        carried,
        log,
    })
}
