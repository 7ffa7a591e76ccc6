//! Face matching: fixed-length embeddings compared by cosine similarity; int8-quantized 1:N gallery with exact f32 re-ranking.
//!
//! A face recogniser (a neural network outside this crate) turns a face image into an
//! embedding: [`FACE_DIM`] = 512 numbers, the size of ArcFace-class models (Deng et al.,
//! "ArcFace: additive angular margin loss for deep face recognition", CVPR 2019). Tessera stores
//! it normalised to unit length, so the cosine of two embeddings is their dot product.
//!
//! # Score scale
//!
//! The score is the cosine similarity, from −1 to 1; higher is more alike. Two captures of one
//! person typically score 0.5–0.9, two strangers around 0 to 0.1. The thresholds below are
//! calibrated on Tessera's synthetic population ([`crate::synth_face`]); the scale of a real
//! recogniser differs from model to model, so a deployment calibrates its own on its own data
//! (the bench in `examples/face_bench.rs` shows how: all pairs of one capture per person for
//! impostors, pairs of captures of the same person for genuine scores).
//!
//! # Template format (`TFE1`)
//!
//! Tessera's face template, carried inside CBEFF: the 4 bytes `TFE1`, the dimension as a
//! little-endian `u16` (512), then that many little-endian IEEE-754 `f32` values, the unit
//! vector: 2054 bytes in all. Parsing rejects another magic, another dimension, another length,
//! NaN or infinite values and vectors whose length is not 1 within [`NORM_TOLERANCE`]; it keeps
//! the values exactly as sent, so bytes round-trip.
//!
//! # Search
//!
//! [`FaceGallery`] is the 1:N search (see `face/gallery.rs` for the three stages: sign-bit
//! Hamming pre-filter, int8 scoring of the short list, exact f32 re-ranking).

mod gallery;
mod kernels;

pub use gallery::{FaceGallery, FaceHit, GALLERY_MAX, RERANK, SHORTLIST_DEFAULT, SHORTLIST_MAX, THREADS_MAX};

/// Dimensions of a face embedding.
pub const FACE_DIM: usize = 512;
/// First four bytes of a face template.
pub const TEMPLATE_MAGIC: [u8; 4] = *b"TFE1";
/// Bytes of a face template: magic, `u16` dimension, `FACE_DIM` `f32` values.
pub const TEMPLATE_BYTES: usize = TEMPLATE_MAGIC.len() + 2 + 4 * FACE_DIM;
/// How far from 1 the length of a parsed template's vector may be (f32 rounding of a
/// normalised vector is about 1e-7; anything further was not normalised).
pub const NORM_TOLERANCE: f32 = 1e-3;

/// 1:1 verification threshold at a false-match rate of 1 in 10,000: on the synthetic population
/// (see [`crate::synth_face`] for how it was measured) FMR 0.95e-4 at 0.347, FNMR 0.43%.
pub const THRESHOLD_FMR_1E4: f32 = 0.35;
/// 1:1 threshold at a false-match rate of 1 in 1,000,000 (measured FMR 1.0e-6 at 0.419, FNMR
/// 1.15%).
pub const THRESHOLD_FMR_1E6: f32 = 0.42;
/// 1:N threshold for a gallery of 1,000,000 faces at a false-positive identification rate of
/// about 1%. A search compares with every face, so FPIR ≈ N·FMR while small: 1% at N = 10⁶ needs
/// FMR ≈ 1e-8, which the 1:1 table extrapolates to ≈ 0.47 (0.419 at 1e-6, 0.446 at 1e-7).
/// Measured directly (exact search of 1,024 strangers against a million faces,
/// `examples/face_bench.rs search`): the best stranger reaches 0.47 for 1.2% of searches and
/// 0.48 for 0.1%; FNIR (the mate not first at or above the threshold) 2.7% at 0.47. The 1:1
/// thresholds are useless at this size: 83% of strangers find someone at 0.35.
pub const THRESHOLD_1N_1M_FPIR_1E2: f32 = 0.47;

/// Errors of face templates and galleries. Messages never repeat the template's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaceError {
    #[error("a face embedding must have {expected} values, got {got}")]
    Dimension { expected: usize, got: usize },
    #[error("a face embedding value is NaN or infinite")]
    NotFinite,
    #[error("a face embedding cannot be the zero vector")]
    Zero,
    #[error("not a face template (the first bytes are not TFE1)")]
    Magic,
    #[error("a face template must be {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("a face template's vector must have length 1")]
    NotUnit,
    #[error("the face gallery is full ({max} templates)")]
    GalleryFull { max: usize },
}

/// A face embedding: a unit vector of [`FACE_DIM`] finite `f32` values.
#[derive(Clone, PartialEq)]
pub struct FaceEmbedding {
    v: [f32; FACE_DIM],
}

