//! The stream framer of SIP over TCP/TLS (`net::framing`, RFC 3261 §18.3)
//! fed arbitrary bytes in arbitrary chunks, with a small size limit.
//!
//! Checks:
//! - no panic;
//! - the frames do not depend on how the stream was cut: feeding the same
//!   bytes at once gives the same frames, and the same error if any;
//! - no message over the limit, and after the frames are taken no more
//!   than the limit stays buffered (nothing beyond it is ever kept for a
//!   message that cannot be complete);
//! - an error is final: the framer answers it again and buffers nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sipforge_runtime::net::framing::{Frame, FrameError, Framer};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The size limit: 16 to 16 KiB.
    max: u16,
    chunks: Vec<Vec<u8>>,
}

/// Everything the framer gives for `chunks` fed in turn (and drained
/// after each), with the error that ended it, if one did.
fn frames(max: usize, chunks: &[&[u8]]) -> (Vec<Frame>, Option<FrameError>) {
    let mut framer = Framer::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    if let Frame::Message(m) = &frame {
                        assert!(
                            m.len() <= max,
                            "a message of {} bytes, limit {max}",
                            m.len()
                        );
                    }
                    out.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    framer.push(b"INVITE sip:x SIP/2.0\r\n\r\n");
                    assert_eq!(framer.next_frame(), Err(e), "an error is final");
                    assert_eq!(framer.buffered(), 0, "nothing is kept after an error");
                    return (out, Some(e));
                }
            }
        }
        assert!(
            framer.buffered() <= max,
            "{} bytes buffered after the frames were taken, limit {max}",
            framer.buffered()
        );
    }
    (out, None)
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max % 16_384).max(16);
    let chunks: Vec<&[u8]> = input.chunks.iter().take(64).map(Vec::as_slice).collect();
    let whole: Vec<u8> = chunks.concat();
    let (cut, cut_error) = frames(max, &chunks);
    let (at_once, once_error) = frames(max, &[&whole]);
    assert_eq!(
        cut_error, once_error,
        "the same error however the stream is cut"
    );
    assert_eq!(cut, at_once, "the same frames however the stream is cut");
});
