//! Schema evolution in the engine: fields added to a collection that holds documents are
//! *backfilled* from the stored payload text (storage's side: `quiver_storage`'s `evolve.rs`).
//!
//! [`Collection::backfill`] takes the segments still lacking a field one at a time, computes the
//! field's vectors for their rows in batches with the field's model (the same text rule and
//! normalisation as an upsert: [`crate::document::document_text`], `embed_documents`), appends
//! each batch durably to the segment's partial file, and installs the segment's copy with the
//! field when all its rows are done. A killed backfill resumes at the last durable batch. Text
//! fields need no model: storage builds them from the payloads. Between batches the backfill
//! sleeps so that it is busy at most `duty` of the time, which keeps searches' latency.

use crate::engine::Collection;
use crate::error::{EngineError, Result};
use quiver_query::plan::{Plan, Source, Stage};
use quiver_storage::{AlterReport, BackfillInfo, FieldColumn, FieldSpec, Schema, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Rows embedded per batch (each batch is one durable append).
    pub batch: usize,
    /// Fraction of wall time the backfill may be busy, in (0, 1]: after a batch that took `t`
    /// it sleeps `t · (1 − duty) / duty`.
    pub duty: f64,
    /// Set to stop after the current batch (the work done so far stays).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            batch: 64,
            duty: 0.5,
            stop: None,
        }
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillReport {
    /// Fields whose backfill completed.
    pub completed: Vec<String>,
    /// Segments installed with a new field.
    pub segments: usize,
    /// Rows computed (this run; resumed rows not counted).
    pub rows: usize,
    /// Wall time.
    pub seconds: f64,
    /// Time spent computing (the rest is throttling and installs' waits).
    pub busy_seconds: f64,
    /// Stopped before the end (`BackfillOptions::stop`).
    pub stopped: bool,
    /// Fields that switched to their successor's model when its backfill completed
    /// ([`Collection::begin_switch`]).
    pub switched: Vec<String>,
}

/// For each field `plan` reads that is still being backfilled, the visible documents of `snap`
/// that do not hold it yet (fields with none pending are left out). A source or stage without a
/// field name reads the schema's only field of its kind (`request::dense_field` for dense ones).
pub(crate) fn pending_for(snap: &Snapshot, plan: &Plan) -> BTreeMap<String, usize> {
    let schema = snap.schema();
    let mut out = BTreeMap::new();
    if schema.backfill.is_empty() {
        return out;
    }
    let only = |names: Vec<String>| (names.len() == 1).then(|| names[0].clone());
    // The dense field a source or stage reads, as the query resolved it.
    let dense = |f: &Option<String>| {
        crate::request::dense_field(schema, f.as_deref(), false)
            .ok()
            .map(|f| f.name)
    };
    let mut read = Vec::new();
    for p in &plan.prefetch {
        read.push(match &p.source {
            Source::Dense(d) => dense(&d.field),
            Source::Multi(m) => Some(m.field.clone()),
            Source::Bm25(b) => b
                .field
                .clone()
                .or_else(|| only(schema.text_fields().into_iter().map(|f| f.name).collect())),
        });
    }
    for r in &plan.rescore {
        read.push(match &r.stage {
            Stage::Dense(d) => dense(&d.field),
            Stage::Maxsim(m) => Some(m.field.clone()),
        });
    }
    for name in read.into_iter().flatten() {
        let n = snap.pending(&name);
        if n > 0 {
            out.insert(name, n);
        }
    }
    out
}

impl Collection {
    /// Adds field `name` (see `quiver_storage::Collection::add_field`). A model-backed field's
    /// model is loaded and its dimension checked first, and every stored document must have
    /// text for it; on any error nothing changes. The backfill itself is
    /// [`Collection::backfill`].
    pub fn add_field(&self, name: &str, spec: FieldSpec) -> Result<AlterReport> {
        self.writable()?;
        self.check_computable(name, &spec)?;
        Ok(self.storage().add_field(name, spec)?)
    }

