//! ISO/IEC 19794-2 finger minutiae records (`FMR\0`): the 2005 edition (version `" 20\0"`) and the
//! 2011 edition (version `"030\0"`), parsed into typed records and emitted again.
//!
//! 2005 layout (big-endian): record header of 24 bytes — magic, version, record length (4),
//! capture equipment certification (4 bits) and device type (12 bits), image width, height,
//! horizontal and vertical resolution in pixels per centimetre (2 each), finger view count (1),
//! reserved (1); then per finger view: position (1), view number (4 bits) and impression type
//! (4 bits), finger quality (1), minutia count (1), minutiae of 6 bytes each, extended data
//! length (2) and that many bytes.
//!
//! 2011 layout: general header of 15 bytes — magic, version, record length (4), representation
//! count (2), certification flag (1); then per representation: length (4), the ISO/IEC
//! 19794-1:2011 capture fields ([`Capture`]), position (1), view number (1), horizontal and
//! vertical resolution (2 each), impression type (1), width and height (2 each), minutia field
//! length (4 bits: 5 or 6) and ridge ending type (4 bits), minutia count (1), minutiae of 5 or 6
//! bytes, extended data length (2) and that many bytes.
//!
//! A minutia in both editions: type (2 bits: other, ridge ending, bifurcation) and x (14 bits),
//! 2 reserved bits and y (14 bits), angle (1 byte), quality (1 byte; absent in 2011 records with
//! 5-byte minutiae). Coordinates are pixels from the top-left corner, y growing downwards. The
//! angle is in units of 1/256 of a turn (1.40625°), counter-clockwise from the x axis, in both
//! editions; [`Minutia::angle_radians`] converts. Extended data (ridge counts, core and delta,
//! zonal quality, vendor blocks) is kept as opaque bytes.

use super::{
    Capture, Edition, IsoError, Items, Len, REPRESENTATIONS_MAX, Reader, check_emitted, check_record_length, count_u8, count_u16, limit,
    open, patch_length_u32, read_capture, read_flag, read_representation, write_capture, write_representation,
};

pub const MAGIC: &[u8; 4] = b"FMR\0";
const FORMAT: &str = "an ISO/IEC 19794-2 finger minutiae record";
const V2005: &[u8; 4] = b" 20\0";
const V2011: &[u8; 4] = b"030\0";
const SUPPORTED: &str = "\" 20\" (2005) and \"030\" (2011)";
/// Most minutiae in one finger view: the count is one byte in both editions.
pub const MINUTIAE_MAX: usize = 255;
/// Finger positions 0 (unknown) to 10 (left little finger) are the only ones a minutiae record
/// may carry (ISO/IEC 19794-2 Table "finger position codes").
pub const FINGER_POSITION_MAX: u8 = 10;
const COORDINATE_MAX: u16 = 0x3FFF;

/// What kind of ridge feature a minutia is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MinutiaType {
    Other,
    RidgeEnding,
    Bifurcation,
}

impl MinutiaType {
    fn from_code(code: u16) -> Option<Self> {
        match code {
            0 => Some(MinutiaType::Other),
            1 => Some(MinutiaType::RidgeEnding),
            2 => Some(MinutiaType::Bifurcation),
            _ => None,
        }
    }

    fn code(self) -> u16 {
        match self {
            MinutiaType::Other => 0,
            MinutiaType::RidgeEnding => 1,
            MinutiaType::Bifurcation => 2,
        }
    }
}

/// One minutia, in the record's own units. `Debug` prints no position.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Minutia {
    pub kind: MinutiaType,
    /// Pixels from the left edge (14 bits).
    pub x: u16,
    /// Pixels from the top edge (14 bits).
    pub y: u16,
    /// 1/256 of a turn, counter-clockwise from the positive x axis.
    pub angle: u8,
    /// 0–100 (0: not reported in 2005; 254 not reported, 255 failed in 2011). `None` only in
    /// 2011 records written with 5-byte minutiae.
    pub quality: Option<u8>,
}

impl std::fmt::Debug for Minutia {
    /// Biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minutia(..)")
    }
}

impl Minutia {
    /// Angle units in a full turn.
    pub const ANGLE_UNITS_PER_TURN: u32 = 256;

