//! Crash test: a real `quiver ingest` child process is killed with SIGKILL (several seeds).
//! After each kill the database opens without error and every acknowledged document is there
//! with its exact vector and payload; unacknowledged ones are either absent or exact. Seals
//! (every 300 rows) and merges (of 8 segments) run on background threads during the ingest. Every
//! seed kills once during a merge, once right after a seal and once at a random moment, and each
//! kill is placed by evidence, not by timing: the child runs with `QUIVER_TEST_EVENTS=1`, so the
//! storage layer prints `quiver-event: seal-start|seal-end|compact-start|compact-end` on stderr
//! (from the sealer and merger threads), and the events it printed before dying say which seals
//! and merges were running when the kill hit. Its `--ack` lines say how far the ingest had got (a
//! kill mid-ingest has `0 < acked < lines`).

mod common;

use common::kill::{spawn_then_kill, KillAt, Killed};
use common::{quiver, BIN};
use quiver::{Database, DocId};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::Write;
use std::process::Command;
const N: usize = 6_000;
const DIM: usize = 8;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i * 31 + j * 17) % 1000) as f32 / 7.0 - 50.0)
        .collect()
}

/// A killed ingest: what the child left behind, and how many lines its part had.
#[derive(Debug)]
struct IngestKill {
    killed: Killed,
    /// Lines in the part.
    lines: usize,
}

impl std::ops::Deref for IngestKill {
    type Target = Killed;
    fn deref(&self) -> &Killed {
        &self.killed
    }
}

impl IngestKill {
    /// Where the kill landed, from the events the child printed.
    fn phase(&self) -> &'static str {
        if self.exited_first {
            return "after the ingest had finished";
        }
        match (self.running("compact"), self.running("seal")) {
            (true, true) => "during a merge and a seal",
            (true, false) => "during a merge",
            (false, true) => "during a seal",
            (false, false) if self.count("seal-end") > 0 => "after a seal",
            (false, false) => "before any seal",
        }
    }

    fn mid_ingest(&self) -> bool {
        !self.exited_first && 0 < self.acked && self.acked < self.lines
    }
}

/// Writes the lines of `input` from `start_line` on to `part`, starts `quiver ingest c part --ack`
/// on `db` with seal/compaction events on, SIGKILLs it as `at` says, and reports what it acked and
/// which events it printed before dying.
fn ingest_then_kill(
    db: &std::path::Path,
    input: &std::path::Path,
    start_line: usize,
    part: &std::path::Path,
    at: KillAt,
) -> IngestKill {
    ingest_then_kill_with(
        db,
        input,
        start_line,
        part,
        at,
        &["--batch-size", "40", "--ack"],
    )
}

/// As [`ingest_then_kill`], with `args` after `ingest c PART`.
fn ingest_then_kill_with(
    db: &std::path::Path,
    input: &std::path::Path,
    start_line: usize,
    part: &std::path::Path,
    at: KillAt,
    args: &[&str],
) -> IngestKill {
    let text = std::fs::read_to_string(input).expect("read");
    let lines: Vec<&str> = text.lines().skip(start_line).collect();
    std::fs::write(part, lines.join("\n") + "\n").expect("write part");
    let mut cmd = Command::new(BIN);
    cmd.arg("--db")
        .arg(db)
        .args(["ingest", "c"])
        .arg(part)
        .args(args);
    IngestKill {
        killed: spawn_then_kill(cmd, at),
        lines: lines.len(),
    }
}

/// How each round of a seed kills: during the first compaction, right after the `nth` seal of the
/// round, then at a random moment.
fn rounds(rng: &mut rand::rngs::StdRng, max_delay_ms: u64) -> [KillAt; 3] {
    [
        KillAt::Event("compact-start", 1),
        KillAt::Event("seal-end", rng.random_range(1..=3)),
        KillAt::Delay(rng.random_range(10..max_delay_ms)),
    ]
}

