//! ISO/IEC 19794-5 face image records (`FAC\0`): the 2005 edition (version `"010\0"`, the ICAO
//! passport one) and the 2011 edition (version `"030\0"`, the one MOSIP's SBI devices send),
//! parsed into typed records and emitted again.
//!
//! 2005 layout (big-endian): general header of 14 bytes — magic, version, record length (4),
//! image count (2); then per image: facial information block of 20 bytes — facial record length
//! (4, counting the whole image block), feature point count (2), gender, eye colour, hair colour
//! (1 each), feature mask (3), expression (2), pose yaw/pitch/roll (3), pose uncertainty (3) —
//! feature points of 8 bytes (type, code, x, y, 2 reserved), image information of 12 bytes —
//! face image type, image data type (0 JPEG, 1 JPEG 2000), width, height (2 each), colour space,
//! source type (1 each), device type (2), quality (2) — and the image bytes to the end of the block.
//!
//! 2011 layout: general header of 17 bytes — magic, version, record length (4), representation
//! count (2), certification flag (1, must be 0: this part defines no certification blocks),
//! temporal semantics (2); then per representation: length (4), capture fields ([`Capture`]),
//! facial information of 17 bytes — landmark count (2), gender, eye colour, hair colour, subject
//! height (1 each), property mask (3), expression (2), pose (3), pose uncertainty (3) — landmarks
//! of 8 bytes (type, code, x, y, z), image information of 11 bytes — face image type, image data
//! type (0 JPEG, 1 JPEG 2000 lossy, 2 JPEG 2000 lossless, 3 PNG), width, height (2 each), spatial
//! sampling rate level (1), post-acquisition processing (2), cross reference (1), colour space
//! (1) — image data length (4), image bytes, and any 3D data to the end, kept as opaque bytes.

use super::{
    Capture, Edition, ImageEncoding, IsoError, Items, Len, REPRESENTATIONS_MAX, Reader, check_emitted, check_record_length, count_u16,
    len_u32, limit, open, patch_length_u32, read_capture, read_representation, write_capture, write_representation,
};

pub const MAGIC: &[u8; 4] = b"FAC\0";
const FORMAT: &str = "an ISO/IEC 19794-5 face image record";
const V2005: &[u8; 4] = b"010\0";
const V2011: &[u8; 4] = b"030\0";
const SUPPORTED: &str = "\"010\" (2005) and \"030\" (2011)";
/// Most landmark (feature) points per image: the MPEG-4 feature points and the 2011
/// anthropometric landmarks together are well under this.
pub const LANDMARKS_MAX: usize = 256;
const INFO_2005: usize = 20;
const IMAGE_INFO_2005: usize = 12;
const LANDMARK_BYTES: usize = 8;

/// A landmark (2011) or feature point (2005): type, code (major code in the high nibble, minor
/// in the low), pixel coordinates; `z` exists only in 2011 (the 2005 bytes are reserved).
/// `Debug` prints no coordinates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Landmark {
    pub kind: u8,
    pub code: u8,
    pub x: u16,
    pub y: u16,
    pub z: u16,
}

impl std::fmt::Debug for Landmark {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Landmark(..)")
    }
}