impl std::fmt::Debug for FaceEmbedding {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaceEmbedding(..)")
    }
}

impl FaceEmbedding {
    /// From a recogniser's output, normalised to unit length here.
    ///
    /// # Errors
    /// `Dimension` unless there are exactly `FACE_DIM` values, `NotFinite` for NaN or infinity,
    /// `Zero` for a vector too short to have a direction.
    pub fn from_f32(values: &[f32]) -> Result<Self, FaceError> {
        let v: [f32; FACE_DIM] = values.try_into().map_err(|_| FaceError::Dimension { expected: FACE_DIM, got: values.len() })?;
        if !v.iter().all(|x| x.is_finite()) {
            return Err(FaceError::NotFinite);
        }
        // In f64: squares of large f32 values would overflow f32.
        let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if norm < f64::from(f32::MIN_POSITIVE) {
            return Err(FaceError::Zero);
        }
        Ok(FaceEmbedding { v: v.map(|x| (f64::from(x) / norm) as f32) })
    }

    /// The unit vector.
    #[must_use]
    pub fn values(&self) -> &[f32; FACE_DIM] {
        &self.v
    }

    /// The `TFE1` template (see the module doc).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TEMPLATE_BYTES);
        out.extend_from_slice(&TEMPLATE_MAGIC);
        out.extend_from_slice(&(FACE_DIM as u16).to_le_bytes());
        for x in &self.v {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Parses a `TFE1` template.
    ///
    /// # Errors
    /// `Magic`, `Dimension` (a dimension other than `FACE_DIM`), `Length`, `NotFinite`, `NotUnit`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FaceError> {
        let header = TEMPLATE_MAGIC.len() + 2;
        let (Some(magic), Some(dim)) = (bytes.get(..4), bytes.get(4..header)) else {
            return Err(FaceError::Length { expected: TEMPLATE_BYTES, got: bytes.len() });
        };
        if magic != TEMPLATE_MAGIC {
            return Err(FaceError::Magic);
        }
        let dim = usize::from(u16::from_le_bytes([dim[0], dim[1]]));
        if dim != FACE_DIM {
            return Err(FaceError::Dimension { expected: FACE_DIM, got: dim });
        }
        let body = bytes.get(header..).unwrap_or_default();
        if body.len() != 4 * FACE_DIM {
            return Err(FaceError::Length { expected: TEMPLATE_BYTES, got: bytes.len() });
        }
        let mut v = [0f32; FACE_DIM];
        for (x, b) in v.iter_mut().zip(body.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(FaceError::NotFinite);
        }
        let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if (norm - 1.0).abs() > f64::from(NORM_TOLERANCE) {
            return Err(FaceError::NotUnit);
        }
        Ok(FaceEmbedding { v })
    }
}

/// The calibration curve of the synthetic population ([`crate::synth_face`], the table in its
/// module doc): `(cosine, log10 FMR)`; beyond 0.446 extrapolated along the last segment (one
/// decade per 0.027), which the exponential-like tail of impostor cosines supports.
static CALIBRATION: [(f64, f64); 7] =
    [(0.0, -0.4), (0.224, -2.0), (0.296, -3.0), (0.347, -4.0), (0.387, -5.0), (0.419, -6.0), (0.446, -7.0)];

/// The 1:1 false-match rate at cosine `score` (for fusion: `crate::fusion`).
#[must_use]
pub fn fmr(score: f64) -> f64 {
    crate::fusion::Calibration::new(&CALIBRATION).fmr(score)
}

