//! An independent implementation of MOSIP's UIN and VID filters, written as MOSIP writes them
//! (`UinFilterUtil`, `VidFilterUtils`: regexes with back-references, via fancy-regex), to check
//! Tessera's hand-written rules against. Defaults of `application-default.properties`.

use fancy_regex::Regex;
use std::sync::LazyLock;

static REPEATING_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d)\d{0,1}\1").expect("regex"));
static REPEATING_BLOCK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d{2,}).*?\1").expect("regex"));
static EVEN_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new("[2468]{3}").expect("regex"));

/// Verhoeff, computed from its definition rather than from tables (so it shares nothing with
/// the code under test): multiplication in the dihedral group D5, and the position permutation
/// σ = (1 5 7 6 2 8 3 0 9 4) applied `i mod 8` times.
fn verhoeff_ok(id: &str) -> bool {
    fn d5(j: u8, k: u8) -> u8 {
        match (j < 5, k < 5) {
            (true, true) => (j + k) % 5,
            (true, false) => 5 + (j + k) % 5,
            (false, true) => 5 + (j + 5 - k) % 5,
            (false, false) => (j + 5 - k) % 5,
        }
    }
    const SIGMA: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];
    let mut c = 0u8;
    for (i, b) in id.bytes().rev().enumerate() {
        let mut n = b - b'0';
        for _ in 0..i % 8 {
            n = SIGMA[usize::from(n)];
        }
        c = d5(c, n);
    }
    c == 0
}

fn common(id: &str, length: usize) -> bool {
    let sequences = ["01234567890123456789", "98765432109876543210"];
    id.len() == length
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0')
        && !id.starts_with('1')
        && !(0..=id.len() - 3).any(|i| sequences.iter().any(|s| s.contains(&id[i..i + 3])))
        && !REPEATING_DIGIT.is_match(id).unwrap_or(true)
        && !REPEATING_BLOCK.is_match(id).unwrap_or(true)
        && !id.contains("786")
        && !id.contains("666")
        && verhoeff_ok(id)
}

/// Whether MOSIP would accept `id` as a UIN.
#[must_use]
pub fn uin_ok(id: &str) -> bool {
    if !common(id, 10) {
        return false;
    }
    let (a, b) = (&id[..5], &id[id.len() - 5..]);
    a != b && a != b.chars().rev().collect::<String>() && !EVEN_RUN.is_match(id).unwrap_or(true) && !id.contains("142857")
}

/// Whether MOSIP would accept `id` as a VID.
#[must_use]
pub fn vid_ok(id: &str) -> bool {
    common(id, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_examples() {
        // Positive controls: the checker accepts what it should and rejects each rule.
        // Verhoeff's published example: 236 has check digit 3.
        assert!(verhoeff_ok("2363"));
        assert!(!verhoeff_ok("2364"));
        for bad in ["1234567890", "2345678901", "2945294529", "2468135790", "47293816", "abcdefghij"] {
            assert!(!uin_ok(bad), "{bad}");
        }
    }
}
