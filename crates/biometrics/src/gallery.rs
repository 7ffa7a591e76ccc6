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
//! The iris index keeps each eye apart (right, left, unknown): a probe eye labelled right is
//! scanned against right and unlabelled eyes only, which halves the scan, the most costly part
//! of a search. A probe eye whose label is wrong is then not proposed by the iris index (the
//! face and fingers still propose the person), but every candidate is scored against all its
//! eyes, whatever their labels.
//!
//! When the caller restricts the search to a short list of ids (MOSIP's Identify `gallery`),
//! the indexes are skipped and the listed ids are scored 1:1.

use crate::face::FaceGallery;
use crate::finger::{FINGERS, FingerGallery, FingerProbe, Fingers, Search};
use crate::fusion::{Modality, evidence, fuse};
use crate::iris::{Probe, SHIFTS_DEFAULT};
use crate::iris_gallery::{CANDIDATES_MAX, IrisGallery};
use crate::templates::{Eye, TemplateSet};
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
    /// Iris templates by eye label: `[Unknown, Right, Left]` (the `Eye` discriminants).
    irises: [IrisGallery; 3],
    faces: FaceGallery,
    fingers: FingerGallery,
    ids: HashSet<u64>,
}

/// A probe prepared once for every comparison.
struct Prepared<'a> {
    irises: Vec<(Eye, Probe)>,
    set: &'a TemplateSet,
    /// `None` when the probe has no finger with a known position.
    fingers: Option<FingerProbe>,
}

impl<'a> Prepared<'a> {
    fn new(set: &'a TemplateSet) -> Self {
        let fingers = by_position(set);
        Prepared {
            irises: set.irises.iter().filter_map(|(eye, c)| Some((*eye, Probe::new(c, SHIFTS_DEFAULT).ok()?))).collect(),
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
        for (eye, code) in &set.irises {
            self.irises[*eye as usize].insert(id, code.clone());
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
        for part in &mut self.irises {
            part.remove(id);
        }
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
        // Iris: each part of the gallery in one pass for every probe eye that may match it (the
        // same label, or either one unlabelled); no threshold (fusion decides).
        for (part, gallery) in self.irises.iter().enumerate() {
            let mut eye_owner = Vec::new();
            let mut eyes = Vec::new();
            for (i, p) in probes.iter().enumerate() {
                for (eye, e) in &p.irises {
                    if part == Eye::Unknown as usize || *eye == Eye::Unknown || *eye as usize == part {
                        eye_owner.push(i);
                        eyes.push(e.clone());
                    }
                }
            }
            if !eyes.is_empty() && !gallery.is_empty() {
                for (owner, hits) in eye_owner.iter().zip(gallery.search(&eyes, per_modality, 1.0, threads)) {
                    out[*owner].extend(hits.iter().map(|h| h.id));
                }
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
        for (_, probe) in &p.irises {
            let scores: Vec<f64> = self.irises.iter().flat_map(|part| part.templates_of(id)).filter_map(|c| probe.score(c)).collect();
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
        if let Some(s) = p.fingers.as_ref().and_then(|f| self.fingers.score_candidate(f, id)) {
            let s = f64::from(s);
            let e = evidence(crate::finger::fmr(s));
            parts.push(e);
            modalities.push(ModalityEvidence { modality: Modality::Finger, score: s, evidence: e });
        }
        Hit { id, evidence: fuse(&parts), modalities }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SynthPerson;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn irises_only(set: &TemplateSet, label: impl Fn(Eye) -> Eye) -> TemplateSet {
        TemplateSet { irises: set.irises.iter().map(|(e, c)| (label(*e), c.clone())).collect(), ..TemplateSet::default() }
    }

    fn opts() -> SearchOptions<'static> {
        SearchOptions { k: 5, threads: 2, min_evidence: 0.0, exclude: None, restrict: None }
    }

    #[test]
    fn eyes_are_scanned_by_label_and_scored_whatever_their_label() {
        let mut rng = StdRng::seed_from_u64(61);
        let people: Vec<SynthPerson> = (0..200).map(|_| SynthPerson::random(&mut rng)).collect();
        let mut g = Gallery::default();
        for (i, p) in people.iter().enumerate() {
            // Person 7 was enrolled with unlabelled eyes.
            let set = p.capture(&mut rng);
            let set = if i == 7 { TemplateSet { irises: irises_only(&set, |_| Eye::Unknown).irises, ..set } } else { set };
            g.insert(i as u64, &set);
        }
        assert_eq!(g.irises.iter().map(IrisGallery::len).collect::<Vec<_>>(), [2, 199, 199]);
        let best = |set: &TemplateSet| g.search(std::slice::from_ref(set), &opts())[0].first().map(|h| (h.id, h.evidence));
        let capture = people[3].capture(&mut rng);
        // Labelled as enrolled, unlabelled, or against an unlabelled enrolment: found.
        let right = best(&irises_only(&capture, |e| e)).expect("labelled probe");
        assert_eq!(right.0, 3);
        assert_eq!(best(&irises_only(&capture, |_| Eye::Unknown)).map(|h| h.0), Some(3));
        assert_eq!(best(&irises_only(&people[7].capture(&mut rng), |e| e)).map(|h| h.0), Some(7));
        // Both eyes labelled the wrong way round: the iris index does not propose the person …
        let swap = |e| match e {
            Eye::Right => Eye::Left,
            Eye::Left => Eye::Right,
            Eye::Unknown => Eye::Unknown,
        };
        let swapped = irises_only(&capture, swap);
        assert_ne!(best(&swapped).map(|h| h.0), Some(3));
        // … but once proposed (here by the face), every eye is scored whatever its label.
        let with_face = TemplateSet { face: capture.face.clone(), ..swapped };
        let (id, evidence) = best(&with_face).expect("face proposes");
        assert_eq!(id, 3);
        assert!(evidence > right.1, "the face adds to both eyes: {evidence} vs {}", right.1);
        // Removal empties every part.
        assert!(g.remove(7));
        assert_eq!(g.irises[0].len(), 0);
    }
}
