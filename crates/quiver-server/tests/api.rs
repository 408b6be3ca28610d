//! Every route of `quiver serve` through a real server on a loopback port: round trips against
//! what was written, cursors, plans against brute force, status codes and JSON errors for bad
//! input with the stored data unchanged, API keys, limits, and the OpenAPI document against the
//! routes the server actually matched.

mod common;

use common::{dot, floats, normalized, Rng, Server};
use quiver_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};

const DIM: usize = 8;
const N: usize = 300;

fn schema() -> Value {
    json!({"fields": {
        "emb": {"type": "dense", "dim": DIM, "metric": "cosine"},
        "body": {"type": "text", "source": ["text"]},
        "tag": {"type": "keyword"},
        "n": {"type": "integer"}
    }})
}

/// One written document: id, vector, text, tag.
type Doc = (u64, Vec<f32>, String, String);

/// The documents written, by id.
fn docs(seed: u64) -> Vec<Doc> {
    let mut rng = Rng(seed);
    (0..N as u64)
        .map(|i| {
            let words = [
                "quokka", "wombat", "numbat", "bilby", "dingo", "emu", "kiwi",
            ];
            let text = format!("note {i} about the {}", words[i as usize % words.len()]);
            (i, rng.vector(DIM), text, format!("t{}", i % 3))
        })
        .collect()
}

fn as_points(docs: &[Doc]) -> Vec<Value> {
    docs.iter()
        .map(|(i, v, text, tag)| {
            json!({"id": i, "payload": {"text": text, "tag": tag, "n": i}, "vectors": {"emb": v}})
        })
        .collect()
}

/// A loaded server: collection `notes` with `N` documents.
fn loaded(seed: u64) -> (Server, Vec<Doc>) {
    let s = Server::start(ServerConfig::default());
    s.ok(Method::PUT, "/collections/notes", Some(schema()));
    let d = docs(seed);
    let r = s.ok(
        Method::PUT,
        "/collections/notes/points?wait=true",
        Some(json!({"points": as_points(&d)})),
    );
    assert_eq!(r["count"], N);
    assert_eq!(r["status"], "completed");
    (s, d)
}

/// Every stored point with its vectors, by scrolling (the content check for "unchanged").
fn everything(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = Value::Null;
    loop {
        let page = s.ok(
            Method::POST,
            "/collections/notes/points/scroll",
            Some(json!({"limit": 64, "offset": offset, "with_vector": true})),
        );
        out.extend(page["points"].as_array().unwrap().iter().cloned());
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            return out;
        }
    }
}

