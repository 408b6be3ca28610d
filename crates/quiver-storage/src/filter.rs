//! Payload filters: `and` / `or` / `not`; equality, in-set, numeric and datetime ranges, exists.
//!
//! ```json
//! {"and": [{"field": "year", "gte": 2020}, {"field": "lang", "in": ["en", "de"]},
//!          {"not": {"field": "draft", "eq": true}}, {"field": "published", "lt": "2024-01-01T00:00:00Z"},
//!          {"field": "tags", "exists": true}]}
//! ```
//! A filter is evaluated two ways: against one payload ([`Filter::matches`], used for the mutable
//! segment) and against a sealed segment's payload indexes (`PayloadIndex::evaluate`), which yields
//! a bit set whose population is the planner's cardinality estimate.

use crate::doc::parse_datetime;
use crate::StorageError;
use serde_json::{Map, Value};

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must hold.
    And(Vec<Filter>),
    /// At least one must hold.
    Or(Vec<Filter>),
    /// Must not hold.
    Not(Box<Filter>),
    /// The field equals the value (for list payloads: contains it).
    Eq {
        /// Payload field.
        field: String,
        /// Value.
        value: Value,
    },
    /// The field equals one of the values.
    In {
        /// Payload field.
        field: String,
        /// Values.
        values: Vec<Value>,
    },
    /// The field (number, or RFC 3339 datetime) lies in the range.
    Range {
        /// Payload field.
        field: String,
        /// Bounds.
        range: Range,
    },
    /// The field is present and not null (`exists: true`), or absent/null (`exists: false`).
    Exists {
        /// Payload field.
        field: String,
        /// Wanted presence.
        exists: bool,
    },
}

/// Numeric bounds (datetimes are seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    /// Exclusive lower bound.
    pub gt: Option<f64>,
    /// Inclusive lower bound.
    pub gte: Option<f64>,
    /// Exclusive upper bound.
    pub lt: Option<f64>,
    /// Inclusive upper bound.
    pub lte: Option<f64>,
}

impl Range {
    /// Whether `x` satisfies all bounds.
    #[inline]
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

fn bad(msg: impl Into<String>) -> StorageError {
    StorageError::InvalidFilter(msg.into())
}

fn bound(v: &Value, key: &str) -> Result<f64, StorageError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad(format!("`{key}`: not a finite number"))),
        Value::String(s) => parse_datetime(s).ok_or_else(|| {
            bad(format!(
                "`{key}`: {s:?} is neither a number nor an RFC 3339 datetime"
            ))
        }),
        other => Err(bad(format!(
            "`{key}`: expected a number or datetime string, got {other}"
        ))),
    }
}

impl Filter {
    /// Parses the JSON form, with errors that say which part is wrong.
    pub fn from_json(v: &Value) -> Result<Filter, StorageError> {
        let o = v
            .as_object()
            .ok_or_else(|| bad(format!("a filter must be a JSON object, got {v}")))?;
        if let Some(x) = o.get("and").or_else(|| o.get("or")) {
            let is_and = o.contains_key("and");
            if o.len() != 1 {
                return Err(bad("`and`/`or` must be the only key of its object"));
            }
            let items = x
                .as_array()
                .ok_or_else(|| bad("`and`/`or` takes a list of filters"))?;
            let parsed = items
                .iter()
                .map(Filter::from_json)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if is_and {
                Filter::And(parsed)
            } else {
                Filter::Or(parsed)
            });
        }
        if let Some(x) = o.get("not") {
            if o.len() != 1 {
                return Err(bad("`not` must be the only key of its object"));
            }
            return Ok(Filter::Not(Box::new(Filter::from_json(x)?)));
        }
        let field = o
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(format!(
                    "condition needs a string `field` (or use and/or/not): {v}"
                ))
            })?
            .to_string();
        let ops: Vec<&String> = o.keys().filter(|k| k.as_str() != "field").collect();
        if ops.is_empty() {
            return Err(bad(format!(
                "condition on {field:?} has no operator (eq, in, gt, gte, lt, lte, exists)"
            )));
        }
        if let Some(x) = o.get("eq") {
            if ops.len() != 1 {
                return Err(bad(format!(
                    "condition on {field:?}: `eq` cannot be combined with other operators"
                )));
            }
            return Ok(Filter::Eq {
                field,
                value: x.clone(),
            });
        }
        if let Some(x) = o.get("in") {
            if ops.len() != 1 {
                return Err(bad(format!(
                    "condition on {field:?}: `in` cannot be combined with other operators"
                )));
            }
            let values = x
                .as_array()
                .ok_or_else(|| bad(format!("condition on {field:?}: `in` takes a list")))?
                .clone();
            return Ok(Filter::In { field, values });
        }
        if let Some(x) = o.get("exists") {
            let exists = x.as_bool().ok_or_else(|| {
                bad(format!(
                    "condition on {field:?}: `exists` takes true or false"
                ))
            })?;
            return Ok(Filter::Exists { field, exists });
        }
        let mut range = Range::default();
        for k in ops {
            let b = bound(&o[k], k)?;
            match k.as_str() {
                "gt" => range.gt = Some(b),
                "gte" => range.gte = Some(b),
                "lt" => range.lt = Some(b),
                "lte" => range.lte = Some(b),
                other => {
                    return Err(bad(format!(
                        "condition on {field:?}: unknown operator `{other}`"
                    )))
                }
            }
        }
        Ok(Filter::Range { field, range })
    }

    /// Evaluates against one payload object.
    pub fn matches(&self, payload: &Map<String, Value>) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(payload)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(payload)),
            Filter::Not(f) => !f.matches(payload),
            Filter::Eq { field, value } => any_value(payload.get(field), |x| json_eq(x, value)),
            Filter::In { field, values } => {
                any_value(payload.get(field), |x| values.iter().any(|v| json_eq(x, v)))
            }
            Filter::Range { field, range } => any_value(payload.get(field), |x| {
                as_number(x).is_some_and(|n| range.contains(n))
            }),
            Filter::Exists { field, exists } => {
                let present = match payload.get(field) {
                    None | Some(Value::Null) => false,
                    Some(Value::Array(a)) => a.iter().any(|x| !x.is_null()),
                    Some(_) => true,
                };
                present == *exists
            }
        }
    }
}

/// Applies `f` to a scalar payload value or to each element of a list value.
fn any_value(v: Option<&Value>, f: impl Fn(&Value) -> bool) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => items.iter().any(f),
        Some(x) => f(x),
    }
}

/// Numeric view of a payload value: numbers, and strings that parse as datetimes.
pub(crate) fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_datetime(s),
        _ => None,
    }
}

/// Equality with numbers compared by value (1 == 1.0) and datetimes by instant.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((parse_datetime(x), parse_datetime(y)), (Some(p), Some(q)) if p == q)
        }
        _ => a == b,
    }
}
