//! The multi-modal 1:N gallery: one search index per modality (iris, face, finger), searched
//! with all cores, and fusion of every candidate's scores into one evidence value
//! (`crate::fusion`).
//!
//! A search runs each modality's index over the whole gallery for the probes (a batch of probes
//! shares each pass over memory), takes the union of the candidates they propose, scores every
//! candidate 1:1 in every modality both sides have, and ranks by fused evidence. A person who is
//! weak in one modality (a scarred finger, a closed eye) is still found through the others, and
//! then scored on all of them.
//!
//! When the caller restricts the search to a short list of ids (MOSIP's Identify `gallery`),
//! the indexes are skipped and the listed ids are scored 1:1.

use crate::face::FaceGallery;
use crate::finger::{FINGERS, FingerGallery, FingerProbe, Fingers, Search};
use crate::fusion::{Modality, evidence, fuse};
use crate::iris::{Probe, SHIFTS_DEFAULT};
use crate::iris_gallery::{CANDIDATES_MAX, IrisGallery};
use crate::templates::TemplateSet;
use std::collections::HashSet;

/// Candidates each modality's index proposes per probe before fusion, as a multiple of `k`.
const PROPOSALS_PER_RESULT: usize = 4;

/// One modality's part of a candidate's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModalityEvidence {
    pub modality: Modality,
    /// The matcher's own score (iris: normalised Hamming distance; face: cosine; finger: the
    /// fused finger score).
    pub score: f64,
    /// `−log10 FMR` at that score.
    pub evidence: f64,
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: u64,
    /// Fused evidence (`fusion::fuse` of the independent parts: each eye, the face, the fingers).
    pub evidence: f64,
    pub modalities: Vec<ModalityEvidence>,
}

/// How to search.
#[derive(Debug, Clone)]
pub struct SearchOptions<'a> {
    /// Most candidates per probe (≤ `CANDIDATES_MAX`).
    pub k: usize,
    pub threads: usize,
    /// Candidates below this fused evidence are not reported.
    pub min_evidence: f64,
    /// An id never to report (the probe's own reference).
    pub exclude: Option<u64>,
    /// Search only these ids.
    pub restrict: Option<&'a HashSet<u64>>,
}

/// The gallery.
#[derive(Debug, Default)]
pub struct Gallery {
    irises: IrisGallery,
    faces: FaceGallery,
    fingers: FingerGallery,
    ids: HashSet<u64>,
}

/// A probe prepared once for every comparison.
struct Prepared<'a> {
    irises: Vec<Probe>,
    set: &'a TemplateSet,
    /// `None` when the probe has no finger with a known position.
    fingers: Option<FingerProbe>,
}

impl<'a> Prepared<'a> {
    fn new(set: &'a TemplateSet) -> Self {
        let fingers = by_position(set);
        Prepared {
            irises: set.irises.iter().filter_map(|(_, c)| Probe::new(c, SHIFTS_DEFAULT).ok()).collect(),
            set,
            fingers: fingers.iter().any(Option::is_some).then(|| FingerProbe::new(&fingers)),
        }
    }
}

/// A set's fingers by ISO position (1–10 → slot 0–9); fingers of unknown position are left out
/// (the finger matcher compares the same finger only).
fn by_position(set: &TemplateSet) -> Fingers {
    let mut out: Fingers = std::array::from_fn(|_| None);
    for (position, t) in &set.fingers {
        if let Some(slot) = usize::from(*position).checked_sub(1).filter(|s| *s < FINGERS) {
            out[slot] = Some(t.clone());
        }
    }
    out
}

impl Gallery {
    /// Adds (or, for an id already present, replaces) a person's templates.
    pub fn insert(&mut self, id: u64, set: &TemplateSet) {
        self.remove(id);
        for (_, code) in &set.irises {
            self.irises.insert(id, code.clone());
        }
        if let Some(face) = &set.face {
            // A face that parsed is a valid embedding; the gallery refuses only at its size limit.
            let _ = self.faces.insert(id, face);
        }
        let fingers = by_position(set);
        if fingers.iter().any(Option::is_some) {
            self.fingers.insert(id, fingers);
        }
        self.ids.insert(id);
    }

