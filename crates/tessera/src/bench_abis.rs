//! `tessera bench abis` and `tessera bench abis-accuracy`: the biometric engine's speed and
//! accuracy on the synthetic population (`tessera_biometrics::synth*`), measured in-process on
//! the shipped gallery code. Each speed figure comes with its limit measured in the same run:
//! the iris scan beside the machine's read bandwidth over the same number of bytes, the batched
//! scans beside the single-probe scan.
//!
//! Times are wall clock; "per core" figures divide by the CPU time of the working thread
//! (`/proc/thread-self/schedstat`), because these machines are shared and noisy.

use anyhow::bail;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tessera_biometrics::face::FaceGallery;
use tessera_biometrics::finger::{FINGERS, FingerGallery, FingerProbe, Fingers, PreparedFinger, Search};
use tessera_biometrics::fusion::Thresholds;
use tessera_biometrics::gallery::{Gallery, SearchOptions};
use tessera_biometrics::iris::{Probe, SHIFTS_DEFAULT};
use tessera_biometrics::iris_gallery::IrisGallery;
use tessera_biometrics::synth::{SynthEye, SynthPerson};
use tessera_biometrics::synth_face::SynthFace;
use tessera_biometrics::synth_finger::{SynthFinger, SynthHands};
use tessera_biometrics::templates::TemplateSet;

/// Largest population any part of the bench builds (memory: a multi-modal person is ≈ 9 kB).
pub const PERSONS_MAX: usize = 2_000_000;

/// Sizes of the speed bench (the defaults).
#[derive(Debug, Clone, Copy)]
pub struct SpeedSizes {
    pub iris: usize,
    pub face: usize,
    pub finger_persons: usize,
    pub dedup_gallery: usize,
    pub dedup_probes: usize,
    pub threads: usize,
}

