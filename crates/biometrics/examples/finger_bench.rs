//! Finger matcher figures on the synthetic population (release build): 1:1 speed, threshold
//! calibration and error rates, first-stage recall and 1:N search time.
//!
//! `cargo run --release -p tessera-biometrics --example finger_bench -- calibrate [fingers]`
//! `cargo run --release -p tessera-biometrics --example finger_bench -- search [persons] [threads]`
//!
//! Times are wall clock and, because this machine is shared, also CPU time of the working threads
//! (from /proc/thread-self/schedstat): "per core" figures divide by CPU time.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tessera_biometrics::finger::{
    FINGER_THRESHOLD, FINGERS, FUSED_THRESHOLD, FUSED_THRESHOLD_1N, FingerGallery, FingerProbe, Fingers, PreparedFinger, Search,
};
use tessera_biometrics::synth_finger::{SynthFinger, SynthHands};

/// CPU time of the whole process, all threads (user + system, in clock ticks of 10 ms).
fn process_cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    Duration::from_millis(10 * f.iter().sum::<u64>())
}

/// CPU time of the calling thread.
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Runs `work(t)` on `threads` scoped threads; returns the results and their summed CPU time.
fn parallel<T: Send>(threads: usize, work: impl Fn(usize) -> T + Sync) -> (Vec<T>, Duration) {
    std::thread::scope(|s| {
        let work = &work;
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let start = cpu_time();
                    let out = work(t);
                    (out, cpu_time() - start)
                })
            })
            .collect();
        let mut cpu = Duration::ZERO;
        let out = hs
            .into_iter()
            .map(|h| {
                let (o, c) = h.join().unwrap();
                cpu += c;
                o
            })
            .collect();
        (out, cpu)
    })
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rate_at_or_above(sorted: &[f32], t: f32) -> f64 {
    (sorted.len() - sorted.partition_point(|&s| s < t)) as f64 / sorted.len() as f64
}

fn rate_below(sorted: &[f32], t: f32) -> f64 {
    sorted.partition_point(|&s| s < t) as f64 / sorted.len() as f64
}

/// P(sum of `n` independent draws ≥ t) for each t on a grid of `step`, by convolving the
/// histogram of single draws (exact for the empirical distribution, up to the grid).
fn sum_tail(samples: &[f32], n: usize, step: f32) -> Vec<f64> {
    let bins = (1.0 / step) as usize + 1;
    let mut single = vec![0.0f64; bins];
    for &s in samples {
        single[((s / step).ceil() as usize).min(bins - 1)] += 1.0 / samples.len() as f64;
    }
    let mut dist = vec![1.0f64];
    for _ in 0..n {
        let mut next = vec![0.0f64; dist.len() + bins - 1];
        for (i, &a) in dist.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            for (j, &b) in single.iter().enumerate() {
                next[i + j] += a * b;
            }
        }
        dist = next;
    }
    let mut tail = vec![0.0f64; dist.len() + 1];
    for i in (0..dist.len()).rev() {
        tail[i] = tail[i + 1] + dist[i];
    }
    tail
}

