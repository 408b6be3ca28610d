//! [`Collection`]: documents in, hits out, through `quiver::Collection`.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::document::document_from_json;
use quiver::{Document, Query};
use rayon::prelude::*;
use std::collections::HashMap;

use crate::convert::{doc_id, doc_to_py, id_to_py, report, to_json, to_py_obj};
use crate::errors::{invalid, to_py};
use crate::hits::Hits;

/// One page of `scroll`: the documents and the next cursor.
type Page<'py> = (Vec<Bound<'py, PyDict>>, Option<Bound<'py, PyAny>>);

/// A collection of documents with a schema (see `Database.collection`).
#[pyclass(module = "quiver._quiver", frozen)]
pub(crate) struct Collection {
    c: quiver::Collection,
}

impl Collection {
    pub(crate) fn new(c: quiver::Collection) -> Collection {
        Collection { c }
    }
}

#[pymethods]
impl Collection {
    /// The collection's name.
    #[getter]
    fn name(&self) -> &str {
        self.c.name()
    }

    /// The schema, as a dict in Quiver's schema shape.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v: serde_json::Value =
            serde_json::from_str(&self.c.schema().to_json()).map_err(|e| invalid(e.to_string()))?;
        to_py_obj(py, &v)
    }

    /// Counts, fields, segments and sizes: the figures of `quiver collection info`.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = py.detach(|| self.c.describe()).map_err(to_py)?;
        to_py_obj(py, &v)
    }

    /// Inserts or replaces documents given as dicts in the JSONL document shape (`id`,
    /// `payload`, `vectors`, `multi`); vectors of model-backed fields are computed from the
    /// payload. Atomic and durable: the whole batch or nothing.
    fn upsert<'py>(
        &self,
        py: Python<'py>,
        docs: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let schema = self.c.schema().clone();
        let mut parsed = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let at = format!("document {i}");
            let v = to_json(&d, &at)?;
            parsed.push(document_from_json(v, &schema).map_err(|e| invalid(format!("{at}: {e}")))?);
        }
        let r = py.detach(|| self.c.upsert(parsed)).map_err(to_py)?;
        report(py, &r)
    }

    /// Inserts or replaces `ids` with their `payloads` and `vectors` (field -> float32 C-order
    /// array of shape `(len(ids), dim)`, read in place). Atomic and durable.
    #[pyo3(signature = (ids, payloads = None, vectors = None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyList>,
        payloads: Option<&Bound<'py, PyList>>,
        vectors: Option<HashMap<String, PyReadonlyArray2<'py, f32>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let docs = documents(ids, payloads, vectors)?;
        let r = py.detach(|| self.c.upsert(docs)).map_err(to_py)?;
        report(py, &r)
    }

    /// Like `add`, for a first load of many documents: they go straight into sealed segments
    /// of up to `segment_rows` rows (indexes built), with no log or mutable-segment round trip.
    /// The whole input is validated first; durable when it returns.
    #[pyo3(signature = (ids, payloads = None, vectors = None, segment_rows = 1_000_000))]
    fn bulk_load<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyList>,
        payloads: Option<&Bound<'py, PyList>>,
        vectors: Option<HashMap<String, PyReadonlyArray2<'py, f32>>>,
        segment_rows: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        if segment_rows == 0 {
            return Err(invalid("segment_rows must be at least 1"));
        }
        let docs = documents(ids, payloads, vectors)?;
        let r = py
            .detach(|| self.c.bulk_load(docs, segment_rows))
            .map_err(to_py)?;
        report(py, &r)
    }

    /// Runs `query` (a dict in the shape of `quiver search --json`'s request: `text`, `mode`,
    /// `field`, `filter`, `limit`, ..., or `{"mode": "plan", "plan": {...}}`). With `vectors`
    /// (float32, shape `(n, dim)`), runs one query per row, in parallel, each with that row as
    /// its `vector`. Returns one `Hits` per query.
    #[pyo3(signature = (query, vectors = None))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        vectors: Option<PyReadonlyArray2<'py, f32>>,
    ) -> PyResult<Vec<Hits>> {
        let q: Query = serde_json::from_value(to_json(query, "query")?)
            .map_err(|e| invalid(format!("query: {e}")))?;
        let Some(arr) = vectors else {
            let r = py.detach(|| self.c.query(&q)).map_err(to_py)?;
            return Ok(vec![Hits::new(r)]);
        };
        let dim = arr.shape()[1];
        let flat = arr
            .as_slice()
            .map_err(|_| invalid("query vectors: the array must be C-contiguous"))?;
        if flat.is_empty() {
            if dim == 0 && arr.shape()[0] > 0 {
                return Err(invalid("query vectors: an array of zero-width rows"));
            }
            return Ok(Vec::new());
        }
        let run = |row: &[f32]| {
            let mut one = q.clone();
            one.vector = Some(row.to_vec());
            self.c.query(&one)
        };
        // One row runs on the calling thread: handing it to the rayon pool and waiting for it
        // costs a cross-thread wake-up, a large part of a small query's time.
        let results = py
            .detach(|| {
                if flat.len() == dim {
                    vec![run(flat)]
                } else {
                    flat.par_chunks(dim).map(run).collect::<Vec<_>>()
                }
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_py)?;
        Ok(results.into_iter().map(Hits::new).collect())
    }

    /// The plan `query` compiles to, with the text of its dense and multi sources embedded
    /// (vectors in the plan): `(mode, plan)`. What a sharded collection sends to its shards.
    fn prepare<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
    ) -> PyResult<(String, Bound<'py, PyAny>)> {
        let q: Query = serde_json::from_value(to_json(query, "query")?)
            .map_err(|e| invalid(format!("query: {e}")))?;
        let (mode, plan) = py.detach(|| self.c.prepare(&q)).map_err(to_py)?;
        let plan = serde_json::to_value(&plan).map_err(|e| invalid(e.to_string()))?;
        Ok((mode.name().to_string(), to_py_obj(py, &plan)?))
    }

    /// The statistics a BM25 search of `text` on text field `field` (default: the only one)
    /// scores with here: `{"docs", "total_len", "avg_len", "terms": [[term, query_count, df]]}`.
    #[pyo3(signature = (text, field = None))]
    fn bm25_stats<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        field: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stats = py
            .detach(|| self.c.bm25_stats(field, text))
            .map_err(to_py)?;
        let v = serde_json::to_value(&stats).map_err(|e| invalid(e.to_string()))?;
        to_py_obj(py, &v)
    }

    /// The stored documents with these ids, in order (`None` for an id not stored).
    #[pyo3(signature = (ids, with_vectors = false))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyList>,
        with_vectors: bool,
    ) -> PyResult<Vec<Option<Bound<'py, PyDict>>>> {
        let ids = ids
            .iter()
            .enumerate()
            .map(|(i, id)| doc_id(&id, &format!("ids[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let docs = py
            .detach(|| {
                ids.iter()
                    .map(|id| self.c.get(id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_py)?;
        docs.into_iter()
            .map(|d| d.map(|d| doc_to_py(py, d, with_vectors)).transpose())
            .collect()
    }

    /// Deletes the documents with these `ids`, or every document matching `filter` (one of the
    /// two). Durable when it returns.
    #[pyo3(signature = (ids = None, filter = None))]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        ids: Option<&Bound<'py, PyList>>,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let f = crate::convert::filter(filter)?;
        let r = match (ids, f) {
            (Some(ids), None) => {
                let ids = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| doc_id(&id, &format!("ids[{i}]")))
                    .collect::<PyResult<Vec<_>>>()?;
                py.detach(|| self.c.delete(&ids))
            }
            (None, Some(f)) => py.detach(|| self.c.delete_by_filter(&f)),
            _ => return Err(invalid("delete: give either ids or filter")),
        }
        .map_err(to_py)?;
        report(py, &r)
    }

    /// Documents (matching `filter`).
    #[pyo3(signature = (filter = None))]
    fn count(&self, py: Python<'_>, filter: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let f = crate::convert::filter(filter)?;
        py.detach(|| self.c.count(f.as_ref())).map_err(to_py)
    }

    /// Up to `limit` documents in id order after the cursor `after`, and the next cursor
    /// (`None` at the end).
    #[pyo3(signature = (after = None, limit = 100, filter = None, with_vectors = false))]
    fn scroll<'py>(
        &self,
        py: Python<'py>,
        after: Option<&Bound<'py, PyAny>>,
        limit: usize,
        filter: Option<&Bound<'py, PyAny>>,
        with_vectors: bool,
    ) -> PyResult<Page<'py>> {
        let f = crate::convert::filter(filter)?;
        let after = match after {
            Some(a) if !a.is_none() => Some(doc_id(a, "after")?),
            _ => None,
        };
        let (docs, next) = py
            .detach(|| self.c.scroll(after.as_ref(), limit, f.as_ref()))
            .map_err(to_py)?;
        let docs = docs
            .into_iter()
            .map(|d| doc_to_py(py, d, with_vectors))
            .collect::<PyResult<Vec<_>>>()?;
        let next = next.map(|id| id_to_py(py, &id)).transpose()?;
        Ok((docs, next))
    }

    /// Seals the mutable segment now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.c.flush()).map_err(to_py)
    }

    /// Merges every sealed segment into one, dropping deleted rows.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.c.compact()).map_err(to_py)
    }

    /// Adds field `name` (`spec`: a field spec dict, as in a schema) to the collection. A
    /// dense, multi or text field added to a collection that holds documents is computed from
    /// their stored text by a backfill, run here to the end unless `backfill=False` (then call
    /// `backfill()`). Returns `{"alter": {...}, "backfill": {...} | None}`.
    #[pyo3(signature = (name, spec, backfill = true, batch = 64, duty = 1.0))]
    fn add_field<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        spec: &Bound<'py, PyAny>,
        backfill: bool,
        batch: usize,
        duty: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec: quiver::FieldSpec = serde_json::from_value(to_json(spec, "spec")?)
            .map_err(|e| invalid(format!("field {name:?}: spec: {e}")))?;
        let fill = backfill.then(|| backfill_options(batch, duty));
        alter_then_backfill(py, &self.c, || self.c.add_field(name, spec), fill, false)
    }

    /// Starts switching dense field `field` to `model`: its documents are re-embedded by
    /// `model` in a backfill (run here to the end unless `backfill=False`), and when that
    /// completes the field holds `model`'s vectors. Until then queries read the old vectors
    /// (through the field's adapter when there is one). Returns `{"alter": {...}, "backfill":
    /// {...} | None}`; `backfill["switched"]` lists the fields that switched.
    #[pyo3(signature = (field, model, backfill = true, batch = 64, duty = 1.0))]
    fn switch_model<'py>(
        &self,
        py: Python<'py>,
        field: &str,
        model: &str,
        backfill: bool,
        batch: usize,
        duty: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fill = backfill.then(|| backfill_options(batch, duty));
        // A switch needs its backfill even with nothing pending: the backfill switches.
        alter_then_backfill(
            py,
            &self.c,
            || self.c.begin_switch(field, model),
            fill,
            true,
        )
    }

    /// Drops field `name` (its files are removed from the sealed segments).
    fn drop_field<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let r = py.detach(|| self.c.drop_field(name)).map_err(to_py)?;
        to_py_obj(py, &ser(&r)?)
    }

    /// Runs the pending backfills to the end (resumes an interrupted one); `duty` is the
    /// fraction of the time it may be busy.
    #[pyo3(signature = (batch = 64, duty = 1.0))]
    fn backfill<'py>(
        &self,
        py: Python<'py>,
        batch: usize,
        duty: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = py
            .detach(|| self.c.backfill(&backfill_options(batch, duty)))
            .map_err(to_py)?;
        to_py_obj(py, &ser(&r)?)
    }

    /// Labels every document by similarity to `labels` (a list of `{"label", "description",
    /// "keywords"}`) on dense field `field`, into payload keyword field `into` (see `quiver
    /// classify`). Returns the report (`counts`, `written`, `changed`, ...).
    #[pyo3(signature = (labels, field = None, into = "label", iterations = 1, threshold = None, top_docs = None))]
    #[allow(clippy::too_many_arguments)]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        labels: &Bound<'py, PyAny>,
        field: Option<String>,
        into: &str,
        iterations: usize,
        threshold: Option<f32>,
        top_docs: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let text = to_json(labels, "labels")?.to_string();
        let labels = quiver::Label::parse_list(&text).map_err(to_py)?;
        let opts = quiver::ClassifyOptions {
            field,
            into: into.to_string(),
            labels,
            iterations,
            top_docs,
            threshold,
            ..Default::default()
        };
        let r = py.detach(|| self.c.classify(&opts)).map_err(to_py)?;
        to_py_obj(py, &ser(&r)?)
    }

    /// Fits and stores a query adapter: text queries on dense field `field` are then embedded
    /// by `model` and mapped onto the stored vectors (`method`: "procrustes" or "ridge"; default
    /// by the dimensions). Returns the adapter's figures (`holdout_cosine`, ...).
    #[pyo3(signature = (field, model, sample = 2000, method = None, seed = 42))]
    fn adapt<'py>(
        &self,
        py: Python<'py>,
        field: &str,
        model: &str,
        sample: usize,
        method: Option<&str>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = match method {
            None => None,
            Some(m) => Some(
                quiver::linalg::AdapterKind::parse(m)
                    .ok_or_else(|| invalid(format!("method: {m:?} is not procrustes or ridge")))?,
            ),
        };
        let opts = quiver::AdaptOptions { sample, kind, seed };
        let r = py
            .detach(|| self.c.adapt(field, model, &opts))
            .map_err(to_py)?;
        to_py_obj(py, &ser(&r)?)
    }

    /// Removes the query adapter of `field`; `False` when it had none.
    fn remove_adapter(&self, py: Python<'_>, field: &str) -> PyResult<bool> {
        py.detach(|| self.c.remove_adapter(field)).map_err(to_py)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.count(py, None)
    }

    fn __repr__(&self) -> String {
        format!("quiver.Collection({:?})", self.c.name())
    }
}

