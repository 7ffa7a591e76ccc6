//! A person's biometric templates as the ABIS keeps them (`TemplateSet`): up to two iris codes,
//! one face embedding and up to ten fingers' minutiae, with the stored byte format
//! `tessera-templates-1` (sealed by the identity repository, never stored in clear).
//!
//! Byte format (little-endian): magic `TTS1`, `entries: u16`; then exactly that many entries
//! to the end (so a cut at an entry boundary is refused too), each
//! `modality: u8` (1 finger, 2 iris, 3 face), `position: u8` (finger: ISO/IEC 19794-2 finger
//! position 1–10; iris: 1 right, 2 left, 0 unknown; face: 0), `length: u32`, then the template:
//! - iris: `IrisCode::to_bytes` (256 bytes of code, 256 of mask);
//! - face: Tessera's face template `TFE1` (`FaceEmbedding::to_bytes`);
//! - finger: `width: u16, height: u16, count: u16`, then per minutia `x: u16, y: u16,
//!   angle: u8` (ISO 19794-2:2005 units), `kind: u8` (0 other, 1 ending, 2 bifurcation),
//!   `quality: u8`.
//!
//! This is an internal, versioned format: templates change when matchers change, so a new
//! version gets a new magic and the gallery loader converts.
//!
//! # From CBEFF
//!
//! `TemplateSet::from_birs` takes what a MOSIP CBEFF document carries:
//! - finger minutiae: format `Mosip`/`2` (ISO/IEC 19794-2, 2005 or 2011 edition), one template
//!   per finger view, coordinates scaled to 500 ppi when the record says otherwise;
//! - iris codes: format `Tessera`/`1` (`IrisCode::to_bytes`), eye from the subtype;
//! - face embeddings: format `Tessera`/`2` (`TFE1`).
//!
//! Images (finger 19794-4, face 19794-5, iris 19794-6: MOSIP formats 7, 8, 9) are checked as
//! records but need a feature extractor (NBIS for fingers; a face or iris recogniser) that this
//! crate does not contain: a document with images and no templates is `NeedsExtractor`.
//! Exception photos and other types are ignored.

use crate::cbeff::{BdbInfo, BioType, Bir, ProcessedLevel, Purpose, RegistryId};
use crate::face::FaceEmbedding;
use crate::finger::{FingerTemplate, Minutia, MinutiaKind};
use crate::iris::{CODE_BYTES, IrisCode};
use crate::iso19794::{self, IsoError};

/// First four bytes of a stored template set.
pub const MAGIC: [u8; 4] = *b"TTS1";
/// Most iris codes per person.
pub const IRISES_MAX: usize = 2;
/// Most fingers per person.
pub const FINGERS_MAX: usize = 10;
/// Largest stored template set, in bytes (ten fingers of 255 minutiae, two irises, a face).
pub const SET_BYTES_MAX: usize = 64 * 1024;

/// Which eye an iris code is of (CBEFF subtype `Right` / `Left`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eye {
    Unknown = 0,
    Right = 1,
    Left = 2,
}

/// One person's templates.
#[derive(Clone, Default, PartialEq)]
pub struct TemplateSet {
    pub irises: Vec<(Eye, IrisCode)>,
    pub face: Option<FaceEmbedding>,
    /// (ISO/IEC 19794-2 finger position 1–10, or 0 unknown; template).
    pub fingers: Vec<(u8, FingerTemplate)>,
}

impl std::fmt::Debug for TemplateSet {
    /// Counts only: biometric data is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TemplateSet(irises: {}, face: {}, fingers: {})", self.irises.len(), self.face.is_some(), self.fingers.len())
    }
}

/// Why bytes are not a template set. No template data in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("not a tessera-templates-1 set (bad magic)")]
    Magic,
    #[error("template set truncated at byte {0}")]
    Truncated(usize),
    #[error("template set is larger than {SET_BYTES_MAX} bytes")]
    TooLarge,
    #[error("unknown modality {0} in a template set")]
    Modality(u8),
    #[error("a template set holds more than {IRISES_MAX} irises, {FINGERS_MAX} fingers or one face")]
    TooMany,
    #[error("an entry of a template set is invalid: {0}")]
    Entry(&'static str),
}