    /// Starts switching dense field `field` to model `model` (issue 17's model migration): the
    /// field as `model` would compute it (the same spec with `model` and its dimension) is
    /// added as the hidden successor `<field>~<n>` and backfilled from the stored text by
    /// [`Collection::backfill`], which switches the field over when that completes (one
    /// schema write; the old vectors are dropped and the field's query adapter removed).
    /// Until then queries read the old vectors — through the field's adapter when there is
    /// one (`quiver adapt`). A field with no model (vectors supplied) cannot switch; on any
    /// error nothing changes.
    pub fn begin_switch(&self, field: &str, model: &str) -> Result<AlterReport> {
        self.writable()?;
        let schema = self.schema();
        let Some(mut spec) = schema.fields.get(field).cloned() else {
            return Err(EngineError::BadRequest(format!(
                "no field {field:?} to switch"
            )));
        };
        let new_dim = self.model_dim(model)?;
        match &mut spec {
            FieldSpec::Dense {
                model: m @ Some(_),
                dim,
                stored_as,
                ..
            } => {
                if m.as_deref().is_some_and(|m| same_model(m, model)) {
                    return Err(EngineError::BadRequest(format!(
                        "field {field:?} is computed by {model:?} already"
                    )));
                }
                *m = Some(model.to_string());
                *dim = new_dim;
                *stored_as = None;
            }
            FieldSpec::Dense { .. } => {
                return Err(EngineError::BadRequest(format!(
                    "field {field:?} has no model (its vectors are supplied): there is no text \
                     to compute a new model's vectors from"
                )))
            }
            _ => {
                return Err(EngineError::BadRequest(format!(
                    "field {field:?} is not a dense field"
                )))
            }
        }
        self.check_computable(field, &spec)?;
        Ok(self.storage().begin_switch(field, spec)?)
    }

    /// Switches every field whose successor's backfill is complete, and removes their
    /// adapters (they map into the old vectors' space). Returns the fields switched.
    pub(crate) fn finish_switches(&self) -> Result<Vec<String>> {
        let schema = self.schema();
        let mut done = Vec::new();
        for (field, succ) in &schema.successors {
            if schema.backfill.contains(succ) {
                continue;
            }
            if self.storage().finish_switch(field)?.is_some() {
                self.remove_adapter(field)?;
                done.push(field.clone());
            }
        }
        // Adapters fitted on vectors their field no longer holds (a crash came between a
        // switch and its adapter's removal).
        let schema = self.schema();
        for a in self.adapters() {
            if schema.dense(&a.field).is_some_and(|f| !a.fits(&f)) {
                self.remove_adapter(&a.field)?;
            }
        }
        Ok(done)
    }

    /// Checks that field `name` as `spec` can be computed for every stored document: its
    /// model loads and gives `spec`'s dimension, and each document has its text.
    fn check_computable(&self, name: &str, spec: &FieldSpec) -> Result<()> {
        let only = Schema::single(name, spec.clone());
        let computed = match &spec {
            FieldSpec::Dense { .. } => only.dense(name).map(|f| (f.embedding, f.dim)),
            FieldSpec::Multi(_) => only.multi(name).map(|f| (f.embedding, f.dim)),
            _ => None,
        };
        if let Some((embedding, dim)) = computed {
            if let Some(model) = &embedding.model {
                self.check_model(name, model, dim)?;
                let snap = self.snapshot();
                let mut bad = None;
                snap.for_each_visible_loc(None, |id, loc| {
                    if bad.is_none() {
                        let (s, row) = snap.place(loc);
                        let p = snap.segment(s).payload(row);
                        if let Err(m) = crate::document::document_text(&embedding, &p) {
                            bad = Some(format!("document {id}: {m}"));
                        }
                    }
                });
                if let Some(m) = bad {
                    return Err(EngineError::BadRequest(format!(
                        "field {name:?} cannot be computed for a stored document: {m}"
                    )));
                }
            }
        }
        Ok(())
    }

    #[cfg(feature = "embed")]
    fn model_dim(&self, model: &str) -> Result<usize> {
        Ok(self.pool().get(model)?.info().dim)
    }

    #[cfg(not(feature = "embed"))]
    fn model_dim(&self, model: &str) -> Result<usize> {
        Err(EngineError::BadRequest(format!(
            "model {model:?} cannot run: this build has no embedding (feature `embed`)"
        )))
    }

    fn check_model(&self, field: &str, model: &str, dim: usize) -> Result<()> {
        let got = self.model_dim(model)?;
        if got != dim {
            return Err(EngineError::BadRequest(format!(
                "field {field:?} has dim {dim} but model {model:?} gives {got}-dimensional vectors"
            )));
        }
        Ok(())
    }

