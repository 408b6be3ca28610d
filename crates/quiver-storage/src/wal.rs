//! The write-ahead log: append-only files that other processes can read while the writer appends.
//!
//! ```text
//! wal/<gen:016x>.log   header: magic "QVWAL\0\0\x01" | gen u64 LE
//!                      then records: body_len u32 LE | xxh3-64(body) u64 LE | body
//! body = 1 | n u32 | n x (key_len u16 | key | rec_len u32 | record)     upsert (record: doc.rs)
//!      | 2 | seq u64 | n u32 | n x (key_len u16 | key)                   delete at seq
//!      | 3 | n u32 | n x (key_len u16 | key | seq u64)                   tombstones (moved from format 1)
//!      | 4 | seq u64                                                     sequence numbers used so far
//! ```
//!
//! One batch is one record, written with one `write` and made durable with `fdatasync` before the
//! write is acknowledged; so a reader (in this process or another) sees a batch whole or not at
//! all. A record whose length runs past the end of the file, or whose checksum fails, is a torn
//! tail: readers stop there, and the writer truncates it away when it opens the log. A failed
//! append is truncated away at once, so a later record never follows garbage.
//!
//! The manifest names the first generation to replay (`wal_gen`); every generation from there on
//! is replayed in order, and records at or below the manifest's `flushed_seq` are skipped (they
//! are in sealed segments). A seal starts a new generation, so old logs are deleted whole instead
//! of growing for ever.

use crate::segment::sync_dir;
use crate::{io_err, StorageError};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"QVWAL\0\0\x01";
const HEADER: u64 = 16;
const FRAME: usize = 12;

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// Documents (key, encoded record); each record carries its own sequence number.
    Upsert(Vec<(Vec<u8>, Vec<u8>)>),
    /// Documents deleted by the write with sequence number `seq`.
    Delete {
        /// The delete's sequence number.
        seq: u64,
        /// Keys of the deleted documents.
        keys: Vec<Vec<u8>>,
    },
    /// Tombstones moved from a format-1 `wal.redb`: (key, seq).
    Carried(Vec<(Vec<u8>, u64)>),
    /// Sequence numbers up to `seq - 1` have been used.
    NextSeq(u64),
}

/// The directory of the logs of collection directory `dir`.
pub(crate) fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// Path of generation `gen`.
pub(crate) fn log_path(dir: &Path, gen: u64) -> PathBuf {
    wal_dir(dir).join(format!("{gen:016x}.log"))
}

/// Generations present in `dir/wal`, ascending (other files are ignored).
pub(crate) fn generations(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let wd = wal_dir(dir);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&wd) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&wd)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(&wd))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(hex) = name.strip_suffix(".log") {
            if let Ok(g) = u64::from_str_radix(hex, 16) {
                out.push(g);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
}

impl Record {
    /// The record framed for the log: `FRAME` header bytes (filled by [`LogWriter::append`]),
    /// then the body, in one buffer so a batch is copied once.
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; FRAME];
        match self {
            Record::Upsert(docs) => {
                let size: usize = docs.iter().map(|(k, r)| 6 + k.len() + r.len()).sum();
                b.reserve(5 + size);
                b.push(1);
                b.extend_from_slice(&(docs.len() as u32).to_le_bytes());
                for (k, r) in docs {
                    put_key(&mut b, k);
                    b.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    b.extend_from_slice(r);
                }
            }
            Record::Delete { seq, keys } => {
                b.push(2);
                b.extend_from_slice(&seq.to_le_bytes());
                b.extend_from_slice(&(keys.len() as u32).to_le_bytes());
                for k in keys {
                    put_key(&mut b, k);
                }
            }
            Record::Carried(list) => {
                b.push(3);
                b.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for (k, s) in list {
                    put_key(&mut b, k);
                    b.extend_from_slice(&s.to_le_bytes());
                }
            }
            Record::NextSeq(s) => {
                b.push(4);
                b.extend_from_slice(&s.to_le_bytes());
            }
        }
        b
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let mut r = Cursor { b: body, pos: 0 };
        let rec = match r.u8()? {
            1 => {
                let n = r.u32()? as usize;
                let mut docs = Vec::with_capacity(n.min(body.len() / 6));
                for _ in 0..n {
                    let k = r.key()?;
                    let len = r.u32()? as usize;
                    docs.push((k, r.take(len)?.to_vec()));
                }
                Record::Upsert(docs)
            }
            2 => {
                let seq = r.u64()?;
                let n = r.u32()? as usize;
                let mut keys = Vec::with_capacity(n.min(body.len() / 2));
                for _ in 0..n {
                    keys.push(r.key()?);
                }
                Record::Delete { seq, keys }
            }
            3 => {
                let n = r.u32()? as usize;
                let mut list = Vec::with_capacity(n.min(body.len() / 10));
                for _ in 0..n {
                    let k = r.key()?;
                    list.push((k, r.u64()?));
                }
                Record::Carried(list)
            }
            4 => Record::NextSeq(r.u64()?),
            _ => return None,
        };
        (r.pos == body.len()).then_some(rec)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Some(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
    fn key(&mut self) -> Option<Vec<u8>> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        let n = u16::from_le_bytes(a) as usize;
        self.take(n).map(|k| k.to_vec())
    }
}

