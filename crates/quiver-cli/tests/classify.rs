//! `quiver bench classify` end to end on a small labelled set built here, embedded by
//! all-MiniLM-L6-v2: similarity to the label descriptions must beat the majority class by a
//! stated margin; bad label files fail with a reason. Needs the model (`./x setup`).

mod common;

use common::require_model;
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
