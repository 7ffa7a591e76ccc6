//! ISO/IEC 19794-6 iris image records (`IIR\0`): the 2005 edition (version `"010\0"`) and the
//! 2011 edition (version `"020\0"`, the one MOSIP's SBI devices send), parsed into typed records
//! and emitted again. Only rectilinear images are interpreted; the 2005 polar fields are kept.
//!
//! 2005 layout (big-endian): record header of 45 bytes — magic, version, record length (4),
//! capture device id (2), eye (biometric subtype) count (1), record header length (2, always
//! 45), image property bits (2), expected iris diameter (2), image format (2), raw width and
//! height (2 each), intensity depth (1), image transformation (1), device unique id (16); then per
//! eye: eye label (1: 0 undefined, 1 right, 2 left), image count (2), and per image: image number
//! (2), quality (1), rotation angle (2), rotation uncertainty (2), image length (4), image bytes.
//! Image formats: 2/4 mono/RGB raw, 6/8 JPEG, 10/12 JPEG-LS, 14/16 JPEG 2000.
//!
//! 2011 layout: general header of 16 bytes — magic, version, record length (4), representation
//! count (2), certification flag (1, must be 0: this part defines no certification blocks),
//! number of eyes represented (1); then per representation: length (4), capture fields
//! ([`Capture`]), representation number (2), eye label (1), image type (1), image format (1),
//! image properties (1: orientation and compression history bits), width and height (2 each), bit
//! depth (1), range (2), roll angle and its uncertainty (2 each), iris centre smallest and largest
//! x, smallest and largest y (2 each), iris diameter smallest and largest (2 each), image length
//! (4), image bytes. Image formats: 2/4 mono/RGB raw, 6/8 JPEG, 10/12 JPEG 2000, 14/16 PNG.

use super::{
    Capture, Edition, ImageEncoding, IsoError, Len, REPRESENTATIONS_MAX, Reader, check_emitted, check_record_length, count_u8, count_u16,
    len_u32, limit, open, patch_length_u32, read_capture, read_representation, write_capture, write_representation,
};

pub const MAGIC: &[u8; 4] = b"IIR\0";
const FORMAT: &str = "an ISO/IEC 19794-6 iris image record";
const V2005: &[u8; 4] = b"010\0";
const V2011: &[u8; 4] = b"020\0";
const SUPPORTED: &str = "\"010\" (2005) and \"020\" (2011)";
const HEADER_2005: u16 = 45;
/// Eye groups in a 2005 record: undefined, right, left.
pub const EYES_MAX: usize = 3;

/// Which eye.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EyeLabel {
    Unspecified,
    Right,
    Left,
}

impl EyeLabel {
    fn read(r: &mut Reader<'_>) -> Result<Self, IsoError> {
        let at = r.offset();
        match r.u8("eye label")? {
            0 => Ok(EyeLabel::Unspecified),
            1 => Ok(EyeLabel::Right),
            2 => Ok(EyeLabel::Left),
            _ => Err(IsoError::InvalidValue { field: "eye label", at }),
        }
    }

    fn code(self) -> u8 {
        match self {
            EyeLabel::Unspecified => 0,
            EyeLabel::Right => 1,
            EyeLabel::Left => 2,
        }
    }
}

/// Monochrome or colour image data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Mono,
    Rgb,
}

/// A parsed iris record of either edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrisRecord {
    Iso2005(Record2005),
    Iso2011(Record2011),
}

