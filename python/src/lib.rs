//! `quiver._quiver`: the native module under the `quiver` Python package.
//!
//! A thin face over the engine API (`quiver::Database`, `quiver::Collection`,
//! `quiver::ModelPool`): Python values are converted to the engine's JSON shapes (documents,
//! queries, plans, filters: the same as the CLI's and the server's), numpy arrays are read in
//! place, and every call that embeds, writes or searches runs with the GIL released.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod collection;
mod convert;
mod errors;
mod hits;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::query::plan::Fusion;
use quiver::query::Hit;
use quiver::{Database as Engine, ModelPool, Schema};

use crate::collection::Collection;
use crate::convert::to_json;
use crate::errors::{invalid, to_py};

/// A Quiver database: a directory of collections, opened in this process.
#[pyclass(module = "quiver._quiver", frozen)]
struct Database {
    db: Engine,
}

#[pymethods]
impl Database {
    /// Opens (or creates) the database in `path`. `read_only=True` opens it beside a writer in
    /// another process, without taking the writer lock.
    #[new]
    #[pyo3(signature = (path, read_only = false))]
    fn new(py: Python<'_>, path: std::path::PathBuf, read_only: bool) -> PyResult<Self> {
        let db = py
            .detach(|| {
                if read_only {
                    Engine::open_read_only(&path)
                } else {
                    Engine::open(&path)
                }
            })
            .map_err(to_py)?;
        Ok(Database { db })
    }

    /// The database's directory.
    #[getter]
    fn path(&self) -> std::path::PathBuf {
        self.db.path().to_path_buf()
    }

    /// Whether it was opened with `read_only=True`.
    #[getter]
    fn read_only(&self) -> bool {
        self.db.is_read_only()
    }

    /// Creates collection `name` with `schema` (a dict or a JSON string, Quiver's schema shape).
    fn create_collection(
        &self,
        py: Python<'_>,
        name: &str,
        schema: &Bound<'_, PyAny>,
    ) -> PyResult<Collection> {
        let schema = parse_schema(schema)?;
        let c = py
            .detach(|| self.db.create_collection(name, &schema))
            .map_err(to_py)?;
        Ok(Collection::new(c))
    }

    /// The existing collection `name` (`NotFound` if there is none).
    fn collection(&self, py: Python<'_>, name: &str) -> PyResult<Collection> {
        let c = py.detach(|| self.db.collection(name)).map_err(to_py)?;
        Ok(Collection::new(c))
    }

    /// Names of the collections, sorted.
    fn list_collections(&self) -> PyResult<Vec<String>> {
        self.db.list_collections().map_err(to_py)
    }

    /// Deletes collection `name` and its files.
    fn drop_collection(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.db.drop_collection(name)).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "quiver.Database({:?}{})",
            self.db.path().display(),
            if self.db.is_read_only() {
                ", read_only=True"
            } else {
                ""
            }
        )
    }
}

/// A schema given as a JSON string or as a dict.
fn parse_schema(schema: &Bound<'_, PyAny>) -> PyResult<Schema> {
    let text = match schema.extract::<String>() {
        Ok(s) => s,
        Err(_) => to_json(schema, "schema")?.to_string(),
    };
    Schema::parse(&text).map_err(|e| to_py(e.into()))
}

/// Sentence vectors of `texts` from registry model `model` (pulled and verified on first use),
/// the first `dims` components of each when given (renormalised: a Matryoshka prefix), as a
/// float32 array of shape `(len(texts), dims)`.
#[pyfunction]
#[pyo3(signature = (texts, model = "all-MiniLM-L6-v2", dims = None))]
fn embed<'py>(
    py: Python<'py>,
    texts: Vec<String>,
    model: &str,
    dims: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = py
        .detach(|| ModelPool::global().embed_texts(model, &refs, dims))
        .map_err(to_py)?;
    let d = out.vectors.first().map_or(dims.unwrap_or(0), Vec::len);
    let n = out.vectors.len();
    let flat: Vec<f32> = out.vectors.into_iter().flatten().collect();
    let arr = Array2::from_shape_vec((n, d), flat).map_err(|e| invalid(e.to_string()))?;
    Ok(arr.into_pyarray(py))
}