    /// Drops field `name` (see `quiver_storage::Collection::drop_field`), and its query adapter
    /// if it has one (a field added again under the name starts without).
    pub fn drop_field(&self, name: &str) -> Result<AlterReport> {
        self.writable()?;
        let r = self.storage().drop_field(name)?;
        if self.adapters().iter().any(|a| a.field == name) {
            self.remove_adapter(name)?;
        }
        Ok(r)
    }

    /// How far each field's backfill is (empty: nothing pending).
    pub fn backfill_info(&self) -> Vec<BackfillInfo> {
        self.storage().backfill_info()
    }

    /// Computes and installs every pending field in every segment that lacks it, then takes
    /// the finished fields off the backfill list. Progress (rows) goes to the collection's
    /// progress sink. Safe beside searches and writes; resumable after a crash.
    pub fn backfill(&self, opts: &BackfillOptions) -> Result<BackfillReport> {
        self.writable()?;
        if !(opts.duty > 0.0 && opts.duty <= 1.0) || opts.batch == 0 {
            return Err(EngineError::BadRequest(format!(
                "backfill: duty must be in (0, 1] and batch >= 1 (got {} and {})",
                opts.duty, opts.batch
            )));
        }
        let t0 = Instant::now();
        let mut report = BackfillReport::default();
        let progress = self.progress_sink();
        let tasks = self.storage().backfill_tasks();
        let total: usize = tasks.iter().map(|t| t.rows).sum();
        progress.start("backfill", total as u64);
        let mut skipped = std::collections::HashSet::new();
        loop {
            let stopped = opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            if stopped {
                report.stopped = true;
                break;
            }
            let Some(task) = self
                .storage()
                .backfill_tasks()
                .into_iter()
                .find(|t| !skipped.contains(&(t.field.clone(), t.segment.clone())))
            else {
                break;
            };
            let schema = self.schema();
            let column = match schema.fields.get(&task.field) {
                Some(FieldSpec::Text { .. }) => {
                    progress.inc(task.rows as u64);
                    Some(FieldColumn::Text)
                }
                Some(FieldSpec::Dense { .. }) => {
                    match self.dense_column(&task.field, &task.segment, opts, &mut report)? {
                        Some(v) => Some(FieldColumn::Dense(v)),
                        None => {
                            report.stopped = true;
                            break;
                        }
                    }
                }
                Some(FieldSpec::Multi(_)) => {
                    match self.multi_column(&task.field, &task.segment, opts, &mut report)? {
                        Some(v) => Some(FieldColumn::Multi(v)),
                        None => {
                            report.stopped = true;
                            break;
                        }
                    }
                }
                _ => None,
            };
            let installed = match column {
                Some(c) => self
                    .storage()
                    .install_field(&task.field, &task.segment, c)?,
                None => false,
            };
            if installed {
                report.segments += 1;
                quiver_storage::test_event("backfill-segment");
            } else {
                skipped.insert((task.field.clone(), task.segment.clone()));
            }
        }
        progress.finish();
        report.completed = self.storage().finish_backfill()?;
        if !report.stopped {
            report.switched = self.finish_switches()?;
        }
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The vectors of dense field `field` for every row of `segment` (resumed from its
    /// partial file); `None` when stopped first.
    fn dense_column(
        &self,
        field: &str,
        segment: &str,
        opts: &BackfillOptions,
        report: &mut BackfillReport,
    ) -> Result<Option<Vec<f32>>> {
        let snap = self.snapshot();
        let schema = snap.schema().clone();
        let (Some(f), Some(spec)) = (schema.dense(field), schema.fields.get(field)) else {
            return Err(EngineError::BadRequest(format!("no dense field {field:?}")));
        };
        let only = Schema::single(field, spec.clone());
        let Some(s) = (0..snap.segments()).find(|&s| snap.segment(s).name() == segment) else {
            return Ok(Some(Vec::new()));
        };
        let seg = snap.segment(s);
        let rows = seg.rows();
        let mut out = self.storage().backfill_partial(field, segment)?;
        let progress = self.progress_sink();
        progress.inc((out.len() / f.dim) as u64);
        while out.len() / f.dim < rows {
            if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Ok(None);
            }
            let start = out.len() / f.dim;
            let end = (start + opts.batch).min(rows);
            let t = Instant::now();
            let (mut docs, which) = visible_docs(seg, start..end, snap.seq());
            self.embed_with(&only, &mut docs, &quiver_storage::NoProgress)?;
            let mut batch = vec![0f32; (end - start) * f.dim];
            for (d, &r) in docs.iter_mut().zip(&which) {
                let mut v = d.vectors.remove(field).unwrap_or_default();
                if v.len() != f.dim || v.iter().any(|x| !x.is_finite()) {
                    return Err(EngineError::BadRequest(format!(
                        "field {field:?}: the model gave an unusable vector for document {}",
                        seg.id(r)
                    )));
                }
                if f.metric.normalizes() {
                    quiver_linalg::normalize(&mut v);
                }
                let at = (r as usize - start) * f.dim;
                batch[at..at + f.dim].copy_from_slice(&v);
            }
            self.storage().backfill_append(field, segment, &batch)?;
            quiver_storage::test_event("backfill-batch");
            quiver_storage::test_event(&format!("backfill-rows {}", end - start));
            out.extend_from_slice(&batch);
            report.rows += end - start;
            progress.inc((end - start) as u64);
            throttle(t.elapsed(), opts.duty, report);
        }
        Ok(Some(out))
    }

    /// The vector sets of multi field `field` for every row of `segment`, computed in batches
    /// (throttled like the dense ones); `None` when stopped first. Sets are not kept in a
    /// partial file: a killed backfill of a multi field resumes at the last installed segment.
    fn multi_column(
        &self,
        field: &str,
        segment: &str,
        opts: &BackfillOptions,
        report: &mut BackfillReport,
    ) -> Result<Option<Vec<Vec<Vec<f32>>>>> {
        let snap = self.snapshot();
        let schema = snap.schema().clone();
        let Some(spec) = schema.fields.get(field) else {
            return Err(EngineError::BadRequest(format!("no multi field {field:?}")));
        };
        let only = Schema::single(field, spec.clone());
        let Some(s) = (0..snap.segments()).find(|&s| snap.segment(s).name() == segment) else {
            return Ok(Some(Vec::new()));
        };
        let seg = snap.segment(s);
        let rows = seg.rows();
        let progress = self.progress_sink();
        let mut out: Vec<Vec<Vec<f32>>> = Vec::with_capacity(rows);
        while out.len() < rows {
            if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Ok(None);
            }
            let (start, end) = (out.len(), (out.len() + opts.batch).min(rows));
            let t = Instant::now();
            let (docs, which) = visible_docs(seg, start..end, snap.seq());
            let mut docs = docs;
            self.embed_with(&only, &mut docs, &quiver_storage::NoProgress)?;
            let mut batch = vec![Vec::new(); end - start];
            for (d, &r) in docs.iter_mut().zip(&which) {
                batch[r as usize - start] = d.multi.remove(field).unwrap_or_default();
            }
            out.extend(batch);
            quiver_storage::test_event("backfill-batch");
            report.rows += end - start;
            progress.inc((end - start) as u64);
            throttle(t.elapsed(), opts.duty, report);
        }
        Ok(Some(out))
    }
}

