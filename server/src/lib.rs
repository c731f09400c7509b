//! The `nacre` server as a library: the adapters around the engine (HTTP and gRPC APIs, the
//! TCP peer transport, file storage, settings and membership) that `main.rs` wires into one
//! member. A library so that the fuzz targets can drive the same decoders the binary uses.

pub mod grpc;
pub mod http;
pub mod http_console;
pub mod http_naming;
pub mod http_v2;
pub mod limits;
pub mod membership;
pub mod peer;
pub mod properties;
pub mod settings;
pub mod storage;

use nacre_engine::ports::Clock;

/// The system wall clock, the engine's only source of time in production.
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place the server reads the wall clock: the engine gets time through this port.
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}
