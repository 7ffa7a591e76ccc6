//! Finger matching: ISO/IEC 19794-2 minutiae compared by rotation- and translation-invariant geometry, fused over fingers.
//!
//! # 1:1 (`matcher`)
//!
//! Each minutia gets a local structure describing its neighbours within 100 px in its own frame
//! (a bit form of Cappelli, Ferrara and Maltoni's Minutia Cylinder-Code, IEEE TPAMI 32(12),
//! 2010: 8 × 8 spatial cells × 6 direction planes, one `u64` per plane, cells outside the
//! template's hull marked unknown). Structures are invariant to rotation and translation, so
//! the best-matching pairs of structures propose alignments (12 seeds); each is refined by a
//! least-squares rigid fit, and the minutiae it pairs (within 15 px and 20°) are counted.
//!
//! **Score scale**: `m² / (n_a · n_b)` for `m` paired minutiae of `n_a` and `n_b` (Jain, Hong and
//! Bolle, IEEE TPAMI 19(4), 1997), in `[0, 1]`, higher is more alike; 1 when every minutia of
//! both pairs. Strangers score around 0.01, two captures of one finger mostly 0.2–0.6 (partial
//! overlap, 10–30% missed minutiae).
//!
//! # Fusion over fingers and thresholds
//!
//! A person's fused score is the **sum** of the per-finger scores over the positions both sides
//! have ([`fuse`]): the fingers of a stranger are independent, and a sum of ten small impostor
//! scores stays small while ten genuine ones add up (d′ more than 2.5 × one finger's, tested).
//! Thresholds, calibrated on the synthetic population (`finger_bench calibrate`: millions of
//! impostor comparisons for one finger, the ten-finger impostor distribution by convolution of
//! the one-finger one, since a stranger's fingers are independent):
//!
//! | threshold | score | FMR |
//! |---|---|---|
//! | [`FINGER_THRESHOLD`] | 0.09 (one finger) | 10⁻⁴ (FNMR ≈ 0.1%) |
//! | [`FUSED_THRESHOLD`] | 0.5 (fused, 1:1) | 10⁻⁴ |
//! | [`FUSED_THRESHOLD_1N`] | 0.8 (fused, 1:N) | 10⁻⁹ |
//!
//! [`fmr`] interpolates `log10 FMR` between these points for `crate::fusion`. The calibration is
//! that of ten fingers; a probe with fewer fingers has a narrower impostor sum, so the FMR it
//! reports for them is an over-estimate (the safe side), and such a probe needs stronger
//! fingers to reach the same evidence: two thumbs of a mate typically fuse between the 1:1 and
//! 1:N thresholds.
//!
//! # 1:N (`gallery`, `index`)
//!
//! A fixed-length 1,024-bit code per finger from minutia-pair geometry, compared by popcount,
//! ranks the whole gallery; the full matcher verifies only a short list (default 30 persons),
//! best-indexed fingers first, dropping a person early when the first three fingers fuse under
//! 0.15.
//!
//! # Fingerprint images
//!
//! Templates come as ISO/IEC 19794-2 minutiae (MOSIP's format 2). Finger images (19794-4) need a
//! minutiae extractor, NIST's NBIS `mindtct`: no maintained Rust crate wraps it and Debian does
//! not package NBIS, so building it would put a C toolchain and NIST's own build system into
//! every Tessera build. Images therefore need an extractor outside the binary, behind an HTTP
//! plugin interface in the manner of MOSIP's BioSDK service (not built yet); until then a
//! document with finger images and no minutiae is refused as `NeedsExtractor`.

mod gallery;
mod index;
mod matcher;

pub use gallery::{Candidate, FingerGallery, FingerProbe, Fingers, SHORTLIST_DEFAULT, SHORTLIST_MAX, Search};
pub use index::{INDEX_BITS, IndexCode};
pub use matcher::{Comparison, PreparedFinger};