impl TemplateSet {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.irises.is_empty() && self.face.is_none() && self.fingers.is_empty()
    }

    /// Limits hold (counts per modality).
    ///
    /// # Errors
    /// `TooMany`.
    pub fn check(&self) -> Result<(), SetError> {
        if self.irises.len() > IRISES_MAX || self.fingers.len() > FINGERS_MAX {
            return Err(SetError::TooMany);
        }
        Ok(())
    }

    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let entries = self.irises.len() + usize::from(self.face.is_some()) + self.fingers.len();
        out.extend_from_slice(&u16::try_from(entries).unwrap_or(u16::MAX).to_le_bytes());
        let mut entry = |modality: u8, position: u8, body: &[u8]| {
            out.push(modality);
            out.push(position);
            out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(body);
        };
        for (eye, code) in &self.irises {
            entry(2, *eye as u8, &code.to_bytes());
        }
        if let Some(face) = &self.face {
            entry(3, 0, &face.to_bytes());
        }
        for (position, t) in &self.fingers {
            entry(1, *position, &finger_bytes(t));
        }
        out
    }

    /// # Errors
    /// The first fault found; never panics on any input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SetError> {
        if bytes.len() > SET_BYTES_MAX {
            return Err(SetError::TooLarge);
        }
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err(SetError::Magic);
        }
        let count = bytes.get(4..6).map(|c| usize::from(u16::from_le_bytes([c[0], c[1]]))).ok_or(SetError::Truncated(4))?;
        if count > IRISES_MAX + 1 + FINGERS_MAX {
            return Err(SetError::TooMany);
        }
        let mut set = TemplateSet::default();
        let mut at = 6;
        for _ in 0..count {
            let header = bytes.get(at..at + 6).ok_or(SetError::Truncated(at))?;
            let (modality, position) = (header[0], header[1]);
            let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
            let body = bytes.get(at + 6..at + 6 + len).ok_or(SetError::Truncated(at + 6))?;
            at += 6 + len;
            match modality {
                1 => {
                    if position > 10 {
                        return Err(SetError::Entry("finger position"));
                    }
                    set.fingers.push((position, finger_from_bytes(body)?));
                }
                2 => {
                    let eye = match position {
                        0 => Eye::Unknown,
                        1 => Eye::Right,
                        2 => Eye::Left,
                        _ => return Err(SetError::Entry("eye")),
                    };
                    if body.len() != 2 * CODE_BYTES {
                        return Err(SetError::Entry("iris code length"));
                    }
                    set.irises.push((eye, IrisCode::from_bytes(body).map_err(|_| SetError::Entry("iris code"))?));
                }
                3 => {
                    if set.face.is_some() {
                        return Err(SetError::TooMany);
                    }
                    set.face = Some(FaceEmbedding::from_bytes(body).map_err(|_| SetError::Entry("face template"))?);
                }
                m => return Err(SetError::Modality(m)),
            }
        }
        if at != bytes.len() {
            return Err(SetError::Entry("bytes after the last entry"));
        }
        set.check()?;
        Ok(set)
    }
}

/// CBEFF format owner of Tessera's own template formats.
pub const TESSERA_ORGANIZATION: &str = "Tessera";
/// Format type of an iris code (`IrisCode::to_bytes`) under `Tessera`.
pub const FORMAT_IRIS_CODE: &str = "1";
/// Format type of a face embedding (`TFE1`) under `Tessera`.
pub const FORMAT_FACE_EMBEDDING: &str = "2";
/// MOSIP's format owner and its format types (ISO/IEC 19794 records).
pub const MOSIP_ORGANIZATION: &str = "Mosip";
const MOSIP_FINGER_MINUTIAE: u16 = 2;
const MOSIP_FINGER_IMAGE: u16 = 7;
const MOSIP_FACE_IMAGE: u16 = 8;
const MOSIP_IRIS_IMAGE: u16 = 9;
/// 500 ppi in pixels per centimetre, the resolution the finger matcher works at.
const PPCM_500: u32 = 197;

/// MOSIP's finger subtypes by ISO/IEC 19794-2 finger position (1 = right thumb … 10 = left
/// little finger).
pub const FINGER_SUBTYPES: [&str; 10] = [
    "Right Thumb",
    "Right IndexFinger",
    "Right MiddleFinger",
    "Right RingFinger",
    "Right LittleFinger",
    "Left Thumb",
    "Left IndexFinger",
    "Left MiddleFinger",
    "Left RingFinger",
    "Left LittleFinger",
];