#[test]
fn collections_and_points_round_trip() {
    let seed = 0x5E_7F_E5;
    eprintln!("seed {seed:#x}");
    let (s, d) = loaded(seed);
    // Collections.
    let list = s.ok(Method::GET, "/collections", None);
    assert_eq!(list["collections"], json!([{"name": "notes"}]));
    let info = s.ok(Method::GET, "/collections/notes", None);
    assert_eq!(info["documents"], N);
    assert_eq!(info["schema"]["fields"]["emb"]["dim"], DIM);
    let msg = s.err(Method::PUT, "/collections/notes", Some(schema()), 409);
    assert!(msg.contains("already exists"), "{msg}");
    // One point, with and without vectors.
    let p = s.ok(Method::GET, "/collections/notes/points/7", None);
    assert_eq!(p["id"], 7);
    assert_eq!(p["payload"]["text"], d[7].2);
    assert!(p.get("vectors").is_none());
    let p = s.ok(
        Method::GET,
        "/collections/notes/points/7?with_vector=true",
        None,
    );
    let got = floats(&p["vectors"]["emb"]);
    let want = normalized(&d[7].1);
    assert!(
        got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{got:?} vs {want:?}"
    );
    s.err(Method::GET, "/collections/notes/points/100000", None, 404);
    // Many, in the order asked, missing ones left out.
    let many = s.ok(
        Method::POST,
        "/collections/notes/points",
        Some(json!({"ids": [12, 999999, 3], "with_payload": false})),
    );
    let ids: Vec<&Value> = many.as_array().unwrap().iter().map(|p| &p["id"]).collect();
    assert_eq!(ids, [&json!(12), &json!(3)]);
    assert!(many[0].get("payload").is_none());
    // Scroll: every id once, in order.
    let all = everything(&s);
    let ids: Vec<u64> = all.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..N as u64).collect::<Vec<_>>());
    // Count with a filter against the written tags.
    let c = s.ok(
        Method::POST,
        "/collections/notes/points/count",
        Some(json!({"filter": {"field": "tag", "eq": "t1"}})),
    );
    let want = d.iter().filter(|x| x.3 == "t1").count();
    assert_eq!(c["count"], want);
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        N
    );
    // Delete by id, then by filter.
    let r = s.ok(
        Method::POST,
        "/collections/notes/points/delete",
        Some(json!({"points": [0, 1, 2]})),
    );
    assert_eq!(r["status"], "completed");
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        N - 3
    );
    s.ok(
        Method::POST,
        "/collections/notes/points/delete",
        Some(json!({"filter": {"field": "n", "gte": 290}})),
    );
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        N - 13
    );
    s.err(Method::GET, "/collections/notes/points/1", None, 404);
    // Drop.
    s.ok(Method::DELETE, "/collections/notes", None);
    s.err(Method::GET, "/collections/notes", None, 404);
    s.err(Method::DELETE, "/collections/notes", None, 404);
}

#[test]
fn queries_match_brute_force() {
    let seed = 0xB0_7E;
    eprintln!("seed {seed:#x}");
    let (s, d) = loaded(seed);
    let mut rng = Rng(seed ^ 0xFF);
    let exact = |q: &[f32], k: usize| -> Vec<u64> {
        let q = normalized(q);
        let mut all: Vec<(f32, u64)> = d
            .iter()
            .map(|(i, v, _, _)| (dot(&q, &normalized(v)), *i))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.iter().take(k).map(|x| x.1).collect()
    };
    let ids = |r: &Value| -> Vec<u64> {
        r["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect()
    };
    for _ in 0..5 {
        let q = rng.vector(DIM);
        // The simple form, exact: equal to brute force.
        let r = s.ok(
            Method::POST,
            "/collections/notes/points/query",
            Some(json!({"query": q, "limit": 5, "exact": true})),
        );
        assert_eq!(ids(&r), exact(&q, 5));
        assert_eq!(r["mode"], "dense");
        let scores: Vec<f64> = r["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!(r["points"][0]["payload"]["text"].is_string());
        // A plan with one dense source: the same answer.
        let plan = s.ok(
            Method::POST,
            "/collections/notes/points/query",
            Some(
                json!({"prefetch": [{"dense": {"field": "emb", "vector": q}, "limit": 50}],
                        "limit": 5, "with_payload": false, "explain": true}),
            ),
        );
        assert_eq!(ids(&plan), exact(&q, 5));
        assert!(plan["points"][0].get("payload").is_none());
        assert!(!plan["explain"].as_array().unwrap().is_empty());
    }
    // BM25: every hit holds the word.
    let r = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": "wombat", "mode": "bm25", "limit": 20})),
    );
    assert_eq!(r["mode"], "bm25");
    let hits = ids(&r);
    assert_eq!(hits.len(), 20);
    assert!(
        hits.iter().all(|&i| d[i as usize].2.contains("wombat")),
        "{hits:?}"
    );
    // Hybrid: text for BM25, the vector for dense; a document that is both nearest and holds the
    // word comes first.
    let target = d.iter().find(|x| x.2.contains("numbat")).unwrap();
    let r = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": "numbat", "vector": target.1, "mode": "hybrid", "limit": 3})),
    );
    assert_eq!(r["mode"], "hybrid");
    assert_eq!(ids(&r)[0], target.0);
    // with_vector returns the stored vectors.
    let r = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": target.1, "limit": 1, "with_vector": true, "exact": true})),
    );
    assert_eq!(r["points"][0]["id"], target.0);
    assert_eq!(floats(&r["points"][0]["vectors"]["emb"]).len(), DIM);
    // Filters apply inside the query.
    let r = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": target.1, "limit": 10, "filter": {"field": "tag", "eq": "t2"}})),
    );
    assert!(ids(&r).iter().all(|&i| d[i as usize].3 == "t2"));
    // Batch: the same answers in order.
    let q1 = json!({"query": d[5].1, "limit": 3, "exact": true});
    let q2 = json!({"query": "kiwi", "mode": "bm25", "limit": 3});
    let one = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(q1.clone()),
    );
    let two = s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(q2.clone()),
    );
    let b = s.ok(
        Method::POST,
        "/collections/notes/points/query/batch",
        Some(json!({"searches": [q1, q2]})),
    );
    assert_eq!(ids(&b[0]), ids(&one));
    assert_eq!(ids(&b[1]), ids(&two));
}

