//! Nacre's single Raft group: types, storage, network and (under `cfg(madsim)`) the runtime.

pub mod batcher;
pub mod command;
pub mod journal;
pub mod log_store;
pub mod network;
#[cfg(madsim)]
pub mod runtime_sim;
pub mod state_machine;
pub mod type_config;
