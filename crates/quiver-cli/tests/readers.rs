//! Several processes on one database: `quiver ingest` writes in one process while `count`, `get`,
//! `search`, `collection list` and `collection info` run in others, all at once. Every reader
//! succeeds and sees a consistent snapshot (whole batches only; never fewer documents than were
//! acknowledged before it started, never fewer than an earlier reader saw), and a second writer
//! gets the clear "open for writing by another process" error.

mod common;
use common::{ok_json, run, BIN};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

const N: u64 = 48_000;
const BATCH: u64 = 400;

#[test]
fn readers_in_other_processes_work_while_ingest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        "mutable_max_rows = 3000\n[fields.emb]\ntype = \"dense\"\ndim = 8\nmetric = \"cosine\"\nindex = { type = \"hnsw\", m = 8, ef_construction = 32 }\n[fields.text]\ntype = \"keyword\"\n[fields.body]\ntype = \"text\"\nsource = [\"text\"]\n",
    )
    .unwrap();
    let s = schema.to_str().unwrap();
    ok_json(&db, &["collection", "create", "c", "--schema", s]);
    let input = dir.path().join("docs.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..N {
            let v: Vec<f32> = (0..8).map(|j| ((i * 7 + j) as f32 * 0.1).sin()).collect();
            let doc = serde_json::json!({"id": i, "vectors": {"emb": v},
                "payload": {"text": format!("doc {i} word{}", i % 50)}});
            writeln!(f, "{doc}").unwrap();
        }
    }
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .args([
            "ingest",
            "c",
            input.to_str().unwrap(),
            "--ack",
            "--batch-size",
        ])
        .arg(BATCH.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let acks = {
        let acked = acked.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                // Ack lines are JSON; the closing summary is not.
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
                    continue;
                };
                if let Some(n) = v["acked"].as_u64() {
                    acked.store(n, SeqCst);
                }
            }
        })
    };
    let (mut rounds, mut during, mut last_count) = (0, 0, 0u64);
    let mut seen_counts = std::collections::BTreeSet::new();
    let mut refused = false;
    loop {
        let running = child.try_wait().unwrap().is_none();
        let before = acked.load(SeqCst);
        let n = ok_json(&db, &["count", "c"])["count"].as_u64().unwrap();
        assert!(
            n >= before,
            "count {n} below the {before} acknowledged before it started"
        );
        assert!(
            n >= last_count,
            "count went backwards: {last_count} then {n}"
        );
        assert_eq!(n % BATCH, 0, "count {n} shows part of a batch");
        last_count = n;
        seen_counts.insert(n);
        let list = ok_json(&db, &["collection", "list"]);
        assert!(list.to_string().contains("\"c\""), "{list}");
        let info = ok_json(&db, &["collection", "info", "c"]);
        assert_eq!(info["documents"].as_u64().unwrap() % BATCH, 0, "{info}");
        if n > 0 {
            let got = ok_json(&db, &["get", "c", "0"]);
            assert_eq!(got["documents"].as_array().unwrap().len(), 1, "{got}");
            let hits = ok_json(&db, &["search", "c", "--vector", "[1,0,0,0,0,0,0,1]"]);
            assert_eq!(hits["hits"].as_array().unwrap().len(), 10, "{hits}");
            let text = ok_json(&db, &["search", "c", "--mode", "bm25", "word7"]);
            assert!(!text["hits"].as_array().unwrap().is_empty(), "{text}");
        }
        if running && !refused {
            let (ok, _, err) = run(&db, &["delete", "c", "1"]);
            if child.try_wait().unwrap().is_none() {
                assert!(!ok, "a second writer was let in");
                assert!(err.contains("open for writing by another process"), "{err}");
                refused = true;
            }
        }
        rounds += 1;
        if running && child.try_wait().unwrap().is_none() {
            during += 1;
        }
        if !running {
            break;
        }
    }
    let status = child.wait().unwrap();
    acks.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "ingest failed: {err}");
    eprintln!(
        "{rounds} reader rounds, {during} while ingest ran; counts seen: {} distinct, {:?}..{:?}",
        seen_counts.len(),
        seen_counts.first(),
        seen_counts.last()
    );
    assert!(refused, "never tried a second writer while ingest ran");
    let mid: Vec<_> = seen_counts.iter().filter(|&&c| c > 0 && c < N).collect();
    assert!(
        mid.len() >= 2,
        "readers must have overlapped the ingest (counts strictly between 0 and {N}): {seen_counts:?}"
    );
    assert_eq!(ok_json(&db, &["count", "c"])["count"].as_u64(), Some(N));
}
