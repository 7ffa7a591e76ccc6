//! Project automation: `cargo xtask ci | tidy | bench | pg`. Plain std + serde_json, so it builds
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface
//! in seconds and works on a fresh clone.

mod activemq;
mod debian;
mod fuzz;
mod pg;
mod softhsm;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage:
  cargo xtask ci                      format check, clippy, every test on SQLite and PostgreSQL, a short fuzz run
  cargo xtask tidy                    architecture invariants (also run by `cargo test`)
  cargo xtask bench uin-pool [--database-url URL] [--workers N] [--count N] [--out DIR]
  cargo xtask bench idrepo [--database-url URL] [--workers N] [--count N] [--out DIR]
                                      without --database-url: runs on SQLite and on a throwaway PostgreSQL
  cargo xtask bench abis [ARGS...]    biometric engine speed (ARGS: tessera bench abis --help)
  cargo xtask bench abis-accuracy [ARGS...]
                                      FMR/FNMR, FPIR/FNIR per modality and fused
  cargo xtask bench dedupe [ARGS...]  demographic de-duplication: precision, recall, records/s
                                      (ARGS: tessera bench dedupe --help)
  cargo xtask bench pipeline [--gallery N] [--count N] [--only sqlite|postgres] [--topology single|split]
                                      end-to-end registrations/s (upload → UIN, bio de-duplication
                                      against a synthetic gallery) on SQLite and a throwaway
                                      PostgreSQL, one process and one API + two workers
  cargo xtask pg [-- CMD ARGS...]     start a throwaway PostgreSQL, print its URL (or run CMD with
                                      TESSERA_TEST_DATABASE_URL set), stop it on exit";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::run(&workspace_root()),
        Some("bench") => bench(&args[1..]),
        Some("pg") => pg_cmd(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed with {status}")) }
}

