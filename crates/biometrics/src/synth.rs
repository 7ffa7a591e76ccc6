//! Synthetic biometric populations with known ground truth, reproducible from a seed (the
//! caller passes the RNG). Iris model:
//!
//! - A person's eye is 375 independent random bits, each spread over about 5.5 adjacent code
//!   bits (neighbouring bits of a real iris code are correlated). Two strangers' codes then
//!   disagree in a fraction of bits whose *normalised* distance (`iris::normalised`, Daugman's
//!   rescaling to 911 compared bits) is distributed like a binomial with ≈ 249 degrees of
//!   freedom around 0.5, the shape Daugman measured on 9.1 million real comparisons (HD 0.499 ±
//!   0.032). The calibration (`iris::fmr`) assumes exactly that of normalised distances; a
//!   model matching 249 degrees of freedom in *raw* distances over ≈ 1,950 compared bits would
//!   be twice as wide after normalisation and make strangers look like matches.
//! - A capture of that eye: every independent bit flips with probability `noise` (drawn per
//!   capture from 5–15%, so genuine distances spread like real ones), the eye is turned by up to
//!   ±4 angular positions, and an eyelid hides a random arc of the outer rings (mask bits 0).

use crate::iris::{ANGLES, IrisCode, RINGS, WORDS};
use rand::Rng;

/// Independent bits per eye, each spread over about 5.5 adjacent code bits. Measured (the test in
/// `iris_gallery`): 350 gives ≈ 235 degrees of freedom of normalised distances between
/// strangers, 375 ≈ 250, 400 ≈ 261 (two captures are turned against each other by a number of
/// bits that rarely lines the blocks up, and misaligned blocks add comparisons).
const INDEPENDENT_BITS: usize = 375;

/// One synthetic eye: its independent bits.
#[derive(Clone)]
pub struct SynthEye {
    bits: [bool; INDEPENDENT_BITS],
}

impl std::fmt::Debug for SynthEye {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynthEye(..)")
    }
}

impl SynthEye {
    pub fn random(rng: &mut impl Rng) -> Self {
        SynthEye { bits: std::array::from_fn(|_| rng.random()) }
    }

    /// One capture of this eye (see the module doc for the model).
    pub fn capture(&self, rng: &mut impl Rng) -> IrisCode {
        let noise = rng.random_range(0.05..0.15);
        let flipped: Vec<bool> = self.bits.iter().map(|b| *b ^ rng.random_bool(noise)).collect();
        let mut code = [0u64; WORDS];
        for n in 0..WORDS * 64 {
            if flipped[n * INDEPENDENT_BITS / (WORDS * 64)] {
                code[n / 64] |= 1 << (n % 64);
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
