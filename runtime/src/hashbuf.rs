//! [`Buffered`]: a `Hasher` that gathers the bytes it is fed and hands
//! them to the hasher it wraps in few large writes. SipHash (std's
//! `DefaultHasher`, `siphasher`) hashes the byte stream whatever its
//! chunking, so the result is the one of the wrapped hasher fed directly,
//! but the dozen small writes of hashing a few strings and integers
//! (length prefixes, `0xff` string ends, `Option` discriminants) cost one
//! copy each instead of a call into the hasher's tail handling each.

use std::hash::Hasher;

/// Bytes gathered before they are passed on.
const CAPACITY: usize = 256;

/// See the module documentation. Only `write` is implemented, so every
/// other method writes the bytes the `Hasher` defaults define, the same
/// that SipHash's hashers see.
#[derive(Clone)]
pub struct Buffered<H: Hasher + Clone> {
    inner: H,
    len: usize,
    buf: [u8; CAPACITY],
}

impl<H: Hasher + Clone> Buffered<H> {
    pub fn new(inner: H) -> Buffered<H> {
        Buffered {
            inner,
            len: 0,
            buf: [0; CAPACITY],
        }
    }
}

impl<H: Hasher + Clone> Hasher for Buffered<H> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
            return;
        }
        self.inner.write(&self.buf[..self.len]);
        self.len = 0;
        if let Some(dst) = self.buf.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            self.inner.write(bytes);
        }
    }

    fn finish(&self) -> u64 {
        let mut inner = self.inner.clone();
        inner.write(&self.buf[..self.len]);
        inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{DefaultHasher, Hash};
    use std::net::SocketAddr;

    fn both<T: Hash>(v: &T) -> (u64, u64, u64, u64) {
        let mut direct = DefaultHasher::new();
        v.hash(&mut direct);
        let mut buffered = Buffered::new(DefaultHasher::new());
        v.hash(&mut buffered);
        let mut sip = siphasher::sip::SipHasher13::new_with_keys(7, 9);
        v.hash(&mut sip);
        let mut sip_buffered = Buffered::new(siphasher::sip::SipHasher13::new_with_keys(7, 9));
        v.hash(&mut sip_buffered);
        (
            direct.finish(),
            buffered.finish(),
            sip.finish(),
            sip_buffered.finish(),
        )
    }

    #[test]
    fn the_same_hash_as_the_wrapped_hasher() {
        let long = "x".repeat(700);
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let addr6: SocketAddr = "[2001:db8::1]:5061".parse().unwrap();
        let results = [
            both(&"sip:bob@example.com"),
            both(&Some("abc")),
            both(&None::<&str>),
            both(&(Some(17u32), None::<&str>, "x", 3u16, 9usize)),
            both(&Some(&b"bytes"[..])),
            both(&(Some(&7u8), &b"a longer slice of bytes"[..])),
            both(&(long.as_str(), 5u64, long.as_str())),
            both(&("stateless", 1u64, 2u32, 3u32, addr)),
            both(&("stateful", 1u16, 2u32, 3u32, 4usize, addr6)),
        ];
        for (a, b, c, d) in results {
            assert_eq!(a, b);
            assert_eq!(c, d);
        }
    }
}