/// The visible rows of `range` in `seg` as documents to embed (id and payload), and their rows.
fn visible_docs(
    seg: &dyn quiver_storage::SegmentReader,
    range: std::ops::Range<usize>,
    at: u64,
) -> (Vec<quiver_storage::Document>, Vec<u32>) {
    let mut docs = Vec::new();
    let mut which = Vec::new();
    for r in range {
        let r = r as u32;
        if seg.visible(r, at) {
            which.push(r);
            docs.push(quiver_storage::Document {
                id: Some(seg.id(r)),
                payload: seg.payload(r),
                ..Default::default()
            });
        }
    }
    (docs, which)
}

/// Counts `busy` and sleeps so that the backfill is busy at most `duty` of the time.
fn throttle(busy: Duration, duty: f64, report: &mut BackfillReport) {
    report.busy_seconds += busy.as_secs_f64();
    if duty < 1.0 {
        std::thread::sleep(Duration::from_secs_f64(
            busy.as_secs_f64() * (1.0 - duty) / duty,
        ));
    }
}

/// Whether two model references name one model (`m` and `m:f32` do).
#[cfg(feature = "embed")]
fn same_model(a: &str, b: &str) -> bool {
    let canonical =
        |r: &str| quiver_embed::Precision::canonical(r, None).unwrap_or_else(|_| r.to_string());
    canonical(a) == canonical(b)
}

/// Whether two model references name one model.
#[cfg(not(feature = "embed"))]
fn same_model(a: &str, b: &str) -> bool {
    a == b
}