#[test]
fn bad_input_gets_its_status_and_changes_nothing() {
    let (s, d) = loaded(0xBAD);
    let before = everything(&s);
    let q = "/collections/notes/points/query";
    let up = "/collections/notes/points";
    // Malformed JSON and wrong types, naming the field.
    let (st, v) = s.raw(Method::PUT, up, Some(b"{\"points\": [".to_vec()));
    Server::is_error(st, &v, 400, "malformed");
    let (st, v) = s.raw(Method::POST, q, Some(b"{\"query\": [1, NaN]}".to_vec()));
    Server::is_error(st, &v, 400, "NaN");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"query": d[0].1, "limit": "ten"})),
        400,
    );
    assert!(m.contains("limit"), "{m}");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"query": d[0].1, "bogus": 1})),
        400,
    );
    assert!(m.contains("bogus"), "{m}");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"query": [1.0, 2.0], "limit": 3})),
        400,
    );
    assert!(m.contains("dim") || m.contains("dimension"), "{m}");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"prefetch": [{"dense": {"field": "nope", "vector": d[0].1}}]})),
        400,
    );
    assert!(m.contains("nope"), "{m}");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"query": d[0].1, "limit": 1_000_000})),
        400,
    );
    assert!(m.contains("max_limit"), "{m}");
    let m = s.err(
        Method::POST,
        q,
        Some(json!({"query": "x", "filter": {"field": "tag"}})),
        400,
    );
    assert!(m.contains("operator"), "{m}");
    // Documents: wrong dimensions, a value too large for f32, a bad id, a duplicate id. The
    // batch holds good documents too: none of them may land.
    let mut pts = as_points(&docs(7)[..3]);
    for p in &mut pts {
        p["id"] = json!(p["id"].as_u64().unwrap() + 10_000);
    }
    let bad = [
        json!({"id": 5000, "vectors": {"emb": [1.0, 2.0]}}),
        json!({"id": 5001, "vectors": {"emb": [1e39, 0, 0, 0, 0, 0, 0, 1]}}),
        json!({"id": -3, "vectors": {"emb": d[0].1}}),
        json!({"id": 10_000, "vectors": {"emb": d[0].1}}),
        json!({"id": 5002, "vectors": {"nope": d[0].1}}),
    ];
    for (i, b) in bad.iter().enumerate() {
        let mut batch = pts.clone();
        batch.push(b.clone());
        let m = s.err(Method::PUT, up, Some(json!({"points": batch})), 400);
        assert!(
            ["points[3]", "document 3", "position 3"]
                .iter()
                .any(|w| m.contains(w)),
            "bad document {i}: {m}"
        );
    }
    s.err(Method::PUT, up, Some(json!({"documents": []})), 400);
    // Unknown collection, route and method.
    s.err(
        Method::POST,
        "/collections/nope/points/query",
        Some(json!({"query": "x"})),
        404,
    );
    s.err(
        Method::PUT,
        "/collections/nope/points",
        Some(json!({"points": pts})),
        404,
    );
    s.err(Method::GET, "/nothing/here", None, 404);
    s.err(Method::PATCH, "/collections", None, 405);
    // Bad collection name and schema.
    s.err(Method::PUT, "/collections/..bad", Some(schema()), 400);
    s.err(
        Method::PUT,
        "/collections/other",
        Some(json!({"fields": {"e": {"type": "dense"}}})),
        400,
    );
    // Delete needs exactly one of ids and filter.
    s.err(
        Method::POST,
        "/collections/notes/points/delete",
        Some(json!({})),
        400,
    );
    s.err(
        Method::POST,
        "/collections/notes/points/scroll",
        Some(json!({"offset": [1]})),
        400,
    );
    // Nothing changed.
    assert_eq!(everything(&s), before);
    assert_eq!(
        s.ok(Method::GET, "/collections", None)["collections"],
        json!([{"name": "notes"}])
    );
}

