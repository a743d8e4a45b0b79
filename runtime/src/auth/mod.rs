//! SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760) for the
//! `authenticate` step of the routes: checking the Authorization /
//! Proxy-Authorization headers of a request against a credentials file,
//! and building the challenges to send when they do not do.
//!
//! Sans-IO: no sockets and no clock; the caller passes the time as unix
//! seconds. One [`Authenticator`] is shared by every worker thread.
//!
//! - [`digest`]: parse header values, compute and verify responses.
//! - [`nonce`]: stateless nonces (keyed MAC of issue time and realm).
//! - [`credentials`]: the htdigest-format credentials file.
//! - [`replay`]: the nonce-count table against replays.
//!
//! The caller decides which requests to authenticate: ACK and CANCEL must
//! always pass without a check (they cannot be challenged: an ACK has no
//! response, and a CANCEL must match the INVITE hop by hop, RFC 3261
//! §22.1), and the realm and expected user (To user for REGISTER, From
//! user otherwise) come from the routes.

pub mod credentials;
pub mod digest;
pub mod nonce;
pub mod replay;

use std::sync::{Arc, PoisonError, RwLock};

use subtle::ConstantTimeEq;

pub use credentials::Credentials;
pub use digest::username_of;
pub use nonce::NonceKey;

use digest::DigestResponse;
use nonce::{Signer, Verdict};
use replay::ReplayTable;

/// A digest hash algorithm we support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The name in the `algorithm` parameter: `MD5`, `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm` value, case-insensitively. The `-sess` variants
    /// (and SHA-512-256) are not supported: `None`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
    }
}

/// Settings the runtime passes in (built from the routes file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Challenge order; only these are accepted. Empty means the default,
    /// `[SHA-256, MD5]`; repeats are dropped.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh, in seconds.
    pub nonce_ttl_secs: u64,
}

impl Default for AuthConfig {
    /// `algorithms: [SHA-256, MD5]`, `nonce_ttl: 300s`.
    fn default() -> AuthConfig {
        AuthConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_ttl_secs: 300,
        }
    }
}

impl AuthConfig {
    /// The settings of a routes file's `auth:` block (what the binary
    /// runs with; tests with in-process proxies use it too).
    pub fn from_settings(auth: &crate::api::AuthSettings) -> AuthConfig {
        AuthConfig {
            algorithms: auth
                .algorithms
                .iter()
                .map(|a| match a {
                    crate::api::DigestAlgorithm::Md5 => Algorithm::Md5,
                    crate::api::DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
            nonce_ttl_secs: auth.nonce_ttl_ms.div_ceil(1000).max(1),
        }
    }
}

/// Why a check did not succeed (or `None` when it did): for logs and
/// metrics labels. Never sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    NoCredentials,
    Malformed,
    UnknownUser,
    WrongPassword,
    StaleNonce,
    ForgedNonce,
    Replayed,
    WrongRealm,
    UnsupportedAlgorithm,
    UserMismatch,
    None,
}

impl Failure {
    /// snake_case name, for metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            Failure::NoCredentials => "no_credentials",
            Failure::Malformed => "malformed",
            Failure::UnknownUser => "unknown_user",
            Failure::WrongPassword => "wrong_password",
            Failure::StaleNonce => "stale_nonce",
            Failure::ForgedNonce => "forged_nonce",
            Failure::Replayed => "replayed",
            Failure::WrongRealm => "wrong_realm",
            Failure::UnsupportedAlgorithm => "unsupported_algorithm",
            Failure::UserMismatch => "user_mismatch",
            Failure::None => "none",
        }
    }
}

/// What [`Authenticator::check`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `INVITE`, `REGISTER`, ... (never ACK or CANCEL: see the module doc).
    pub method: &'a str,
    /// The realm the routes chose.
    pub realm: &'a str,
    /// To user for REGISTER, From user otherwise.
    pub expected_user: &'a str,
    /// The values of every Authorization (REGISTER) or Proxy-Authorization
    /// (other methods) header, in order.
    pub credentials: &'a [&'a str],
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as `user` (== expected user). `header_index`: which of
    /// `Request::credentials` was used; the runtime removes that header
    /// before forwarding.
    Ok { user: String, header_index: usize },
    /// Send 401 (REGISTER, WWW-Authenticate) or 407 (Proxy-Authenticate)
    /// with [`Authenticator::challenges`]`(realm, stale, now)`.
    Challenge { stale: bool, reason: Failure },
    /// 403: valid credentials, but for a user other than the expected one.
    Forbidden { user: String, reason: Failure },
}

