//! 1:N face search over an in-memory gallery, in three stages, so that one probe reads 64 bytes
//! per enrolled face instead of 512 (int8) or 2048 (f32):
//!
//! 1. **Sign-bit pre-filter.** Every face is rotated by a fixed random orthonormal rotation and
//!    reduced to the signs of its 512 coordinates (64 bytes). The fraction of differing signs
//!    between two faces estimates the angle between them (θ/π, Charikar, "Similarity
//!    estimation techniques from rounding algorithms", STOC 2002). All cores scan these bits by
//!    XOR and popcount, and keep the [`SHORTLIST_DEFAULT`] closest per probe. A batch of probes
//!    is compared with each block of the gallery while the block is in cache, so a batch costs
//!    one pass over memory.
//! 2. **int8 scoring.** The short list is scored with the int8 codes (the rotated vector scaled
//!    so its largest coordinate is ±127, exact i8·i8 → i32 dot products, times the face's
//!    scale), an approximation of the cosine to within about 0.002.
//! 3. **Exact re-ranking.** The best [`RERANK`] by int8 score are scored with the f32 vectors;
//!    hits carry that exact cosine, and the threshold applies to it.
//!
//! Memory per face: 2048 (f32) + 512 (int8) + 64 (bits) + 4 (scale) + 8 (id) = 2636 bytes,
//! 2.6 GB for a million; the f32 copy is the only full-precision one.
//!
//! Measured on this project's 2-core machine (AMD EPYC, KVM, release build, SSE2 baseline) over
//! a million faces: 5.3 ms of CPU per probe, i.e. about 2.7 ms per single probe on two idle
//! cores, batched or not, with recall@1 99.9% against exact search. The scan is bound by the
//! bit count, not by memory (64 MB per pass is 2–4 ms of the machine's 15–30 GB/s): the SSE2
//! baseline has no `popcnt` instruction, so a batch costs the same per probe as a single probe.
//! Built for `x86-64-v2` (with `popcnt`) the search takes about 0.6 of that CPU time, for
//! AVX-512 (`target-cpu=native` here, `vpopcntq`) about 0.45; AVX2 alone adds nothing over
//! `popcnt`. The short-list stages gather rows scattered over gigabytes (a TLB miss and a
//! string of cache misses each, ≈ 0.85 µs per 512-byte row when read one after another), so
//! they request the memory of eight rows before scoring any (`kernels::touch`).

use super::kernels::{self, Encoded, SIGN_WORDS};
use super::{FACE_DIM, FaceEmbedding, FaceError};
use crate::iris_gallery::CANDIDATES_MAX;

/// Faces a gallery holds at most (row numbers are `u32` inside the search).
pub const GALLERY_MAX: usize = 1 << 31;
/// Short-list length of the sign-bit stage. Measured over a million synthetic faces with 1,025
/// genuine probes (`examples/face_bench.rs search`), recall@1 against exact f32 search is 99.61%
/// with 256, 99.80% with 512, 99.90% with 1,024 and 100% with 2,048; with 1,024 every probe whose
/// exact best reaches the 1:1 threshold `THRESHOLD_FMR_1E4` (1,023 of them) is found, and
/// the int8 and f32 stages add about a tenth to the CPU time of the scan.
pub const SHORTLIST_DEFAULT: usize = 1024;
/// Longest short list a gallery may be configured with.
pub const SHORTLIST_MAX: usize = 1 << 16;
/// Candidates re-scored in f32 per probe (at least `k`): int8 scores are within about 0.002 of
/// the cosine, so the true best is among the first few; 64 leaves a wide margin for 2 KB each.
pub const RERANK: usize = 64;
/// Most threads a search uses.
pub const THREADS_MAX: usize = 256;
/// Gallery faces per block of the sign-bit scan: 4096 × 64 bytes = 256 KiB, which stays in a
/// core's L2 cache while every probe of a batch is compared with it.
const BLOCK: usize = 4096;
/// Short-list rows whose memory is requested together before they are scored (`kernels::touch`).
const GATHER: usize = 8;
/// Gallery faces per block of the exact scan (2 KB each: 256 KiB).
const EXACT_BLOCK: usize = 128;
/// Probes scored together against each block by the exact scan (2 KB each: 64 KiB).
const EXACT_PROBES: usize = 32;

