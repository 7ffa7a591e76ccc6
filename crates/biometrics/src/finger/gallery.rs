//! 1:N finger search over an in-memory gallery of persons (up to ten fingers each), in two
//! stages: a popcount scan of every person's first-stage codes ranks the gallery, and the full
//! matcher verifies only the short list. Scans use all cores; a batch of probes is compared with
//! each gallery row while it is in cache, so many enrolments share one pass over memory.

use super::index::{INDEX_BITS, INDEX_WORDS, IndexCode};
use super::{FINGERS, FUSED_THRESHOLD_1N, FingerTemplate, PreparedFinger, fuse};
use crate::iris_gallery::CANDIDATES_MAX;
use std::collections::HashMap;

/// Persons the first stage hands to the full matcher per probe, by default.
pub const SHORTLIST_DEFAULT: usize = 30;
/// Verification of a short-listed person starts with the fingers the first stage found most
/// alike; if the first `EARLY_FINGERS` of them fuse below `EARLY_REJECT`, the person is dropped
/// without matching the rest. Strangers are mostly dropped after three fingers instead of ten;
/// a true mate has all three below 0.15 with probability ≈ 10⁻⁷ on the synthetic population
/// (each finger is under 0.15 less than 0.5% of the time).
pub const EARLY_FINGERS: usize = 3;
pub const EARLY_REJECT: f32 = 0.15;
/// Largest short list accepted (verification costs ≈ 0.4 ms per person on one core).
pub const SHORTLIST_MAX: usize = 1000;

/// A person's fingers, indexed by ISO/IEC 19794-2 finger position − 1 (right thumb first).
pub type Fingers = [Option<FingerTemplate>; FINGERS];

/// One candidate: the gallery id and its score (higher is more alike; see [`crate::finger`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: u64,
    pub score: f32,
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    /// Candidates returned per probe, at most `CANDIDATES_MAX`.
    pub k: usize,
    /// Least fused score returned.
    pub threshold: f32,
    /// Persons verified by the full matcher per probe, at most `SHORTLIST_MAX`.
    pub shortlist: usize,
    /// Scoped threads to split the gallery across.
    pub threads: usize,
}

impl Default for Search {
    fn default() -> Self {
        Search { k: CANDIDATES_MAX, threshold: FUSED_THRESHOLD_1N, shortlist: SHORTLIST_DEFAULT, threads: 1 }
    }
}

/// A gallery row's first-stage data, contiguous so one row is one short stream: 10 × 128 bytes
/// of codes, and per finger `√|g|` and `1/√|g|` (both 0 where the finger is missing), so that
/// [`IndexCode::similarity`] takes no division in the scan.
#[derive(Clone)]
struct Row {
    codes: [[u64; INDEX_WORDS]; FINGERS],
    roots: [f32; FINGERS],
    inverse_roots: [f32; FINGERS],
}

fn first_stage(fingers: &Fingers) -> Row {
    let mut row = Row { codes: [[0; INDEX_WORDS]; FINGERS], roots: [0.0; FINGERS], inverse_roots: [0.0; FINGERS] };
    for (f, t) in fingers.iter().enumerate() {
        if let Some(t) = t {
            let code = IndexCode::new(t);
            let root = (code.ones() as f32).sqrt();
            if root > 0.0 {
                row.roots[f] = root;
                row.inverse_roots[f] = 1.0 / root;
                row.codes[f] = code.words;
            }
        }
    }
    row
}

/// The probe side of the similarity `(c − e)/√e`, `√e = k·√|p|·√|g|`, `k = 1/√INDEX_BITS`:
/// it is `c · scale · (1/√|g|) − offset · √|g|`, with these two per probe finger (0 when absent).
#[derive(Clone)]
struct ProbeTerms {
    scale: [f32; FINGERS],
    offset: [f32; FINGERS],
}

impl ProbeTerms {
    fn new(row: &Row) -> Self {
        let k = 1.0 / (INDEX_BITS as f32).sqrt();
        ProbeTerms {
            scale: std::array::from_fn(|f| if row.roots[f] > 0.0 { 1.0 / (k * row.roots[f]) } else { 0.0 }),
            offset: std::array::from_fn(|f| k * row.roots[f]),
        }
    }
}

