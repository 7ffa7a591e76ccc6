//! The 1:1 minutiae matcher: bit-vector local structures (after Minutia Cylinder-Code) propose
//! alignments; a least-squares rigid fit per proposal, and the count of minutiae it pairs, decide.

use super::{FingerTemplate, MINUTIAE_MAX};
use std::f32::consts::{PI, TAU};

/// Radius of a local structure, pixels. Cappelli et al. use 70 px at 500 ppi with 16 × 16 cells;
/// with 8 × 8 cells a wider disc (more neighbours per structure) measured better on the synthetic
/// population: FNMR at FMR 10⁻⁴ 0.4% at 75 px, 0.2% at 90–120 px.
const RADIUS: f32 = 100.0;
/// Spatial cells per side of a local structure: 8 × 8 cells make one `u64` per direction plane.
const GRID: usize = 8;
const CELL: f32 = 2.0 * RADIUS / GRID as f32;
/// Direction planes: the relative direction of a neighbour, in sixths of a turn.
const PLANES: usize = 6;
/// A neighbour marks the cells whose centres lie this close: the bit form of MCC's Gaussian
/// spatial contribution, wide enough that jitter of a few pixels keeps most marked cells.
const SPATIAL_REACH: f32 = CELL;
/// A neighbour marks its own direction plane, and the next one when within this of the border
/// (15°), so jitter across a border does not lose it.
const DIRECTION_SLACK: f32 = PI / 12.0;
/// Cells farther than this outside the convex hull of a template's minutiae are unknown, not
/// empty (the capture did not see there); Cappelli et al. use Ω = 50 px.
const HULL_MARGIN: f32 = 30.0;
/// A local structure with fewer neighbours inside `RADIUS` says too little to be compared.
const MIN_NEIGHBOURS: u32 = 2;
/// Two structures are compared only over cells valid in both; fewer than this (of the 52 cells of
/// the disc) and the comparison says nothing.
const MIN_COMMON_CELLS: u32 = 24;
/// Alignments tried: those of the best local pairs (8 → 12 → 20 seeds: FNMR at FMR 10⁻⁴ 0.14%
/// → 0.08% → 0.07%, at 31k → 26k → 18k comparisons per second).
const SEEDS: usize = 12;
/// Two aligned minutiae pair when this close, pixels (1.5 ridge periods: skin distortion).
const PAIR_DISTANCE: f32 = 15.0;
/// … and when their directions differ by at most this (20°).
const PAIR_ANGLE: f32 = PI / 9.0;

#[derive(Clone, Copy)]
struct Point {
    x: f32,
    y: f32,
    /// Direction, radians counter-clockwise in math axes (y up), and its unit vector.
    t: f32,
    cos: f32,
    sin: f32,
}

#[derive(Clone, Copy, Default)]
struct Cylinder {
    /// Occupied cells per direction plane, always inside `mask`.
    planes: [u64; PLANES],
    /// Cells inside the disc and near the template's hull: 0 when the structure is unusable.
    mask: u64,
    /// Per cell, how many planes are occupied, bit-sliced (count = s0 + 2·s1 + 4·s2), so the
    /// occupied cells under another mask are counted with three popcounts instead of six.
    slices: [u64; 3],
}

/// A template ready for matching: its local structures, hull and sorted coordinates computed once.
#[derive(Clone)]
pub struct PreparedFinger {
    points: Vec<Point>,
    cylinders: Vec<Cylinder>,
    /// Minutiae whose structure is usable.
    usable: Vec<u16>,
    /// Minutiae bucketed in square cells of side `2 · PAIR_DISTANCE`: a point's partners lie in
    /// the 2 × 2 block of cells nearest to it.
    grid: Grid,
}

impl std::fmt::Debug for PreparedFinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedFinger(..)")
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// See [`crate::finger`] for the scale.
    pub score: f32,
    /// Minutiae paired under the best alignment.
    pub paired: u32,
}