/// Per-finger score at which the false-match rate is 10⁻⁴ (see the module doc).
pub const FINGER_THRESHOLD: f32 = 0.09;
/// Fused score at which the false-match rate between two persons is 10⁻⁴.
pub const FUSED_THRESHOLD: f32 = 0.5;
/// Fused score at which the false-match rate between two persons is 10⁻⁹: a search of a
/// million-person gallery then returns a stranger for about one probe in a thousand.
pub const FUSED_THRESHOLD_1N: f32 = 0.8;

/// Calibration of the fused score between two persons: `(fused score, log10 FMR)` from the
/// thresholds above (10⁻⁴ at `FUSED_THRESHOLD`, 10⁻⁹ at `FUSED_THRESHOLD_1N`), extrapolated
/// along the last segment.
static CALIBRATION: [(f64, f64); 3] = [(0.0, 0.0), (FUSED_THRESHOLD as f64, -4.0), (FUSED_THRESHOLD_1N as f64, -9.0)];

/// The false-match rate between two persons at fused score `score` (for `crate::fusion`).
#[must_use]
pub fn fmr(score: f64) -> f64 {
    crate::fusion::Calibration::new(&CALIBRATION).fmr(score)
}

/// Fuses per-finger scores of one pair of persons, one score per finger position compared:
/// their sum (see the module doc).
pub fn fuse(scores: impl IntoIterator<Item = f32>) -> f32 {
    scores.into_iter().sum()
}

/// Compares two persons finger by finger (same positions only) and fuses the scores.
#[must_use]
pub fn compare_persons(a: &[Option<PreparedFinger>; FINGERS], b: &[Option<PreparedFinger>; FINGERS]) -> f32 {
    fuse(a.iter().zip(b).filter_map(|(a, b)| Some(a.as_ref()?.compare(b.as_ref()?).score)))
}

/// Most minutiae in a template: the one-byte count of an ISO/IEC 19794-2 finger view.
pub const MINUTIAE_MAX: usize = 255;
/// Fewest minutiae in a template: fewer define no triangle, hence no invariant geometry to compare.
pub const MINUTIAE_MIN: usize = 3;
/// Largest image side accepted, pixels at 500 ppi (4.1 in: more than a rolled finger or a slap).
pub const IMAGE_SIDE_MAX: u16 = 2048;
/// Highest minutia quality (ISO/IEC 19794-2:2005: 1–100, 0 = not reported).
pub const QUALITY_MAX: u8 = 100;
/// Fingers of a person, by ISO/IEC 19794-2 finger position 1–10 (right thumb … left little).
pub const FINGERS: usize = 10;

/// Minutia type as ISO/IEC 19794-2 codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MinutiaKind {
    Other,
    Ending,
    Bifurcation,
}

/// One minutia. Coordinates are pixels at 500 ppi from the top-left corner, y downwards; `angle`
/// is in ISO/IEC 19794-2:2005 units of 360/256 degrees, counter-clockwise from the horizontal
/// axis pointing right, as seen on the image, giving the ridge direction as the standard defines
/// it for the minutia's type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Minutia {
    pub x: u16,
    pub y: u16,
    pub angle: u8,
    pub kind: MinutiaKind,
    pub quality: u8,
}

impl std::fmt::Debug for Minutia {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minutia(..)")
    }
}

/// Why a finger template was refused. Messages name counts and positions in the list, never
/// coordinates or angles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerError {
    #[error("image size must be 1..={max} pixels a side, got {width} × {height}")]
    ImageSize { width: u16, height: u16, max: u16 },
    #[error("a finger template needs {min}..={max} minutiae, got {got}")]
    MinutiaCount { got: usize, min: usize, max: usize },
    #[error("minutia {index} lies outside the image")]
    Outside { index: usize },
    #[error("minutia {index} has a quality above {max}")]
    Quality { index: usize, max: u8 },
}

/// A valid set of minutiae of one finger view: `MINUTIAE_MIN..=MINUTIAE_MAX` minutiae, each
/// inside a `width × height` image of at most `IMAGE_SIDE_MAX` a side.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerTemplate {
    minutiae: Vec<Minutia>,
    width: u16,
    height: u16,
}

impl std::fmt::Debug for FingerTemplate {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerTemplate(..)")
    }
}

