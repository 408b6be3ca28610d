//! Python values to the engine's JSON shapes and back; stored documents to dicts with numpy
//! vectors.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quiver::{DocId, Filter, StoredDoc};
use serde_json::Value;

use crate::errors::{invalid, to_py};

/// `obj` (dicts, lists, str, int, float, bool, None) as JSON; `what` names it in the error.
pub(crate) fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    pythonize::depythonize::<Value>(obj).map_err(|e| invalid(format!("{what}: {e}")))
}

/// A JSON value as Python objects.
pub(crate) fn to_py_obj<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v).map_err(|e| invalid(e.to_string()))
}

/// A document id from a Python `int` (non-negative) or `str` (non-empty).
pub(crate) fn doc_id(obj: &Bound<'_, PyAny>, at: &str) -> PyResult<DocId> {
    let v = to_json(obj, at)?;
    DocId::from_json(&v).ok_or_else(|| {
        invalid(format!(
            "{at}: an id must be a non-negative int or a non-empty str, got {v}"
        ))
    })
}

/// A document id as a Python `int` or `str`.
pub(crate) fn id_to_py<'py>(py: Python<'py>, id: &DocId) -> PyResult<Bound<'py, PyAny>> {
    Ok(match id {
        DocId::Int(n) => n.into_pyobject(py)?.into_any(),
        DocId::Str(s) => s.into_pyobject(py)?.into_any(),
    })
}

/// A filter from a dict (Quiver's filter shape), or none.
pub(crate) fn filter(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Filter>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => {
            let v = to_json(o, "filter")?;
            Filter::from_json(&v).map(Some).map_err(|e| to_py(e.into()))
        }
    }
}

/// A stored document as `{"id", "payload"}`, plus `"vectors"` (field -> 1-D float32 array)
/// and `"multi"` (field -> 2-D float32 array) when `with_vectors`.
pub(crate) fn doc_to_py<'py>(
    py: Python<'py>,
    d: StoredDoc,
    with_vectors: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("id", id_to_py(py, &d.id)?)?;
    out.set_item("payload", to_py_obj(py, &Value::Object(d.payload))?)?;
    if with_vectors {
        let vectors = PyDict::new(py);
        for (name, v) in d.vectors {
            vectors.set_item(name, PyArray1::from_vec(py, v))?;
        }
        out.set_item("vectors", vectors)?;
        let multi = PyDict::new(py);
        for (name, rows) in d.multi {
            let dim = rows.first().map_or(0, Vec::len);
            let n = rows.len();
            let flat: Vec<f32> = rows.into_iter().flatten().collect();
            let a = Array2::from_shape_vec((n, dim), flat).map_err(|e| invalid(e.to_string()))?;
            multi.set_item(name, a.into_pyarray(py))?;
        }
        out.set_item("multi", multi)?;
    }
    Ok(out)
}

/// A write report as a dict: `count`, `seq`, and `maintenance_error` when one happened.
pub(crate) fn report<'py>(
    py: Python<'py>,
    r: &quiver::WriteReport,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("count", r.count)?;
    out.set_item("seq", r.seq)?;
    out.set_item("maintenance_error", r.maintenance_error.clone())?;
    Ok(out)
}
