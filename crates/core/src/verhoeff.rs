//! The Verhoeff check digit (dihedral group D5), as MOSIP uses for UIN and VID.
//!
//! Verhoeff detects every single-digit error and every transposition of adjacent digits, which a
//! plain mod-10 (Luhn) checksum does not (it misses 09 ↔ 90).

/// Multiplication table of the dihedral group D5.
const D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/// Position-dependent permutation, applied `i mod 8` times.
const P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Inverse in D5.
const INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// Returns the check digit to append to `digits` (each element 0..=9).
///
/// # Panics
/// Never for inputs whose elements are below 10; callers pass parsed digits.
#[must_use]
pub fn check_digit(digits: &[u8]) -> u8 {
    let mut c = 0u8;
    // The check digit will sit at position 0, so the payload starts at position 1.
    for (i, &d) in digits.iter().rev().enumerate() {
        c = D[usize::from(c)][usize::from(P[(i + 1) % 8][usize::from(d)])];
    }
    INV[usize::from(c)]
}

/// True when `digits` (payload followed by its check digit) carries a valid Verhoeff checksum.
#[must_use]
pub fn is_valid(digits: &[u8]) -> bool {
    let mut c = 0u8;
    for (i, &d) in digits.iter().rev().enumerate() {
        c = D[usize::from(c)][usize::from(P[i % 8][usize::from(d)])];
    }
    c == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn known_vectors() {
        // Published examples: 236 → 3 (Wikipedia), 12345 → 1, 142857 → 0.
        assert_eq!(check_digit(&digits("236")), 3);
        assert_eq!(check_digit(&digits("12345")), 1);
        assert_eq!(check_digit(&digits("142857")), 0);
        assert!(is_valid(&digits("2363")));
        assert!(!is_valid(&digits("2364")));
        assert!(is_valid(&digits("123451")));
    }
}
