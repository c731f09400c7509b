//! What goes through the Raft log, and what applying it returns.
//!
//! A `Command` carries the leader-side wall-clock time (`now_ms`) at which it was proposed, so
//! every replica stamps configs with the same created/modified times: the state machine itself
//! never reads a clock (STYLE 2).

use serde::{Deserialize, Serialize};

use crate::config::{ConfigApplied, ConfigCommand};
use crate::namespace::{NamespaceApplied, NamespaceCommand};
use crate::naming::persistent::{NamingApplied, NamingCommand};

/// One replicated command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Wall-clock milliseconds at the proposing node.
    pub now_ms: u64,
    /// The operation.
    pub op: Op,
}

/// The operations of the CP state machine.
// Commands are moved once into the log; boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A config publish or remove.
    Config(ConfigCommand),
    /// Drop config history older than `retention_ms` before `now_ms`.
    PurgeHistory { retention_ms: u64 },
    /// A change of service metadata or persistent instances.
    Naming(NamingCommand),
    /// A change of the custom namespaces.
    Namespace(NamespaceCommand),
    /// Config commands proposed together (group commit, `cp_node`): applied in order, each
    /// with its own time, as if each were its own entry at this index. Only config commands,
    /// of distinct keys, so every key's revision still moves by one per entry. Not recursive,
    /// so a decoder never nests.
    Batch(Vec<BatchedConfig>),
}

/// One config command of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedConfig {
    /// Wall-clock milliseconds at the member that proposed it.
    pub now_ms: u64,
    pub command: ConfigCommand,
}

impl BatchedConfig {
    /// The command as it would have been proposed alone.
    pub fn to_command(&self) -> Command {
        Command {
            now_ms: self.now_ms,
            op: Op::Config(self.command.clone()),
        }
    }
}

/// The result of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Blank and membership entries.
    None,
    /// A config command's outcome.
    Config(ConfigApplied),
    /// History rows dropped.
    Purged { rows: u64 },
    /// A naming command's outcome.
    Naming(NamingApplied),
    /// A namespace command's outcome.
    Namespace(NamespaceApplied),
    /// The outcome of each command of a `Op::Batch`, in order.
    Batch(Vec<ConfigApplied>),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.op)
    }
}
