//! [`Collection::describe`]: a collection's figures as one JSON object — what `quiver collection
//! info --json` prints and `GET /collections/{name}` answers.

use crate::engine::Collection;
use crate::error::Result;
use serde_json::{json, Value};

impl Collection {
    /// Documents, segments (rows, live), graph bytes, disk use, per-field sizes, index tiers,
    /// text-field statistics, the schema and the progress of backfills, as one JSON object.
    pub fn describe(&self) -> Result<Value> {
        let info = self.info();
        let schema = self.schema();
        let dense: Vec<Value> = schema
            .dense_fields()
            .iter()
            .map(|f| {
                json!({"field": f.name, "dim": f.dim, "metric": f.metric.name(),
                       "index": serde_json::to_value(f.index).unwrap_or(Value::Null),
                       "bytes_per_vector_f32": f.dim * 4,
                       "total_vector_bytes": f.dim * 4 * info.documents})
            })
            .collect();
        let snap = self.snapshot();
        let text: Vec<Value> = schema
            .text_fields()
            .iter()
            .filter_map(|f| snap.text_stats(&f.name))
            .map(|s| {
                json!({"field": s.field, "docs": s.docs, "avg_len": s.avg_len,
                       "terms": s.terms.iter().map(|(seg, n)| json!({"segment": seg, "terms": n}))
                                .collect::<Vec<_>>()})
            })
            .collect();
        let to_value = |v: serde_json::Result<Value>| {
            v.map_err(|e| crate::EngineError::BadRequest(format!("collection info: {e}")))
        };
        Ok(json!({
            "name": info.name, "documents": info.documents, "mutable_rows": info.mutable_rows,
            "segments": info.segments.iter().map(|(n, r, l)| json!({"name": n, "rows": r, "live": l}))
                        .collect::<Vec<_>>(),
            "graph_bytes": info.graph_bytes, "seq": info.seq,
            "disk": {"bytes": info.disk_bytes, "segment_bytes": info.segment_bytes,
                     "wal_bytes": info.wal_bytes, "bytes_per_document": info.disk_bytes_per_document},
            "dense_fields": dense,
            "tiers": to_value(serde_json::to_value(&info.dense))?,
            "multi_fields": info.multi,
            "schema": to_value(serde_json::to_value(schema.as_ref()))?,
            "text_fields": text,
            "backfill": to_value(serde_json::to_value(&info.backfill))?,
            // Dense fields switching models: field -> successor (its backfill is in "backfill").
            "switching": schema.successors,
            "adapters": to_value(serde_json::to_value(self.adapters()))?,
            "adapter_errors": self.adapter_errors(),
        }))
    }
}