/// ISO/IEC 19794-6:2005: one image format and size for all images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2005 {
    pub device_id: u16,
    /// Orientation, scan type, occlusion and boundary bits, as written.
    pub properties: u16,
    pub iris_diameter: u16,
    /// Raw, JPEG, JPEG-LS or JPEG 2000.
    pub encoding: ImageEncoding,
    pub colour: Colour,
    pub width: u16,
    pub height: u16,
    pub intensity_depth: u8,
    pub transformation: u8,
    pub device_unique_id: [u8; 16],
    pub eyes: Vec<Eye2005>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eye2005 {
    pub eye: EyeLabel,
    pub images: Vec<Image2005>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Image2005 {
    pub number: u16,
    pub quality: u8,
    /// 65536ths of a turn; 0xFFFF undefined.
    pub rotation_angle: u16,
    pub rotation_uncertainty: u16,
    pub data: Vec<u8>,
}

/// ISO/IEC 19794-6:2011.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2011 {
    /// The header's "number of irises represented" (0–2), kept as written.
    pub eyes_present: u8,
    pub images: Vec<Image2011>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Image2011 {
    /// Never carries certification blocks.
    pub capture: Capture,
    pub representation_number: u16,
    pub eye: EyeLabel,
    /// 1 uncropped, 2 VGA, 3 cropped, 7 cropped and masked (MOSIP: K2/K3 enrolment, K7 auth).
    pub image_type: u8,
    /// Raw, JPEG, JPEG 2000 or PNG.
    pub encoding: ImageEncoding,
    pub colour: Colour,
    pub properties: u8,
    pub width: u16,
    pub height: u16,
    pub bit_depth: u8,
    pub range: u16,
    pub roll_angle: u16,
    pub roll_uncertainty: u16,
    /// Smallest and largest estimate, pixels.
    pub iris_centre_x: (u16, u16),
    pub iris_centre_y: (u16, u16),
    pub iris_diameter: (u16, u16),
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Image2005 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image2005")
            .field("number", &self.number)
            .field("quality", &self.quality)
            .field("data", &Len(self.data.len()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Image2011 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image2011")
            .field("capture", &self.capture)
            .field("representation_number", &self.representation_number)
            .field("eye", &self.eye)
            .field("image_type", &self.image_type)
            .field("encoding", &self.encoding)
            .field("colour", &self.colour)
            .field("size", &(self.width, self.height))
            .field("bit_depth", &self.bit_depth)
            .field("data", &Len(self.data.len()))
            .finish_non_exhaustive()
    }
}

/// One iris image seen the same way whatever the edition.
#[derive(Clone, Copy)]
pub struct IrisImageView<'a> {
    pub eye: EyeLabel,
    pub encoding: ImageEncoding,
    pub colour: Colour,
    pub width: u16,
    pub height: u16,
    /// 2005: the image quality; 2011: the first quality block's score, if any.
    pub quality: Option<u8>,
    pub data: &'a [u8],
}

impl std::fmt::Debug for IrisImageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrisImageView")
            .field("eye", &self.eye)
            .field("encoding", &self.encoding)
            .field("size", &(self.width, self.height))
            .field("quality", &self.quality)
            .field("data", &Len(self.data.len()))
            .finish_non_exhaustive()
    }
}

impl IrisRecord {
    #[must_use]
    pub fn edition(&self) -> Edition {
        match self {
            IrisRecord::Iso2005(_) => Edition::Iso2005,
            IrisRecord::Iso2011(_) => Edition::Iso2011,
        }
    }

    #[must_use]
    pub fn images(&self) -> Vec<IrisImageView<'_>> {
        match self {
            IrisRecord::Iso2005(r) => r
                .eyes
                .iter()
                .flat_map(|e| {
                    e.images.iter().map(move |i| IrisImageView {
                        eye: e.eye,
                        encoding: r.encoding,
                        colour: r.colour,
                        width: r.width,
                        height: r.height,
                        quality: Some(i.quality),
                        data: &i.data,
                    })
                })
                .collect(),
            IrisRecord::Iso2011(r) => r
                .images
                .iter()
                .map(|i| IrisImageView {
                    eye: i.eye,
                    encoding: i.encoding,
                    colour: i.colour,
                    width: i.width,
                    height: i.height,
                    quality: i.capture.quality.first().map(|q| q.score),
                    data: &i.data,
                })
                .collect(),
        }
    }
}

fn format_from_code(code: u16, edition: Edition) -> Option<(ImageEncoding, Colour)> {
    let colour = if code.is_multiple_of(4) { Colour::Rgb } else { Colour::Mono };
    let encoding = match (edition, code) {
        (_, 2 | 4) => ImageEncoding::Raw,
        (_, 6 | 8) => ImageEncoding::Jpeg,
        (Edition::Iso2005, 10 | 12) => ImageEncoding::JpegLs,
        (Edition::Iso2005, 14 | 16) | (Edition::Iso2011, 10 | 12) => ImageEncoding::Jpeg2000,
        (Edition::Iso2011, 14 | 16) => ImageEncoding::Png,
        _ => return None,
    };
    Some((encoding, colour))
}