impl FingerTemplate {
    /// # Errors
    /// The first rule the input breaks: image size, minutia count, a minutia outside the image,
    /// a quality above `QUALITY_MAX`.
    pub fn new(width: u16, height: u16, minutiae: Vec<Minutia>) -> Result<Self, FingerError> {
        if width == 0 || height == 0 || width > IMAGE_SIDE_MAX || height > IMAGE_SIDE_MAX {
            return Err(FingerError::ImageSize { width, height, max: IMAGE_SIDE_MAX });
        }
        if !(MINUTIAE_MIN..=MINUTIAE_MAX).contains(&minutiae.len()) {
            return Err(FingerError::MinutiaCount { got: minutiae.len(), min: MINUTIAE_MIN, max: MINUTIAE_MAX });
        }
        for (index, m) in minutiae.iter().enumerate() {
            if m.x >= width || m.y >= height {
                return Err(FingerError::Outside { index });
            }
            if m.quality > QUALITY_MAX {
                return Err(FingerError::Quality { index, max: QUALITY_MAX });
            }
        }
        Ok(FingerTemplate { minutiae, width, height })
    }

    /// For minutiae valid by construction (the synthetic model). The matcher is total on any
    /// input anyway, so a broken promise costs accuracy, never a panic.
    pub(crate) fn trusted(width: u16, height: u16, minutiae: Vec<Minutia>) -> Self {
        debug_assert!(FingerTemplate::new(width, height, minutiae.clone()).is_ok());
        FingerTemplate { minutiae, width, height }
    }

    #[must_use]
    pub fn minutiae(&self) -> &[Minutia] {
        &self.minutiae
    }

    #[must_use]
    pub fn width(&self) -> u16 {
        self.width
    }