/// A probe person prepared for search: first-stage codes and full-matcher templates, once.
#[derive(Clone)]
pub struct FingerProbe {
    row: Row,
    terms: ProbeTerms,
    prepared: [Option<PreparedFinger>; FINGERS],
}

impl std::fmt::Debug for FingerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerProbe(..)")
    }
}

impl FingerProbe {
    #[must_use]
    pub fn new(fingers: &Fingers) -> Self {
        let row = first_stage(fingers);
        FingerProbe { terms: ProbeTerms::new(&row), row, prepared: std::array::from_fn(|f| fingers[f].as_ref().map(PreparedFinger::new)) }
    }
}

/// The gallery. Ids are the caller's (e.g. a row number mapped to a reference id); an id may
/// be inserted more than once (several enrolments of one person).
#[derive(Default)]
pub struct FingerGallery {
    ids: Vec<u64>,
    rows: Vec<Row>,
    templates: Vec<Fingers>,
    /// Rows of each id, for scoring one known candidate.
    by_id: HashMap<u64, Vec<usize>>,
}

impl std::fmt::Debug for FingerGallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerGallery").field("persons", &self.ids.len()).finish_non_exhaustive()
    }
}

impl FingerGallery {
    pub fn insert(&mut self, id: u64, fingers: Fingers) {
        self.by_id.entry(id).or_default().push(self.ids.len());
        self.ids.push(id);
        self.rows.push(first_stage(&fingers));
        self.templates.push(fingers);
    }

    /// Removes every row of `id`; returns how many.
    pub fn remove(&mut self, id: u64) -> usize {
        let Some(mut rows) = self.by_id.remove(&id) else { return 0 };
        // Highest first, so each swap_remove moves a row that is not itself to be removed.
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for &row in &rows {
            let last = self.ids.len() - 1;
            self.ids.swap_remove(row);
            self.rows.swap_remove(row);
            self.templates.swap_remove(row);
            if row != last
                && let Some(moved) = self.ids.get(row).and_then(|moved| self.by_id.get_mut(moved))
                && let Some(slot) = moved.iter_mut().find(|r| **r == last)
            {
                *slot = row;
            }
        }
        rows.len()
    }

    /// The fused full-matcher score of `probe` against the person `id` (all fingers in common,
    /// no early rejection), the best over that id's rows; None when the id is unknown or shares
    /// no finger position with the probe.
    #[must_use]
    pub fn score_one(&self, probe: &FingerProbe, id: u64) -> Option<f32> {
        self.by_id.get(&id)?.iter().filter_map(|&row| full_score(probe, self.templates.get(row)?)).max_by(f32::total_cmp)
    }

