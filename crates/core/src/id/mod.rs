//! Identifiers: UIN (lifelong number), VID (revocable alias) and RID (registration id).
//!
//! Parse, don't validate: a `Uin` or `Vid` value has passed every rule of the `IdRules` it was
//! parsed with, and the failing rule is reported precisely otherwise.

mod rid;
mod rules;

pub use rid::{CentreId, MachineId, Rid, RidError};
pub use rules::{IdRule, IdRules, cyclic_numbers};

use rand::Rng;
use serde::Serialize;
use std::fmt;

/// Unique identification number: 10 digits by default, the last a Verhoeff check digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Uin(String);

/// Virtual ID: 16 digits by default, the last a Verhoeff check digit. Stands in for a UIN.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Vid(String);

macro_rules! identifier {
    ($ty:ident, $default_rules:path, $what:literal) => {
        impl $ty {
            /// Parses with the default MOSIP rules.
            ///
            /// # Errors
            /// The first rule the input breaks.
            pub fn parse(s: &str) -> Result<Self, IdRule> {
                Self::parse_with(s, &$default_rules())
            }

            /// Parses with configured rules.
            ///
            /// # Errors
            /// The first rule the input breaks.
            pub fn parse_with(s: &str, rules: &IdRules) -> Result<Self, IdRule> {
                rules.check(s)?;
                Ok(Self(s.to_owned()))
            }

            /// Draws a random valid identifier (rejection sampling over `rules`).
            ///
            /// # Errors
            /// `IdRule::Unsatisfiable` when no candidate passed within the attempt limit, which
            /// means the configured rules leave (almost) no valid numbers.
            pub fn generate<R: Rng + ?Sized>(rules: &IdRules, rng: &mut R) -> Result<Self, IdRule> {
                rules.generate(rng).map(Self)
            }

            /// The digits, for storage and for the person it belongs to. Never log this.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// Last four digits, the only form fit for logs and support screens.
            #[must_use]
            pub fn masked(&self) -> String {
                let keep = &self.0[self.0.len().saturating_sub(4)..];
                format!("{}{keep}", "X".repeat(self.0.len() - keep.len()))
            }
        }

        // Debug masks the number so a stray `{:?}` in a log line leaks nothing.
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, "({})"), self.masked())
            }
        }
    };
}

identifier!(Uin, IdRules::uin_default, "Uin");
identifier!(Vid, IdRules::vid_default, "Vid");

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn debug_is_masked() {
        let mut rng = StdRng::seed_from_u64(7);
        let uin = Uin::generate(&IdRules::uin_default(), &mut rng).unwrap();
        let shown = format!("{uin:?}");
        assert!(!shown.contains(uin.expose()));
        assert!(shown.ends_with(&format!("{})", &uin.expose()[6..])));
    }

    #[test]
    fn generated_vid_is_sixteen_digits() {
        let mut rng = StdRng::seed_from_u64(1);
        let vid = Vid::generate(&IdRules::vid_default(), &mut rng).unwrap();
        assert_eq!(vid.expose().len(), 16);
        assert_eq!(Vid::parse(vid.expose()).unwrap(), vid);
    }
}
