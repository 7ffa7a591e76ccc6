//! ISO/IEC 19794-4 finger image records (`FIR\0`): the 2005 edition (version `"010\0"`) and the
//! 2011 edition (version `"020\0"`, the one MOSIP's SBI devices send), parsed into typed records
//! and emitted again.
//!
//! 2005 layout (big-endian): general header of 32 bytes — magic, version, record length (6 bytes),
//! capture device id (2), image acquisition level (2), image count (1), scale units (1: 1 ppi,
//! 2 ppcm), scan resolution horizontal and vertical (2 each), image resolution horizontal and
//! vertical (2 each), pixel depth (1), compression algorithm (1), reserved (2); then per image a
//! 14-byte header — image record length (4, counting the header), finger/palm position (1),
//! view count (1), view number (1), image quality (1), impression type (1), width and height
//! (2 each), reserved (1) — and the image bytes. Compression codes: 0 raw, 1 raw bit-packed,
//! 2 WSQ, 3 JPEG, 4 JPEG 2000, 5 PNG.
//!
//! 2011 layout: general header of 16 bytes — magic, version, record length (4), representation
//! count (2), certification flag (1), number of distinct positions (1); then per representation:
//! length (4), capture fields ([`Capture`]), position (1), representation number (1), scale
//! units (1), capture device sampling rate horizontal and vertical (2 each), image sampling rate
//! horizontal and vertical (2 each), bit depth (1), compression (1), impression type (1), width
//! and height (2 each), image data length (4), image bytes, then optional extended data blocks
//! (segmentation, annotation, comment) up to the representation length, kept as opaque bytes.
//! Compression codes: 0 raw, 1 raw bit-packed, 2 WSQ, 3 JPEG, 4 JPEG 2000 lossy, 5 JPEG 2000
//! lossless, 6 PNG.

use super::{
    Capture, Edition, ImageEncoding, IsoError, Len, REPRESENTATIONS_MAX, Reader, check_emitted, check_record_length, count_u8, count_u16,
    len_u32, limit, open, patch_length_u32, read_capture, read_flag, read_representation, write_capture, write_representation,
};

pub const MAGIC: &[u8; 4] = b"FIR\0";
const FORMAT: &str = "an ISO/IEC 19794-4 finger image record";
const V2005: &[u8; 4] = b"010\0";
const V2011: &[u8; 4] = b"020\0";
const SUPPORTED: &str = "\"010\" (2005) and \"020\" (2011)";
const IMAGE_HEADER_2005: usize = 14;

/// Units of the resolution fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScaleUnits {
    PixelsPerInch,
    PixelsPerCentimetre,
}

impl ScaleUnits {
    fn read(r: &mut Reader<'_>) -> Result<Self, IsoError> {
        let at = r.offset();
        match r.u8("scale units")? {
            1 => Ok(ScaleUnits::PixelsPerInch),
            2 => Ok(ScaleUnits::PixelsPerCentimetre),
            _ => Err(IsoError::InvalidValue { field: "scale units", at }),
        }
    }

    fn code(self) -> u8 {
        match self {
            ScaleUnits::PixelsPerInch => 1,
            ScaleUnits::PixelsPerCentimetre => 2,
        }
    }
}

/// A parsed finger image record of either edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerImageRecord {
    Iso2005(Record2005),
    Iso2011(Record2011),
}

/// ISO/IEC 19794-4:2005: one set of image parameters for all images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2005 {
    pub device_id: u16,
    /// Image acquisition level (10, 20, 30, 31, 40, 41).
    pub acquisition_level: u16,
    pub scale_units: ScaleUnits,
    pub scan_resolution: (u16, u16),
    pub image_resolution: (u16, u16),
    /// Bits per pixel.
    pub pixel_depth: u8,
    /// One of raw, raw bit-packed, WSQ, JPEG, JPEG 2000, PNG.
    pub compression: ImageEncoding,
    pub images: Vec<Image2005>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Image2005 {
    /// Finger or palm position code (0–15 fingers and multi-finger, 20–36 palm areas, ...).
    pub position: u8,
    pub view_count: u8,
    pub view_number: u8,
    pub quality: u8,
    pub impression: u8,
    pub width: u16,
    pub height: u16,
    pub data: Vec<u8>,
}