/// A parsed face record of either edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaceRecord {
    Iso2005(Record2005),
    Iso2011(Record2011),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2005 {
    pub images: Vec<Face2005>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Face2005 {
    pub gender: u8,
    pub eye_colour: u8,
    pub hair_colour: u8,
    /// 24 bits.
    pub feature_mask: u32,
    pub expression: u16,
    /// Yaw, pitch, roll (2-degree steps, 0 unspecified).
    pub pose: [u8; 3],
    pub pose_uncertainty: [u8; 3],
    /// `z` is always 0 in this edition.
    pub feature_points: Vec<Landmark>,
    /// 0 basic, 1 full frontal, 2 token frontal, ...
    pub face_image_type: u8,
    /// JPEG or JPEG 2000.
    pub encoding: ImageEncoding,
    pub width: u16,
    pub height: u16,
    pub colour_space: u8,
    pub source_type: u8,
    pub device_type: u16,
    pub quality: u16,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2011 {
    pub temporal_semantics: u16,
    pub images: Vec<Face2011>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Face2011 {
    /// Never carries certification blocks.
    pub capture: Capture,
    pub gender: u8,
    pub eye_colour: u8,
    pub hair_colour: u8,
    pub subject_height: u8,
    /// 24 bits.
    pub property_mask: u32,
    pub expression: u16,
    pub pose: [u8; 3],
    pub pose_uncertainty: [u8; 3],
    pub landmarks: Vec<Landmark>,
    pub face_image_type: u8,
    /// JPEG, JPEG 2000 lossy, JPEG 2000 lossless or PNG.
    pub encoding: ImageEncoding,
    pub width: u16,
    pub height: u16,
    pub spatial_sampling_rate_level: u8,
    pub post_acquisition_processing: u16,
    pub cross_reference: u8,
    pub colour_space: u8,
    pub data: Vec<u8>,
    /// 3D information and data (face image types 0x80 and above), as written.
    pub three_d: Vec<u8>,
}

impl std::fmt::Debug for Face2005 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Face2005")
            .field("face_image_type", &self.face_image_type)
            .field("encoding", &self.encoding)
            .field("size", &(self.width, self.height))
            .field("colour_space", &self.colour_space)
            .field("source_type", &self.source_type)
            .field("quality", &self.quality)
            .field("feature_points", &Items(self.feature_points.len()))
            .field("data", &Len(self.data.len()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Face2011 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Face2011")
            .field("capture", &self.capture)
            .field("face_image_type", &self.face_image_type)
            .field("encoding", &self.encoding)
            .field("size", &(self.width, self.height))
            .field("spatial_sampling_rate_level", &self.spatial_sampling_rate_level)
            .field("colour_space", &self.colour_space)
            .field("landmarks", &Items(self.landmarks.len()))
            .field("data", &Len(self.data.len()))
            .field("three_d", &Len(self.three_d.len()))
            .finish_non_exhaustive()
    }
}

/// One face image seen the same way whatever the edition.
#[derive(Clone, Copy)]
pub struct FaceImageView<'a> {
    pub face_image_type: u8,
    pub encoding: ImageEncoding,
    pub width: u16,
    pub height: u16,
    pub landmarks: &'a [Landmark],
    pub data: &'a [u8],
}

impl std::fmt::Debug for FaceImageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceImageView")
            .field("face_image_type", &self.face_image_type)
            .field("encoding", &self.encoding)
            .field("size", &(self.width, self.height))
            .field("landmarks", &Items(self.landmarks.len()))
            .field("data", &Len(self.data.len()))
            .finish()
    }
}

impl FaceRecord {
    #[must_use]
    pub fn edition(&self) -> Edition {
        match self {
            FaceRecord::Iso2005(_) => Edition::Iso2005,
            FaceRecord::Iso2011(_) => Edition::Iso2011,
        }
    }

    #[must_use]
    pub fn images(&self) -> Vec<FaceImageView<'_>> {
        match self {
            FaceRecord::Iso2005(r) => r
                .images
                .iter()
                .map(|i| FaceImageView {
                    face_image_type: i.face_image_type,
                    encoding: i.encoding,
                    width: i.width,
                    height: i.height,
                    landmarks: &i.feature_points,
                    data: &i.data,
                })
                .collect(),
            FaceRecord::Iso2011(r) => r
                .images
                .iter()
                .map(|i| FaceImageView {
                    face_image_type: i.face_image_type,
                    encoding: i.encoding,
                    width: i.width,
                    height: i.height,
                    landmarks: &i.landmarks,
                    data: &i.data,
                })
                .collect(),
        }
    }
}

fn encoding_from_code(code: u8, edition: Edition) -> Option<ImageEncoding> {
    match (edition, code) {
        (_, 0) => Some(ImageEncoding::Jpeg),
        (Edition::Iso2005, 1) => Some(ImageEncoding::Jpeg2000),
        (Edition::Iso2011, 1) => Some(ImageEncoding::Jpeg2000Lossy),
        (Edition::Iso2011, 2) => Some(ImageEncoding::Jpeg2000Lossless),
        (Edition::Iso2011, 3) => Some(ImageEncoding::Png),
        _ => None,
    }
}

fn encoding_code(e: ImageEncoding, edition: Edition) -> Result<u8, IsoError> {
    (0..=3)
        .find(|&c| encoding_from_code(c, edition) == Some(e))
        .ok_or(IsoError::NotInEdition { field: "image data type", edition: edition.name() })
}