#[derive(Clone, Copy, Debug)]
struct Rigid {
    cos: f32,
    sin: f32,
    tx: f32,
    ty: f32,
}

impl Rigid {
    #[inline(always)]
    fn new(rot: f32, tx: f32, ty: f32) -> Self {
        let (sin, cos) = rot.sin_cos();
        Rigid { cos, sin, tx, ty }
    }

    /// The transform that lays `a` on `b`, positions and directions.
    #[inline(always)]
    fn from_pair(a: Point, b: Point) -> Self {
        let r = Rigid::new(b.t - a.t, 0.0, 0.0);
        let (x, y) = r.apply(a.x, a.y);
        Rigid { tx: b.x - x, ty: b.y - y, ..r }
    }

    #[inline(always)]
    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (self.cos * x - self.sin * y + self.tx, self.sin * x + self.cos * y + self.ty)
    }
}

/// Centre of cell `i` along one axis of a local structure, pixels from the minutia.
#[inline(always)]
fn cell_centre(i: usize) -> f32 {
    (i as f32 + 0.5) * CELL - RADIUS
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, as outward edge lines. Fewer than
/// two distinct points give no edges: nothing is known to be outside.
#[inline(always)]
fn hull_edges(points: &[Point]) -> Vec<[f32; 3]> {
    let mut p: Vec<(f32, f32)> = points.iter().map(|q| (q.x, q.y)).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.dedup();
    if p.len() < 2 {
        return Vec::new();
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut h: Vec<(f32, f32)> = Vec::with_capacity(2 * p.len());
    for &q in &p {
        while let [.., o, a] = h[..] {
            if cross(o, a, q) > 0.0 {
                break;
            }
            h.pop();
        }
        h.push(q);
    }
    let lower = h.len() + 1;
    for &q in p.iter().rev().skip(1) {
        while h.len() >= lower {
            let [.., o, a] = h[..] else { break };
            if cross(o, a, q) > 0.0 {
                break;
            }
            h.pop();
        }
        h.push(q);
    }
    h.pop();
    let mut edges = Vec::with_capacity(h.len());
    for (k, &a) in h.iter().enumerate() {
        let b = h[(k + 1) % h.len()];
        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
        let len = ex.hypot(ey);
        if len > 0.0 {
            let (nx, ny) = (ey / len, -ex / len);
            edges.push([nx, ny, nx * a.0 + ny * a.1]);
        }
    }
    edges
}

impl PreparedFinger {
    /// Prepares a template for comparison (its local structures and grid). Compiled for several
    /// instruction sets and picked at run time, like `compare`.
    #[must_use]
    pub fn new(template: &FingerTemplate) -> Self {
        prepare(template)
    }

    #[inline(always)]
    fn prepare_here(template: &FingerTemplate) -> Self {
        let points: Vec<Point> = template
            .minutiae()
            .iter()
            .take(MINUTIAE_MAX)
            .map(|m| {
                let t = f32::from(m.angle) * (TAU / 256.0);
                let (sin, cos) = t.sin_cos();
                Point { x: f32::from(m.x), y: -f32::from(m.y), t, cos, sin }
            })
            .collect();
        let hull = hull_edges(&points);
        let cylinders: Vec<Cylinder> = (0..points.len()).map(|i| cylinder(&points, i, &hull)).collect();
        let usable = (0..points.len()).filter(|&i| cylinders[i].mask != 0).map(|i| i as u16).collect();
        let grid = Grid::new(&points);
        PreparedFinger { points, cylinders, usable, grid }
    }

    /// Minutiae in the template.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Compares two prepared templates. Nearly symmetric (both orders try the same seeds; the
    /// greedy pairing can break ties differently).
    ///
    /// Compiled for several instruction sets and picked at run time (`multiversion`): the seed
    /// search counts bits of every pair of local structures, and the x86-64 baseline has no
    /// popcount instruction. Floating-point operations are not contracted, so every target
    /// gives the same scores.
    #[must_use]
    pub fn compare(&self, other: &PreparedFinger) -> Comparison {
        compare(self, other)
    }

    #[inline(always)]
    fn compare_here(&self, other: &PreparedFinger) -> Comparison {
        let seeds = self.seeds(other);
        let mut candidates = Vec::new();
        let mut pairs = Vec::new();
        let mut best: Vec<(u16, u16)> = Vec::new();
        for &(_, i, j) in &seeds {
            // A seed the best alignment already pairs would find that alignment again.
            if best.contains(&(i, j)) {
                continue;
            }
            let (Some(&a), Some(&b)) = (self.points.get(usize::from(i)), other.points.get(usize::from(j))) else { continue };
            let mut t = Rigid::from_pair(a, b);
            self.pair_up(other, &t, &mut candidates, &mut pairs);
            // Refit once on what the seed paired: one pair's angle error, a few degrees, moves
            // far minutiae by more than the tolerance.
            if pairs.len() >= 3 {
                t = self.refit(other, &pairs);
                self.pair_up(other, &t, &mut candidates, &mut pairs);
            }
            if pairs.len() > best.len() {
                std::mem::swap(&mut best, &mut pairs);
            }
        }
        let paired = best.len() as u32;
        Comparison { score: score(paired, self.len(), other.len()), paired }
    }

    /// The `SEEDS` pairs of minutiae with the most alike local structures, best first.
    #[inline(always)]
    fn seeds(&self, other: &PreparedFinger) -> Vec<(f32, u16, u16)> {
        let mut top: Vec<(f32, u16, u16)> = Vec::with_capacity(SEEDS + 1);
        for &i in &self.usable {
            let Some(a) = self.cylinders.get(usize::from(i)) else { continue };
            for &j in &other.usable {
                let Some(b) = other.cylinders.get(usize::from(j)) else { continue };
                let s = similarity(a, b);
                if s > 0.0 && (top.len() < SEEDS || top.last().is_some_and(|w| s > w.0)) {
                    let at = top.partition_point(|h| h.0 >= s);
                    top.insert(at, (s, i, j));
                    top.truncate(SEEDS);
                }
            }
        }
        top
    }

    /// Pairs minutiae of `self` moved by `t` with those of `other`: each minutia at most once,
    /// closest pairs first (greedy), within `PAIR_DISTANCE` and `PAIR_ANGLE`.
    #[inline(always)]
    fn pair_up(&self, other: &PreparedFinger, t: &Rigid, candidates: &mut Vec<(f32, u16, u16)>, pairs: &mut Vec<(u16, u16)>) {
        candidates.clear();
        let min_cos = PAIR_ANGLE.cos();
        for (ia, p) in self.points.iter().enumerate() {
            let (x, y) = t.apply(p.x, p.y);
            let (dc, ds) = (t.cos * p.cos - t.sin * p.sin, t.sin * p.cos + t.cos * p.sin);
            for &ib in other.grid.near(x, y) {
                let Some(q) = other.points.get(usize::from(ib)) else { continue };
                let d2 = (q.x - x).powi(2) + (q.y - y).powi(2);
                if d2 <= PAIR_DISTANCE * PAIR_DISTANCE && dc * q.cos + ds * q.sin >= min_cos {
                    candidates.push((d2, ia as u16, ib));
                }
            }
        }
        candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut used_a = [0u64; 4];
        let mut used_b = [0u64; 4];
        pairs.clear();
        for &(_, ia, ib) in candidates.iter() {
            let (wa, ba) = (usize::from(ia >> 6) & 3, 1u64 << (ia & 63));
            let (wb, bb) = (usize::from(ib >> 6) & 3, 1u64 << (ib & 63));
            if used_a[wa] & ba == 0 && used_b[wb] & bb == 0 {
                used_a[wa] |= ba;
                used_b[wb] |= bb;
                pairs.push((ia, ib));
            }
        }
    }

    /// The least-squares rigid transform (rotation and translation, no scale) laying the paired
    /// minutiae of `self` on those of `other`.
    #[inline(always)]
    fn refit(&self, other: &PreparedFinger, pairs: &[(u16, u16)]) -> Rigid {
        let matched: Vec<(Point, Point)> =
            pairs.iter().filter_map(|&(i, j)| Some((*self.points.get(usize::from(i))?, *other.points.get(usize::from(j))?))).collect();
        let n = matched.len().max(1) as f32;
        let (ax, ay, bx, by) = matched.iter().fold((0.0, 0.0, 0.0, 0.0), |s, (a, b)| (s.0 + a.x, s.1 + a.y, s.2 + b.x, s.3 + b.y));
        let (ax, ay, bx, by) = (ax / n, ay / n, bx / n, by / n);
        let (mut dot, mut cross) = (0.0, 0.0);
        for (a, b) in &matched {
            let (ux, uy, vx, vy) = (a.x - ax, a.y - ay, b.x - bx, b.y - by);
            dot += ux * vx + uy * vy;
            cross += ux * vy - uy * vx;
        }
        let r = Rigid::new(cross.atan2(dot), 0.0, 0.0);
        let (x, y) = r.apply(ax, ay);
        Rigid { tx: bx - x, ty: by - y, ..r }
    }
}

/// A uniform grid of minutia indices, cells of side `GRID_CELL`, in compressed rows.
#[derive(Clone, Default)]
struct Grid {
    x0: f32,
    y0: f32,
    cols: usize,
    rows: usize,
    /// Start of each cell's run in `items`, plus the end.
    starts: Vec<u16>,
    items: Vec<u16>,
}

const GRID_CELL: f32 = 2.0 * PAIR_DISTANCE;

impl Grid {
    #[inline(always)]
    fn new(points: &[Point]) -> Self {
        let Some(x0) = points.iter().map(|p| p.x).min_by(f32::total_cmp) else { return Grid::default() };
        let y0 = points.iter().map(|p| p.y).min_by(f32::total_cmp).unwrap_or(0.0);
        let x1 = points.iter().map(|p| p.x).max_by(f32::total_cmp).unwrap_or(x0);
        let y1 = points.iter().map(|p| p.y).max_by(f32::total_cmp).unwrap_or(y0);
        // Coordinates are at most 2048 px apart, so the grid has at most 58 × 58 cells.
        let cols = ((x1 - x0) / GRID_CELL) as usize + 1;
        let rows = ((y1 - y0) / GRID_CELL) as usize + 1;
        let cell = |p: &Point| (((p.y - y0) / GRID_CELL) as usize).min(rows - 1) * cols + (((p.x - x0) / GRID_CELL) as usize).min(cols - 1);
        let mut starts = vec![0u16; cols * rows + 1];
        for p in points {
            starts[cell(p) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut items = vec![0u16; points.len()];
        for (i, p) in points.iter().enumerate() {
            let c = cell(p);
            items[usize::from(fill[c])] = i as u16;
            fill[c] += 1;
        }
        Grid { x0, y0, cols, rows, starts, items }
    }

    /// Indices of every minutia within `GRID_CELL / 2` of (x, y), and some farther ones.
    #[inline(always)]
    fn near(&self, x: f32, y: f32) -> impl Iterator<Item = &u16> {
        let (fx, fy) = ((x - self.x0) / GRID_CELL, (y - self.y0) / GRID_CELL);
        // The 2 × 2 block: this cell and its neighbour on the nearer side, in each axis.
        let span = |f: f32, n: usize| -> std::ops::Range<usize> {
            // floor without a libm call (the baseline x86-64 target has no rounding instruction);
            // coordinates are far inside i32.
            let t = f - 0.5;
            let lo = t as i32 - i32::from((t as i32) as f32 > t);
            let (lo, hi) = (lo.max(0) as usize, (lo + 2).clamp(0, n as i32) as usize);
            lo..hi.max(lo)
        };
        let (xs, ys) = (span(fx, self.cols), span(fy, self.rows));
        ys.flat_map(move |r| {
            let from = self.starts.get(r * self.cols + xs.start).copied().unwrap_or(0);
            let to = self.starts.get(r * self.cols + xs.end).copied().unwrap_or(0);
            self.items.get(usize::from(from)..usize::from(to)).unwrap_or_default()
        })
    }
}

/// `m² / (n_a · n_b)` for `m` minutiae paired of `n_a` and `n_b` (Jain, Hong and Bolle, "On-line
/// fingerprint verification", IEEE TPAMI 19(4), 1997): 1 when every minutia of both pairs.
/// Normalising by the counts in the overlap instead, which forgives partial captures, let
/// strangers that met on a small overlap score higher: FNMR at FMR 10⁻⁴ was 0.7% against 0.1%.
#[inline(always)]
fn score(paired: u32, a: usize, b: usize) -> f32 {
    let n = (a * b).max(1) as f32;
    ((paired as f32).powi(2) / n).min(1.0)
}

/// The cells along one axis whose centres lie within `SPATIAL_REACH` of `w`.
#[inline(always)]
fn cells_within_reach(w: f32) -> std::ops::Range<usize> {
    // floor and ceil by truncation of a shifted value: the baseline x86-64 target has no
    // rounding instruction, and a libm call per neighbour cost more than the rest of the loop.
    const SHIFT: f32 = 64.0;
    let floor = |t: f32| (t + SHIFT).max(0.0) as i32 - SHIFT as i32;
    let first = -floor(-((w - SPATIAL_REACH + RADIUS) / CELL - 0.5));
    let last = floor((w + SPATIAL_REACH + RADIUS) / CELL - 0.5);
    let (first, end) = (first.clamp(0, GRID as i32) as usize, (last + 1).clamp(0, GRID as i32) as usize);
    first..end.max(first)
}

/// Centres of the cells of a local structure, (u, v) in the minutia's frame, cell `r·GRID + c`.
#[inline(always)]
fn cell_centres() -> ([f32; GRID * GRID], [f32; GRID * GRID]) {
    (std::array::from_fn(|i| cell_centre(i % GRID)), std::array::from_fn(|i| cell_centre(i / GRID)))
}

/// The local structure of minutia `i`.
#[inline(always)]
fn cylinder(points: &[Point], i: usize, hull: &[[f32; 3]]) -> Cylinder {
    let Some(&p) = points.get(i) else { return Cylinder::default() };
    let (cu, cv) = cell_centres();
    // Valid cells: inside the disc and near the hull. An edge's signed distance is linear in the
    // cell's (u, v), so each edge is one pass of multiply-adds over all cells (vectorised).
    let mut valid: [bool; GRID * GRID] = std::array::from_fn(|k| cu[k] * cu[k] + cv[k] * cv[k] <= RADIUS * RADIUS);
    for e in hull {
        let base = e[0] * p.x + e[1] * p.y - e[2] - HULL_MARGIN;
        let (du, dv) = (e[0] * p.cos + e[1] * p.sin, -e[0] * p.sin + e[1] * p.cos);
        for k in 0..GRID * GRID {
            valid[k] &= base + du * cu[k] + dv * cv[k] <= 0.0;
        }
    }
    let mut mask = valid.iter().enumerate().fold(0u64, |m, (k, &ok)| m | (u64::from(ok) << k));
    let mut planes = [0u64; PLANES];
    let mut neighbours = 0;
    let reach = RADIUS + SPATIAL_REACH;
    for (j, q) in points.iter().enumerate() {
        let (dx, dy) = (q.x - p.x, q.y - p.y);
        let d2 = dx * dx + dy * dy;
        if j == i || d2 > reach * reach {
            continue;
        }
        if d2 <= RADIUS * RADIUS {
            neighbours += 1;
        }
        let (u, v) = (dx * p.cos + dy * p.sin, -dx * p.sin + dy * p.cos);
        let mut spatial = 0u64;
        let (cols, rows) = (cells_within_reach(u), cells_within_reach(v));
        for r in rows {
            let dv = cell_centre(r) - v;
            for c in cols.clone() {
                let du = cell_centre(c) - u;
                if du * du + dv * dv <= SPATIAL_REACH * SPATIAL_REACH {
                    spatial |= 1 << (r * GRID + c);
                }
            }
        }
        // The plane of the relative direction, and its neighbour when within DIRECTION_SLACK of
        // the border between them.
        let delta = q.t - p.t;
        let x = (if delta < 0.0 { delta + TAU } else { delta }) * (PLANES as f32 / TAU);
        let k = (x as usize).min(PLANES - 1);
        let frac = x - k as f32;
        let slack = DIRECTION_SLACK * (PLANES as f32 / TAU);
        planes[k] |= spatial;
        if frac < slack {
            planes[(k + PLANES - 1) % PLANES] |= spatial;
        }
        if frac > 1.0 - slack {
            planes[(k + 1) % PLANES] |= spatial;
        }
    }
    if neighbours < MIN_NEIGHBOURS {
        mask = 0;
    }
    let mut slices = [0u64; 3];
    for plane in &mut planes {
        *plane &= mask;
        // Bit-sliced increment of the per-cell count by this plane.
        let mut carry = *plane;
        for slice in &mut slices {
            let next = *slice & carry;
            *slice ^= carry;
            carry = next;
        }
    }
    Cylinder { planes, mask, slices }
}

/// Similarity of two local structures over the cells valid in both: 2|a ∧ b| / (|a| + |b|)
/// (the bit form of MCC's 1 − ‖a − b‖ / (‖a‖ + ‖b‖)), 0 when too few cells are in common.
#[inline(always)]
fn similarity(a: &Cylinder, b: &Cylinder) -> f32 {
    let m = a.mask & b.mask;
    if m.count_ones() < MIN_COMMON_CELLS {
        return 0.0;
    }
    // Both structures' bits lie inside their own masks, so a ∧ b needs no mask, and a's bits
    // under b's mask are those of a ∧ m.
    let z: [u64; PLANES] = std::array::from_fn(|k| a.planes[k] & b.planes[k]);
    let both = popcount6(z);
    let weighted = |s: &[u64; 3], m: u64| (s[0] & m).count_ones() + 2 * (s[1] & m).count_ones() + 4 * (s[2] & m).count_ones();
    let total = weighted(&a.slices, b.mask) + weighted(&b.slices, a.mask);
    if total == 0 { 0.0 } else { 2.0 * both as f32 / total as f32 }
}

/// Carry-save adder: three words in, their bitwise sum as (ones, twos).
#[inline(always)]
fn csa(a: u64, b: u64, c: u64) -> (u64, u64) {
    let u = a ^ b;
    (u ^ c, (a & b) | (u & c))
}

/// Total set bits of six words with three popcounts (Harley–Seal style carry-save reduction).
#[inline(always)]
fn popcount6(z: [u64; PLANES]) -> u32 {
    let (s1, c1) = csa(z[0], z[1], z[2]);
    let (s2, c2) = csa(z[3], z[4], z[5]);
    let (twos, fours) = csa(c1, c2, s1 & s2);
    (s1 ^ s2).count_ones() + 2 * twos.count_ones() + 4 * fours.count_ones()
}

/// `PreparedFinger::new`, compiled per instruction set (see `compare`).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512vpopcntdq+avx2+fma+popcnt",
    "x86_64+avx2+fma+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
fn prepare(template: &FingerTemplate) -> PreparedFinger {
    PreparedFinger::prepare_here(template)
}

/// `PreparedFinger::compare`, compiled per instruction set.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512vpopcntdq+avx2+fma+popcnt",
    "x86_64+avx2+fma+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
fn compare(a: &PreparedFinger, b: &PreparedFinger) -> Comparison {
    a.compare_here(b)
}