/// ISO/IEC 19794-4:2011.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2011 {
    pub certification_flag: bool,
    /// The header's "number of distinct finger/palm positions", kept as written.
    pub positions: u8,
    pub images: Vec<Image2011>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Image2011 {
    pub capture: Capture,
    pub position: u8,
    pub representation_number: u8,
    pub scale_units: ScaleUnits,
    pub scan_resolution: (u16, u16),
    pub image_resolution: (u16, u16),
    pub bit_depth: u8,
    /// One of raw, raw bit-packed, WSQ, JPEG, JPEG 2000 lossy, JPEG 2000 lossless, PNG.
    pub compression: ImageEncoding,
    pub impression: u8,
    pub width: u16,
    pub height: u16,
    pub data: Vec<u8>,
    /// Segmentation, annotation and comment blocks, as written.
    pub extended_data: Vec<u8>,
}

impl std::fmt::Debug for Image2005 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image2005")
            .field("position", &self.position)
            .field("view", &(self.view_number, self.view_count))
            .field("quality", &self.quality)
            .field("impression", &self.impression)
            .field("size", &(self.width, self.height))
            .field("data", &Len(self.data.len()))
            .finish()
    }
}

impl std::fmt::Debug for Image2011 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image2011")
            .field("capture", &self.capture)
            .field("position", &self.position)
            .field("representation_number", &self.representation_number)
            .field("scale_units", &self.scale_units)
            .field("scan_resolution", &self.scan_resolution)
            .field("image_resolution", &self.image_resolution)
            .field("bit_depth", &self.bit_depth)
            .field("compression", &self.compression)
            .field("impression", &self.impression)
            .field("size", &(self.width, self.height))
            .field("data", &Len(self.data.len()))
            .field("extended_data", &Len(self.extended_data.len()))
            .finish()
    }
}

/// One finger image seen the same way whatever the edition.
#[derive(Clone, Copy)]
pub struct FingerImageView<'a> {
    pub position: u8,
    pub impression: u8,
    pub compression: ImageEncoding,
    pub width: u16,
    pub height: u16,
    pub bit_depth: u8,
    pub scale_units: ScaleUnits,
    pub image_resolution: (u16, u16),
    /// 2005: the image quality; 2011: the first quality block's score, if any.
    pub quality: Option<u8>,
    pub data: &'a [u8],
}

impl std::fmt::Debug for FingerImageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerImageView")
            .field("position", &self.position)
            .field("compression", &self.compression)
            .field("size", &(self.width, self.height))
            .field("quality", &self.quality)
            .field("data", &Len(self.data.len()))
            .finish_non_exhaustive()
    }
}

impl FingerImageRecord {
    #[must_use]
    pub fn edition(&self) -> Edition {
        match self {
            FingerImageRecord::Iso2005(_) => Edition::Iso2005,
            FingerImageRecord::Iso2011(_) => Edition::Iso2011,
        }
    }

    /// Every image with its parameters, whatever the edition.
    #[must_use]
    pub fn images(&self) -> Vec<FingerImageView<'_>> {
        match self {
            FingerImageRecord::Iso2005(r) => r
                .images
                .iter()
                .map(|i| FingerImageView {
                    position: i.position,
                    impression: i.impression,
                    compression: r.compression,
                    width: i.width,
                    height: i.height,
                    bit_depth: r.pixel_depth,
                    scale_units: r.scale_units,
                    image_resolution: r.image_resolution,
                    quality: Some(i.quality),
                    data: &i.data,
                })
                .collect(),
            FingerImageRecord::Iso2011(r) => r
                .images
                .iter()
                .map(|i| FingerImageView {
                    position: i.position,
                    impression: i.impression,
                    compression: i.compression,
                    width: i.width,
                    height: i.height,
                    bit_depth: i.bit_depth,
                    scale_units: i.scale_units,
                    image_resolution: i.image_resolution,
                    quality: i.capture.quality.first().map(|q| q.score),
                    data: &i.data,
                })
                .collect(),
        }
    }
}