/// What reading one log found.
#[derive(Debug, Default)]
pub(crate) struct LogRead {
    /// Whole, verified records in order.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last whole record.
    pub valid_len: u64,
    /// Bytes after it (a torn tail: a write in progress, or one cut short by a crash).
    pub torn_bytes: u64,
}

fn corrupt(path: &Path, msg: impl Into<String>) -> StorageError {
    crate::segment::corrupt(path, msg)
}

/// Reads generation `gen` of `dir` (streaming: one record in memory at a time besides the
/// decoded ones). `Ok(None)` if the file does not exist (a writer removed it after a seal).
pub(crate) fn read_log(dir: &Path, gen: u64) -> Result<Option<LogRead>, StorageError> {
    let path = log_path(dir, gen);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let total = file.metadata().map_err(io_err(&path))?.len();
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; HEADER as usize];
    if total < HEADER {
        // Created but its header not yet written (or cut short): nothing committed.
        return Ok(Some(LogRead {
            torn_bytes: total,
            ..Default::default()
        }));
    }
    r.read_exact(&mut head).map_err(io_err(&path))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(&path, "not a quiver write-ahead log (bad magic)"));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&head[8..]);
    if u64::from_le_bytes(g) != gen {
        return Err(corrupt(&path, "header names another generation"));
    }
    let mut out = LogRead {
        valid_len: HEADER,
        ..Default::default()
    };
    let mut body = Vec::new();
    loop {
        let left = total - out.valid_len;
        if left < FRAME as u64 {
            out.torn_bytes = left;
            break;
        }
        let mut frame = [0u8; FRAME];
        r.read_exact(&mut frame).map_err(io_err(&path))?;
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as u64;
        let mut s = [0u8; 8];
        s.copy_from_slice(&frame[4..]);
        if len > left - FRAME as u64 {
            out.torn_bytes = left;
            break;
        }
        body.resize(len as usize, 0);
        r.read_exact(&mut body).map_err(io_err(&path))?;
        if xxhash_rust::xxh3::xxh3_64(&body) != u64::from_le_bytes(s) {
            out.torn_bytes = left;
            break;
        }
        let rec = Record::decode(&body).ok_or_else(|| {
            corrupt(
                &path,
                format!(
                    "record at byte {} passes its checksum but cannot be decoded",
                    out.valid_len
                ),
            )
        })?;
        out.records.push(rec);
        out.valid_len += FRAME as u64 + len;
    }
    Ok(Some(out))
}

/// The open log the writer appends to.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: File,
    len: u64,
    /// Generation.
    pub gen: u64,
    poisoned: bool,
}

impl LogWriter {
    /// Creates generation `gen` (replacing a leftover file of that name), durable on return.
    pub(crate) fn create(dir: &Path, gen: u64) -> Result<LogWriter, StorageError> {
        let wd = wal_dir(dir);
        std::fs::create_dir_all(&wd).map_err(io_err(&wd))?;
        let path = log_path(dir, gen);
        let mut file = File::create(&path).map_err(io_err(&path))?;
        let mut head = Vec::with_capacity(HEADER as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&gen.to_le_bytes());
        file.write_all(&head).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(&wd)?;
        Ok(LogWriter {
            path,
            file,
            len: HEADER,
            gen,
            poisoned: false,
        })
    }

