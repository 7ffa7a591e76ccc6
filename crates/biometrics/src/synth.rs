//! Synthetic biometric populations with known ground truth, reproducible from a seed (the
//! caller passes the RNG). Iris model:
//!
//! - A person's eye is a field of independent standard normal values, one per code bit
//!   (ring × angular position × phase). Each code bit is the sign of the sum of its phase's
//!   values over a circular window of `WINDOW` = 9 angular positions around it in its ring, so
//!   neighbouring bits along a ring are correlated as a real iris code's are, and the
//!   correlation is the same at every position (stationary): turning one code against another
//!   never lines up blocks, so strangers' distances have the same spread at every rotation the
//!   search tries. Between strangers the disagreement bits are then correlated at lag `k` by
//!   `ρ(k)² = ((2/π)·asin(1 − |k|/9))²`, whose sum over all lags is 3.65; the variance of a
//!   *normalised* distance (`iris::normalised`, Daugman's rescaling to 911 compared bits) is
//!   `¼ · 3.65 / 911`, a binomial with 911 / 3.65 ≈ 249 degrees of freedom around 0.5 — the
//!   shape Daugman measured on 9.1 million real comparisons (HD 0.499 ± 0.032), and exactly
//!   what the calibration (`iris::fmr`) assumes. (An earlier model of independent bits each
//!   copied over ~5.5 adjacent code bits had the right spread on average, but at rotations that
//!   lined the copies up it had only ~170 degrees of freedom, and its best-of-17-rotations tail
//!   was about 75 times the calibration's.)
//! - A capture of that eye: every value gets independent normal noise of deviation `σ`, drawn
//!   per capture so that a code bit flips with probability 5–15% (`P(flip) = acos(1/√(1+σ²))/π`,
//!   so genuine distances spread like real ones and errors come in short runs, as real ones
//!   do), the eye is turned by up to ±4 angular positions, and an eyelid hides a random arc of
//!   the outer rings (mask bits 0).

use crate::iris::{ANGLES, IrisCode, RINGS, WORDS};
use rand::Rng;

/// Angular positions each code bit sums over (see the module doc: 9 gives ≈ 249 degrees of
/// freedom of strangers' normalised distances; measured by the tests in `iris_gallery`).
const WINDOW: usize = 9;
/// Values per eye: one per code bit.
const VALUES: usize = WORDS * 64;

/// One synthetic eye: its field of values (see the module doc).
#[derive(Clone)]
pub struct SynthEye {
    values: Box<[f32; VALUES]>,
}

impl std::fmt::Debug for SynthEye {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynthEye(..)")
    }
}

impl SynthEye {
    pub fn random(rng: &mut impl Rng) -> Self {
        let mut values = Box::new([0f32; VALUES]);
        crate::synth_face::normals(rng, &mut values[..]);
        SynthEye { values }
    }

    /// One capture of this eye (see the module doc for the model).
    pub fn capture(&self, rng: &mut impl Rng) -> IrisCode {
        let flip: f64 = rng.random_range(0.05..0.15);
        let sigma = ((std::f64::consts::PI * flip).cos().powi(-2) - 1.0).sqrt() as f32;
        let mut noisy = [0f32; VALUES];
        crate::synth_face::normals(rng, &mut noisy);
        for (n, v) in noisy.iter_mut().zip(self.values.iter()) {
            *n = v + sigma * *n;
        }
        let mut code = [0u64; WORDS];
        let half = (WINDOW / 2) as isize;
        for ring in 0..RINGS {
            for phase in 0..2 {
                let at = |angle: isize| ring * ANGLES * 2 + angle.rem_euclid(ANGLES as isize) as usize * 2 + phase;
                // Running circular window sum along the ring.
                let mut sum: f32 = (-half..=half).map(|a| noisy[at(a)]).sum();
                for angle in 0..ANGLES as isize {
                    if angle > 0 {
                        sum += noisy[at(angle + half)] - noisy[at(angle - half - 1)];
                    }
                    if sum > 0.0 {
                        let n = at(angle);
                        code[n / 64] |= 1 << (n % 64);
                    }
                }
            }
        }
        // Eyelid: hide an arc of up to a quarter of the angles in the two outer rings.
        let mut mask = [u64::MAX; WORDS];
        let arc = rng.random_range(0..ANGLES / 4);
        let start = rng.random_range(0..ANGLES);
        for ring in RINGS - 2..RINGS {
            for a in 0..arc {
                for p in 0..2 {
                    let n = ring * ANGLES * 2 + ((start + a) % ANGLES) * 2 + p;
                    mask[n / 64] &= !(1 << (n % 64));
                }
            }
        }
        IrisCode::from_words(code, mask).rotated(rng.random_range(-4..=4))
    }
}

/// A synthetic person: two eyes, a face and ten fingers, each following its own model
/// ([`SynthEye`], [`crate::synth_face::SynthFace`], [`crate::synth_finger::SynthHands`]); the
/// modalities are drawn independently, as a real person's are independent between strangers.
#[derive(Debug, Clone)]
pub struct SynthPerson {
    pub eyes: [SynthEye; 2],
    pub face: crate::synth_face::SynthFace,
    pub hands: crate::synth_finger::SynthHands,
}

impl SynthPerson {
    pub fn random(rng: &mut impl Rng) -> Self {
        SynthPerson {
            eyes: [SynthEye::random(rng), SynthEye::random(rng)],
            face: crate::synth_face::SynthFace::random(rng),
            hands: crate::synth_finger::SynthHands::random(rng),
        }
    }

    /// One capture session: both irises (right, left), the face, all ten fingers (ISO positions
    /// 1–10).
    pub fn capture(&self, rng: &mut impl Rng) -> crate::templates::TemplateSet {
        use crate::templates::Eye;
        crate::templates::TemplateSet {
            irises: vec![(Eye::Right, self.eyes[0].capture(rng)), (Eye::Left, self.eyes[1].capture(rng))],
            face: Some(self.face.capture(rng)),
            fingers: self.hands.capture(rng).into_iter().zip(1u8..).map(|(t, position)| (position, t)).collect(),
        }
    }

    /// One capture session as a MOSIP CBEFF document (`TemplateSet::to_birs`).
    pub fn cbeff(&self, rng: &mut impl Rng, creation_date: &str) -> Vec<u8> {
        crate::cbeff::emit(&self.capture(rng).to_birs(creation_date)).into_bytes()
    }
}
