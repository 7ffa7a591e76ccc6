//! Blocking and the de-duplication of a set of records: each record gets a few keys (phonetic
//! name word + birth year, phonetic name word + birth day, phonetic full name, birth date,
//! address, phone digits, e-mail local part); only records sharing a key are compared, each pair
//! once, and a block too big to compare is skipped and counted, never compared all-pairs.

use crate::Error;
use crate::compare::{Comparison, Decision, Prepared};
use crate::config::Config;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Phone keys use the last digits: a typo in the first ones still meets.
const PHONE_KEY_DIGITS: usize = 7;
/// E-mail local parts shorter than this ("a@…") make no key.
const EMAIL_KEY_LEN_MIN: usize = 3;
/// Name words shorter than this (initials) make no key.
const NAME_KEY_LEN_MIN: usize = 2;
/// Most threads `dedupe` starts.
pub const THREADS_MAX: usize = 256;

/// The blocking keys of a prepared record: deterministic strings, sorted, at most
/// `limits.blocking_keys_max`. Two records of one person share at least one key unless several
/// fields are wrong at once.
pub(crate) fn keys(p: &Prepared, keys_max: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let dob = p.date_of_birth;
    for name in &p.names {
        for (token, (primary, alternate)) in name.tokens.iter().zip(&name.codes) {
            if token.chars().count() < NAME_KEY_LEN_MIN {
                continue;
            }
            for code in [primary, alternate] {
                if code.is_empty() {
                    continue;
                }
                match dob {
                    Some(d) => {
                        keys.push(format!("ny:{code}:{:04}", d.year()));
                        keys.push(format!("nd:{code}:{:02}{:02}", d.month(), d.day()));
                    }
                    None => keys.push(format!("n:{code}")),
                }
            }
        }
    }
    // The whole name and the city without the birth date, for records that lack or garble it:
    // the primary codes of the first and last words, in sorted order (so family-name-first
    // meets). The city keeps the blocks of common names small.
    for name in &p.names {
        if let (Some(first), Some(last)) = (name.codes.first(), name.codes.last())
            && name.codes.len() >= 2
            && !first.0.is_empty()
            && !last.0.is_empty()
        {
            let (x, y) = if first.0 <= last.0 { (&first.0, &last.0) } else { (&last.0, &first.0) };
            for (_, city) in &p.city {
                keys.push(format!("nc:{x}:{y}:{city}"));
            }
        }
    }
    if let Some(d) = dob {
        keys.push(format!("d:{d}"));
    }
    for (_, words) in &p.address {
        keys.push(format!("a:{}", words.join(" ")));
    }
    if let Some(phone) = &p.phone {
        keys.push(format!("p:{}", &phone[phone.len().saturating_sub(PHONE_KEY_DIGITS)..]));
    }
    if let Some((local, _)) = &p.email
        && local.chars().count() >= EMAIL_KEY_LEN_MIN
    {
        keys.push(format!("e:{local}"));
    }
    keys.sort();
    keys.dedup();
    keys.truncate(keys_max);
    keys
}

/// A candidate pair: indices into the records given to `dedupe` (`a < b`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub comparison: Comparison,
}

/// What a `dedupe` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DedupeStats {
    pub records: u64,
    /// Distinct blocking keys.
    pub keys: u64,
    /// Blocks with two records or more.
    pub blocks: u64,
    /// Blocks over `limits.block_size_max`, not compared, and the pairs they held.
    pub blocks_oversized: u64,
    pub pairs_in_oversized_blocks: u64,
    /// Pairs scored (each pair once, however many blocks it shares).
    pub pairs_compared: u64,
    /// n(n−1)/2: what comparing every pair would have cost.
    pub all_pairs: u64,
    pub matches: u64,
    pub possible_matches: u64,
    /// Pairs dropped because a record had more than `limits.candidates_max` candidates.
    pub pairs_over_candidates_max: u64,
}

/// The outcome of `dedupe`: matches and possible matches, ordered by (a, b).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dedupe {
    pub pairs: Vec<Pair>,
    pub stats: DedupeStats,
}

fn chunks_of(n: usize, threads: usize) -> usize {
    n.div_ceil(threads.max(1)).max(1)
}

/// The first key (in id order) that two records share, among keys of blocks that are compared.
fn first_shared(a: &[u32], b: &[u32], oversized: &[bool]) -> Option<u32> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if !oversized[a[i] as usize] {
                    return Some(a[i]);
                }
                i += 1;
                j += 1;
            }
        }
    }
    None
}

