//! CBEFF (ISO/IEC 19785-3) XML biometric information records, as MOSIP uses them: parse and emit.
//!
//! MOSIP's shape (`mosip-config/mosip-cbeff.xsd`, docs `CBEFF-XML.md`): a root `<BIR>` in the
//! namespace [`NAMESPACE`] holding `<BIRInfo><Integrity>false</Integrity></BIRInfo>` and one child
//! `<BIR>` per captured modality. Each child carries `Version` and `CBEFFVersion` (1.1),
//! `BIRInfo`, `BDBInfo` (`Format{Organization, Type}` with type 2 finger minutiae, 7 finger image,
//! 8 face, 9 iris; `CreationDate`; `Type` such as `Finger`; `Subtype` such as `Left IndexFinger`;
//! `Level`; `Purpose`; `Quality{Algorithm{Organization, Type}, Score}`), the `BDB` (an ISO/IEC 19794
//! record in base64 or base64url, see [`crate::iso19794`]), an optional `SB` and MOSIP's extension
//! `<others><entry key="...">...</entry></others>`. Every other element of the schema is read and
//! written too; an element the schema does not have is an error.
//!
//! Security: the input is bounded ([`INPUT_BYTES_MAX`]), DOCTYPE declarations are refused (so no
//! external entities and no entity expansion: only the five predefined entities and character
//! references are understood), and nesting depth, element count, BIR count, entries, text and
//! decoded binary sizes all have named limits. Errors name the element by its path
//! (`BIR/BIR[2]/BDBInfo/Quality/Score`) and what was expected; they never repeat document content.
//!
//! Leniencies, all deliberate: element order within a parent is not enforced (the schema's order
//! is what [`emit`] writes), element prefixes are ignored (a default `xmlns` must be the CBEFF
//! namespace), attributes other than `key` on `entry` are ignored.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use quick_xml::events::{BytesStart, Event};

use crate::iso19794;

/// The CBEFF 2.0 XML namespace MOSIP writes.
pub const NAMESPACE: &str = "http://standards.iso.org/iso-iec/19785/-3/ed-2/";
/// Largest document accepted: a full MOSIP enrolment (ten JPEG 2000 fingers, two irises, a face)
/// is around 2–4 MiB of base64.
pub const INPUT_BYTES_MAX: usize = 8 << 20;
/// Most BIRs in one document (MOSIP: at most 10 fingers + 2 irises + face + exception photo).
pub const BIRS_MAX: usize = 64;
/// Deepest element nesting (MOSIP's deepest path, `BIR/BIR/BDBInfo/Quality/Algorithm/Organization`,
/// is 6).
pub const DEPTH_MAX: usize = 8;
/// Most elements in one document.
pub const ELEMENTS_MAX: usize = 16_384;
/// Most attributes on one element.
pub const ATTRIBUTES_MAX: usize = 16;
/// Largest decoded BDB, SB, payload or challenge.
pub const BDB_BYTES_MAX: usize = 4 << 20;
/// Longest text of any other element or attribute (a MOSIP `PAYLOAD` entry, a JWS, is a few KiB).
pub const TEXT_BYTES_MAX: usize = 256 << 10;
/// Most `others` entries in one BIR.
pub const OTHERS_MAX: usize = 64;
/// Most items in a `Type` or `Subtype` list.
pub const LIST_ITEMS_MAX: usize = 8;

/// Why a CBEFF document was rejected. Paths are built from schema element names and positions,
/// never from document content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CbeffError {
    #[error("CBEFF document of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("CBEFF document is not UTF-8")]
    NotUtf8,
    #[error("malformed XML at byte {at}: {reason}")]
    Malformed { at: u64, reason: &'static str },
    #[error("document type declarations (DTD, entity declarations) are refused")]
    DoctypeRefused,
    #[error("unknown entity reference at byte {at} (only the five predefined entities are allowed)")]
    UnknownEntity { at: u64 },
    #[error("element in a namespace other than CBEFF's")]
    WrongNamespace,
    #[error("elements nested deeper than {max}")]
    TooDeep { max: usize },
    #[error("more than {max} elements")]
    TooManyElements { max: usize },
    #[error("more than {max} attributes on one element")]
    TooManyAttributes { max: usize },
    #[error("more than {max} BIRs")]
    TooManyBirs { max: usize },
    #[error("the root element is not a BIR")]
    NotABir,
    #[error("{path}: character not allowed in XML")]
    InvalidCharacter { path: String },
    #[error("{path}: element not allowed here")]
    UnexpectedElement { path: String },
    #[error("{path}: text not allowed here")]
    UnexpectedText { path: String },
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: appears more than once")]
    Duplicate { path: String },
    #[error("{path}: expected {expected}")]
    InvalidValue { path: String, expected: &'static str },
    #[error("{path}: longer than {max} bytes")]
    TextTooLong { path: String, max: usize },
    #[error("{path}: more than {max} bytes once decoded")]
    DataTooLarge { path: String, max: usize },
    #[error("{path}: more than {max} {what}")]
    TooManyItems { path: String, what: &'static str, max: usize },
    #[error("{path}: a BIR holds either child BIRs or a BDB, not both")]
    MixedContainer { path: String },
    #[error("{path}: BIRs nested below the second level are not supported")]
    NestedTooDeep { path: String },
}

/// `Version` / `CBEFFVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

/// A registered identifier: `Organization` and `Type` (CBEFF `RegistryIDType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryId {
    pub organization: String,
    pub type_id: String,
}

impl RegistryId {
    #[must_use]
    pub fn new(organization: &str, type_id: &str) -> Self {
        RegistryId { organization: organization.to_owned(), type_id: type_id.to_owned() }
    }
}

/// `BIRInfo`.
#[derive(Clone, PartialEq, Eq)]
pub struct BirInfo {
    pub creator: Option<String>,
    /// A UUID.
    pub index: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub integrity: bool,
    /// `xs:dateTime` text, kept as written (MOSIP: `2022-07-27T15:29:22.987808900Z`).
    pub creation_date: Option<String>,
    pub not_valid_before: Option<String>,
    pub not_valid_after: Option<String>,
}

impl Default for BirInfo {
    /// MOSIP's: `<Integrity>false</Integrity>` and nothing else.
    fn default() -> Self {
        BirInfo {
            creator: None,
            index: None,
            payload: None,
            integrity: false,
            creation_date: None,
            not_valid_before: None,
            not_valid_after: None,
        }
    }
}

impl std::fmt::Debug for BirInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BirInfo")
            .field("creator", &self.creator)
            .field("index", &self.index)
            .field("payload", &self.payload.as_ref().map(|p| iso19794::Len(p.len())))
            .field("integrity", &self.integrity)
            .field("creation_date", &self.creation_date)
            .field("not_valid_before", &self.not_valid_before)
            .field("not_valid_after", &self.not_valid_after)
            .finish()
    }
}

/// A biometric type (`SingleTypeType`). MOSIP's four have variants; the rest of the schema's list
/// is `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BioType {
    Finger,
    Iris,
    Face,
    ExceptionPhoto,
    /// One of the schema's other types (`Voice`, `Palm`, `DNA`, ...), as written.
    Other(String),
}

const OTHER_TYPES: [&str; 15] = [
    "Scent",
    "DNA",
    "Ear",
    "Foot",
    "HandGeometry",
    "Vein",
    "Retina",
    "Voice",
    "Gait",
    "Keystroke",
    "LipMovement",
    "SignatureSign",
    "Palm",
    "BackOfHand",
    "Wrist",
];