fn format_code(encoding: ImageEncoding, colour: Colour, edition: Edition) -> Result<u16, IsoError> {
    (2..=16)
        .find(|&c| format_from_code(c, edition) == Some((encoding, colour)))
        .ok_or(IsoError::NotInEdition { field: "image format", edition: edition.name() })
}

/// Parses an ISO/IEC 19794-6 record of either edition.
///
/// # Errors
/// `BadMagic`, `UnsupportedVersion`, `TooLarge`; `Truncated` or `LengthMismatch` when a length
/// disagrees with the bytes; `TooMany` past [`REPRESENTATIONS_MAX`] images or [`EYES_MAX`] eye
/// groups; `InvalidValue` for an unknown image format or eye label, a 2005 header length other
/// than 45, a certification flag other than 0, or more than two eyes.
pub fn parse(bytes: &[u8]) -> Result<IrisRecord, IsoError> {
    let (edition, mut r) = open(bytes, MAGIC, FORMAT, [(V2005, Edition::Iso2005), (V2011, Edition::Iso2011)], SUPPORTED)?;
    check_record_length(u64::from(r.u32("record length")?), bytes.len())?;
    let record = match edition {
        Edition::Iso2005 => IrisRecord::Iso2005(parse_2005(&mut r)?),
        Edition::Iso2011 => IrisRecord::Iso2011(parse_2011(&mut r)?),
    };
    r.finish("record length", bytes.len() as u64, 0)?;
    Ok(record)
}

fn parse_2005(r: &mut Reader<'_>) -> Result<Record2005, IsoError> {
    let device_id = r.u16("capture device id")?;
    let n = limit(usize::from(r.u8("eye count")?), "eye groups", EYES_MAX)?;
    let at = r.offset();
    if r.u16("record header length")? != HEADER_2005 {
        return Err(IsoError::InvalidValue { field: "record header length", at });
    }
    let properties = r.u16("image property bits")?;
    let iris_diameter = r.u16("iris diameter")?;
    let at = r.offset();
    let (encoding, colour) =
        format_from_code(r.u16("image format")?, Edition::Iso2005).ok_or(IsoError::InvalidValue { field: "image format", at })?;
    let width = r.u16("image width")?;
    let height = r.u16("image height")?;
    let intensity_depth = r.u8("intensity depth")?;
    let transformation = r.u8("image transformation")?;
    let device_unique_id = r.array("device unique id")?;
    let mut eyes = Vec::new();
    let mut total = 0usize;
    for _ in 0..n {
        let eye = EyeLabel::read(r)?;
        let count = usize::from(r.u16("iris image count")?);
        total += count;
        limit(total, "iris images", REPRESENTATIONS_MAX)?;
        let mut images = Vec::new();
        for _ in 0..count {
            let number = r.u16("image number")?;
            let quality = r.u8("image quality")?;
            let rotation_angle = r.u16("rotation angle")?;
            let rotation_uncertainty = r.u16("rotation uncertainty")?;
            let len = r.u32("image length")?;
            let data = r.bytes(usize::try_from(len).unwrap_or(usize::MAX), "image data")?.to_vec();
            images.push(Image2005 { number, quality, rotation_angle, rotation_uncertainty, data });
        }
        eyes.push(Eye2005 { eye, images });
    }
    Ok(Record2005 {
        device_id,
        properties,
        iris_diameter,
        encoding,
        colour,
        width,
        height,
        intensity_depth,
        transformation,
        device_unique_id,
        eyes,
    })
}

