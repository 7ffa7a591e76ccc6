//! ISO/IEC 19794 biometric data records: finger minutiae (-2), finger image (-4), face image (-5),
//! iris image (-6). Parse into typed records and emit them again, for both editions MOSIP meets.
//!
//! | part | magic   | 2005 edition version | 2011 edition version | module |
//! |------|---------|----------------------|----------------------|--------|
//! | -2   | `FMR\0` | `" 20\0"`            | `"030\0"`            | [`finger_minutiae`] |
//! | -4   | `FIR\0` | `"010\0"`            | `"020\0"`            | [`finger_image`] |
//! | -5   | `FAC\0` | `"010\0"`            | `"030\0"`            | [`face_image`] |
//! | -6   | `IIR\0` | `"010\0"`            | `"020\0"`            | [`iris_image`] |
//!
//! All integers are big-endian. The 2011 editions share the ISO/IEC 19794-1:2011 framing: a
//! general header (magic, version, 4-byte record length, 2-byte representation count,
//! certification flag, part-specific bytes), then representations that each open with a 4-byte
//! length, a 9-byte capture date and time, capture device technology/vendor/type identifiers and
//! quality blocks ([`Capture`]).
//!
//! Strictness: the declared record length must equal the buffer length, every representation
//! length must equal what its structure consumes (so a truncated or padded record is rejected,
//! never half-read), every count is checked against the bytes that are actually there before
//! anything is read, and every count has a named limit. Codes whose meaning we rely on (format
//! versions, minutia types, compression and image formats, eye labels, certification flags,
//! minutia field sizes) are checked; purely descriptive codes (impression type, gender, colour
//! space, ...) are kept as the raw numbers so that records from any conformant producer parse.
//! Vendor extension data (extended data blocks, segmentation/annotation blocks, 3D face data) is
//! kept as opaque bytes: skipped safely, and written back unchanged.
//!
//! Errors name the field and the byte offset; they never repeat the record's bytes. `Debug` of a
//! record prints its structure and sizes, never minutiae, landmarks or image bytes.

pub mod face_image;
pub mod finger_image;
pub mod finger_minutiae;
pub mod iris_image;

/// Largest record accepted (bytes). A 1080p JPEG 2000 face or a 500 ppi lossless slap is well
/// under this; anything bigger is not a capture we should be decoding.
pub const RECORD_BYTES_MAX: usize = 8 << 20;
/// Most representations (finger views, images, face images, iris images) in one record. Ten
/// fingers, a few slaps and retries, two eyes: 32 covers every enrolment profile MOSIP uses.
pub const REPRESENTATIONS_MAX: usize = 32;

/// Which edition of the part a record follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    /// ISO/IEC 19794-x:2005 (part 2: version `" 20"`, parts 4, 5, 6: version `"010"`).
    Iso2005,
    /// ISO/IEC 19794-x:2011 (part 2 and 5: `"030"`, parts 4 and 6: `"020"`).
    Iso2011,
}

impl Edition {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Edition::Iso2005 => "2005",
            Edition::Iso2011 => "2011",
        }
    }
}

