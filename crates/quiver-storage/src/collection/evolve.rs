//! Schema evolution: fields added to and dropped from a collection that holds documents.
//!
//! A change of schema never rewrites documents. It runs with everything pending sealed first
//! (so every record in the log is written under the new schema), under the seal and merge job
//! locks and the writer lock, and replaces `schema.json` atomically:
//!
//! - **add** a payload field (`keyword`, `integer`, ...): every stored value is checked against
//!   the new type first; the segments are reopened so their payload indexes cover it.
//! - **add** a dense, multi or text field: new writes carry it at once; sealed segments written
//!   before lack its files until a *backfill* installs them. The field is listed in the
//!   schema's `backfill` set meanwhile; a segment without its files reads as not holding it
//!   (queries skip its rows and report them as pending, `Snapshot::pending`).
//! - **drop** a field: it leaves the schema at once (listed in `dropping`), then each sealed
//!   segment holding its files is rewritten without them; a writable open finishes a drop a
//!   crash interrupted.
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
use crate::schema::FieldSpec;
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

/// What a schema change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlterReport {
    /// The field added or dropped.
    pub field: String,
    /// Documents waiting for a backfill of the added field (0: none needed).
    pub pending_documents: usize,
    /// Sealed segments rewritten (a drop).
    pub rewritten_segments: usize,
}