impl Outcome {
    /// The failure reason (`Failure::None` for `Ok`).
    pub fn reason(&self) -> Failure {
        match self {
            Outcome::Ok { .. } => Failure::None,
            Outcome::Challenge { reason, .. } | Outcome::Forbidden { reason, .. } => *reason,
        }
    }
}

/// How to challenge a request of `method`: REGISTER gets
/// `401 Unauthorized` with WWW-Authenticate (its credentials come in
/// Authorization); other methods `407 Proxy Authentication Required` with
/// Proxy-Authenticate (credentials in Proxy-Authorization), RFC 3261 §22.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeKind {
    pub status: u16,
    pub reason_phrase: &'static str,
    /// The header carrying [`Authenticator::challenges`].
    pub challenge_header: &'static str,
    /// The header the client answers in ([`Request::credentials`]).
    pub credentials_header: &'static str,
}

impl ChallengeKind {
    pub fn for_method(method: &str) -> ChallengeKind {
        if method.eq_ignore_ascii_case("REGISTER") {
            ChallengeKind {
                status: 401,
                reason_phrase: "Unauthorized",
                challenge_header: "WWW-Authenticate",
                credentials_header: "Authorization",
            }
        } else {
            ChallengeKind {
                status: 407,
                reason_phrase: "Proxy Authentication Required",
                challenge_header: "Proxy-Authenticate",
                credentials_header: "Proxy-Authorization",
            }
        }
    }
}

/// One challenge value: `Digest realm=REALM, nonce="NONCE", qop="auth",
/// algorithm=ALG[, stale=true]` (`quoted_realm` quoted already).
fn push_challenge(out: &mut Vec<u8>, quoted_realm: &str, nonce: &str, a: Algorithm, stale: bool) {
    out.extend_from_slice(b"Digest realm=");
    out.extend_from_slice(quoted_realm.as_bytes());
    out.extend_from_slice(b", nonce=\"");
    out.extend_from_slice(nonce.as_bytes());
    out.extend_from_slice(b"\", qop=\"auth\", algorithm=");
    out.extend_from_slice(a.name().as_bytes());
    if stale {
        out.extend_from_slice(b", stale=true");
    }
}

fn challenge(stale: bool, reason: Failure) -> Outcome {
    Outcome::Challenge { stale, reason }
}

/// Everything `authenticate` needs; shared by every worker thread.
#[derive(Debug)]
pub struct Authenticator {
    algorithms: Vec<Algorithm>,
    ttl: u64,
    signer: Signer,
    credentials: RwLock<Arc<Credentials>>,
    replay: ReplayTable,
}

impl Authenticator {
    pub fn new(config: AuthConfig, key: NonceKey, credentials: Credentials) -> Authenticator {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for a in config.algorithms {
            if !algorithms.contains(&a) {
                algorithms.push(a);
            }
        }
        if algorithms.is_empty() {
            algorithms = AuthConfig::default().algorithms;
        }
        Authenticator {
            algorithms,
            ttl: config.nonce_ttl_secs,
            signer: Signer::new(&key),
            credentials: RwLock::new(Arc::new(credentials)),
            replay: ReplayTable::new(replay::DEFAULT_CAPACITY),
        }
    }

    /// Swap in a new credentials file (SIGHUP); checks in flight keep the
    /// old one.
    pub fn replace_credentials(&self, c: Credentials) {
        let mut guard = self
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *guard = Arc::new(c);
    }

    /// The number of HA1s loaded.
    pub fn credentials_count(&self) -> usize {
        self.current().len()
    }

    /// The algorithms challenged with, in order.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    fn current(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Challenge header values (without the header name), one per
    /// configured algorithm, in order, sharing one fresh nonce:
    /// `Digest realm="…", nonce="…", qop="auth", algorithm=SHA-256[, stale=true]`.
    /// Control characters in `realm` are dropped (they cannot be sent; the
    /// caller should not pass them).
    pub fn challenges(&self, realm: &str, stale: bool, now_unix: u64) -> Vec<String> {
        let nonce = self.signer.issue(realm, now_unix);
        let realm = digest::quote(realm);
        self.algorithms
            .iter()
            .map(|a| {
                let mut value = Vec::new();
                push_challenge(&mut value, &realm, &nonce, *a, stale);
                String::from_utf8(value).unwrap_or_default()
            })
            .collect()
    }

