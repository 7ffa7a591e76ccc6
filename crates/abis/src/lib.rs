//! Tessera's ABIS (automated biometric identification system) service: the encrypted gallery,
//! durable idempotent insert / identify / delete, MOSIP's ABIS API and its queue transport.

pub mod mosip;
pub mod stomp;
