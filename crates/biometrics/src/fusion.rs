//! Multi-modal score fusion and the 1:N decision.
//!
//! Every matcher has its own score scale (iris: normalised Hamming distance, lower is better;
//! face: cosine; finger: its own similarity). Scores are put on one scale by asking, for each,
//! *how often would a stranger score at least this well?* — the false-match rate at that score,
//! from the matcher's calibration — and taking the evidence `E = −log10 FMR` (an FMR of one in a
//! million is 6). Strangers' scores in different modalities (and different eyes) are
//! independent, so their evidence adds; but the sum `S` of `m` evidences is not itself
//! `−log10` of a false-match rate: a stranger's `m` FMRs are `m` independent uniform numbers, and
//! the chance that their product is as small as `10^−S` is Fisher's combined probability
//! `P = e^−x · Σ_{i<m} x^i / i!` with `x = S · ln 10` (Fisher 1925, "Statistical methods for
//! research workers", §21.1), larger than `10^−S` by that sum. The fused evidence of a
//! candidate is `−log10 P` ([`fuse`]), so that `10^−E` is again the chance that a stranger
//! scores that well in all the modalities together. It needs no training of weights and
//! degrades gracefully when a modality is missing (its evidence is simply absent). Without the
//! correction a stranger with four modalities reaches 4.3 decades of summed evidence about one
//! time in a hundred, not one in 20,000 (the test below).
//!
//! 1:N decision: over a gallery of `N`, a stranger is expected to produce `N · 10^−E` false
//! candidates at evidence `E`; MOSIP's `targetFPIR` t asks for FPIR = 10^(−t/10). So a candidate
//! is a **match** when `E ≥ log10(N) + t/10`. Below that, down to `review_decades` less, it
//! **needs adjudication** by a person; below that it is **no match** and not reported. The
//! default band is empty (0 decades): a caller asking for an FPIR gets only candidates at it, as
//! MOSIP's ABIS interface means `targetFPIR`; a band of 2 decades would put a stranger in doubt
//! in one search in ten. Registration keeps its own band *above* the match threshold instead
//! (an automatic duplicate needs far more evidence than a case for a person to look at).
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

    /// The modality of a MOSIP `biometricType` code in ABIS responses.
    #[must_use]
    pub fn from_mosip_code(code: &str) -> Option<Self> {
        [Modality::Finger, Modality::Iris, Modality::Face].into_iter().find(|m| m.mosip_code() == code)
    }
}

/// Largest evidence one modality contributes (FMR 1e-15).
pub const EVIDENCE_MAX: f64 = 15.0;
/// Default width of the adjudication band below the match threshold, in decades of FMR (none:
/// see the module doc).
pub const REVIEW_DECADES_DEFAULT: f64 = 0.0;
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

/// Fused evidence of independent parts (each `−log10` of an FMR, as [`evidence`] gives):
/// `−log10` of Fisher's combined probability (see the module doc). One part is itself; no
/// parts are 0.
#[must_use]
pub fn fuse(parts: &[f64]) -> f64 {
    let sum: f64 = parts.iter().map(|e| e.max(0.0)).sum();
    let m = parts.len();
    if m <= 1 {
        return sum;
    }
    // log10 Σ_{i<m} x^i / i!, summed in log space (x reaches 15 · m · ln 10).
    let x = sum * std::f64::consts::LN_10;
    let mut ln_term = 0.0f64; // ln(x^0 / 0!)
    let mut ln_total = 0.0f64;
    for i in 1..m {
        if x <= 0.0 {
            break;
        }
        ln_term += x.ln() - (i as f64).ln();
        ln_total = ln_total.max(ln_term) + (-(ln_total - ln_term).abs()).exp().ln_1p();
    }
    (sum - ln_total / std::f64::consts::LN_10).max(0.0)
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
    fn fused_evidence_is_fishers_combination() {
        assert_eq!(fuse(&[]), 0.0);
        assert!((fuse(&[4.0]) - 4.0).abs() < 1e-12);
        // Two parts summing to S: P = 10^−S (1 + S ln 10).
        let s: f64 = 5.0;
        let expect = s - (1.0 + s * std::f64::consts::LN_10).log10();
        assert!((fuse(&[2.0, 3.0]) - expect).abs() < 1e-9);
        // Strangers: m uniform FMRs; the fused evidence exceeds E about 10^−E of the time.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let trials = 200_000;
        let over = (0..trials)
            .filter(|_| fuse(&[evidence(uniform()), evidence(uniform()), evidence(uniform()), evidence(uniform())]) >= 2.0)
            .count();
        let rate = over as f64 / f64::from(trials);
        assert!((0.007..0.013).contains(&rate), "rate {rate}, expected 0.01");
        // The plain sum would have been far too confident.
        assert!(fuse(&[1.0, 1.0, 1.0, 1.0]) < 2.0);
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