fn calibrate(fingers_n: usize) {
    const CAPTURES: usize = 4;
    const THREADS: usize = 2;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let t0 = Instant::now();
    let fingers: Vec<SynthFinger> = (0..fingers_n).map(|_| SynthFinger::random(&mut rng)).collect();
    let templates: Vec<Vec<_>> = fingers.iter().map(|f| (0..CAPTURES).map(|_| f.capture(&mut rng)).collect()).collect();
    let prep_start = cpu_time();
    let caps: Vec<Vec<PreparedFinger>> = templates.iter().map(|c| c.iter().map(PreparedFinger::new).collect()).collect();
    let prep = cpu_time() - prep_start;
    let minutiae: usize = templates.iter().flatten().map(|t| t.minutiae().len()).sum();
    println!(
        "{} fingers × {CAPTURES} captures, {:.1} minutiae per capture; preparing a template: {:.1} µs",
        fingers_n,
        minutiae as f64 / (fingers_n * CAPTURES) as f64,
        prep.as_secs_f64() * 1e6 / (fingers_n * CAPTURES) as f64
    );
    // Impostors: capture 0 of finger i against capture 1 of `per` other fingers.
    let per = 1000.min(fingers_n - 1);
    let caps = &caps;
    let wall = Instant::now();
    // Per probe finger: its genuine scores (every pair of its captures) and its impostor scores.
    let (parts, cpu) = parallel(THREADS, |t| {
        (t..fingers_n)
            .step_by(THREADS)
            .map(|i| {
                let mut genuine = Vec::new();
                for a in 0..CAPTURES {
                    for b in a + 1..CAPTURES {
                        genuine.push(caps[i][a].compare(&caps[i][b]).score);
                    }
                }
                let impostor: Vec<f32> = (1..=per).map(|k| caps[i][0].compare(&caps[(i + k) % fingers_n][1]).score).collect();
                (genuine, impostor)
            })
            .collect::<Vec<_>>()
    });
    let wall = wall.elapsed();
    let rows: Vec<(Vec<f32>, Vec<f32>)> = parts.into_iter().flatten().collect();
    let mut genuine: Vec<f32> = rows.iter().flat_map(|r| r.0.iter().copied()).collect();
    let mut impostor: Vec<f32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
    let comparisons = genuine.len() + impostor.len();
    println!(
        "1:1: {comparisons} comparisons in {:.1} s wall, {:.1} s CPU: {:.0} comparisons/s per core",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        comparisons as f64 / cpu.as_secs_f64()
    );
    // Fused samples: ten different probe fingers, each against a different finger, make a pair
    // of persons (fingers of a synthetic person are drawn independently).
    type Column = fn(&(Vec<f32>, Vec<f32>)) -> &Vec<f32>;
    let fuse_blocks = |column: Column| -> Vec<f32> {
        rows.chunks_exact(FINGERS)
            .flat_map(|block| (0..column(&block[0]).len()).map(move |k| block.iter().map(|r| column(r)[k]).sum()))
            .collect()
    };
    let mut fused_genuine = fuse_blocks(|r| &r.0);
    let mut fused_impostor = fuse_blocks(|r| &r.1);
    genuine.sort_by(f32::total_cmp);
    impostor.sort_by(f32::total_cmp);
    fused_genuine.sort_by(f32::total_cmp);
    fused_impostor.sort_by(f32::total_cmp);
    println!("single finger: {} genuine, {} impostor scores", genuine.len(), impostor.len());
    println!(
        "  genuine quantiles 1% {:.3} 5% {:.3} 50% {:.3}; impostor 50% {:.4} 1-1e-3 {:.4} 1-1e-4 {:.4} 1-1e-5 {:.4} max {:.4}",
        quantile(&genuine, 0.01),
        quantile(&genuine, 0.05),
        quantile(&genuine, 0.5),
        quantile(&impostor, 0.5),
        quantile(&impostor, 1.0 - 1e-3),
        quantile(&impostor, 1.0 - 1e-4),
        quantile(&impostor, 1.0 - 1e-5),
        impostor[impostor.len() - 1]
    );
    for t in [quantile(&impostor, 1.0 - 1e-3), quantile(&impostor, 1.0 - 1e-4), FINGER_THRESHOLD] {
        println!("  threshold {t:.4}: FMR {:.2e} FNMR {:.4}", rate_at_or_above(&impostor, t), rate_below(&genuine, t));
    }
    println!("fused over {FINGERS} fingers: {} genuine, {} impostor persons (empirical)", fused_genuine.len(), fused_impostor.len());
    println!(
        "  genuine 0.1% {:.3} 1% {:.3} 50% {:.3}; impostor 50% {:.3} 1-1e-3 {:.3} 1-1e-4 {:.3} max {:.3}",
        quantile(&fused_genuine, 0.001),
        quantile(&fused_genuine, 0.01),
        quantile(&fused_genuine, 0.5),
        quantile(&fused_impostor, 0.5),
        quantile(&fused_impostor, 1.0 - 1e-3),
        quantile(&fused_impostor, 1.0 - 1e-4),
        fused_impostor[fused_impostor.len() - 1]
    );
    let step = 0.001;
    let tail = sum_tail(&impostor, FINGERS, step);
    let mut table = Vec::new();
    for decade in 1..=12 {
        let target = 10f64.powi(-decade);
        let i = tail.iter().position(|&p| p <= target).unwrap_or(tail.len());
        table.push(format!("({:.3}, -{decade}.0)", i as f32 * step));
    }
    println!("  convolution, (fused score, log10 FMR): [{}]", table.join(", "));
    for t in [FUSED_THRESHOLD, FUSED_THRESHOLD_1N] {
        let i = ((t / step).floor() as usize).min(tail.len() - 1);
        println!(
            "  threshold {t:.3}: FMR {:.2e} (empirical), {:.2e} (convolution); FNMR {:.5} ({} of {})",
            rate_at_or_above(&fused_impostor, t),
            tail[i],
            rate_below(&fused_genuine, t),
            fused_genuine.partition_point(|&s| s < t),
            fused_genuine.len()
        );
    }
    println!("total {:.0} s", t0.elapsed().as_secs_f64());
}

