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
//! - **switch** a dense field to a new model (`begin_switch`): a successor `<field>~<n>` is
//!   added and backfilled; `finish_switch` then gives the field the successor's spec and files
//!   (`stored_as`) in one schema write and drops the old files as a dropped field's.
//!
//! The backfill itself is in `backfill.rs`.

use super::*;
use crate::schema::FieldSpec;
use crate::segment_write::sync_dir;
use std::io::Write;

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
    pub(super) fn install_schema(
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
    /// `<field>~<n>` (n: one more than the successors the collection ever made) and lists it
    /// for backfill. Queries keep reading `field` until [`Collection::finish_switch`].
    pub fn begin_switch(&self, field: &str, spec: FieldSpec) -> Result<AlterReport, StorageError> {
        let schema = self.schema();
        let Some(FieldSpec::Dense { .. }) = schema.fields.get(field) else {
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
        let n = schema.successors_made + 1;
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
