//! [`Hits`]: one query's answer, kept in Rust until the caller asks for a part of it.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::query::Hit;
use serde_json::Value;

use crate::convert::{id_to_py, to_py_obj};

/// The hits of one query, best first. `ids`, `scores` (a float32 array) and `payloads` are built
/// when asked for; indexing gives one hit as a dict `{"id", "score", "payload"}`.
#[pyclass(module = "quiver._quiver", frozen, sequence)]
pub(crate) struct Hits {
    hits: Vec<Hit>,
    mode: String,
    took_ms: f64,
    explain: Value,
    pending: Value,
}

impl Hits {
    pub(crate) fn new(r: quiver::QueryResult) -> Hits {
        Hits {
            explain: serde_json::to_value(&r.explain).unwrap_or(Value::Null),
            hits: r.hits,
            mode: r.mode.name().to_string(),
            took_ms: r.took_ms,
            pending: serde_json::to_value(&r.pending).unwrap_or(Value::Null),
        }
    }

    fn hit<'py>(&self, py: Python<'py>, h: &Hit) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", id_to_py(py, &h.id)?)?;
        d.set_item("score", h.score)?;
        match &h.payload {
            Some(p) => d.set_item("payload", to_py_obj(py, &Value::Object(p.clone()))?)?,
            None => d.set_item("payload", py.None())?,
        }
        Ok(d)
    }
}

#[pymethods]
impl Hits {
    fn __len__(&self) -> usize {
        self.hits.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyDict>> {
        let n = self.hits.len() as isize;
        let at = if i < 0 { i + n } else { i };
        if at < 0 || at >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "hit {i} of {n}"
            )));
        }
        self.hit(py, &self.hits[at as usize])
    }

    /// Document ids, best first (`int` or `str`).
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids = self
            .hits
            .iter()
            .map(|h| id_to_py(py, &h.id))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, ids)
    }

    /// Scores, best first, as a float32 array (higher is closer).
    #[getter]
    fn scores<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_vec(py, self.hits.iter().map(|h| h.score).collect())
    }

    /// Payloads (dicts; `None` where the query asked for none).
    #[getter]
    fn payloads<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .hits
            .iter()
            .map(|h| match &h.payload {
                Some(p) => to_py_obj(py, &Value::Object(p.clone())),
                None => Ok(py.None().into_bound(py)),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Every hit as a dict.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .hits
            .iter()
            .map(|h| self.hit(py, h))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// The mode that ran (`dense`, `bm25`, `hybrid`, `multi`, `funnel`, `plan`).
    #[getter]
    fn mode(&self) -> &str {
        &self.mode
    }

    /// Milliseconds the engine spent (embedding included).
    #[getter]
    fn took_ms(&self) -> f64 {
        self.took_ms
    }

    /// What each stage of the plan did (candidates, time, per-segment choices).
    #[getter]
    fn explain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py_obj(py, &self.explain)
    }

    /// For each field the query read that is still being backfilled: the documents it could
    /// not reach yet (empty when none).
    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py_obj(py, &self.pending)
    }

    fn __repr__(&self) -> String {
        format!(
            "Hits({} hits, mode={}, {:.3} ms)",
            self.hits.len(),
            self.mode,
            self.took_ms
        )
    }
}