fn compression_from_code(code: u8, edition: Edition) -> Option<ImageEncoding> {
    use ImageEncoding::*;
    Some(match (edition, code) {
        (_, 0) => Raw,
        (_, 1) => RawBitPacked,
        (_, 2) => Wsq,
        (_, 3) => Jpeg,
        (Edition::Iso2005, 4) => Jpeg2000,
        (Edition::Iso2005, 5) => Png,
        (Edition::Iso2011, 4) => Jpeg2000Lossy,
        (Edition::Iso2011, 5) => Jpeg2000Lossless,
        (Edition::Iso2011, 6) => Png,
        _ => return None,
    })
}

fn compression_code(e: ImageEncoding, edition: Edition) -> Result<u8, IsoError> {
    (0..=6)
        .find(|&c| compression_from_code(c, edition) == Some(e))
        .ok_or(IsoError::NotInEdition { field: "compression algorithm", edition: edition.name() })
}

fn read_compression(r: &mut Reader<'_>, edition: Edition) -> Result<ImageEncoding, IsoError> {
    let at = r.offset();
    let code = r.u8("compression algorithm")?;
    compression_from_code(code, edition).ok_or(IsoError::InvalidValue { field: "compression algorithm", at })
}

fn read_pair(r: &mut Reader<'_>, field: &'static str) -> Result<(u16, u16), IsoError> {
    Ok((r.u16(field)?, r.u16(field)?))
}

/// Parses an ISO/IEC 19794-4 record of either edition.
///
/// # Errors
/// `BadMagic`, `UnsupportedVersion`, `TooLarge`; `Truncated` or `LengthMismatch` when a length
/// disagrees with the bytes; `TooMany` past [`REPRESENTATIONS_MAX`] images; `InvalidValue` for
/// unknown scale units or compression codes and certification flags other than 0 or 1.
pub fn parse(bytes: &[u8]) -> Result<FingerImageRecord, IsoError> {
    let (edition, mut r) = open(bytes, MAGIC, FORMAT, [(V2005, Edition::Iso2005), (V2011, Edition::Iso2011)], SUPPORTED)?;
    let record = match edition {
        Edition::Iso2005 => {
            check_record_length(r.u48("record length")?, bytes.len())?;
            FingerImageRecord::Iso2005(parse_2005(&mut r)?)
        }
        Edition::Iso2011 => {
            check_record_length(u64::from(r.u32("record length")?), bytes.len())?;
            FingerImageRecord::Iso2011(parse_2011(&mut r)?)
        }
    };
    r.finish("record length", bytes.len() as u64, 0)?;
    Ok(record)
}

fn parse_2005(r: &mut Reader<'_>) -> Result<Record2005, IsoError> {
    let device_id = r.u16("capture device id")?;
    let acquisition_level = r.u16("image acquisition level")?;
    let n = limit(usize::from(r.u8("image count")?), "finger images", REPRESENTATIONS_MAX)?;
    let scale_units = ScaleUnits::read(r)?;
    let scan_resolution = read_pair(r, "scan resolution")?;
    let image_resolution = read_pair(r, "image resolution")?;
    let pixel_depth = r.u8("pixel depth")?;
    let compression = read_compression(r, Edition::Iso2005)?;
    r.u16("reserved bytes")?;
    let mut images = Vec::new();
    for _ in 0..n {
        let at = r.offset();
        let declared = r.u32("image record length")?;
        let data_len = usize::try_from(declared)
            .ok()
            .and_then(|d| d.checked_sub(IMAGE_HEADER_2005))
            .ok_or(IsoError::InvalidValue { field: "image record length", at })?;
        let position = r.u8("finger position")?;
        let view_count = r.u8("view count")?;
        let view_number = r.u8("view number")?;
        let quality = r.u8("image quality")?;
        let impression = r.u8("impression type")?;
        let width = r.u16("image width")?;
        let height = r.u16("image height")?;
        r.u8("reserved byte")?;
        let data = r.bytes(data_len, "image data")?.to_vec();
        images.push(Image2005 { position, view_count, view_number, quality, impression, width, height, data });
    }
    Ok(Record2005 { device_id, acquisition_level, scale_units, scan_resolution, image_resolution, pixel_depth, compression, images })
}

