//! Stateless nonces: a nonce carries the time it was issued and an 8-byte
//! unpredictable salt, sealed with a keyed MAC over those and the realm, so any
//! instance holding the key can tell a nonce it (or a sibling) issued from
//! a forged one, and how old it is, without remembering anything.
//!
//! Layout, base64url without padding (43 characters):
//! `issued (u64 BE, unix seconds) || salt (8 bytes) || tag (16 bytes)`,
//! tag = HMAC-SHA256(key, "sipforge-nonce-1" || issued || salt || realm)
//! truncated to 16 bytes, compared in constant time. The salt comes from
//! a per-thread keyed PRF ([`fresh_salt`]), not a system call per nonce.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A nonce from the future by more than this many seconds is forged (the
/// margin allows for instances whose clocks differ slightly).
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;

const RAW_LEN: usize = 32;
const DOMAIN: &[u8] = b"sipforge-nonce-1";

/// The secret nonces are sealed with: at least 16 bytes.
#[derive(Clone)]
pub struct NonceKey(Box<[u8]>);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceKey({} bytes)", self.0.len())
    }
}

impl NonceKey {
    /// Minimum key length in bytes.
    pub const MIN_LEN: usize = 16;

    /// 32 bytes from the kernel's random source (`getrandom`), for a
    /// process whose nonces need not be understood by other instances.
    pub fn random() -> NonceKey {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes);
        NonceKey(Box::new(bytes))
    }

    /// A key from `b`; `None` when shorter than [`NonceKey::MIN_LEN`].
    pub fn from_bytes(b: &[u8]) -> Option<NonceKey> {
        (b.len() >= Self::MIN_LEN).then(|| NonceKey(b.into()))
    }

    /// The key in file `path` (the `secret:` setting): its content with
    /// leading and trailing whitespace removed, at least 16 bytes. The
    /// error names the file but never shows its content.
    pub fn load(path: &Path) -> Result<NonceKey, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read the nonce secret: {e}", path.display()))?;
        let trimmed = bytes.trim_ascii();
        NonceKey::from_bytes(trimmed).ok_or_else(|| {
            format!(
                "{}: the nonce secret is {} bytes, at least {} are needed",
                path.display(),
                trimmed.len(),
                Self::MIN_LEN
            )
        })
    }
}

/// What [`Signer::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ours and young enough. `tag` identifies the nonce (replay table key).
    Fresh { issued: u64, tag: [u8; 16] },
    /// Ours, but older than the TTL.
    Stale,
    /// Not ours: undecodable, wrong MAC (another key or realm), or issued
    /// in the future.
    Forged,
}

/// Issues and verifies nonces with one key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    pub fn new(key: &NonceKey) -> Signer {
        // HMAC takes keys of any length; the fallback is unreachable.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        Signer { mac }
    }

    fn tag(&self, realm: &str, issued: &[u8], salt: &[u8]) -> [u8; 16] {
        let mut m = self.mac.clone();
        m.update(DOMAIN);
        m.update(issued);
        m.update(salt);
        m.update(realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// A new nonce for `realm`, issued at `now` (unix seconds).
    pub fn issue(&self, realm: &str, now: u64) -> String {
        self.issue_with_salt(realm, now, fresh_salt())
    }

    /// [`Signer::issue`] with a given salt (tests).
    pub fn issue_with_salt(&self, realm: &str, now: u64, salt: [u8; 8]) -> String {
        let issued = now.to_be_bytes();
        let tag = self.tag(realm, &issued, &salt);
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&issued);
        raw[8..16].copy_from_slice(&salt);
        raw[16..].copy_from_slice(&tag);
        base64url_encode(&raw)
    }

    /// Check `nonce` for `realm` at `now` against a lifetime of `ttl` seconds.
    pub fn verify(&self, realm: &str, nonce: &str, now: u64, ttl: u64) -> Verdict {
        let Some(raw) = base64url_decode::<RAW_LEN>(nonce) else {
            return Verdict::Forged;
        };
        let (issued, rest) = raw.split_at(8);
        let (salt, tag) = rest.split_at(8);
        let want = self.tag(realm, issued, salt);
        if !bool::from(want.ct_eq(tag)) {
            return Verdict::Forged;
        }
        let mut be = [0u8; 8];
        be.copy_from_slice(issued);
        let issued = u64::from_be_bytes(be);
        if issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Verdict::Forged;
        }
        if now.saturating_sub(issued) > ttl {
            return Verdict::Stale;
        }
        Verdict::Fresh { issued, tag: want }
    }
}

/// A salt for a new nonce: SipHash-2-4, keyed once per thread with 16
/// bytes from `getrandom`, of the thread's count of nonces issued. The
/// salts are as unpredictable as the key and distinct as long as 64-bit
/// values of a keyed PRF do not collide, as random salts would be, and
/// issuing a 407/401 costs no system call (it cost one `getrandom` each).
fn fresh_salt() -> [u8; 8] {
    use std::cell::Cell;
    use std::hash::Hasher;
    thread_local! {
        static SALTS: (siphasher::sip::SipHasher24, Cell<u64>) = {
            let mut key = [0u8; 16];
            random_bytes(&mut key);
            let (k0, k1) = key.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            (
                siphasher::sip::SipHasher24::new_with_keys(word(k0), word(k1)),
                Cell::new(0),
            )
        };
    }
    SALTS.with(|(keyed, count)| {
        let n = count.get();
        count.set(n.wrapping_add(1));
        let mut h = *keyed;
        h.write_u64(n);
        h.finish().to_le_bytes()
    })
}

