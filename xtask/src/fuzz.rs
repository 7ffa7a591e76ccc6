//! CI step: every cargo-fuzz target in `fuzz/` runs for a short, bounded time and any crash fails
//! CI. Installs cargo-fuzz when it is missing; builds without a sanitizer (`-s none`) so that
//! stable Rust is enough. The build goes to `$CARGO_TARGET_DIR/fuzz` so CI's cached target
//! directory keeps it (and the corpus the fuzzer grows) from one run to the next.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The targets, as named in `fuzz/Cargo.toml`.
const TARGETS: [&str; 5] = ["cbeff", "iso19794_2", "iso19794_4", "iso19794_5", "iso19794_6"];
/// Fuzzing time per target: the five together stay under two minutes with a warm build.
const SECONDS_PER_TARGET: u32 = 15;
/// The most one input may take. The parsers are linear in their input (at most a few KiB
/// here), so anything near this is a bug, not a slow machine.
const INPUT_TIMEOUT_SECONDS: u32 = 5;
const RSS_LIMIT_MB: u32 = 2048;

/// What libFuzzer reported for one target.
struct Stats {
    target: &'static str,
    executions: u64,
    per_second: u64,
    seconds: f64,
}

pub fn run(root: &Path) -> Result<(), String> {
    let started = Instant::now();
    ensure_cargo_fuzz()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("fuzz");
    crate::run(&mut fuzz(&target_dir, "build"))?;
    let mut stats = Vec::new();
    for target in TARGETS {
        // New inputs go to a scratch corpus beside the build; the committed seeds are only read.
        let scratch = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        let mut cmd = fuzz(&target_dir, "run");
        cmd.arg(target).arg(&scratch).arg(Path::new("fuzz/corpus").join(target)).arg("--").args([
            format!("-max_total_time={SECONDS_PER_TARGET}"),
            format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
            format!("-rss_limit_mb={RSS_LIMIT_MB}"),
            "-print_final_stats=1".to_owned(),
        ]);
        let dict = Path::new("fuzz").join(format!("{target}.dict"));
        if root.join(&dict).exists() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        stats.push(run_target(target, &mut cmd)?);
    }
    eprintln!("xtask: fuzzing passed in {:.0} s (build included)", started.elapsed().as_secs_f64());
    eprintln!("| target | executions | executions/s | seconds |\n|---|---:|---:|---:|");
    for s in &stats {
        eprintln!("| {} | {} | {} | {:.1} |", s.target, s.executions, s.per_second, s.seconds);
    }
    Ok(())
}

fn fuzz(target_dir: &Path, subcommand: &str) -> Command {
    let mut cmd = crate::cargo();
    cmd.args(["fuzz", subcommand, "--sanitizer", "none", "--fuzz-dir", "fuzz", "--target-dir"]).arg(target_dir);
    cmd
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    if crate::cargo().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    crate::run(crate::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// Runs one target, passing libFuzzer's output through except its per-input progress lines
/// (hundreds of them), and reads its final statistics.
fn run_target(target: &'static str, cmd: &mut Command) -> Result<Stats, String> {
    eprintln!("xtask: running {cmd:?}");
    let started = Instant::now();
    let mut child = cmd.stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut executions = 0;
    let mut per_second = 0;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let stat = |name: &str| line.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(v) = stat("stat::number_of_executed_units:") {
                executions = v;
            } else if let Some(v) = stat("stat::average_exec_per_sec:") {
                per_second = v;
            }
            if !line.starts_with('#') {
                eprintln!("{line}");
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "fuzz target {target} failed ({status}): a build error above, or a crash whose input libFuzzer saved in fuzz/artifacts/{target}/"
        ));
    }
    Ok(Stats { target, executions, per_second, seconds: started.elapsed().as_secs_f64() })
}