impl BioType {
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            BioType::Finger => "Finger",
            BioType::Iris => "Iris",
            BioType::Face => "Face",
            BioType::ExceptionPhoto => "ExceptionPhoto",
            BioType::Other(s) => s,
        }
    }

    fn from_token(t: &str) -> Option<Self> {
        Some(match t {
            "Finger" => BioType::Finger,
            "Iris" => BioType::Iris,
            "Face" => BioType::Face,
            "ExceptionPhoto" => BioType::ExceptionPhoto,
            _ if OTHER_TYPES.contains(&t) => BioType::Other(t.to_owned()),
            _ => return None,
        })
    }
}

/// `Level` (`ProcessedLevelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessedLevel {
    Raw,
    Intermediate,
    Processed,
}

const LEVELS: [(&str, ProcessedLevel); 3] =
    [("Raw", ProcessedLevel::Raw), ("Intermediate", ProcessedLevel::Intermediate), ("Processed", ProcessedLevel::Processed)];

/// `Purpose` (`PurposeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Verify,
    Identify,
    Enroll,
    EnrollVerify,
    EnrollIdentify,
    Audit,
}

const PURPOSES: [(&str, Purpose); 6] = [
    ("Verify", Purpose::Verify),
    ("Identify", Purpose::Identify),
    ("Enroll", Purpose::Enroll),
    ("EnrollVerify", Purpose::EnrollVerify),
    ("EnrollIdentify", Purpose::EnrollIdentify),
    ("Audit", Purpose::Audit),
];

/// `Quality`: the algorithm, and either a score 0–100 or why it could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quality {
    pub algorithm: RegistryId,
    pub score: QualityScore,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QualityScore {
    /// 0–100.
    Score(u8),
    /// `QualityCalculationFailed`, with its text.
    CalculationFailed(String),
}

/// `BDBInfo`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BdbInfo {
    pub challenge_response: Option<Vec<u8>>,
    /// A UUID.
    pub index: Option<String>,
    /// MOSIP: organization `Mosip`, type `2`, `7`, `8` or `9` ([`BdbInfo::format_type`]).
    pub format: Option<RegistryId>,
    pub encryption: Option<bool>,
    pub creation_date: Option<String>,
    pub not_valid_before: Option<String>,
    pub not_valid_after: Option<String>,
    /// `Type`, a list (MOSIP writes one).
    pub bio_types: Vec<BioType>,
    /// `Subtype`, a list of tokens: `["Left", "IndexFinger"]`, `["Right"]` (iris), `[]` (face).
    pub subtypes: Vec<String>,
    pub level: Option<ProcessedLevel>,
    pub product: Option<RegistryId>,
    pub capture_device: Option<RegistryId>,
    pub feature_extraction_algorithm: Option<RegistryId>,
    pub comparison_algorithm: Option<RegistryId>,
    pub compression_algorithm: Option<RegistryId>,
    pub purpose: Option<Purpose>,
    pub quality: Option<Quality>,
}

impl std::fmt::Debug for BdbInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BdbInfo")
            .field("index", &self.index)
            .field("format", &self.format)
            .field("creation_date", &self.creation_date)
            .field("bio_types", &self.bio_types)
            .field("subtypes", &self.subtypes)
            .field("level", &self.level)
            .field("purpose", &self.purpose)
            .field("quality", &self.quality)
            .field("challenge_response", &self.challenge_response.as_ref().map(|c| iso19794::Len(c.len())))
            .finish_non_exhaustive()
    }
}

impl BdbInfo {
    /// The BDB format type as a number, when it is one (MOSIP: 2, 7, 8, 9).
    #[must_use]
    pub fn format_type(&self) -> Option<u16> {
        self.format.as_ref().and_then(|f| f.type_id.parse().ok())
    }
}

/// `SBInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SbInfo {
    pub format: Option<RegistryId>,
}

/// One biometric record: what MOSIP writes as a child BIR. `Debug` shows no biometric data.
#[derive(Clone, PartialEq, Eq)]
pub struct Bir {
    pub version: Option<Version>,
    pub cbeff_version: Option<Version>,
    pub bir_info: BirInfo,
    pub bdb_info: BdbInfo,
    pub sb_info: Option<SbInfo>,
    /// The biometric data block, decoded: an ISO/IEC 19794 record in MOSIP.
    pub bdb: Vec<u8>,
    /// The security block, decoded.
    pub sb: Option<Vec<u8>>,
    /// MOSIP's `others` entries, in order (`SPEC_VERSION`, `RETRIES`, `EXCEPTION`, `PAYLOAD`, ...).
    pub others: Vec<(String, String)>,
}