/// Fill `buf` from `getrandom`; should the kernel refuse, fall back to a
/// process counter mixed through a randomly keyed hasher (unique, if not
/// unpredictable: the salt only has to make nonces distinct).
fn random_bytes(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).ok() == Some(buf.len()) {
        return;
    }
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    for (k, chunk) in buf.chunks_mut(8).enumerate() {
        let word = state.hash_one((COUNTER.fetch_add(1, Ordering::Relaxed), k));
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

/// Decode exactly `N` bytes of unpadded base64url; `None` for anything else
/// (wrong length, stray characters, non-zero trailing bits).
fn base64url_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let want_len = N / 3 * 4 + [0, 2, 3][N % 3];
    if s.len() != want_len {
        return None;
    }
    let mut out = [0u8; N];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut at = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (at == N && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_differ_within_and_across_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(fresh_salt()));
        }
        let others: Vec<[u8; 8]> =
            std::thread::spawn(|| (0..10_000).map(|_| fresh_salt()).collect())
                .join()
                .unwrap();
        for s in others {
            assert!(seen.insert(s));
        }
        let a = signer().issue("r", 5);
        let b = signer().issue("r", 5);
        assert_ne!(a, b, "same second, same realm: distinct nonces");
    }

    fn signer() -> Signer {
        Signer::new(&NonceKey::from_bytes(b"0123456789abcdef").unwrap())
    }

    #[test]
    fn base64url_round_trip() {
        let raw: [u8; 32] = std::array::from_fn(|k| (k * 37 + 5) as u8);
        let s = base64url_encode(&raw);
        assert_eq!(s.len(), 43);
        assert_eq!(base64url_decode::<32>(&s), Some(raw));
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(base64url_decode::<2>("-_8"), Some(*b"\xfb\xff"));
        assert_eq!(base64url_decode::<2>("-_9"), None); // trailing bits
        assert_eq!(base64url_decode::<2>("-_"), None);
        assert_eq!(base64url_decode::<2>("-_8="), None);
        assert_eq!(base64url_decode::<2>("+/8"), None);
    }

    #[test]
    fn issue_and_verify() {
        let s = signer();
        let n = s.issue("example.com", 1_000_000);
        assert_eq!(n.len(), 43);
        assert!(matches!(
            s.verify("example.com", &n, 1_000_000, 300),
            Verdict::Fresh {
                issued: 1_000_000,
                ..
            }
        ));
        assert!(matches!(
            s.verify("example.com", &n, 1_000_300, 300),
            Verdict::Fresh { .. }
        ));
        assert_eq!(s.verify("example.com", &n, 1_000_301, 300), Verdict::Stale);
        assert_eq!(s.verify("example.org", &n, 1_000_000, 300), Verdict::Forged);
        // From the future: tolerated up to the skew margin.
        assert!(matches!(
            s.verify("example.com", &n, 1_000_000 - 30, 300),
            Verdict::Fresh { .. }
        ));
        assert_eq!(
            s.verify("example.com", &n, 1_000_000 - 31, 300),
            Verdict::Forged
        );
        // Another key.
        let other = Signer::new(&NonceKey::from_bytes(b"0123456789abcdeX").unwrap());
        assert_eq!(
            other.verify("example.com", &n, 1_000_000, 300),
            Verdict::Forged
        );
        // Every single-character change is caught.
        for at in 0..n.len() {
            let mut m = n.clone().into_bytes();
            m[at] = if m[at] == b'A' { b'B' } else { b'A' };
            let m = String::from_utf8(m).unwrap();
            assert_eq!(s.verify("example.com", &m, 1_000_000, 300), Verdict::Forged);
        }
        assert_eq!(s.verify("example.com", "", 1_000_000, 300), Verdict::Forged);
        assert_eq!(
            s.verify("example.com", "é", 1_000_000, 300),
            Verdict::Forged
        );
        // Two nonces issued in the same second differ.
        assert_ne!(n, s.issue("example.com", 1_000_000));
    }

    #[test]
    fn keys() {
        assert!(NonceKey::from_bytes(&[7; 15]).is_none());
        assert!(NonceKey::from_bytes(&[7; 16]).is_some());
        let dir = std::env::temp_dir().join(format!("sipforge-nonce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "  0123456789abcdef\n").unwrap();
        let k = NonceKey::load(&good).unwrap();
        assert_eq!(&*k.0, b"0123456789abcdef");
        assert_eq!(format!("{k:?}"), "NonceKey(16 bytes)");
        let short = dir.join("short");
        std::fs::write(&short, "tooshort-secret\n").unwrap();
        let e = NonceKey::load(&short).unwrap_err();
        assert!(e.contains("short") && e.contains("15 bytes"), "{e}");
        assert!(!e.contains("tooshort"), "{e}");
        let e = NonceKey::load(&dir.join("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(&*NonceKey::random().0, &*NonceKey::random().0);
    }
}