    #[must_use]
    pub fn height(&self) -> u16 {
        self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth_finger::{SynthFinger, SynthHands};
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn minutia(x: u16, y: u16, angle: u8) -> Minutia {
        Minutia { x, y, angle, kind: MinutiaKind::Ending, quality: 60 }
    }

    /// The same minutiae turned by `turn` (in 360/256° units, counter-clockwise as seen) about
    /// the image centre and moved by (dx, dy), on a 1000 × 1000 image.
    fn moved(t: &FingerTemplate, turn: u8, dx: f64, dy: f64) -> FingerTemplate {
        let phi = f64::from(turn) * std::f64::consts::TAU / 256.0;
        let (cx, cy) = (f64::from(t.width()) / 2.0, f64::from(t.height()) / 2.0);
        let minutiae = t
            .minutiae()
            .iter()
            .map(|m| {
                // Math axes (y up) for the turn, then back to image axes.
                let (x, y) = (f64::from(m.x) - cx, cy - f64::from(m.y));
                let (rx, ry) = (x * phi.cos() - y * phi.sin(), x * phi.sin() + y * phi.cos());
                Minutia {
                    x: (500.0 + rx + dx).round() as u16,
                    y: (500.0 - ry + dy).round() as u16,
                    angle: m.angle.wrapping_add(turn),
                    ..*m
                }
            })
            .collect();
        FingerTemplate::new(1000, 1000, minutiae).unwrap()
    }

    #[test]
    fn templates_are_validated_and_never_printed() {
        let ok = vec![minutia(1, 2, 3), minutia(10, 20, 30), minutia(99, 49, 255)];
        let t = FingerTemplate::new(100, 50, ok.clone()).unwrap();
        assert_eq!(t.minutiae(), &ok[..]);
        assert_eq!(format!("{t:?}"), "FingerTemplate(..)");
        assert_eq!(format!("{:?}", ok[0]), "Minutia(..)");
        assert_eq!(FingerTemplate::new(0, 50, ok.clone()), Err(FingerError::ImageSize { width: 0, height: 50, max: IMAGE_SIDE_MAX }));
        assert_eq!(
            FingerTemplate::new(100, 50, ok[..2].to_vec()),
            Err(FingerError::MinutiaCount { got: 2, min: MINUTIAE_MIN, max: MINUTIAE_MAX })
        );
        assert_eq!(FingerTemplate::new(100, 49, ok.clone()), Err(FingerError::Outside { index: 2 }));
        let mut bad = ok.clone();
        bad[1].quality = 101;
        assert_eq!(FingerTemplate::new(100, 50, bad), Err(FingerError::Quality { index: 1, max: QUALITY_MAX }));
        // Error messages name positions in the list, never coordinates.
        assert_eq!(FingerError::Outside { index: 2 }.to_string(), "minutia 2 lies outside the image");
    }

    proptest! {
        #[test]
        fn the_constructor_accepts_exactly_the_valid_templates(
            width in 0u16..2200,
            height in 0u16..2200,
            raw in proptest::collection::vec((0u16..2200, 0u16..2200, any::<u8>(), 0u8..3, 0u8..110), 0..300),
        ) {
            let kinds = [MinutiaKind::Other, MinutiaKind::Ending, MinutiaKind::Bifurcation];
            let minutiae: Vec<Minutia> = raw
                .iter()
                .map(|&(x, y, angle, k, quality)| Minutia { x, y, angle, kind: kinds[usize::from(k)], quality })
                .collect();
            let size_ok = (1..=IMAGE_SIDE_MAX).contains(&width) && (1..=IMAGE_SIDE_MAX).contains(&height);
            let count_ok = (MINUTIAE_MIN..=MINUTIAE_MAX).contains(&minutiae.len());
            let first_bad = minutiae.iter().position(|m| m.x >= width || m.y >= height || m.quality > QUALITY_MAX);
            let result = FingerTemplate::new(width, height, minutiae.clone());
            match (size_ok, count_ok, first_bad) {
                (false, _, _) => prop_assert!(matches!(result, Err(FingerError::ImageSize { .. })), "{:?}", result),
                (true, false, _) => prop_assert!(matches!(result, Err(FingerError::MinutiaCount { .. })), "{:?}", result),
                (true, true, Some(index)) => {
                    let outside = Err(FingerError::Outside { index });
                    let quality = Err(FingerError::Quality { index, max: QUALITY_MAX });
                    prop_assert!(result == outside || result == quality, "{:?}", result);
                }
                (true, true, None) => prop_assert_eq!(result.map(|t| t.minutiae().to_vec()), Ok(minutiae)),
            }
        }

        #[test]
        fn any_valid_template_compares_without_panic(
            a in proptest::collection::vec((0u16..400, 0u16..400, any::<u8>()), MINUTIAE_MIN..60),
            b in proptest::collection::vec((0u16..400, 0u16..400, any::<u8>()), MINUTIAE_MIN..60),
        ) {
            let make = |v: &[(u16, u16, u8)]| FingerTemplate::new(400, 400, v.iter().map(|&(x, y, t)| minutia(x, y, t)).collect()).unwrap();
            let (ta, tb) = (make(&a), make(&b));
            let c = PreparedFinger::new(&ta).compare(&PreparedFinger::new(&tb));
            prop_assert!((0.0..=1.0).contains(&c.score));
            prop_assert!(c.paired as usize <= a.len().min(b.len()));
            // A template matches itself completely.
            let own = PreparedFinger::new(&ta).compare(&PreparedFinger::new(&ta));
            prop_assert!(own.score >= c.score.min(0.999) || a.len() < 8);
        }
    }

    #[test]
    fn degenerate_templates_do_not_break_the_matcher() {
        let same = FingerTemplate::new(10, 10, vec![minutia(5, 5, 0); 3]).unwrap();
        let line = FingerTemplate::new(400, 10, (0..40).map(|i| minutia(i * 10, 5, 64)).collect()).unwrap();
        for (a, b) in [(&same, &same), (&same, &line), (&line, &line)] {
            let c = PreparedFinger::new(a).compare(&PreparedFinger::new(b));
            assert!((0.0..=1.0).contains(&c.score), "{c:?}");
        }
    }

    #[test]
    fn a_rigidly_moved_copy_matches_near_perfectly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(40);
        for (i, (turn, dx, dy)) in
            [(0u8, 0.0, 0.0), (19, 40.0, -25.0), (64, -120.0, 80.0), (128, 10.0, 10.0), (200, 150.0, 150.0)].into_iter().enumerate()
        {
            let t = SynthFinger::random(&mut rng).capture(&mut rng);
            let c = PreparedFinger::new(&t).compare(&PreparedFinger::new(&moved(&t, turn, dx, dy)));
            assert!(c.score > 0.9, "case {i}: {c:?} of {}", t.minutiae().len());
        }
    }

