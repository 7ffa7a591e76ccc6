//! CBEFF (ISO/IEC 19785-3) XML biometric information records, as MOSIP uses them: parse and emit.
