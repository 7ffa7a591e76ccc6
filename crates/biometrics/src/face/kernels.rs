//! The face search's inner loops and its encoding of a gallery face: a fixed random rotation,
//! 512 sign bits and an int8 code. Written with fixed sizes and independent accumulators so the
//! compiler vectorises them (no `unsafe`, no intrinsics).

use super::FACE_DIM;

/// 64-bit words of sign bits per face (one bit per dimension).
pub(crate) const SIGN_WORDS: usize = FACE_DIM / 64;

/// Rounds of the randomised Hadamard rotation. One round of `H·D` leaves structure that
/// repeats across rows of `H` when the embeddings' energy sits in a few coordinates; three
/// rounds (`H·D₃·H·D₂·H·D₁`) behave like a uniformly random rotation for sign hashing (Andoni,
/// Indyk, Laarhoven, Razenshteyn, Schmidt, "Practical and optimal LSH for angular distance",
/// NeurIPS 2015).
const ROUNDS: usize = 3;

/// The random signs `D₁, D₂, D₃`: a constant of the template encoding (every gallery and every
/// probe must use the same rotation), drawn once from SplitMix64 with a fixed seed.
const SIGNS: [[u64; SIGN_WORDS]; ROUNDS] = signs(0x7465_7373_6572_6131);

const fn signs(seed: u64) -> [[u64; SIGN_WORDS]; ROUNDS] {
    let mut out = [[0u64; SIGN_WORDS]; ROUNDS];
    let mut state = seed;
    let mut r = 0;
    while r < ROUNDS {
        let mut w = 0;
        while w < SIGN_WORDS {
            // SplitMix64 (Steele, Lea, Flood 2014).
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            out[r][w] = z ^ (z >> 31);
            w += 1;
        }
        r += 1;
    }
    out
}

/// A face as the fast stages see it.
#[derive(Clone)]
pub(crate) struct Encoded {
    /// Sign of each rotated coordinate (1 = negative).
    pub bits: [u64; SIGN_WORDS],
    /// Rotated coordinates scaled so the largest magnitude is 127.
    pub code: [i8; FACE_DIM],
    /// Value of one code step: rotated coordinate ≈ `code · scale`.
    pub scale: f32,
}

/// Rotation, sign bits and int8 code of a unit vector. The rotation is orthonormal, so dot
/// products (cosines) are unchanged by it; it spreads every embedding's energy evenly over the
/// coordinates, so each sign bit carries about as much information as any other, and the int8
/// step (set by the largest coordinate) is as fine as it can be.
pub(crate) fn encode(v: &[f32; FACE_DIM]) -> Encoded {
    let mut y = *v;
    for signs in &SIGNS {
        for (chunk, word) in y.chunks_exact_mut(64).zip(signs) {
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = f32::from_bits(x.to_bits() ^ ((((word >> i) & 1) as u32) << 31));
            }
        }
        hadamard(&mut y);
    }
    // Each unnormalised transform multiplies lengths by √512; three of them by 512·√512.
    let norm = 1.0 / (FACE_DIM as f32 * (FACE_DIM as f32).sqrt());
    // Sixteen running maxima rather than one, so the loop vectorises.
    let mut maxima = [0f32; 16];
    for chunk in y.chunks_exact_mut(16) {
        for (m, x) in maxima.iter_mut().zip(chunk) {
            *x *= norm;
            *m = m.max(x.abs());
        }
    }
    let max = maxima.iter().fold(0f32, |a, &b| a.max(b));
    let mut bits = [0u64; SIGN_WORDS];
    for (word, chunk) in bits.iter_mut().zip(y.chunks_exact(64)) {
        for (i, x) in chunk.iter().enumerate() {
            *word |= u64::from(x.to_bits() >> 31) << i;
        }
    }
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    // Rounds half away from zero by adding ±0.5 and truncating (`f32::round` is a library call
    // on the SSE2 baseline). |x·inv| ≤ 127 up to rounding; the clamp makes sure.
    let code = std::array::from_fn(|i| {
        let r = y[i] * inv;
        ((r + 0.5f32.copysign(r)) as i32).clamp(-127, 127) as i8
    });
    Encoded { bits, code, scale }
}

/// In-place fast Walsh–Hadamard transform (unnormalised), 9 butterfly passes over 512 values.
fn hadamard(v: &mut [f32; FACE_DIM]) {
    let mut h = 1;
    while h < FACE_DIM {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*x + *y, *x - *y);
                *x = s;
                *y = d;
            }
        }
        h *= 2;
    }
}