/// Why a record was rejected (parse) or could not be written (emit). Offsets are from the start
/// of the record. Messages carry field names, offsets and lengths, never record bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoError {
    #[error("not {expected} (wrong format identifier)")]
    BadMagic { expected: &'static str },
    #[error("unsupported {format} version; supported: {supported}")]
    UnsupportedVersion { format: &'static str, supported: &'static str },
    #[error("record of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("truncated: {field} at byte {at} needs {need} bytes but {have} remain")]
    Truncated { field: &'static str, at: usize, need: usize, have: usize },
    #[error("{field} declares {declared} bytes but the structure has {actual}")]
    LengthMismatch { field: &'static str, declared: u64, actual: u64 },
    #[error("too many {what}: at most {max}")]
    TooMany { what: &'static str, max: usize },
    #[error("invalid {field} at byte {at}")]
    InvalidValue { field: &'static str, at: usize },
    /// Emit: the value has no encoding in the record's edition (e.g. PNG in a 2005 finger record).
    #[error("{field} cannot be written in the {edition} edition")]
    NotInEdition { field: &'static str, edition: &'static str },
    /// Emit: the value does not fit its field (e.g. a minutia x above 14 bits).
    #[error("{field} does not fit its field")]
    Unrepresentable { field: &'static str },
}

/// How an image is encoded. Each part and edition has its own code table; a variant that a table
/// lacks cannot be written in that edition ([`IsoError::NotInEdition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageEncoding {
    /// Uncompressed, one sample per byte (or per two bytes above 8 bits).
    Raw,
    /// Uncompressed, bit-packed (finger images only).
    RawBitPacked,
    /// FBI Wavelet Scalar Quantization (finger images only).
    Wsq,
    Jpeg,
    /// JPEG-LS (iris 2005 only).
    JpegLs,
    /// JPEG 2000 where the edition does not say lossy or lossless.
    Jpeg2000,
    Jpeg2000Lossy,
    Jpeg2000Lossless,
    Png,
}

/// A capture date and time (ISO/IEC 19794-1:2011, 9 bytes). Not interpreted; each field is all
/// ones (0xFF / 0xFFFF) when not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaptureDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
}

impl CaptureDateTime {
    /// Every field "not reported".
    pub const UNREPORTED: CaptureDateTime =
        CaptureDateTime { year: 0xFFFF, month: 0xFF, day: 0xFF, hour: 0xFF, minute: 0xFF, second: 0xFF, millisecond: 0xFFFF };
}

/// A quality block: score 0–100 (255: the algorithm failed), and the registered (IBIA) vendor
/// and algorithm that computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QualityBlock {
    pub score: u8,
    pub vendor: u16,
    pub algorithm: u16,
}

/// A certification block: certification authority and scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificationBlock {
    pub authority: u16,
    pub scheme: u8,
}

/// The ISO/IEC 19794-1:2011 representation header fields common to the 2011 editions.
/// Certification blocks exist only in parts 2 and 4 (and only when the record's certification
/// flag is set); parts 5 and 6 require the flag to be 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub date_time: CaptureDateTime,
    pub device_technology: u8,
    pub device_vendor: u16,
    pub device_type: u16,
    pub quality: Vec<QualityBlock>,
    pub certifications: Vec<CertificationBlock>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            date_time: CaptureDateTime::UNREPORTED,
            device_technology: 0,
            device_vendor: 0,
            device_type: 0,
            quality: Vec::new(),
            certifications: Vec::new(),
        }
    }
}

/// Any supported record, told apart by its format identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    FingerMinutiae(finger_minutiae::FingerMinutiaeRecord),
    FingerImage(finger_image::FingerImageRecord),
    Face(face_image::FaceRecord),
    Iris(iris_image::IrisRecord),
}

impl Record {
    /// The CBEFF BDB format type MOSIP writes for this kind of record (patron 257): 2 finger
    /// minutiae, 7 finger image, 8 face image, 9 iris image.
    #[must_use]
    pub fn cbeff_format_type(&self) -> u16 {
        match self {
            Record::FingerMinutiae(_) => 2,
            Record::FingerImage(_) => 7,
            Record::Face(_) => 8,
            Record::Iris(_) => 9,
        }
    }

    #[must_use]
    pub fn edition(&self) -> Edition {
        match self {
            Record::FingerMinutiae(r) => r.edition(),
            Record::FingerImage(r) => r.edition(),
            Record::Face(r) => r.edition(),
            Record::Iris(r) => r.edition(),
        }
    }

    /// # Errors
    /// As the part's own `emit`.
    pub fn emit(&self) -> Result<Vec<u8>, IsoError> {
        match self {
            Record::FingerMinutiae(r) => finger_minutiae::emit(r),
            Record::FingerImage(r) => finger_image::emit(r),
            Record::Face(r) => face_image::emit(r),
            Record::Iris(r) => iris_image::emit(r),
        }
    }
}

/// Parses a record of any supported part, chosen by its format identifier.
///
/// # Errors
/// `BadMagic` when the identifier is none of `FMR`, `FIR`, `FAC`, `IIR`; otherwise as the part's
/// own `parse`.
pub fn parse(bytes: &[u8]) -> Result<Record, IsoError> {
    match bytes.get(..4) {
        Some(m) if m == finger_minutiae::MAGIC => finger_minutiae::parse(bytes).map(Record::FingerMinutiae),
        Some(m) if m == finger_image::MAGIC => finger_image::parse(bytes).map(Record::FingerImage),
        Some(m) if m == face_image::MAGIC => face_image::parse(bytes).map(Record::Face),
        Some(m) if m == iris_image::MAGIC => iris_image::parse(bytes).map(Record::Iris),
        _ => Err(IsoError::BadMagic { expected: "an ISO/IEC 19794-2, -4, -5 or -6 record" }),
    }
}