    /// The score of `probe` against the person `id` as the search verifies a short-listed person
    /// (see `EARLY_REJECT`): the fused score of all fingers in common, except for a person whose
    /// three fingers most alike in the first stage fuse below `EARLY_REJECT`, who is scored on
    /// those three only — a lower bound, reached by a true mate about once in 10⁷, that spares
    /// seven of ten comparisons for each stranger another modality proposed. The best over
    /// that id's rows; None when the id is unknown or shares no finger position with the probe.
    #[must_use]
    pub fn score_candidate(&self, probe: &FingerProbe, id: u64) -> Option<f32> {
        self.by_id
            .get(&id)?
            .iter()
            .filter_map(|&row| {
                let (codes, fingers) = (self.rows.get(row)?, self.templates.get(row)?);
                let shared = (0..FINGERS).any(|f| probe.prepared[f].is_some() && fingers[f].is_some());
                shared.then(|| verify(probe, codes, fingers).score())
            })
            .max_by(f32::total_cmp)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes of memory held per person on average, heap included (minutiae at 8 bytes each; the
    /// allocator's own overhead per template not counted).
    #[must_use]
    pub fn bytes_per_person(&self) -> usize {
        let fixed = size_of::<u64>() + size_of::<Row>() + size_of::<Fingers>();
        let minutiae: usize = self.templates.iter().flatten().flatten().map(|t| size_of_val(t.minutiae())).sum();
        fixed + minutiae / self.len().max(1)
    }

    /// The first stage alone: for each probe, the `shortlist` persons (≤ `SHORTLIST_MAX`) with
    /// the highest sum over fingers of first-stage similarities (see `IndexCode::similarity`),
    /// best first, scored by that sum.
    #[must_use]
    pub fn prefilter(&self, probes: &[FingerProbe], shortlist: usize, threads: usize) -> Vec<Vec<Candidate>> {
        self.shortlists(probes, shortlist, threads)
            .into_iter()
            .map(|list| {
                list.into_iter().map(|(score, row)| Candidate { id: self.ids.get(row).copied().unwrap_or(u64::MAX), score }).collect()
            })
            .collect()
    }

    /// Both stages: for each probe, the best `k` persons whose fused full-matcher score (see
    /// [`fuse`]) is at least `threshold`, best first, among the first stage's short list.
    /// Short-listed persons dropped early (see `EARLY_REJECT`) are never returned.
    #[must_use]
    pub fn search(&self, probes: &[FingerProbe], search: &Search) -> Vec<Vec<Candidate>> {
        let k = search.k.min(CANDIDATES_MAX);
        let threads = search.threads.clamp(1, 256);
        let lists = self.shortlists(probes, search.shortlist, threads);
        let jobs: Vec<(usize, usize)> = lists.iter().enumerate().flat_map(|(p, list)| list.iter().map(move |&(_, row)| (p, row))).collect();
        let chunk = jobs.len().div_ceil(threads).max(1);
        let scored: Vec<Vec<Option<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&(p, row)| match (probes.get(p), self.rows.get(row), self.templates.get(row)) {
                                (Some(probe), Some(codes), Some(fingers)) => verify(probe, codes, fingers).complete(),
                                _ => None,
                            })
                            .collect::<Vec<Option<f32>>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        let mut out: Vec<Vec<Candidate>> = vec![Vec::new(); probes.len()];
        for (&(p, row), score) in jobs.iter().zip(scored.into_iter().flatten()) {
            if let (Some(list), Some(&id), Some(score)) = (out.get_mut(p), self.ids.get(row), score)
                && score >= search.threshold
            {
                list.push(Candidate { id, score });
            }
        }
        for list in &mut out {
            list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            list.truncate(k);
        }
        out
    }

    /// Per probe, the best `shortlist` (first-stage score, row), best first; ties go to the
    /// lower row, so the answer does not depend on how the gallery was split across threads.
    fn shortlists(&self, probes: &[FingerProbe], shortlist: usize, threads: usize) -> Vec<Vec<(f32, usize)>> {
        let shortlist = shortlist.clamp(1, SHORTLIST_MAX);
        let threads = threads.clamp(1, 256);
        let chunk = self.rows.len().div_ceil(threads).max(1);
        let partial: Vec<Vec<Vec<(f32, usize)>>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                self.rows.chunks(chunk).enumerate().map(|(c, rows)| s.spawn(move || scan(rows, c * chunk, probes, shortlist))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| vec![Vec::new(); probes.len()])).collect()
        });
        (0..probes.len())
            .map(|p| {
                let mut all: Vec<(f32, usize)> = partial.iter().filter_map(|part| part.get(p)).flatten().copied().collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                all.truncate(shortlist);
                all
            })
            .collect()
    }
}

/// One finger's first-stage similarity of a probe and a gallery row: common index bits in
/// excess of chance (`IndexCode::similarity`, with the roots precomputed, see `ProbeTerms`); 0
/// where either side lacks the finger. A plain indexed loop of fixed length and always inlined,
/// so that inside `scan` it is compiled for the chosen instruction set (two vector popcounts
/// under AVX-512) rather than called once per finger.
#[inline(always)]
fn similarity(probe: &FingerProbe, row: &Row, f: usize) -> f32 {
    let (a, b) = (&probe.row.codes[f], &row.codes[f]);
    let mut common = 0u32;
    for w in 0..INDEX_WORDS {
        common += (a[w] & b[w]).count_ones();
    }
    common as f32 * probe.terms.scale[f] * row.inverse_roots[f] - probe.terms.offset[f] * row.roots[f]
}

/// The first-stage scan of one chunk of rows (numbered from `base`) for every probe: 160
/// AND-popcounts per row and probe, compiled for several instruction sets and picked at run time
/// like the iris scan (`iris::best_distance`), since the baseline x86-64 target has no
/// popcount instruction.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512vpopcntdq+avx2+popcnt",
    "x86_64+avx2+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