/// Why a CBEFF document yields no template set. No biometric data in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the document holds no finger, iris or face data")]
    NoData,
    #[error("the document holds only images, and no feature extractor is configured")]
    NeedsExtractor,
    #[error("record {index} ({what}) is malformed: {error}")]
    Record { index: usize, what: &'static str, error: IsoError },
    #[error("record {index} ({what}) is invalid: {reason}")]
    Template { index: usize, what: &'static str, reason: String },
    #[error("the document holds more than {IRISES_MAX} irises, {FINGERS_MAX} fingers or one face")]
    TooMany,
}

fn is_org(info: &BdbInfo, org: &str) -> bool {
    info.format.as_ref().is_some_and(|f| f.organization.eq_ignore_ascii_case(org))
}

fn format_type(info: &BdbInfo) -> Option<&str> {
    info.format.as_ref().map(|f| f.type_id.trim())
}

impl TemplateSet {
    /// The templates a CBEFF document carries (see the module doc for which formats).
    ///
    /// # Errors
    /// A malformed record (with its index), too many of a modality, no data at all, or only
    /// images.
    pub fn from_birs(birs: &[Bir]) -> Result<Self, ExtractError> {
        let mut set = TemplateSet::default();
        let mut images = 0;
        for (index, bir) in birs.iter().enumerate() {
            let info = &bir.bdb_info;
            let kind = info.bio_types.first();
            let tessera = is_org(info, TESSERA_ORGANIZATION);
            match (kind, tessera, format_type(info)) {
                (Some(BioType::Iris), true, Some(FORMAT_IRIS_CODE)) => {
                    let code = IrisCode::from_bytes(&bir.bdb).map_err(|e| ExtractError::Template {
                        index,
                        what: "iris code",
                        reason: e.to_string(),
                    })?;
                    set.irises.push((eye_of(&info.subtypes), code));
                }
                (Some(BioType::Face), true, Some(FORMAT_FACE_EMBEDDING)) => {
                    if set.face.is_some() {
                        return Err(ExtractError::TooMany);
                    }
                    set.face = Some(FaceEmbedding::from_bytes(&bir.bdb).map_err(|e| ExtractError::Template {
                        index,
                        what: "face embedding",
                        reason: e.to_string(),
                    })?);
                }
                (Some(BioType::Finger), false, _) if info.format_type() == Some(MOSIP_FINGER_MINUTIAE) => {
                    let record = iso19794::finger_minutiae::parse(&bir.bdb).map_err(|error| ExtractError::Record {
                        index,
                        what: "finger minutiae",
                        error,
                    })?;
                    for view in record.views() {
                        let position = if view.position == 0 { finger_position(&info.subtypes) } else { view.position };
                        let t =
                            finger_template(&view).map_err(|reason| ExtractError::Template { index, what: "finger minutiae", reason })?;
                        set.fingers.push((position, t));
                    }
                }
                (Some(BioType::Finger | BioType::Iris | BioType::Face), false, _) => {
                    let what = match info.format_type() {
                        Some(MOSIP_FINGER_IMAGE) => "finger image",
                        Some(MOSIP_FACE_IMAGE) => "face image",
                        Some(MOSIP_IRIS_IMAGE) => "iris image",
                        _ => return Err(ExtractError::Template { index, what: "record", reason: "unknown BDB format".into() }),
                    };
                    // Checked, so a malformed image is refused now rather than at extraction.
                    iso19794::parse(&bir.bdb).map_err(|error| ExtractError::Record { index, what, error })?;
                    images += 1;
                }
                (Some(BioType::Finger | BioType::Iris | BioType::Face), true, _) => {
                    return Err(ExtractError::Template { index, what: "record", reason: "unknown Tessera format type".into() });
                }
                _ => {}
            }
        }
        if set.irises.len() > IRISES_MAX || set.fingers.len() > FINGERS_MAX {
            return Err(ExtractError::TooMany);
        }
        if set.is_empty() {
            return Err(if images > 0 { ExtractError::NeedsExtractor } else { ExtractError::NoData });
        }
        Ok(set)
    }

    /// The set as CBEFF records: fingers as ISO/IEC 19794-2:2005 minutiae (MOSIP format 2), irises
    /// and face in Tessera's formats. `creation_date` is written into each BDBInfo.
    #[must_use]
    pub fn to_birs(&self, creation_date: &str) -> Vec<Bir> {
        let info = |bio: BioType, subtype: Option<&str>, org: &str, ty: &str| BdbInfo {
            format: Some(RegistryId::new(org, ty)),
            creation_date: Some(creation_date.to_owned()),
            bio_types: vec![bio],
            subtypes: subtype.map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default(),
            level: Some(ProcessedLevel::Processed),
            purpose: Some(Purpose::Enroll),
            ..BdbInfo::default()
        };
        let mut out = Vec::new();
        for (position, t) in &self.fingers {
            let subtype = usize::from(*position).checked_sub(1).and_then(|i| FINGER_SUBTYPES.get(i)).copied();
            let record = iso19794::finger_minutiae::FingerMinutiaeRecord::Iso2005(iso19794::finger_minutiae::Record2005 {
                equipment_certification: 0,
                device_type: 0,
                width: t.width(),
                height: t.height(),
                x_resolution: 197,
                y_resolution: 197,
                views: vec![iso19794::finger_minutiae::View2005 {
                    position: *position,
                    view_number: 0,
                    impression: 0,
                    quality: 0,
                    minutiae: t
                        .minutiae()
                        .iter()
                        .map(|m| iso19794::finger_minutiae::Minutia {
                            kind: match m.kind {
                                MinutiaKind::Other => iso19794::finger_minutiae::MinutiaType::Other,
                                MinutiaKind::Ending => iso19794::finger_minutiae::MinutiaType::RidgeEnding,
                                MinutiaKind::Bifurcation => iso19794::finger_minutiae::MinutiaType::Bifurcation,
                            },
                            x: m.x,
                            y: m.y,
                            angle: m.angle,
                            quality: Some(m.quality),
                        })
                        .collect(),
                    extended_data: Vec::new(),
                }],
            });
            // A valid FingerTemplate always fits a 2005 record (coordinates ≤ 2048 < 2^14).
            if let Ok(bdb) = iso19794::finger_minutiae::emit(&record) {
                out.push(Bir::new(info(BioType::Finger, subtype, MOSIP_ORGANIZATION, "2"), bdb));
            }
        }
        for (eye, code) in &self.irises {
            let subtype = match eye {
                Eye::Right => Some("Right"),
                Eye::Left => Some("Left"),
                Eye::Unknown => None,
            };
            out.push(Bir::new(info(BioType::Iris, subtype, TESSERA_ORGANIZATION, FORMAT_IRIS_CODE), code.to_bytes()));
        }
        if let Some(face) = &self.face {
            out.push(Bir::new(info(BioType::Face, None, TESSERA_ORGANIZATION, FORMAT_FACE_EMBEDDING), face.to_bytes()));
        }
        out
    }
}

fn eye_of(subtypes: &[String]) -> Eye {
    match subtypes.first().map(String::as_str) {
        Some("Right") => Eye::Right,
        Some("Left") => Eye::Left,
        _ => Eye::Unknown,
    }
}

/// ISO finger position from MOSIP's subtype words (`["Right", "IndexFinger"]`), 0 if unknown.
fn finger_position(subtypes: &[String]) -> u8 {
    let name = subtypes.join(" ");
    FINGER_SUBTYPES.iter().position(|s| *s == name).and_then(|i| u8::try_from(i + 1).ok()).unwrap_or(0)
}

/// A matcher template from an ISO view, scaled to 500 ppi.
fn finger_template(view: &iso19794::finger_minutiae::MinutiaeView<'_>) -> Result<FingerTemplate, String> {
    let scale = |v: u16, res: u16| -> u16 {
        if res == 0 || u32::from(res) == PPCM_500 { v } else { u16::try_from(u32::from(v) * PPCM_500 / u32::from(res)).unwrap_or(u16::MAX) }
    };
    let minutiae = view
        .minutiae
        .iter()
        .map(|m| Minutia {
            x: scale(m.x, view.x_resolution),
            y: scale(m.y, view.y_resolution),
            angle: m.angle,
            kind: match m.kind {
                iso19794::finger_minutiae::MinutiaType::Other => MinutiaKind::Other,
                iso19794::finger_minutiae::MinutiaType::RidgeEnding => MinutiaKind::Ending,
                iso19794::finger_minutiae::MinutiaType::Bifurcation => MinutiaKind::Bifurcation,
            },
            quality: m.quality.filter(|q| *q <= crate::finger::QUALITY_MAX).unwrap_or(0),
        })
        .collect();
    FingerTemplate::new(scale(view.width, view.x_resolution).max(1), scale(view.height, view.y_resolution).max(1), minutiae)
        .map_err(|e| e.to_string())
}

fn finger_bytes(t: &FingerTemplate) -> Vec<u8> {
    let m = t.minutiae();
    let mut out = Vec::with_capacity(6 + 7 * m.len());
    out.extend_from_slice(&t.width().to_le_bytes());
    out.extend_from_slice(&t.height().to_le_bytes());
    out.extend_from_slice(&u16::try_from(m.len()).unwrap_or(u16::MAX).to_le_bytes());
    for p in m {
        out.extend_from_slice(&p.x.to_le_bytes());
        out.extend_from_slice(&p.y.to_le_bytes());
        out.push(p.angle);
        out.push(match p.kind {
            MinutiaKind::Other => 0,
            MinutiaKind::Ending => 1,
            MinutiaKind::Bifurcation => 2,
        });
        out.push(p.quality);
    }
    out
}

fn finger_from_bytes(b: &[u8]) -> Result<FingerTemplate, SetError> {
    let u16_at = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or(SetError::Entry("finger template truncated"));
    let (width, height, count) = (u16_at(0)?, u16_at(2)?, usize::from(u16_at(4)?));
    if b.len() != 6 + 7 * count {
        return Err(SetError::Entry("finger template length"));
    }
    let minutiae = b[6..]
        .chunks_exact(7)
        .map(|c| {
            let kind = match c[5] {
                0 => MinutiaKind::Other,
                1 => MinutiaKind::Ending,
                2 => MinutiaKind::Bifurcation,
                _ => return Err(SetError::Entry("minutia kind")),
            };
            Ok(Minutia { x: u16::from_le_bytes([c[0], c[1]]), y: u16::from_le_bytes([c[2], c[3]]), angle: c[4], kind, quality: c[6] })
        })
        .collect::<Result<Vec<_>, _>>()?;
    FingerTemplate::new(width, height, minutiae).map_err(|_| SetError::Entry("finger template"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SynthEye;
    use crate::synth_face::SynthFace;
    use crate::synth_finger::SynthHands;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn sample(seed: u64) -> TemplateSet {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let hands = SynthHands::random(&mut rng);
        TemplateSet {
            irises: vec![
                (Eye::Right, SynthEye::random(&mut rng).capture(&mut rng)),
                (Eye::Left, SynthEye::random(&mut rng).capture(&mut rng)),
            ],
            face: Some(SynthFace::random(&mut rng).capture(&mut rng)),
            fingers: hands.capture(&mut rng).into_iter().enumerate().map(|(i, t)| (u8::try_from(i + 1).unwrap(), t)).collect(),
        }
    }

    #[test]
    fn round_trip_and_limits() {
        let set = sample(1);
        let bytes = set.to_bytes();
        assert!(bytes.len() < SET_BYTES_MAX);
        assert_eq!(TemplateSet::from_bytes(&bytes).unwrap(), set);
        assert_eq!(format!("{set:?}"), "TemplateSet(irises: 2, face: true, fingers: 10)");
        assert_eq!(TemplateSet::from_bytes(b"TTS1\0\0").unwrap(), TemplateSet::default());
        assert_eq!(TemplateSet::from_bytes(&TemplateSet::default().to_bytes()).unwrap(), TemplateSet::default());
        assert_eq!(TemplateSet::from_bytes(b"XXXX"), Err(SetError::Magic));
        // Every truncation inside the entries is refused, never misread.
        for cut in 0..bytes.len() {
            assert!(TemplateSet::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut three = set.clone();
        three.irises.push(three.irises[0].clone());
        assert_eq!(TemplateSet::from_bytes(&three.to_bytes()), Err(SetError::TooMany));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(TemplateSet::from_bytes(&longer).is_err());
    }

    #[test]
    fn cbeff_round_trip_and_refusals() {
        let set = sample(2);
        let xml = crate::cbeff::emit(&set.to_birs("2026-11-25T10:00:00.000Z"));
        let birs = crate::cbeff::parse(xml.as_bytes()).unwrap();
        assert_eq!(birs.len(), 13);
        assert_eq!(TemplateSet::from_birs(&birs).unwrap(), set);
        assert_eq!(TemplateSet::from_birs(&[]), Err(ExtractError::NoData));
        // A corrupt minutiae record is refused with its index, not skipped.
        let mut bad = birs.clone();
        bad[3].bdb.truncate(20);
        assert!(matches!(TemplateSet::from_birs(&bad), Err(ExtractError::Record { index: 3, .. })));
        let mut bad = birs.clone();
        bad[11].bdb.pop();
        assert!(matches!(TemplateSet::from_birs(&bad), Err(ExtractError::Template { index: 11, .. })));
        // Two faces.
        let mut two = birs.clone();
        two.push(birs[12].clone());
        assert_eq!(TemplateSet::from_birs(&two), Err(ExtractError::TooMany));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = MAGIC.to_vec();
            b.extend(tail);
            let _ = TemplateSet::from_bytes(&b);
        }
    }
}