/// Checked big-endian reads over an untrusted buffer. Every read either returns the bytes or a
/// `Truncated` error naming the field; nothing indexes past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole record, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, base: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], IsoError> {
        let have = self.remaining();
        let out = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)).ok_or(IsoError::Truncated {
            field,
            at: self.offset(),
            need: n,
            have,
        })?;
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], IsoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, field)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, IsoError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, IsoError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u24(&mut self, field: &'static str) -> Result<u32, IsoError> {
        let [a, b, c] = self.array(field)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, IsoError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u48(&mut self, field: &'static str) -> Result<u64, IsoError> {
        let [a, b, c, d, e, f] = self.array(field)?;
        Ok(u64::from_be_bytes([0, 0, a, b, c, d, e, f]))
    }

    /// A reader over the next `n` bytes, which this reader skips.
    pub(crate) fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, IsoError> {
        let base = self.offset();
        let buf = self.bytes(n, field)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    /// A length field must account for exactly the structure inside it: `declared` is the value
    /// of the field, `framing` the bytes it covers that this reader does not (its own header).
    pub(crate) fn finish(&self, field: &'static str, declared: u64, framing: usize) -> Result<(), IsoError> {
        if self.remaining() == 0 {
            return Ok(());
        }
        Err(IsoError::LengthMismatch { field, declared, actual: (framing + self.pos) as u64 })
    }
}

/// A count read from the record: at most `max`.
pub(crate) fn limit(n: usize, what: &'static str, max: usize) -> Result<usize, IsoError> {
    if n > max { Err(IsoError::TooMany { what, max }) } else { Ok(n) }
}

/// Checks the size limit, the format identifier and the version; returns the edition and a
/// reader positioned after the version.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    format: &'static str,
    versions: [(&[u8; 4], Edition); 2],
    supported: &'static str,
) -> Result<(Edition, Reader<'a>), IsoError> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(IsoError::TooLarge { len: bytes.len(), max: RECORD_BYTES_MAX });
    }
    let mut r = Reader::new(bytes);
    if r.bytes(4, "format identifier").ok() != Some(magic.as_slice()) {
        return Err(IsoError::BadMagic { expected: format });
    }
    let v = r.bytes(4, "version").map_err(|_| IsoError::UnsupportedVersion { format, supported })?;
    let edition = versions
        .iter()
        .find(|(code, _)| code.as_slice() == v)
        .map(|&(_, e)| e)
        .ok_or(IsoError::UnsupportedVersion { format, supported })?;
    Ok((edition, r))
}

/// The record length field must equal the buffer length exactly.
pub(crate) fn check_record_length(declared: u64, actual: usize) -> Result<(), IsoError> {
    if declared == actual as u64 {
        Ok(())
    } else {
        Err(IsoError::LengthMismatch { field: "record length", declared, actual: actual as u64 })
    }
}

/// A certification flag byte: 0 or 1.
pub(crate) fn read_flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, IsoError> {
    let at = r.offset();
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(IsoError::InvalidValue { field, at }),
    }
}

/// Reads one 2011 representation: its 4-byte length (which counts itself), then hands the body
/// to `body`, which must consume it exactly.
pub(crate) fn read_representation<'a, T>(
    r: &mut Reader<'a>,
    field: &'static str,
    body: impl FnOnce(&mut Reader<'a>) -> Result<T, IsoError>,
) -> Result<T, IsoError> {
    let at = r.offset();
    let declared = r.u32(field)?;
    let inner = usize::try_from(declared).ok().and_then(|d| d.checked_sub(4)).ok_or(IsoError::InvalidValue { field, at })?;
    let mut rep = r.sub(inner, field)?;
    let out = body(&mut rep)?;
    rep.finish(field, u64::from(declared), 4)?;
    Ok(out)
}