fn scan(rows: &[Row], base: usize, probes: &[FingerProbe], shortlist: usize) -> Vec<Vec<(f32, usize)>> {
    let mut best: Vec<Vec<(f32, usize)>> = vec![Vec::with_capacity(shortlist + 1); probes.len()];
    for (r, row) in rows.iter().enumerate() {
        for (probe, list) in probes.iter().zip(best.iter_mut()) {
            // Branch-free over all ten fingers: a missing finger (either side) has zero terms.
            let mut score = 0f32;
            for f in 0..FINGERS {
                score += similarity(probe, row, f);
            }
            // Strictly better than the worst kept: a tie keeps the earlier (lower) row.
            if list.len() < shortlist || list.last().is_some_and(|w| score > w.0) {
                let at = list.partition_point(|h| h.0 >= score);
                list.insert(at, (score, base + r));
                list.truncate(shortlist);
            }
        }
    }
    best
}

/// What `verify` found: the fused score of every finger position both have, or of the first
/// `EARLY_FINGERS` when those fused below `EARLY_REJECT` (`Dropped`: a lower bound of the full
/// score, since every finger's score is ≥ 0).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Complete(f32),
    Dropped(f32),
}

impl Verdict {
    fn complete(self) -> Option<f32> {
        match self {
            Verdict::Complete(s) => Some(s),
            Verdict::Dropped(_) => None,
        }
    }

    fn score(self) -> f32 {
        match self {
            Verdict::Complete(s) | Verdict::Dropped(s) => s,
        }
    }
}

/// The fused score over every finger position both have; None when they have none in common.
fn full_score(probe: &FingerProbe, fingers: &Fingers) -> Option<f32> {
    let scores: Vec<f32> = probe
        .prepared
        .iter()
        .zip(fingers)
        .filter_map(|(p, g)| Some(p.as_ref()?.compare(&PreparedFinger::new(g.as_ref()?)).score))
        .collect();
    (!scores.is_empty()).then(|| fuse(scores))
}

