//! The backfill of fields added to a collection that holds documents (see `evolve.rs` for the
//! schema changes): which sealed segments still lack a field, the durable partial files of
//! dense vectors computed so far, and the install of a segment's copy with the field's files.
//! The segment-copy helpers here serve dropped fields' rewrites too.
//!
//! A backfill step computes the field for the rows of one segment (the engine computes model
//! vectors; text fields are built here from the payloads) and installs a copy of the segment
//! with the field's files: every other file is hard-linked, the rows keep their order, so the
//! deletes carry over row for row, and the copy replaces the original in one manifest write.
//! Progress is therefore durable segment by segment; within a segment, computed dense vectors
//! are appended to `backfill/<field>@<segment>.f32` (fdatasync per call), so a restart resumes
//! where the last append ended (a multi field's vector sets are held in memory until their
//! segment is installed, so it resumes at the last installed segment; they are checked,
//! normalised and pruned here as a write's are). Segments still lacking a field are never
//! merged.

use super::*;
use crate::segment_write::{finish_dir, sync_dir, FileMeta};
use std::collections::BTreeMap;
use std::io::Write;

/// One unit of backfill: a sealed segment that lacks a field being backfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillTask {
    /// The field.
    pub field: String,
    /// The segment's name.
    pub segment: String,
    /// Rows of the segment (deleted ones included).
    pub rows: usize,
    /// Rows of the segment visible now (the documents waiting for the field).
    pub live: usize,
}

/// How far the backfill of one field is, for `collection info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillInfo {
    /// The field.
    pub field: String,
    /// Visible documents whose segment lacks the field (queries on it skip them).
    pub pending_documents: usize,
    /// Sealed segments lacking the field.
    pub pending_segments: usize,
    /// Rows already computed towards the segments in progress (durable partial files).
    pub partial_rows: usize,
}

/// The column a backfill installs into a segment.
#[derive(Debug)]
pub enum FieldColumn {
    /// Row-major vectors of a dense field, one per row of the segment (in row order; rows that
    /// are deleted may hold zeros). Cosine vectors must already be normalised.
    Dense(Vec<f32>),
    /// A text field: built here from the segment's payloads.
    Text,
    /// The vector sets of a multi field, one per row of the segment (rows that are deleted may
    /// hold empty sets), as the model gave them: they are pruned here as a write prunes them.
    Multi(Vec<Vec<Vec<f32>>>),
}

impl Collection {
    /// The segments still lacking a field being backfilled, oldest first.
    pub fn backfill_tasks(&self) -> Vec<BackfillTask> {
        let snap = self.snapshot();
        let schema = snap.schema.clone();
        let mut out = Vec::new();
        for field in &schema.backfill {
            for seg in &snap.version.segments {
                if !seg.has_field(field) {
                    out.push(BackfillTask {
                        field: field.clone(),
                        segment: seg.name.clone(),
                        rows: seg.rows(),
                        live: seg.visible_rows(snap.seq),
                    });
                }
            }
        }
        out
    }

    /// How far each field's backfill is.
    pub fn backfill_info(&self) -> Vec<BackfillInfo> {
        let tasks = self.backfill_tasks();
        let schema = self.schema();
        schema
            .backfill
            .iter()
            .map(|field| {
                let mine: Vec<&BackfillTask> = tasks.iter().filter(|t| &t.field == field).collect();
                let dim = schema.dense(field).map_or(0, |f| f.dim);
                BackfillInfo {
                    field: field.clone(),
                    pending_documents: mine.iter().map(|t| t.live).sum(),
                    pending_segments: mine.len(),
                    partial_rows: mine
                        .iter()
                        .map(|t| partial_rows(&self.partial_path(field, &t.segment), dim))
                        .sum(),
                }
            })
            .collect()
    }

    fn partial_path(&self, field: &str, segment: &str) -> PathBuf {
        self.dir
            .join("backfill")
            .join(format!("{field}@{segment}.f32"))
    }

