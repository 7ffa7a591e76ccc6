//! Face matcher measurements: threshold calibration on the synthetic population, and 1:N search
//! speed and recall over a large gallery. Run in release:
//!
//! ```text
//! cargo run --release -p tessera-biometrics --example face_bench -- calibrate [people]
//! cargo run --release -p tessera-biometrics --example face_bench -- search [gallery] [probes]
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used)] // a measuring tool: its output is the point

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;
use tessera_biometrics::face::{FaceEmbedding, FaceGallery, THRESHOLD_1N_1M_FPIR_1E2, THRESHOLD_FMR_1E4, THRESHOLD_FMR_1E6, cosine};
use tessera_biometrics::synth_face::SynthFace;

const THREADS: usize = 2;
/// Histogram bins of width 1e-4 over −1..=1.
const BINS: usize = 20_001;

fn bin(score: f32) -> usize {
    (((score + 1.0) * 10_000.0).round().max(0.0) as usize).min(BINS - 1)
}

fn score_of(bin: usize) -> f32 {
    bin as f32 / 10_000.0 - 1.0
}

/// Rate of scores at or above each bin (1 − CDF).
fn at_or_above(hist: &[u64]) -> Vec<f64> {
    let total: u64 = hist.iter().sum();
    let mut out = vec![0.0; hist.len()];
    let mut acc = 0u64;
    for i in (0..hist.len()).rev() {
        acc += hist[i];
        out[i] = acc as f64 / total as f64;
    }
    out
}

fn quantiles(sorted: &[f32], qs: &[f64]) -> String {
    qs.iter().map(|q| format!("q{q}={:.3}", sorted[((sorted.len() - 1) as f64 * q).round() as usize])).collect::<Vec<_>>().join(" ")
}

