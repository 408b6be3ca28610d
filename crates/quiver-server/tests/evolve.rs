//! Embedding evolution over HTTP, on a real server: a potion-base-8M field added to 60 stored
//! SciFact documents and backfilled in the background (started by `POST .../backfill`, watched
//! through `GET .../backfill`), whose vectors must equal those of a collection that had the
//! field from the start; queries report pending documents until then; zero-shot labels land in
//! a filterable payload field; a query adapter is stored and removed; the field is switched to
//! all-MiniLM-L6-v2 by a background backfill; bad requests get their status and change nothing.
//!
//! Needs potion-base-8M and all-MiniLM-L6-v2 in the model cache (`./x setup`).

mod common;

use common::Server;
use quiver_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MODEL: &str = "potion-base-8M";
const MINILM: &str = "all-MiniLM-L6-v2";
const N: usize = 60;

fn points() -> Vec<Value> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/scifact/corpus.jsonl"
    );
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    text.lines()
        .take(N)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            json!({"id": v["_id"], "payload": {"title": v["title"], "text": v["text"]}})
        })
        .collect()
}

fn emb() -> Value {
    json!({"type": "dense", "dim": 256, "metric": "cosine", "model": MODEL,
           "embed": ["title", "text"]})
}

#[test]
fn fields_backfills_labels_and_adapters_over_http() {
    if let Err(e) = quiver::embed::fetch::cached_model(MODEL) {
        panic!("model {MODEL} is not in the cache ({e}): run `./x setup` first");
    }
    let s = Server::start(ServerConfig::default());
    let base = json!({"mutable_max_rows": 20, "fields": {"n": {"type": "integer"}}});
    s.ok(Method::PUT, "/collections/notes", Some(base));
    s.ok(
        Method::PUT,
        "/collections/fresh",
        Some(json!({"fields": {"emb": emb()}})),
    );
    for chunk in points().chunks(20) {
        s.ok(
            Method::PUT,
            "/collections/notes/points",
            Some(json!({"points": chunk})),
        );
    }
    s.ok(
        Method::PUT,
        "/collections/fresh/points",
        Some(json!({"points": points()})),
    );
    let schema = || s.ok(Method::GET, "/collections/notes", None)["schema"].clone();
    let before = schema();

    // Bad requests: their status, and nothing changes.
    let bad = [
        (
            Method::PUT,
            "/collections/notes/fields/n",
            emb(),
            400,
            "already exists",
        ),
        (
            Method::PUT,
            "/collections/notes/fields/e2",
            json!({"type": "dense"}),
            400,
            "dim",
        ),
        (
            Method::PUT,
            "/collections/notes/fields/e3",
            json!({"type": "dense", "dim": 256, "model": "no-such-model", "embed": ["text"]}),
            404,
            "no-such-model",
        ),
        (
            Method::PUT,
            "/collections/nope/fields/e4",
            emb(),
            404,
            "nope",
        ),
        (
            Method::POST,
            "/collections/notes/classify",
            json!({"labels": []}),
            400,
            "empty",
        ),
        (
            Method::POST,
            "/collections/notes/backfill",
            json!({"duty": 2.0}),
            400,
            "duty",
        ),
        (
            Method::PUT,
            "/collections/notes/adapters/n",
            json!({"model": MODEL}),
            400,
            "no dense field",
        ),
    ];
    for (m, path, body, status, want) in bad {
        let msg = s.err(m.clone(), path, Some(body), status);
        println!("{m} {path}: {msg}");
        assert!(msg.contains(want), "{m} {path}: {msg}");
        assert_eq!(schema(), before, "{m} {path} changed the schema");
    }

    // Add the field: every document pending, and queries say so.
    let r = s.ok(Method::PUT, "/collections/notes/fields/emb", Some(emb()));
    assert_eq!(r["alter"]["pending_documents"], N);
    let q = json!({"query": "cancer cells", "limit": 5});
    let res = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(q.clone()),
    );
    assert_eq!(res["pending"]["emb"], N, "{res}");
    assert_eq!(res["points"], json!([]));

    // The backfill runs in the background; watch it end.
    let r = s.ok(
        Method::POST,
        "/collections/notes/backfill",
        Some(json!({"duty": 1.0, "batch": 16})),
    );
    assert_eq!(r["started"], true, "{r}");
    let wait = || {
        let t = Instant::now();
        loop {
            let st = s.ok(Method::GET, "/collections/notes/backfill", None);
            if st["running"] == false {
                break st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "the backfill did not end: {st}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let status = wait();
    println!("{status}");
    assert_eq!(status["last"]["completed"], json!(["emb"]), "{status}");
    assert_eq!(status["pending"], json!([]));
    let r = s.ok(Method::POST, "/collections/notes/backfill", None);
    assert_eq!(r["started"], false, "nothing is pending: {r}");
    let res = s.ok(Method::POST, "/collections/notes/points/query", Some(q));
    assert!(res.get("pending").is_none(), "{res}");
    assert_eq!(res["points"].as_array().map(Vec::len), Some(5));
    for p in points() {
        let path = |c: &str| {
            format!(
                "/collections/{c}/points/{}?with_vector=true",
                p["id"].as_str().unwrap()
            )
        };
        let (a, b) = (
            s.ok(Method::GET, &path("notes"), None),
            s.ok(Method::GET, &path("fresh"), None),
        );
        assert_eq!(a["vectors"]["emb"], b["vectors"]["emb"], "{}", p["id"]);
    }

    // Labels into a payload field, filterable.
    let labels = json!([
        {"label": "oncology", "description": "cancer, tumours and their treatment"},
        {"label": "neuroscience", "description": "the brain, neurons and cognition"}
    ]);
    let r = s.ok(
        Method::POST,
        "/collections/notes/classify",
        Some(json!({"labels": labels, "iterations": 0})),
    );
    assert_eq!(r["written"], N, "{r}");
    for l in ["oncology", "neuroscience"] {
        let c = s.ok(
            Method::POST,
            "/collections/notes/points/count",
            Some(json!({"filter": {"field": "label", "eq": l}})),
        );
        assert_eq!(c["count"], r["counts"][l], "{l}");
    }

    // A query adapter: 54 training documents are fewer than potion's 256 dimensions, so an
    // orthogonal map is refused and ridge is the default.
    let msg = s.err(
        Method::PUT,
        "/collections/notes/adapters/emb",
        Some(json!({"model": MODEL, "method": "procrustes"})),
        400,
    );
    assert!(msg.contains("at least 256 documents"), "{msg}");
    let a = s.ok(
        Method::PUT,
        "/collections/notes/adapters/emb",
        Some(json!({"model": MODEL})),
    );
    println!("{a}");
    assert_eq!(
        (a["kind"].as_str(), a["sample"].as_u64()),
        (Some("ridge"), Some(N as u64))
    );
    let cos = a["holdout_cosine"].as_f64().unwrap();
    assert!(cos > 0.0 && cos <= 1.0 + 1e-6, "{a}");
    let info = s.ok(Method::GET, "/collections/notes", None);
    assert_eq!(info["adapters"][0]["field"], "emb");
    let r = s.ok(Method::DELETE, "/collections/notes/adapters/emb", None);
    assert_eq!(r["removed"], true);

    // Switch the field to all-MiniLM-L6-v2: re-embedded in the background, then switched.
    let switch = "/collections/notes/fields/emb/switch";
    let msg = s.err(
        Method::POST,
        switch,
        Some(json!({"model": "no-such-model"})),
        404,
    );
    assert!(msg.contains("no-such-model"), "{msg}");
    let msg = s.err(Method::POST, switch, Some(json!({"model": MODEL})), 400);
    assert!(msg.contains("already"), "{msg}");
    let r = s.ok(Method::POST, switch, Some(json!({"model": MINILM})));
    assert_eq!(r["alter"]["field"], "emb~1", "{r}");
    assert_eq!(r["alter"]["pending_documents"], N);
    let msg = s.err(Method::POST, switch, Some(json!({"model": MINILM})), 400);
    assert!(msg.contains("already switching"), "{msg}");
    let r = s.ok(Method::POST, "/collections/notes/backfill", None);
    assert_eq!(r["started"], true, "{r}");
    let status = wait();
    assert_eq!(status["last"]["switched"], json!(["emb"]), "{status}");
    let emb = &schema()["fields"]["emb"];
    assert_eq!((&emb["model"], &emb["dim"]), (&json!(MINILM), &json!(384)));
    let res = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": "cancer cells", "limit": 5})),
    );
    assert_eq!(res["points"].as_array().map(Vec::len), Some(5), "{res}");

    // Drop the field again.
    let r = s.ok(Method::DELETE, "/collections/notes/fields/emb", None);
    assert_eq!(r["alter"]["field"], "emb");
    assert!(schema()["fields"].get("emb").is_none());
}