/// The evidence that a targeted kill landed where it was aimed (a random kill may land anywhere,
/// even after the child finished: its phase is printed, and only the no-loss checks apply).
fn assert_landed(seed: u64, round: usize, at: KillAt, k: &Killed) {
    if matches!(at, KillAt::Event(..)) {
        assert!(
            !k.exited_first,
            "seed {seed} round {round}: the child finished before the kill ({at:?})"
        );
    }
    match at {
        KillAt::Event("compact-start", _) => assert!(
            k.running("compact"),
            "seed {seed} round {round}: no merge was running: events {:?}",
            k.events
        ),
        KillAt::Event("seal-end", nth) => {
            // Killed as the nth seal ended (a next seal or a merge may have started since).
            assert_eq!(
                k.count("seal-end"),
                nth,
                "seed {seed} round {round}: events {:?}",
                k.events
            );
        }
        _ => {}
    }
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
        let mut mid_ingest = 0;
        // Kill repeatedly, resuming from the first unacknowledged line each time, so later kills hit
        // a database that already has sealed segments and a compaction behind it.
        let mut start_line = 0usize;
        for (round, at) in rounds(&mut rng, 400).into_iter().enumerate() {
            let round = round + 1;
            if start_line >= N {
                break;
            }
            let part = work.path().join(format!("part-{seed}-{round}.jsonl"));
            let killed = ingest_then_kill(&db, &input, start_line, &part, at);
            println!(
                "seed {seed} round {round}: kill at {at:?} landed {}: {} of {} lines acknowledged, {} seals and {} compactions finished",
                killed.phase(),
                killed.acked,
                killed.lines,
                killed.count("seal-end"),
                killed.count("compact-end"),
            );
            assert_landed(seed, round, at, &killed);
            mid_ingest += killed.mid_ingest() as usize;
            let acked_total = start_line + killed.acked;
            start_line = acked_total;

            let d = Database::open(&db).expect("database must open after SIGKILL");
            let c = d
                .collection("c")
                .expect("collection must open after SIGKILL");
            let mut present = 0;
            for i in 0..N {
                match c.get(&DocId::Int(i as u64)).unwrap() {
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
            assert_eq!(c.count(None).unwrap(), present);
            println!(
                "seed {seed} round {round}: {present} present, {} segments",
                c.info().segments.len()
            );
        }
        assert!(mid_ingest >= 1, "seed {seed}: no kill landed mid-ingest");
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
    // Acknowledgements no longer wait for merges, so the input runs well past the first merge
    // (2,400 rows) for a kill during it to land mid-ingest.
    const M: usize = 6_000;
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
        let mut mid_ingest = 0;
        // During the first merge (at 2,400 rows: eight sealed segments), then at a random moment.
        let plan = [
            KillAt::Event("compact-start", 1),
            KillAt::Delay(rng.random_range(10..400)),
        ];
        for (round, at) in plan.into_iter().enumerate() {
            let round = round + 1;
            if start_line >= M {
                break;
            }
            let part = work.path().join(format!("mpart-{seed}-{round}.jsonl"));
            let killed = ingest_then_kill(&db, &input, start_line, &part, at);
            println!(
                "multi seed {seed} round {round}: kill at {at:?} landed {}: {} of {} lines acknowledged",
                killed.phase(),
                killed.acked,
                killed.lines
            );
            assert_landed(seed, round, at, &killed);
            mid_ingest += killed.mid_ingest() as usize;
            let acked = start_line + killed.acked;
            start_line = acked;
            let d = Database::open(&db).expect("database must open after SIGKILL");
            let c = d
                .collection("c")
                .expect("collection must open after SIGKILL");
            let mut present = 0;
            for i in 0..M {
                match c.get(&DocId::Int(i as u64)).unwrap() {
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
        assert!(
            mid_ingest >= 1,
            "multi seed {seed}: no kill landed mid-ingest"
        );
    }
}

/// A bulk load killed after it wrote its first segment (before the manifest names any) leaves
/// the collection exactly as it was; the same load run again then lands whole.
#[test]
fn sigkill_during_a_bulk_load_leaves_the_collection_as_it_was() {
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("docs.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for i in 0..3_000usize {
            let line = json!({"id": i, "payload": {"n": i}, "vector": vector(i)});
            writeln!(f, "{line}").expect("write");
        }
    }
    let schema = r#"{"mutable_max_rows": 300, "fields": {"emb": {"type": "dense", "dim": 8, "metric": "l2", "index": {"type": "hnsw", "m": 8, "ef_construction": 40}}, "n": {"type": "integer"}}}"#;
    let db = work.path().join("bulk-db");
    assert!(
        quiver(&db, &["collection", "create", "c", "--schema-json", schema])
            .status
            .success()
    );
    // The state before: 500 documents, ingested the ordinary way.
    let text = std::fs::read_to_string(&input).expect("read");
    let first: Vec<&str> = text.lines().take(500).collect();
    let head = work.path().join("head.jsonl");
    std::fs::write(&head, first.join("\n") + "\n").expect("write");
    let out = quiver(&db, &["ingest", "c", head.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |want: usize| {
        let d = Database::open(&db).expect("database must open after SIGKILL");
        let c = d
            .collection("c")
            .expect("collection must open after SIGKILL");
        assert_eq!(c.count(None).expect("count"), want);
        for i in 0..3_000usize {
            match c.get(&DocId::Int(i as u64)).unwrap() {
                Some(doc) => {
                    assert!(i < want, "doc {i} of the killed load is visible");
                    assert_eq!(doc.vectors["emb"], vector(i), "doc {i}");
                }
                None => assert!(i >= want, "doc {i} lost"),
            }
        }
    };
    let part = work.path().join("bulk.jsonl");
    let args = ["--bulk", "--segment-rows", "1000", "--ack"];
    let killed = ingest_then_kill_with(
        &db,
        &input,
        500,
        &part,
        KillAt::Event("bulk-segment", 1),
        &args,
    );
    println!(
        "bulk kill: events {:?}, exited first {}, acked {}",
        killed.events, killed.exited_first, killed.acked
    );
    assert!(!killed.exited_first, "the load finished before the kill");
    assert_eq!(killed.count("bulk-segment"), 1, "{:?}", killed.events);
    assert_eq!(killed.acked, 0);
    check(500);
    let out = quiver(
        &db,
        &[
            "ingest",
            "c",
            part.to_str().expect("path"),
            "--bulk",
            "--segment-rows",
            "1000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(3_000);
}