fn parse_2011(r: &mut Reader<'_>) -> Result<Record2011, IsoError> {
    let n = limit(usize::from(r.u16("finger representation count")?), "finger images", REPRESENTATIONS_MAX)?;
    let certification_flag = read_flag(r, "certification flag")?;
    let positions = r.u8("number of finger/palm positions")?;
    let mut images = Vec::new();
    for _ in 0..n {
        images.push(read_representation(r, "finger representation length", |v| {
            let capture = read_capture(v, certification_flag)?;
            let position = v.u8("finger position")?;
            let representation_number = v.u8("representation number")?;
            let scale_units = ScaleUnits::read(v)?;
            let scan_resolution = read_pair(v, "capture device sampling rate")?;
            let image_resolution = read_pair(v, "image sampling rate")?;
            let bit_depth = v.u8("bit depth")?;
            let compression = read_compression(v, Edition::Iso2011)?;
            let impression = v.u8("impression type")?;
            let width = v.u16("image width")?;
            let height = v.u16("image height")?;
            let len = v.u32("image data length")?;
            let data = v.bytes(usize::try_from(len).unwrap_or(usize::MAX), "image data")?.to_vec();
            let extended_data = v.rest().to_vec();
            Ok(Image2011 {
                capture,
                position,
                representation_number,
                scale_units,
                scan_resolution,
                image_resolution,
                bit_depth,
                compression,
                impression,
                width,
                height,
                data,
                extended_data,
            })
        })?);
    }
    Ok(Record2011 { certification_flag, positions, images })
}

