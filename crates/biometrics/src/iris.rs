//! Iris matching: 2048-bit iris codes with occlusion masks, compared by fractional Hamming
//! distance over a range of rotations (Daugman, "How iris recognition works", IEEE TCSVT 2004).
//!
//! Layout: 8 concentric rings × 128 angular positions × 2 phase bits = 2048 bits, ring after
//! ring, each ring 256 bits = 4 `u64` words. Turning the eye by one angular position (2.8°)
//! rotates every ring by 2 bits. A mask bit of 1 means the code bit is usable (not eyelid,
//! eyelash or reflection).
//!
//! Score: the fraction of disagreeing bits among the bits both masks keep, minimised over
//! rotations, then normalised for how many bits were compared: `HD_norm = 0.5 − (0.5 − HD)·√(n/911)`
//! (Daugman 2004: 911 is the typical number of bits compared), so a comparison of few bits
//! cannot look confidently alike. 0 = identical, ≈ 0.5 = unrelated; lower is more alike.
//!
//! Default rotation range ±8 positions (±22.5°): covers ordinary head tilt and camera roll; each
//! extra shift adds one comparison per template and raises the impostor floor slightly (the
//! minimum of more samples), which the threshold calibration accounts for.

use crate::BioError;

/// Bits in a code (and in its mask).
pub const CODE_BITS: usize = 2048;
/// 64-bit words in a code.
pub const WORDS: usize = CODE_BITS / 64;
/// Bytes in a code.
pub const CODE_BYTES: usize = CODE_BITS / 8;
/// Rings, angular positions, phase bits.
pub const RINGS: usize = 8;
pub const ANGLES: usize = 128;
const WORDS_PER_RING: usize = WORDS / RINGS;
/// Default rotation search, in angular positions either way.
pub const SHIFTS_DEFAULT: u32 = 8;
/// Largest rotation search accepted (a quarter turn).
pub const SHIFTS_MAX: u32 = 32;
/// Fewer common unmasked bits than this cannot be compared meaningfully.
pub const MIN_COMMON_BITS: u32 = 100;
/// Daugman's normalisation constant: the typical number of bits compared.
const TYPICAL_BITS: f64 = 911.0;

/// One eye's code and mask.
#[derive(Clone, PartialEq, Eq)]
pub struct IrisCode {
    code: [u64; WORDS],
    mask: [u64; WORDS],
}

impl std::fmt::Debug for IrisCode {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IrisCode(..)")
    }
}

impl IrisCode {
    /// From `CODE_BYTES` bytes of code followed by `CODE_BYTES` bytes of mask (little-endian words).
    ///
    /// # Errors
    /// `IrisLength` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BioError> {
        if bytes.len() != 2 * CODE_BYTES {
            return Err(BioError::IrisLength { expected: CODE_BYTES, got: bytes.len() });
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Ok(IrisCode { code: std::array::from_fn(word), mask: std::array::from_fn(|i| word(WORDS + i)) })
    }

    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.code.iter().chain(&self.mask).flat_map(|w| w.to_le_bytes()).collect()
    }

    #[must_use]
    pub fn from_words(code: [u64; WORDS], mask: [u64; WORDS]) -> Self {
        IrisCode { code, mask }
    }

    /// Unmasked bits.
    #[must_use]
    pub fn usable_bits(&self) -> u32 {
        self.mask.iter().map(|w| w.count_ones()).sum()
    }

    /// The code turned by `positions` angular positions (negative: the other way): every ring
    /// rotated by 2 bits per position, code and mask alike.
    #[must_use]
    pub fn rotated(&self, positions: i32) -> Self {
        let bits = (2 * positions).rem_euclid(256) as u32;
        IrisCode { code: rotate_rings(&self.code, bits), mask: rotate_rings(&self.mask, bits) }
    }
}

/// Rotates each 256-bit ring left by `bits` (bit i moves to i + bits, wrapping within the ring).
fn rotate_rings(words: &[u64; WORDS], bits: u32) -> [u64; WORDS] {
    let mut out = [0u64; WORDS];
    for r in 0..RINGS {
        let ring = &words[r * WORDS_PER_RING..(r + 1) * WORDS_PER_RING];
        let mut v = [0u64; WORDS_PER_RING];
        let (whole, part) = ((bits / 64) as usize, bits % 64);
        for (i, slot) in v.iter_mut().enumerate() {
            let src = (i + WORDS_PER_RING - whole) % WORDS_PER_RING;
            let prev = (src + WORDS_PER_RING - 1) % WORDS_PER_RING;
            *slot = if part == 0 { ring[src] } else { (ring[src] << part) | (ring[prev] >> (64 - part)) };
        }
        out[r * WORDS_PER_RING..(r + 1) * WORDS_PER_RING].copy_from_slice(&v);
    }
    out
}

