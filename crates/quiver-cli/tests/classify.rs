//! `quiver bench classify` end to end on a small labelled set built here, embedded by
//! all-MiniLM-L6-v2: similarity to the label descriptions must beat the majority class by a
//! stated margin; bad label files fail with a reason. Needs the model (`./x setup`).

mod common;

use common::{quiver, require_model};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_quiver");

const TOPICS: [(&str, &str, [&str; 6]); 4] = [
    (
        "Sports",
        "Sports, games, teams, athletes and matches.",
        [
            "The striker scored twice in the second half and the home side won the cup final.",
            "She set a new world record in the 400 metres at the championships.",
            "The coach was sacked after the team lost six league games in a row.",
            "A late penalty decided the derby in front of a sold-out stadium.",
            "The tennis star withdrew from the tournament with a wrist injury.",
            "Our basketball team clinched the playoffs with a buzzer-beater.",
        ],
    ),
    (
        "Cooking",
        "Food, recipes, cooking and baking.",
        [
            "Fold the beaten egg whites gently into the chocolate batter before baking.",
            "Simmer the onions in butter until golden, then add the stock and rice.",
            "This sourdough needs a long cold proof in the fridge overnight.",
            "Season the roast chicken with garlic, lemon and thyme.",
            "Whisk the flour, sugar and milk into a smooth pancake batter.",
            "Grill the vegetables and drizzle them with olive oil and balsamic vinegar.",
        ],
    ),
    (
        "Computers",
        "Computers, software, programming and hardware.",
        [
            "The compiler rejected the program because of a type error in the loop.",
            "Upgrade the laptop's memory to sixteen gigabytes for faster builds.",
            "The database server crashed when the disk filled up during the backup.",
            "Install the new graphics driver and restart the operating system.",
            "The function leaks memory when the network socket is never closed.",
            "We rewrote the search service in Rust to cut its latency in half.",
        ],
    ),
    (
        "Weather",
        "Weather, forecasts, rain, storms and temperatures.",
        [
            "Heavy rain and strong winds are expected along the coast tonight.",
            "Temperatures will drop below freezing with snow on higher ground.",
            "A heatwave is forecast for the weekend with highs of thirty-eight degrees.",
            "The hurricane weakened to a tropical storm as it moved inland.",
            "Morning fog will clear to give a sunny, mild afternoon.",
            "Thunderstorms and hail caused flooding in several valleys.",
        ],
    ),
];

fn write_set(dir: &Path, labels: &Value) {
    std::fs::write(dir.join("labels.json"), labels.to_string()).expect("labels");
    let mut lines = String::new();
    let mut n = 0;
    for (label, _, texts) in TOPICS {
        for t in texts {
            lines.push_str(&json!({"id": n, "text": t, "label": label}).to_string());
            lines.push('\n');
            n += 1;
        }
    }
    std::fs::write(dir.join("test.jsonl"), lines).expect("docs");
}

fn classify(dir: &Path) -> Output {
    Command::new(BIN)
        .args([
            "bench",
            "classify",
            "--no-cache",
            "--json",
            "--iterations",
            "0,1",
            "--data",
        ])
        .arg(dir)
        .output()
        .expect("run quiver")
}

