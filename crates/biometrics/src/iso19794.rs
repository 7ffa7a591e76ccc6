//! ISO/IEC 19794 biometric data records: finger minutiae (-2), finger image (-4), face image (-5), iris image (-6).