fn read_encoding(r: &mut Reader<'_>, edition: Edition) -> Result<ImageEncoding, IsoError> {
    let at = r.offset();
    let code = r.u8("image data type")?;
    encoding_from_code(code, edition).ok_or(IsoError::InvalidValue { field: "image data type", at })
}

fn read_landmarks(r: &mut Reader<'_>, n: usize, with_z: bool) -> Result<Vec<Landmark>, IsoError> {
    let n = limit(n, "landmark points", LANDMARKS_MAX)?;
    let mut body = r.sub(n * LANDMARK_BYTES, "landmark points")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = body.u8("landmark type")?;
        let code = body.u8("landmark code")?;
        let x = body.u16("landmark x")?;
        let y = body.u16("landmark y")?;
        let z = body.u16("landmark z")?;
        out.push(Landmark { kind, code, x, y, z: if with_z { z } else { 0 } });
    }
    Ok(out)
}

fn write_landmarks(out: &mut Vec<u8>, landmarks: &[Landmark]) {
    for l in landmarks {
        out.extend_from_slice(&[l.kind, l.code]);
        for v in [l.x, l.y, l.z] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn u24(v: u32, field: &'static str) -> Result<[u8; 3], IsoError> {
    match v.to_be_bytes() {
        [0, a, b, c] => Ok([a, b, c]),
        _ => Err(IsoError::Unrepresentable { field }),
    }
}

/// Parses an ISO/IEC 19794-5 record of either edition.
///
/// # Errors
/// `BadMagic`, `UnsupportedVersion`, `TooLarge`; `Truncated` or `LengthMismatch` when a length
/// disagrees with the bytes; `TooMany` past [`REPRESENTATIONS_MAX`] images or [`LANDMARKS_MAX`]
/// landmarks; `InvalidValue` for an unknown image data type or a certification flag other than 0.
pub fn parse(bytes: &[u8]) -> Result<FaceRecord, IsoError> {
    let (edition, mut r) = open(bytes, MAGIC, FORMAT, [(V2005, Edition::Iso2005), (V2011, Edition::Iso2011)], SUPPORTED)?;
    check_record_length(u64::from(r.u32("record length")?), bytes.len())?;
    let n = limit(usize::from(r.u16("face image count")?), "face images", REPRESENTATIONS_MAX)?;
    let record = match edition {
        Edition::Iso2005 => FaceRecord::Iso2005(parse_2005(&mut r, n)?),
        Edition::Iso2011 => FaceRecord::Iso2011(parse_2011(&mut r, n)?),
    };
    r.finish("record length", bytes.len() as u64, 0)?;
    Ok(record)
}

fn parse_2005(r: &mut Reader<'_>, n: usize) -> Result<Record2005, IsoError> {
    let mut images = Vec::new();
    for _ in 0..n {
        let at = r.offset();
        let declared = r.u32("facial record length")?;
        let body_len = usize::try_from(declared)
            .ok()
            .and_then(|d| d.checked_sub(4))
            .ok_or(IsoError::InvalidValue { field: "facial record length", at })?;
        let mut b = r.sub(body_len, "facial record length")?;
        let points = usize::from(b.u16("feature point count")?);
        let gender = b.u8("gender")?;
        let eye_colour = b.u8("eye colour")?;
        let hair_colour = b.u8("hair colour")?;
        let feature_mask = b.u24("feature mask")?;
        let expression = b.u16("expression")?;
        let pose = b.array("pose angle")?;
        let pose_uncertainty = b.array("pose angle uncertainty")?;
        let feature_points = read_landmarks(&mut b, points, false)?;
        let face_image_type = b.u8("face image type")?;
        let encoding = read_encoding(&mut b, Edition::Iso2005)?;
        let width = b.u16("image width")?;
        let height = b.u16("image height")?;
        let colour_space = b.u8("image colour space")?;
        let source_type = b.u8("source type")?;
        let device_type = b.u16("device type")?;
        let quality = b.u16("quality")?;
        let data = b.rest().to_vec();
        images.push(Face2005 {
            gender,
            eye_colour,
            hair_colour,
            feature_mask,
            expression,
            pose,
            pose_uncertainty,
            feature_points,
            face_image_type,
            encoding,
            width,
            height,
            colour_space,
            source_type,
            device_type,
            quality,
            data,
        });
    }
    Ok(Record2005 { images })
}

fn parse_2011(r: &mut Reader<'_>, n: usize) -> Result<Record2011, IsoError> {
    let at = r.offset();
    if r.u8("certification flag")? != 0 {
        return Err(IsoError::InvalidValue { field: "certification flag", at });
    }
    let temporal_semantics = r.u16("temporal semantics")?;
    let mut images = Vec::new();
    for _ in 0..n {
        images.push(read_representation(r, "face representation length", |v| {
            let capture = read_capture(v, false)?;
            let landmarks = usize::from(v.u16("landmark point count")?);
            let gender = v.u8("gender")?;
            let eye_colour = v.u8("eye colour")?;
            let hair_colour = v.u8("hair colour")?;
            let subject_height = v.u8("subject height")?;
            let property_mask = v.u24("property mask")?;
            let expression = v.u16("expression")?;
            let pose = v.array("pose angle")?;
            let pose_uncertainty = v.array("pose angle uncertainty")?;
            let landmarks = read_landmarks(v, landmarks, true)?;
            let face_image_type = v.u8("face image type")?;
            let encoding = read_encoding(v, Edition::Iso2011)?;
            let width = v.u16("image width")?;
            let height = v.u16("image height")?;
            let spatial_sampling_rate_level = v.u8("spatial sampling rate level")?;
            let post_acquisition_processing = v.u16("post-acquisition processing")?;
            let cross_reference = v.u8("cross reference")?;
            let colour_space = v.u8("image colour space")?;
            let len = v.u32("image data length")?;
            let data = v.bytes(usize::try_from(len).unwrap_or(usize::MAX), "image data")?.to_vec();
            let three_d = v.rest().to_vec();
            Ok(Face2011 {
                capture,
                gender,
                eye_colour,
                hair_colour,
                subject_height,
                property_mask,
                expression,
                pose,
                pose_uncertainty,
                landmarks,
                face_image_type,
                encoding,
                width,
                height,
                spatial_sampling_rate_level,
                post_acquisition_processing,
                cross_reference,
                colour_space,
                data,
                three_d,
            })
        })?);
    }
    Ok(Record2011 { temporal_semantics, images })
}

/// Writes a record in its own edition.
///
/// # Errors
/// `TooMany` past [`REPRESENTATIONS_MAX`] images or [`LANDMARKS_MAX`] landmarks; `NotInEdition`
/// for an encoding the edition has no code for or a 2005 feature point with a `z`;
/// `Unrepresentable` for masks above 24 bits or certification blocks; `TooLarge` past
/// [`super::RECORD_BYTES_MAX`].
pub fn emit(record: &FaceRecord) -> Result<Vec<u8>, IsoError> {
    let mut out = MAGIC.to_vec();
    match record {
        FaceRecord::Iso2005(r) => {
            out.extend_from_slice(V2005);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&count_u16(r.images.len(), "face images")?.to_be_bytes());
            for i in &r.images {
                check_landmarks(&i.feature_points)?;
                if i.feature_points.iter().any(|l| l.z != 0) {
                    return Err(IsoError::NotInEdition { field: "landmark z", edition: "2005" });
                }
                let len = INFO_2005 + LANDMARK_BYTES * i.feature_points.len() + IMAGE_INFO_2005 + i.data.len();
                out.extend_from_slice(&len_u32(len, "facial record length")?.to_be_bytes());
                out.extend_from_slice(&count_u16(i.feature_points.len(), "landmark points")?.to_be_bytes());
                out.extend_from_slice(&[i.gender, i.eye_colour, i.hair_colour]);
                out.extend_from_slice(&u24(i.feature_mask, "feature mask (24 bits)")?);
                out.extend_from_slice(&i.expression.to_be_bytes());
                out.extend_from_slice(&i.pose);
                out.extend_from_slice(&i.pose_uncertainty);
                write_landmarks(&mut out, &i.feature_points);
                out.push(i.face_image_type);
                out.push(encoding_code(i.encoding, Edition::Iso2005)?);
                out.extend_from_slice(&i.width.to_be_bytes());
                out.extend_from_slice(&i.height.to_be_bytes());
                out.extend_from_slice(&[i.colour_space, i.source_type]);
                out.extend_from_slice(&i.device_type.to_be_bytes());
                out.extend_from_slice(&i.quality.to_be_bytes());
                out.extend_from_slice(&i.data);
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.images.len())
        }
        FaceRecord::Iso2011(r) => {
            out.extend_from_slice(V2011);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&count_u16(r.images.len(), "face images")?.to_be_bytes());
            out.push(0);
            out.extend_from_slice(&r.temporal_semantics.to_be_bytes());
            for i in &r.images {
                check_landmarks(&i.landmarks)?;
                let mut body = Vec::with_capacity(64 + i.data.len() + i.three_d.len());
                write_capture(&mut body, &i.capture, false)?;
                body.extend_from_slice(&count_u16(i.landmarks.len(), "landmark points")?.to_be_bytes());
                body.extend_from_slice(&[i.gender, i.eye_colour, i.hair_colour, i.subject_height]);
                body.extend_from_slice(&u24(i.property_mask, "property mask (24 bits)")?);
                body.extend_from_slice(&i.expression.to_be_bytes());
                body.extend_from_slice(&i.pose);
                body.extend_from_slice(&i.pose_uncertainty);
                write_landmarks(&mut body, &i.landmarks);
                body.push(i.face_image_type);
                body.push(encoding_code(i.encoding, Edition::Iso2011)?);
                body.extend_from_slice(&i.width.to_be_bytes());
                body.extend_from_slice(&i.height.to_be_bytes());
                body.push(i.spatial_sampling_rate_level);
                body.extend_from_slice(&i.post_acquisition_processing.to_be_bytes());
                body.extend_from_slice(&[i.cross_reference, i.colour_space]);
                body.extend_from_slice(&len_u32(i.data.len(), "image data length")?.to_be_bytes());
                body.extend_from_slice(&i.data);
                body.extend_from_slice(&i.three_d);
                write_representation(&mut out, &body, "face representation length")?;
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.images.len())
        }
    }
}