/// Reads the 2011 capture fields; certification blocks only when the record says so.
pub(crate) fn read_capture(r: &mut Reader<'_>, certifications: bool) -> Result<Capture, IsoError> {
    let date_time = CaptureDateTime {
        year: r.u16("capture year")?,
        month: r.u8("capture month")?,
        day: r.u8("capture day")?,
        hour: r.u8("capture hour")?,
        minute: r.u8("capture minute")?,
        second: r.u8("capture second")?,
        millisecond: r.u16("capture millisecond")?,
    };
    let device_technology = r.u8("capture device technology")?;
    let device_vendor = r.u16("capture device vendor")?;
    let device_type = r.u16("capture device type")?;
    let n = usize::from(r.u8("quality block count")?);
    let mut quality = Vec::new();
    for _ in 0..n {
        quality.push(QualityBlock {
            score: r.u8("quality score")?,
            vendor: r.u16("quality algorithm vendor")?,
            algorithm: r.u16("quality algorithm")?,
        });
    }
    let mut certs = Vec::new();
    if certifications {
        let n = usize::from(r.u8("certification block count")?);
        for _ in 0..n {
            certs.push(CertificationBlock { authority: r.u16("certification authority")?, scheme: r.u8("certification scheme")? });
        }
    }
    Ok(Capture { date_time, device_technology, device_vendor, device_type, quality, certifications: certs })
}

/// Writes the 2011 capture fields. `certifications`: whether the record's flag is set (parts 2
/// and 4); when it is not, the capture must carry no certification blocks.
pub(crate) fn write_capture(out: &mut Vec<u8>, c: &Capture, certifications: bool) -> Result<(), IsoError> {
    let d = &c.date_time;
    out.extend_from_slice(&d.year.to_be_bytes());
    out.extend_from_slice(&[d.month, d.day, d.hour, d.minute, d.second]);
    out.extend_from_slice(&d.millisecond.to_be_bytes());
    out.push(c.device_technology);
    out.extend_from_slice(&c.device_vendor.to_be_bytes());
    out.extend_from_slice(&c.device_type.to_be_bytes());
    out.push(count_u8(c.quality.len(), "quality blocks")?);
    for q in &c.quality {
        out.push(q.score);
        out.extend_from_slice(&q.vendor.to_be_bytes());
        out.extend_from_slice(&q.algorithm.to_be_bytes());
    }
    if certifications {
        out.push(count_u8(c.certifications.len(), "certification blocks")?);
        for cb in &c.certifications {
            out.extend_from_slice(&cb.authority.to_be_bytes());
            out.push(cb.scheme);
        }
    } else if !c.certifications.is_empty() {
        return Err(IsoError::Unrepresentable { field: "certification blocks (the record's certification flag is not set)" });
    }
    Ok(())
}

