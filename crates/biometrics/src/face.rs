//! Face matching: fixed-length embeddings compared by cosine similarity; int8-quantized 1:N gallery with exact f32 re-ranking.