/// (disagreeing bits, bits compared) between two codes as they stand.
#[inline]
#[must_use]
pub fn raw_distance(a: &IrisCode, b: &IrisCode) -> (u32, u32) {
    let mut diff = 0;
    let mut common = 0;
    for i in 0..WORDS {
        let m = a.mask[i] & b.mask[i];
        diff += ((a.code[i] ^ b.code[i]) & m).count_ones();
        common += m.count_ones();
    }
    (diff, common)
}

/// Daugman's normalised fractional Hamming distance for `diff` of `n` bits.
#[inline]
#[must_use]
pub fn normalised(diff: u32, n: u32) -> f64 {
    let hd = f64::from(diff) / f64::from(n.max(1));
    0.5 - (0.5 - hd) * (f64::from(n) / TYPICAL_BITS).sqrt()
}

/// Degrees of freedom of the impostor distribution: strangers' normalised distances are
/// distributed like a binomial fraction of 249 fair coin tosses (Daugman 2004, from 9.1 million
/// comparisons; the synthetic model in `synth` reproduces it).
pub const IMPOSTOR_DOF: u32 = 249;

/// The false-match rate at normalised distance `hd` for a probe searched over `2·shifts + 1`
/// rotations: the chance that a stranger's best rotation scores `hd` or lower. Daugman's
/// extreme-value formula `1 − (1 − P_bin(X ≤ hd·N))^m`, treating the rotations as independent
/// (they are positively correlated, so this over-estimates the FMR: the safe side).
#[must_use]
pub fn fmr(hd: f64, shifts: u32) -> f64 {
    if hd.is_nan() {
        return 1.0;
    }
    let n = IMPOSTOR_DOF;
    let k = (hd * f64::from(n)).floor();
    if k < 0.0 {
        return 0.0;
    }
    if k >= f64::from(n) {
        return 1.0;
    }
    // log of P(X ≤ k) for X ~ Binomial(n, ½), summed in log space (the terms reach 1e-75).
    let k = k as u32;
    let ln_half_n = f64::from(n) * 0.5f64.ln();
    let mut ln_c = 0.0; // ln C(n, 0)
    let mut ln_sum = f64::NEG_INFINITY;
    for j in 0..=k {
        if j > 0 {
            ln_c += (f64::from(n - j + 1) / f64::from(j)).ln();
        }
        let t = ln_c + ln_half_n;
        ln_sum = if ln_sum == f64::NEG_INFINITY { t } else { ln_sum.max(t) + (-(ln_sum - t).abs()).exp().ln_1p() };
    }
    let p = ln_sum.exp().min(1.0);
    let m = f64::from(2 * shifts.min(SHIFTS_MAX) + 1);
    -(m * (-p).ln_1p()).exp_m1()
}

/// A probe prepared for search: its rotations computed once, so each gallery template is
/// compared without shifting.
#[derive(Debug, Clone)]
pub struct Probe {
    rotations: Vec<IrisCode>,
}

impl Probe {
    /// # Errors
    /// `TooFewBits` when the probe itself has too few usable bits.
    pub fn new(code: &IrisCode, shifts: u32) -> Result<Self, BioError> {
        if code.usable_bits() < MIN_COMMON_BITS {
            return Err(BioError::TooFewBits(code.usable_bits()));
        }
        let s = i32::try_from(shifts.min(SHIFTS_MAX)).unwrap_or(0);
        Ok(Probe { rotations: (-s..=s).map(|k| code.rotated(k)).collect() })
    }

    /// The best (lowest) normalised distance to `candidate` over all rotations, or `None` when
    /// no rotation leaves `MIN_COMMON_BITS` bits in common.
    #[must_use]
    pub fn score(&self, candidate: &IrisCode) -> Option<f64> {
        let best = best_distance(&self.rotations, candidate);
        best.is_finite().then_some(best)
    }
}

/// The lowest `normalised` distance of any rotation against `candidate` that leaves
/// `MIN_COMMON_BITS` in common (`+∞` when none does): the hot loop of a 1:N search. Compiled for
/// several instruction sets and picked at run time (`multiversion`): with AVX-512 VPOPCNTDQ the
/// compiler counts bits of eight words per instruction, with AVX2 32 bytes at a time through
/// table look-ups, and with POPCNT one word per instruction; the x86-64 baseline the binary is
/// built for has none of them and counts bits with shifts and masks. The distances of all
/// rotations are computed branch-free into an array (square roots eight at a time under AVX-512)
/// before the minimum is taken.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512vpopcntdq+avx2+fma+popcnt",
    "x86_64+avx2+fma+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
