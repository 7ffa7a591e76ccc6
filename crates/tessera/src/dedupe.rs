//! `tessera dedupe` (demographic de-duplication of a JSON-lines file into a CSV of candidate
//! pairs), `tessera synth demographics` (a synthetic population with planted duplicates and
//! ground truth) and `tessera bench dedupe` (precision, recall and speed on such a population).
//! Errors name line numbers and fields, never a value.

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tessera_demographics::{Config, Decision, Matcher, Record, synth};

/// Longest input line, and most records in one input file.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
pub const RECORDS_MAX: usize = 10_000_000;
/// Largest configuration file.
const CONFIG_BYTES_MAX: u64 = 1024 * 1024;
/// Most threads.
const THREADS_MAX: usize = 256;

#[derive(Debug, clap::Args)]
pub struct DedupeArgs {
    /// Identity records, one JSON object per line, each with an `id` (string or number).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the candidate pairs: `id_a,id_b,score,decision,evidence`.
    #[arg(long)]
    output: PathBuf,
    /// The de-duplicator's configuration (TOML, or JSON if the name ends in `.json`); the
    /// built-in defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also print, for every pair written, the decision's reason and each field's evidence.
    #[arg(long)]
    explain: bool,
    /// 0: every core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn threads(n: usize) -> usize {
    if n == 0 { std::thread::available_parallelism().map_or(1, std::num::NonZero::get) } else { n.min(THREADS_MAX) }
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else { return Ok(Config::default()) };
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(CONFIG_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > CONFIG_BYTES_MAX {
        bail!("{}: larger than {CONFIG_BYTES_MAX} bytes", path.display());
    }
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid demographics configuration", path.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("{}: invalid demographics configuration", path.display()))
    }
}

/// Reads the records of a JSON-lines file (blank lines skipped). Every error names the line.
pub fn read_records(path: &Path, config: &Config) -> anyhow::Result<Vec<Record>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.len() > LINE_BYTES_MAX {
            bail!("line {line}: longer than {LINE_BYTES_MAX} bytes");
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if records.len() >= RECORDS_MAX {
            bail!("line {line}: more than {RECORDS_MAX} records");
        }
        // serde_json's message is not repeated: some quote the input.
        let v: Value = serde_json::from_slice(&buf).map_err(|e| anyhow::anyhow!("line {line}: not valid JSON (column {})", e.column()))?;
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => bail!("line {line}: no \"id\" (a string or a number)"),
        };
        let record = Record::from_json_with(id, &v, &config.limits).map_err(|e| anyhow::anyhow!("line {line}: {e}"))?;
        if let Some(first) = seen.insert(record.id.clone(), line) {
            bail!("line {line}: the same id as line {first}");
        }
        records.push(record);
    }
    Ok(records)
}

/// A CSV field, quoted where needed.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

