#![cfg(unix)]
//! `quiver serve` as a process: a client streams upserts over HTTP while the server is killed
//! with SIGKILL; after a restart on the same directory every acknowledged upsert is there with
//! its exact payload and vector, and the batch that was in flight is there whole or not at all.
//! The kill is placed by evidence: it is sent while a request is in flight (the writer has sent
//! it and not yet had an answer), after at least 30 acknowledged batches and at least one
//! background seal (`mutable_max_rows` 400, `QUIVER_TEST_EVENTS` prints `seal-end`). SIGTERM, in
//! turn, must let the server finish and exit 0.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quiver");
const DIM: usize = 8;
const BATCH: usize = 50;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i * 37 + j * 11) % 997) as f32 / 9.0 - 50.0)
        .collect()
}

/// Starts `quiver serve` on a free loopback port; returns the child, its base URL and a
/// channel of its stderr lines.
fn start(db: &std::path::Path) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(["--json", "serve", "--addr", "127.0.0.1:0"])
        .env("QUIVER_TEST_EVENTS", "1")
        .env("QUIVER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quiver serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the listening line");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let base = v["listening"].as_str().expect("listening").to_string();
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, base, rx)
}

fn batch(first: usize) -> Value {
    let points: Vec<Value> = (first..first + BATCH)
        .map(|i| json!({"id": i, "payload": {"n": i, "text": format!("doc {i}")}, "vectors": {"emb": vector(i)}}))
        .collect();
    json!({"points": points})
}