/// Cosine similarity of two embeddings (their dot product, as both have unit length), in
/// −1..=1; higher is more alike. Computed in f32 in a fixed order: the 1:N search reports
/// exactly this value for every hit.
#[must_use]
pub fn cosine(a: &FaceEmbedding, b: &FaceEmbedding) -> f32 {
    kernels::dot_f32(&a.v, &b.v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn embedding(seed: u64) -> FaceEmbedding {
        let mut s = seed;
        let v: Vec<f32> = (0..FACE_DIM)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        FaceEmbedding::from_f32(&v).unwrap()
    }

    #[test]
    fn embeddings_are_checked_and_normalised() {
        assert_eq!(FaceEmbedding::from_f32(&[1.0; 511]), Err(FaceError::Dimension { expected: 512, got: 511 }));
        assert_eq!(FaceEmbedding::from_f32(&[]), Err(FaceError::Dimension { expected: 512, got: 0 }));
        let mut v = vec![0.5f32; FACE_DIM];
        assert_eq!(FaceEmbedding::from_f32(&vec![0.0; FACE_DIM]), Err(FaceError::Zero));
        v[3] = f32::NAN;
        assert_eq!(FaceEmbedding::from_f32(&v), Err(FaceError::NotFinite));
        v[3] = f32::INFINITY;
        assert_eq!(FaceEmbedding::from_f32(&v), Err(FaceError::NotFinite));
        // Huge and tiny values still give a unit vector pointing the same way.
        v[3] = 0.5;
        for scale in [f32::MAX / 2.0, 1.0, 1e-30] {
            let e = FaceEmbedding::from_f32(&v.iter().map(|x| x * scale).collect::<Vec<_>>()).unwrap();
            assert!((cosine(&e, &e) - 1.0).abs() < 1e-5);
            assert!((e.values()[0] - 1.0 / (FACE_DIM as f32).sqrt()).abs() < 1e-6);
        }
        let a = embedding(1);
        let neg = FaceEmbedding::from_f32(&a.values().map(|x| -x)).unwrap();
        assert!((cosine(&a, &neg) + 1.0).abs() < 1e-5);
        assert!(cosine(&a, &embedding(2)).abs() < 0.2);
    }

    #[test]
    fn debug_and_errors_show_no_values() {
        let e = embedding(3);
        assert_eq!(format!("{e:?}"), "FaceEmbedding(..)");
        let mut bytes = e.to_bytes();
        bytes[10] = 0xff;
        bytes[11] = 0xff;
        bytes[12] = 0xff;
        bytes[13] = 0x7f;
        let err = FaceEmbedding::from_bytes(&bytes).unwrap_err();
        assert_eq!(err, FaceError::NotFinite);
        assert!(!err.to_string().contains("255"));
    }

    #[test]
    fn template_layout_and_rejections() {
        let e = embedding(4);
        let bytes = e.to_bytes();
        assert_eq!(bytes.len(), TEMPLATE_BYTES);
        assert_eq!(TEMPLATE_BYTES, 2054);
        assert_eq!(&bytes[..6], b"TFE1\x00\x02");
        assert_eq!(bytes[6..10], e.values()[0].to_le_bytes());
        assert_eq!(FaceEmbedding::from_bytes(&bytes).unwrap(), e);

        let short = FaceError::Length { expected: TEMPLATE_BYTES, got: 5 };
        assert_eq!(FaceEmbedding::from_bytes(&bytes[..5]), Err(short));
        assert_eq!(FaceEmbedding::from_bytes(&bytes[..2053]), Err(FaceError::Length { expected: TEMPLATE_BYTES, got: 2053 }));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(FaceEmbedding::from_bytes(&long), Err(FaceError::Length { expected: TEMPLATE_BYTES, got: 2055 }));
        let mut magic = bytes.clone();
        magic[3] = b'2';
        assert_eq!(FaceEmbedding::from_bytes(&magic), Err(FaceError::Magic));
        let mut dim = bytes.clone();
        dim[4] = 0;
        dim[5] = 1;
        assert_eq!(FaceEmbedding::from_bytes(&dim), Err(FaceError::Dimension { expected: 512, got: 256 }));
        // A vector that was not normalised (all values doubled) is refused, not silently fixed.
        let doubled = FaceEmbedding { v: e.values().map(|x| 2.0 * x) };
        assert_eq!(FaceEmbedding::from_bytes(&doubled.to_bytes()), Err(FaceError::NotUnit));
        let zero = FaceEmbedding { v: [0.0; FACE_DIM] };
        assert_eq!(FaceEmbedding::from_bytes(&zero.to_bytes()), Err(FaceError::NotUnit));
    }

    proptest! {
        #[test]
        fn any_valid_embedding_round_trips(values in proptest::collection::vec(-1000.0f32..1000.0, FACE_DIM)) {
            prop_assume!(values.iter().any(|x| x.abs() > 1e-3));
            let e = FaceEmbedding::from_f32(&values).unwrap();
            let back = FaceEmbedding::from_bytes(&e.to_bytes()).unwrap();
            // Bit for bit, so a template's bytes identify it.
            prop_assert_eq!(back.to_bytes(), e.to_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            if let Ok(e) = FaceEmbedding::from_bytes(&bytes) {
                prop_assert_eq!(e.to_bytes(), bytes);
            }
        }

        #[test]
        fn damaged_templates_are_rejected(seed in any::<u64>(), at in 0usize..TEMPLATE_BYTES, cut in 0usize..TEMPLATE_BYTES, byte in any::<u8>()) {
            let bytes = embedding(seed).to_bytes();
            prop_assert!(FaceEmbedding::from_bytes(&bytes[..cut]).is_err());
            let mut changed = bytes.clone();
            changed[at] = byte;
            match FaceEmbedding::from_bytes(&changed) {
                // A change inside a value can leave a unit vector (a sign, low mantissa bits):
                // it is then kept exactly as sent. A changed header never parses.
                Ok(e) => prop_assert!((at >= 6 || changed == bytes) && e.to_bytes() == changed),
                Err(_) => prop_assert!(changed != bytes),
            }
        }
    }
}