    /// Removes a person; returns whether they were there.
    pub fn remove(&mut self, id: u64) -> bool {
        if !self.ids.remove(&id) {
            return false;
        }
        self.irises.remove(id);
        self.faces.remove(id);
        self.fingers.remove(id);
        true
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// For each probe, the best candidates by fused evidence, best first.
    #[must_use]
    pub fn search(&self, probes: &[TemplateSet], opts: &SearchOptions<'_>) -> Vec<Vec<Hit>> {
        let k = opts.k.clamp(1, CANDIDATES_MAX);
        let prepared: Vec<Prepared<'_>> = probes.iter().map(Prepared::new).collect();
        let proposals: Vec<HashSet<u64>> = match opts.restrict {
            Some(only) => vec![only.iter().copied().filter(|id| self.ids.contains(id)).collect(); probes.len()],
            None => self.propose(&prepared, k * PROPOSALS_PER_RESULT, opts.threads),
        };
        prepared
            .iter()
            .zip(proposals)
            .map(|(p, ids)| {
                let mut hits: Vec<Hit> = ids
                    .into_iter()
                    .filter(|id| Some(*id) != opts.exclude)
                    .map(|id| self.score(p, id))
                    .filter(|h| h.evidence >= opts.min_evidence && !h.modalities.is_empty())
                    .collect();
                hits.sort_by(|a, b| b.evidence.total_cmp(&a.evidence).then(a.id.cmp(&b.id)));
                hits.truncate(k);
                hits
            })
            .collect()
    }

    /// The union, per probe, of what each modality's index proposes.
    fn propose(&self, probes: &[Prepared<'_>], per_modality: usize, threads: usize) -> Vec<HashSet<u64>> {
        let mut out = vec![HashSet::new(); probes.len()];
        // Iris: every eye of every probe in one pass; no threshold (fusion decides).
        let mut eye_owner = Vec::new();
        let mut eyes = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            for e in &p.irises {
                eye_owner.push(i);
                eyes.push(e.clone());
            }
        }
        if !eyes.is_empty() && !self.irises.is_empty() {
            for (owner, hits) in eye_owner.iter().zip(self.irises.search(&eyes, per_modality, 1.0, threads)) {
                out[*owner].extend(hits.iter().map(|h| h.id));
            }
        }
        let (face_owner, faces): (Vec<usize>, Vec<_>) =
            probes.iter().enumerate().filter_map(|(i, p)| p.set.face.clone().map(|f| (i, f))).unzip();
        if !faces.is_empty() && !self.faces.is_empty() {
            for (owner, hits) in face_owner.iter().zip(self.faces.search(&faces, per_modality, -1.0, threads)) {
                out[*owner].extend(hits.iter().map(|h| h.id));
            }
        }
        let (finger_owner, finger_probes): (Vec<usize>, Vec<FingerProbe>) =
            probes.iter().enumerate().filter_map(|(i, p)| p.fingers.clone().map(|f| (i, f))).unzip();
        if !finger_probes.is_empty() && !self.fingers.is_empty() {
            // No threshold: fusion decides.
            let search = Search { k: per_modality, threshold: f32::MIN, threads, ..Search::default() };
            for (owner, hits) in finger_owner.iter().zip(self.fingers.search(&finger_probes, &search)) {
                out[*owner].extend(hits.iter().map(|h| h.id));
            }
        }
        out
    }

    /// Scores one candidate in every modality both sides have.
    fn score(&self, p: &Prepared<'_>, id: u64) -> Hit {
        let mut modalities = Vec::with_capacity(3);
        // The independent parts the fused evidence combines (`fusion::fuse`).
        let mut parts = Vec::with_capacity(4);
        // Iris: each probe eye's best distance to any of the candidate's eyes, its FMR multiplied
        // by the eyes it was compared with (the best of several strangers' eyes); two eyes are
        // independent parts.
        let mut iris_evidence = 0.0;
        let mut iris_best: Option<f64> = None;
        for probe in &p.irises {
            let scores: Vec<f64> = self.irises.templates_of(id).filter_map(|c| probe.score(c)).collect();
            if let Some(best) = scores.iter().copied().min_by(f64::total_cmp) {
                let e = evidence(crate::iris::fmr(best, SHIFTS_DEFAULT) * scores.len() as f64);
                parts.push(e);
                iris_evidence += e;
                iris_best = Some(iris_best.map_or(best, |b: f64| b.min(best)));
            }
        }
        if let Some(best) = iris_best {
            modalities.push(ModalityEvidence { modality: Modality::Iris, score: best, evidence: iris_evidence });
        }
        if let Some(s) = p.set.face.as_ref().and_then(|face| self.faces.score_one(face, id)) {
            let s = f64::from(s);
            let e = evidence(crate::face::fmr(s));
            parts.push(e);
            modalities.push(ModalityEvidence { modality: Modality::Face, score: s, evidence: e });
        }
        if let Some(s) = p.fingers.as_ref().and_then(|f| self.fingers.score_one(f, id)) {
            let s = f64::from(s);
            let e = evidence(crate::finger::fmr(s));
            parts.push(e);
            modalities.push(ModalityEvidence { modality: Modality::Finger, score: s, evidence: e });
        }
        Hit { id, evidence: fuse(&parts), modalities }
    }
}
