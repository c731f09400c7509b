//! The three kinds of failure (STYLE 5).
//!
//! - `Reject`: an expected refusal of a request (bad parameter, no leader, CAS mismatch). It is
//!   mapped to a Nacos code in exactly one place, `Reject::nacos_code`.
//! - `Fatal`: the environment failed (fsync error, corrupt file); the node stops cleanly.
//! - `DecodeError`: a decoder met bytes it cannot accept; never a panic.
//!
//! Bugs are neither: they panic through `assert!`/`expect`.

use serde::{Deserialize, Serialize};

/// An expected refusal of a request, carried back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Reject {
    /// A request parameter is missing or invalid; the message is Nacos's wording.
    #[error("{0}")]
    InvalidParam(String),
    /// No leader was known within the bounded wait.
    #[error("no leader within {waited_ms} ms")]
    NoLeader { waited_ms: u64 },
    /// A compare-and-swap publish found another md5.
    #[error("Cas publish fail, server md5 may have changed.")]
    CasMismatch,
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A bound was reached (queue, payload, listeners); the message names it.
    #[error("{0}")]
    Overloaded(String),
    /// The request did not complete within its deadline; it may or may not take effect.
    #[error("timeout after {0} ms")]
    Timeout(u64),
    /// The node is shutting down or has stopped.
    #[error("node unavailable: {0}")]
    Unavailable(String),
}

impl Reject {
    /// The one mapping from a rejection to a Nacos HTTP status / gRPC error code.
    pub fn nacos_code(&self) -> u16 {
        match self {
            Reject::InvalidParam(_) => 400,
            Reject::NotFound(_) => 404,
            Reject::CasMismatch => 500,
            Reject::NoLeader { .. } | Reject::Unavailable(_) => 503,
            Reject::Overloaded(_) => 503,
            Reject::Timeout(_) => 500,
        }
    }
}

/// An environment failure that stops the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("disk i/o failed: {0}")]
    Io(String),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("bad magic")]
    Magic,
    #[error("checksum mismatch")]
    Checksum,
    #[error("malformed body: {0}")]
    Body(String),
}