    /// The angle in radians, in [0, 2π).
    #[must_use]
    pub fn angle_radians(&self) -> f64 {
        f64::from(self.angle) * std::f64::consts::TAU / f64::from(Self::ANGLE_UNITS_PER_TURN)
    }

    /// The angle in degrees, in [0, 360).
    #[must_use]
    pub fn angle_degrees(&self) -> f64 {
        f64::from(self.angle) * 360.0 / f64::from(Self::ANGLE_UNITS_PER_TURN)
    }
}

/// A parsed minutiae record of either edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerMinutiaeRecord {
    Iso2005(Record2005),
    Iso2011(Record2011),
}

/// ISO/IEC 19794-2:2005 record: one image size and resolution for all views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2005 {
    /// Capture equipment certification (4 bits).
    pub equipment_certification: u8,
    /// Capture device type (12 bits).
    pub device_type: u16,
    pub width: u16,
    pub height: u16,
    /// Pixels per centimetre (197 ≈ 500 ppi).
    pub x_resolution: u16,
    pub y_resolution: u16,
    pub views: Vec<View2005>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct View2005 {
    /// Finger position code, 0–10.
    pub position: u8,
    /// View number (4 bits).
    pub view_number: u8,
    /// Impression type (4 bits): 0 live plain, 1 live rolled, 2 non-live plain, 3 non-live
    /// rolled, 8 swipe, ...
    pub impression: u8,
    /// Finger quality 0–100.
    pub quality: u8,
    /// Every minutia has `quality: Some(..)` in this edition.
    pub minutiae: Vec<Minutia>,
    pub extended_data: Vec<u8>,
}

/// ISO/IEC 19794-2:2011 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record2011 {
    /// Whether representations carry certification blocks.
    pub certification_flag: bool,
    pub views: Vec<View2011>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct View2011 {
    pub capture: Capture,
    /// Finger position code, 0–10.
    pub position: u8,
    pub view_number: u8,
    pub x_resolution: u16,
    pub y_resolution: u16,
    pub impression: u8,
    pub width: u16,
    pub height: u16,
    /// Ridge ending type (4 bits): 0 ridge skeleton end point, 1 valley skeleton bifurcation.
    pub ridge_ending_type: u8,
    /// Either every minutia has a quality (6-byte minutiae) or none has (5-byte minutiae).
    pub minutiae: Vec<Minutia>,
    pub extended_data: Vec<u8>,
}

impl std::fmt::Debug for View2005 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View2005")
            .field("position", &self.position)
            .field("view_number", &self.view_number)
            .field("impression", &self.impression)
            .field("quality", &self.quality)
            .field("minutiae", &Items(self.minutiae.len()))
            .field("extended_data", &Len(self.extended_data.len()))
            .finish()
    }
}

impl std::fmt::Debug for View2011 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View2011")
            .field("capture", &self.capture)
            .field("position", &self.position)
            .field("view_number", &self.view_number)
            .field("resolution", &(self.x_resolution, self.y_resolution))
            .field("impression", &self.impression)
            .field("size", &(self.width, self.height))
            .field("ridge_ending_type", &self.ridge_ending_type)
            .field("minutiae", &Items(self.minutiae.len()))
            .field("extended_data", &Len(self.extended_data.len()))
            .finish()
    }
}

/// One finger view seen the same way whatever the edition.
#[derive(Clone, Copy)]
pub struct MinutiaeView<'a> {
    pub position: u8,
    pub view_number: u8,
    pub impression: u8,
    pub width: u16,
    pub height: u16,
    /// Pixels per centimetre.
    pub x_resolution: u16,
    pub y_resolution: u16,
    /// 2005: the finger quality; 2011: the first quality block's score, if any.
    pub quality: Option<u8>,
    pub minutiae: &'a [Minutia],
}

impl std::fmt::Debug for MinutiaeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinutiaeView")
            .field("position", &self.position)
            .field("view_number", &self.view_number)
            .field("size", &(self.width, self.height))
            .field("resolution", &(self.x_resolution, self.y_resolution))
            .field("quality", &self.quality)
            .field("minutiae", &Items(self.minutiae.len()))
            .finish()
    }
}

