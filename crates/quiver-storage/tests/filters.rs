//! Filter parsing errors and evaluation (payload and index paths agree).

use quiver_storage::{Filter, PayloadIndex, Schema};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn parse_errors_name_the_problem() {
    for (f, needle) in [
        (json!([1]), "must be a JSON object"),
        (json!({"and": {"field": "a"}}), "list of filters"),
        (json!({"field": "a"}), "no operator"),
        (
            json!({"field": "a", "between": 1}),
            "unknown operator `between`",
        ),
        (
            json!({"field": "a", "gte": "not a date"}),
            "neither a number nor an RFC 3339",
        ),
        (json!({"field": "a", "in": 3}), "`in` takes a list"),
        (json!({"eq": 3}), "string `field`"),
        (json!({"field": "a", "exists": "yes"}), "true or false"),
    ] {
        let err = Filter::from_json(&f).expect_err("must fail").to_string();
        assert!(err.contains(needle), "{f}: {err}");
    }
}

#[test]
fn index_and_payload_evaluation_agree() {
    let schema = Schema::parse(
        "[fields.emb]\ntype = \"dense\"\ndim = 2\n[fields.year]\ntype = \"integer\"\n[fields.score]\ntype = \"float\"\n[fields.lang]\ntype = \"keyword\"\n[fields.ok]\ntype = \"bool\"\n[fields.at]\ntype = \"datetime\"\n",
    )
    .expect("schema");
    let payloads: Vec<Map<String, Value>> = (0..200)
        .map(|i| {
            let lang = ["en", "de", "fr"][i % 3];
            let mut p = obj(json!({
                "year": 1990 + i % 40,
                "score": (i as f64) / 7.0,
                "lang": lang,
                "ok": i % 4 == 0,
                "at": format!("2024-02-{:02}T12:00:00Z", 1 + i % 28),
                "free": i % 5,
            }));
            if i % 10 == 0 {
                p.remove("lang");
                p.insert("tags".into(), json!(["x", "y"]));
            }
            p
        })
        .collect();
    let index = PayloadIndex::build(&schema, &payloads);
    let filters = [
        json!({"field": "year", "gte": 2000, "lt": 2010}),
        json!({"field": "year", "eq": 1995}),
        json!({"field": "score", "gt": 10.5}),
        json!({"field": "lang", "in": ["en", "fr"]}),
        json!({"not": {"field": "lang", "eq": "en"}}),
        json!({"field": "lang", "exists": false}),
        json!({"field": "tags", "eq": "y"}),
        json!({"field": "ok", "eq": true}),
        json!({"field": "at", "gte": "2024-02-10T00:00:00Z", "lte": "2024-02-12"}),
        json!({"field": "free", "in": [1, 2]}),
        json!({"or": [{"field": "year", "lt": 1992}, {"and": [{"field": "ok", "eq": false}, {"field": "lang", "eq": "de"}]}]}),
    ];
    for f in filters {
        let parsed = Filter::from_json(&f).expect("parse");
        let bits = index.evaluate(&parsed, &|r| payloads.get(r as usize).cloned());
        let want: Vec<u32> = (0..200u32)
            .filter(|&r| parsed.matches(&payloads[r as usize]))
            .collect();
        assert_eq!(bits.iter().collect::<Vec<_>>(), want, "{f}");
        assert!(
            !want.is_empty() || f["field"] == "never",
            "{f} matched nothing; test is weak"
        );
    }
}