    /// The vectors of dense field `field` already computed for segment `segment` by an
    /// interrupted backfill (whole rows; a torn last append is cut off).
    pub fn backfill_partial(&self, field: &str, segment: &str) -> Result<Vec<f32>, StorageError> {
        let dim = self.schema().dense(field).map_or(0, |f| f.dim);
        let path = self.partial_path(field, segment);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let whole = if dim == 0 {
            0
        } else {
            bytes.len() / (dim * 4) * dim * 4
        };
        if whole != bytes.len() && self.writer.is_some() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(whole as u64).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        Ok(bytes[..whole]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Appends computed vectors of `field` for `segment` to its partial file, durably.
    pub fn backfill_append(
        &self,
        field: &str,
        segment: &str,
        vectors: &[f32],
    ) -> Result<(), StorageError> {
        drop(self.writer()?);
        let path = self.partial_path(field, segment);
        let dir = self.dir.join("backfill");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            sync_dir(&self.dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let bytes: Vec<u8> = vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
        f.write_all(&bytes).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))?;
        Ok(())
    }

    /// Installs `column` as field `field` of sealed segment `segment`: a copy of the segment
    /// with the field's files replaces it. Returns `false` when there was nothing to do (the
    /// segment is gone or already holds the field).
    pub fn install_field(
        &self,
        field: &str,
        segment: &str,
        column: FieldColumn,
    ) -> Result<bool, StorageError> {
        drop(self.writer()?);
        let schema = self.schema();
        let Some(old) = self
            .snapshot()
            .version
            .segments
            .iter()
            .find(|s| s.name == segment)
            .cloned()
        else {
            return Ok(false);
        };
        if !schema.backfill.contains(field) || old.has_field(field) {
            return Ok(false);
        }
        let rows = old.rows();
        let Some(spec) = schema.fields.get(field).cloned() else {
            return Ok(false);
        };
        let only = Schema::single(field, spec.clone());
        let progress = self.progress.read().clone();
        test_event("install-start");
        let name = self.rewrite_segment(&old, &|_| false, |dir, files| match column {
            FieldColumn::Dense(v) => {
                let f = only.dense(field).ok_or_else(|| {
                    StorageError::Schema(format!("field {field:?} is not a dense field"))
                })?;
                crate::segment_write::write_dense_field(
                    dir,
                    &f,
                    &v,
                    rows,
                    None,
                    progress.as_ref(),
                    files,
                )
            }
            FieldColumn::Multi(sets) => {
                let Some(f) = only.multi(field) else {
                    return Err(StorageError::Schema(format!(
                        "field {field:?} is not a multi field"
                    )));
                };
                if sets.len() != rows {
                    return Err(StorageError::Schema(format!(
                        "field {field:?}: {} vector sets for the {rows} rows of segment {segment}",
                        sets.len()
                    )));
                }
                let mut col = crate::multi::MultiColumn::new(f.dim);
                for (row, set) in sets.into_iter().enumerate() {
                    let mut doc = Document::default();
                    let empty = set.is_empty();
                    doc.multi.insert(field.to_string(), set);
                    // Checked and normalised as a write's sets are (a deleted row's is empty).
                    if !empty {
                        crate::multi::prepare_multi(&only, &mut doc).map_err(|e| {
                            StorageError::Schema(format!("segment {segment}, row {row}: {e}"))
                        })?;
                    }
                    only.prune_multi(&mut doc)?;
                    let raw = doc.multi_raw.get(field).copied().unwrap_or(0);
                    col.push(doc.multi.get(field).map_or(&[][..], Vec::as_slice), raw);
                }
                let cols = BTreeMap::from([(field.to_string(), col)]);
                crate::multi_store::write_segment_files(
                    &only,
                    dir,
                    rows,
                    &cols,
                    files,
                    progress.as_ref(),
                )
            }
            FieldColumn::Text => {
                if only.text(field).is_none() {
                    return Err(StorageError::Schema(format!(
                        "field {field:?} is not a text field"
                    )));
                }
                let payloads: Vec<_> = (0..rows as u32).map(|r| old.payload(r)).collect();
                for (fname, bytes, xxh3) in crate::text::write_text_indexes(&only, dir, &payloads)?
                {
                    files.insert(fname, FileMeta { bytes, xxh3 });
                }
                Ok(())
            }
        })?;
        test_event("install-written");
        // A field dropped (or dropped and added again) while its column was computed is not
        // installed: the copy stays unlisted and is collected.
        let same = |s: &Schema| s.backfill.contains(field) && s.fields.get(field) == Some(&spec);
        if !self.install_rewritten(&old, &name, &same)? {
            return Ok(false);
        }
        let _ = std::fs::remove_file(self.partial_path(field, segment));
        Ok(true)
    }

    /// Takes fields whose every segment holds them off the backfill list. Returns them.
    pub fn finish_backfill(&self) -> Result<Vec<String>, StorageError> {
        let mut w = self.writer()?;
        let snap = self.snapshot();
        let done: Vec<String> = snap
            .schema
            .backfill
            .iter()
            .filter(|f| snap.version.segments.iter().all(|s| s.has_field(f)))
            .cloned()
            .collect();
        if done.is_empty() {
            return Ok(done);
        }
        let mut new = (*snap.schema).clone();
        for f in &done {
            new.backfill.remove(f);
        }
        self.install_schema(&mut w, new, false)?;
        drop(w);
        self.remove_stale_partials();
        self.merger.notify();
        Ok(done)
    }

    /// Removes partial backfill files that no pending (field, segment) pair names.
    fn remove_stale_partials(&self) {
        let dir = self.dir.join("backfill");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let keep: HashSet<PathBuf> = self
            .backfill_tasks()
            .iter()
            .map(|t| self.partial_path(&t.field, &t.segment))
            .collect();
        for e in entries.flatten() {
            if !keep.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Writes a copy of `old` under a new name: every file but those `dropped` hard-linked (or
    /// copied), then `add` writes more into the new directory. Returns the new name.
    pub(super) fn rewrite_segment(
        &self,
        old: &Segment,
        dropped: &dyn Fn(&str) -> bool,
        add: impl FnOnce(&Path, &mut BTreeMap<String, FileMeta>) -> Result<(), StorageError>,
    ) -> Result<String, StorageError> {
        let name = jobs::reserve_name(&mut *self.writer()?);
        let seg_dir = self.dir.join("segments");
        let tmp = seg_dir.join(format!("{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut files = BTreeMap::new();
        let mut subdirs = HashSet::new();
        for (fname, fm) in old.file_meta() {
            if dropped(fname) {
                continue;
            }
            let to = tmp.join(fname);
            if let Some((sub, _)) = fname.rsplit_once('/') {
                if subdirs.insert(sub.to_string()) {
                    let d = tmp.join(sub);
                    std::fs::create_dir_all(&d).map_err(io_err(&d))?;
                }
            }
            let from = old.dir().join(fname);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io_err(&from))?;
                std::fs::File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err(&to))?;
            }
            files.insert(fname.clone(), fm.clone());
        }
        for sub in &subdirs {
            sync_dir(&tmp.join(sub))?;
        }
        add(&tmp, &mut files)?;
        finish_dir(&seg_dir, &name, old.rows(), files)?;
        Ok(name)
    }

    /// Replaces sealed segment `old` by its rewritten copy `name` (same rows, same order): the
    /// copy takes over its deletes, the manifest lists it in its place.
    /// Lists copy `name` in place of `old` when `old` is still listed and `still(schema)`
    /// holds (checked under the writer lock, so no schema change comes in between); else the
    /// copy stays unlisted and is collected. Returns whether it was listed.
    pub(super) fn install_rewritten(
        &self,
        old: &Arc<Segment>,
        name: &str,
        still: &dyn Fn(&Schema) -> bool,
    ) -> Result<bool, StorageError> {
        let mut w = self.writer()?;
        w.writing.remove(name);
        let cur = self.snapshot();
        let Some(i) = cur
            .version
            .segments
            .iter()
            .position(|s| Arc::ptr_eq(s, old))
        else {
            // Merged away meanwhile.
            return Ok(false);
        };
        if !still(&cur.schema) {
            return Ok(false);
        }
        let seg = Segment::open(&cur.schema, &self.dir.join("segments"), name)?;
        for r in old.deleted_rows() {
            seg.mark_deleted(r, old.deleted_at(r));
        }
        let mut segments = cur.version.segments.clone();
        segments[i] = Arc::new(seg);
        self.install_segments(&mut w, &cur, segments, std::slice::from_ref(old))?;
        Ok(true)
    }

    /// Removes the partial backfill files of `field` (`backfill/<field>@<segment>.f32`).
    pub(super) fn remove_partials(&self, field: &str) -> Result<(), StorageError> {
        let dir = self.dir.join("backfill");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let prefix = format!("{field}@");
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
            }
        }
        Ok(())
    }
}

/// Whole rows of `dim` floats in partial file `path` (0 when there is none).
fn partial_rows(path: &Path, dim: usize) -> usize {
    match (std::fs::metadata(path), dim) {
        (Ok(m), d) if d > 0 => m.len() as usize / (d * 4),
        _ => 0,
    }
}