impl std::fmt::Debug for Bir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bir")
            .field("version", &self.version)
            .field("cbeff_version", &self.cbeff_version)
            .field("bir_info", &self.bir_info)
            .field("bdb_info", &self.bdb_info)
            .field("sb_info", &self.sb_info)
            .field("bdb", &iso19794::Len(self.bdb.len()))
            .field("sb", &self.sb.as_ref().map(|s| iso19794::Len(s.len())))
            .field("others", &self.others.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl Bir {
    /// A BIR as MOSIP writes it: versions 1.1, integrity false, no SB, no `others`.
    #[must_use]
    pub fn new(bdb_info: BdbInfo, bdb: Vec<u8>) -> Self {
        Bir {
            version: Some(Version { major: 1, minor: 1 }),
            cbeff_version: Some(Version { major: 1, minor: 1 }),
            bir_info: BirInfo::default(),
            bdb_info,
            sb_info: None,
            bdb,
            sb: None,
            others: Vec::new(),
        }
    }

    /// The `others` entry with this key, if any.
    #[must_use]
    pub fn other(&self, key: &str) -> Option<&str> {
        self.others.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Parses the BDB as an ISO/IEC 19794 record.
    ///
    /// # Errors
    /// As [`iso19794::parse`].
    pub fn record(&self) -> Result<iso19794::Record, iso19794::IsoError> {
        iso19794::parse(&self.bdb)
    }
}

// ---------------------------------------------------------------------------------------------
// XML to a bounded element tree.

#[derive(Debug, Default)]
struct Node {
    name: String,
    /// The `key` attribute (of `entry`).
    key: Option<String>,
    text: String,
    children: Vec<Node>,
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn malformed(reader: &quick_xml::Reader<&[u8]>, e: &quick_xml::Error) -> CbeffError {
    use quick_xml::Error as E;
    let reason = match e {
        E::Syntax(_) => "syntax error",
        E::IllFormed(_) => "mismatched, missing or unexpected tags",
        E::InvalidAttr(_) => "bad attribute",
        E::Encoding(_) => "bad encoding",
        E::Escape(_) => "bad character or entity reference",
        E::Namespace(_) => "bad namespace",
        E::Io(_) => "unreadable",
    };
    CbeffError::Malformed { at: reader.error_position(), reason }
}

fn append(stack: &mut [Node], text: &str, at: u64) -> Result<(), CbeffError> {
    if stack.is_empty() {
        return if text.chars().all(is_xml_space) {
            Ok(())
        } else {
            Err(CbeffError::Malformed { at, reason: "text outside the root element" })
        };
    }
    if !text.chars().all(is_xml_char) {
        return Err(CbeffError::InvalidCharacter { path: stack_path(stack) });
    }
    if let Some(node) = stack.last_mut() {
        node.text.push_str(text);
    }
    Ok(())
}

/// A path for errors found while reading the tree: element names only, which the reader has
/// already checked are names.
fn stack_path(stack: &[Node]) -> String {
    stack.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join("/")
}

fn open_element(stack: &mut Vec<Node>, e: &BytesStart<'_>, elements: &mut usize, after_root: bool, at: u64) -> Result<(), CbeffError> {
    if after_root {
        return Err(CbeffError::Malformed { at, reason: "more than one root element" });
    }
    *elements += 1;
    if *elements > ELEMENTS_MAX {
        return Err(CbeffError::TooManyElements { max: ELEMENTS_MAX });
    }
    if stack.len() >= DEPTH_MAX {
        return Err(CbeffError::TooDeep { max: DEPTH_MAX });
    }
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut node = Node { name, ..Node::default() };
    for (i, attr) in e.attributes().enumerate() {
        if i >= ATTRIBUTES_MAX {
            return Err(CbeffError::TooManyAttributes { max: ATTRIBUTES_MAX });
        }
        let attr = attr.map_err(|_| CbeffError::Malformed { at, reason: "bad attribute" })?;
        let key = attr.key.as_ref();
        if key != b"key" && key != b"xmlns" {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| CbeffError::Malformed { at, reason: "bad character or entity reference in an attribute" })?;
        if !value.chars().all(is_xml_char) {
            let mut path = stack_path(stack);
            path.push_str(if path.is_empty() { "" } else { "/" });
            path.push_str(&node.name);
            path.push_str(if key == b"xmlns" { "/@xmlns" } else { "/@key" });
            return Err(CbeffError::InvalidCharacter { path });
        }
        if key == b"xmlns" {
            if value != NAMESPACE {
                return Err(CbeffError::WrongNamespace);
            }
        } else {
            node.key = Some(value.into_owned());
        }
    }
    stack.push(node);
    Ok(())
}

fn close_element(stack: &mut Vec<Node>, root: &mut Option<Node>, at: u64) -> Result<(), CbeffError> {
    let node = stack.pop().ok_or(CbeffError::Malformed { at, reason: "unmatched end tag" })?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
    Ok(())
}

fn build_tree(xml: &str) -> Result<Node, CbeffError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    {
        let config = reader.config_mut();
        config.check_end_names = true;
        config.trim_text(false);
    }
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| malformed(&reader, &e))?;
        match event {
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|_| CbeffError::Malformed { at, reason: "bad XML declaration" })?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(CbeffError::Malformed { at, reason: "declared encoding is not UTF-8" });
                    }
                }
            }
            Event::DocType(_) => return Err(CbeffError::DoctypeRefused),
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(e) => open_element(&mut stack, &e, &mut elements, root.is_some(), at)?,
            Event::Empty(e) => {
                open_element(&mut stack, &e, &mut elements, root.is_some(), at)?;
                close_element(&mut stack, &mut root, at)?;
            }
            Event::End(_) => close_element(&mut stack, &mut root, at)?,
            Event::Text(t) => {
                let text = t.xml10_content().map_err(|_| CbeffError::Malformed { at, reason: "bad encoding" })?;
                append(&mut stack, &text, at)?;
            }
            Event::CData(c) => {
                let text = c.xml10_content().map_err(|_| CbeffError::Malformed { at, reason: "bad encoding" })?;
                append(&mut stack, &text, at)?;
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().ok_or(CbeffError::Malformed { at, reason: "bad character reference" })?
                } else {
                    match r.as_ref() {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ => return Err(CbeffError::UnknownEntity { at }),
                    }
                };
                append(&mut stack, c.encode_utf8(&mut [0; 4]), at)?;
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(CbeffError::Malformed { at: reader.buffer_position(), reason: "unclosed element" });
    }
    root.ok_or(CbeffError::Malformed { at: reader.buffer_position(), reason: "no root element" })
}

// ---------------------------------------------------------------------------------------------
// Element tree to BIRs.

/// The children of a container element, checked against the names it may have: each name at
/// most once unless listed as repeatable; text must be whitespace.
struct Children<'a> {
    path: String,
    singles: Vec<(&'static str, &'a Node)>,
    repeated: Vec<(&'static str, usize, &'a Node)>,
}

impl<'a> Children<'a> {
    fn of(node: &'a Node, path: &str, singles: &[&'static str], repeatable: &[&'static str]) -> Result<Self, CbeffError> {
        if !node.text.chars().all(is_xml_space) {
            return Err(CbeffError::UnexpectedText { path: path.to_owned() });
        }
        let mut out = Children { path: path.to_owned(), singles: Vec::new(), repeated: Vec::new() };
        let mut counts = vec![0usize; repeatable.len()];
        for child in &node.children {
            if let Some(&name) = singles.iter().find(|&&n| n == child.name) {
                if out.singles.iter().any(|(n, _)| *n == name) {
                    return Err(CbeffError::Duplicate { path: format!("{path}/{name}") });
                }
                out.singles.push((name, child));
            } else if let Some(k) = repeatable.iter().position(|&n| n == child.name) {
                // Positions counted as we go: a flat run of thousands of entries stays linear.
                let i = counts.get_mut(k).map_or(0, |c| {
                    *c += 1;
                    *c
                });
                out.repeated.push((repeatable[k], i, child));
            } else {
                return Err(CbeffError::UnexpectedElement { path: path.to_owned() });
            }
        }
        Ok(out)
    }

    fn get(&self, name: &'static str) -> Option<(String, &'a Node)> {
        self.singles.iter().find(|(n, _)| *n == name).map(|(n, node)| (format!("{}/{n}", self.path), *node))
    }

    fn require(&self, name: &'static str) -> Result<(String, &'a Node), CbeffError> {
        self.get(name).ok_or_else(|| CbeffError::Missing { path: format!("{}/{name}", self.path) })
    }

    fn all(&self, name: &'static str) -> impl Iterator<Item = (String, &'a Node)> + '_ {
        self.repeated.iter().filter(move |(n, _, _)| *n == name).map(move |(n, i, node)| (format!("{}/{n}[{i}]", self.path), *node))
    }
}

/// Leaf elements hold text only.
fn leaf_text<'a>(node: &'a Node, path: &str) -> Result<&'a str, CbeffError> {
    if !node.children.is_empty() {
        return Err(CbeffError::UnexpectedElement { path: path.to_owned() });
    }
    if node.text.len() > TEXT_BYTES_MAX {
        return Err(CbeffError::TextTooLong { path: path.to_owned(), max: TEXT_BYTES_MAX });
    }
    Ok(&node.text)
}

/// Text of a schema type whose whitespace collapses (numbers, booleans, enumerations, dates).
fn token<'a>(node: &'a Node, path: &str) -> Result<&'a str, CbeffError> {
    Ok(leaf_text(node, path)?.trim_matches(is_xml_space))
}

fn string(node: &Node, path: &str) -> Result<String, CbeffError> {
    Ok(leaf_text(node, path)?.to_owned())
}

fn boolean(node: &Node, path: &str) -> Result<bool, CbeffError> {
    match token(node, path)? {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "true or false" }),
    }
}

fn unsigned(node: &Node, path: &str) -> Result<u32, CbeffError> {
    let t = token(node, path)?;
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "an unsigned integer" });
    }
    digits.parse().map_err(|_| CbeffError::InvalidValue { path: path.to_owned(), expected: "an unsigned 32-bit integer" })
}

fn uuid(node: &Node, path: &str) -> Result<String, CbeffError> {
    let t = token(node, path)?;
    let groups: Vec<&str> = t.split('-').collect();
    let ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok { Ok(t.to_owned()) } else { Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "a UUID" }) }
}

/// `xs:dateTime`: `[-]YYYY-MM-DDThh:mm:ss[.fraction][Z|(+|-)hh:mm]`, checked for shape and
/// field ranges, kept as written.
fn date_time(node: &Node, path: &str) -> Result<String, CbeffError> {
    let t = token(node, path)?;
    if valid_date_time(t) { Ok(t.to_owned()) } else { Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "an xs:dateTime" }) }
}