#[test]
fn body_limit_is_413_and_writes_nothing() {
    let s = Server::start(ServerConfig {
        body_limit_bytes: 64 << 10,
        ..Default::default()
    });
    s.ok(Method::PUT, "/collections/notes", Some(schema()));
    let big: Vec<Value> = as_points(&docs(1)).into_iter().cycle().take(2000).collect();
    let body = serde_json::to_vec(&json!({"points": big})).unwrap();
    assert!(body.len() > 64 << 10);
    // The server stops reading at the limit and closes the connection after its answer; it must
    // say so, or the client's pool sends the next request down a closing socket. Rounds of an
    // oversized write and a read on one pooled client catch that (the read fails with an
    // incomplete message when the close is not announced).
    for round in 0..20 {
        let resp = s
            .client
            .put(format!("{}/collections/notes/points", s.base))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413, "round {round}");
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "round {round}: {:?}",
            resp.headers()
        );
        let v: Value = resp.json().unwrap();
        let m = Server::is_error(413, &v, 413, "oversized");
        assert!(m.contains("limit"), "{m}");
        assert_eq!(
            s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
            0,
            "round {round}"
        );
    }
}

#[test]
fn keys_guard_writes_and_reads() {
    let mut s = Server::start(ServerConfig {
        api_key: Some("rw-secret".into()),
        read_only_api_key: Some("ro-secret".into()),
        ..Default::default()
    });
    // Probes answer without a key; everything else needs one.
    s.ok(Method::GET, "/healthz", None);
    s.err(Method::GET, "/collections", None, 401);
    s.key = Some(("api-key".into(), "wrong".into()));
    s.err(Method::GET, "/collections", None, 401);
    s.key = Some(("authorization".into(), "Bearer rw-secret".into()));
    s.ok(Method::PUT, "/collections/notes", Some(schema()));
    s.ok(
        Method::PUT,
        "/collections/notes/points",
        Some(json!({"points": as_points(&docs(3)[..10])})),
    );
    s.key = Some(("api-key".into(), "ro-secret".into()));
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        10
    );
    s.ok(
        Method::POST,
        "/collections/notes/points/query",
        Some(json!({"query": "note", "mode": "bm25"})),
    );
    let m = s.err(
        Method::PUT,
        "/collections/notes/points",
        Some(json!({"points": as_points(&docs(4)[10..20])})),
        403,
    );
    assert!(m.contains("read-only"), "{m}");
    s.err(
        Method::POST,
        "/collections/notes/points/delete",
        Some(json!({"points": [1]})),
        403,
    );
    s.err(Method::DELETE, "/collections/notes", None, 403);
    s.key = Some(("api-key".into(), "rw-secret".into()));
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        10
    );
}

/// Sends the head of a request whose body never finishes: the server holds it in flight.
fn hold_open(addr: std::net::SocketAddr, path: &str) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"li"
    )
    .unwrap();
    c.flush().unwrap();
    c
}