pub(crate) fn dedupe(matcher: &crate::Matcher, prepared: &[Prepared], threads: usize) -> Result<Dedupe, Error> {
    let config: &Config = matcher.config();
    let limits = &config.limits;
    let threads = threads.clamp(1, THREADS_MAX);
    let n = prepared.len();
    let mut stats = DedupeStats { records: n as u64, all_pairs: (n as u64) * (n as u64).saturating_sub(1) / 2, ..DedupeStats::default() };

    let key_lists: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = prepared
            .chunks(chunks_of(n, threads))
            .map(|chunk| s.spawn(move || chunk.iter().map(|p| keys(p, limits.blocking_keys_max)).collect::<Vec<_>>()))
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(h.join().map_err(|_| Error::Internal("a blocking thread panicked"))?);
        }
        Ok::<_, Error>(all)
    })?;
    // Key ids in order of first appearance: deterministic for a given input.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut record_keys: Vec<Vec<u32>> = Vec::with_capacity(n);
    for list in &key_lists {
        let mut mine: Vec<u32> = list
            .iter()
            .map(|k| {
                let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                *ids.entry(k.as_str()).or_insert(next)
            })
            .collect();
        mine.sort_unstable();
        mine.dedup();
        record_keys.push(mine);
    }
    let key_count = ids.len();
    drop(ids);
    stats.keys = key_count as u64;
    // Blocks as one flat array: members of key k are members[start[k]..start[k + 1]], ascending.
    let mut start = vec![0usize; key_count + 1];
    for ks in &record_keys {
        for &k in ks {
            start[k as usize + 1] += 1;
        }
    }
    for k in 0..key_count {
        start[k + 1] += start[k];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; start[key_count]];
    for (r, ks) in record_keys.iter().enumerate() {
        for &k in ks {
            members[fill[k as usize]] = r as u32;
            fill[k as usize] += 1;
        }
    }
    let mut oversized = vec![false; key_count];
    let mut blocks: Vec<u32> = Vec::new();
    let mut pairs_bound: u64 = 0;
    for k in 0..key_count {
        let size = (start[k + 1] - start[k]) as u64;
        if size < 2 {
            continue;
        }
        stats.blocks += 1;
        if size as usize > limits.block_size_max {
            oversized[k] = true;
            stats.blocks_oversized += 1;
            stats.pairs_in_oversized_blocks += size * (size - 1) / 2;
        } else {
            pairs_bound += size * (size - 1) / 2;
            blocks.push(k as u32);
        }
    }
    if pairs_bound > limits.pairs_compared_max {
        return Err(Error::TooManyPairs { pairs: pairs_bound, max: limits.pairs_compared_max });
    }
    // Biggest blocks first, taken one at a time by whichever thread is free.
    blocks.sort_by_key(|&k| std::cmp::Reverse(start[k as usize + 1] - start[k as usize]));
    let next = AtomicUsize::new(0);
    let results: Vec<(Vec<Pair>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut found = Vec::new();
                    let mut compared = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&k) = blocks.get(i) else { break };
                        let block = &members[start[k as usize]..start[k as usize + 1]];
                        for (x, &a) in block.iter().enumerate() {
                            for &b in &block[x + 1..] {
                                if first_shared(&record_keys[a as usize], &record_keys[b as usize], &oversized) != Some(k) {
                                    continue;
                                }
                                compared += 1;
                                if let Some(comparison) = matcher.compare_candidates(&prepared[a as usize], &prepared[b as usize])
                                    && comparison.decision != Decision::NonMatch
                                {
                                    found.push(Pair { a: a as usize, b: b as usize, comparison });
                                }
                            }
                        }
                    }
                    (found, compared)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| Error::Internal("a comparison thread panicked"))).collect::<Result<Vec<_>, _>>()
    })?;
    let mut pairs: Vec<Pair> = Vec::new();
    for (found, compared) in results {
        stats.pairs_compared += compared;
        pairs.extend(found);
    }
    // At most candidates_max pairs per record, the best-scoring first.
    pairs.sort_by(|p, q| q.comparison.score.total_cmp(&p.comparison.score).then((p.a, p.b).cmp(&(q.a, q.b))));
    let mut per_record = vec![0usize; n];
    let before = pairs.len();
    pairs.retain(|p| {
        let keep = per_record[p.a] < limits.candidates_max && per_record[p.b] < limits.candidates_max;
        if keep {
            per_record[p.a] += 1;
            per_record[p.b] += 1;
        }
        keep
    });
    stats.pairs_over_candidates_max = (before - pairs.len()) as u64;
    pairs.sort_by_key(|p| (p.a, p.b));
    for p in &pairs {
        match p.comparison.decision {
            Decision::Match => stats.matches += 1,
            Decision::PossibleMatch => stats.possible_matches += 1,
            Decision::NonMatch => {}
        }
    }
    Ok(Dedupe { pairs, stats })
}