/// Hamming distance of two 512-bit sign codes. `count_ones` becomes the `popcnt` instruction
/// where the target has it and a vectorised bit-count otherwise.
#[inline]
pub(crate) fn hamming(a: &[u64; SIGN_WORDS], b: &[u64; SIGN_WORDS]) -> u32 {
    let mut d = 0;
    for (x, y) in a.iter().zip(b) {
        d += (x ^ y).count_ones();
    }
    d
}

/// Dot product of two int8 codes, accumulated exactly in i32 (512 · 127² < 2³¹). Sixteen
/// independent lanes let the compiler widen to i16 and use multiply-add instructions. Not
/// inlined: inlined into the short-list loop, the compiler stopped vectorising it.
#[inline(never)]
pub(crate) fn dot_i8(a: &[i8; FACE_DIM], b: &[i8; FACE_DIM]) -> i32 {
    let mut acc = [0i32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum()
}

/// Loads one value from every cache line of each row, all before any row is scored. The rows of
/// a short list are scattered over a gallery far larger than the caches (and its page tables),
/// so each is a string of misses: scoring a row at a time waits for its lines one after another
/// (measured here: ≈ 0.85 µs per 512-byte row), while these independent loads put the lines of
/// several rows in flight at once (≈ 0.34 µs per row in groups of 8). `black_box` keeps the
/// loads, whose values are not needed.
pub(crate) fn touch<'a, T: Copy + 'a, const N: usize>(rows: impl IntoIterator<Item = &'a [T; N]>) {
    // Values per 64-byte line.
    let step = (64 / size_of::<T>()).max(1);
    for row in rows {
        let mut i = 0;
        while i < N {
            std::hint::black_box(row[i]);
            i += step;
        }
        // A row need not start on a line boundary: its last line too.
        if let Some(last) = row.last() {
            std::hint::black_box(*last);
        }
    }
}

/// Dot product of two f32 vectors with sixteen partial sums (the order of additions is fixed,
/// so every caller gets bit-identical scores for the same pair). Not inlined, for the same
/// reason as `dot_i8`.
#[inline(never)]
pub(crate) fn dot_f32(a: &[f32; FACE_DIM], b: &[f32; FACE_DIM]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64) -> [f32; FACE_DIM] {
        let mut s = seed;
        let mut v: [f32; FACE_DIM] = std::array::from_fn(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        });
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[test]
    fn the_rotation_keeps_dot_products_and_codes_approximate_them() {
        let (a, b) = (unit(1), unit(2));
        let (ea, eb) = (encode(&a), encode(&b));
        // Undo the quantisation scale: the int8 dot product approximates the cosine.
        let approx = dot_i8(&ea.code, &eb.code) as f32 * ea.scale * eb.scale;
        let exact = dot_f32(&a, &b);
        assert!((approx - exact).abs() < 0.01, "{approx} vs {exact}");
        let self_approx = dot_i8(&ea.code, &ea.code) as f32 * ea.scale * ea.scale;
        assert!((self_approx - 1.0).abs() < 0.01, "{self_approx}");
        assert!(ea.code.iter().any(|&c| c.unsigned_abs() == 127));
        // A vector and its negation disagree in every sign bit, a vector and itself in none.
        let neg = a.map(|x| -x);
        assert_eq!(hamming(&ea.bits, &encode(&neg).bits), 512);
        assert_eq!(hamming(&ea.bits, &ea.bits), 0);
    }

    #[test]
    fn sign_bits_estimate_the_angle() {
        // Random hyperplanes disagree on a pair with probability θ/π (Charikar 2002).
        let mut total = 0.0;
        let mut err = 0.0f64;
        for s in 0..40 {
            let (a, b) = (unit(100 + s), unit(200 + s));
            let mixed: [f32; FACE_DIM] = std::array::from_fn(|i| a[i] + 0.8 * b[i]);
            let n = mixed.iter().map(|x| x * x).sum::<f32>().sqrt();
            let c = mixed.map(|x| x / n);
            let theta = f64::from(dot_f32(&a, &c)).acos();
            let d = f64::from(hamming(&encode(&a).bits, &encode(&c).bits));
            err += d - 512.0 * theta / std::f64::consts::PI;
            total += 1.0;
        }
        // Each estimate has a standard deviation of about 10 bits; the mean error is small.
        assert!((err / total).abs() < 5.0, "mean error {}", err / total);
    }

    #[test]
    fn the_signs_are_balanced() {
        let ones: u32 = SIGNS.iter().flatten().map(|w| w.count_ones()).sum();
        assert!((700..836).contains(&ones), "{ones} of 1536");
    }
}