impl FingerMinutiaeRecord {
    #[must_use]
    pub fn edition(&self) -> Edition {
        match self {
            FingerMinutiaeRecord::Iso2005(_) => Edition::Iso2005,
            FingerMinutiaeRecord::Iso2011(_) => Edition::Iso2011,
        }
    }

    /// Every finger view with its image geometry, whatever the edition.
    #[must_use]
    pub fn views(&self) -> Vec<MinutiaeView<'_>> {
        match self {
            FingerMinutiaeRecord::Iso2005(r) => r
                .views
                .iter()
                .map(|v| MinutiaeView {
                    position: v.position,
                    view_number: v.view_number,
                    impression: v.impression,
                    width: r.width,
                    height: r.height,
                    x_resolution: r.x_resolution,
                    y_resolution: r.y_resolution,
                    quality: Some(v.quality),
                    minutiae: &v.minutiae,
                })
                .collect(),
            FingerMinutiaeRecord::Iso2011(r) => r
                .views
                .iter()
                .map(|v| MinutiaeView {
                    position: v.position,
                    view_number: v.view_number,
                    impression: v.impression,
                    width: v.width,
                    height: v.height,
                    x_resolution: v.x_resolution,
                    y_resolution: v.y_resolution,
                    quality: v.capture.quality.first().map(|q| q.score),
                    minutiae: &v.minutiae,
                })
                .collect(),
        }
    }
}

/// Parses an ISO/IEC 19794-2 record of either edition.
///
/// # Errors
/// `BadMagic`, `UnsupportedVersion`, `TooLarge`; `Truncated` or `LengthMismatch` when a length
/// disagrees with the bytes; `TooMany` past [`REPRESENTATIONS_MAX`] views; `InvalidValue` for a
/// finger position above 10, minutia type 3, a minutia field length other than 5 or 6, or a
/// certification flag other than 0 or 1.
pub fn parse(bytes: &[u8]) -> Result<FingerMinutiaeRecord, IsoError> {
    let (edition, mut r) = open(bytes, MAGIC, FORMAT, [(V2005, Edition::Iso2005), (V2011, Edition::Iso2011)], SUPPORTED)?;
    check_record_length(u64::from(r.u32("record length")?), bytes.len())?;
    let record = match edition {
        Edition::Iso2005 => FingerMinutiaeRecord::Iso2005(parse_2005(&mut r)?),
        Edition::Iso2011 => FingerMinutiaeRecord::Iso2011(parse_2011(&mut r)?),
    };
    r.finish("record length", bytes.len() as u64, 0)?;
    Ok(record)
}

fn parse_2005(r: &mut Reader<'_>) -> Result<Record2005, IsoError> {
    let equipment = r.u16("capture equipment")?;
    let width = r.u16("image width")?;
    let height = r.u16("image height")?;
    let x_resolution = r.u16("x resolution")?;
    let y_resolution = r.u16("y resolution")?;
    let n = limit(usize::from(r.u8("finger view count")?), "finger views", REPRESENTATIONS_MAX)?;
    r.u8("reserved byte")?;
    let mut views = Vec::new();
    for _ in 0..n {
        let position = read_position(r)?;
        let view_impression = r.u8("view number and impression type")?;
        let quality = r.u8("finger quality")?;
        let minutiae = read_minutiae(r, true)?;
        let extended_data = read_extended(r)?;
        views.push(View2005 {
            position,
            view_number: view_impression >> 4,
            impression: view_impression & 0x0F,
            quality,
            minutiae,
            extended_data,
        });
    }
    Ok(Record2005 {
        equipment_certification: (equipment >> 12) as u8,
        device_type: equipment & 0x0FFF,
        width,
        height,
        x_resolution,
        y_resolution,
        views,
    })
}