pub fn run(args: DedupeArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    let config = load_config(args.config.as_deref())?;
    let matcher = Matcher::new(config)?;
    let records = read_records(&args.input, matcher.config())?;
    let read_s = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let result = matcher.dedupe(&records, threads(args.threads))?;
    let dedupe_s = t.elapsed().as_secs_f64();
    let file = std::fs::File::create(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut out = BufWriter::new(file);
    let mut stdout = std::io::stdout().lock();
    writeln!(out, "id_a,id_b,score,decision,evidence")?;
    for p in &result.pairs {
        let (a, b, c) = (&records[p.a].id, &records[p.b].id, &p.comparison);
        writeln!(out, "{},{},{:.2},{},{}", csv(a), csv(b), c.score, c.decision.as_str(), c.evidence_compact())?;
        if args.explain {
            writeln!(stdout, "{a} {b}: {} {:.2} ({})", c.decision.as_str(), c.score, c.reason.as_str())?;
            for e in &c.evidence {
                writeln!(stdout, "  {:<14} {:<18} {:.3} {:+7.2}", e.field.as_str(), e.method.as_str(), e.similarity, e.weight)?;
            }
        }
    }
    out.flush().with_context(|| format!("cannot write {}", args.output.display()))?;
    let s = &result.stats;
    Ok(json!({
        "records": s.records, "keys": s.keys, "blocks": s.blocks, "blocks_oversized": s.blocks_oversized,
        "pairs_in_oversized_blocks": s.pairs_in_oversized_blocks, "pairs_compared": s.pairs_compared, "all_pairs": s.all_pairs,
        "pairs_written": result.pairs.len(), "matches": s.matches, "possible_matches": s.possible_matches,
        "pairs_over_candidates_max": s.pairs_over_candidates_max,
        "read_seconds": read_s, "dedupe_seconds": dedupe_s, "seconds": started.elapsed().as_secs_f64(),
        "records_per_s": s.records as f64 / dedupe_s.max(1e-9),
        "output": args.output.display().to_string(),
    }))
}

/// `tessera synth demographics`: COUNT records as JSON lines and their ground truth.
pub fn synth_demographics(count: usize, seed: u64, output: &Path, truth: &Path) -> anyhow::Result<Value> {
    if count == 0 || count > synth::RECORDS_MAX {
        bail!("--count must be between 1 and {}", synth::RECORDS_MAX);
    }
    let pop = synth::generate(&synth::SynthParams::new(count), &mut StdRng::seed_from_u64(seed));
    let file = std::fs::File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = BufWriter::new(file);
    for v in &pop.records {
        serde_json::to_writer(&mut out, v)?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("cannot write {}", output.display()))?;
    std::fs::write(truth, pop.truth_csv()).with_context(|| format!("cannot write {}", truth.display()))?;
    let persons: HashSet<&str> = pop.truth.iter().map(|t| t.person.as_str()).collect();
    Ok(json!({
        "records": pop.records.len(), "persons": persons.len(), "seed": seed,
        "duplicate_pairs": pop.duplicate_pairs().len(), "namesake_pairs": pop.namesake_pairs().len(),
        "output": output.display().to_string(),
        "truth": format!("{}: id,person,kind,namesake_of; two records of one person are a planted duplicate", truth.display()),
        "model": "see tessera_demographics::synth",
    }))
}

fn rates(found: usize, flagged: usize, truth: usize) -> Value {
    json!({
        "true_positives": found, "false_positives": flagged - found,
        "precision": found as f64 / flagged.max(1) as f64, "recall": found as f64 / truth.max(1) as f64,
    })
}

/// `tessera bench dedupe`: generates COUNT records, de-duplicates them and scores the result
/// against the ground truth.
pub fn bench(count: usize, seed: u64, threads_wanted: usize) -> anyhow::Result<Value> {
    if !(2..=synth::RECORDS_MAX).contains(&count) {
        bail!("--count must be between 2 and {}", synth::RECORDS_MAX);
    }
    let threads = threads(threads_wanted);
    let t = Instant::now();
    let pop = synth::generate(&synth::SynthParams::new(count), &mut StdRng::seed_from_u64(seed));
    let generate_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let records = pop.parse()?;
    let parse_s = t.elapsed().as_secs_f64();
    let matcher = Matcher::default();
    let t = Instant::now();
    let result = matcher.dedupe(&records, threads)?;
    let dedupe_s = t.elapsed().as_secs_f64();
    let truth: HashSet<(usize, usize)> = pop.duplicate_pairs().into_iter().collect();
    let namesakes: HashSet<(usize, usize)> = pop.namesake_pairs().into_iter().collect();
    let is = |d: Decision| result.pairs.iter().filter(move |p| p.comparison.decision == d).map(|p| (p.a, p.b));
    let matches: Vec<(usize, usize)> = is(Decision::Match).collect();
    let candidates: Vec<(usize, usize)> = result.pairs.iter().map(|p| (p.a, p.b)).collect();
    let found = |l: &[(usize, usize)]| l.iter().filter(|p| truth.contains(p)).count();
    let s = &result.stats;
    let config = matcher.config();
    Ok(json!({
        "records": records.len(), "seed": seed, "threads": threads,
        "true_pairs": truth.len(), "namesake_pairs": namesakes.len(),
        "match": rates(found(&matches), matches.len(), truth.len()),
        "match_or_possible": rates(found(&candidates), candidates.len(), truth.len()),
        "namesakes_as_match": matches.iter().filter(|p| namesakes.contains(p)).count(),
        "namesakes_as_possible": is(Decision::PossibleMatch).filter(|p| namesakes.contains(p)).count(),
        "pairs_compared": s.pairs_compared, "all_pairs": s.all_pairs,
        "pairs_compared_share": s.pairs_compared as f64 / s.all_pairs.max(1) as f64,
        "blocks": s.blocks, "blocks_oversized": s.blocks_oversized, "pairs_over_candidates_max": s.pairs_over_candidates_max,
        "generate_s": generate_s, "parse_s": parse_s, "dedupe_s": dedupe_s,
        "records_per_s": records.len() as f64 / dedupe_s.max(1e-9),
        "thresholds": {"match_min": config.match_min, "possible_min": config.possible_min},
    }))
}

/// `tessera dedupe`: runs and prints the summary as JSON.
pub fn command(args: DedupeArgs) -> anyhow::Result<std::process::ExitCode> {
    let summary = run(args)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `tessera synth demographics`: generates and prints the summary as JSON.
pub fn synth_command(count: usize, seed: u64, output: &Path, truth: &Path) -> anyhow::Result<std::process::ExitCode> {
    let summary = synth_demographics(count, seed, output, truth)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(std::process::ExitCode::SUCCESS)
}