/// The fused full-matcher score of a probe against one gallery person, or the partial score
/// when dropped early (see `EARLY_REJECT`). Fingers are matched in order of first-stage
/// similarity.
fn verify(probe: &FingerProbe, row: &Row, fingers: &Fingers) -> Verdict {
    let mut order: Vec<(f32, usize)> =
        (0..FINGERS).filter(|&f| probe.row.roots[f] > 0.0 && row.roots[f] > 0.0).map(|f| (similarity(probe, row, f), f)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut scores = Vec::with_capacity(FINGERS);
    for (done, &(_, f)) in order.iter().enumerate() {
        if done == EARLY_FINGERS && fuse(scores.iter().copied()) < EARLY_REJECT {
            return Verdict::Dropped(fuse(scores));
        }
        if let (Some(Some(p)), Some(Some(g))) = (probe.prepared.get(f), fingers.get(f)) {
            scores.push(p.compare(&PreparedFinger::new(g)).score);
        }
    }
    Verdict::Complete(fuse(scores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finger::{FUSED_THRESHOLD, Minutia, MinutiaKind};
    use crate::synth_finger::SynthHands;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn all(hands: &SynthHands, rng: &mut StdRng) -> Fingers {
        hands.capture(rng).map(Some)
    }

    #[test]
    fn planted_duplicates_are_found_and_strangers_are_not() {
        let mut rng = StdRng::seed_from_u64(50);
        let people: Vec<SynthHands> = (0..300).map(|_| SynthHands::random(&mut rng)).collect();
        let mut g = FingerGallery::default();
        for (i, p) in people.iter().enumerate() {
            g.insert(i as u64 * 7, all(p, &mut rng));
        }
        assert_eq!(g.len(), 300);
        let planted = [3usize, 77, 150, 299];
        let mut probes: Vec<FingerProbe> = planted.iter().map(|&i| FingerProbe::new(&all(&people[i], &mut rng))).collect();
        // One planted person shows only the two thumbs.
        let mut thumbs: Fingers = all(&people[200], &mut rng);
        for f in [1, 2, 3, 4, 6, 7, 8, 9] {
            thumbs[f] = None;
        }
        probes.push(FingerProbe::new(&thumbs));
        let strangers = 4;
        probes.extend((0..strangers).map(|_| FingerProbe::new(&all(&SynthHands::random(&mut rng), &mut rng))));
        // Searched down to the 1:1 threshold: two thumbs carry less evidence than ten fingers
        // (the fused score sums over fingers) and land between the two thresholds.
        let search = Search { shortlist: 8, threads: 2, threshold: FUSED_THRESHOLD, ..Search::default() };
        let results = g.search(&probes, &search);
        for (p, &i) in planted.iter().chain(&[200]).enumerate() {
            let best = results[p].first().copied();
            assert_eq!(best.map(|c| c.id), Some(i as u64 * 7), "planted person {i}: {:?}", results[p]);
            let least = if i == 200 { FUSED_THRESHOLD } else { FUSED_THRESHOLD_1N };
            assert!(best.is_some_and(|c| c.score >= least), "planted person {i}: {best:?}");
        }
        for r in &results[planted.len() + 1..] {
            assert!(r.is_empty(), "a stranger matched: {r:?}");
        }
        // The first stage alone already ranks each mate first.
        let lists = g.prefilter(&probes[..planted.len()], 5, 2);
        for (list, &i) in lists.iter().zip(&planted) {
            assert_eq!(list.first().map(|c| c.id), Some(i as u64 * 7));
            assert!(list.windows(2).all(|w| w[0].score >= w[1].score));
        }
        // One thread and two give the same answers.
        assert_eq!(g.search(&probes, &Search { threads: 1, ..search }), results);
        assert_eq!(g.prefilter(&probes, 5, 1), g.prefilter(&probes, 5, 3));
        // A known candidate scores as the search did; an unknown one not at all.
        let id = planted[1] as u64 * 7;
        assert_eq!(g.score_one(&probes[1], id), results[1].first().map(|c| c.score));
        assert!(g.score_one(&probes[planted.len() + 1], id).is_some_and(|s| s < FUSED_THRESHOLD));
        assert_eq!(g.score_one(&probes[1], 1), None);
        // Scored as a candidate: a mate as in full, a stranger at most its full score.
        assert_eq!(g.score_candidate(&probes[1], id), g.score_one(&probes[1], id));
        let stranger = &probes[planted.len() + 1];
        let (partial, full) = (g.score_candidate(stranger, id).unwrap(), g.score_one(stranger, id).unwrap());
        assert!(partial <= full && partial < EARLY_REJECT, "{partial} {full}");
        assert_eq!(g.score_candidate(&probes[1], 1), None);
        // Deleting the person removes the match.
        assert_eq!(g.remove(id), 1);
        assert!(g.search(&probes[1..2], &search)[0].is_empty());
        assert_eq!(g.score_one(&probes[1], id), None);
        // Below the threshold nothing is returned; with no threshold the short list is.
        let loose = g.search(&probes[planted.len() + 1..], &Search { threshold: f32::MIN, k: 5, ..search });
        assert!(loose.iter().all(|r| r.len() <= 5));
    }

    fn tiny(seed: u16) -> Fingers {
        let m = |x: u16, y: u16| Minutia { x, y, angle: (seed % 256) as u8, kind: MinutiaKind::Ending, quality: 50 };
        let t = FingerTemplate::new(100, 100, vec![m(seed % 90, 1), m(2, 50), m(60, 60)]);
        std::array::from_fn(|f| (f == 0).then(|| t.clone().ok()).flatten())
    }

    #[test]
    fn removal_keeps_rows_and_ids_in_step() {
        let mut g = FingerGallery::default();
        let ids = [5u64, 6, 5, 7, 8, 5, 9];
        for (i, &id) in ids.iter().enumerate() {
            g.insert(id, tiny(i as u16));
        }
        assert_eq!(g.remove(5), 3);
        assert_eq!(g.remove(5), 0);
        assert_eq!(g.len(), 4);
        // Every remaining id still finds its own row.
        let probe = FingerProbe::new(&tiny(1));
        for id in [6u64, 7, 8, 9] {
            assert!(g.score_one(&probe, id).is_some(), "{id}");
            assert_eq!(g.by_id[&id].len(), 1);
            assert_eq!(g.ids[g.by_id[&id][0]], id);
        }
        assert_eq!(g.remove(9), 1);
        assert_eq!(g.remove(6), 1);
        assert_eq!(g.len(), 2);
        assert!(g.score_one(&probe, 7).is_some() && g.score_one(&probe, 8).is_some());
        // A probe and a person with no finger in common have no score.
        let none: Fingers = std::array::from_fn(|_| None);
        assert_eq!(g.score_one(&FingerProbe::new(&none), 7), None);
        assert!(g.bytes_per_person() > size_of::<Row>());
    }
}