fn valid_date_time(t: &str) -> bool {
    fn num(s: &str, len: usize, max: u32) -> bool {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok_and(|v| v <= max)
    }
    let t = t.strip_prefix('-').unwrap_or(t);
    let Some((date, time)) = t.split_once('T') else { return false };
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else { return false };
    if y.len() < 4 || !y.bytes().all(|b| b.is_ascii_digit()) || !num(mo, 2, 12) || !num(da, 2, 31) || mo == "00" || da == "00" {
        return false;
    }
    let (clock, zone) = match time.find(['Z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, ""),
    };
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || zone.get(1..).and_then(|z| z.split_once(':')).is_some_and(|(h, m)| num(h, 2, 14) && num(m, 2, 59));
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut c = hms.split(':');
    let (Some(h), Some(mi), Some(s), None) = (c.next(), c.next(), c.next(), c.next()) else { return false };
    zone_ok && num(h, 2, 24) && num(mi, 2, 59) && num(s, 2, 60) && !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())
}

fn list<'a>(node: &'a Node, path: &str) -> Result<Vec<&'a str>, CbeffError> {
    let items: Vec<&str> = leaf_text(node, path)?.split(is_xml_space).filter(|s| !s.is_empty()).collect();
    if items.len() > LIST_ITEMS_MAX {
        return Err(CbeffError::TooManyItems { path: path.to_owned(), what: "list items", max: LIST_ITEMS_MAX });
    }
    Ok(items)
}

fn enumerated<T: Copy>(node: &Node, path: &str, table: &[(&str, T)], expected: &'static str) -> Result<T, CbeffError> {
    let t = token(node, path)?;
    table.iter().find(|(s, _)| *s == t).map(|&(_, v)| v).ok_or_else(|| CbeffError::InvalidValue { path: path.to_owned(), expected })
}

/// `xs:base64Binary` or MOSIP's base64url, padded or not, whitespace allowed anywhere.
fn binary(node: &Node, path: &str) -> Result<Vec<u8>, CbeffError> {
    if !node.children.is_empty() {
        return Err(CbeffError::UnexpectedElement { path: path.to_owned() });
    }
    let compact: String = node.text.chars().filter(|&c| !is_xml_space(c)).collect();
    // Four characters carry three bytes: refuse before decoding anything too big.
    if compact.len() / 4 * 3 > BDB_BYTES_MAX + 3 {
        return Err(CbeffError::DataTooLarge { path: path.to_owned(), max: BDB_BYTES_MAX });
    }
    let url = compact.contains(['-', '_']);
    if url && compact.contains(['+', '/']) {
        return Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "base64 or base64url, not a mix" });
    }
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let alphabet = if url { &base64::alphabet::URL_SAFE } else { &base64::alphabet::STANDARD };
    let bytes = GeneralPurpose::new(alphabet, config)
        .decode(compact.as_bytes())
        .map_err(|_| CbeffError::InvalidValue { path: path.to_owned(), expected: "base64 or base64url" })?;
    if bytes.len() > BDB_BYTES_MAX {
        return Err(CbeffError::DataTooLarge { path: path.to_owned(), max: BDB_BYTES_MAX });
    }
    Ok(bytes)
}

fn version(node: &Node, path: &str) -> Result<Version, CbeffError> {
    let c = Children::of(node, path, &["Major", "Minor"], &[])?;
    let (p, n) = c.require("Major")?;
    let major = unsigned(n, &p)?;
    let (p, n) = c.require("Minor")?;
    Ok(Version { major, minor: unsigned(n, &p)? })
}

fn registry_id(node: &Node, path: &str) -> Result<RegistryId, CbeffError> {
    let c = Children::of(node, path, &["Organization", "Type"], &[])?;
    let (p, n) = c.require("Organization")?;
    let organization = string(n, &p)?;
    let (p, n) = c.require("Type")?;
    Ok(RegistryId { organization, type_id: string(n, &p)? })
}

fn opt<T>(c: &Children<'_>, name: &'static str, f: impl FnOnce(&Node, &str) -> Result<T, CbeffError>) -> Result<Option<T>, CbeffError> {
    c.get(name).map(|(p, n)| f(n, &p)).transpose()
}

fn bir_info(node: &Node, path: &str) -> Result<BirInfo, CbeffError> {
    let c =
        Children::of(node, path, &["Creator", "Index", "Payload", "Integrity", "CreationDate", "NotValidBefore", "NotValidAfter"], &[])?;
    let (p, n) = c.require("Integrity")?;
    Ok(BirInfo {
        creator: opt(&c, "Creator", string)?,
        index: opt(&c, "Index", uuid)?,
        payload: opt(&c, "Payload", binary)?,
        integrity: boolean(n, &p)?,
        creation_date: opt(&c, "CreationDate", date_time)?,
        not_valid_before: opt(&c, "NotValidBefore", date_time)?,
        not_valid_after: opt(&c, "NotValidAfter", date_time)?,
    })
}

fn quality(node: &Node, path: &str) -> Result<Quality, CbeffError> {
    let c = Children::of(node, path, &["Algorithm", "Score", "QualityCalculationFailed"], &[])?;
    let (p, n) = c.require("Algorithm")?;
    let algorithm = registry_id(n, &p)?;
    let score = match (c.get("Score"), c.get("QualityCalculationFailed")) {
        (Some((p, n)), None) => {
            let v = unsigned(n, &p)?;
            QualityScore::Score(
                u8::try_from(v)
                    .ok()
                    .filter(|&v| v <= 100)
                    .ok_or(CbeffError::InvalidValue { path: p, expected: "a score from 0 to 100" })?,
            )
        }
        (None, Some((p, n))) => QualityScore::CalculationFailed(string(n, &p)?),
        (Some(_), Some(_)) => {
            return Err(CbeffError::InvalidValue { path: path.to_owned(), expected: "either Score or QualityCalculationFailed" });
        }
        (None, None) => return Err(CbeffError::Missing { path: format!("{path}/Score") }),
    };
    Ok(Quality { algorithm, score })
}