#[test]
fn label_similarity_beats_the_majority_class_by_a_margin() {
    require_model("all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().expect("tempdir");
    let labels: Vec<Value> = TOPICS
        .iter()
        .map(|(l, d, _)| json!({"label": l, "description": d}))
        .collect();
    write_set(dir.path(), &Value::Array(labels));
    let out = classify(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &v["results"][0];
    println!("{r}");
    assert_eq!(r["documents"], 24);
    assert_eq!(r["labels"], 4);
    let majority = r["majority"]["accuracy"].as_f64().expect("f64");
    assert!((majority - 0.25).abs() < 1e-12);
    let plain = &r["rows"][0];
    assert_eq!(plain["iterations"], 0);
    let acc = plain["accuracy"].as_f64().expect("f64");
    let f1 = plain["macro_f1"].as_f64().expect("f64");
    // Stated margin: at least 0.5 above the majority class (0.25), in accuracy and macro-F1.
    assert!(acc >= majority + 0.5, "accuracy {acc}");
    assert!(f1 >= 0.75, "macro-F1 {f1}");
    assert_eq!(r["rows"][1]["iterations"], 1);
}

#[test]
fn bad_label_files_fail_with_a_reason() {
    require_model("all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), &json!([]));
    let out = classify(dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no labels"));
    let missing = json!([{"label": "Sports", "description": "sport"}]);
    write_set(dir.path(), &missing);
    let out = classify(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"Cooking\" is not in labels.json"), "{err}");
}

fn ok(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(s.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// `quiver classify`: the stored documents get the label the bench's plain similarity gives
/// (same model, same texts), written into a keyword field that filters can use; a threshold of
/// -1 gives every document every label; bad input fails and changes nothing.
#[test]
fn classify_command_writes_labels_into_a_filterable_keyword_field() {
    require_model("all-MiniLM-L6-v2");
    let work = tempfile::tempdir().expect("tempdir");
    let labels: Vec<Value> = TOPICS
        .iter()
        .map(|(l, d, _)| json!({"label": l, "description": d}))
        .collect();
    write_set(work.path(), &Value::Array(labels));
    let bench = ok(classify(work.path()));
    let plain = bench["results"][0]["rows"][0]["accuracy"]
        .as_f64()
        .expect("f64");
    let lp = work.path().join("labels.json");
    let lp = lp.to_str().expect("path");
    let db = work.path().join("db");
    let schema = json!({"mutable_max_rows": 10, "fields": {
        "emb": {"type": "dense", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["text"]},
        "topic": {"type": "keyword"}}});
    ok(quiver(
        &db,
        &[
            "collection",
            "create",
            "c",
            "--schema-json",
            &schema.to_string(),
            "--json",
        ],
    ));
    let mut lines = String::new();
    let mut n = 0;
    for (label, _, texts) in TOPICS {
        for t in texts {
            let doc = json!({"id": n, "payload": {"text": t, "topic": label, "src": "test"}});
            lines.push_str(&format!("{doc}\n"));
            n += 1;
        }
    }
    let docs = work.path().join("docs.jsonl");
    std::fs::write(&docs, lines).expect("docs");
    ok(quiver(
        &db,
        &["ingest", "c", docs.to_str().expect("path"), "--json"],
    ));
    let schema_now =
        |db: &Path| ok(quiver(db, &["collection", "info", "c", "--json"]))["schema"].clone();
    let before = schema_now(&db);

    // Bad input: a reason, and nothing changes.
    let empty = work.path().join("empty.json");
    std::fs::write(&empty, "[]").expect("write");
    let twice = work.path().join("twice.json");
    std::fs::write(&twice, r#"[{"label": "a"}, {"label": "a"}]"#).expect("write");
    let bad: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--labels", empty.to_str().expect("path")], "empty"),
        (
            vec!["--labels", twice.to_str().expect("path")],
            "listed twice",
        ),
        (vec!["--labels", lp, "--into", "text"], "computed from"),
        (
            vec!["--labels", lp, "--into", "src"],
            "already have payload key",
        ),
        (vec!["--labels", lp, "--field", "nope"], "nope"),
        (vec!["--labels", lp, "--threshold", "2"], "threshold"),
        (vec!["--labels", "/no/such/labels.json"], "reading labels"),
    ];
    for (args, want) in bad {
        let mut a = vec!["classify", "c"];
        a.extend(args.iter().copied());
        let out = quiver(&db, &a);
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{args:?}: {}", err.trim());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(schema_now(&db), before, "{args:?} changed the schema");
    }

    let r = ok(quiver(
        &db,
        &[
            "classify",
            "c",
            "--labels",
            lp,
            "--iterations",
            "0",
            "--json",
        ],
    ));
    println!("{r}");
    assert_eq!(r["documents"], 24);
    assert_eq!(r["written"], 24);
    assert_eq!(r["changed"], 0);
    assert_eq!(r["added_field"], true);
    assert_eq!(schema_now(&db)["fields"]["label"]["type"], "keyword");
    let d = quiver::Database::open_read_only(&db).expect("open");
    let c = d.collection("c").expect("collection");
    let (page, _) = c.scroll(None, 100, None).expect("scroll");
    assert_eq!(page.len(), 24);
    let right = page
        .iter()
        .filter(|doc| doc.payload["label"] == doc.payload["topic"])
        .count();
    let acc = right as f64 / 24.0;
    println!("classify accuracy {acc}, bench plain accuracy {plain}");
    assert!((acc - plain).abs() < 1e-9, "{acc} vs {plain}");
    assert!(
        acc >= 0.75,
        "accuracy {acc}: not 0.5 above the majority class"
    );
    // The vectors were carried over, not recomputed or lost.
    assert!(page.iter().all(|doc| doc.vectors["emb"].len() == 384));
    drop((c, d));
    for (label, _, _) in TOPICS {
        let filter = json!({"field": "label", "eq": label}).to_string();
        let n = ok(quiver(&db, &["count", "c", "--filter", &filter, "--json"]));
        assert_eq!(n["count"], r["counts"][label], "{label}: {n}");
    }

    // Multi-label: with threshold -1 every label is at least that similar.
    let r = ok(quiver(
        &db,
        &[
            "classify",
            "c",
            "--labels",
            lp,
            "--into",
            "tags",
            "--threshold",
            "-1",
            "--json",
        ],
    ));
    for (label, _, _) in TOPICS {
        assert_eq!(r["counts"][label], 24, "{r}");
        let filter = json!({"field": "tags", "eq": label}).to_string();
        let n = ok(quiver(&db, &["count", "c", "--filter", &filter, "--json"]));
        assert_eq!(n["count"], 24, "{label}: {n}");
    }
    assert_eq!(r["unlabelled"], 0);
}