/// Everything CI checks. PostgreSQL comes from `TESSERA_TEST_DATABASE_URL` or a throwaway
/// cluster started here; if neither works, CI fails (it never skips the PostgreSQL half). The
/// same for the PKCS#11 keystore tests: `TESSERA_TEST_PKCS11_MODULE`, or SoftHSM2 set up here.
fn ci() -> Result<(), String> {
    ensure_components()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    let (_cluster, url) = pg::from_env_or_start(pg::Durability::Off)?;
    let hsm = softhsm::from_env_or_setup()?;
    // The STOMP tests start their own brokers from the package; the variable makes them fail if it is missing.
    let activemq_home = activemq::from_env_or_install()?;
    run(cargo()
        .args(["test", "--workspace", "--all-targets", "--locked"])
        .env(pg::TEST_URL_VAR, &url)
        .envs(hsm.env())
        .env(activemq::HOME_VAR, &activemq_home))?;
    // Doc tests are not covered by --all-targets.
    run(cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
    fuzz::run(&workspace_root())?;
    eprintln!("xtask: ci passed");
    Ok(())
}

/// rustfmt and clippy come with rustup's default profile but not with the minimal one.
fn ensure_components() -> Result<(), String> {
    let have = |sub: &str| cargo().args([sub, "--version"]).output().is_ok_and(|o| o.status.success());
    if have("fmt") && have("clippy") {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

fn pg_cmd(args: &[String]) -> Result<(), String> {
    let (_cluster, url) = pg::from_env_or_start(pg::Durability::Off)?;
    let rest: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    if rest.is_empty() {
        println!("{url}");
        // Ctrl-C would kill xtask before it can stop the cluster (which runs in its own session).
        eprintln!("xtask: PostgreSQL is up; press Enter or Ctrl-D to stop it (not Ctrl-C: that leaves it running)");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return Ok(());
    }
    run(Command::new(rest[0]).args(&rest[1..]).env(pg::TEST_URL_VAR, &url))
}

/// `--count` when not given (the UIN pool bench's allocations; `idrepo` then uses its own).
const UIN_POOL_COUNT_DEFAULT: u64 = 200_000;

struct BenchArgs {
    database_url: Option<String>,
    workers: u32,
    count: u64,
    out: PathBuf,
}

fn parse_bench_args(args: &[String]) -> Result<BenchArgs, String> {
    let mut b = BenchArgs { database_url: None, workers: 8, count: UIN_POOL_COUNT_DEFAULT, out: workspace_root().join("target/bench") };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--database-url" => b.database_url = Some(value()?),
            "--workers" => b.workers = value()?.parse().map_err(|_| "--workers must be a number")?,
            "--count" => b.count = value()?.parse().map_err(|_| "--count must be a number")?,
            "--out" => b.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(b)
}

fn bench(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("uin-pool") => bench_uin_pool(&parse_bench_args(&args[1..])?),
        Some("idrepo") => bench_idrepo(&parse_bench_args(&args[1..])?),
        Some(name @ ("abis" | "abis-accuracy" | "dedupe")) => bench_abis(name, &args[1..]),
        Some("pipeline") => bench_pipeline(&args[1..]),
        _ => Err(format!("unknown benchmark\n{USAGE}")),
    }
}

/// Builds the release binary, runs `tessera bench NAME ARGS --json target/bench/NAME.json`
/// (in memory, no database) and prints a table of the result (NAME: abis, abis-accuracy,
/// dedupe).
fn bench_abis(name: &str, args: &[String]) -> Result<(), String> {
    run(cargo().args(["build", "--release", "--locked", "-p", "tessera"]))?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let out_dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.json"));
    run(Command::new(target.join("release/tessera")).args(["bench", name]).args(args).arg("--json").arg(&out))?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    if name == "dedupe" {
        let (m, c) = (&v["match"], &v["match_or_possible"]);
        println!("\n| measure ({} records, seed {}, {} threads) | value |\n|---|---:|", v["records"], v["seed"], v["threads"]);
        println!("| planted duplicate pairs / namesake pairs | {} / {} |", v["true_pairs"], v["namesake_pairs"]);
        println!("| match: precision / recall | {:.4} / {:.4} |", f(m, "precision"), f(m, "recall"));
        println!("| match or possible match: precision / recall | {:.4} / {:.4} |", f(c, "precision"), f(c, "recall"));
        println!("| namesakes called match / possible match | {} / {} |", v["namesakes_as_match"], v["namesakes_as_possible"]);
        println!(
            "| pairs compared / all pairs | {} / {} ({:.5}%) |",
            v["pairs_compared"],
            v["all_pairs"],
            100.0 * f(&v, "pairs_compared_share")
        );
        println!("| de-duplication | {:.2} s, {:.0} records/s |", f(&v, "dedupe_s"), f(&v, "records_per_s"));
    } else if name == "abis" {
        let (i, fa, fi, d) = (&v["iris"], &v["face"], &v["finger"], &v["dedup"]);
        println!("\n| measure | value | limit / goal (same run) |\n|---|---:|---|");
        println!(
            "| iris 1:N single probe over {} | {:.1} ms, {:.0} comparisons/s | scan {:.2} GB/s = {:.1}% of read bandwidth {:.2} GB/s (goal ≥ 90%) |",
            i["templates"],
            f(i, "single_probe_ms"),
            f(i, "single_comparisons_per_s"),
            f(i, "single_scan_gb_s"),
            f(i, "single_percent_of_read_bandwidth"),
            f(i, "read_bandwidth_gb_s")
        );
        println!(
            "| iris 1:N batch of {} | {:.0} comparisons/s | {:.2}× single (goal ≥ 4×) |",
            i["batch_probes"],
            f(i, "batch_comparisons_per_s"),
            f(i, "batch_over_single")
        );
        println!("| face 1:N over {} × 512, 1 query | {:.2} ms | goal ≤ 25 ms |", fa["faces"], f(fa, "single_query_ms"));
        println!(
            "| face 1:N, {} queries | {:.2} ms/query | recall@1 vs exact {:.2}% (goal ≥ 99.5%) |",
            fa["batch_queries"],
            f(fa, "batch_ms_per_query"),
            f(fa, "recall_at_1_vs_exact_percent")
        );
        println!("| finger 1:1 | {:.0} comparisons/s per core | |", f(fi, "one_to_one_comparisons_per_s_per_core"));
        println!(
            "| finger 1:N over {} persons × 10 | {:.1} ms single, {:.1} ms/probe batched | |",
            fi["gallery_persons"],
            f(fi, "single_probe_ms"),
            f(fi, "batch_ms_per_probe")
        );
        println!(
            "| de-dup {} enrolments vs {} persons | {:.1} s ({:.1}/s) | FNIR {:.4} at FPIR {:.4} (threshold {:.2}); documented threshold {:.2}: FPIR {:.4} FNIR {:.4} |",
            d["new_enrolments"],
            d["gallery_persons"],
            f(d, "total_s"),
            f(d, "enrolments_per_s"),
            f(d, "fnir"),
            f(d, "fpir"),
            f(d, "threshold_at_fpir_0.1pct"),
            f(d, "documented_threshold"),
            f(d, "documented_fpir"),
            f(d, "documented_fnir")
        );
    } else {
        println!(
            "\n| modality | 1:1 FNMR at FMR 1e-3 | 1:1 FNMR at FMR 1e-4 | 1:N FNIR at FPIR 1e-2 | 1:N at documented threshold: FPIR / FNIR |\n|---|---:|---:|---:|---|"
        );
        for m in ["iris", "face", "finger", "fused"] {
            let one = &v["one_to_one"]["modalities"][m]["det"];
            let at = |target: f64| {
                one.as_array()
                    .and_then(|a| a.iter().find(|p| (f(p, "target_fmr") - target).abs() < 1e-12))
                    .map_or(f64::NAN, |p| f(p, "fnmr"))
            };
            let n = &v["one_to_n"]["modalities"][m];
            let fnir = n["det"]
                .as_array()
                .and_then(|a| a.iter().find(|p| (f(p, "target_fpir") - 1e-2).abs() < 1e-12))
                .map_or(f64::NAN, |p| f(p, "fnir"));
            println!(
                "| {m} | {:.4} | {:.4} | {fnir:.4} | {:.4} / {:.4} |",
                at(1e-3),
                at(1e-4),
                f(&n["documented_match"], "fpir"),
                f(&n["documented_match"], "fnir")
            );
        }
    }
    println!("\nJSON: {}", out.display());
    Ok(())
}

/// Builds the release binary and runs `tessera bench idrepo` on SQLite and PostgreSQL, then
/// prints one table. `--count` is the number of single creates (and reads); imports are 20×.
fn bench_idrepo(b: &BenchArgs) -> Result<(), String> {
    let count = if b.count == UIN_POOL_COUNT_DEFAULT { 5_000 } else { b.count };
    let results = bench_each_database(b, "idrepo", |url, out| {
        vec![
            "bench".into(),
            "idrepo".into(),
            "--database-url".into(),
            url.to_owned(),
            "--workers".into(),
            b.workers.to_string(),
            "--count".into(),
            count.to_string(),
            "--import".into(),
            (count * 20).to_string(),
            "--json".into(),
            out.to_owned(),
        ]
    })?;
    println!(
        "\n| database | creates/s | reads/s | import/s | envelope seal/s | bare seal/s | seal ratio | envelope open/s | bare open/s | open ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    for (name, v) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
            f(v, "creates_per_sec"),
            f(v, "reads_per_sec"),
            f(v, "import_per_sec"),
            f(v, "envelope_seal_per_sec"),
            f(v, "bare_aes_gcm_seal_per_sec"),
            f(v, "seal_overhead_ratio"),
            f(v, "envelope_open_per_sec"),
            f(v, "bare_aes_gcm_open_per_sec"),
            f(v, "open_overhead_ratio"),
        );
    }
    write_combined(b, "idrepo", results)
}

/// Builds the release binary, then runs it once per database (`--database-url`, or SQLite and
/// a throwaway durable PostgreSQL) with the arguments `args(url, json_out)` builds.
fn bench_each_database(
    b: &BenchArgs,
    name: &str,
    args: impl Fn(&str, &str) -> Vec<String>,
) -> Result<Vec<(String, serde_json::Value)>, String> {
    run(cargo().args(["build", "--release", "--locked", "-p", "tessera"]))?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let exe = target.join("release/tessera");
    std::fs::create_dir_all(&b.out).map_err(|e| format!("cannot create {}: {e}", b.out.display()))?;
    let scratch = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut _cluster = None;
    if let Some(url) = &b.database_url {
        runs.push((label(url), url.clone()));
    } else {
        runs.push(("sqlite".into(), format!("sqlite://{}", scratch.join("bench.db").display())));
        let (c, url) = pg::from_env_or_start(pg::Durability::Full)?;
        _cluster = Some(c);
        runs.push(("postgres".into(), url));
    }
    let mut results = Vec::new();
    for (db, url) in &runs {
        let out = b.out.join(format!("{name}-{db}.json"));
        run(Command::new(&exe).args(args(url, out.to_str().unwrap_or_default())))?;
        let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))?;
        results.push((db.clone(), v));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(results)
}