fn search(persons: usize, threads: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(30);
    let t0 = Instant::now();
    let mut gallery = FingerGallery::default();
    let mut hands = Vec::with_capacity(persons);
    for id in 0..persons {
        let h = SynthHands::random(&mut rng);
        gallery.insert(id as u64, h.capture(&mut rng).map(Some));
        hands.push(h);
    }
    println!(
        "gallery: {persons} persons × {FINGERS} fingers built in {:.0} s; {} bytes per person ({} per finger)",
        t0.elapsed().as_secs_f64(),
        gallery.bytes_per_person(),
        gallery.bytes_per_person() / FINGERS
    );
    // Probes: new captures of planted gallery persons, and strangers.
    let planted: Vec<usize> = (0..64).map(|_| rng.random_range(0..persons)).collect();
    let mut probes: Vec<FingerProbe> = planted.iter().map(|&i| FingerProbe::new(&hands[i].capture(&mut rng).map(Some))).collect();
    let strangers: Vec<Fingers> = (0..64).map(|_| SynthHands::random(&mut rng).capture(&mut rng).map(Some)).collect();
    probes.extend(strangers.iter().map(FingerProbe::new));
    // Repeated until 3 s of wall time have passed; CPU time is the whole process's.
    let timed = |what: &str, n: usize, f: &mut dyn FnMut()| {
        let wall = Instant::now();
        let cpu = process_cpu_time();
        let mut runs = 0;
        while runs == 0 || wall.elapsed() < Duration::from_secs(3) {
            f();
            runs += 1;
        }
        let (wall, cpu) = (wall.elapsed() / runs, (process_cpu_time() - cpu) / runs);
        println!(
            "{what}: per probe person {:.2} ms wall, {:.2} ms CPU ({n} probes, {threads} threads, {runs} runs); {:.1} M finger comparisons/s per core",
            wall.as_secs_f64() * 1e3 / n as f64,
            cpu.as_secs_f64() * 1e3 / n as f64,
            (n * persons * FINGERS) as f64 / cpu.as_secs_f64() / 1e6
        );
    };
    for batch in [1usize, 16, 64] {
        timed(&format!("first stage, batch of {batch}"), batch, &mut || {
            let _ = gallery.prefilter(&probes[..batch], 30, threads);
        });
    }
    // First-stage recall: is the planted mate in the short list?
    let lists = gallery.prefilter(&probes[..planted.len()], 200, threads);
    for l in [1usize, 10, 30, 50, 100, 200] {
        let found = planted.iter().zip(&lists).filter(|(i, list)| list.iter().take(l).any(|c| c.id == **i as u64)).count();
        println!("first-stage recall@{l}: {found} of {}", planted.len());
    }
    let options = Search { threads, ..Search::default() };
    let mut results = Vec::new();
    timed("both stages (short list 30, verified by the full matcher), batch of 64", 64, &mut || {
        results = gallery.search(&probes[..64], &options);
    });
    let found = planted.iter().zip(&results).filter(|(i, r)| r.first().is_some_and(|c| c.id == **i as u64)).count();
    println!("planted duplicates found first at the 1:N threshold {FUSED_THRESHOLD_1N}: {found} of {}", planted.len());
    let strangers_matched: usize = gallery.search(&probes[64..], &options).iter().map(Vec::len).sum();
    println!("candidates returned for {} strangers: {strangers_matched}", probes.len() - 64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("calibrate") => calibrate(n(2, 2000)),
        Some("search") => search(n(2, 100_000), n(3, 2)),
        _ => println!("usage: finger_bench calibrate [fingers] | search [persons] [threads]"),
    }
}
