//! Synthetic fingerprints (minutiae sets) with known ground truth, reproducible from a seed.