/// Writes a record in its own edition.
///
/// # Errors
/// `TooMany` past [`REPRESENTATIONS_MAX`] images; `NotInEdition` for a compression the edition
/// has no code for; `TooLarge` past [`super::RECORD_BYTES_MAX`]; `Unrepresentable` for
/// certification blocks in a record whose flag is not set.
pub fn emit(record: &FingerImageRecord) -> Result<Vec<u8>, IsoError> {
    let mut out = MAGIC.to_vec();
    match record {
        FingerImageRecord::Iso2005(r) => {
            out.extend_from_slice(V2005);
            out.extend_from_slice(&[0; 6]);
            out.extend_from_slice(&r.device_id.to_be_bytes());
            out.extend_from_slice(&r.acquisition_level.to_be_bytes());
            out.push(count_u8(r.images.len(), "finger images")?);
            out.push(r.scale_units.code());
            for v in [r.scan_resolution.0, r.scan_resolution.1, r.image_resolution.0, r.image_resolution.1] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(r.pixel_depth);
            out.push(compression_code(r.compression, Edition::Iso2005)?);
            out.extend_from_slice(&[0, 0]);
            for i in &r.images {
                let len = i.data.len().saturating_add(IMAGE_HEADER_2005);
                out.extend_from_slice(&len_u32(len, "image record length")?.to_be_bytes());
                out.extend_from_slice(&[i.position, i.view_count, i.view_number, i.quality, i.impression]);
                out.extend_from_slice(&i.width.to_be_bytes());
                out.extend_from_slice(&i.height.to_be_bytes());
                out.push(0);
                out.extend_from_slice(&i.data);
            }
            let len = (out.len() as u64).to_be_bytes();
            if let (Some(slot), Some(src)) = (out.get_mut(8..14), len.get(2..8)) {
                slot.copy_from_slice(src);
            }
            check_emitted(out, r.images.len())
        }
        FingerImageRecord::Iso2011(r) => {
            out.extend_from_slice(V2011);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&count_u16(r.images.len(), "finger images")?.to_be_bytes());
            out.push(u8::from(r.certification_flag));
            out.push(r.positions);
            for i in &r.images {
                let mut body = Vec::with_capacity(64 + i.data.len() + i.extended_data.len());
                write_capture(&mut body, &i.capture, r.certification_flag)?;
                body.extend_from_slice(&[i.position, i.representation_number, i.scale_units.code()]);
                for v in [i.scan_resolution.0, i.scan_resolution.1, i.image_resolution.0, i.image_resolution.1] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
                body.push(i.bit_depth);
                body.push(compression_code(i.compression, Edition::Iso2011)?);
                body.push(i.impression);
                body.extend_from_slice(&i.width.to_be_bytes());
                body.extend_from_slice(&i.height.to_be_bytes());
                body.extend_from_slice(&len_u32(i.data.len(), "image data length")?.to_be_bytes());
                body.extend_from_slice(&i.data);
                body.extend_from_slice(&i.extended_data);
                write_representation(&mut out, &body, "finger representation length")?;
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

    /// A 2005 record written byte by byte from the layout in the standard, not by `emit`.
    fn golden_2005() -> Vec<u8> {
        let mut b = b"FIR\x00010\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 50]); // record length: 32 + 14 + 4
        b.extend_from_slice(&[0, 7, 0, 31, 1, 1]); // device 7, level 31, one image, ppi
        b.extend_from_slice(&[0x01, 0xF4, 0x01, 0xF4, 0x01, 0xF4, 0x01, 0xF4]); // 500 ppi scan and image
        b.extend_from_slice(&[8, 2, 0, 0]); // 8 bits, WSQ, reserved
        b.extend_from_slice(&[0, 0, 0, 18, 6, 1, 0, 55, 0, 0, 2, 0, 2, 0]); // left thumb, 2 × 2
        b.extend_from_slice(&[1, 2, 3, 4]);
        b
    }

    /// A 2011 record as MOSIP's SBI sends it: one representation, JPEG 2000 lossless.
    fn golden_2011() -> Vec<u8> {
        let mut b = b"FIR\x00020\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&[0, 1, 0, 1]); // one representation, no certification, one position
        let start = b.len();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&[0xFF; 9]); // date and time unreported
        b.extend_from_slice(&[1, 0, 0, 0, 0]); // technology, vendor, type
        b.extend_from_slice(&[1, 90, 0x01, 0x01, 0, 1]); // one quality block
        b.extend_from_slice(&[2, 0, 1, 0x01, 0xF4, 0x01, 0xF4, 0x01, 0xF4, 0x01, 0xF4]); // right index, ppi, 500
        b.extend_from_slice(&[8, 5, 0, 0, 3, 0, 2, 0, 0, 0, 5]); // 8 bits, J2K lossless, live plain, 3 × 2, 5 bytes
        b.extend_from_slice(&[0xFF, 0x4F, 0xFF, 0x51, 0]);
        let rep = (b.len() - start) as u32;
        b[start..start + 4].copy_from_slice(&rep.to_be_bytes());
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn records_written_from_the_standard_parse() {
        let rec = parse(&golden_2005()).unwrap();
        let FingerImageRecord::Iso2005(r) = &rec else { panic!("edition") };
        assert_eq!((r.device_id, r.acquisition_level, r.scale_units), (7, 31, ScaleUnits::PixelsPerInch));
        assert_eq!((r.image_resolution, r.pixel_depth, r.compression), ((500, 500), 8, ImageEncoding::Wsq));
        let i = &r.images[0];
        assert_eq!((i.position, i.view_count, i.quality, i.width, i.height), (6, 1, 55, 2, 2));
        assert_eq!(i.data, [1, 2, 3, 4]);
        assert_eq!(emit(&rec).unwrap(), golden_2005());

        let rec = parse(&golden_2011()).unwrap();
        let v = rec.images();
        assert_eq!((v[0].position, v[0].compression, v[0].width, v[0].height), (2, ImageEncoding::Jpeg2000Lossless, 3, 2));
        assert_eq!((v[0].quality, v[0].data), (Some(90), [0xFF, 0x4F, 0xFF, 0x51, 0].as_slice()));
        assert_eq!(emit(&rec).unwrap(), golden_2011());
    }

    #[test]
    fn malformed_records_are_rejected_with_the_field() {
        let mut b = golden_2005();
        b[29] = 6; // compression code unknown in 2005
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "compression algorithm", at: 29 }));
        let mut b = golden_2005();
        b[35] = 200; // image record longer than the record
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "image data", .. })));
        let mut b = golden_2005();
        b[35] = 3; // image record shorter than its own header
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "image record length", at: 32 }));
        let mut b = golden_2011();
        let n = b.len();
        b[n - 6] = 9; // image data length runs past the representation
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "image data", .. })));
        let mut b = golden_2011();
        b[14] = 2;
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "certification flag", at: 14 }));
        let mut b = golden_2011();
        b[19] = 20; // representation length too small for the representation
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "quality algorithm vendor", at: 36, .. })));
        let mut b = golden_2011();
        b[19] = 3; // a representation length that cannot even hold itself
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "finger representation length", at: 16 }));
    }

    #[test]
    fn a_compression_the_edition_lacks_is_not_written() {
        let FingerImageRecord::Iso2005(mut r) = parse(&golden_2005()).unwrap() else { panic!("edition") };
        r.compression = ImageEncoding::Jpeg2000Lossless;
        assert_eq!(emit(&FingerImageRecord::Iso2005(r)), Err(IsoError::NotInEdition { field: "compression algorithm", edition: "2005" }));
    }

    fn encoding(edition: Edition) -> impl Strategy<Value = ImageEncoding> {
        (0..=6u8).prop_filter_map("code", move |c| compression_from_code(c, edition))
    }

    fn record_2005() -> impl Strategy<Value = FingerImageRecord> {
        let image =
            (any::<[u8; 5]>(), any::<(u16, u16)>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(a, (width, height), data)| {
                Image2005 { position: a[0], view_count: a[1], view_number: a[2], quality: a[3], impression: a[4], width, height, data }
            });
        (any::<(u16, u16, bool, u8)>(), any::<[u16; 4]>(), encoding(Edition::Iso2005), prop::collection::vec(image, 0..4)).prop_map(
            |((device_id, acquisition_level, ppi, pixel_depth), res, compression, images)| {
                FingerImageRecord::Iso2005(Record2005 {
                    device_id,
                    acquisition_level,
                    scale_units: if ppi { ScaleUnits::PixelsPerInch } else { ScaleUnits::PixelsPerCentimetre },
                    scan_resolution: (res[0], res[1]),
                    image_resolution: (res[2], res[3]),
                    pixel_depth,
                    compression,
                    images,
                })
            },
        )
    }

    fn record_2011() -> impl Strategy<Value = FingerImageRecord> {
        (any::<bool>(), any::<u8>()).prop_flat_map(|(cert, positions)| {
            let image = (
                capture(cert),
                any::<(u8, u8, bool, u8, u8)>(),
                any::<[u16; 6]>(),
                encoding(Edition::Iso2011),
                prop::collection::vec(any::<u8>(), 0..24),
                prop::collection::vec(any::<u8>(), 0..6),
            )
                .prop_map(
                    |(capture, (position, representation_number, ppi, bit_depth, impression), n, compression, data, extended_data)| {
                        Image2011 {
                            capture,
                            position,
                            representation_number,
                            scale_units: if ppi { ScaleUnits::PixelsPerInch } else { ScaleUnits::PixelsPerCentimetre },
                            scan_resolution: (n[0], n[1]),
                            image_resolution: (n[2], n[3]),
                            bit_depth,
                            compression,
                            impression,
                            width: n[4],
                            height: n[5],
                            data,
                            extended_data,
                        }
                    },
                );
            prop::collection::vec(image, 0..4)
                .prop_map(move |images| FingerImageRecord::Iso2011(Record2011 { certification_flag: cert, positions, images }))
        })
    }

    fn record() -> impl Strategy<Value = FingerImageRecord> {
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
            let head: &[u8] = [b"FIR\x00010\0".as_slice(), b"FIR\x00020\0", b""][v];
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
    fn debug_prints_no_image_bytes() {
        let rec = parse(&golden_2011()).unwrap();
        let s = format!("{rec:?} {:?}", rec.images());
        assert!(s.contains("<5 bytes>") && !s.contains("79"), "{s}");
    }
}