    /// [`Authenticator::challenges`] written as header lines into `out`:
    /// `NAME: VALUE\r\n` for each (no String per challenge).
    pub fn write_challenges(
        &self,
        header: &str,
        realm: &str,
        stale: bool,
        now_unix: u64,
        out: &mut Vec<u8>,
    ) {
        let nonce = self.signer.issue(realm, now_unix);
        let realm = digest::quote(realm);
        for a in &self.algorithms {
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(b": ");
            push_challenge(out, &realm, &nonce, *a, stale);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Check the credentials of `req` at `now_unix`.
    ///
    /// The first `Digest` header whose realm equals `req.realm` exactly is
    /// used; then, in order: its fields (Malformed), algorithm and qop
    /// (UnsupportedAlgorithm), nonce (ForgedNonce; StaleNonce only once the
    /// response proves the password), user and response (UnknownUser and
    /// WrongPassword, indistinguishable to the client), nonce count
    /// (Replayed), and last the user (Forbidden).
    ///
    /// Never call it for ACK or CANCEL: those must pass unchecked.
    pub fn check(&self, req: &Request<'_>, now_unix: u64) -> Outcome {
        let mut other_realm = false;
        let mut malformed = false;
        for (index, value) in req.credentials.iter().enumerate() {
            let Some(rest) = digest::digest_params(value) else {
                continue;
            };
            let Ok(params) = digest::parse_params(rest) else {
                malformed = true;
                continue;
            };
            match digest::param(&params, "realm") {
                Some(realm) if realm == req.realm => {
                    return match DigestResponse::from_params(&params) {
                        Ok(d) => self.check_digest(req, &d, index, now_unix),
                        Err(reason) => challenge(false, reason),
                    };
                }
                Some(_) => other_realm = true,
                None => malformed = true,
            }
        }
        let reason = if other_realm {
            Failure::WrongRealm
        } else if malformed {
            Failure::Malformed
        } else {
            Failure::NoCredentials
        };
        challenge(false, reason)
    }

    fn check_digest(
        &self,
        req: &Request<'_>,
        d: &DigestResponse<'_>,
        index: usize,
        now: u64,
    ) -> Outcome {
        if !self.algorithms.contains(&d.algorithm) {
            return challenge(false, Failure::UnsupportedAlgorithm);
        }
        let fresh = match self.signer.verify(req.realm, d.nonce, now, self.ttl) {
            Verdict::Forged => return challenge(false, Failure::ForgedNonce),
            Verdict::Stale => None,
            Verdict::Fresh { issued, tag } => Some((issued, tag)),
        };
        let creds = self.current();
        let ha1 = creds.ha1(d.username, req.realm, d.algorithm);
        // `uri` is deliberately not compared with the Request-URI: proxies
        // and NATs rewrite the Request-URI on the way (Kamailio checks it
        // just as loosely); it still enters the hash, so it cannot be
        // changed without the password.
        let qop = d.qop.map(|q| (q.qop, q.nc_text, q.cnonce));
        // An unknown user costs the same work as a wrong password.
        let dummy = [b'0'; 64];
        let ha1_or_dummy = ha1.unwrap_or(&dummy[..2 * d.algorithm.output_len()]);
        let expected = digest::response(d.algorithm, ha1_or_dummy, d.nonce, qop, req.method, d.uri);
        let mut got = [0u8; 64];
        let got = &mut got[..d.response.len()];
        got.copy_from_slice(d.response.as_bytes());
        got.make_ascii_lowercase();
        let matches = bool::from(expected.as_bytes().ct_eq(got));
        if ha1.is_none() {
            return challenge(false, Failure::UnknownUser);
        }
        if !matches {
            return challenge(false, Failure::WrongPassword);
        }
        let Some((issued, tag)) = fresh else {
            return challenge(true, Failure::StaleNonce);
        };
        // Without qop (RFC 2069 clients) there is no nonce count: such
        // clients reuse a nonce for many requests, so they are accepted
        // without replay protection for the nonce's lifetime.
        if let Some(q) = d.qop
            && !self
                .replay
                .check_and_record(tag, issued, q.nc, now, self.ttl)
        {
            // A replay, or an honest client whose request was duplicated or
            // whose nonce was evicted: a fresh challenge with stale=true
            // lets an honest client retry without asking its user again,
            // and gives an attacker nothing.
            return challenge(true, Failure::Replayed);
        }
        if d.username != req.expected_user {
            return Outcome::Forbidden {
                user: d.username.to_string(),
                reason: Failure::UserMismatch,
            };
        }
        Outcome::Ok {
            user: d.username.to_string(),
            header_index: index,
        }
    }
}

#[cfg(test)]
mod tests;