fn check_landmarks(l: &[Landmark]) -> Result<(), IsoError> {
    if l.len() > LANDMARKS_MAX { Err(IsoError::TooMany { what: "landmark points", max: LANDMARKS_MAX }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_truncations_rejected, capture};
    use super::*;
    use proptest::prelude::*;

    /// A 2005 (ICAO) record written byte by byte from the layout in the standard.
    fn golden_2005() -> Vec<u8> {
        let mut b = b"FAC\x00010\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 57, 0, 1]); // 14 + 20 + 8 + 12 + 3
        b.extend_from_slice(&[0, 0, 0, 43, 0, 1, 1, 2, 3, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0]); // one feature point
        b.extend_from_slice(&[1, 0x41, 0, 100, 0, 120, 0xAB, 0xCD]); // type 1, code 4.1, (100, 120), reserved
        b.extend_from_slice(&[1, 0, 0, 2, 0, 1, 1, 2, 0, 0, 0, 0]); // full frontal, JPEG, 2 × 1, sRGB, static camera
        b.extend_from_slice(&[0xFF, 0xD8, 0xFF]);
        b
    }

    #[test]
    fn a_2005_record_written_from_the_standard_parses() {
        let rec = parse(&golden_2005()).unwrap();
        let FaceRecord::Iso2005(r) = &rec else { panic!("edition") };
        let i = &r.images[0];
        assert_eq!((i.gender, i.eye_colour, i.hair_colour, i.feature_mask, i.expression), (1, 2, 3, 1, 2));
        assert_eq!(i.feature_points, vec![Landmark { kind: 1, code: 0x41, x: 100, y: 120, z: 0 }]);
        assert_eq!((i.face_image_type, i.encoding, i.width, i.height), (1, ImageEncoding::Jpeg, 2, 1));
        assert_eq!(i.data, [0xFF, 0xD8, 0xFF]);
        // Reserved bytes are written back as zeros.
        let mut expected = golden_2005();
        expected[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(emit(&rec).unwrap(), expected);
    }

    #[test]
    fn malformed_records_are_rejected_with_the_field() {
        let mut b = golden_2005();
        b[43] = 2; // image data type 2 is not in the 2005 edition
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "image data type", at: 43 }));
        let mut b = golden_2005();
        b[19] = 9; // nine feature points in a block that has room for one
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "landmark points", .. })));
        let mut b = golden_2005();
        b[17] = 44; // the image block claims one byte more than the record has
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "facial record length", .. })));
        let mut b = golden_2005();
        b[18] = 1; // 256 + 1 feature points
        assert_eq!(parse(&b), Err(IsoError::TooMany { what: "landmark points", max: LANDMARKS_MAX }));
    }

    fn landmark(with_z: bool) -> impl Strategy<Value = Landmark> {
        any::<(u8, u8, u16, u16, u16)>().prop_map(move |(kind, code, x, y, z)| Landmark { kind, code, x, y, z: if with_z { z } else { 0 } })
    }

    fn record_2005() -> impl Strategy<Value = FaceRecord> {
        let image = (
            any::<(u8, u8, u8, u16, [u8; 3], [u8; 3])>(),
            0..0x0100_0000u32,
            prop::collection::vec(landmark(false), 0..4),
            (any::<u8>(), any::<bool>(), any::<(u16, u16, u8, u8, u16, u16)>()),
            prop::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(
                |(
                    (gender, eye_colour, hair_colour, expression, pose, pose_uncertainty),
                    feature_mask,
                    feature_points,
                    (t, j2k, m),
                    data,
                )| {
                    Face2005 {
                        gender,
                        eye_colour,
                        hair_colour,
                        feature_mask,
                        expression,
                        pose,
                        pose_uncertainty,
                        feature_points,
                        face_image_type: t,
                        encoding: if j2k { ImageEncoding::Jpeg2000 } else { ImageEncoding::Jpeg },
                        width: m.0,
                        height: m.1,
                        colour_space: m.2,
                        source_type: m.3,
                        device_type: m.4,
                        quality: m.5,
                        data,
                    }
                },
            );
        prop::collection::vec(image, 0..3).prop_map(|images| FaceRecord::Iso2005(Record2005 { images }))
    }

    fn record_2011() -> impl Strategy<Value = FaceRecord> {
        let image = (
            capture(false),
            (any::<[u8; 4]>(), 0..0x0100_0000u32, any::<u16>(), any::<[u8; 3]>(), any::<[u8; 3]>()),
            prop::collection::vec(landmark(true), 0..4),
            (
                any::<u8>(),
                (0..4u8).prop_filter_map("code", |c| encoding_from_code(c, Edition::Iso2011)),
                any::<(u16, u16, u8, u16, u8, u8)>(),
            ),
            prop::collection::vec(any::<u8>(), 0..24),
            prop::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(
                |(capture, (a, property_mask, expression, pose, pose_uncertainty), landmarks, (t, encoding, m), data, three_d)| Face2011 {
                    capture,
                    gender: a[0],
                    eye_colour: a[1],
                    hair_colour: a[2],
                    subject_height: a[3],
                    property_mask,
                    expression,
                    pose,
                    pose_uncertainty,
                    landmarks,
                    face_image_type: t,
                    encoding,
                    width: m.0,
                    height: m.1,
                    spatial_sampling_rate_level: m.2,
                    post_acquisition_processing: m.3,
                    cross_reference: m.4,
                    colour_space: m.5,
                    data,
                    three_d,
                },
            );
        (any::<u16>(), prop::collection::vec(image, 0..3))
            .prop_map(|(temporal_semantics, images)| FaceRecord::Iso2011(Record2011 { temporal_semantics, images }))
    }

    fn record() -> impl Strategy<Value = FaceRecord> {
        prop_oneof![record_2005(), record_2011()]
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_the_identity(r in record()) {
            prop_assert_eq!(parse(&emit(&r).unwrap()).unwrap(), r);
        }

        #[test]
        fn every_truncation_of_a_valid_record_is_rejected(r in record()) {
            assert_truncations_rejected(&emit(&r).unwrap(), parse);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256), v in 0..3usize) {
            let head: &[u8] = [b"FAC\x00010\0".as_slice(), b"FAC\x00030\0", b""][v];
            bytes.splice(0..0, head.iter().copied());
            if let Ok(r) = parse(&bytes) {
                prop_assert_eq!(parse(&emit(&r).unwrap()).unwrap(), r);
            }
        }

        #[test]
        fn corrupted_valid_records_never_panic(r in record(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut bytes = emit(&r).unwrap();
            for (i, x) in flips {
                let i = i.index(bytes.len());
                bytes[i] = x;
            }
            if let Ok(r) = parse(&bytes) {
                prop_assert_eq!(parse(&emit(&r).unwrap()).unwrap(), r);
            }
        }
    }

    #[test]
    fn debug_prints_no_landmarks_or_image_bytes() {
        let rec = parse(&golden_2005()).unwrap();
        let s = format!("{rec:?} {:?}", rec.images());
        assert!(!s.contains("120") && !s.contains("216"), "{s}");
    }
}