fn bdb_info(node: &Node, path: &str) -> Result<BdbInfo, CbeffError> {
    let c = Children::of(
        node,
        path,
        &[
            "ChallengeResponse",
            "Index",
            "Format",
            "Encryption",
            "CreationDate",
            "NotValidBefore",
            "NotValidAfter",
            "Type",
            "Subtype",
            "Level",
            "Product",
            "CaptureDevice",
            "FeatureExtractionAlgorithm",
            "ComparisonAlgorithm",
            "CompressionAlgorithm",
            "Purpose",
            "Quality",
        ],
        &[],
    )?;
    let bio_types = match c.get("Type") {
        Some((p, n)) => list(n, &p)?
            .into_iter()
            .map(|t| BioType::from_token(t).ok_or_else(|| CbeffError::InvalidValue { path: p.clone(), expected: "CBEFF biometric types" }))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let subtypes = match c.get("Subtype") {
        Some((p, n)) => list(n, &p)?.into_iter().map(str::to_owned).collect(),
        None => Vec::new(),
    };
    Ok(BdbInfo {
        challenge_response: opt(&c, "ChallengeResponse", binary)?,
        index: opt(&c, "Index", uuid)?,
        format: opt(&c, "Format", registry_id)?,
        encryption: opt(&c, "Encryption", boolean)?,
        creation_date: opt(&c, "CreationDate", date_time)?,
        not_valid_before: opt(&c, "NotValidBefore", date_time)?,
        not_valid_after: opt(&c, "NotValidAfter", date_time)?,
        bio_types,
        subtypes,
        level: opt(&c, "Level", |n, p| enumerated(n, p, &LEVELS, "Raw, Intermediate or Processed"))?,
        product: opt(&c, "Product", registry_id)?,
        capture_device: opt(&c, "CaptureDevice", registry_id)?,
        feature_extraction_algorithm: opt(&c, "FeatureExtractionAlgorithm", registry_id)?,
        comparison_algorithm: opt(&c, "ComparisonAlgorithm", registry_id)?,
        compression_algorithm: opt(&c, "CompressionAlgorithm", registry_id)?,
        purpose: opt(&c, "Purpose", |n, p| enumerated(n, p, &PURPOSES, "a CBEFF purpose"))?,
        quality: opt(&c, "Quality", quality)?,
    })
}

fn others(c: &Children<'_>, out: &mut Vec<(String, String)>) -> Result<(), CbeffError> {
    for (path, node) in c.all("others") {
        let entries = Children::of(node, &path, &[], &["entry"])?;
        for (p, entry) in entries.all("entry") {
            if out.len() >= OTHERS_MAX {
                return Err(CbeffError::TooManyItems { path: path.clone(), what: "entries", max: OTHERS_MAX });
            }
            let key = entry.key.clone().ok_or_else(|| CbeffError::Missing { path: format!("{p}/@key") })?;
            if key.len() > TEXT_BYTES_MAX {
                return Err(CbeffError::TextTooLong { path: format!("{p}/@key"), max: TEXT_BYTES_MAX });
            }
            out.push((key, string(entry, &p)?));
        }
    }
    Ok(())
}

const BIR_CHILDREN: [&str; 7] = ["Version", "CBEFFVersion", "BIRInfo", "BDBInfo", "SBInfo", "BDB", "SB"];

/// A leaf BIR (one with a BDB).
fn leaf_bir(node: &Node, path: &str) -> Result<Bir, CbeffError> {
    let c = Children::of(node, path, &BIR_CHILDREN, &["BIR", "others"])?;
    if c.all("BIR").next().is_some() {
        return Err(CbeffError::NestedTooDeep { path: path.to_owned() });
    }
    let (p, n) = c.require("BIRInfo")?;
    let bir_info = bir_info(n, &p)?;
    let (p, n) = c.require("BDBInfo")?;
    let bdb_info = bdb_info(n, &p)?;
    let (p, n) = c.require("BDB")?;
    let bdb = binary(n, &p)?;
    let sb_info = match c.get("SBInfo") {
        Some((p, n)) => {
            let s = Children::of(n, &p, &["Format"], &[])?;
            Some(SbInfo { format: opt(&s, "Format", registry_id)? })
        }
        None => None,
    };
    let mut other = Vec::new();
    others(&c, &mut other)?;
    Ok(Bir {
        version: opt(&c, "Version", version)?,
        cbeff_version: opt(&c, "CBEFFVersion", version)?,
        bir_info,
        bdb_info,
        sb_info,
        bdb,
        sb: opt(&c, "SB", binary)?,
        others: other,
    })
}

/// Parses a CBEFF XML document: MOSIP's root BIR with one child BIR per record (the children
/// are returned, in order), or a single BIR with its own BDB (returned alone). A root with
/// neither children nor a BDB is an empty list.
///
/// # Errors
/// See [`CbeffError`]: size, encoding, well-formedness, DOCTYPE, entities, limits, schema
/// structure and values, each with the path of the element at fault.
pub fn parse(xml: &[u8]) -> Result<Vec<Bir>, CbeffError> {
    if xml.len() > INPUT_BYTES_MAX {
        return Err(CbeffError::TooLarge { len: xml.len(), max: INPUT_BYTES_MAX });
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|_| CbeffError::NotUtf8)?;
    let root = build_tree(text)?;
    if root.name != "BIR" {
        return Err(CbeffError::NotABir);
    }
    let c = Children::of(&root, "BIR", &BIR_CHILDREN, &["BIR", "others"])?;
    let children: Vec<(String, &Node)> = c.all("BIR").collect();
    if children.is_empty() {
        return if c.get("BDB").is_some() { Ok(vec![leaf_bir(&root, "BIR")?]) } else { Ok(Vec::new()) };
    }
    if c.get("BDB").is_some() || c.get("BDBInfo").is_some() {
        return Err(CbeffError::MixedContainer { path: "BIR".to_owned() });
    }
    if children.len() > BIRS_MAX {
        return Err(CbeffError::TooManyBirs { max: BIRS_MAX });
    }
    // The root's own BIRInfo must still be well-formed, though MOSIP's is always `Integrity false`.
    if let Some((p, n)) = c.get("BIRInfo") {
        bir_info(n, &p)?;
    }
    children.iter().map(|(p, n)| leaf_bir(n, p)).collect()
}

// ---------------------------------------------------------------------------------------------
// Emit.

struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("    ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.out, "<{name}>");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        let _ = write!(self.out, "<{name}>");
        escape_into(&mut self.out, text, false);
        let _ = writeln!(self.out, "</{name}>");
    }

    fn opt_leaf(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }

    fn binary(&mut self, name: &str, bytes: &[u8]) {
        self.leaf(name, &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    }

    fn registry(&mut self, name: &str, id: Option<&RegistryId>) {
        if let Some(id) = id {
            self.open(name);
            self.leaf("Organization", &id.organization);
            self.leaf("Type", &id.type_id);
            self.close(name);
        }
    }

    fn version(&mut self, name: &str, v: Option<Version>) {
        if let Some(v) = v {
            self.open(name);
            self.leaf("Major", &v.major.to_string());
            self.leaf("Minor", &v.minor.to_string());
            self.close(name);
        }
    }
}

/// Escapes so that the parser gives back exactly `text`: markup characters, and the whitespace
/// that XML would otherwise normalise (`\r` in text; `\t`, `\n`, `\r` in attributes).
fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' if attribute => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c if !is_xml_char(c) => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn emit_bir_info(x: &mut Xml, i: &BirInfo) {
    x.open("BIRInfo");
    x.opt_leaf("Creator", i.creator.as_deref());
    x.opt_leaf("Index", i.index.as_deref());
    if let Some(p) = &i.payload {
        x.binary("Payload", p);
    }
    x.leaf("Integrity", bool_text(i.integrity));
    x.opt_leaf("CreationDate", i.creation_date.as_deref());
    x.opt_leaf("NotValidBefore", i.not_valid_before.as_deref());
    x.opt_leaf("NotValidAfter", i.not_valid_after.as_deref());
    x.close("BIRInfo");
}

fn emit_bdb_info(x: &mut Xml, i: &BdbInfo) {
    x.open("BDBInfo");
    if let Some(c) = &i.challenge_response {
        x.binary("ChallengeResponse", c);
    }
    x.opt_leaf("Index", i.index.as_deref());
    x.registry("Format", i.format.as_ref());
    x.opt_leaf("Encryption", i.encryption.map(bool_text));
    x.opt_leaf("CreationDate", i.creation_date.as_deref());
    x.opt_leaf("NotValidBefore", i.not_valid_before.as_deref());
    x.opt_leaf("NotValidAfter", i.not_valid_after.as_deref());
    if !i.bio_types.is_empty() {
        x.leaf("Type", &i.bio_types.iter().map(BioType::as_str).collect::<Vec<_>>().join(" "));
    }
    // MOSIP writes Subtype even when empty (face, exception photo).
    if !i.bio_types.is_empty() || !i.subtypes.is_empty() {
        x.leaf("Subtype", &i.subtypes.join(" "));
    }
    x.opt_leaf("Level", i.level.and_then(|l| LEVELS.iter().find(|(_, v)| *v == l)).map(|(s, _)| *s));
    x.registry("Product", i.product.as_ref());
    x.registry("CaptureDevice", i.capture_device.as_ref());
    x.registry("FeatureExtractionAlgorithm", i.feature_extraction_algorithm.as_ref());
    x.registry("ComparisonAlgorithm", i.comparison_algorithm.as_ref());
    x.registry("CompressionAlgorithm", i.compression_algorithm.as_ref());
    x.opt_leaf("Purpose", i.purpose.and_then(|p| PURPOSES.iter().find(|(_, v)| *v == p)).map(|(s, _)| *s));
    if let Some(q) = &i.quality {
        x.open("Quality");
        x.registry("Algorithm", Some(&q.algorithm));
        match &q.score {
            QualityScore::Score(s) => x.leaf("Score", &s.to_string()),
            QualityScore::CalculationFailed(t) => x.leaf("QualityCalculationFailed", t),
        }
        x.close("Quality");
    }
    x.close("BDBInfo");
}