/// Appends a 2011 representation: a 4-byte length that counts itself, then `body`.
pub(crate) fn write_representation(out: &mut Vec<u8>, body: &[u8], field: &'static str) -> Result<(), IsoError> {
    let len = body.len().checked_add(4).and_then(|n| u32::try_from(n).ok()).ok_or(IsoError::Unrepresentable { field })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

pub(crate) fn count_u8(n: usize, what: &'static str) -> Result<u8, IsoError> {
    u8::try_from(n).map_err(|_| IsoError::TooMany { what, max: usize::from(u8::MAX) })
}

pub(crate) fn count_u16(n: usize, what: &'static str) -> Result<u16, IsoError> {
    u16::try_from(n).map_err(|_| IsoError::TooMany { what, max: usize::from(u16::MAX) })
}

pub(crate) fn len_u32(n: usize, field: &'static str) -> Result<u32, IsoError> {
    u32::try_from(n).map_err(|_| IsoError::Unrepresentable { field })
}

/// Writes the 4-byte record length at bytes 8..12 once the record is complete.
pub(crate) fn patch_length_u32(out: &mut [u8]) -> Result<(), IsoError> {
    let len = len_u32(out.len(), "record length")?.to_be_bytes();
    if let Some(slot) = out.get_mut(8..12) {
        slot.copy_from_slice(&len);
    }
    Ok(())
}

/// A limit check for emit: a record we would refuse to parse is not written either.
pub(crate) fn check_emitted(out: Vec<u8>, representations: usize) -> Result<Vec<u8>, IsoError> {
    if representations > REPRESENTATIONS_MAX {
        return Err(IsoError::TooMany { what: "representations", max: REPRESENTATIONS_MAX });
    }
    if out.len() > RECORD_BYTES_MAX {
        return Err(IsoError::TooLarge { len: out.len(), max: RECORD_BYTES_MAX });
    }
    Ok(out)
}

/// `Debug` helper: shows only how many bytes there are.
pub(crate) struct Len(pub usize);

impl std::fmt::Debug for Len {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// `Debug` helper: shows only how many items there are.
pub(crate) struct Items(pub usize);

impl std::fmt::Debug for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} items>", self.0)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Strategies shared by the parts' property tests.
    use super::{Capture, CaptureDateTime, CertificationBlock, QualityBlock};
    use proptest::prelude::*;

    pub fn capture(certifications: bool) -> impl Strategy<Value = Capture> {
        (
            any::<(u16, u8, u8, u8, u8, u8, u16)>(),
            any::<(u8, u16, u16)>(),
            prop::collection::vec(any::<(u8, u16, u16)>(), 0..3),
            prop::collection::vec(any::<(u16, u8)>(), 0..3),
        )
            .prop_map(move |(d, dev, q, c)| Capture {
                date_time: CaptureDateTime { year: d.0, month: d.1, day: d.2, hour: d.3, minute: d.4, second: d.5, millisecond: d.6 },
                device_technology: dev.0,
                device_vendor: dev.1,
                device_type: dev.2,
                quality: q.into_iter().map(|(score, vendor, algorithm)| QualityBlock { score, vendor, algorithm }).collect(),
                certifications: if certifications {
                    c.into_iter().map(|(authority, scheme)| CertificationBlock { authority, scheme }).collect()
                } else {
                    Vec::new()
                },
            })
    }

    /// Every proper prefix of a valid record must be rejected, and nothing may panic.
    pub fn assert_truncations_rejected<T: std::fmt::Debug>(bytes: &[u8], parse: impl Fn(&[u8]) -> Result<T, super::IsoError>) {
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "a record truncated to {len} of {} bytes parsed", bytes.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_the_field_and_offset_of_a_short_read() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u16("b"), Err(IsoError::Truncated { field: "b", at: 2, need: 2, have: 1 }));
        assert_eq!(r.bytes(usize::MAX, "c"), Err(IsoError::Truncated { field: "c", at: 2, need: usize::MAX, have: 1 }));
    }

    #[test]
    fn sub_readers_report_offsets_in_the_whole_record() {
        let data = [0u8; 10];
        let mut r = Reader::new(&data);
        r.bytes(3, "x").unwrap();
        let mut s = r.sub(4, "y").unwrap();
        assert_eq!(s.offset(), 3);
        s.u8("z").unwrap();
        assert_eq!(s.u32("w"), Err(IsoError::Truncated { field: "w", at: 4, need: 4, have: 3 }));
        assert_eq!(r.offset(), 7);
    }

    #[test]
    fn unknown_magic_and_oversized_input_are_rejected() {
        assert!(matches!(parse(b"XYZ\x00030\0"), Err(IsoError::BadMagic { .. })));
        assert!(matches!(parse(b""), Err(IsoError::BadMagic { .. })));
        let mut big = b"FMR\x00030\0".to_vec();
        big.resize(RECORD_BYTES_MAX + 1, 0);
        assert_eq!(parse(&big), Err(IsoError::TooLarge { len: RECORD_BYTES_MAX + 1, max: RECORD_BYTES_MAX }));
    }

    #[test]
    fn unsupported_versions_are_named_not_echoed() {
        let err = parse(b"FIR\x00999\0\0\0\0\0").unwrap_err();
        assert!(matches!(err, IsoError::UnsupportedVersion { format: "an ISO/IEC 19794-4 finger image record", .. }));
        assert!(!err.to_string().contains("999"));
    }

    #[test]
    fn capture_round_trips_with_and_without_certifications() {
        let c = Capture {
            date_time: CaptureDateTime { year: 2024, month: 3, day: 19, hour: 10, minute: 1, second: 2, millisecond: 345 },
            device_technology: 2,
            device_vendor: 0x1234,
            device_type: 7,
            quality: vec![QualityBlock { score: 80, vendor: 0x0101, algorithm: 2 }],
            certifications: vec![CertificationBlock { authority: 9, scheme: 1 }],
        };
        let mut out = Vec::new();
        write_capture(&mut out, &c, true).unwrap();
        assert_eq!(out.len(), 9 + 5 + 1 + 5 + 1 + 3);
        assert_eq!(read_capture(&mut Reader::new(&out), true).unwrap(), c);
        let mut out = Vec::new();
        assert!(matches!(write_capture(&mut out, &c, false), Err(IsoError::Unrepresentable { .. })));
    }
}
