//! Registration id (RID): 29 digits = centre id (5) + machine id (5) + sequence (5) +
//! `yyyyMMddHHmmss` (14), as MOSIP numbers registration packets.

use serde::Serialize;
use std::fmt;
use time::{Date, Month, PrimitiveDateTime, Time};

/// Why a RID (or one of its parts) was rejected. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RidError {
    #[error("must be 29 digits long, found {0} characters")]
    Length(usize),
    #[error("must contain only the digits 0-9")]
    NotDigits,
    #[error("the timestamp part is not a valid date and time")]
    Timestamp,
    #[error("{0} must be exactly 5 digits")]
    Part(&'static str),
    #[error("sequence must be between 0 and 99999")]
    Sequence,
}

impl RidError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            RidError::Length(_) => "length",
            RidError::NotDigits => "not_digits",
            RidError::Timestamp => "timestamp",
            RidError::Part(_) => "part",
            RidError::Sequence => "sequence",
        }
    }
}

macro_rules! five_digit_id {
    ($ty:ident, $what:literal) => {
        #[doc = concat!("A 5-digit ", $what, " id.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(into = "String")]
        pub struct $ty(u32);

        impl $ty {
            /// # Errors
            /// Unless `s` is exactly five ASCII digits.
            pub fn parse(s: &str) -> Result<Self, RidError> {
                if s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse().map(Self).map_err(|_| RidError::Part($what))
                } else {
                    Err(RidError::Part($what))
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:05}", self.0)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.to_string()
            }
        }
    };
}

five_digit_id!(CentreId, "registration centre");
five_digit_id!(MachineId, "registration machine");

/// A registration id. Always well-formed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rid {
    centre: CentreId,
    machine: MachineId,
    sequence: u32,
    at: PrimitiveDateTime,
}

impl Rid {
    /// Builds a RID; `at` is truncated to whole seconds.
    ///
    /// # Errors
    /// When `sequence` exceeds five digits or the year is outside 0000..=9999.
    pub fn new(centre: CentreId, machine: MachineId, sequence: u32, at: PrimitiveDateTime) -> Result<Self, RidError> {
        if sequence > 99_999 {
            return Err(RidError::Sequence);
        }
        if !(0..=9999).contains(&at.year()) {
            return Err(RidError::Timestamp);
        }
        let at = at.replace_nanosecond(0).map_err(|_| RidError::Timestamp)?;
        Ok(Self { centre, machine, sequence, at })
    }

    /// # Errors
    /// The first problem found: length, non-digits, or an impossible timestamp.
    pub fn parse(s: &str) -> Result<Self, RidError> {
        if s.len() != 29 {
            return Err(RidError::Length(s.chars().count()));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RidError::NotDigits);
        }
        let num = |r: std::ops::Range<usize>| -> u32 { s[r].parse().unwrap_or(u32::MAX) };
        let month = u8::try_from(num(19..21)).ok().and_then(|m| Month::try_from(m).ok()).ok_or(RidError::Timestamp)?;
        let small = |r| u8::try_from(num(r)).map_err(|_| RidError::Timestamp);
        let date = Date::from_calendar_date(i32::try_from(num(15..19)).map_err(|_| RidError::Timestamp)?, month, small(21..23)?)
            .map_err(|_| RidError::Timestamp)?;
        let time = Time::from_hms(small(23..25)?, small(25..27)?, small(27..29)?).map_err(|_| RidError::Timestamp)?;
        Ok(Self {
            centre: CentreId::parse(&s[0..5])?,
            machine: MachineId::parse(&s[5..10])?,
            sequence: num(10..15),
            at: PrimitiveDateTime::new(date, time),
        })
    }

    #[must_use]
    pub fn centre(&self) -> CentreId {
        self.centre
    }

    #[must_use]
    pub fn machine(&self) -> MachineId {
        self.machine
    }

    #[must_use]
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// When the registration was captured (the machine's clock, UTC).
    #[must_use]
    pub fn created_at(&self) -> PrimitiveDateTime {
        self.at
    }
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.at;
        write!(
            f,
            "{}{}{:05}{:04}{:02}{:02}{:02}{:02}{:02}",
            self.centre,
            self.machine,
            self.sequence,
            a.year(),
            u8::from(a.month()),
            a.day(),
            a.hour(),
            a.minute(),
            a.second()
        )
    }
}

impl fmt::Debug for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A RID names a registration, not a person: safe to show whole.
        write!(f, "Rid({self})")
    }
}

impl Serialize for Rid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosip_sample_round_trips() {
        // The RID of MOSIP's sample packet (centre 10001, machine 10077, sequence 10069).
        let rid = Rid::parse("10001100771006920220128223618").unwrap();
        assert_eq!(rid.centre().to_string(), "10001");
        assert_eq!(rid.machine().to_string(), "10077");
        assert_eq!(rid.sequence(), 10069);
        assert_eq!(rid.created_at().to_string(), "2022-01-28 22:36:18.0");
        assert_eq!(rid.to_string(), "10001100771006920220128223618");
    }

    #[test]
    fn rejects() {
        assert_eq!(Rid::parse("1000110077100692022012822361").unwrap_err(), RidError::Length(28));
        assert_eq!(Rid::parse("1000110077100692022012822361x").unwrap_err(), RidError::NotDigits);
        assert_eq!(Rid::parse("10001100771006920221328223618").unwrap_err(), RidError::Timestamp); // month 13
        assert_eq!(Rid::parse("10001100771006920230229223618").unwrap_err(), RidError::Timestamp); // 29 Feb 2023
        assert_eq!(Rid::parse("10001100771006920220128253618").unwrap_err(), RidError::Timestamp); // hour 25
        assert_eq!(CentreId::parse("1234").unwrap_err(), RidError::Part("registration centre"));
    }
}