fn write_combined(b: &BenchArgs, name: &str, results: Vec<(String, serde_json::Value)>) -> Result<(), String> {
    let combined = b.out.join(format!("{name}.json"));
    let all: serde_json::Map<String, serde_json::Value> = results.into_iter().collect();
    std::fs::write(&combined, serde_json::to_string_pretty(&all).unwrap_or_default()).map_err(|e| e.to_string())?;
    println!("\nJSON: {}", combined.display());
    Ok(())
}

/// Builds the release binary and runs `tessera bench uin-pool` against each database, then
/// prints one table. The binary does the measuring, so the numbers are those of the shipped code.
fn bench_uin_pool(b: &BenchArgs) -> Result<(), String> {
    let results = bench_each_database(b, "uin-pool", |url, out| {
        ["bench", "uin-pool", "--database-url", url, "--workers", &b.workers.to_string(), "--count", &b.count.to_string(), "--json", out]
            .map(str::to_owned)
            .to_vec()
    })?;
    println!("\n| database | workers | allocations | allocs/s | refill UINs/s | duplicates |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, v) in &results {
        println!(
            "| {name} | {} | {} | {:.0} | {:.0} | {} |",
            v["workers"],
            v["allocations"],
            v["allocs_per_sec"].as_f64().unwrap_or(0.0),
            v["refill_uins_per_sec"].as_f64().unwrap_or(0.0),
            v["duplicates"]
        );
    }
    let duplicates = results.iter().any(|(_, v)| v["duplicates"] != 0);
    write_combined(b, "uin-pool", results)?;
    if duplicates {
        return Err("duplicate UINs were allocated".into());
    }
    Ok(())
}

