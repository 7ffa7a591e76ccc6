//! Registration: how a person gets an identity. Centres, machines and their staff; the packet
//! a registration client seals; the upload; the pipeline that validates, de-duplicates and
//! issues; adjudication of doubtful cases.

pub mod packet;
