//! The one binary frame used on the peer wire and in the on-disk journal and snapshot.
//!
//! Layout (little endian): `b"NC"` magic, version `u8` (= 1), reserved `u8` (= 0), body
//! length `u32`, CRC-32 of the body `u32`, then the body (postcard). The length is capped at
//! `FRAME_BYTES_MAX` before anything is allocated, and the checksum is verified before the
//! body is decoded, so a torn or corrupted frame is an error, never a panic or a wrong value
//! (DESIGN §3 "Peer wire format").

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::constants::FRAME_BYTES_MAX;
use crate::error::DecodeError;

const MAGIC: [u8; 2] = *b"NC";
const VERSION: u8 = 1;
/// Bytes before the body.
pub const FRAME_HEADER_BYTES: usize = 12;

/// Wraps `body` in a frame. Panics if the body exceeds the frame limit: callers bound their
/// payloads first (snapshots are chunked, batches are capped).
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= FRAME_BYTES_MAX, "frame body over the limit");
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    let len = u32::try_from(body.len()).expect("bounded by FRAME_BYTES_MAX");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one frame from the front of `buf`: the body and the number of bytes consumed.
/// `Truncated` means more bytes may complete it (a stream reader waits, a journal reader treats
/// it as a torn tail).
pub fn decode_frame(buf: &[u8]) -> Result<(&[u8], usize), DecodeError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            need: FRAME_HEADER_BYTES,
            have: buf.len(),
        });
    }
    if buf[0..2] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if buf[2] != VERSION {
        return Err(DecodeError::Version(buf[2]));
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let end = FRAME_HEADER_BYTES + len;
    if buf.len() < end {
        return Err(DecodeError::Truncated {
            need: end,
            have: buf.len(),
        });
    }
    let body = &buf[FRAME_HEADER_BYTES..end];
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Checksum);
    }
    Ok((body, end))
}

/// Encodes a value as postcard inside a frame.
pub fn encode_msg<T: Serialize>(value: &T) -> Vec<u8> {
    let body = postcard::to_allocvec(value).expect("postcard encoding of owned data cannot fail");
    encode_frame(&body)
}

/// Decodes one framed postcard value from the front of `buf`.
pub fn decode_msg<T: DeserializeOwned>(buf: &[u8]) -> Result<(T, usize), DecodeError> {
    let (body, used) = decode_frame(buf)?;
    let value = postcard::from_bytes(body).map_err(|e| DecodeError::Body(e.to_string()))?;
    Ok((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_msg(&(7u64, String::from("héllo")));
        let (v, used): ((u64, String), usize) = decode_msg(&bytes).expect("valid frame");
        assert_eq!(v, (7, "héllo".to_string()));
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        let bytes = encode_msg(&vec![1u32, 2, 3]);
        for cut in 0..bytes.len() {
            let err = decode_frame(&bytes[..cut]).expect_err("prefix must not decode");
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn a_flipped_body_bit_is_a_checksum_error() {
        let mut bytes = encode_msg(&String::from("payload"));
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert_eq!(
            decode_frame(&bytes).expect_err("corrupt"),
            DecodeError::Checksum
        );
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut bytes = encode_frame(b"x");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame(&bytes),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = encode_frame(b"x");
        bytes[0] = b'X';
        assert_eq!(decode_frame(&bytes), Err(DecodeError::Magic));
        let mut bytes = encode_frame(b"x");
        bytes[2] = 9;
        assert_eq!(decode_frame(&bytes), Err(DecodeError::Version(9)));
    }
}