fn threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::cast_precision_loss)]
fn per_sec(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Builds `n` items on `threads` threads, item `i` from an RNG seeded by `(seed, i / 1024)`, so
/// the result does not depend on the thread count.
fn build<T: Send>(n: usize, seed: u64, threads: usize, make: impl Fn(&mut StdRng, usize) -> T + Sync) -> Vec<T> {
    const BLOCK: usize = 1024;
    let blocks = n.div_ceil(BLOCK);
    let per = blocks.div_ceil(threads.max(1)).max(1);
    let make = &make;
    let parts: Vec<Vec<T>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..blocks)
            .step_by(per)
            .map(|first| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for b in first..(first + per).min(blocks) {
                        let mut rng = StdRng::seed_from_u64(seed ^ (b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                        for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
                            out.push(make(&mut rng, i));
                        }
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    parts.into_iter().flatten().collect()
}

/// The machine's read bandwidth over `bytes` bytes with `threads` threads: the best of three
/// passes that XOR every `u64` (what a scan that reads each byte once cannot beat).
#[allow(clippy::cast_precision_loss)]
fn read_bandwidth(bytes: usize, threads: usize) -> f64 {
    let words = bytes / 8;
    let buf: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let chunk = words.div_ceil(threads.max(1)).max(1);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let x: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = buf.chunks(chunk).map(|c| s.spawn(move || c.iter().fold(0u64, |a, w| a ^ w))).collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).fold(0, |a, b| a ^ b)
        });
        std::hint::black_box(x);
        best = best.max((words * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

#[allow(clippy::cast_precision_loss)]
fn iris_speed(n: usize, threads: usize) -> Value {
    let t = Instant::now();
    let eyes: Vec<SynthEye> = build(1024.min(n), 1, threads, |rng, _| SynthEye::random(rng));
    let codes = build(n, 2, threads, |rng, i| if i < eyes.len() { eyes[i].capture(rng) } else { SynthEye::random(rng).capture(rng) });
    let mut g = IrisGallery::default();
    for (i, c) in codes.into_iter().enumerate() {
        g.insert(i as u64, c);
    }
    let built = t.elapsed();
    let bytes = n * size_of::<tessera_biometrics::iris::IrisCode>();
    let bandwidth = read_bandwidth(bytes, threads);
    let mut rng = StdRng::seed_from_u64(3);
    let probes: Vec<Probe> = (0..16).filter_map(|i| Probe::new(&eyes[i % eyes.len()].capture(&mut rng), SHIFTS_DEFAULT).ok()).collect();
    let mut single = Vec::new();
    let mut found = 0;
    for (i, p) in probes.iter().take(5).enumerate() {
        let t = Instant::now();
        let hits = g.search(std::slice::from_ref(p), 30, 1.0, threads);
        single.push(t.elapsed());
        found += usize::from(hits[0].first().map(|h| h.id) == Some(i as u64));
    }
    let single = median(single);
    let t = Instant::now();
    let batch = g.search(&probes, 30, 1.0, threads);
    let batched = t.elapsed();
    found += batch.iter().enumerate().filter(|(i, h)| h.first().map(|h| h.id) == Some(*i as u64)).count();
    let single_rate = per_sec(n, single);
    let batched_rate = per_sec(n * probes.len(), batched);
    let scan_bandwidth = bytes as f64 / single.as_secs_f64();
    json!({
        "templates": n, "template_bytes": size_of::<tessera_biometrics::iris::IrisCode>(), "rotations": 2 * SHIFTS_DEFAULT + 1,
        "build_s": built.as_secs_f64(),
        "read_bandwidth_gb_s": bandwidth / 1e9,
        "single_probe_ms": ms(single),
        "single_comparisons_per_s": single_rate,
        "single_scan_gb_s": scan_bandwidth / 1e9,
        "single_percent_of_read_bandwidth": 100.0 * scan_bandwidth / bandwidth,
        "batch_probes": probes.len(),
        "batch_ms": ms(batched),
        "batch_comparisons_per_s": batched_rate,
        "batch_over_single": batched_rate / single_rate,
        "mates_ranked_first": found, "mates_probed": 5 + probes.len(),
    })
}

#[allow(clippy::cast_precision_loss)]
fn face_speed(n: usize, threads: usize) -> anyhow::Result<Value> {
    let t = Instant::now();
    let people: Vec<SynthFace> = build(1024.min(n), 11, threads, |rng, _| SynthFace::random(rng));
    let faces: Vec<(u64, _)> = build(n, 12, threads, |rng, i| {
        (i as u64, if i < people.len() { people[i].capture(rng) } else { SynthFace::random(rng).capture(rng) })
    });
    let mut g = FaceGallery::new();
    g.reserve(n);
    g.insert_many(&faces, threads)?;
    drop(faces);
    let built = t.elapsed();
    let mut rng = StdRng::seed_from_u64(13);
    let probes: Vec<_> = (0..256).map(|i| people[i % people.len()].capture(&mut rng)).collect();
    let mut single = Vec::new();
    for p in probes.iter().take(16) {
        let t = Instant::now();
        std::hint::black_box(g.search(std::slice::from_ref(p), 30, -1.0, threads));
        single.push(t.elapsed());
    }
    let single = median(single);
    let t = Instant::now();
    let quick = g.search(&probes, 1, -1.0, threads);
    let batched = t.elapsed();
    let exact = g.search_exact(&probes, 1, -1.0, threads);
    let same = quick.iter().zip(&exact).filter(|(q, e)| q.first().map(|h| h.id) == e.first().map(|h| h.id)).count();
    Ok(json!({
        "faces": n, "dimensions": tessera_biometrics::face::FACE_DIM, "shortlist": g.shortlist(),
        "build_s": built.as_secs_f64(), "memory_mb": g.memory_bytes() as f64 / 1e6,
        "single_query_ms": ms(single), "single_goal_ms": 25.0,
        "batch_queries": probes.len(), "batch_ms_per_query": ms(batched) / probes.len() as f64,
        "recall_at_1_vs_exact_percent": 100.0 * same as f64 / probes.len() as f64, "recall_goal_percent": 99.5,
    }))
}

#[allow(clippy::cast_precision_loss)]
fn finger_speed(persons: usize, threads: usize) -> Value {
    // 1:1 on one thread: CPU time per comparison (templates prepared once, as the gallery does).
    let mut rng = StdRng::seed_from_u64(21);
    let fingers: Vec<SynthFinger> = (0..200).map(|_| SynthFinger::random(&mut rng)).collect();
    let a: Vec<PreparedFinger> = fingers.iter().map(|f| PreparedFinger::new(&f.capture(&mut rng))).collect();
    let b: Vec<PreparedFinger> = fingers.iter().map(|f| PreparedFinger::new(&f.capture(&mut rng))).collect();
    let (t, cpu) = (Instant::now(), thread_cpu());
    let mut comparisons = 0;
    for (i, p) in a.iter().enumerate() {
        for k in 0..10 {
            std::hint::black_box(p.compare(&b[(i + k) % b.len()]));
            comparisons += 1;
        }
    }
    let (wall, cpu) = (t.elapsed(), thread_cpu().saturating_sub(cpu));
    let per_core = per_sec(comparisons, if cpu.is_zero() { wall } else { cpu });

    let t = Instant::now();
    let hands: Vec<SynthHands> = build(256.min(persons), 22, threads, |rng, _| SynthHands::random(rng));
    let rows: Vec<Fingers> = build(persons, 23, threads, |rng, i| {
        if i < hands.len() { hands[i].capture(rng) } else { SynthHands::random(rng).capture(rng) }.map(Some)
    });
    let mut g = FingerGallery::default();
    for (i, f) in rows.into_iter().enumerate() {
        g.insert(i as u64, f);
    }
    let built = t.elapsed();
    let mut rng = StdRng::seed_from_u64(24);
    let probes: Vec<FingerProbe> = (0..16).map(|i| FingerProbe::new(&hands[i % hands.len()].capture(&mut rng).map(Some))).collect();
    let search = Search { threads, ..Search::default() };
    let mut single = Vec::new();
    let mut found = 0;
    for (i, p) in probes.iter().take(5).enumerate() {
        let t = Instant::now();
        let r = g.search(std::slice::from_ref(p), &search);
        single.push(t.elapsed());
        found += usize::from(r[0].first().map(|c| c.id) == Some(i as u64));
    }
    let single = median(single);
    let t = Instant::now();
    let r = g.search(&probes, &search);
    let batched = t.elapsed();
    found += r.iter().enumerate().filter(|(i, h)| h.first().map(|c| c.id) == Some(*i as u64)).count();
    json!({
        "one_to_one_comparisons_per_s_per_core": per_core, "one_to_one_comparisons": comparisons,
        "gallery_persons": persons, "fingers_per_person": FINGERS, "build_s": built.as_secs_f64(),
        "bytes_per_person": g.bytes_per_person(),
        "single_probe_ms": ms(single),
        "batch_probes": probes.len(), "batch_ms_per_probe": ms(batched) / probes.len() as f64,
        "mates_ranked_first": found, "mates_probed": 5 + probes.len(),
    })
}

/// A multi-modal gallery of `n` persons (ids 0..n) whose first `keep` persons are returned to be
/// enrolled again.
fn multimodal(n: usize, keep: usize, seed: u64, threads: usize) -> (Gallery, Vec<SynthPerson>) {
    let kept: Vec<SynthPerson> = build(keep.min(n), seed, threads, |rng, _| SynthPerson::random(rng));
    let mut g = Gallery::default();
    const CHUNK: usize = 50_000;
    for first in (0..n).step_by(CHUNK) {
        let count = CHUNK.min(n - first);
        let sets: Vec<TemplateSet> = build(count, seed ^ 0xA5A5 ^ first as u64, threads, |rng, i| {
            let id = first + i;
            if id < kept.len() { kept[id].capture(rng) } else { SynthPerson::random(rng).capture(rng) }
        });
        for (i, s) in sets.iter().enumerate() {
            g.insert((first + i) as u64, s);
        }
    }
    (g, kept)
}

/// For each probe, its best candidate's (id, evidence), batched as the ABIS batches enrolments.
fn best_candidates(g: &Gallery, probes: &[TemplateSet], threads: usize) -> Vec<Option<(u64, f64)>> {
    const BATCH: usize = 64;
    let opts = SearchOptions { k: 1, threads, min_evidence: 0.0, exclude: None, restrict: None };
    probes.chunks(BATCH).flat_map(|b| g.search(b, &opts)).map(|hits| hits.first().map(|h| (h.id, h.evidence))).collect()
}

/// FPIR and FNIR at `threshold`: strangers whose best candidate reaches it; mates not found
/// first at or above it.
#[allow(clippy::cast_precision_loss)]
fn rates(mates: &[(u64, Option<(u64, f64)>)], strangers: &[Option<(u64, f64)>], threshold: f64) -> (f64, f64) {
    let fp = strangers.iter().filter(|b| b.is_some_and(|(_, e)| e >= threshold)).count();
    let missed = mates.iter().filter(|(id, b)| !b.is_some_and(|(got, e)| got == *id && e >= threshold)).count();
    (fp as f64 / strangers.len().max(1) as f64, missed as f64 / mates.len().max(1) as f64)
}

/// The lowest threshold with FPIR ≤ `fpir` on these strangers (above the best stranger allowed).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn threshold_at_fpir(strangers: &[Option<(u64, f64)>], fpir: f64) -> f64 {
    let mut best: Vec<f64> = strangers.iter().map(|b| b.map_or(0.0, |(_, e)| e)).collect();
    best.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpir * best.len() as f64).floor() as usize;
    best.get(allowed).map_or(0.0, |e| e + 1e-9)
}

#[allow(clippy::cast_precision_loss)]
fn dedup_speed(gallery: usize, probes: usize, threads: usize) -> Value {
    let t = Instant::now();
    // Half the new enrolments are planted duplicates of enrolled persons, half strangers.
    let mates_n = probes / 2;
    let (g, kept) = multimodal(gallery, mates_n, 31, threads);
    let built = t.elapsed();
    let mut rng = StdRng::seed_from_u64(32);
    let mut sets: Vec<TemplateSet> = kept.iter().map(|p| p.capture(&mut rng)).collect();
    sets.extend((0..probes - mates_n).map(|_| SynthPerson::random(&mut rng).capture(&mut rng)));
    let t = Instant::now();
    let best = best_candidates(&g, &sets, threads);
    let searched = t.elapsed();
    let mates: Vec<(u64, Option<(u64, f64)>)> = best[..mates_n].iter().enumerate().map(|(i, b)| (i as u64, *b)).collect();
    let strangers = &best[mates_n..];
    let documented =
        Thresholds::new(gallery, tessera_biometrics::fusion::TARGET_FPIR_DEFAULT, tessera_biometrics::fusion::REVIEW_DECADES_DEFAULT);
    let (fpir_doc, fnir_doc) = rates(&mates, strangers, documented.matched);
    let at = threshold_at_fpir(strangers, 0.001);
    let (fpir, fnir) = rates(&mates, strangers, at);
    json!({
        "gallery_persons": gallery, "modalities": "2 irises + face + 10 fingers", "build_s": built.as_secs_f64(),
        "new_enrolments": probes, "planted_duplicates": mates_n, "strangers": probes - mates_n,
        "total_s": searched.as_secs_f64(), "enrolments_per_s": per_sec(probes, searched),
        "threshold_at_fpir_0.1pct": at, "fpir": fpir, "fnir": fnir,
        "documented_threshold": documented.matched, "documented_fpir": fpir_doc, "documented_fnir": fnir_doc,
    })
}

/// `tessera bench abis`.
pub fn speed(sizes: SpeedSizes) -> anyhow::Result<Value> {
    for (what, n) in [
        ("--iris", sizes.iris),
        ("--face", sizes.face),
        ("--finger-persons", sizes.finger_persons),
        ("--dedup-gallery", sizes.dedup_gallery),
    ] {
        if n == 0 || n > PERSONS_MAX {
            bail!("{what} must be between 1 and {PERSONS_MAX}");
        }
    }
    if sizes.dedup_probes < 2 || sizes.dedup_probes > 100_000 {
        bail!("--dedup-probes must be between 2 and 100000");
    }
    let threads = if sizes.threads == 0 { threads_default() } else { sizes.threads.min(256) };
    let started = Instant::now();
    eprintln!("iris: {} templates", sizes.iris);
    let iris = iris_speed(sizes.iris, threads);
    eprintln!("face: {} embeddings", sizes.face);
    let face = face_speed(sizes.face, threads)?;
    eprintln!("finger: {} persons x 10", sizes.finger_persons);
    let finger = finger_speed(sizes.finger_persons, threads);
    eprintln!("de-duplication: {} enrolments against {} persons", sizes.dedup_probes, sizes.dedup_gallery);
    let dedup = dedup_speed(sizes.dedup_gallery, sizes.dedup_probes, threads);
    Ok(json!({
        "bench": "abis", "threads": threads, "cores": threads_default(),
        "iris": iris, "face": face, "finger": finger, "dedup": dedup,
        "total_s": started.elapsed().as_secs_f64(),
    }))
}

/// Sorted scores and error rates at DET points: the thresholds that give each target FMR on the
/// impostor scores (higher scores are more alike), with the FNMR there.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn det(genuine: &mut [f64], impostor: &mut [f64], documented: &[(&str, f64)]) -> Value {
    genuine.sort_by(f64::total_cmp);
    impostor.sort_by(f64::total_cmp);
    let fnmr = |t: f64| genuine.partition_point(|&s| s < t) as f64 / genuine.len().max(1) as f64;
    let fmr = |t: f64| (impostor.len() - impostor.partition_point(|&s| s < t)) as f64 / impostor.len().max(1) as f64;
    let mut points = Vec::new();
    for target in [1e-1, 1e-2, 1e-3, 1e-4, 1e-5] {
        let allowed = (target * impostor.len() as f64).floor() as usize;
        if allowed == 0 {
            continue; // too few impostor comparisons to measure this FMR
        }
        let t = impostor.get(impostor.len() - allowed).copied().unwrap_or(f64::INFINITY);
        points.push(json!({"target_fmr": target, "threshold": t, "fmr": fmr(t), "fnmr": fnmr(t)}));
    }
    let at: Vec<Value> =
        documented.iter().map(|(name, t)| json!({"threshold": name, "score": t, "fmr": fmr(*t), "fnmr": fnmr(*t)})).collect();
    json!({"genuine": genuine.len(), "impostor": impostor.len(), "det": points, "documented": at})
}