fn label(url: &str) -> String {
    if url.starts_with("sqlite:") { "sqlite".into() } else { "postgres".into() }
}

/// The goal of issue #6 on this project's 2-core machines, and MOSIP's production sizing
/// (216,000 enrolments a day on 252 vCPUs: 0.01 per vCPU per second) for 2 vCPUs.
const PIPELINE_GOAL_PER_S: f64 = 50.0;
const MOSIP_PER_VCPU_S: f64 = 0.01;

/// Builds the release binary and runs `tessera bench pipeline` for each database (SQLite in a
/// scratch directory; PostgreSQL in a fresh throwaway cluster per run, durable as in
/// production) and topology (one process; one API and two workers), then prints one table and
/// writes `target/bench/pipeline.json`. A run that fails is reported and the others still run.
fn bench_pipeline(args: &[String]) -> Result<(), String> {
    let (mut gallery, mut count) = ("100000".to_owned(), "1000".to_owned());
    let mut databases = vec!["sqlite", "postgres"];
    let mut topologies = vec!["single", "split"];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gallery" => gallery = value()?,
            "--count" => count = value()?,
            "--only" => {
                let v = value()?;
                databases.retain(|d| *d == v);
            }
            "--topology" => {
                let v = value()?;
                topologies.retain(|t| *t == v);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if databases.is_empty() || topologies.is_empty() {
        return Err(format!("--only takes sqlite or postgres, --topology single or split\n{USAGE}"));
    }
    run(cargo().args(["build", "--release", "--locked", "-p", "tessera"]))?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let exe = target.join("release/tessera");
    let out_dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let mut results = serde_json::Map::new();
    let mut failed = Vec::new();
    for db in &databases {
        for topology in &topologies {
            let name = format!("{db}-{topology}");
            let out = out_dir.join(format!("pipeline-{name}.json"));
            let _ = std::fs::remove_file(&out);
            // A fresh cluster per run: every run starts from an empty database.
            let (cluster, url) = if *db == "postgres" {
                let (c, url) = pg::Cluster::start(pg::Durability::Full)?;
                (Some(c), url)
            } else {
                (None, "none".to_owned())
            };
            let ran = run(Command::new(&exe)
                .args(["bench", "pipeline", "--database-url", &url, "--gallery", &gallery, "--count", &count, "--topology", topology])
                .arg("--json")
                .arg(&out)
                .env_remove("TESSERA_DATABASE_URL")
                .env_remove("TESSERA_DATA_DIR")
                .env_remove("TESSERA_CONFIG"));
            drop(cluster);
            let v = std::fs::read_to_string(&out)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .unwrap_or_else(|| serde_json::json!({}));
            if let Err(e) = ran {
                failed.push(format!("{name}: {e}"));
                results.insert(name, serde_json::json!({ "error": e, "partial": v }));
            } else {
                results.insert(name, v);
            }
        }
    }
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mosip = MOSIP_PER_VCPU_S * 2.0;
    println!(
        "\n| database | topology | gallery (fill s, persons/s) | packets | uploads/s | registrations/s | p50 / p95 ms | ÷ goal {PIPELINE_GOAL_PER_S}/s | ÷ MOSIP {mosip}/s (2 vCPU) | correct |"
    );
    println!("|---|---|---|---:|---:|---:|---|---:|---:|---|");
    for (name, v) in &results {
        let (db, topology) = name.split_once('-').unwrap_or((name, ""));
        if v.get("error").is_some() {
            println!("| {db} | {topology} | failed: {} | | | | | | | no |", v["error"].as_str().unwrap_or("?"));
            continue;
        }
        let rate = f(v, "registrations_per_s");
        println!(
            "| {db} | {topology} | {} ({:.0} s, {:.0}/s) | {} | {:.1} | {:.2} | {} / {} | {:.3} | {:.0}× | {} |",
            v["gallery"],
            f(v, "gallery_fill_s"),
            f(v, "gallery_fill_per_s"),
            v["packets"],
            f(v, "uploads_per_s"),
            rate,
            v["latency_ms"]["p50"],
            v["latency_ms"]["p95"],
            rate / PIPELINE_GOAL_PER_S,
            rate / mosip,
            if v["correct"] == true { "yes" } else { "NO" }
        );
    }
    let combined = out_dir.join("pipeline.json");
    std::fs::write(&combined, serde_json::to_string_pretty(&results).unwrap_or_default()).map_err(|e| e.to_string())?;
    println!("\nJSON: {}", combined.display());
    if failed.is_empty() { Ok(()) } else { Err(format!("some runs failed: {}", failed.join("; "))) }
}