fn parse_2011(r: &mut Reader<'_>) -> Result<Record2011, IsoError> {
    let n = limit(usize::from(r.u16("finger representation count")?), "finger representations", REPRESENTATIONS_MAX)?;
    let certification_flag = read_flag(r, "certification flag")?;
    let mut views = Vec::new();
    for _ in 0..n {
        views.push(read_representation(r, "finger representation length", |v| {
            let capture = read_capture(v, certification_flag)?;
            let position = read_position(v)?;
            let view_number = v.u8("view number")?;
            let x_resolution = v.u16("x resolution")?;
            let y_resolution = v.u16("y resolution")?;
            let impression = v.u8("impression type")?;
            let width = v.u16("image width")?;
            let height = v.u16("image height")?;
            let at = v.offset();
            let field = v.u8("minutia field length and ridge ending type")?;
            let with_quality = match field >> 4 {
                5 => false,
                6 => true,
                _ => return Err(IsoError::InvalidValue { field: "minutia field length", at }),
            };
            let minutiae = read_minutiae(v, with_quality)?;
            let extended_data = read_extended(v)?;
            Ok(View2011 {
                capture,
                position,
                view_number,
                x_resolution,
                y_resolution,
                impression,
                width,
                height,
                ridge_ending_type: field & 0x0F,
                minutiae,
                extended_data,
            })
        })?);
    }
    Ok(Record2011 { certification_flag, views })
}

fn read_position(r: &mut Reader<'_>) -> Result<u8, IsoError> {
    let at = r.offset();
    let p = r.u8("finger position")?;
    if p > FINGER_POSITION_MAX { Err(IsoError::InvalidValue { field: "finger position", at }) } else { Ok(p) }
}

fn read_minutiae(r: &mut Reader<'_>, with_quality: bool) -> Result<Vec<Minutia>, IsoError> {
    let n = usize::from(r.u8("minutia count")?);
    // Checked up front so that a lying count fails on its own field, not halfway through.
    let size = if with_quality { 6 } else { 5 };
    let mut body = r.sub(n * size, "minutiae")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = body.offset();
        let xw = body.u16("minutia type and x")?;
        let kind = MinutiaType::from_code(xw >> 14).ok_or(IsoError::InvalidValue { field: "minutia type", at })?;
        let y = body.u16("minutia y")? & COORDINATE_MAX;
        let angle = body.u8("minutia angle")?;
        let quality = if with_quality { Some(body.u8("minutia quality")?) } else { None };
        out.push(Minutia { kind, x: xw & COORDINATE_MAX, y, angle, quality });
    }
    Ok(out)
}

fn read_extended(r: &mut Reader<'_>) -> Result<Vec<u8>, IsoError> {
    let n = usize::from(r.u16("extended data length")?);
    Ok(r.bytes(n, "extended data")?.to_vec())
}