/// One modality (or all) of a template set.
fn only(set: &TemplateSet, modality: &str) -> TemplateSet {
    TemplateSet {
        irises: if matches!(modality, "iris" | "fused") { set.irises.clone() } else { Vec::new() },
        face: if matches!(modality, "face" | "fused") { set.face.clone() } else { None },
        fingers: if matches!(modality, "finger" | "fused") { set.fingers.clone() } else { Vec::new() },
    }
}

/// `tessera bench abis-accuracy`: 1:1 FMR/FNMR and 1:N FPIR/FNIR on the synthetic population,
/// per modality and fused, all on the fused-evidence scale the engine decides on
/// (`−log10 FMR`; for 1:1 also each matcher's own score).
#[allow(clippy::cast_precision_loss)]
pub fn accuracy(persons: usize, impostors_per_person: usize, gallery: usize, probes: usize, threads: usize) -> anyhow::Result<Value> {
    if !(10..=PERSONS_MAX).contains(&persons) || !(10..=PERSONS_MAX).contains(&gallery) || !(2..=100_000).contains(&probes) {
        bail!("--persons and --gallery must be between 10 and {PERSONS_MAX}, --probes between 2 and 100000");
    }
    // One restricted search holds a probe's mate and impostors: at most CANDIDATES_MAX in all.
    let impostors_per_person = impostors_per_person.clamp(1, tessera_biometrics::iris_gallery::CANDIDATES_MAX - 1).min(persons - 1);
    let threads = if threads == 0 { threads_default() } else { threads.min(256) };
    let started = Instant::now();
    // 1:1: persons enrolled once (capture A); a second capture (B) of each is compared with its
    // own A (genuine) and with the A of the next `impostors_per_person` persons (impostor).
    eprintln!("1:1: {persons} persons, {impostors_per_person} impostors each");
    let people: Vec<SynthPerson> = build(persons, 41, threads, |rng, _| SynthPerson::random(rng));
    let a: Vec<TemplateSet> = build(persons, 42, threads, |rng, i| people[i].capture(rng));
    let b: Vec<TemplateSet> = build(persons, 43, threads, |rng, i| people[i].capture(rng));
    let mut one_to_one = serde_json::Map::new();
    for modality in ["iris", "face", "finger", "fused"] {
        let mut g = Gallery::default();
        for (i, s) in a.iter().enumerate() {
            g.insert(i as u64, &only(s, modality));
        }
        // One restricted search per probe scores it against its mate and its impostors at once.
        let scored: Vec<(f64, Vec<f64>, f64, Vec<f64>)> = build(persons, 44, threads, |_, i| {
            let probe = [only(&b[i], modality)];
            let ids: Vec<u64> = (0..=impostors_per_person).map(|k| ((i + k) % persons) as u64).collect();
            let restrict: HashSet<u64> = ids.iter().copied().collect();
            let opts =
                SearchOptions { k: ids.len(), threads: 1, min_evidence: f64::NEG_INFINITY, exclude: None, restrict: Some(&restrict) };
            let hits = g.search(&probe, &opts).into_iter().next().unwrap_or_default();
            let of = |id: u64| {
                let hit = hits.iter().find(|h| h.id == id);
                (hit.map_or(0.0, |h| h.evidence), hit.and_then(|h| h.modalities.first()).map_or(f64::NAN, |m| m.score))
            };
            let (ge, gs) = of(ids[0]);
            let imp: Vec<(f64, f64)> = ids[1..].iter().map(|&id| of(id)).collect();
            (ge, imp.iter().map(|x| x.0).collect(), gs, imp.iter().map(|x| x.1).collect())
        });
        let mut genuine: Vec<f64> = scored.iter().map(|s| s.0).collect();
        let mut impostor: Vec<f64> = scored.iter().flat_map(|s| s.1.iter().copied()).collect();
        let documented: Vec<(&str, f64)> = vec![("1:1 at FMR 1e-4 (evidence 4)", 4.0), ("1:1 at FMR 1e-6 (evidence 6)", 6.0)];
        let mut entry = det(&mut genuine, &mut impostor, &documented);
        if modality != "fused" {
            // The matcher's own scale (iris: distance, lower is better: negated to rank alike).
            let sign = if modality == "iris" { -1.0 } else { 1.0 };
            let mut gs: Vec<f64> = scored.iter().map(|s| sign * s.2).filter(|v| v.is_finite()).collect();
            let mut is: Vec<f64> = scored.iter().flat_map(|s| s.3.iter().map(move |v| sign * v)).filter(|v| v.is_finite()).collect();
            entry["own_score"] = det(&mut gs, &mut is, &[]);
            if modality == "iris" {
                entry["own_score"]["note"] = json!("iris scores are negated distances: threshold −0.32 is HD 0.32");
            }
        }
        one_to_one.insert(modality.into(), entry);
    }
    drop((a, b));

    // 1:N: a gallery; half the probes are planted duplicates, half strangers.
    eprintln!("1:N: {probes} probes against {gallery} persons");
    let mates_n = probes / 2;
    let kept: Vec<SynthPerson> = build(mates_n.min(gallery), 51, threads, |rng, _| SynthPerson::random(rng));
    let enrolled: Vec<TemplateSet> =
        build(gallery, 52, threads, |rng, i| if i < kept.len() { kept[i].capture(rng) } else { SynthPerson::random(rng).capture(rng) });
    let mut rng = StdRng::seed_from_u64(53);
    let mut probe_sets: Vec<TemplateSet> = kept.iter().map(|p| p.capture(&mut rng)).collect();
    let mates_n = probe_sets.len();
    probe_sets.extend((0..probes - mates_n).map(|_| SynthPerson::random(&mut rng).capture(&mut rng)));
    let documented =
        Thresholds::new(gallery, tessera_biometrics::fusion::TARGET_FPIR_DEFAULT, tessera_biometrics::fusion::REVIEW_DECADES_DEFAULT);
    let mut one_to_n = serde_json::Map::new();
    for modality in ["iris", "face", "finger", "fused"] {
        let mut g = Gallery::default();
        for (i, s) in enrolled.iter().enumerate() {
            g.insert(i as u64, &only(s, modality));
        }
        let sets: Vec<TemplateSet> = probe_sets.iter().map(|s| only(s, modality)).collect();
        let best = best_candidates(&g, &sets, threads);
        let mates: Vec<(u64, Option<(u64, f64)>)> = best[..mates_n].iter().enumerate().map(|(i, b)| (i as u64, *b)).collect();
        let strangers = &best[mates_n..];
        let mut points = Vec::new();
        for fpir in [1e-1, 1e-2, 1e-3] {
            if (fpir * strangers.len() as f64) < 1.0 {
                continue;
            }
            let t = threshold_at_fpir(strangers, fpir);
            let (got_fpir, fnir) = rates(&mates, strangers, t);
            points.push(json!({"target_fpir": fpir, "threshold": t, "fpir": got_fpir, "fnir": fnir}));
        }
        let (fpir, fnir) = rates(&mates, strangers, documented.matched);
        let (review_fpir, review_fnir) = rates(&mates, strangers, documented.review);
        one_to_n.insert(
            modality.into(),
            json!({
                "det": points,
                "documented_match": {"threshold": documented.matched, "fpir": fpir, "fnir": fnir},
                "documented_review": {"threshold": documented.review, "fpir": review_fpir, "fnir": review_fnir},
            }),
        );
    }
    Ok(json!({
        "bench": "abis-accuracy",
        "population": "synthetic (tessera_biometrics::synth*, models in their module docs); no real biometric sample data ships with Debian or crates.io to measure on",
        "one_to_one": {"persons": persons, "impostors_per_person": impostors_per_person, "scale": "fused evidence −log10 FMR", "modalities": one_to_one},
        "one_to_n": {"gallery": gallery, "planted_duplicates": mates_n, "strangers": probes - mates_n,
            "target_fpir_code": tessera_biometrics::fusion::TARGET_FPIR_DEFAULT, "modalities": one_to_n},
        "total_s": started.elapsed().as_secs_f64(),
    }))
}