fn emit_bir(x: &mut Xml, b: &Bir) {
    x.open("BIR");
    x.version("Version", b.version);
    x.version("CBEFFVersion", b.cbeff_version);
    emit_bir_info(x, &b.bir_info);
    emit_bdb_info(x, &b.bdb_info);
    if let Some(s) = &b.sb_info {
        x.open("SBInfo");
        x.registry("Format", s.format.as_ref());
        x.close("SBInfo");
    }
    x.binary("BDB", &b.bdb);
    if let Some(sb) = &b.sb {
        x.binary("SB", sb);
    }
    if !b.others.is_empty() {
        x.open("others");
        for (k, v) in &b.others {
            x.indent();
            x.out.push_str("<entry key=\"");
            escape_into(&mut x.out, k, true);
            x.out.push_str("\">");
            escape_into(&mut x.out, v, false);
            x.out.push_str("</entry>\n");
        }
        x.close("others");
    }
    x.close("BIR");
}

/// Writes MOSIP's shape: a root BIR (`Integrity` false) holding one child BIR per record, in the
/// schema's element order, binary data in unpadded base64url as MOSIP writes it. Text must be
/// valid XML characters; lists (`Type`, `Subtype`) hold whitespace-free tokens.
#[must_use]
pub fn emit(birs: &[Bir]) -> String {
    let mut x = Xml { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"), depth: 0 };
    let _ = writeln!(x.out, "<BIR xmlns=\"{NAMESPACE}\">");
    x.depth = 1;
    emit_bir_info(&mut x, &BirInfo::default());
    for b in birs {
        emit_bir(&mut x, b);
    }
    x.out.push_str("</BIR>\n");
    x.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso19794::Record;
    use proptest::prelude::*;

    const GOLDEN: &str = include_str!("../tests/data/cbeff_mosip_sample.xml");

    #[test]
    fn the_mosip_shaped_sample_parses_with_its_iso_records() {
        let birs = parse(GOLDEN.as_bytes()).unwrap();
        assert_eq!(birs.len(), 5);
        let finger = &birs[0];
        assert_eq!(finger.version, Some(Version { major: 1, minor: 1 }));
        assert!(!finger.bir_info.integrity);
        let info = &finger.bdb_info;
        assert_eq!(info.index.as_deref(), Some("98293c98-7b64-4f9a-a209-9cadfd8e4a1e"));
        assert_eq!(info.format, Some(RegistryId::new("Mosip", "7")));
        assert_eq!(info.format_type(), Some(7));
        assert_eq!(info.creation_date.as_deref(), Some("2022-07-27T15:29:22.987808900Z"));
        assert_eq!(info.bio_types, vec![BioType::Finger]);
        assert_eq!(info.subtypes, vec!["Left", "IndexFinger"]);
        assert_eq!((info.level, info.purpose), (Some(ProcessedLevel::Raw), Some(Purpose::Enroll)));
        assert_eq!(info.quality, Some(Quality { algorithm: RegistryId::new("HMAC", "SHA-256"), score: QualityScore::Score(94) }));
        assert_eq!(finger.other("SPEC_VERSION"), Some("0.9.5"));
        assert_eq!(finger.other("PAYLOAD"), Some("{\"digitalId\":\"eyJ4NWMiOlsiTUlJR...\"}"));
        assert_eq!(finger.sb.as_deref(), Some(b"sig".as_slice()));
        let Record::FingerImage(fir) = finger.record().unwrap() else { panic!("finger image") };
        let img = &fir.images()[0];
        assert_eq!((img.position, img.width, img.height), (7, 2, 2));

        assert!(matches!(birs[1].record().unwrap(), Record::FingerMinutiae(_)));
        assert_eq!(birs[1].bdb_info.format_type(), Some(2));
        assert_eq!(
            (birs[2].bdb_info.bio_types.clone(), birs[2].bdb_info.subtypes.clone()),
            (vec![BioType::Iris], vec!["Right".to_owned()])
        );
        let Record::Iris(iris) = birs[2].record().unwrap() else { panic!("iris") };
        assert_eq!(iris.images()[0].eye, iso19794::iris_image::EyeLabel::Right);
        assert_eq!((birs[3].bdb_info.bio_types.clone(), birs[3].bdb_info.subtypes.len()), (vec![BioType::Face], 0));
        assert!(matches!(birs[3].record().unwrap(), Record::Face(_)));
        assert_eq!(birs[4].bdb_info.bio_types, vec![BioType::ExceptionPhoto]);
        assert_eq!(birs[4].other("EXCEPTION"), Some("true"));

        // Emitting gives back the same records.
        assert_eq!(parse(emit(&birs).as_bytes()).unwrap(), birs);
    }

    #[test]
    fn the_sample_is_what_emit_writes() {
        // The golden file is in emit's own layout, so a change to the output shows up here.
        let birs = parse(GOLDEN.as_bytes()).unwrap();
        assert_eq!(emit(&birs), GOLDEN);
    }

    fn sample() -> Bir {
        let info = BdbInfo {
            index: Some("98293c98-7b64-4f9a-a209-9cadfd8e4a1e".into()),
            format: Some(RegistryId::new("Mosip", "9")),
            creation_date: Some("2022-07-27T15:29:22.987Z".into()),
            bio_types: vec![BioType::Iris],
            subtypes: vec!["Left".into()],
            level: Some(ProcessedLevel::Raw),
            purpose: Some(Purpose::Enroll),
            quality: Some(Quality { algorithm: RegistryId::new("HMAC", "SHA-256"), score: QualityScore::Score(80) }),
            ..BdbInfo::default()
        };
        let mut b = Bir::new(info, vec![1, 2, 3, 250]);
        b.others.push(("RETRIES".into(), "1".into()));
        b
    }

    fn one(xml: &str) -> Result<Vec<Bir>, CbeffError> {
        parse(xml.as_bytes())
    }

    #[test]
    fn a_single_bir_and_an_empty_container_are_accepted() {
        let doc = emit(&[sample()]);
        // Strip the container: the child BIR alone, with the namespace moved onto it.
        let start = doc.find("    <BIR>").unwrap();
        let end = doc.rfind("</BIR>\n</BIR>").unwrap() + "</BIR>".len();
        let single = doc[start..end].replacen("<BIR>", &format!("<BIR xmlns=\"{NAMESPACE}\">"), 1);
        assert_eq!(one(&single).unwrap(), vec![sample()]);
        assert_eq!(one(&emit(&[])).unwrap(), vec![]);
    }

    #[test]
    fn both_base64_alphabets_and_whitespace_are_accepted() {
        let doc = emit(&[sample()]);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1, 2, 3, 250]);
        assert!(doc.contains(&format!("<BDB>{url}</BDB>")));
        for enc in ["AQID+g==", "AQID+g", "AQID-g==", "AQ ID\n+g=="] {
            let d = doc.replace(&format!("<BDB>{url}</BDB>"), &format!("<BDB>{enc}</BDB>"));
            assert_eq!(one(&d).unwrap()[0].bdb, vec![1, 2, 3, 250], "{enc}");
        }
        let d = doc.replace(&format!("<BDB>{url}</BDB>"), "<BDB>A-_+/A==</BDB>");
        assert!(matches!(one(&d), Err(CbeffError::InvalidValue { .. })));
        let d = doc.replace(&format!("<BDB>{url}</BDB>"), "<BDB>!!!!</BDB>");
        assert_eq!(one(&d), Err(CbeffError::InvalidValue { path: "BIR/BIR[1]/BDB".into(), expected: "base64 or base64url" }));
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><BIR><BIRInfo><Integrity>&lol2;</Integrity></BIRInfo></BIR>"#;
        assert_eq!(one(laughs), Err(CbeffError::DoctypeRefused));
        let xxe = r#"<!DOCTYPE BIR [<!ENTITY x SYSTEM "file:///etc/passwd">]><BIR/>"#;
        assert_eq!(one(xxe), Err(CbeffError::DoctypeRefused));
        let undeclared = "<BIR><BIRInfo><Integrity>&x;</Integrity></BIRInfo></BIR>";
        assert!(matches!(one(undeclared), Err(CbeffError::UnknownEntity { .. })));
        let predefined = sample_with_entry("a &lt;&amp;&gt; &#x41;&#66; \"'");
        assert_eq!(one(&predefined).unwrap()[0].other("K"), Some("a <&> AB \"'"));
    }

    fn sample_with_entry(value: &str) -> String {
        emit(&[sample()]).replace("<entry key=\"RETRIES\">1</entry>", &format!("<entry key=\"K\">{value}</entry>"))
    }

    #[test]
    fn limits_are_enforced() {
        let deep = format!("<BIR>{}{}</BIR>", "<BIR>".repeat(DEPTH_MAX), "</BIR>".repeat(DEPTH_MAX));
        assert_eq!(one(&deep), Err(CbeffError::TooDeep { max: DEPTH_MAX }));
        let many = emit(&vec![sample(); BIRS_MAX + 1]);
        assert_eq!(one(&many), Err(CbeffError::TooManyBirs { max: BIRS_MAX }));
        assert_eq!(parse(&emit(&vec![sample(); BIRS_MAX]).into_bytes()).unwrap().len(), BIRS_MAX);
        let big = vec![b' '; INPUT_BYTES_MAX + 1];
        assert_eq!(parse(&big), Err(CbeffError::TooLarge { len: INPUT_BYTES_MAX + 1, max: INPUT_BYTES_MAX }));
        let mut s = sample();
        s.bdb = vec![0; BDB_BYTES_MAX + 1];
        assert_eq!(one(&emit(&[s])), Err(CbeffError::DataTooLarge { path: "BIR/BIR[1]/BDB".into(), max: BDB_BYTES_MAX }));
        let mut s = sample();
        s.others = (0..=OTHERS_MAX).map(|i| (i.to_string(), String::new())).collect();
        assert!(matches!(one(&emit(&[s])), Err(CbeffError::TooManyItems { what: "entries", .. })));
        let wide = format!("<BIR {}/>", (0..=ATTRIBUTES_MAX).map(|i| format!("a{i}=\"\"")).collect::<Vec<_>>().join(" "));
        assert_eq!(one(&wide), Err(CbeffError::TooManyAttributes { max: ATTRIBUTES_MAX }));
        let nested = emit(&[sample()]).replacen("<BDB>", "<BIR></BIR><BDB>", 1);
        assert_eq!(one(&nested), Err(CbeffError::NestedTooDeep { path: "BIR/BIR[1]".into() }));
    }

    /// `doc` with the `n`th (from 0) occurrence of `pattern` replaced.
    fn replace_nth(doc: &str, pattern: &str, with: &str, n: usize) -> String {
        let (i, _) = doc.match_indices(pattern).nth(n).unwrap();
        format!("{}{with}{}", &doc[..i], &doc[i + pattern.len()..])
    }

    #[test]
    fn structural_errors_name_the_element() {
        let doc = emit(&[sample(), sample()]);
        let at = |p: &str| p.to_owned();
        let cases = [
            (
                replace_nth(&doc, "<Score>80</Score>", "<Score>101</Score>", 1),
                CbeffError::InvalidValue { path: at("BIR/BIR[2]/BDBInfo/Quality/Score"), expected: "a score from 0 to 100" },
            ),
            (
                replace_nth(&doc, "<Type>Iris</Type>", "<Type>Iris Nose</Type>", 0),
                CbeffError::InvalidValue { path: at("BIR/BIR[1]/BDBInfo/Type"), expected: "CBEFF biometric types" },
            ),
            (
                replace_nth(&doc, "<Integrity>false", "<Integrity>maybe", 0),
                CbeffError::InvalidValue { path: at("BIR/BIRInfo/Integrity"), expected: "true or false" },
            ),
            (
                replace_nth(&doc, "<Integrity>false", "<Integrity>maybe", 2),
                CbeffError::InvalidValue { path: at("BIR/BIR[2]/BIRInfo/Integrity"), expected: "true or false" },
            ),
            (
                replace_nth(&doc, "<Major>1</Major>", "<Major>-1</Major>", 0),
                CbeffError::InvalidValue { path: at("BIR/BIR[1]/Version/Major"), expected: "an unsigned integer" },
            ),
            (
                replace_nth(&doc, "<Purpose>Enroll", "<Purpose>Sell", 0),
                CbeffError::InvalidValue { path: at("BIR/BIR[1]/BDBInfo/Purpose"), expected: "a CBEFF purpose" },
            ),
            (
                replace_nth(&doc, "<Index>98293c98", "<Index>98293c9Z", 0),
                CbeffError::InvalidValue { path: at("BIR/BIR[1]/BDBInfo/Index"), expected: "a UUID" },
            ),
            (
                replace_nth(&doc, "2022-07-27T", "2022-13-27T", 1),
                CbeffError::InvalidValue { path: at("BIR/BIR[2]/BDBInfo/CreationDate"), expected: "an xs:dateTime" },
            ),
            (
                replace_nth(&doc, "<Organization>Mosip</Organization>", "", 0),
                CbeffError::Missing { path: at("BIR/BIR[1]/BDBInfo/Format/Organization") },
            ),
            (replace_nth(&doc, "<BDB>", "<SB>", 0).replacen("</BDB>", "</SB>", 1), CbeffError::Missing { path: at("BIR/BIR[1]/BDB") }),
            (
                replace_nth(&doc, "<Level>", "<Colour>x</Colour><Level>", 0),
                CbeffError::UnexpectedElement { path: at("BIR/BIR[1]/BDBInfo") },
            ),
            (
                replace_nth(&doc, "<Level>", "<Purpose>Enroll</Purpose><Level>", 0),
                CbeffError::Duplicate { path: at("BIR/BIR[1]/BDBInfo/Purpose") },
            ),
            (
                replace_nth(&doc, "<entry key=\"RETRIES\">", "<entry>", 1),
                CbeffError::Missing { path: at("BIR/BIR[2]/others[1]/entry[1]/@key") },
            ),
            (replace_nth(&doc, "<BDBInfo>", "<BDBInfo>stray", 0), CbeffError::UnexpectedText { path: at("BIR/BIR[1]/BDBInfo") }),
            (
                replace_nth(&doc, "<Level>Raw", "<Level><Raw/>", 0).replacen("Raw</Level>", "</Level>", 1),
                CbeffError::UnexpectedElement { path: at("BIR/BIR[1]/BDBInfo/Level") },
            ),
            (
                replace_nth(&doc, "<Integrity>false", "<Integrity>&#1;", 1),
                CbeffError::InvalidCharacter { path: at("BIR/BIR/BIRInfo/Integrity") },
            ),
            (
                replace_nth(&doc, "key=\"RETRIES\"", "key=\"RE\u{0}TRIES\"", 0),
                CbeffError::InvalidCharacter { path: at("BIR/BIR/others/entry/@key") },
            ),
            ("<Other/>".to_owned(), CbeffError::NotABir),
            ("<BIR xmlns=\"urn:other\"/>".to_owned(), CbeffError::WrongNamespace),
        ];
        for (xml, expected) in cases {
            assert_eq!(one(&xml), Err(expected));
        }
        assert!(matches!(one("<BIR><BIRInfo></BIR>"), Err(CbeffError::Malformed { .. })));
        assert!(matches!(one("<BIR/><BIR/>"), Err(CbeffError::Malformed { .. })));
        assert!(matches!(one("<BIR/>x"), Err(CbeffError::Malformed { .. })));
        assert!(matches!(one(""), Err(CbeffError::Malformed { .. })));
        assert!(matches!(one("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><BIR/>"), Err(CbeffError::Malformed { .. })));
        assert_eq!(parse(b"<BIR>\xFF</BIR>"), Err(CbeffError::NotUtf8));
    }

    #[test]
    fn errors_never_repeat_document_content() {
        let doc = emit(&[sample()]);
        for bad in [
            doc.replacen("<Score>80</Score>", "<Score>SECRET</Score>", 1),
            doc.replacen("<Level>", "<SECRET/><Level>", 1),
            doc.replacen("<BDB>", "<BDB>SECRET!", 1),
            doc.replacen("<Integrity>false", "<Integrity>&SECRET;", 1),
        ] {
            let e = one(&bad).unwrap_err();
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn date_times_are_checked_for_shape() {
        for ok in [
            "2022-07-27T15:29:22.987808900Z",
            "2019-06-27T13:40:06.209Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+05:30",
            "-0044-03-15T12:00:00Z",
        ] {
            assert!(valid_date_time(ok), "{ok}");
        }
        for bad in ["2024-01-01", "2024-1-01T00:00:00Z", "2024-01-01T25:00:00Z", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00+5:30", "x"] {
            assert!(!valid_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn debug_prints_no_biometric_data() {
        let mut b = sample();
        b.bdb = b"FIR\0SECRETPIXELS".to_vec();
        let s = format!("{b:?}");
        assert!(!s.contains("SECRET") && !s.contains("70, 73, 82") && s.contains("<16 bytes>"), "{s}");
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9]{0,10}"
    }

    /// Any text XML can carry, including markup characters and the whitespace it normalises.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![Just('<'), Just('&'), Just('\r'), Just('\n'), Just('\t'), Just('"'), Just(' '), any::<char>()],
            0..12,
        )
        .prop_map(|v| v.into_iter().filter(|&c| is_xml_char(c)).collect())
    }

    fn registry() -> impl Strategy<Value = RegistryId> {
        (text(), text()).prop_map(|(organization, type_id)| RegistryId { organization, type_id })
    }

    fn date() -> impl Strategy<Value = String> {
        (1900..2100u32, 1..=12u32, 1..=28u32, 0..24u32, 0..60u32, 0..60u32, 0..1000u32)
            .prop_map(|(y, mo, d, h, mi, s, ms)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"))
    }

    fn uuid_text() -> impl Strategy<Value = String> {
        any::<u128>().prop_map(|u| {
            let h = format!("{u:032x}");
            format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
        })
    }

    fn bio_type() -> impl Strategy<Value = BioType> {
        prop_oneof![
            Just(BioType::Finger),
            Just(BioType::Iris),
            Just(BioType::Face),
            Just(BioType::ExceptionPhoto),
            prop::sample::select(OTHER_TYPES.to_vec()).prop_map(|s| BioType::Other(s.to_owned())),
        ]
    }

    fn bdb_info_strategy() -> impl Strategy<Value = BdbInfo> {
        (
            (prop::option::of(prop::collection::vec(any::<u8>(), 0..8)), prop::option::of(uuid_text()), prop::option::of(registry())),
            (prop::option::of(any::<bool>()), prop::option::of(date()), prop::option::of(date()), prop::option::of(date())),
            (prop::collection::vec(bio_type(), 0..3), prop::collection::vec(token(), 0..3)),
            (prop::option::of(prop::sample::select(LEVELS.to_vec())), prop::option::of(prop::sample::select(PURPOSES.to_vec()))),
            prop::collection::vec(prop::option::of(registry()), 5),
            prop::option::of((
                registry(),
                prop_oneof![(0..=100u8).prop_map(QualityScore::Score), text().prop_map(QualityScore::CalculationFailed)],
            )),
        )
            .prop_map(
                |(
                    (challenge_response, index, format),
                    (encryption, cd, nvb, nva),
                    (bio_types, subtypes),
                    (level, purpose),
                    ids,
                    quality,
                )| {
                    let mut ids = ids.into_iter();
                    let mut next = || ids.next().flatten();
                    BdbInfo {
                        challenge_response,
                        index,
                        format,
                        encryption,
                        creation_date: cd,
                        not_valid_before: nvb,
                        not_valid_after: nva,
                        bio_types,
                        subtypes,
                        level: level.map(|(_, l)| l),
                        product: next(),
                        capture_device: next(),
                        feature_extraction_algorithm: next(),
                        comparison_algorithm: next(),
                        compression_algorithm: next(),
                        purpose: purpose.map(|(_, p)| p),
                        quality: quality.map(|(algorithm, score)| Quality { algorithm, score }),
                    }
                },
            )
    }

    fn bir_strategy() -> impl Strategy<Value = Bir> {
        (
            prop::option::of(any::<(u32, u32)>()),
            prop::option::of(any::<(u32, u32)>()),
            (
                prop::option::of(text()),
                prop::option::of(uuid_text()),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
                any::<bool>(),
                prop::option::of(date()),
            ),
            bdb_info_strategy(),
            prop::option::of(prop::option::of(registry())),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
            prop::collection::vec((text(), text()), 0..4),
        )
            .prop_map(|(v, cv, (creator, index, payload, integrity, creation_date), bdb_info, sb_info, bdb, sb, others)| Bir {
                version: v.map(|(major, minor)| Version { major, minor }),
                cbeff_version: cv.map(|(major, minor)| Version { major, minor }),
                bir_info: BirInfo { creator, index, payload, integrity, creation_date, not_valid_before: None, not_valid_after: None },
                bdb_info,
                sb_info: sb_info.map(|format| SbInfo { format }),
                bdb,
                sb,
                others,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_the_identity(birs in prop::collection::vec(bir_strategy(), 0..4)) {
            prop_assert_eq!(parse(emit(&birs).as_bytes()).unwrap(), birs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(birs) = parse(&bytes) {
                prop_assert_eq!(parse(emit(&birs).as_bytes()).unwrap(), birs);
            }
        }

        #[test]
        fn corrupted_documents_never_panic(birs in prop::collection::vec(bir_strategy(), 1..3), cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut bytes = emit(&birs).into_bytes();
            for (i, x) in cuts {
                let i = i.index(bytes.len());
                bytes[i] = x;
            }
            if let Ok(birs) = parse(&bytes) {
                prop_assert_eq!(parse(emit(&birs).as_bytes()).unwrap(), birs);
            }
        }
    }
}