/// One candidate: the gallery id and the exact cosine (higher is more alike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceHit {
    pub id: u64,
    pub score: f32,
}

/// The gallery. Ids are the caller's; one id may have several faces.
pub struct FaceGallery {
    ids: Vec<u64>,
    bits: Vec<[u64; SIGN_WORDS]>,
    codes: Vec<[i8; FACE_DIM]>,
    scales: Vec<f32>,
    vectors: Vec<[f32; FACE_DIM]>,
    /// Where each id's faces are, for 1:1 scoring of candidates other modalities found.
    at: std::collections::HashMap<u64, Vec<usize>>,
    shortlist: usize,
}

impl std::fmt::Debug for FaceGallery {
    /// Sizes only: biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceGallery").field("len", &self.len()).field("shortlist", &self.shortlist).finish_non_exhaustive()
    }
}

impl Default for FaceGallery {
    fn default() -> Self {
        FaceGallery {
            ids: Vec::new(),
            bits: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            vectors: Vec::new(),
            at: std::collections::HashMap::new(),
            shortlist: SHORTLIST_DEFAULT,
        }
    }
}

impl FaceGallery {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same gallery with another sign-bit short-list length, clamped to
    /// `CANDIDATES_MAX..=SHORTLIST_MAX`. Longer lists trade speed for recall.
    #[must_use]
    pub fn with_shortlist(mut self, shortlist: usize) -> Self {
        self.shortlist = shortlist.clamp(CANDIDATES_MAX, SHORTLIST_MAX);
        self
    }

    #[must_use]
    pub fn shortlist(&self) -> usize {
        self.shortlist
    }

    /// Makes room for `additional` more faces at once (growing a 2.6 GB gallery by doubling
    /// would briefly need twice that).
    pub fn reserve(&mut self, additional: usize) {
        let additional = additional.min(GALLERY_MAX.saturating_sub(self.len()));
        self.ids.reserve_exact(additional);
        self.bits.reserve_exact(additional);
        self.codes.reserve_exact(additional);
        self.scales.reserve_exact(additional);
        self.vectors.reserve_exact(additional);
        self.at.reserve(additional);
    }

    /// Adds one face under `id`.
    ///
    /// # Errors
    /// `GalleryFull` at `GALLERY_MAX` faces.
    pub fn insert(&mut self, id: u64, face: &FaceEmbedding) -> Result<(), FaceError> {
        if self.len() >= GALLERY_MAX {
            return Err(FaceError::GalleryFull { max: GALLERY_MAX });
        }
        self.push(id, face, kernels::encode(&face.v));
        Ok(())
    }