/// Writes a record in its own edition.
///
/// # Errors
/// `TooMany` past [`REPRESENTATIONS_MAX`] views or 255 minutiae; `Unrepresentable` for a finger
/// position above 10, a coordinate above 14 bits, a view number, impression type, ridge ending
/// type or equipment certification above 4 bits, a device type above 12 bits, or minutiae that
/// mix present and absent qualities (2011); `NotInEdition` for a minutia without quality in a
/// 2005 record.
pub fn emit(record: &FingerMinutiaeRecord) -> Result<Vec<u8>, IsoError> {
    let mut out = MAGIC.to_vec();
    match record {
        FingerMinutiaeRecord::Iso2005(r) => {
            out.extend_from_slice(V2005);
            out.extend_from_slice(&[0; 4]);
            if r.equipment_certification > 0x0F {
                return Err(IsoError::Unrepresentable { field: "capture equipment certification" });
            }
            if r.device_type > 0x0FFF {
                return Err(IsoError::Unrepresentable { field: "capture device type" });
            }
            out.extend_from_slice(&((u16::from(r.equipment_certification) << 12) | r.device_type).to_be_bytes());
            for v in [r.width, r.height, r.x_resolution, r.y_resolution] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(count_u8(r.views.len(), "finger views")?);
            out.push(0);
            for v in &r.views {
                write_position(&mut out, v.position)?;
                if v.view_number > 0x0F || v.impression > 0x0F {
                    return Err(IsoError::Unrepresentable { field: "view number or impression type (4 bits each)" });
                }
                out.push((v.view_number << 4) | v.impression);
                out.push(v.quality);
                if v.minutiae.iter().any(|m| m.quality.is_none()) {
                    return Err(IsoError::NotInEdition { field: "minutia without quality", edition: "2005" });
                }
                write_minutiae(&mut out, &v.minutiae, true)?;
                write_extended(&mut out, &v.extended_data)?;
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.views.len())
        }
        FingerMinutiaeRecord::Iso2011(r) => {
            out.extend_from_slice(V2011);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&count_u16(r.views.len(), "finger representations")?.to_be_bytes());
            out.push(u8::from(r.certification_flag));
            for v in &r.views {
                let mut body = Vec::new();
                write_capture(&mut body, &v.capture, r.certification_flag)?;
                write_position(&mut body, v.position)?;
                body.push(v.view_number);
                for x in [v.x_resolution, v.y_resolution] {
                    body.extend_from_slice(&x.to_be_bytes());
                }
                body.push(v.impression);
                body.extend_from_slice(&v.width.to_be_bytes());
                body.extend_from_slice(&v.height.to_be_bytes());
                let with_quality = match v.minutiae.first().map(|m| m.quality.is_some()) {
                    Some(q) if v.minutiae.iter().any(|m| m.quality.is_some() != q) => {
                        return Err(IsoError::Unrepresentable { field: "minutia qualities (all or none must be present)" });
                    }
                    Some(q) => q,
                    None => false,
                };
                if v.ridge_ending_type > 0x0F {
                    return Err(IsoError::Unrepresentable { field: "ridge ending type (4 bits)" });
                }
                body.push((if with_quality { 6 << 4 } else { 5 << 4 }) | v.ridge_ending_type);
                write_minutiae(&mut body, &v.minutiae, with_quality)?;
                write_extended(&mut body, &v.extended_data)?;
                write_representation(&mut out, &body, "finger representation length")?;
            }
            patch_length_u32(&mut out)?;
            check_emitted(out, r.views.len())
        }
    }
}

fn write_position(out: &mut Vec<u8>, position: u8) -> Result<(), IsoError> {
    if position > FINGER_POSITION_MAX {
        return Err(IsoError::Unrepresentable { field: "finger position (0-10)" });
    }
    out.push(position);
    Ok(())
}

fn write_minutiae(out: &mut Vec<u8>, minutiae: &[Minutia], with_quality: bool) -> Result<(), IsoError> {
    out.push(count_u8(minutiae.len(), "minutiae")?);
    for m in minutiae {
        if m.x > COORDINATE_MAX || m.y > COORDINATE_MAX {
            return Err(IsoError::Unrepresentable { field: "minutia coordinate (14 bits)" });
        }
        out.extend_from_slice(&((m.kind.code() << 14) | m.x).to_be_bytes());
        out.extend_from_slice(&m.y.to_be_bytes());
        out.push(m.angle);
        if with_quality {
            out.push(m.quality.unwrap_or_default());
        }
    }
    Ok(())
}