impl Collection {
    /// Runs `f` with the writer lock once nothing is pending in the log: the seal in flight
    /// and the mutable segment are sealed first, and the seal and merge jobs are held, so no
    /// segment changes under `f` but by its own hand.
    fn with_quiesced<T>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        drop(self.writer()?);
        // Lock order: seal job, merge job, writer.
        let _seal = self.sealer.job.lock();
        let _merge = self.merger.job.lock();
        for _ in 0..64 {
            self.seal_sealing()?;
            self.freeze_locked(&mut *self.writer()?)?;
            self.seal_sealing()?;
            let mut w = self.writer()?;
            let quiet = {
                let cur = self.current.load();
                cur.version.mutable.rows() == 0 && cur.version.sealing.is_none()
            };
            if quiet {
                return f(&mut w);
            }
        }
        Err(StorageError::Maintenance(
            "writes kept arriving while the schema change waited for everything to be sealed"
                .into(),
        ))
    }

    /// Writes `schema` as the collection's schema (atomically, durably) and publishes it;
    /// `reopen`: the sealed segments are opened again under it (payload indexes).
    fn install_schema(
        &self,
        _w: &mut Writer,
        schema: Schema,
        reopen: bool,
    ) -> Result<(), StorageError> {
        schema.validate()?;
        write_schema(&self.dir, &schema)?;
        let cur = self.snapshot();
        let mut segments = cur.version.segments.clone();
        if reopen {
            let dir = self.dir.join("segments");
            for s in &mut segments {
                let fresh = Segment::open(&schema, &dir, &s.name)?;
                for r in s.deleted_rows() {
                    fresh.mark_deleted(r, s.deleted_at(r));
                }
                *s = Arc::new(fresh);
            }
        }
        // An empty mutable segment starts afresh under the new schema (it borrows codes of the
        // newest segment on its first write); one holding rows is kept (only the backfill and
        // dropping lists change then, not what a record holds).
        let mutable = match cur.version.mutable.rows() {
            0 => Arc::new(MutableSegment::new()),
            _ => cur.version.mutable.clone(),
        };
        let version = Version {
            segments,
            sealing: cur.version.sealing.clone(),
            mutable,
        };
        self.check_live()?;
        self.current.store(Arc::new(Published {
            version: Arc::new(version),
            seq: cur.seq,
            schema: Arc::new(schema),
        }));
        Ok(())
    }

    /// Adds field `name` to the schema. A payload field is checked against every stored
    /// value first (the error names the first document that does not fit; nothing changes). A
    /// dense, multi or text field is listed for backfill when sealed segments hold documents;
    /// a dense or multi field needs a `model` then (its vectors come from the stored text).
    pub fn add_field(&self, name: &str, spec: FieldSpec) -> Result<AlterReport, StorageError> {
        Schema::single(name, spec.clone()).check_user_written()?;
        self.add_field_as(name, spec, None)
    }

    /// Starts switching dense field `field` to the vectors of `spec` (the same field computed
    /// by a new model: `model`, `dim`, `embed`, ... as the field will be): adds its successor
    /// `<field>~<n>` (n one more than any generation the field's files carried) and lists it
    /// for backfill. Queries keep reading `field` until [`Collection::finish_switch`].
    pub fn begin_switch(&self, field: &str, spec: FieldSpec) -> Result<AlterReport, StorageError> {
        let schema = self.schema();
        let Some(old @ FieldSpec::Dense { .. }) = schema.fields.get(field) else {
            return Err(StorageError::Schema(format!(
                "no dense field {field:?} to switch"
            )));
        };
        if let Some(s) = schema.successors.get(field) {
            return Err(StorageError::Schema(format!(
                "field {field:?} is already switching (to {s:?}); finish its backfill, or drop \
                 {s:?} to cancel"
            )));
        }
        if schema.backfill.contains(field) {
            return Err(StorageError::Schema(format!(
                "field {field:?} is still being backfilled; switch it when that is done"
            )));
        }
        if !matches!(
            spec,
            FieldSpec::Dense {
                model: Some(_),
                stored_as: None,
                ..
            }
        ) {
            return Err(StorageError::Schema(format!(
                "the successor of {field:?} must be a dense field with a model"
            )));
        }
        let generations = schema
            .dropping
            .keys()
            .map(String::as_str)
            .chain([old.files_name(field)])
            .filter_map(|n| crate::schema::generation(field, n));
        let n = generations
            .chain([schema.successors_made])
            .max()
            .unwrap_or(0)
            + 1;
        self.add_field_as(&format!("{field}~{n}"), spec, Some(field))
    }

    /// Completes the switch of `field` to its successor once the successor's backfill is
    /// done: in one schema write the field takes the successor's spec and files (its
    /// `stored_as` names them) and the successor leaves the schema; then the field's old files
    /// are dropped from every segment like a dropped field's. `None` when `field` has no
    /// successor; an error while the successor's backfill is pending.
    pub fn finish_switch(&self, field: &str) -> Result<Option<AlterReport>, StorageError> {
        let switched = self.with_quiesced(|w| {
            let schema = self.schema();
            let Some(succ) = schema.successors.get(field).cloned() else {
                return Ok(false);
            };
            if schema.backfill.contains(&succ) {
                return Err(StorageError::Schema(format!(
                    "field {field:?} cannot switch yet: its successor {succ:?} is still being \
                     backfilled"
                )));
            }
            let mut new = (*schema).clone();
            let (Some(old), Some(mut next)) = (new.fields.remove(field), new.fields.remove(&succ))
            else {
                return Err(StorageError::Schema(format!(
                    "successor {succ:?} of {field:?} is not in the schema"
                )));
            };
            if let FieldSpec::Dense { stored_as, .. } = &mut next {
                *stored_as = Some(succ.clone());
            }
            new.successors.remove(field);
            new.dropping.insert(old.files_name(field).to_string(), old);
            new.fields.insert(field.to_string(), next);
            self.install_schema(w, new, true)?;
            test_event("switch-written");
            Ok(true)
        })?;
        if !switched {
            return Ok(None);
        }
        let rewritten = self.finish_drops()?;
        Ok(Some(AlterReport {
            field: field.to_string(),
            pending_documents: 0,
            rewritten_segments: rewritten,
        }))
    }

    fn add_field_as(
        &self,
        name: &str,
        spec: FieldSpec,
        successor_of: Option<&str>,
    ) -> Result<AlterReport, StorageError> {
        let schema = self.schema();
        if schema.fields.contains_key(name) {
            return Err(StorageError::Schema(format!(
                "field {name:?} already exists"
            )));
        }
        if schema.dropping.contains_key(name) {
            return Err(StorageError::Schema(format!(
                "field {name:?} is still being dropped; try again when that is done"
            )));
        }
        let mut new = (*schema).clone();
        new.fields.insert(name.to_string(), spec.clone());
        if let Some(base) = successor_of {
            new.successors.insert(base.to_string(), name.to_string());
            new.successors_made = crate::schema::generation(base, name).unwrap_or(0);
        }
        new.validate()?;
        self.with_quiesced(|w| {
            let snap = self.snapshot();
            // Existing documents must fit the new field.
            check_existing(&snap, name, &spec, &Schema::single(name, spec.clone()))?;
            let held = snap
                .version
                .segments
                .iter()
                .any(|s| s.rows() > s.deleted_rows().count());
            let needs_model = match &spec {
                FieldSpec::Dense { model, .. } => model.is_none(),
                FieldSpec::Multi(m) => m.model.is_none(),
                _ => false,
            };
            if held && needs_model {
                return Err(StorageError::Schema(format!(
                    "field {name:?} has no model: its vectors cannot be computed for the \
                     documents already stored (give it `model` and `embed`)"
                )));
            }
            let mut pending = 0;
            if Schema::has_segment_files(&spec) && !snap.version.segments.is_empty() {
                new.backfill.insert(name.to_string());
                pending = snap.count(None);
            }
            // What a killed backfill of an earlier field of this name left.
            self.remove_partials(name)?;
            let reopen = !Schema::has_segment_files(&spec);
            self.install_schema(w, new, reopen)?;
            Ok(AlterReport {
                field: name.to_string(),
                pending_documents: pending,
                rewritten_segments: 0,
            })
        })
    }

    /// Drops field `name`: it leaves the schema at once, then the sealed segments holding its
    /// files are rewritten without them (a crash in between is finished by the next writable
    /// open). The schema keeps at least one field.
    pub fn drop_field(&self, name: &str) -> Result<AlterReport, StorageError> {
        let schema = self.schema();
        let Some(spec) = schema.fields.get(name).cloned() else {
            return Err(StorageError::Schema(format!("no field {name:?} to drop")));
        };
        if schema.fields.len() == 1 {
            return Err(StorageError::Schema(format!(
                "field {name:?} is the schema's only field; drop the collection instead"
            )));
        }
        if let Some(s) = schema.successors.get(name) {
            return Err(StorageError::Schema(format!(
                "field {name:?} is switching to {s:?}; drop {s:?} first to cancel the switch"
            )));
        }
        self.with_quiesced(|w| {
            let mut new = (*self.schema()).clone();
            new.fields.remove(name);
            new.backfill.remove(name);
            // Dropping a successor cancels its field's switch.
            new.successors.retain(|_, s| s != name);
            if Schema::has_segment_files(&spec) {
                new.dropping
                    .insert(spec.files_name(name).to_string(), spec.clone());
            }
            self.install_schema(w, new, !Schema::has_segment_files(&spec))
        })?;
        self.remove_partials(name)?;
        let rewritten = self.finish_drops()?;
        Ok(AlterReport {
            field: name.to_string(),
            pending_documents: 0,
            rewritten_segments: rewritten,
        })
    }

    /// Rewrites the sealed segments that still hold files of dropped fields, then takes the
    /// fields off the `dropping` list. Returns the segments rewritten.
    pub(crate) fn finish_drops(&self) -> Result<usize, StorageError> {
        if self.schema().dropping.is_empty() || self.writer.is_none() {
            return Ok(0);
        }
        let _merge = self.merger.job.lock();
        let dropping = self.schema().dropping.clone();
        let is_dropped = |fname: &str| {
            dropping
                .iter()
                .any(|(n, spec)| Schema::is_field_file(n, spec, fname))
        };
        let mut rewritten = 0;
        for seg in self.snapshot().version.segments.iter() {
            if seg.file_meta().keys().any(|f| is_dropped(f)) {
                let name = self.rewrite_segment(seg, &is_dropped, |_, _| Ok(()))?;
                self.install_rewritten(seg, &name, &|_| true)?;
                test_event("drop-rewritten");
                rewritten += 1;
            }
        }
        let mut w = self.writer()?;
        let mut new = (*self.schema()).clone();
        new.dropping.retain(|n, _| !dropping.contains_key(n));
        self.install_schema(&mut w, new, false)?;
        Ok(rewritten)
    }

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
    fn rewrite_segment(
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
    fn install_rewritten(
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
    fn remove_partials(&self, field: &str) -> Result<(), StorageError> {
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

/// Checks every visible document's payload against the new field `name` (payload type, or the
/// text field's sources); `check` is a schema holding just that field.
fn check_existing(
    snap: &Snapshot,
    name: &str,
    spec: &FieldSpec,
    check: &Schema,
) -> Result<(), StorageError> {
    let kind = check.payload_kind(name);
    let is_text = matches!(spec, FieldSpec::Text { .. });
    let vectors = matches!(spec, FieldSpec::Dense { .. } | FieldSpec::Multi(_));
    if kind.is_none() && !is_text && !vectors {
        return Ok(());
    }
    let mut err = None;
    snap.for_each_visible_loc(None, |id, loc| {
        if err.is_some() {
            return;
        }
        let (s, row) = snap.place(loc);
        let payload = snap.segment(s).payload(row);
        // A write refuses a payload key named like a vector field; so must the field's arrival
        // (every later rewrite of such a document would fail).
        if vectors && payload.contains_key(name) {
            err = Some(StorageError::InvalidDocument {
                id: id.to_string(),
                field: name.to_string(),
                msg: "a stored payload key has this name; a vector field cannot take it".into(),
            });
            return;
        }
        if let Some(kind) = kind {
            if let Some(v) = payload.get(name) {
                if let Err(m) = crate::doc::check_payload_value(kind, v) {
                    err = Some(StorageError::InvalidDocument {
                        id: id.to_string(),
                        field: name.to_string(),
                        msg: format!("stored value does not fit the new field: {m}"),
                    });
                }
            }
        }
        if is_text {
            if let Err(e) = check.check_text_payload(&Some(id.clone()), &payload) {
                err = Some(e);
            }
        }
    });
    err.map_or(Ok(()), Err)
}

/// Whole rows of `dim` floats in partial file `path` (0 when there is none).
fn partial_rows(path: &Path, dim: usize) -> usize {
    match (std::fs::metadata(path), dim) {
        (Ok(m), d) if d > 0 => m.len() as usize / (d * 4),
        _ => 0,
    }
}

/// Replaces `dir/schema.json` atomically and durably.
fn write_schema(dir: &Path, schema: &Schema) -> Result<(), StorageError> {
    let path = dir.join("schema.json");
    let tmp = dir.join("schema.json.tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(schema.to_json().as_bytes())
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}
