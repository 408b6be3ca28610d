//! Crash test: a real `quiver ingest` child process is killed with SIGKILL at random moments
//! (several seeds). After each kill the database opens without error and every acknowledged
//! document is there with its exact vector and payload; unacknowledged ones are either absent or
//! exact. Seals (every 300 rows) and compactions (after 8 segments) happen during the ingest, so
//! kills land in every phase.

use quiver::{Database, DocId};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_quiver");
const N: usize = 6_000;
const DIM: usize = 8;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i * 31 + j * 17) % 1000) as f32 / 7.0 - 50.0)
        .collect()
}

fn quiver(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run quiver")
}

/// Writes the lines of `input` from `start_line` on to `part`, starts `quiver ingest c part --ack`
/// on `db`, SIGKILLs it after `delay_ms`, and returns how many lines of `part` it acknowledged.
fn ingest_then_kill(
    db: &std::path::Path,
    input: &std::path::Path,
    start_line: usize,
    part: &std::path::Path,
    delay_ms: u64,
) -> usize {
    let text = std::fs::read_to_string(input).expect("read");
    let lines: Vec<&str> = text.lines().skip(start_line).collect();
    std::fs::write(part, lines.join("\n") + "\n").expect("write part");
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(["ingest", "c"])
        .arg(part)
        .args(["--batch-size", "40", "--ack"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut last = 0usize;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(n) = v["acked"].as_u64() {
                    last = n as usize;
                }
            }
        }
        last
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    reader.join().expect("reader")
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_document() {
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("docs.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for i in 0..N {
            let line = json!({"id": i, "payload": {"n": i, "tag": format!("t{}", i % 13), "text": format!("document number {i}")}, "vector": vector(i)});
            writeln!(f, "{line}").expect("write");
        }
    }
    let schema = r#"{"mutable_max_rows": 300, "fields": {"emb": {"type": "dense", "dim": 8, "metric": "l2", "index": {"type": "hnsw", "m": 8, "ef_construction": 40}}, "n": {"type": "integer"}, "tag": {"type": "keyword"}}}"#;
    for seed in [1u64, 2, 3, 4, 5, 6] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let db = work.path().join(format!("db-{seed}"));
        assert!(
            quiver(&db, &["collection", "create", "c", "--schema-json", schema])
                .status
                .success()
        );
        let mut rounds = 0;
        // Kill repeatedly, resuming from the first unacknowledged line each time, so later kills hit
        // a database that already has sealed segments and tombstone-free compactions.
        let mut start_line = 0usize;
        while start_line < N && rounds < 3 {
            rounds += 1;
            let part = work.path().join(format!("part-{seed}-{rounds}.jsonl"));
            let delay = rng.random_range(30..1200);
            let acked_in_part = ingest_then_kill(&db, &input, start_line, &part, delay);
            println!("seed {seed} round {rounds}: killed after {delay} ms, {acked_in_part} lines acknowledged");
            let acked_total = start_line + acked_in_part;
            start_line = acked_total;

            let d = Database::open(&db).expect("database must open after SIGKILL");
            let c = d
                .collection("c")
                .expect("collection must open after SIGKILL");
            let mut present = 0;
            for i in 0..N {
                match c.get(&DocId::Int(i as u64)) {
                    Some(doc) => {
                        present += 1;
                        assert_eq!(doc.vectors["emb"], vector(i), "seed {seed}: doc {i} vector");
                        assert_eq!(doc.payload["n"], json!(i), "seed {seed}: doc {i} payload");
                        assert_eq!(doc.payload["text"], json!(format!("document number {i}")));
                    }
                    None => assert!(
                        i >= acked_total,
                        "seed {seed}: acknowledged doc {i} lost (acked {acked_total})"
                    ),
                }
            }
            assert_eq!(c.count(None), present);
            println!(
                "seed {seed} round {rounds}: {present} present, {} segments",
                c.info().segments.len()
            );
        }
    }
}

const MDIM: usize = 4;

/// The multi-vector set of document `i`: 1 to 4 vectors, deterministic.
fn token_set(i: usize) -> Vec<Vec<f32>> {
    (0..1 + i % 4)
        .map(|t| {
            (0..MDIM)
                .map(|j| ((i * 13 + t * 29 + j * 7) % 101) as f32 / 10.0 - 5.0)
                .collect()
        })
        .collect()
}

/// The same SIGKILL test on a schema with a `multi` field (MUVERA encodings and their HNSW are
/// built at every seal and compaction): every acknowledged document keeps its exact vector set.
#[test]
fn sigkill_during_ingest_keeps_multi_vector_sets() {
    const M: usize = 3_000;
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("docs.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for i in 0..M {
            let line = json!({"id": i, "payload": {"n": i}, "multi": {"tok": token_set(i)}});
            writeln!(f, "{line}").expect("write");
        }
    }
    let schema = r#"{"mutable_max_rows": 300, "fields": {"n": {"type": "integer"}, "tok": {"type": "multi", "dim": 4, "metric": "dot", "muvera": {"k_sim": 2, "d_proj": 4, "r_reps": 3}, "index": {"type": "hnsw", "m": 8, "ef_construction": 40}}}}"#;
    for seed in [11u64, 12, 13] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let db = work.path().join(format!("mdb-{seed}"));
        assert!(
            quiver(&db, &["collection", "create", "c", "--schema-json", schema])
                .status
                .success()
        );
        let mut start_line = 0usize;
        for round in 1..=2 {
            let part = work.path().join(format!("mpart-{seed}-{round}.jsonl"));
            let delay = rng.random_range(30..1000);
            let acked = start_line + ingest_then_kill(&db, &input, start_line, &part, delay);
            println!("multi seed {seed} round {round}: killed after {delay} ms, {acked} lines acknowledged");
            start_line = acked;
            let d = Database::open(&db).expect("database must open after SIGKILL");
            let c = d
                .collection("c")
                .expect("collection must open after SIGKILL");
            let mut present = 0;
            for i in 0..M {
                match c.get(&DocId::Int(i as u64)) {
                    Some(doc) => {
                        present += 1;
                        assert_eq!(doc.multi["tok"], token_set(i), "seed {seed}: doc {i} set");
                        assert_eq!(doc.payload["n"], json!(i));
                    }
                    None => assert!(i >= acked, "seed {seed}: acknowledged doc {i} lost"),
                }
            }
            let info = c.info();
            assert_eq!(info.multi[0].documents, present);
            println!(
                "multi seed {seed} round {round}: {present} present, {} segments",
                info.segments.len()
            );
        }
    }
}
