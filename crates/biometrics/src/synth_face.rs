//! Synthetic face embeddings with known ground truth, reproducible from a seed.