    /// Adds many faces, encoding them on `threads` threads (loading a gallery at start).
    ///
    /// # Errors
    /// `GalleryFull` if they do not all fit; then none is added.
    pub fn insert_many(&mut self, faces: &[(u64, FaceEmbedding)], threads: usize) -> Result<(), FaceError> {
        if faces.len() > GALLERY_MAX - self.len() {
            return Err(FaceError::GalleryFull { max: GALLERY_MAX });
        }
        let threads = threads.clamp(1, THREADS_MAX);
        let chunk = faces.len().div_ceil(threads).max(1);
        let encoded: Vec<Vec<Encoded>> = std::thread::scope(|s| {
            let handles: Vec<_> = faces
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(|(_, f)| kernels::encode(&f.v)).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        self.reserve(faces.len());
        for ((id, face), enc) in faces.iter().zip(encoded.into_iter().flatten()) {
            self.push(*id, face, enc);
        }
        Ok(())
    }

    fn push(&mut self, id: u64, face: &FaceEmbedding, enc: Encoded) {
        self.at.entry(id).or_default().push(self.ids.len());
        self.ids.push(id);
        self.bits.push(enc.bits);
        self.codes.push(enc.code);
        self.scales.push(enc.scale);
        self.vectors.push(face.v);
    }

    /// Removes every face of `id`; returns how many.
    pub fn remove(&mut self, id: u64) -> usize {
        let Some(mut places) = self.at.remove(&id) else { return 0 };
        // Highest first, so a later swap_remove never moves an earlier place of this id.
        places.sort_unstable_by(|a, b| b.cmp(a));
        for &i in &places {
            let last = self.ids.len() - 1;
            self.ids.swap_remove(i);
            self.bits.swap_remove(i);
            self.codes.swap_remove(i);
            self.scales.swap_remove(i);
            self.vectors.swap_remove(i);
            if i != last {
                let moved = self.ids[i];
                if let Some(p) = self.at.get_mut(&moved).and_then(|v| v.iter_mut().find(|p| **p == last)) {
                    *p = i;
                }
            }
        }
        places.len()
    }

    /// The exact cosine between `probe` and the best of `id`'s faces, if `id` has any.
    #[must_use]
    pub fn score_one(&self, probe: &FaceEmbedding, id: u64) -> Option<f32> {
        self.at.get(&id)?.iter().map(|&i| kernels::dot_f32(&probe.v, &self.vectors[i])).max_by(f32::total_cmp)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes of memory the gallery holds (its allocated capacity).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        // The id index: one slot (key, list, control byte) per bucket, and each list's places
        // (the allocator rounds each up further; this is a lower bound).
        let index = self.at.capacity() * (size_of::<u64>() + size_of::<Vec<usize>>() + 1)
            + self.at.values().map(|v| v.capacity() * size_of::<usize>()).sum::<usize>();
        self.ids.capacity() * size_of::<u64>()
            + self.bits.capacity() * size_of::<[u64; SIGN_WORDS]>()
            + self.codes.capacity() * size_of::<[i8; FACE_DIM]>()
            + self.scales.capacity() * size_of::<f32>()
            + self.vectors.capacity() * size_of::<[f32; FACE_DIM]>()
            + index
    }

    /// For each probe, the best `k` (≤ `CANDIDATES_MAX`) faces whose exact cosine is at least
    /// `threshold`, best first (ties: lower id first), found through the three stages of the
    /// module doc on `threads` scoped threads. The answer does not depend on `threads`.
    #[must_use]
    pub fn search(&self, probes: &[FaceEmbedding], k: usize, threshold: f32, threads: usize) -> Vec<Vec<FaceHit>> {
        let k = k.min(CANDIDATES_MAX);
        if k == 0 || self.is_empty() || probes.is_empty() {
            return vec![Vec::new(); probes.len()];
        }
        let threads = threads.clamp(1, THREADS_MAX);
        let encoded: Vec<Encoded> = probes.iter().map(|p| kernels::encode(&p.v)).collect();
        let probe_bits: Vec<[u64; SIGN_WORDS]> = encoded.iter().map(|e| e.bits).collect();
        let want = self.shortlist.min(self.len());

        // Stage 1: every thread keeps the best `want` of its part of the gallery per probe.
        let chunk = self.len().div_ceil(threads).max(1);
        let parts: Vec<Vec<Vec<u64>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .bits
                .chunks(chunk)
                .enumerate()
                .map(|(t, bits)| {
                    let probe_bits = &probe_bits;
                    s.spawn(move || scan_bits(bits, t * chunk, probe_bits, want))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        let mut shortlists: Vec<Vec<u64>> = vec![Vec::new(); probes.len()];
        for part in parts {
            for (list, mut keys) in shortlists.iter_mut().zip(part) {
                list.append(&mut keys);
            }
        }
        for list in &mut shortlists {
            keep_smallest(list, want);
        }

        // Stages 2 and 3, probes shared out between the threads.
        let per = probes.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = probes
                .chunks(per)
                .zip(encoded.chunks(per))
                .zip(shortlists.chunks(per))
                .map(|((probes, encoded), lists)| {
                    s.spawn(move || {
                        probes
                            .iter()
                            .zip(encoded)
                            .zip(lists)
                            .map(|((p, e), list)| self.rerank(p, e, list, k, threshold))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    }

    fn rerank(&self, probe: &FaceEmbedding, enc: &Encoded, shortlist: &[u64], k: usize, threshold: f32) -> Vec<FaceHit> {
        let mut approx: Vec<(f32, u32)> = Vec::with_capacity(shortlist.len());
        for group in shortlist.chunks(GATHER) {
            // The row is the low half of the key.
            kernels::touch(group.iter().map(|&key| &self.codes[key as u32 as usize]));
            for &key in group {
                let row = key as u32 as usize;
                approx.push((kernels::dot_i8(&enc.code, &self.codes[row]) as f32 * self.scales[row], row as u32));
            }
        }
        let keep = RERANK.max(k);
        if approx.len() > keep {
            approx.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            approx.truncate(keep);
        }
        let mut hits = Vec::with_capacity(approx.len());
        for group in approx.chunks(GATHER) {
            kernels::touch(group.iter().map(|&(_, row)| &self.vectors[row as usize]));
            for &(_, row) in group {
                let score = kernels::dot_f32(&probe.v, &self.vectors[row as usize]);
                if score >= threshold {
                    hits.push(FaceHit { id: self.ids[row as usize], score });
                }
            }
        }
        hits.sort_by(better);
        hits.truncate(k);
        hits
    }

    /// The reference the quantised search is measured against: every probe scored against every
    /// face in f32, same contract as [`FaceGallery::search`]. Reads 2 KB per face per pass.
    #[must_use]
    pub fn search_exact(&self, probes: &[FaceEmbedding], k: usize, threshold: f32, threads: usize) -> Vec<Vec<FaceHit>> {
        let k = k.min(CANDIDATES_MAX);
        if k == 0 || self.is_empty() {
            return vec![Vec::new(); probes.len()];
        }
        let threads = threads.clamp(1, THREADS_MAX);
        let chunk = self.len().div_ceil(threads).max(1);
        let parts: Vec<Vec<Vec<FaceHit>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .vectors
                .chunks(chunk)
                .zip(self.ids.chunks(chunk))
                .map(|(vectors, ids)| s.spawn(move || scan_exact(vectors, ids, probes, k, threshold)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        (0..probes.len())
            .map(|p| {
                let mut all: Vec<FaceHit> = parts.iter().flat_map(|part| part[p].iter().copied()).collect();
                all.sort_by(better);
                all.truncate(k);
                all
            })
            .collect()
    }
}

/// Order of hits: higher score first, then lower id.
fn better(a: &FaceHit, b: &FaceHit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.id.cmp(&b.id))
}

/// Keeps the `want` smallest keys (unordered).
fn keep_smallest(keys: &mut Vec<u64>, want: usize) {
    if keys.len() > want {
        keys.select_nth_unstable(want - 1);
        keys.truncate(want);
    }
}

/// The sign-bit scan of one part of the gallery (rows from `first`): per probe, the `want`
/// smallest keys `distance << 32 | row`, so ties go to the lower row and the union of the
/// threads' lists holds the global best whatever the split.
fn scan_bits(bits: &[[u64; SIGN_WORDS]], first: usize, probes: &[[u64; SIGN_WORDS]], want: usize) -> Vec<Vec<u64>> {
    // A key is accepted while below `cut`; the list is cut back to `want` when it reaches
    // twice that, and `cut` becomes its largest key. Past the first blocks few faces pass.
    let mut lists: Vec<(Vec<u64>, u64)> = probes.iter().map(|_| (Vec::with_capacity(2 * want), u64::MAX)).collect();
    for (b, block) in bits.chunks(BLOCK).enumerate() {
        let start = (first + b * BLOCK) as u64;
        for (probe, (list, cut)) in probes.iter().zip(&mut lists) {
            for (row, face) in (start..).zip(block) {
                let key = u64::from(kernels::hamming(probe, face)) << 32 | row;
                if key < *cut {
                    list.push(key);
                    if list.len() >= 2 * want {
                        keep_smallest(list, want);
                        *cut = list.iter().copied().max().unwrap_or(u64::MAX);
                    }
                }
            }
        }
    }
    lists
        .into_iter()
        .map(|(mut list, _)| {
            keep_smallest(&mut list, want);
            list
        })
        .collect()
}

fn scan_exact(vectors: &[[f32; FACE_DIM]], ids: &[u64], probes: &[FaceEmbedding], k: usize, threshold: f32) -> Vec<Vec<FaceHit>> {
    let mut best: Vec<Vec<FaceHit>> = vec![Vec::with_capacity(k + 1); probes.len()];
    // A group of probes and a block of faces fit in L2 together; the gallery is read once per
    // group of probes.
    for (probes, best) in probes.chunks(EXACT_PROBES).zip(best.chunks_mut(EXACT_PROBES)) {
        for (vectors, ids) in vectors.chunks(EXACT_BLOCK).zip(ids.chunks(EXACT_BLOCK)) {
            for (probe, b) in probes.iter().zip(best.iter_mut()) {
                for (v, &id) in vectors.iter().zip(ids) {
                    let score = kernels::dot_f32(&probe.v, v);
                    if score < threshold {
                        continue;
                    }
                    let hit = FaceHit { id, score };
                    if b.len() < k || b.last().is_some_and(|w| better(&hit, w).is_lt()) {
                        let at = b.partition_point(|h| better(h, &hit).is_lt());
                        b.insert(at, hit);
                        b.truncate(k);
                    }
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{THRESHOLD_1N_1M_FPIR_1E2, THRESHOLD_FMR_1E4, cosine};
    use crate::synth_face::SynthFace;
    use rand::SeedableRng;

    /// 2,000 people enrolled once each, and the people themselves.
    fn population(seed: u64, shortlist: usize) -> (FaceGallery, Vec<SynthFace>, rand::rngs::StdRng) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let people: Vec<SynthFace> = (0..2000).map(|_| SynthFace::random(&mut rng)).collect();
        let faces: Vec<(u64, FaceEmbedding)> = people.iter().enumerate().map(|(i, p)| (i as u64, p.capture(&mut rng))).collect();
        let mut g = FaceGallery::new().with_shortlist(shortlist);
        g.insert_many(&faces[..1000], 2).unwrap();
        for (id, f) in &faces[1000..] {
            g.insert(*id, f).unwrap();
        }
        (g, people, rng)
    }

    #[test]
    fn planted_duplicates_are_found_and_strangers_are_not() {
        let (mut g, people, mut rng) = population(11, SHORTLIST_DEFAULT);
        assert_eq!(g.len(), 2000);
        let planted: Vec<usize> = (0..8).map(|i| i * 250 + 7).collect();
        let mut probes: Vec<FaceEmbedding> = planted.iter().map(|&i| people[i].capture(&mut rng)).collect();
        probes.extend((0..8).map(|_| SynthFace::random(&mut rng).capture(&mut rng)));
        // The 1:N threshold for a million is far stricter than needed for 2,000; use it anyway
        // to check that ordinary genuine captures clear it.
        let results = g.search(&probes, 5, THRESHOLD_1N_1M_FPIR_1E2, 2);
        for (p, &i) in planted.iter().enumerate() {
            let top = results[p].first().unwrap_or_else(|| panic!("planted duplicate {i} not found"));
            assert_eq!(top.id, i as u64);
            assert_eq!(top.score, cosine(&probes[p], &FaceEmbedding { v: g.vectors[i] }));
        }
        for r in &results[8..] {
            assert!(r.is_empty(), "a stranger matched: {r:?}");
        }
        // One thread and two give the same answers.
        assert_eq!(g.search(&probes, 5, THRESHOLD_1N_1M_FPIR_1E2, 1), results);
        // Deleting the person removes the match and nothing else.
        assert_eq!(g.remove(planted[0] as u64), 1);
        assert_eq!(g.remove(planted[0] as u64), 0);
        assert_eq!(g.len(), 1999);
        let again = g.search(&probes, 5, THRESHOLD_1N_1M_FPIR_1E2, 2);
        assert!(again[0].is_empty());
        assert_eq!(again[1..], results[1..]);
    }

    #[test]
    fn quantised_search_agrees_with_exact_search() {
        // A short list of 30 out of 2,000 makes the sign-bit stage do real filtering.
        let (g, people, mut rng) = population(12, 30);
        assert_eq!(g.shortlist(), 30);
        let probes: Vec<FaceEmbedding> = (0..200).map(|i| people[i * 10].capture(&mut rng)).collect();
        let quick = g.search(&probes, 10, -1.0, 2);
        let exact = g.search_exact(&probes, 10, -1.0, 2);
        let mut same_top = 0;
        for ((q, e), probe) in quick.iter().zip(&exact).zip(&probes) {
            assert_eq!(q.len(), 10);
            same_top += usize::from(q[0] == e[0]);
            // Whatever the quantised search returns carries the exact score (ids are rows
            // here), best first.
            assert!(q.windows(2).all(|w| w[0].score >= w[1].score));
            for h in q {
                assert_eq!(h.score, cosine(probe, &FaceEmbedding { v: g.vectors[h.id as usize] }));
            }
        }
        assert_eq!(same_top, 200, "recall@1 against exact search");
        // Exact search: one thread and two agree, and scores are the cosines.
        assert_eq!(g.search_exact(&probes[..20], 10, -1.0, 1), exact[..20]);
        assert_eq!(exact[0][0].score, cosine(&probes[0], &FaceEmbedding { v: g.vectors[exact[0][0].id as usize] }));
    }

    #[test]
    fn removal_keeps_every_other_face_findable() {
        // 100 ids with three faces each, interleaved, so removals move faces of other ids.
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let people: Vec<SynthFace> = (0..100).map(|_| SynthFace::random(&mut rng)).collect();
        let mut g = FaceGallery::new();
        for _ in 0..3 {
            for (id, p) in people.iter().enumerate() {
                g.insert(id as u64 * 10, &p.capture(&mut rng)).unwrap();
            }
        }
        for id in [50, 0, 990, 170, 500] {
            assert_eq!(g.remove(id), 3, "{id}");
            assert_eq!(g.remove(id), 0);
        }
        assert_eq!(g.len(), 285);
        let probe = people[3].capture(&mut rng);
        for id in (0..100u64).map(|i| i * 10) {
            // The index agrees with the rows, and score_one with a scan of them.
            let rows: Vec<usize> = (0..g.len()).filter(|&r| g.ids[r] == id).collect();
            let best = rows.iter().map(|&r| kernels::dot_f32(&probe.v, &g.vectors[r])).max_by(f32::total_cmp);
            assert_eq!(g.score_one(&probe, id), best, "{id}");
            assert_eq!(rows.len(), if [50, 0, 990, 170, 500].contains(&id) { 0 } else { 3 });
        }
        assert_eq!(g.score_one(&probe, 7), None);
        // The person's own faces score highest, and the search finds them.
        let hits = &g.search(std::slice::from_ref(&probe), 3, THRESHOLD_FMR_1E4, 2)[0];
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [30, 30, 30]);
        assert_eq!(Some(hits[0].score), g.score_one(&probe, 30));
    }

    #[test]
    fn limits_and_edge_cases() {
        let empty = FaceGallery::default();
        let probe = FaceEmbedding::from_f32(&[1.0; FACE_DIM]).unwrap();
        assert_eq!(empty.search(std::slice::from_ref(&probe), 5, 0.0, 2), vec![Vec::new()]);
        assert_eq!(format!("{empty:?}"), "FaceGallery { len: 0, shortlist: 1024, .. }");
        assert_eq!(FaceGallery::new().with_shortlist(1).shortlist(), CANDIDATES_MAX);
        assert_eq!(FaceGallery::new().with_shortlist(usize::MAX).shortlist(), SHORTLIST_MAX);

        let mut g = FaceGallery::new();
        g.insert(9, &probe).unwrap();
        g.insert(9, &probe).unwrap();
        g.insert(4, &probe).unwrap();
        assert!(g.memory_bytes() >= 3 * 2636);
        // k is capped, ties go to the lower id, k = 0 and an empty batch give nothing.
        let hits = &g.search(std::slice::from_ref(&probe), 1000, 0.5, 8)[0];
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [4, 9, 9]);
        assert_eq!(g.search_exact(std::slice::from_ref(&probe), 1000, 0.5, 8)[0], *hits);
        assert_eq!(g.search(std::slice::from_ref(&probe), 0, 0.5, 2), vec![Vec::new()]);
        assert!(g.search(&[], 5, 0.5, 2).is_empty());
        // A threshold above 1 or NaN admits nothing.
        assert!(g.search(std::slice::from_ref(&probe), 5, 1.01, 2)[0].is_empty());
        assert!(g.search(std::slice::from_ref(&probe), 5, f32::NAN, 2)[0].is_empty());
        assert_eq!(g.remove(9), 2);
        assert_eq!(g.len(), 1);
    }
}
