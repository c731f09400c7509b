//! Codecs: every byte format Nacre reads from a peer or from its own disk.
//!
//! Every decoder returns `Result<_, DecodeError>` and never panics; each has a fuzz target.

pub mod frame;
pub mod peer;

pub use frame::{decode_frame, decode_msg, encode_frame, encode_msg, FRAME_HEADER_BYTES};
pub use peer::{
    ClientRequest, ClientResponse, NamingRequest, NamingResponse, PeerRequest, PeerResponse,
    Written,
};
