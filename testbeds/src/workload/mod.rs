//! The sample workload (`lifeline workload`): a service writing checksummed,
//! timestamped records to its volume, its HTTP API, its durability log, and the
//! checker that measures a recovery's data loss from the application's side.

pub mod checker;
pub mod durability_log;
pub mod http;
pub mod record;
pub mod service;