/// Fuses ranked lists `[(ids, scores), ...]` (each best first) with `fusion` (the plan's
/// shape: `{"rrf": {"k": 60}}`, `{"score": {"norm": "minmax"}}`; default RRF k = 60), the code
/// a plan's fusion stage runs; returns `(ids, scores)` best first, ties by id.
#[pyfunction]
#[pyo3(signature = (lists, fusion = None))]
fn fuse<'py>(
    py: Python<'py>,
    lists: Vec<(Vec<Bound<'py, PyAny>>, Vec<f32>)>,
    fusion: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Vec<Bound<'py, PyAny>>, Vec<f32>)> {
    let fusion: Fusion = match fusion {
        Some(f) if !f.is_none() => serde_json::from_value(to_json(f, "fusion")?)
            .map_err(|e| invalid(format!("fusion: {e}")))?,
        _ => Fusion::Rrf {
            k: quiver::query::DEFAULT_RRF_K,
            weights: Vec::new(),
        },
    };
    let mut hits = Vec::with_capacity(lists.len());
    for (i, (ids, scores)) in lists.iter().enumerate() {
        if ids.len() != scores.len() {
            return Err(invalid(format!(
                "fuse: list {i} has {} ids and {} scores",
                ids.len(),
                scores.len()
            )));
        }
        let mut list = Vec::with_capacity(ids.len());
        for (j, (id, &score)) in ids.iter().zip(scores).enumerate() {
            list.push(Hit {
                id: convert::doc_id(id, &format!("fuse: list {i}, id {j}"))?,
                score,
                payload: None,
            });
        }
        hits.push(list);
    }
    let fused =
        quiver::query::fuse_hits(&hits, &fusion, usize::MAX).map_err(|e| to_py(e.into()))?;
    let ids = fused
        .iter()
        .map(|h| convert::id_to_py(py, &h.id))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((ids, fused.iter().map(|h| h.score).collect()))
}

/// The vectors `schema`'s model-backed dense fields compute for documents with these
/// `payloads` (the same texts, prefixes and models as an upsert): `{field: float32 array (n,
/// dim)}`. Multi-vector fields are left to the upsert. What a Ray Data worker runs, so that
/// embedding happens beside the data, once per document.
#[pyfunction]
fn embed_payloads<'py>(
    py: Python<'py>,
    schema: &Bound<'py, PyAny>,
    payloads: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut schema = parse_schema(schema)?;
    schema
        .fields
        .retain(|_, f| matches!(f, quiver::storage::FieldSpec::Dense { model: Some(_), .. }));
    let mut docs = Vec::with_capacity(payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        match to_json(&p, &format!("payloads[{i}]"))? {
            serde_json::Value::Object(m) => docs.push(quiver::Document {
                payload: m,
                ..Default::default()
            }),
            other => {
                return Err(invalid(format!(
                    "payloads[{i}]: a payload must be a dict, got {other}"
                )))
            }
        }
    }
    let pool = ModelPool::global();
    py.detach(|| {
        quiver::embedding::embed_documents(&schema, &mut docs, &pool, &quiver::storage::NoProgress)
    })
    .map_err(to_py)?;
    let out = PyDict::new(py);
    for f in schema.dense_fields() {
        let mut flat = Vec::with_capacity(docs.len() * f.dim);
        for (i, d) in docs.iter().enumerate() {
            let v = d.vectors.get(&f.name).ok_or_else(|| {
                invalid(format!("payloads[{i}]: field {:?} got no vector", f.name))
            })?;
            flat.extend_from_slice(v);
        }
        let arr = Array2::from_shape_vec((docs.len(), f.dim), flat)
            .map_err(|e| invalid(e.to_string()))?;
        out.set_item(&f.name, arr.into_pyarray(py))?;
    }
    Ok(out)
}

/// The engine's version.
#[pyfunction]
fn version() -> &'static str {
    quiver::VERSION
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Database>()?;
    m.add_class::<Collection>()?;
    m.add_class::<hits::Hits>()?;
    m.add_function(wrap_pyfunction!(embed, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(fuse, m)?)?;
    m.add_function(wrap_pyfunction!(embed_payloads, m)?)?;
    m.add("QuiverError", py.get_type::<errors::QuiverError>())?;
    m.add("InvalidInput", py.get_type::<errors::InvalidInput>())?;
    m.add("SchemaError", py.get_type::<errors::SchemaError>())?;
    m.add("NotFound", py.get_type::<errors::NotFound>())?;
    m.add("AlreadyExists", py.get_type::<errors::AlreadyExists>())?;
    m.add("Locked", py.get_type::<errors::Locked>())?;
    m.add("ReadOnly", py.get_type::<errors::ReadOnly>())?;
    Ok(())
}