/// Runs schema change `alter`, then (with `fill`) the backfill to the end when documents are
/// pending or `always`, without the GIL: `{"alter": {...}, "backfill": {...} | None}`.
fn alter_then_backfill<'py>(
    py: Python<'py>,
    c: &quiver::Collection,
    alter: impl FnOnce() -> quiver::Result<quiver::storage::AlterReport> + Send,
    fill: Option<quiver::BackfillOptions>,
    always: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (alter, filled) = py
        .detach(|| {
            let r = alter()?;
            let b = match fill {
                Some(o) if always || r.pending_documents > 0 => Some(c.backfill(&o)?),
                _ => None,
            };
            Ok::<_, quiver::EngineError>((r, b))
        })
        .map_err(to_py)?;
    to_py_obj(py, &serde_json::json!({"alter": alter, "backfill": filled}))
}

fn backfill_options(batch: usize, duty: f64) -> quiver::BackfillOptions {
    quiver::BackfillOptions {
        batch,
        duty,
        stop: None,
    }
}

/// A report as JSON.
fn ser(v: &impl serde::Serialize) -> PyResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| invalid(e.to_string()))
}

/// Documents from parallel `ids`, `payloads` and `vectors` (field -> array of one row per id).
fn documents(
    ids: &Bound<'_, PyList>,
    payloads: Option<&Bound<'_, PyList>>,
    vectors: Option<HashMap<String, PyReadonlyArray2<'_, f32>>>,
) -> PyResult<Vec<Document>> {
    let n = ids.len();
    let mut docs: Vec<Document> = Vec::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        docs.push(Document {
            id: Some(doc_id(&id, &format!("ids[{i}]"))?),
            ..Default::default()
        });
    }
    if let Some(p) = payloads {
        if p.len() != n {
            return Err(invalid(format!("payloads: {} given for {n} ids", p.len())));
        }
        for (i, (p, d)) in p.iter().zip(docs.iter_mut()).enumerate() {
            if p.is_none() {
                continue;
            }
            match to_json(&p, &format!("payloads[{i}]"))? {
                serde_json::Value::Object(m) => d.payload = m,
                other => {
                    return Err(invalid(format!(
                        "payloads[{i}]: a payload must be a dict, got {other}"
                    )))
                }
            }
        }
    }
    for (field, arr) in vectors.unwrap_or_default() {
        let shape = arr.shape();
        if shape[0] != n {
            return Err(invalid(format!(
                "vectors[{field:?}]: {} rows for {n} ids",
                shape[0]
            )));
        }
        let flat = arr.as_slice().map_err(|_| {
            invalid(format!(
                "vectors[{field:?}]: the array must be C-contiguous"
            ))
        })?;
        let dim = shape[1].max(1);
        for (d, row) in docs.iter_mut().zip(flat.chunks(dim)) {
            d.vectors.insert(field.clone(), row.to_vec());
        }
    }
    Ok(docs)
}