fn parse_2011(r: &mut Reader<'_>) -> Result<Record2011, IsoError> {
    let n = limit(usize::from(r.u16("iris representation count")?), "iris images", REPRESENTATIONS_MAX)?;
    let at = r.offset();
    if r.u8("certification flag")? != 0 {
        return Err(IsoError::InvalidValue { field: "certification flag", at });
    }
    let at = r.offset();
    let eyes_present = r.u8("number of irises represented")?;
    if eyes_present > 2 {
        return Err(IsoError::InvalidValue { field: "number of irises represented", at });
    }
    let mut images = Vec::new();
    for _ in 0..n {
        images.push(read_representation(r, "iris representation length", |v| {
            let capture = read_capture(v, false)?;
            let representation_number = v.u16("representation number")?;
            let eye = EyeLabel::read(v)?;
            let image_type = v.u8("image type")?;
            let at = v.offset();
            let (encoding, colour) = format_from_code(u16::from(v.u8("image format")?), Edition::Iso2011)
                .ok_or(IsoError::InvalidValue { field: "image format", at })?;
            let properties = v.u8("image properties")?;
            let width = v.u16("image width")?;
            let height = v.u16("image height")?;
            let bit_depth = v.u8("bit depth")?;
            let range = v.u16("range")?;
            let roll_angle = v.u16("roll angle of eye")?;
            let roll_uncertainty = v.u16("roll angle uncertainty")?;
            let iris_centre_x = (v.u16("iris centre smallest x")?, v.u16("iris centre largest x")?);
            let iris_centre_y = (v.u16("iris centre smallest y")?, v.u16("iris centre largest y")?);
            let iris_diameter = (v.u16("iris diameter smallest")?, v.u16("iris diameter largest")?);
            let len = v.u32("image length")?;
            let data = v.bytes(usize::try_from(len).unwrap_or(usize::MAX), "image data")?.to_vec();
            Ok(Image2011 {
                capture,
                representation_number,
                eye,
                image_type,
                encoding,
                colour,
                properties,
                width,
                height,
                bit_depth,
                range,
                roll_angle,
                roll_uncertainty,
                iris_centre_x,
                iris_centre_y,
                iris_diameter,
                data,
            })
        })?);
    }
    Ok(Record2011 { eyes_present, images })
}

