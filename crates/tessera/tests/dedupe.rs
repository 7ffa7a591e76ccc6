//! `tessera synth demographics` then `tessera dedupe` as a user runs them: the planted duplicates
//! of the generated file are found (precision and recall from the CSV against the truth file),
//! namesakes are not called matches, and bad input fails with the line number and no data.
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

fn tessera(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.current_dir(dir).env_remove("TESSERA_CONFIG").env_remove("TESSERA_LOG");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b { (a.to_owned(), b.to_owned()) } else { (b.to_owned(), a.to_owned()) }
}

#[test]
fn planted_duplicates_are_found_in_a_generated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(tessera(dir.path()).args([
        "synth",
        "demographics",
        "--count",
        "6000",
        "--seed",
        "3",
        "--output",
        "people.jsonl",
        "--truth",
        "truth.csv",
    ]));
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["records"], 6000);
    // Ground truth: records of one person are duplicates; namesakes name the person they copy.
    let truth = std::fs::read_to_string(dir.path().join("truth.csv")).unwrap();
    let mut by_person: HashMap<String, Vec<String>> = HashMap::new();
    let mut namesake_of: Vec<(String, String)> = Vec::new();
    for line in truth.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        by_person.entry(f[1].to_owned()).or_default().push(f[0].to_owned());
        if !f[3].is_empty() {
            namesake_of.push((f[0].to_owned(), f[3].to_owned()));
        }
    }
    let mut planted: HashSet<(String, String)> = HashSet::new();
    for ids in by_person.values() {
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                planted.insert(pair(a, b));
            }
        }
    }
    let namesakes: HashSet<(String, String)> =
        namesake_of.iter().flat_map(|(id, p)| by_person[p].iter().map(move |other| pair(id, other))).collect();
    assert!(planted.len() > 400 && !namesakes.is_empty());

    let (ok, out, err) = run(tessera(dir.path()).args(["dedupe", "--input", "people.jsonl", "--output", "pairs.csv", "--threads", "2"]));
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["records"], 6000);
    assert!(summary["pairs_compared"].as_u64().unwrap() * 100 < summary["all_pairs"].as_u64().unwrap(), "{summary}");
    assert!(summary["records_per_s"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(dir.path().join("pairs.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id_a,id_b,score,decision,evidence"));
    let (mut matches, mut candidates) = (HashSet::new(), HashSet::new());
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(f[2].parse::<f64>().unwrap().is_finite());
        // Evidence: one field:method:similarity:weight per field.
        assert_eq!(f[4].split(';').count(), 8, "{line}");
        assert!(f[4].split(';').all(|e| e.split(':').count() == 4), "{line}");
        let p = pair(f[0], f[1]);
        match f[3] {
            "match" => {
                matches.insert(p.clone());
            }
            "possible_match" => {}
            other => panic!("decision {other}"),
        }
        candidates.insert(p);
    }
    assert_eq!(summary["pairs_written"].as_u64().unwrap() as usize, candidates.len());
    let found = |s: &HashSet<(String, String)>| s.intersection(&planted).count() as f64;
    let precision = found(&matches) / matches.len() as f64;
    let recall = found(&matches) / planted.len() as f64;
    let recall_candidates = found(&candidates) / planted.len() as f64;
    assert!(precision >= 0.99, "match precision {precision}");
    assert!(recall >= 0.85, "match recall {recall}");
    assert!(recall_candidates >= 0.96, "match-or-possible recall {recall_candidates}");
    assert_eq!(matches.intersection(&namesakes).count(), 0, "a namesake was called a match");
}

#[test]
fn explain_and_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"id": "a", "fullName": [{"language": "eng", "value": "Mohammed Al-Hassan"}], "dateOfBirth": "1984-03-07", "phone": "+212 612 345 678"}"#,
        r#"{"id": 7, "fullName": "Muhammad Alhassan", "dateOfBirth": "1984-07-03", "phone": "0612345678"}"#,
        "",
        r#"{"id": "c", "fullName": "Someone Else", "dateOfBirth": "1950-01-01"}"#,
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let (ok, out, err) = run(tessera(dir.path()).args(["dedupe", "--input", "in.jsonl", "--output", "out.csv", "--explain"]));
    assert!(ok, "{err}");
    assert!(out.contains("a 7: match"), "{out}");
    assert!(out.contains("date_of_birth") && out.contains("day_month_swapped"), "{out}");
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("a,7,"));
    // A configuration raising the match threshold out of reach: the pair is only possible.
    std::fs::write(dir.path().join("dedupe.toml"), "match_min = 200.0\n").unwrap();
    let (ok, _, err) = run(tessera(dir.path()).args(["dedupe", "--input", "in.jsonl", "--output", "out.csv", "--config", "dedupe.toml"]));
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap().contains(",possible_match,"));
    // Unknown keys are refused.
    std::fs::write(dir.path().join("bad.json"), r#"{"match_minimum": 1}"#).unwrap();
    let (ok, _, err) = run(tessera(dir.path()).args(["dedupe", "--input", "in.jsonl", "--output", "out.csv", "--config", "bad.json"]));
    assert!(!ok && err.contains("invalid demographics configuration"), "{err}");
}

#[test]
fn bad_input_fails_with_the_line_number_and_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id": "a", "fullName": "Fatima Haddad", "dateOfBirth": "1990-01-01"}"#;
    let too_long = format!(r#"{{"id": "b", "city": "{}"}}"#, "Secret".repeat(100));
    let cases: [(&str, &str); 6] = [
        (r#"{"id": "b", "fullName": "Secret Name", "#, "error: line 2: not valid JSON (column"),
        (r#"{"fullName": "Secret Name"}"#, "error: line 2: no \"id\" (a string or a number)"),
        (r#"{"id": "b", "fullName": {"Secret": "Name"}}"#, "error: line 2: fullName: wrong JSON type"),
        (r#"{"id": "a", "fullName": "Secret Name"}"#, "error: line 2: the same id as line 1"),
        (r#"["Secret Name"]"#, "error: line 2: no \"id\""),
        (&too_long, "error: line 2: city: a value is longer than 512 characters"),
    ];
    for (i, (bad, expected)) in cases.iter().enumerate() {
        let input = format!("in{i}.jsonl");
        std::fs::write(dir.path().join(&input), format!("{good}\n{bad}\n")).unwrap();
        let (ok, _, err) = run(tessera(dir.path()).args(["dedupe", "--input", &input, "--output", "out.csv"]));
        assert!(!ok, "case {i} accepted");
        assert!(err.starts_with(expected), "case {i}: {err}");
        assert!(!err.contains("Secret"), "case {i} repeats the input: {err}");
    }
    // An over-long line is refused without being read whole.
    let long = format!("{good}\n{{\"id\": \"b\", \"fullName\": \"{}\"}}\n", "x".repeat(70_000));
    std::fs::write(dir.path().join("long.jsonl"), long).unwrap();
    let (ok, _, err) = run(tessera(dir.path()).args(["dedupe", "--input", "long.jsonl", "--output", "out.csv"]));
    assert!(!ok && err.starts_with("error: line 2: longer than 65536 bytes"), "{err}");
    // A missing file and a bounded count.
    let (ok, _, err) = run(tessera(dir.path()).args(["dedupe", "--input", "nope.jsonl", "--output", "out.csv"]));
    assert!(!ok && err.contains("cannot open"), "{err}");
    let (ok, _, err) = run(tessera(dir.path()).args(["synth", "demographics", "--count", "0", "--output", "x", "--truth", "y"]));
    assert!(!ok && err.contains("--count"), "{err}");
}