#[test]
fn concurrency_limit_answers_503_and_reads_time_out() {
    let s = Server::start(ServerConfig {
        max_concurrency: 1,
        timeout_seconds: 1.0,
        ..Default::default()
    });
    s.ok(Method::PUT, "/collections/notes", Some(schema()));
    // Hold one read in flight; the next request is refused. (A probe that lands while the
    // held request is still on its way takes the slot first and the held one is refused
    // instead: then hold again.)
    let mut attempt = 0;
    let (mut held, m) = loop {
        let held = hold_open(s.addr, "/collections/notes/points/count");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (st, v) = s.call(
            Method::POST,
            "/collections/notes/points/count",
            Some(json!({})),
        );
        if st == 503 {
            break (held, Server::is_error(st, &v, 503, "overloaded"));
        }
        attempt += 1;
        assert!(attempt < 20, "never refused: {v}");
    };
    assert!(m.contains("overloaded"), "{m}");
    // The held read times out after 1 s with 503, and the slot frees.
    held.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("timed out") {
        match held.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("timed out"), "{answer}");
    assert_eq!(
        s.ok(Method::POST, "/collections/notes/points/count", None)["count"],
        0
    );
}

#[test]
fn openapi_lists_every_route_served() {
    let (s, _) = loaded(0x0A);
    s.ok(Method::GET, "/healthz", None);
    s.ok(Method::GET, "/readyz", None);
    let api = s.ok_raw_json("/openapi.json");
    let paths = api["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    // Ask every documented operation once (placeholders filled in).
    let fill = |p: &str| {
        p.replace("{name}", "notes")
            .replace("{id}", "5")
            .replace("{field}", "nofield")
    };
    let mut statuses = HashMap::new();
    for (m, p) in &documented {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let body = (m != "GET" && m != "DELETE").then(|| match p.as_str() {
            "/collections/{name}" => schema(),
            "/collections/{name}/points" if m == "PUT" => json!({"points": []}),
            "/collections/{name}/points" => json!({"ids": [1]}),
            "/collections/{name}/points/delete" => json!({"points": [1]}),
            "/collections/{name}/points/query" => json!({"query": "note", "mode": "bm25"}),
            "/collections/{name}/points/query/batch" => json!({"searches": []}),
            _ => json!({}),
        });
        if m == "DELETE" && p == "/collections/{name}" {
            continue; // dropping the collection would end the tour; covered elsewhere
        }
        let (st, v) = s.call(method, &fill(p), body);
        assert!(
            st != 404 && st != 405,
            "{m} {p} is documented but answered {st}: {v}"
        );
        statuses.insert((m.clone(), p.clone()), st);
    }
    s.ok(Method::DELETE, "/collections/notes", None);
    // Every route the router matched during this test is documented.
    let (st, metrics) = s.text("/metrics");
    assert_eq!(st, 200);
    let mut served = BTreeSet::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("quiver_http_requests_total{"))
    {
        let get = |k: &str| {
            let at = line.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
            line[at..].split('"').next().unwrap().to_string()
        };
        served.insert((get("method"), get("route")));
    }
    for r in &served {
        assert!(
            documented.contains(r),
            "{r:?} is served but not in /openapi.json"
        );
    }
    // And the tour reached every documented operation.
    assert_eq!(served, documented);
    assert_eq!(
        statuses[&("PUT".to_string(), "/collections/{name}".to_string())],
        409
    );
    assert!(metrics.contains("quiver_http_request_duration_seconds_bucket"));
    eprintln!(
        "{} documented operations, {} served and matched",
        documented.len(),
        served.len()
    );
}

trait Extra {
    fn ok_raw_json(&self, path: &str) -> Value;
    fn text(&self, path: &str) -> (u16, String);
}

impl Extra for Server {
    fn ok_raw_json(&self, path: &str) -> Value {
        let (st, v) = self.call(Method::GET, path, None);
        assert_eq!(st, 200, "{v}");
        v
    }
    fn text(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }
}