/// Writes a record in its own edition.
///
/// # Errors
/// `TooMany` past [`REPRESENTATIONS_MAX`] images or [`EYES_MAX`] eye groups; `NotInEdition` for
/// a format the edition has no code for; `Unrepresentable` for more than two eyes present or
/// certification blocks; `TooLarge` past [`super::RECORD_BYTES_MAX`].
pub fn emit(record: &IrisRecord) -> Result<Vec<u8>, IsoError> {
    let mut out = MAGIC.to_vec();
    match record {
        IrisRecord::Iso2005(r) => {
            if r.eyes.len() > EYES_MAX {
                return Err(IsoError::TooMany { what: "eye groups", max: EYES_MAX });
            }
            out.extend_from_slice(V2005);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&r.device_id.to_be_bytes());
            out.push(count_u8(r.eyes.len(), "eye groups")?);
            out.extend_from_slice(&HEADER_2005.to_be_bytes());
            out.extend_from_slice(&r.properties.to_be_bytes());
            out.extend_from_slice(&r.iris_diameter.to_be_bytes());
            out.extend_from_slice(&format_code(r.encoding, r.colour, Edition::Iso2005)?.to_be_bytes());
            out.extend_from_slice(&r.width.to_be_bytes());
            out.extend_from_slice(&r.height.to_be_bytes());
            out.extend_from_slice(&[r.intensity_depth, r.transformation]);
            out.extend_from_slice(&r.device_unique_id);
            for e in &r.eyes {
                out.push(e.eye.code());
                out.extend_from_slice(&count_u16(e.images.len(), "iris images")?.to_be_bytes());
                for i in &e.images {
                    out.extend_from_slice(&i.number.to_be_bytes());
                    out.push(i.quality);
                    out.extend_from_slice(&i.rotation_angle.to_be_bytes());
                    out.extend_from_slice(&i.rotation_uncertainty.to_be_bytes());
                    out.extend_from_slice(&len_u32(i.data.len(), "image length")?.to_be_bytes());
                    out.extend_from_slice(&i.data);
                }
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.eyes.iter().map(|e| e.images.len()).sum())
        }
        IrisRecord::Iso2011(r) => {
            if r.eyes_present > 2 {
                return Err(IsoError::Unrepresentable { field: "number of irises represented (0-2)" });
            }
            out.extend_from_slice(V2011);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&count_u16(r.images.len(), "iris images")?.to_be_bytes());
            out.extend_from_slice(&[0, r.eyes_present]);
            for i in &r.images {
                let mut body = Vec::with_capacity(64 + i.data.len());
                write_capture(&mut body, &i.capture, false)?;
                body.extend_from_slice(&i.representation_number.to_be_bytes());
                body.extend_from_slice(&[i.eye.code(), i.image_type]);
                let code = format_code(i.encoding, i.colour, Edition::Iso2011)?;
                body.push(u8::try_from(code).map_err(|_| IsoError::Unrepresentable { field: "image format" })?);
                body.push(i.properties);
                body.extend_from_slice(&i.width.to_be_bytes());
                body.extend_from_slice(&i.height.to_be_bytes());
                body.push(i.bit_depth);
                for v in [
                    i.range,
                    i.roll_angle,
                    i.roll_uncertainty,
                    i.iris_centre_x.0,
                    i.iris_centre_x.1,
                    i.iris_centre_y.0,
                    i.iris_centre_y.1,
                    i.iris_diameter.0,
                    i.iris_diameter.1,
                ] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
                body.extend_from_slice(&len_u32(i.data.len(), "image length")?.to_be_bytes());
                body.extend_from_slice(&i.data);
                write_representation(&mut out, &body, "iris representation length")?;
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.images.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_truncations_rejected, capture};
    use super::*;
    use proptest::prelude::*;

    /// A 2011 record as MOSIP's SBI sends it, written byte by byte from the layout.
    fn golden_2011() -> Vec<u8> {
        let mut b = b"IIR\x00020\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1]); // one representation, no certification, one eye
        let start = b.len();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&[0x07, 0xE8, 1, 2, 3, 4, 5, 0, 6]); // 2024-01-02 03:04:05.006
        b.extend_from_slice(&[1, 0, 0, 0, 0, 0]); // technology, vendor, type, no quality blocks
        b.extend_from_slice(&[0, 1, 2, 3, 10, 0]); // representation 1, left eye, cropped, mono JPEG 2000, properties
        b.extend_from_slice(&[0, 4, 0, 3, 8]); // 4 × 3, 8 bits
        b.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF]); // range, roll angle and uncertainty
        b.extend_from_slice(&[0, 1, 0, 2, 0, 1, 0, 2, 0, 1, 0, 3]); // centre and diameter
        b.extend_from_slice(&[0, 0, 0, 2, 0xFF, 0x4F]);
        let rep = (b.len() - start) as u32;
        b[start..start + 4].copy_from_slice(&rep.to_be_bytes());
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// A 2005 record written byte by byte from the layout in the standard.
    fn golden_2005() -> Vec<u8> {
        let mut b = b"IIR\x00010\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 62]); // 45 + 3 + 11 + 3
        b.extend_from_slice(&[0, 9, 1, 0, 45, 0, 0x15, 0, 200, 0, 14, 0, 2, 0, 2, 8, 0]); // device 9, one eye, mono J2K 2 × 2
        b.extend_from_slice(b"D123456789012345");
        b.extend_from_slice(&[1, 0, 1]); // right eye, one image
        b.extend_from_slice(&[0, 1, 70, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 3, 7, 8, 9]);
        b
    }

    #[test]
    fn records_written_from_the_standard_parse() {
        let rec = parse(&golden_2011()).unwrap();
        let IrisRecord::Iso2011(r) = &rec else { panic!("edition") };
        let i = &r.images[0];
        assert_eq!((i.representation_number, i.eye, i.image_type), (1, EyeLabel::Left, 3));
        assert_eq!((i.encoding, i.colour, i.width, i.height, i.bit_depth), (ImageEncoding::Jpeg2000, Colour::Mono, 4, 3, 8));
        assert_eq!((i.iris_centre_x, i.iris_diameter, i.data.as_slice()), ((1, 2), (1, 3), [0xFF, 0x4F].as_slice()));
        assert_eq!(emit(&rec).unwrap(), golden_2011());

        let rec = parse(&golden_2005()).unwrap();
        let IrisRecord::Iso2005(r) = &rec else { panic!("edition") };
        assert_eq!((r.device_id, r.properties, r.iris_diameter), (9, 0x15, 200));
        assert_eq!((r.encoding, r.colour, r.width, r.intensity_depth), (ImageEncoding::Jpeg2000, Colour::Mono, 2, 8));
        let v = rec.images();
        assert_eq!((v[0].eye, v[0].quality, v[0].data), (EyeLabel::Right, Some(70), [7, 8, 9].as_slice()));
        assert_eq!(emit(&rec).unwrap(), golden_2005());
    }

    #[test]
    fn malformed_records_are_rejected_with_the_field() {
        let mut b = golden_2011();
        b[16 + 4 + 9 + 6 + 2] = 3; // eye label
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "eye label", at: 37 }));
        let mut b = golden_2011();
        b[39] = 11; // image format 11
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "image format", at: 39 }));
        let mut b = golden_2011();
        b[14] = 1;
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "certification flag", at: 14 }));
        let mut b = golden_2005();
        b[16] = 44;
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "record header length", at: 15 }));
        let mut b = golden_2005();
        b[14] = 4;
        assert_eq!(parse(&b), Err(IsoError::TooMany { what: "eye groups", max: EYES_MAX }));
        let mut b = golden_2005();
        b[47] = 40; // 40 images in one eye group
        assert_eq!(parse(&b), Err(IsoError::TooMany { what: "iris images", max: REPRESENTATIONS_MAX }));
    }

    fn format(edition: Edition) -> impl Strategy<Value = (ImageEncoding, Colour)> {
        (2..=16u16).prop_filter_map("code", move |c| format_from_code(c, edition))
    }

    fn eye() -> impl Strategy<Value = EyeLabel> {
        prop_oneof![Just(EyeLabel::Unspecified), Just(EyeLabel::Right), Just(EyeLabel::Left)]
    }

    fn record_2005() -> impl Strategy<Value = IrisRecord> {
        let image = (any::<(u16, u8, u16, u16)>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(
            |((number, quality, rotation_angle, rotation_uncertainty), data)| Image2005 {
                number,
                quality,
                rotation_angle,
                rotation_uncertainty,
                data,
            },
        );
        let group = (eye(), prop::collection::vec(image, 0..3)).prop_map(|(eye, images)| Eye2005 { eye, images });
        (
            any::<(u16, u16, u16, u16, u16, u8, u8)>(),
            format(Edition::Iso2005),
            any::<[u8; 16]>(),
            prop::collection::vec(group, 0..=EYES_MAX),
        )
            .prop_map(|(h, (encoding, colour), device_unique_id, eyes)| {
                IrisRecord::Iso2005(Record2005 {
                    device_id: h.0,
                    properties: h.1,
                    iris_diameter: h.2,
                    encoding,
                    colour,
                    width: h.3,
                    height: h.4,
                    intensity_depth: h.5,
                    transformation: h.6,
                    device_unique_id,
                    eyes,
                })
            })
    }

    fn record_2011() -> impl Strategy<Value = IrisRecord> {
        let image = (
            capture(false),
            (any::<u16>(), eye(), any::<u8>(), format(Edition::Iso2011), any::<u8>()),
            any::<(u16, u16, u8)>(),
            any::<[u16; 9]>(),
            prop::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(
                |(
                    capture,
                    (representation_number, eye, image_type, (encoding, colour), properties),
                    (width, height, bit_depth),
                    n,
                    data,
                )| {
                    Image2011 {
                        capture,
                        representation_number,
                        eye,
                        image_type,
                        encoding,
                        colour,
                        properties,
                        width,
                        height,
                        bit_depth,
                        range: n[0],
                        roll_angle: n[1],
                        roll_uncertainty: n[2],
                        iris_centre_x: (n[3], n[4]),
                        iris_centre_y: (n[5], n[6]),
                        iris_diameter: (n[7], n[8]),
                        data,
                    }
                },
            );
        (0..=2u8, prop::collection::vec(image, 0..4))
            .prop_map(|(eyes_present, images)| IrisRecord::Iso2011(Record2011 { eyes_present, images }))
    }

    fn record() -> impl Strategy<Value = IrisRecord> {
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
            let head: &[u8] = [b"IIR\x00010\0".as_slice(), b"IIR\x00020\0", b""][v];
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
}