    /// Scores of `n` fingers: each first capture against its second (genuine), and against the
    /// second capture of the next `strangers` fingers (impostor).
    fn scores(seed: u64, n: usize, strangers: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let fingers: Vec<SynthFinger> = (0..n).map(|_| SynthFinger::random(&mut rng)).collect();
        let a: Vec<PreparedFinger> = fingers.iter().map(|f| PreparedFinger::new(&f.capture(&mut rng))).collect();
        let b: Vec<PreparedFinger> = fingers.iter().map(|f| PreparedFinger::new(&f.capture(&mut rng))).collect();
        let genuine = (0..n).map(|i| a[i].compare(&b[i]).score).collect();
        let impostor =
            (0..n).flat_map(|i| (1..=strangers).map(move |k| (i, (i + k) % n))).map(|(i, j)| a[i].compare(&b[j]).score).collect();
        (genuine, impostor)
    }

    fn d_prime(genuine: &[f32], impostor: &[f32]) -> f32 {
        let stats = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (m, v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32)
        };
        let ((mg, vg), (mi, vi)) = (stats(genuine), stats(impostor));
        (mg - mi) / ((vg + vi) / 2.0).sqrt()
    }

    #[test]
    fn genuine_pairs_pass_the_threshold_and_impostors_do_not() {
        let (genuine, impostor) = scores(41, 120, 12);
        let passed = genuine.iter().filter(|&&s| s >= FINGER_THRESHOLD).count();
        let false_matches = impostor.iter().filter(|&&s| s >= FINGER_THRESHOLD).count();
        // FNMR ≈ 0.1% and FMR 10⁻⁴ (calibrated on millions of comparisons): allow some slack.
        assert!(passed >= 118, "{passed} of {} genuine pairs passed", genuine.len());
        assert!(false_matches <= 1, "{false_matches} of {} impostor pairs passed", impostor.len());
    }

    #[test]
    fn fusing_ten_fingers_separates_far_better_than_one() {
        let (genuine, impostor) = scores(42, 200, 10);
        // Fingers of a synthetic person are independent, so blocks of ten are persons.
        let block = |v: &[f32]| -> Vec<f32> { v.chunks_exact(FINGERS).map(|c| fuse(c.iter().copied())).collect() };
        let (single, fused) = (d_prime(&genuine, &impostor), d_prime(&block(&genuine), &block(&impostor)));
        assert!(fused > 2.5 * single, "d′ single {single}, fused {fused}");
        let fused_impostor = block(&impostor);
        assert!(fused_impostor.iter().all(|&s| s < FUSED_THRESHOLD), "{:?}", fused_impostor.iter().copied().fold(0.0, f32::max));
        assert!(block(&genuine).iter().all(|&s| s >= FUSED_THRESHOLD_1N));
        // The same through whole persons.
        let mut rng = rand::rngs::StdRng::seed_from_u64(43);
        let (p, q) = (SynthHands::random(&mut rng), SynthHands::random(&mut rng));
        let prep = |h: &SynthHands, rng: &mut rand::rngs::StdRng| h.capture(rng).map(|t| Some(PreparedFinger::new(&t)));
        let (p1, p2, q1) = (prep(&p, &mut rng), prep(&p, &mut rng), prep(&q, &mut rng));
        assert!(compare_persons(&p1, &p2) >= FUSED_THRESHOLD_1N);
        assert!(compare_persons(&p1, &q1) < FUSED_THRESHOLD);
        // Positions missing on either side are left out.
        let mut thumbs_only = p2.clone();
        thumbs_only[1..].iter_mut().for_each(|f| *f = None);
        assert_eq!(compare_persons(&p1, &thumbs_only), p1[0].as_ref().unwrap().compare(thumbs_only[0].as_ref().unwrap()).score);
    }
}
