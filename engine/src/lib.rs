//! Nacre engine: every decision of a Nacre member, with no sockets, files, ambient clock or
//! ambient randomness. The server drives it with real I/O through the `ports`; the simulator
//! drives it with simulated I/O.

pub mod bugs;
pub mod config;
pub mod constants;
pub mod coverage;
pub mod cp_node;
pub mod digest;
pub mod error;
pub mod ids;
pub mod member;
pub mod namespace;
pub mod naming;
pub mod ports;
pub mod raft;
pub mod vec_map;
pub mod wire;