#[test]
fn sigkill_during_a_stream_of_upserts_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, events) = start(dir.path());
    let client = reqwest::blocking::Client::new();
    let schema = json!({"mutable_max_rows": 400,
                        "fields": {"emb": {"type": "dense", "dim": DIM, "metric": "l2"}, "n": {"type": "integer"}}});
    let r = client
        .put(format!("{base}/collections/c"))
        .json(&schema)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // The writer: batches of 50 sequential ids; records which were acknowledged.
    let acked = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, in_flight, base) = (acked.clone(), in_flight.clone(), base.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut next = 0;
            loop {
                in_flight.store(true, Ordering::SeqCst);
                let r = client
                    .put(format!("{base}/collections/c/points"))
                    .json(&batch(next))
                    .send();
                match r {
                    Ok(r) if r.status() == 200 => {
                        in_flight.store(false, Ordering::SeqCst);
                        next += BATCH;
                        acked.store(next, Ordering::SeqCst);
                    }
                    // The server died under this request.
                    _ => return next,
                }
            }
        })
    };
    // Kill once 30 batches are acknowledged and a seal has ended, while a request is in flight.
    let t = Instant::now();
    let mut sealed = 0;
    loop {
        while let Ok(l) = events.try_recv() {
            sealed += usize::from(l.contains("quiver-event: seal-end"));
        }
        if acked.load(Ordering::SeqCst) >= 30 * BATCH
            && sealed > 0
            && in_flight.load(Ordering::SeqCst)
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no progress: {} acked, {sealed} seals",
            acked.load(Ordering::SeqCst)
        );
    }
    let acked_at_kill = acked.load(Ordering::SeqCst);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let unanswered = writer.join().unwrap();
    let acked_final = acked.load(Ordering::SeqCst);
    assert!(acked_final >= acked_at_kill);
    eprintln!("killed after {acked_final} acknowledged documents ({sealed} seals seen); batch at {unanswered} unanswered");
    // Restart: everything acknowledged is there, exactly; the unanswered batch whole or absent.
    let (mut child, base, _events) = start(dir.path());
    let count = |filter: Value| -> usize {
        let r: Value = client
            .post(format!("{base}/collections/c/points/count"))
            .json(&json!({"filter": filter}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["result"]["count"].as_u64().unwrap() as usize
    };
    let total = count(Value::Null);
    assert!(
        total == acked_final || total == acked_final + BATCH,
        "{total} stored, {acked_final} acknowledged"
    );
    assert_eq!(count(json!({"field": "n", "lt": acked_final})), acked_final);
    let ids: Vec<usize> = (0..acked_final).collect();
    for chunk in ids.chunks(1000) {
        let r: Value = client
            .post(format!("{base}/collections/c/points"))
            .json(&json!({"ids": chunk, "with_vector": true}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let pts = r["result"].as_array().unwrap();
        assert_eq!(pts.len(), chunk.len());
        for (p, &i) in pts.iter().zip(chunk) {
            assert_eq!(p["id"], i);
            assert_eq!(p["payload"]["text"], format!("doc {i}"));
            let v: Vec<f32> = p["vectors"]["emb"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(v, vector(i), "vector of {i}");
        }
    }
    // SIGTERM: the server stops cleanly (exit status 0).
    // SAFETY: sending a signal to our own child process, whose pid is valid until waited.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
}

/// The test virtualenv's Python (made by `./x setup`, with the pinned `openai` client).
fn test_python() -> std::path::PathBuf {
    let venv = std::env::var_os("QUIVER_TEST_VENV")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::Path::new(&h).join(".cache/quiver/test-venv"))
        })
        .expect("HOME or QUIVER_TEST_VENV");
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{} cannot import openai: run `./x setup` (it makes the test venv from ci/requirements-test.txt)", py.display());
    py
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// `quiver embed`'s vectors (and token counts with `--tokens`): the reference.
fn quiver_embed(args: &[&str], texts: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("embed")
        .args(args)
        .args(texts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_openai_client_gets_quiver_embeds_vectors() {
    let model = "all-MiniLM-L6-v2";
    let texts = [
        "Quokkas live on Rottnest Island.",
        "How deep do wombats dig?",
        "numbat",
    ];
    let py = test_python();
    let dir = tempfile::tempdir().unwrap();
    let serving_since = std::time::Instant::now();
    let (mut child, base, _events) = start(dir.path());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/openai_client.py"
    );
    let out = Command::new(&py)
        .arg(script)
        .args([
            base.as_str(),
            model,
            &serde_json::to_string(&texts).unwrap(),
        ])
        .output()
        .unwrap();
    // TEI's /embed on the same server.
    let client = reqwest::blocking::Client::new();
    let tei = |body: Value| {
        let r = client
            .post(format!("{base}/embed"))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (st, tei_vectors) = tei(json!({"inputs": texts}));
    let (st_dims, tei64) = tei(json!({"inputs": texts[0], "dimensions": 64}));
    let long = "quokka ".repeat(600);
    let too_long = tei(json!({"inputs": [texts[0], long]}));
    let (st_cut, _) = tei(json!({"inputs": [long], "truncate": true}));
    let unnormalized = tei(json!({"inputs": "x", "normalize": false}));
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let alive = serving_since.elapsed().as_secs_f64();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("openai {} against quiver serve", got["openai_version"]);
    let want: Vec<Vec<f32>> = quiver_embed(&["--model", model], &texts)
        .iter()
        .map(|l| floats(&l["vector"]))
        .collect();
    for key in ["default", "float"] {
        let vs = got[key].as_array().unwrap();
        assert_eq!(vs.len(), texts.len());
        for (i, (v, w)) in vs.iter().zip(&want).enumerate() {
            let v = floats(v);
            assert_eq!(v.len(), 384);
            let c = cosine(&v, w);
            assert!(c >= 0.9999, "{key} text {i}: cosine {c}");
        }
    }
    assert_eq!(got["indexes"], json!([0, 1, 2]));
    assert_eq!(got["model"], model);
    // Matryoshka prefix: quiver embed --dims 64.
    let want64 =
        floats(&quiver_embed(&["--model", model, "--dims", "64"], &texts[..1])[0]["vector"]);
    let got64 = floats(&got["dims64"]);
    assert_eq!(got64.len(), 64);
    assert!(cosine(&got64, &want64) >= 0.9999);
    assert!(
        (got64.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4,
        "renormalised"
    );
    // Token counts: the tokens the model read (`quiver embed --tokens`, special tokens included).
    let tokens: usize = quiver_embed(&["--model", model, "--tokens"], &texts)
        .iter()
        .map(|l| l["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(got["usage"]["prompt_tokens"], tokens);
    assert_eq!(got["usage"]["total_tokens"], tokens);
    assert!(got["models"].as_array().unwrap().contains(&json!(model)));
    // TEI: the same vectors as bare arrays; long inputs refused unless truncate; normalize=false
    // refused for a model whose pipeline normalises.
    assert_eq!(st, 200, "{tei_vectors}");
    for (i, (v, w)) in tei_vectors
        .as_array()
        .unwrap()
        .iter()
        .zip(&want)
        .enumerate()
    {
        assert!(cosine(&floats(v), w) >= 0.9999, "TEI text {i}");
    }
    assert_eq!(st_dims, 200);
    assert!(cosine(&floats(&tei64[0]), &want64) >= 0.9999);
    assert_eq!(too_long.0, 413, "{}", too_long.1);
    assert!(
        too_long.1["error"].as_str().unwrap().contains("input 1"),
        "{}",
        too_long.1
    );
    assert_eq!(st_cut, 200);
    assert_eq!(unnormalized.0, 422, "{}", unnormalized.1);
    assert_eq!(unnormalized.1["error_type"], "Validation");
    // /metrics counts the texts and the time embedding took: the openai script embedded at
    // least 3 + 3 + 1 texts, TEI 3 + 1 + 1; the calls came one at a time, so their summed time
    // fits in the server's life.
    let figure = |name: &str| -> f64 {
        let key = format!("{name}{{model=\"{model}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&key));
        line.unwrap_or_else(|| panic!("{key} not in /metrics:\n{metrics}"))[key.len()..]
            .parse()
            .unwrap()
    };
    let (embedded, seconds) = (
        figure("quiver_embed_texts_total"),
        figure("quiver_embed_seconds_total"),
    );
    eprintln!("/metrics: {embedded} texts in {seconds:.3} s of embedding, server up {alive:.1} s");
    assert!(embedded >= 12.0, "{embedded}");
    assert!(seconds > 0.0 && seconds < alive, "{seconds} s of {alive}");
    assert!(metrics.contains("# TYPE quiver_embed_seconds_total counter"));
    // Errors reach the client as the right exceptions.
    let e = &got["errors"];
    assert_eq!(e["unknown_model"]["status"], 404, "{e}");
    assert_eq!(e["token_arrays"]["status"], 400, "{e}");
    assert_eq!(e["empty_text"]["status"], 400, "{e}");
    assert_eq!(e["too_many_dims"]["status"], 400, "{e}");
    assert!(
        e["token_arrays"]["message"]
            .as_str()
            .unwrap()
            .contains("token arrays"),
        "{e}"
    );
}

/// The `sh` block of README's "Serve over HTTP" section.
fn readme_serve_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Serve over HTTP")
        .nth(1)
        .expect("README has a Serve over HTTP section");
    let block = section.split("```sh\n").nth(1).expect("an sh block");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_readme_curl_examples_work_as_written() {
    let block = readme_serve_block();
    assert!(block.contains("quiver --db ./quiver-data serve"));
    // A free port instead of 6333 (a machine may run something there); the rest runs as written,
    // with `quiver` on PATH, and each curl's answer is checked.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = block.replace("6333", &port.to_string());
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{script}\nwait")])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("QUIVER_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `kill %1` sends SIGTERM: the server stops cleanly, so `wait` reports 0.
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = stdout
        .split_inclusive('}')
        .scan(String::new(), |acc, part| {
            acc.push_str(part);
            match serde_json::from_str::<Value>(acc.trim()) {
                Ok(v) => {
                    acc.clear();
                    Some(Some(v))
                }
                Err(_) => Some(None),
            }
        })
        .flatten()
        .collect();
    // create, upsert, hybrid query, embeddings.
    assert_eq!(answers.len(), 4, "{stdout}");
    assert_eq!(answers[0]["result"], true, "{stdout}");
    assert_eq!(answers[1]["result"]["count"], 2, "{stdout}");
    let q = &answers[2]["result"];
    assert_eq!(q["mode"], "hybrid", "{stdout}");
    assert_eq!(q["points"][0]["id"], 1, "{stdout}");
    assert_eq!(
        answers[3]["data"][0]["embedding"].as_array().unwrap().len(),
        64,
        "{stdout}"
    );
}