    /// Opens generation `gen` for appending after its first `valid_len` bytes (a torn tail past
    /// them is cut off first).
    pub(crate) fn append_to(
        dir: &Path,
        gen: u64,
        valid_len: u64,
    ) -> Result<LogWriter, StorageError> {
        if valid_len < HEADER {
            // Created but its header never fully written (a crash inside `create`): nothing in
            // it was committed. Start it again, header first.
            return LogWriter::create(dir, gen);
        }
        let path = log_path(dir, gen);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if len != valid_len {
            file.set_len(valid_len).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        let mut w = LogWriter {
            path,
            file,
            len: valid_len,
            gen,
            poisoned: false,
        };
        w.seek_end()?;
        Ok(w)
    }

    fn seek_end(&mut self) -> Result<(), StorageError> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::Start(self.len))
            .map(|_| ())
            .map_err(io_err(&self.path))
    }

    /// Appends `rec` and makes it durable. On failure the partial record is cut off again, so the
    /// log stays readable; if even that fails, every later append fails too.
    pub(crate) fn append(&mut self, rec: &Record) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other(
                    "an earlier append failed and could not be undone; reopen the collection",
                ),
            });
        }
        let mut buf = rec.encode();
        let body_len = buf.len() - FRAME;
        let len = u32::try_from(body_len).map_err(|_| StorageError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other(format!(
                "one batch of {body_len} bytes exceeds the 4 GiB record limit; use smaller batches"
            )),
        })?;
        let sum = xxhash_rust::xxh3::xxh3_64(&buf[FRAME..]);
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf[4..FRAME].copy_from_slice(&sum.to_le_bytes());
        let res = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let undo = self
                    .file
                    .set_len(self.len)
                    .and_then(|_| self.file.sync_data());
                if undo.is_err() || self.seek_end().is_err() {
                    self.poisoned = true;
                }
                Err(io_err(&self.path)(e))
            }
        }
    }

    /// Bytes in the log.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Upsert(vec![(vec![0, 1], vec![9; 30]), (vec![1, b'a'], vec![])]),
            Record::Delete {
                seq: 7,
                keys: vec![vec![0, 1], vec![1, b'x', b'y']],
            },
            Record::Carried(vec![(vec![0, 2], 5)]),
            Record::NextSeq(42),
        ]
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::create(dir.path(), 3).expect("create");
        for r in sample() {
            w.append(&r).expect("append");
        }
        let read = read_log(dir.path(), 3).expect("read").expect("exists");
        assert_eq!(read.records, sample());
        assert_eq!(read.torn_bytes, 0);
        assert_eq!(read.valid_len, w.len());
        // Every cut inside the last record is a torn tail; everything before it survives.
        let path = log_path(dir.path(), 3);
        let full = std::fs::read(&path).expect("bytes");
        let last_start = {
            let mut w2 = LogWriter::create(dir.path(), 4).expect("create");
            for r in &sample()[..3] {
                w2.append(r).expect("append");
            }
            w2.len() as usize
        };
        for cut in last_start..full.len() {
            std::fs::write(&path, &full[..cut]).expect("write");
            let r = read_log(dir.path(), 3).expect("read").expect("exists");
            assert_eq!(r.records, sample()[..3].to_vec(), "cut at {cut}");
            assert_eq!(r.valid_len as usize, last_start);
            assert_eq!(r.torn_bytes as usize, cut - last_start);
        }
        // A flipped bit in the last record is a torn tail too; appending after reopening cuts it.
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 2] ^= 1;
        std::fs::write(&path, &bad).expect("write");
        let r = read_log(dir.path(), 3).expect("read").expect("exists");
        assert_eq!(r.records.len(), 3);
        let mut w = LogWriter::append_to(dir.path(), 3, r.valid_len).expect("reopen");
        w.append(&Record::NextSeq(99)).expect("append");
        let r = read_log(dir.path(), 3).expect("read").expect("exists");
        assert_eq!(r.records.last(), Some(&Record::NextSeq(99)));
        assert_eq!(r.records.len(), 4);
        assert_eq!(generations(dir.path()).expect("gens"), vec![3, 4]);
        assert!(read_log(dir.path(), 9).expect("read").is_none());
    }

    #[test]
    fn a_wrong_magic_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        LogWriter::create(dir.path(), 1).expect("create");
        let path = log_path(dir.path(), 1);
        std::fs::write(&path, b"NOTAWAL!\x01\0\0\0\0\0\0\0").expect("write");
        let e = read_log(dir.path(), 1).expect_err("bad magic").to_string();
        assert!(
            e.contains("0000000000000001.log") && e.contains("magic"),
            "{e}"
        );
    }
}
