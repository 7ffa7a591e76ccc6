//! Multi-modal score fusion and the 1:N decision.
//!
//! Every matcher has its own score scale (iris: normalised Hamming distance, lower is better;
//! face: cosine; finger: its own similarity). Scores are put on one scale by asking, for each,
//! *how often would a stranger score at least this well?* — the false-match rate at that score,
//! from the matcher's calibration — and taking the evidence `E = −log10 FMR` (an FMR of one in a
//! million is 6). Strangers' scores in different modalities (and different fingers) are
//! independent, so evidence adds: the fused evidence of a candidate is the sum over the
//! modalities both sides have, and `10^−E` estimates the chance that a stranger matches that well
//! in all of them together. This is the product rule of independent likelihoods (Kittler et al.,
//! "On combining classifiers", IEEE TPAMI 1998) applied to impostor tail probabilities; it needs
//! no training of weights and degrades gracefully when a modality is missing (its evidence is
//! simply absent).
//!
//! 1:N decision: over a gallery of `N`, a stranger is expected to produce `N · 10^−E` false
//! candidates at evidence `E`; MOSIP's `targetFPIR` t asks for FPIR = 10^(−t/10). So a candidate
//! is a **match** when `E ≥ log10(N) + t/10`. Below that, down to `review_decades` less (default
//! 2: a hundred times likelier to be a stranger), it **needs adjudication** by a person; below
//! that it is **no match** and not reported.
//!
//! Evidence per modality is capped (`EVIDENCE_MAX`): calibration tables end somewhere, and no
//! single modality should outvote all others without limit.

/// The modalities, with MOSIP's biometric type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    Finger,
    Iris,
    Face,
}

impl Modality {
    /// MOSIP's `biometricType` code in ABIS responses.
    #[must_use]
    pub fn mosip_code(self) -> &'static str {
        match self {
            Modality::Finger => "FIR",
            Modality::Iris => "IIR",
            Modality::Face => "FID",
        }
    }
}

/// Largest evidence one modality contributes (FMR 1e-15).
pub const EVIDENCE_MAX: f64 = 15.0;
/// Default width of the adjudication band below the match threshold, in decades of FMR.
pub const REVIEW_DECADES_DEFAULT: f64 = 2.0;
/// MOSIP's default `targetFPIR` (1 in 1,000).
pub const TARGET_FPIR_DEFAULT: u32 = 30;

/// `−log10 fmr`, capped to `0..=EVIDENCE_MAX`.
#[must_use]
pub fn evidence(fmr: f64) -> f64 {
    if fmr.is_nan() || fmr >= 1.0 {
        return 0.0;
    }
    if fmr <= 0.0 {
        return EVIDENCE_MAX;
    }
    (-fmr.log10()).clamp(0.0, EVIDENCE_MAX)
}

/// The outcome of a 1:N search for one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// At least one candidate is above the match threshold: a duplicate.
    Match,
    /// The best candidate is in the adjudication band: a person must decide.
    Adjudicate,
    /// Nobody close enough: a new person.
    NoMatch,
}

impl Decision {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Match => "match",
            Decision::Adjudicate => "adjudicate",
            Decision::NoMatch => "no_match",
        }
    }
}

/// Thresholds on fused evidence for a search over `gallery` references.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub matched: f64,
    pub review: f64,
}

impl Thresholds {
    /// For a gallery of `gallery` references, MOSIP's `target_fpir` code and an adjudication
    /// band of `review_decades`.
    #[must_use]
    pub fn new(gallery: usize, target_fpir: u32, review_decades: f64) -> Self {
        let n = (gallery.max(1) as f64).log10();
        let matched = n + f64::from(target_fpir) / 10.0;
        Thresholds { matched, review: (matched - review_decades.max(0.0)).max(0.0) }
    }

    #[must_use]
    pub fn decide(&self, best: Option<f64>) -> Decision {
        match best {
            Some(e) if e >= self.matched => Decision::Match,
            Some(e) if e >= self.review => Decision::Adjudicate,
            _ => Decision::NoMatch,
        }
    }

    /// The FPIR these thresholds promise, for reporting (`10^−(matched − log10 N)`).
    #[must_use]
    pub fn fpir(&self, gallery: usize) -> f64 {
        10f64.powf(-(self.matched - (gallery.max(1) as f64).log10()))
    }
}

/// A calibration curve: points `(score, log10 FMR)` with scores increasing in similarity,
/// interpolated linearly between points and extrapolated along the last segment beyond the end
/// (tails of impostor distributions are close to exponential in these scores).
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    points: &'static [(f64, f64)],
}

impl Calibration {
    /// `points` must have at least two entries with increasing scores and non-increasing FMR.
    #[must_use]
    pub const fn new(points: &'static [(f64, f64)]) -> Self {
        Calibration { points }
    }

    /// The false-match rate at `score`.
    #[must_use]
    pub fn fmr(&self, score: f64) -> f64 {
        let p = self.points;
        if p.len() < 2 || score.is_nan() {
            return 1.0;
        }
        let segment = |a: (f64, f64), b: (f64, f64)| {
            let t = (score - a.0) / (b.0 - a.0);
            a.1 + t * (b.1 - a.1)
        };
        let log = if score <= p[0].0 {
            p[0].1
        } else if let Some(i) = p.windows(2).position(|w| score <= w[1].0) {
            segment(p[i], p[i + 1])
        } else {
            segment(p[p.len() - 2], p[p.len() - 1])
        };
        10f64.powf(log.min(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_gallery_size_and_target() {
        let t = Thresholds::new(1_000_000, 30, 2.0);
        assert!((t.matched - 9.0).abs() < 1e-9);
        assert!((t.review - 7.0).abs() < 1e-9);
        assert!((t.fpir(1_000_000) - 1e-3).abs() < 1e-12);
        assert_eq!(t.decide(Some(9.5)), Decision::Match);
        assert_eq!(t.decide(Some(8.0)), Decision::Adjudicate);
        assert_eq!(t.decide(Some(6.9)), Decision::NoMatch);
        assert_eq!(t.decide(None), Decision::NoMatch);
        // A bigger gallery needs more evidence for the same FPIR.
        assert!(Thresholds::new(10_000_000, 30, 2.0).matched > t.matched);
    }

    #[test]
    fn evidence_is_capped_and_sane() {
        assert_eq!(evidence(1.0), 0.0);
        assert_eq!(evidence(2.0), 0.0);
        assert_eq!(evidence(0.0), EVIDENCE_MAX);
        assert_eq!(evidence(f64::NAN), 0.0);
        assert!((evidence(1e-6) - 6.0).abs() < 1e-9);
        assert_eq!(evidence(1e-40), EVIDENCE_MAX);
    }

    #[test]
    fn calibration_interpolates_and_extrapolates() {
        static POINTS: [(f64, f64); 3] = [(0.0, 0.0), (0.5, -2.0), (1.0, -6.0)];
        let c = Calibration::new(&POINTS);
        assert!((c.fmr(-1.0) - 1.0).abs() < 1e-12);
        assert!((c.fmr(0.25) - 0.1).abs() < 1e-9);
        assert!((c.fmr(0.75).log10() + 4.0).abs() < 1e-9);
        assert!((c.fmr(1.25).log10() + 8.0).abs() < 1e-9, "beyond the table, along the last segment");
        assert_eq!(c.fmr(f64::NAN), 1.0);
    }
}
