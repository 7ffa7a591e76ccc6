//! Synthetic fingerprints (minutiae sets) with known ground truth, reproducible from a seed (the
//! caller passes the RNG).
//!
//! Model of a finger (the "master"):
//!
//! - The finger is an ellipse of 400 × 500 pixels at 500 ppi (0.8 × 1.0 in), holding 30–70
//!   minutiae placed uniformly at random at least [`MIN_SPACING`] pixels apart (real minutiae are
//!   rarely closer than two ridge periods, ≈ 18 px).
//! - Ridges follow a smooth orientation field from Sherlock and Monro's zero-pole model ("A model
//!   for interpreting fingerprint topology", Pattern Recognition 26(7), 1993): the ridge
//!   orientation at z is `θ∞ + ½ Σ arg(z − core) − ½ Σ arg(z − delta)`. A loop has one core and
//!   one delta (65% of fingers), a whorl two of each (30%), an arch a core–delta pair below the
//!   print (5%), roughly the frequencies of the NCIC pattern classes. A minutia points along its
//!   ridge, either way (ridge endings and bifurcations of neighbouring ridges face both ways), with
//!   3° of scatter, so neighbouring minutiae are nearly parallel or anti-parallel, as on real
//!   fingers: local structures are alike between strangers, not trivially unique.
//! - 55% of minutiae are ridge endings, the rest bifurcations.
//!
//! Model of a capture (genuine = rigid transform + jitter + missing/spurious minutiae, issue #5):
//!
//! - Skin distortion: three smooth Gaussian bumps of displacement (up to 5 px each, 100–160 px
//!   wide), then independent jitter of 1.2 px per axis and 4° of direction per minutia.
//! - Placement: the finger turned by up to ±25° and moved by up to ±50 px across and ±60 px
//!   along; the sensor window is 300–400 × 360–480 px (plain impressions are partial: two captures
//!   of one finger overlap in part). Minutiae outside the window are lost.
//! - Extraction errors: 10–30% of the remaining minutiae missed (the rate drawn per capture),
//!   0–15% spurious ones added (placed on the finger inside the window, pointing along the ridge
//!   flow like real ones), 10% of types swapped between ending and bifurcation; quality drawn from
//!   40–100.
//!
//! Coordinates and angles follow ISO/IEC 19794-2:2005 (see [`crate::finger`]): pixels from the top
//! left, y downwards, angles counter-clockwise from the x axis as seen on the image.

use crate::finger::{FINGERS, FingerTemplate, MINUTIAE_MIN, Minutia, MinutiaKind};
use rand::Rng;
use std::f64::consts::{PI, TAU};

/// Semi-axes of the finger ellipse, pixels.
const HALF_WIDTH: f64 = 200.0;
const HALF_HEIGHT: f64 = 250.0;
/// Least distance between two minutiae of a master finger, pixels.
pub const MIN_SPACING: f64 = 18.0;
/// Minutiae per master finger.
pub const MINUTIAE_RANGE: std::ops::RangeInclusive<usize> = 30..=70;
/// Largest turn of a capture, either way, radians (25°).
pub const ROTATION_MAX: f64 = 25.0 * PI / 180.0;
/// Probability that a minutia's type is read as the other one.
const TYPE_SWAP: f64 = 0.10;

/// A singular point of the orientation field (math coordinates, y up, finger centre at 0).
#[derive(Clone, Copy)]
struct Singular {
    x: f64,
    y: f64,
}

/// A minutia of the master finger: math coordinates (y up, centre 0), direction in radians.
#[derive(Clone, Copy)]
struct Master {
    x: f64,
    y: f64,
    theta: f64,
    kind: MinutiaKind,
}

/// One synthetic finger: its minutiae and its ridge flow.
#[derive(Clone)]
pub struct SynthFinger {
    minutiae: Vec<Master>,
    cores: Vec<Singular>,
    deltas: Vec<Singular>,
    theta_far: f64,
}

impl std::fmt::Debug for SynthFinger {
    /// Even synthetic biometric data is not printed: logs must not get used to it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynthFinger(..)")
    }
}