/// `tessera synth biometrics`: `persons` people enrolled once each, and the first `duplicates`
/// of them enrolled a second time (a fresh capture), as MOSIP CBEFF documents in `out/cbeff/`,
/// with `out/truth.csv` (`enrolment,person`) and `out/population.json` (seed and model).
pub fn synth(persons: usize, duplicates: usize, seed: u64, out: &std::path::Path, threads: usize) -> anyhow::Result<Value> {
    use anyhow::Context;
    const SYNTH_MAX: usize = 1_000_000;
    if persons == 0 || persons > SYNTH_MAX || duplicates > persons {
        bail!("--persons must be between 1 and {SYNTH_MAX}, --duplicates at most --persons");
    }
    let dir = out.join("cbeff");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let threads = if threads == 0 { threads_default() } else { threads.min(256) };
    let date = "2026-01-01T00:00:00.000Z";
    let mut truth = String::from("enrolment,person\n");
    let total = persons + duplicates;
    const CHUNK: usize = 10_000;
    for first in (0..total).step_by(CHUNK) {
        let n = CHUNK.min(total - first);
        // Enrolment e is of person e (first enrolments), or of person e − persons (duplicates).
        let docs: Vec<(String, usize, Vec<u8>)> = build(n, seed ^ (first as u64).rotate_left(17), threads, |rng, i| {
            let e = first + i;
            let person = if e < persons { e } else { e - persons };
            // The person is the same for both enrolments: drawn from a seed of their own.
            let p = SynthPerson::random(&mut StdRng::seed_from_u64(seed.wrapping_add(person as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)));
            let capture_rng = &mut StdRng::seed_from_u64(rng.random());
            (format!("E{e:07}"), person, p.cbeff(capture_rng, date))
        });
        for (name, person, doc) in docs {
            let path = dir.join(format!("{name}.xml"));
            std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
            truth.push_str(&format!("{name},P{person:07}\n"));
        }
    }
    std::fs::write(out.join("truth.csv"), truth).context("cannot write truth.csv")?;
    let summary = json!({
        "persons": persons, "duplicates": duplicates, "enrolments": total, "seed": seed,
        "cbeff": "cbeff/E*.xml: MOSIP CBEFF (ISO/IEC 19785-3) with 2 iris codes, a face embedding, 10 ISO/IEC 19794-2 finger minutiae records",
        "truth": "truth.csv: enrolment,person; two enrolments of one person are a planted duplicate",
        "models": {
            "iris": "each code bit the sign of a 9-position circular window sum of normal values along its ring (stationary correlation); impostor normalised HD ≈ 0.5 with ≈ 249 degrees of freedom at every rotation; a capture adds noise that flips 5–15% of bits in short runs, turns up to ±4 positions, hides an eyelid arc; see tessera_biometrics::synth",
            "face": "512-d unit embeddings; see tessera_biometrics::synth_face",
            "finger": "zero-pole orientation field, 30–70 minutiae; a capture is a rigid transform + distortion + jitter + missing/spurious minutiae; see tessera_biometrics::synth_finger",
        },
    });
    std::fs::write(out.join("population.json"), serde_json::to_string_pretty(&summary)?).context("cannot write population.json")?;
    Ok(summary)
}
