//! Per-segment payload indexes: keyword postings, sorted numeric columns (integer, float, datetime),
//! boolean postings. They turn a [`Filter`] into the exact set of matching rows; that set's size is
//! the cardinality the query planner uses to choose between a graph walk and an exact scan.

use crate::filter::{as_number, Filter, Range};
use crate::schema::{PayloadKind, Schema};
use quiver_index::Bitset;
use serde_json::{Map, Value};
use std::collections::HashMap;

enum FieldIndex {
    Keyword {
        postings: HashMap<String, Vec<u32>>,
        exists: Bitset,
    },
    Numeric {
        sorted: Vec<(f64, u32)>,
        exists: Bitset,
    },
    Bool {
        yes: Vec<u32>,
        no: Vec<u32>,
        exists: Bitset,
    },
}

/// The payload indexes of one sealed segment.
pub struct PayloadIndex {
    fields: HashMap<String, FieldIndex>,
    rows: usize,
}

fn each_value(v: Option<&Value>, mut f: impl FnMut(&Value)) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => items.iter().for_each(f),
        Some(x) => f(x),
    }
}

impl PayloadIndex {
    /// Builds indexes for the schema's payload fields over `payloads` (row order).
    pub fn build(schema: &Schema, payloads: &[Map<String, Value>]) -> PayloadIndex {
        let rows = payloads.len();
        let mut fields = HashMap::new();
        for (name, kind) in schema.payload_fields() {
            let mut exists = Bitset::new(rows);
            let idx = match kind {
                PayloadKind::Keyword => {
                    let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
                    for (r, p) in payloads.iter().enumerate() {
                        each_value(p.get(&name), |v| {
                            if let Some(s) = v.as_str() {
                                postings.entry(s.to_string()).or_default().push(r as u32);
                                exists.insert(r as u32);
                            }
                        });
                    }
                    FieldIndex::Keyword { postings, exists }
                }
                PayloadKind::Integer | PayloadKind::Float | PayloadKind::Datetime => {
                    let mut sorted = Vec::new();
                    for (r, p) in payloads.iter().enumerate() {
                        each_value(p.get(&name), |v| {
                            if let Some(x) = as_number(v) {
                                sorted.push((x, r as u32));
                                exists.insert(r as u32);
                            }
                        });
                    }
                    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                    FieldIndex::Numeric { sorted, exists }
                }
                PayloadKind::Bool => {
                    let (mut yes, mut no) = (Vec::new(), Vec::new());
                    for (r, p) in payloads.iter().enumerate() {
                        each_value(p.get(&name), |v| {
                            if let Some(b) = v.as_bool() {
                                if b {
                                    yes.push(r as u32)
                                } else {
                                    no.push(r as u32)
                                }
                                exists.insert(r as u32);
                            }
                        });
                    }
                    FieldIndex::Bool { yes, no, exists }
                }
            };
            fields.insert(name, idx);
        }
        PayloadIndex { fields, rows }
    }

    /// Rows matching `filter`. Conditions on indexed fields use the index; others scan `payload(row)`.
    pub fn evaluate(
        &self,
        filter: &Filter,
        payload: &dyn Fn(u32) -> Option<Map<String, Value>>,
    ) -> Bitset {
        match filter {
            Filter::And(fs) => {
                let mut acc = Bitset::full(self.rows);
                for f in fs {
                    acc.and_with(&self.evaluate(f, payload));
                }
                acc
            }
            Filter::Or(fs) => {
                let mut acc = Bitset::new(self.rows);
                for f in fs {
                    acc.or_with(&self.evaluate(f, payload));
                }
                acc
            }
            Filter::Not(f) => {
                let mut b = self.evaluate(f, payload);
                b.negate();
                b
            }
            leaf => self.evaluate_leaf(leaf).unwrap_or_else(|| {
                let mut b = Bitset::new(self.rows);
                for r in 0..self.rows as u32 {
                    if payload(r).is_some_and(|p| leaf.matches(&p)) {
                        b.insert(r);
                    }
                }
                b
            }),
        }
    }

    fn evaluate_leaf(&self, leaf: &Filter) -> Option<Bitset> {
        let field = match leaf {
            Filter::Eq { field, .. }
            | Filter::In { field, .. }
            | Filter::Range { field, .. }
            | Filter::Exists { field, .. } => field,
            _ => return None,
        };
        let idx = self.fields.get(field)?;
        let mut out = Bitset::new(self.rows);
        let exists_bits = match idx {
            FieldIndex::Keyword { exists, .. }
            | FieldIndex::Numeric { exists, .. }
            | FieldIndex::Bool { exists, .. } => exists,
        };
        let values: Vec<&Value> = match leaf {
            Filter::Eq { value, .. } => vec![value],
            Filter::In { values, .. } => values.iter().collect(),
            Filter::Exists { exists, .. } => {
                let mut b = exists_bits.clone();
                if !exists {
                    b.negate();
                }
                return Some(b);
            }
            Filter::Range { range, .. } => {
                let FieldIndex::Numeric { sorted, .. } = idx else {
                    return None; // range on a keyword/bool field: fall back to a scan of payloads
                };
                range_rows(sorted, range, &mut out);
                return Some(out);
            }
            _ => return None,
        };
        for v in values {
            match idx {
                FieldIndex::Keyword { postings, .. } => match v.as_str() {
                    Some(s) => postings
                        .get(s)
                        .into_iter()
                        .flatten()
                        .for_each(|&r| out.insert(r)),
                    None => return None,
                },
                FieldIndex::Numeric { sorted, .. } => {
                    let x = as_number(v)?;
                    range_rows(
                        sorted,
                        &Range {
                            gte: Some(x),
                            lte: Some(x),
                            ..Range::default()
                        },
                        &mut out,
                    );
                }
                FieldIndex::Bool { yes, no, .. } => match v {
                    Value::Bool(true) => yes.iter().for_each(|&r| out.insert(r)),
                    Value::Bool(false) => no.iter().for_each(|&r| out.insert(r)),
                    _ => {}
                },
            }
        }
        Some(out)
    }

    /// Whether `field` has an index here.
    pub fn is_indexed(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }
}

fn range_rows(sorted: &[(f64, u32)], r: &Range, out: &mut Bitset) {
    let lo = match (r.gte, r.gt) {
        (Some(a), Some(b)) if b >= a => sorted.partition_point(|x| x.0 <= b),
        (Some(a), _) => sorted.partition_point(|x| x.0 < a),
        (None, Some(b)) => sorted.partition_point(|x| x.0 <= b),
        (None, None) => 0,
    };
    let hi = match (r.lte, r.lt) {
        (Some(a), Some(b)) if b <= a => sorted.partition_point(|x| x.0 < b),
        (Some(a), _) => sorted.partition_point(|x| x.0 <= a),
        (None, Some(b)) => sorted.partition_point(|x| x.0 < b),
        (None, None) => sorted.len(),
    };
    if lo < hi {
        for &(_, row) in &sorted[lo..hi] {
            out.insert(row);
        }
    }
}