fn write_extended(out: &mut Vec<u8>, data: &[u8]) -> Result<(), IsoError> {
    let n = u16::try_from(data.len()).map_err(|_| IsoError::Unrepresentable { field: "extended data length" })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_truncations_rejected, capture};
    use super::super::{CaptureDateTime, QualityBlock};
    use super::*;
    use proptest::prelude::*;

    /// A 2005 record written byte by byte from the layout in the standard, not by `emit`.
    fn golden_2005() -> Vec<u8> {
        let mut b = b"FMR\0 20\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 50]); // record length: 24 + 4 + 2*6 + 2 + 8
        b.extend_from_slice(&[0x10, 0x05]); // certified, device type 5
        b.extend_from_slice(&[0x01, 0xF4, 0x02, 0x58]); // 500 × 600
        b.extend_from_slice(&[0, 197, 0, 197]); // 197 px/cm
        b.extend_from_slice(&[1, 0]); // one view, reserved
        b.extend_from_slice(&[2, 0x01, 80, 2]); // right index, view 0 / impression 1, quality 80, 2 minutiae
        b.extend_from_slice(&[0x40, 100, 0x00, 200, 64, 90]); // ridge ending (100, 200), 90°, q 90
        b.extend_from_slice(&[0x80 | 0x01, 0x2C, 0xC0, 0x05, 128, 70]); // bifurcation (300, 5): top bits of y reserved
        b.extend_from_slice(&[0, 8]); // extended data
        b.extend_from_slice(&[0x01, 0x01, 0x00, 0x08, 1, 2, 3, 4]);
        b
    }

    #[test]
    fn a_2005_record_written_from_the_standard_parses() {
        let FingerMinutiaeRecord::Iso2005(r) = parse(&golden_2005()).unwrap() else { panic!("edition") };
        assert_eq!((r.equipment_certification, r.device_type, r.width, r.height), (1, 5, 500, 600));
        assert_eq!((r.x_resolution, r.y_resolution), (197, 197));
        let v = &r.views[0];
        assert_eq!((v.position, v.view_number, v.impression, v.quality), (2, 0, 1, 80));
        assert_eq!(v.minutiae[0], Minutia { kind: MinutiaType::RidgeEnding, x: 100, y: 200, angle: 64, quality: Some(90) });
        assert_eq!(v.minutiae[1], Minutia { kind: MinutiaType::Bifurcation, x: 300, y: 5, angle: 128, quality: Some(70) });
        assert!((v.minutiae[0].angle_degrees() - 90.0).abs() < 1e-9);
        assert!((v.minutiae[1].angle_radians() - std::f64::consts::PI).abs() < 1e-12);
        assert_eq!(v.extended_data.len(), 8);
        // The reserved bits of y are not kept, so emit writes them as zero.
        let mut expected = golden_2005();
        expected[36] = 0x00;
        assert_eq!(emit(&FingerMinutiaeRecord::Iso2005(r)).unwrap(), expected);
    }

    #[test]
    fn a_2011_record_written_from_the_standard_parses() {
        let mut b = b"FMR\x00030\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&[0, 1, 0]); // one representation, no certification
        let rep_start = b.len();
        b.extend_from_slice(&[0, 0, 0, 0]); // representation length
        b.extend_from_slice(&[0x07, 0xE8, 3, 19, 10, 1, 2, 0x01, 0x59]); // 2024-03-19 10:01:02.345
        b.extend_from_slice(&[2, 0x00, 0x0F, 0x00, 0x01]); // technology, vendor, type
        b.extend_from_slice(&[1, 60, 0x01, 0x01, 0x00, 0x02]); // one quality block
        b.extend_from_slice(&[7, 0, 0, 197, 0, 197, 0, 0x01, 0x90, 0x01, 0xF4]); // left index, view 0, 400 × 500
        b.extend_from_slice(&[0x51, 1]); // 5-byte minutiae, ending type 1; one minutia
        b.extend_from_slice(&[0x40, 10, 0, 20, 255]);
        b.extend_from_slice(&[0, 0]);
        let rep_len = (b.len() - rep_start) as u32;
        b[rep_start..rep_start + 4].copy_from_slice(&rep_len.to_be_bytes());
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let rec = parse(&b).unwrap();
        let FingerMinutiaeRecord::Iso2011(r) = &rec else { panic!("edition") };
        let v = &r.views[0];
        assert_eq!(
            v.capture.date_time,
            CaptureDateTime { year: 2024, month: 3, day: 19, hour: 10, minute: 1, second: 2, millisecond: 345 }
        );
        assert_eq!(v.capture.quality, vec![QualityBlock { score: 60, vendor: 0x0101, algorithm: 2 }]);
        assert_eq!((v.position, v.width, v.height, v.ridge_ending_type), (7, 400, 500, 1));
        assert_eq!(v.minutiae, vec![Minutia { kind: MinutiaType::RidgeEnding, x: 10, y: 20, angle: 255, quality: None }]);
        let views = rec.views();
        assert_eq!((views[0].quality, views[0].width), (Some(60), 400));
        assert_eq!(emit(&rec).unwrap(), b);
    }

    #[test]
    fn malformed_records_are_rejected_with_the_field() {
        let mut b = golden_2005();
        b[24] = 11; // finger position
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "finger position", at: 24 }));
        let mut b = golden_2005();
        b[28] = 0xC0; // minutia type 3
        assert_eq!(parse(&b), Err(IsoError::InvalidValue { field: "minutia type", at: 28 }));
        let mut b = golden_2005();
        b[27] = 40; // minutia count larger than the record
        assert!(matches!(parse(&b), Err(IsoError::Truncated { field: "minutiae", at: 28, .. })));
        let mut b = golden_2005();
        b.push(0);
        assert_eq!(parse(&b), Err(IsoError::LengthMismatch { field: "record length", declared: 50, actual: 51 }));
        let mut b = golden_2005();
        b[11] = 51;
        b.push(0); // length agrees, but the structure ends a byte early
        assert_eq!(parse(&b), Err(IsoError::LengthMismatch { field: "record length", declared: 51, actual: 50 }));
        let mut b = golden_2005();
        b[22] = 33;
        assert_eq!(parse(&b), Err(IsoError::TooMany { what: "finger views", max: REPRESENTATIONS_MAX }));
    }

    fn minutia(quality: bool) -> impl Strategy<Value = Minutia> {
        (0..3u16, 0..=COORDINATE_MAX, 0..=COORDINATE_MAX, any::<u8>(), any::<u8>()).prop_map(move |(k, x, y, angle, q)| Minutia {
            kind: MinutiaType::from_code(k).unwrap_or(MinutiaType::Other),
            x,
            y,
            angle,
            quality: quality.then_some(q),
        })
    }

    fn record_2005() -> impl Strategy<Value = FingerMinutiaeRecord> {
        let view = (
            0..=10u8,
            0..16u8,
            0..16u8,
            any::<u8>(),
            prop::collection::vec(minutia(true), 0..12),
            prop::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(position, view_number, impression, quality, minutiae, extended_data)| View2005 {
                position,
                view_number,
                impression,
                quality,
                minutiae,
                extended_data,
            });
        (0..16u8, 0..0x1000u16, any::<[u16; 4]>(), prop::collection::vec(view, 0..4)).prop_map(|(c, d, [w, h, xr, yr], views)| {
            FingerMinutiaeRecord::Iso2005(Record2005 {
                equipment_certification: c,
                device_type: d,
                width: w,
                height: h,
                x_resolution: xr,
                y_resolution: yr,
                views,
            })
        })
    }

    fn record_2011() -> impl Strategy<Value = FingerMinutiaeRecord> {
        any::<bool>().prop_flat_map(|cert| {
            let view = (
                capture(cert),
                (0..=10u8, any::<u8>(), any::<u8>(), 0..16u8),
                any::<[u16; 4]>(),
                any::<bool>().prop_flat_map(|q| prop::collection::vec(minutia(q), 0..12)),
                prop::collection::vec(any::<u8>(), 0..8),
            )
                .prop_map(
                    |(capture, (position, view_number, impression, ridge_ending_type), [xr, yr, w, h], minutiae, extended_data)| View2011 {
                        capture,
                        position,
                        view_number,
                        x_resolution: xr,
                        y_resolution: yr,
                        impression,
                        width: w,
                        height: h,
                        ridge_ending_type,
                        minutiae,
                        extended_data,
                    },
                );
            prop::collection::vec(view, 0..4)
                .prop_map(move |views| FingerMinutiaeRecord::Iso2011(Record2011 { certification_flag: cert, views }))
        })
    }

    fn record() -> impl Strategy<Value = FingerMinutiaeRecord> {
        prop_oneof![record_2005(), record_2011()]
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_the_identity(r in record()) {
            let bytes = emit(&r).unwrap();
            prop_assert_eq!(parse(&bytes).unwrap(), r);
        }

        #[test]
        fn every_truncation_of_a_valid_record_is_rejected(r in record()) {
            assert_truncations_rejected(&emit(&r).unwrap(), parse);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256), v in 0..3usize) {
            // Give most inputs a valid magic and version so the parser gets past the header.
            let head: &[u8] = [b"FMR\0 20\0".as_slice(), b"FMR\x00030\0", b""][v];
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
    fn debug_prints_no_minutiae() {
        let FingerMinutiaeRecord::Iso2005(r) = parse(&golden_2005()).unwrap() else { panic!("edition") };
        let s = format!("{r:?} {:?}", r.views[0].minutiae);
        assert!(s.contains("<2 items>") && !s.contains("x: ") && !s.contains("angle"), "{s}");
    }
}