/// A standard normal draw (Box–Muller), scaled.
fn normal(rng: &mut impl Rng, sigma: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    sigma * (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
}

fn inside_finger(x: f64, y: f64) -> bool {
    (x / HALF_WIDTH).powi(2) + (y / HALF_HEIGHT).powi(2) <= 1.0
}

fn point_in_finger(rng: &mut impl Rng) -> (f64, f64) {
    loop {
        let (x, y) = (rng.random_range(-HALF_WIDTH..HALF_WIDTH), rng.random_range(-HALF_HEIGHT..HALF_HEIGHT));
        if inside_finger(x, y) {
            return (x, y);
        }
    }
}

impl SynthFinger {
    pub fn random(rng: &mut impl Rng) -> Self {
        let pattern: f64 = rng.random();
        let (cores, deltas) = if pattern < 0.65 {
            // Loop, opening to the left or to the right.
            let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let core = Singular { x: rng.random_range(-40.0..40.0), y: rng.random_range(-20.0..60.0) };
            let delta = Singular { x: core.x + side * rng.random_range(120.0..180.0), y: core.y - rng.random_range(150.0..220.0) };
            (vec![core], vec![delta])
        } else if pattern < 0.95 {
            let upper = Singular { x: rng.random_range(-30.0..30.0), y: rng.random_range(0.0..60.0) };
            let lower = Singular { x: upper.x + rng.random_range(-20.0..20.0), y: upper.y - rng.random_range(30.0..60.0) };
            let y = upper.y - rng.random_range(150.0..220.0);
            let left = Singular { x: -rng.random_range(140.0..200.0), y };
            let right = Singular { x: rng.random_range(140.0..200.0), y: y + rng.random_range(-20.0..20.0) };
            (vec![upper, lower], vec![left, right])
        } else {
            // Arch: a core–delta pair below the print bends the ridges into a hump.
            let x = rng.random_range(-30.0..30.0);
            (vec![Singular { x, y: -HALF_HEIGHT - 20.0 }], vec![Singular { x, y: -HALF_HEIGHT - 120.0 }])
        };
        let mut finger = SynthFinger { minutiae: Vec::new(), cores, deltas, theta_far: normal(rng, 8f64.to_radians()) };
        let want = rng.random_range(MINUTIAE_RANGE);
        // Random sequential placement. 70 minutiae exclude at most 70·π·18² ≈ 71,000 px² of the
        // ellipse's 157,000, so every draw succeeds with probability above ≈ 0.4: the loop ends.
        while finger.minutiae.len() < want {
            let (x, y) = point_in_finger(rng);
            if finger.minutiae.iter().any(|m| (m.x - x).powi(2) + (m.y - y).powi(2) < MIN_SPACING * MIN_SPACING) {
                continue;
            }
            let kind = if rng.random_bool(0.55) { MinutiaKind::Ending } else { MinutiaKind::Bifurcation };
            let theta = finger.ridge_direction(x, y, rng) + normal(rng, 3f64.to_radians());
            finger.minutiae.push(Master { x, y, theta, kind });
        }
        finger
    }

    /// Ridge orientation (mod π) at a point, by the zero-pole model.
    fn orientation(&self, x: f64, y: f64) -> f64 {
        let arg = |s: &Singular| (y - s.y).atan2(x - s.x);
        self.theta_far + 0.5 * self.cores.iter().map(arg).sum::<f64>() - 0.5 * self.deltas.iter().map(arg).sum::<f64>()
    }

    /// A direction along the ridge at a point, either way.
    fn ridge_direction(&self, x: f64, y: f64, rng: &mut impl Rng) -> f64 {
        self.orientation(x, y) + if rng.random_bool(0.5) { PI } else { 0.0 }
    }

    /// Minutiae of the master finger.
    #[must_use]
    pub fn len(&self) -> usize {
        self.minutiae.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.minutiae.is_empty()
    }

    /// One capture of this finger (see the module doc for the model).
    pub fn capture(&self, rng: &mut impl Rng) -> FingerTemplate {
        // A placement that leaves too few minutiae in the window is drawn again; a bound keeps
        // this finite, after which the whole finger is returned as seen, unturned.
        for _ in 0..64 {
            if let Some(t) = self.try_capture(rng) {
                return t;
            }
        }
        self.flat_capture()
    }

    fn try_capture(&self, rng: &mut impl Rng) -> Option<FingerTemplate> {
        let turn = rng.random_range(-ROTATION_MAX..=ROTATION_MAX);
        let (shift_x, shift_y) = (rng.random_range(-50.0..=50.0), rng.random_range(-60.0..=60.0));
        let (width, height) = (rng.random_range(300u16..=400), rng.random_range(360u16..=480));
        let bumps: Vec<(f64, f64, f64, f64, f64)> = (0..3)
            .map(|_| {
                let (cx, cy) = point_in_finger(rng);
                let (size, dir) = (rng.random_range(0.0..5.0), rng.random_range(0.0..TAU));
                (cx, cy, size * dir.cos(), size * dir.sin(), rng.random_range(100.0f64..160.0))
            })
            .collect();
        let (cos, sin) = (turn.cos(), turn.sin());
        // Master (math) coordinates to window pixels, y down; None when outside the window.
        let place = |x: f64, y: f64| -> Option<(u16, u16)> {
            let (tx, ty) = (cos * x - sin * y + shift_x, sin * x + cos * y + shift_y);
            let (px, py) = ((tx + f64::from(width) / 2.0).round(), (f64::from(height) / 2.0 - ty).round());
            let inside = px >= 0.0 && py >= 0.0 && px < f64::from(width) && py < f64::from(height);
            // In range by the test just made.
            inside.then_some((px as u16, py as u16))
        };
        let iso_angle = |theta: f64| ((theta + turn).rem_euclid(TAU) / TAU * 256.0).round() as u32 % 256;
        let mut seen: Vec<Minutia> = Vec::with_capacity(self.minutiae.len() + 16);
        for m in &self.minutiae {
            let (mut x, mut y) = (m.x, m.y);
            for &(cx, cy, dx, dy, s) in &bumps {
                let w = (-((m.x - cx).powi(2) + (m.y - cy).powi(2)) / (2.0 * s * s)).exp();
                x += w * dx;
                y += w * dy;
            }
            x += normal(rng, 1.2);
            y += normal(rng, 1.2);
            let theta = m.theta + normal(rng, 4f64.to_radians());
            if let Some((px, py)) = place(x, y) {
                let kind = if rng.random_bool(TYPE_SWAP) { swapped(m.kind) } else { m.kind };
                seen.push(Minutia { x: px, y: py, angle: iso_angle(theta) as u8, kind, quality: rng.random_range(40..=100) });
            }
        }
        if seen.len() < MINUTIAE_MIN.max(8) {
            return None;
        }
        let missed = rng.random_range(0.10..0.30);
        let keep = MINUTIAE_MIN.max(((1.0 - missed) * seen.len() as f64).round() as usize);
        // Partial Fisher–Yates: the first `keep` are a uniform random subset.
        for i in 0..keep.min(seen.len()) {
            let j = rng.random_range(i..seen.len());
            seen.swap(i, j);
        }
        seen.truncate(keep);
        let spurious = (rng.random_range(0.0..0.15) * seen.len() as f64).round() as usize;
        let mut added = 0;
        for _ in 0..spurious * 20 {
            if added == spurious {
                break;
            }
            let (x, y) = point_in_finger(rng);
            if let Some((px, py)) = place(x, y) {
                let kind = if rng.random_bool(0.55) { MinutiaKind::Ending } else { MinutiaKind::Bifurcation };
                let theta = self.ridge_direction(x, y, rng) + normal(rng, 6f64.to_radians());
                seen.push(Minutia { x: px, y: py, angle: iso_angle(theta) as u8, kind, quality: rng.random_range(20..=80) });
                added += 1;
            }
        }
        // The order of minutiae in a record carries nothing.
        for i in (1..seen.len()).rev() {
            seen.swap(i, rng.random_range(0..=i));
        }
        seen.truncate(crate::finger::MINUTIAE_MAX);
        FingerTemplate::new(width, height, seen).ok()
    }

    /// Every minutia where it lies, unturned, on a canvas the size of the finger.
    fn flat_capture(&self) -> FingerTemplate {
        let (w, h) = ((2.0 * HALF_WIDTH) as u16, (2.0 * HALF_HEIGHT) as u16);
        let minutiae = self
            .minutiae
            .iter()
            .map(|m| Minutia {
                x: (m.x + HALF_WIDTH).clamp(0.0, f64::from(w - 1)) as u16,
                y: (HALF_HEIGHT - m.y).clamp(0.0, f64::from(h - 1)) as u16,
                angle: (m.theta.rem_euclid(TAU) / TAU * 256.0) as u32 as u8,
                kind: m.kind,
                quality: 60,
            })
            .collect();
        // 30–70 minutiae, clamped inside the canvas: valid by construction.
        FingerTemplate::trusted(w, h, minutiae)
    }
}

fn swapped(kind: MinutiaKind) -> MinutiaKind {
    match kind {
        MinutiaKind::Ending => MinutiaKind::Bifurcation,
        MinutiaKind::Bifurcation => MinutiaKind::Ending,
        MinutiaKind::Other => MinutiaKind::Other,
    }
}

/// A person's ten fingers, indexed by ISO/IEC 19794-2 finger position − 1 (right thumb first).
/// Fingers of one person are drawn independently.
#[derive(Clone)]
pub struct SynthHands {
    fingers: [SynthFinger; FINGERS],
}

impl std::fmt::Debug for SynthHands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynthHands(..)")
    }
}