fn mean_sd(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let v = xs.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

/// Per thread: (cluster, capture) of its people, and its genuine scores.
type CalibrationPart = (Vec<(usize, FaceEmbedding)>, Vec<f32>);

/// One capture per person for `people` people (impostors: all pairs) and two captures of
/// another `genuine` people (genuine pairs), on all threads with one seeded stream each.
fn calibrate(people: usize) {
    let t = Instant::now();
    let parts: Vec<CalibrationPart> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|th| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(1000 + th as u64);
                    let mine = people / THREADS + usize::from(th < people % THREADS);
                    let faces = (0..mine)
                        .map(|_| {
                            let p = SynthFace::random(&mut rng);
                            (p.cluster(), p.capture(&mut rng))
                        })
                        .collect();
                    let genuine = (0..mine * 10)
                        .map(|_| {
                            let p = SynthFace::random(&mut rng);
                            cosine(&p.capture(&mut rng), &p.capture(&mut rng))
                        })
                        .collect();
                    (faces, genuine)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let faces: Vec<(usize, FaceEmbedding)> = parts.iter().flat_map(|p| p.0.iter().cloned()).collect();
    let mut genuine: Vec<f32> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    println!("generated {} faces and {} genuine pairs in {:.1} s", faces.len(), genuine.len(), t.elapsed().as_secs_f64());

    // All impostor pairs, rows interleaved between threads so the work is even.
    let t = Instant::now();
    let faces = &faces;
    let hists: Vec<(Vec<u64>, Vec<u64>, Vec<f32>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|th| {
                s.spawn(move || {
                    let (mut all, mut same) = (vec![0u64; BINS], vec![0u64; BINS]);
                    let mut sample = Vec::new();
                    for i in (th..faces.len()).step_by(THREADS) {
                        for j in i + 1..faces.len() {
                            let c = cosine(&faces[i].1, &faces[j].1);
                            all[bin(c)] += 1;
                            if faces[i].0 == faces[j].0 {
                                same[bin(c)] += 1;
                            }
                            if (i + j) % 97 == 0 {
                                sample.push(c);
                            }
                        }
                    }
                    (all, same, sample)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = vec![0u64; BINS];
    let mut same = vec![0u64; BINS];
    let mut sample = Vec::new();
    for (a, s, x) in hists {
        all.iter_mut().zip(a).for_each(|(t, a)| *t += a);
        same.iter_mut().zip(s).for_each(|(t, a)| *t += a);
        sample.extend(x);
    }
    let pairs: u64 = all.iter().sum();
    println!("{pairs} impostor pairs in {:.1} s", t.elapsed().as_secs_f64());
    sample.sort_by(f32::total_cmp);
    genuine.sort_by(f32::total_cmp);
    let (m, sd) = mean_sd(&sample);
    println!("impostor: mean {m:.4} sd {sd:.4} {}", quantiles(&sample, &[0.01, 0.5, 0.99]));
    let same_n: u64 = same.iter().sum();
    let same_mean = same.iter().enumerate().map(|(i, &n)| f64::from(score_of(i)) * n as f64).sum::<f64>() / same_n as f64;
    println!("impostor, same cluster: {:.2}% of pairs, mean {same_mean:.4}", 100.0 * same_n as f64 / pairs as f64);
    let (m, sd) = mean_sd(&genuine);
    println!("genuine: mean {m:.4} sd {sd:.4} {}", quantiles(&genuine, &[0.001, 0.005, 0.01, 0.05, 0.5, 0.95]));

    let fmr = at_or_above(&all);
    let fnmr = |t: f32| genuine.partition_point(|&g| g < t) as f64 / genuine.len() as f64;
    println!("FMR target | threshold | FMR measured (events) | FNMR");
    for target in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7] {
        // The lowest threshold whose rate is at or below the target.
        let Some(b) = (0..BINS).find(|&b| fmr[b] <= target) else { continue };
        let events = (fmr[b] * pairs as f64).round();
        println!("{target:e} | {:.4} | {:.2e} ({events}) | {:.4}", score_of(b), fmr[b], fnmr(score_of(b)));
    }
    for (name, t) in [("THRESHOLD_FMR_1E4", THRESHOLD_FMR_1E4), ("THRESHOLD_FMR_1E6", THRESHOLD_FMR_1E6)] {
        println!("{name} = {t}: FMR {:.2e}, FNMR {:.4}", fmr[bin(t)], fnmr(t));
    }
}

/// Read bandwidth of this machine: 1 GiB summed by all threads, best of three.
fn bandwidth() -> f64 {
    let buf: Vec<u64> = (0..1u64 << 27).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sum = std::thread::scope(|s| {
            let hs: Vec<_> = buf
                .chunks(buf.len() / THREADS)
                .map(|c| {
                    s.spawn(move || {
                        let mut acc = [0u64; 8];
                        for w in c.chunks_exact(8) {
                            for i in 0..8 {
                                acc[i] = acc[i].wrapping_add(w[i]);
                            }
                        }
                        acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.max((buf.len() * 8) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn search(size: usize, probes_n: usize) {
    println!("read bandwidth ({THREADS} threads, 1 GiB): {:.1} GB/s", bandwidth());
    // Every `stride`-th person is kept to be probed again; the others are only enrolled.
    let stride = (size / probes_n).max(1);
    let mut g = FaceGallery::new();
    g.reserve(size);
    let mut kept: Vec<(u64, SynthFace)> = Vec::new();
    let (mut generating, mut inserting, mut inserting_cpu) = (0.0, 0.0, 0.0);
    const CHUNK: usize = 20_000;
    for c in 0..size.div_ceil(CHUNK) {
        let t = Instant::now();
        let first = c * CHUNK;
        let n = CHUNK.min(size - first);
        let parts: Vec<Vec<(u64, SynthFace, FaceEmbedding)>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|th| {
                    s.spawn(move || {
                        let mut rng = StdRng::seed_from_u64((c * THREADS + th) as u64);
                        (first + th..first + n)
                            .step_by(THREADS)
                            .map(|id| {
                                let p = SynthFace::random(&mut rng);
                                let f = p.capture(&mut rng);
                                (id as u64, p, f)
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut faces = Vec::with_capacity(n);
        for (id, p, f) in parts.into_iter().flatten() {
            if (id as usize).is_multiple_of(stride) {
                kept.push((id, p));
            }
            faces.push((id, f));
        }
        generating += t.elapsed().as_secs_f64();
        let (t, cpu) = (Instant::now(), cpu_seconds());
        g.insert_many(&faces, THREADS).unwrap();
        inserting += t.elapsed().as_secs_f64();
        inserting_cpu += cpu_seconds() - cpu;
    }
    println!(
        "gallery of {} faces: generated in {generating:.1} s, built (encoded and inserted) in {inserting:.1} s ({inserting_cpu:.1} s CPU), {:.0} MB",
        g.len(),
        g.memory_bytes() as f64 / 1e6
    );

    println!("process memory after the build: {}", memory());
    let mut rng = StdRng::seed_from_u64(99);
    let genuine: Vec<(u64, FaceEmbedding)> = kept.iter().map(|(id, p)| (*id, p.capture(&mut rng))).collect();
    let strangers: Vec<FaceEmbedding> = (0..probes_n).map(|_| SynthFace::random(&mut rng).capture(&mut rng)).collect();
    let probes: Vec<FaceEmbedding> = genuine.iter().map(|(_, f)| f.clone()).collect();

    let (t, cpu) = (Instant::now(), cpu_seconds());
    let exact = g.search_exact(&probes, 1, -1.0, THREADS);
    let exact_strangers = g.search_exact(&strangers, 1, -1.0, THREADS);
    println!(
        "exact f32 search of {} probes: {:.1} s ({:.1} s CPU)",
        probes.len() + strangers.len(),
        t.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    let mate_first = exact.iter().zip(&genuine).filter(|(e, (id, _))| e.first().map(|h| h.id) == Some(*id)).count();
    println!("exact search ranks the mate first for {mate_first} of {} genuine probes", genuine.len());

    // Recall where it matters for de-duplication: probes whose exact best is at or above the
    // 1:1 threshold at FMR 1e-4.
    let strong: Vec<usize> = (0..exact.len()).filter(|&i| exact[i].first().is_some_and(|h| h.score >= THRESHOLD_FMR_1E4)).collect();
    for shortlist in [256, 512, 1024, 2048, 4096] {
        g = g.with_shortlist(shortlist);
        let single = 64.min(probes.len());
        let mut times = Vec::new();
        let cpu = cpu_seconds();
        for p in &probes[..single] {
            let t = Instant::now();
            std::hint::black_box(g.search(std::slice::from_ref(p), 30, -1.0, THREADS));
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let single_cpu = (cpu_seconds() - cpu) * 1e3 / single as f64;
        times.sort_by(f64::total_cmp);
        let batch = 256.min(probes.len());
        let (t, cpu) = (Instant::now(), cpu_seconds());
        std::hint::black_box(g.search(&probes[..batch], 30, -1.0, THREADS));
        let batched = t.elapsed().as_secs_f64() * 1e3 / batch as f64;
        let batched_cpu = (cpu_seconds() - cpu) * 1e3 / batch as f64;
        let quick = g.search(&probes, 1, -1.0, THREADS);
        let top = |r: &[tessera_biometrics::face::FaceHit]| r.first().map(|h| h.id);
        let same = quick.iter().zip(&exact).filter(|(q, e)| top(q) == top(e)).count();
        let same_strong = strong.iter().filter(|&&i| top(&quick[i]) == top(&exact[i])).count();
        let quick_s = g.search(&strangers, 1, -1.0, THREADS);
        let same_s = quick_s.iter().zip(&exact_strangers).filter(|(q, e)| top(q) == top(e)).count();
        println!(
            "shortlist {shortlist:5}: single {:.2} ms (median of {single}; min {:.2}; {single_cpu:.2} ms CPU), \
             batch of {batch} {batched:.2} ms/probe ({batched_cpu:.2} ms CPU); recall@1 against exact: \
             genuine {same}/{} = {:.2}%, genuine at or above {THRESHOLD_FMR_1E4} {same_strong}/{}, strangers {same_s}/{}",
            times[single / 2],
            times[0],
            probes.len(),
            100.0 * same as f64 / probes.len() as f64,
            strong.len(),
            strangers.len()
        );
    }

    // 1:N: how often the best stranger of the gallery reaches a threshold (FPIR), and how often
    // a genuine probe's mate is not the first candidate at or above it (FNIR).
    let mut best_stranger: Vec<f32> = exact_strangers.iter().filter_map(|r| r.first().map(|h| h.score)).collect();
    best_stranger.sort_by(f32::total_cmp);
    let (m, sd) = mean_sd(&best_stranger);
    println!("best stranger in the gallery: mean {m:.4} sd {sd:.4} {}", quantiles(&best_stranger, &[0.5, 0.9, 0.99, 1.0]));
    for t in [THRESHOLD_FMR_1E4, 0.40, THRESHOLD_FMR_1E6, 0.44, 0.46, THRESHOLD_1N_1M_FPIR_1E2, 0.48, 0.50] {
        let fpir = best_stranger.iter().filter(|&&s| s >= t).count() as f64 / best_stranger.len() as f64;
        let found = exact.iter().zip(&genuine).filter(|(e, (id, _))| e.first().is_some_and(|h| h.id == *id && h.score >= t)).count();
        let fnir = 1.0 - found as f64 / genuine.len() as f64;
        println!("threshold {t:.2}: FPIR {fpir:.4} (of {} strangers), FNIR {fnir:.4}", best_stranger.len());
    }
}

/// CPU time of this process so far (user + system), from /proc: on a shared machine it says
/// what the work cost when the wall clock also counts other people's jobs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Resident and peak resident memory of this process, from /proc.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_string()).unwrap_or_default();
    format!("resident {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}

fn speed(size: usize, shortlist: usize, reps: usize) {
    let mut rng = StdRng::seed_from_u64(5);
    let people: Vec<SynthFace> = (0..1000).map(|_| SynthFace::random(&mut rng)).collect();
    let faces: Vec<(u64, FaceEmbedding)> = (0..size).map(|i| (i as u64, people[i % 1000].capture(&mut rng))).collect();
    let mut g = FaceGallery::new().with_shortlist(shortlist);
    g.insert_many(&faces, THREADS).unwrap();
    drop(faces);
    let probes: Vec<FaceEmbedding> = (0..reps).map(|i| people[i % 1000].capture(&mut rng)).collect();
    let (t, cpu) = (Instant::now(), cpu_seconds());
    for p in &probes {
        std::hint::black_box(g.search(std::slice::from_ref(p), 30, -1.0, THREADS));
    }
    let per = |x: f64| x * 1e3 / reps as f64;
    println!(
        "{size} faces, shortlist {shortlist}: {:.3} ms per single probe ({:.3} ms of CPU)",
        per(t.elapsed().as_secs_f64()),
        per(cpu_seconds() - cpu)
    );
    let (t, cpu) = (Instant::now(), cpu_seconds());
    std::hint::black_box(g.search(&probes, 30, -1.0, THREADS));
    println!("batch of {reps}: {:.3} ms per probe ({:.3} ms of CPU)", per(t.elapsed().as_secs_f64()), per(cpu_seconds() - cpu));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("calibrate") => calibrate(num(2, 20_000)),
        Some("search") => search(num(2, 1_000_000), num(3, 1024)),
        Some("speed") => speed(num(2, 200_000), num(3, 1024), num(4, 200)),
        _ => println!("usage: face_bench calibrate [people] | search [gallery] [probes]"),
    }
}