fn best_distance(rotations: &[IrisCode], candidate: &IrisCode) -> f64 {
    const MOST: usize = 2 * SHIFTS_MAX as usize + 1;
    let n = rotations.len().min(MOST);
    let mut diff = [0u32; MOST];
    let mut common = [0u32; MOST];
    // `raw_distance` is inlined here, so it is compiled for each target too.
    for (r, (d, c)) in rotations.iter().zip(diff.iter_mut().zip(common.iter_mut())) {
        (*d, *c) = raw_distance(r, candidate);
    }
    let mut distance = [f64::INFINITY; MOST];
    for ((out, &d), &c) in distance[..n].iter_mut().zip(&diff[..n]).zip(&common[..n]) {
        let v = normalised(d, c);
        *out = if c >= MIN_COMMON_BITS { v } else { f64::INFINITY };
    }
    distance[..n].iter().copied().fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_code(rng: &mut impl Rng) -> IrisCode {
        IrisCode::from_words(std::array::from_fn(|_| rng.random()), [u64::MAX; WORDS])
    }

    /// Flips each bit with probability `p`.
    fn noisy(c: &IrisCode, p: f64, rng: &mut impl Rng) -> IrisCode {
        let mut code = c.code;
        for w in &mut code {
            for b in 0..64 {
                if rng.random_bool(p) {
                    *w ^= 1 << b;
                }
            }
        }
        IrisCode::from_words(code, c.mask)
    }

    #[test]
    fn bytes_round_trip_and_lengths_are_checked() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let c = random_code(&mut rng);
        assert_eq!(IrisCode::from_bytes(&c.to_bytes()).unwrap(), c);
        assert_eq!(IrisCode::from_bytes(&[0; 511]), Err(BioError::IrisLength { expected: 256, got: 511 }));
        assert_eq!(format!("{c:?}"), "IrisCode(..)");
    }

    #[test]
    fn rotation_is_per_ring_and_invertible() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let c = random_code(&mut rng);
        for k in [-40, -9, -1, 0, 1, 7, 32, 64, 127, 128] {
            assert_eq!(c.rotated(k).rotated(-k), c, "shift {k}");
        }
        assert_eq!(c.rotated(128), c, "a full turn");
        // One bit set at the end of ring 0 wraps to the start of ring 0, not into ring 1.
        let mut code = [0u64; WORDS];
        code[WORDS_PER_RING - 1] = 1 << 63;
        let one = IrisCode::from_words(code, [u64::MAX; WORDS]).rotated(1);
        assert_eq!(one.code[0], 0b10);
        assert!(one.code[WORDS_PER_RING..].iter().all(|w| *w == 0));
    }

    #[test]
    fn a_turned_eye_matches_itself_and_strangers_sit_near_one_half() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let enrolled = random_code(&mut rng);
        // The same eye, turned 5 positions, with 10% of bits flipped by noise.
        let probe = Probe::new(&noisy(&enrolled.rotated(5), 0.10, &mut rng), SHIFTS_DEFAULT).unwrap();
        let genuine = probe.score(&enrolled).unwrap();
        assert!(genuine < 0.15, "{genuine}");
        // Without the rotation search the same pair looks unrelated.
        let unshifted = Probe::new(&noisy(&enrolled.rotated(5), 0.10, &mut rng), 0).unwrap().score(&enrolled).unwrap();
        assert!(unshifted > 0.4, "{unshifted}");
        let strangers: Vec<f64> = (0..200).map(|_| probe.score(&random_code(&mut rng)).unwrap()).collect();
        let min = strangers.iter().copied().fold(1.0, f64::min);
        assert!(min > 0.40, "closest stranger {min}");
    }

    #[test]
    fn false_match_rate_follows_daugman() {
        // Daugman 2004, Table 1 (m = 7 rotations, N = 249): HD 0.26 → 1 in 10^13, HD 0.30 → about
        // 1 in 1.5 × 10^9, HD 0.33 → about 1 in 4 × 10^6.
        assert!((1e-14..1e-12).contains(&fmr(0.26, 3)), "{}", fmr(0.26, 3));
        assert!((1e-10..1e-8).contains(&fmr(0.30, 3)), "{}", fmr(0.30, 3));
        assert!((1e-7..1e-5).contains(&fmr(0.33, 3)), "{}", fmr(0.33, 3));
        assert!(fmr(0.5, 8) > 0.5);
        assert_eq!(fmr(-0.1, 8), 0.0);
        assert_eq!(fmr(1.0, 8), 1.0);
        assert_eq!(fmr(f64::NAN, 8), 1.0);
        assert!(fmr(0.30, 8) > fmr(0.30, 3), "more rotations, more chances for a stranger");
    }

    #[test]
    fn masked_bits_do_not_count_and_too_few_bits_do_not_compare() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let a = random_code(&mut rng);
        // Differ only where b's mask hides it: identical as far as anyone can tell.
        let mut code = a.code;
        let mut mask = [u64::MAX; WORDS];
        code[0] = !code[0];
        mask[0] = 0;
        let b = IrisCode::from_words(code, mask);
        assert_eq!(raw_distance(&a, &b), (0, 2048 - 64));
        let blind = IrisCode::from_words(a.code, [0; WORDS]);
        assert_eq!(Probe::new(&blind, 0).unwrap_err(), BioError::TooFewBits(0));
        assert_eq!(Probe::new(&a, 0).unwrap().score(&blind), None);
        // Normalisation: the same raw fraction over fewer bits is pulled towards 0.5.
        assert!(normalised(100, 400) > normalised(250, 1000));
        assert!((normalised(0, 911) - 0.0).abs() < 1e-12);
    }
}