impl SynthHands {
    pub fn random(rng: &mut impl Rng) -> Self {
        SynthHands { fingers: std::array::from_fn(|_| SynthFinger::random(rng)) }
    }

    #[must_use]
    pub fn finger(&self, position: usize) -> Option<&SynthFinger> {
        self.fingers.get(position)
    }

    /// One capture of all ten fingers.
    pub fn capture(&self, rng: &mut impl Rng) -> [FingerTemplate; FINGERS] {
        std::array::from_fn(|i| self.fingers[i].capture(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fingers_are_realistic_and_reproducible() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let f = SynthFinger::random(&mut rng);
            assert!(MINUTIAE_RANGE.contains(&f.len()), "{}", f.len());
            for (i, a) in f.minutiae.iter().enumerate() {
                assert!(inside_finger(a.x, a.y));
                for b in &f.minutiae[i + 1..] {
                    assert!((a.x - b.x).hypot(a.y - b.y) >= MIN_SPACING);
                }
            }
            let t = f.capture(&mut rng);
            assert!(t.minutiae().len() >= 8 && t.minutiae().len() <= f.len() * 6 / 5, "{} of {}", t.minutiae().len(), f.len());
            assert!((300..=400).contains(&t.width()) && (360..=480).contains(&t.height()));
        }
        let a = SynthHands::random(&mut rand::rngs::StdRng::seed_from_u64(3)).capture(&mut rand::rngs::StdRng::seed_from_u64(4));
        let b = SynthHands::random(&mut rand::rngs::StdRng::seed_from_u64(3)).capture(&mut rand::rngs::StdRng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_eq!(format!("{:?}", SynthFinger::random(&mut rng)), "SynthFinger(..)");
    }

    #[test]
    fn neighbouring_minutiae_follow_the_ridge_flow() {
        // Directions of near neighbours agree (mod π) far more often than chance: the model is
        // not a cloud of independent directions.
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let (mut near, mut parallel) = (0, 0);
        for _ in 0..40 {
            let f = SynthFinger::random(&mut rng);
            for (i, a) in f.minutiae.iter().enumerate() {
                for b in &f.minutiae[i + 1..] {
                    if (a.x - b.x).hypot(a.y - b.y) < 60.0 {
                        near += 1;
                        let d = (a.theta - b.theta).rem_euclid(PI);
                        if d.min(PI - d) < 20f64.to_radians() {
                            parallel += 1;
                        }
                    }
                }
            }
        }
        // Chance would be 40/180 ≈ 22%.
        assert!(parallel * 10 > near * 7, "{parallel} of {near}");
    }

    #[test]
    fn captures_differ_and_stay_inside_their_window() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let f = SynthFinger::random(&mut rng);
        let a = f.capture(&mut rng);
        let b = f.capture(&mut rng);
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert!(t.minutiae().iter().all(|m| m.x < t.width() && m.y < t.height()));
        }
        let kinds = a.minutiae().iter().filter(|m| m.kind == MinutiaKind::Ending).count();
        assert!(kinds > 0 && kinds < a.minutiae().len());
    }
}
