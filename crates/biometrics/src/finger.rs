//! Finger matching: ISO/IEC 19794-2 minutiae compared by rotation- and translation-invariant geometry, fused over fingers.
