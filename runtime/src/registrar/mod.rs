//! The registrar and location service (RFC 3261 §10.3, RFC 3327 Path,
//! RFC 5626 `+sip.instance`/`reg-id`), sans-IO: no sockets and no clock
//! (the caller passes the time as unix seconds), no logging.
//!
//! The routes' `- save` step is, in order:
//!
//! 1. [`parse_register`]: the REGISTER as a [`RegisterRequest`] (address-of-
//!    record, Call-ID/CSeq, the contact changes after the expiry rules,
//!    Path, the source), or the [`Refusal`] to answer (400, 423);
//! 2. [`apply`] under the AoR's lock ([`MemoryStore::update`], or
//!    [`Store::register`] / [`AsyncStore::register`], which do both):
//!    the new bindings, or the refusal (403 over `max_contacts`, 500 for
//!    an out-of-order CSeq);
//! 3. answer 200 with [`ok_headers`] (every current binding with its
//!    remaining seconds, Path when the UA supports it, Date).
//!
//! `- lookup` is [`targets`] of the Request-URI's AoR ([`aor_of`]), and
//! `registered` is whether that list is non-empty ([`lookup`] and
//! [`is_registered`] with a [`Store`]; with an [`AsyncStore`], `lookup` the
//! canonical AoR and take [`targets`] of the answer).
//!
//! Sending to a binding: the Request-URI becomes [`Binding::contact`];
//! when [`Binding::path`] is non-empty it is the Route set (pre-loaded, in
//! order) and the request follows it; otherwise the request goes to
//! [`Binding::received`] (the transport and source address of the
//! REGISTER, where the NAT binding or the TCP/TLS/WS connection is), not
//! to the host of the Contact URI.
//!
//! - [`aor`]: the canonical address-of-record and URI comparison (§19.1.4).
//! - [`request`]: reading a REGISTER with the [`crate::sip`] message view.
//! - [`binding`]: the bindings of one AoR and the §10.3 update rules.
//! - [`store`]: storage behind a trait; the in-memory, sharded store.
//! - [`redis_store`]: the store several instances share (Redis/Valkey).

pub mod aor;
pub mod binding;
pub mod redis_store;
pub mod request;
pub mod store;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use crate::transport::Transport;

pub use aor::{aor_of, uri_equal};
pub use binding::{Binding, apply, contact_lines, http_date, ok_headers, targets};
pub use redis_store::RedisStore;
pub use request::{Change, ContactUpdate, RegisterRequest, parse_register};
pub use store::{
    AsyncStore, FULL_RETRY_AFTER, MemoryStore, RETRY_AFTER, Store, StoreError, StoreFuture,
    TABLE_FULL, table_full,
};

/// The `- lookup` step: the live bindings of the AoR of `uri` (the
/// Request-URI, or any SIP URI or name-addr) at `now_unix`, in the order
/// to try them ([`targets`]). Empty when nothing is registered or `uri`
/// has no AoR ([`aor_of`]: not `sip:`/`sips:`).
pub fn lookup(store: &dyn Store, uri: &str, now_unix: u64) -> Result<Vec<Binding>, StoreError> {
    lookup_with(store, uri, now_unix, |targets| {
        targets.iter().map(|&b| b.clone()).collect()
    })
}

/// [`lookup`] without copying a binding: `then` gets the targets in order
/// (none when nothing is registered or `uri` has no AoR), read under the
/// store's lock, so it should be quick.
pub fn lookup_with<T>(
    store: &dyn Store,
    uri: &str,
    now_unix: u64,
    mut then: impl FnMut(&[&Binding]) -> T,
) -> Result<T, StoreError> {
    let Some(aor) = aor_of(uri) else {
        return Ok(then(&[]));
    };
    let mut out = None;
    store.get_with(&aor, now_unix, &mut |bindings| {
        out = Some(then(&targets(bindings, now_unix)));
    })?;
    // A store that did not call back found nothing.
    Ok(match out {
        Some(found) => found,
        None => then(&[]),
    })
}

/// The `registered` condition: whether the AoR of `uri` has a live binding.
pub fn is_registered(store: &dyn Store, uri: &str, now_unix: u64) -> Result<bool, StoreError> {
    lookup_with(store, uri, now_unix, |targets| !targets.is_empty())
}

/// The `registrar:` block of the routes file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Shorter non-zero asks are refused with 423 and `Min-Expires`.
    pub min_expires: u32,
    /// Longer asks are granted this long.
    pub max_expires: u32,
    /// For contacts with neither an `expires` parameter nor an Expires header.
    pub default_expires: u32,
    /// Bindings per address-of-record; a REGISTER that would leave more
    /// (and more than before it) is refused with 403.
    pub max_contacts: u32,
    /// Longest Contact URI kept, in bytes (Kamailio's `contact_max_size`):
    /// a REGISTER with a longer one is refused with 400.
    pub contact_max_size: u32,
    /// Most bindings the `memory` store keeps in all: a REGISTER that
    /// would add bindings past it is refused with 503 and `Retry-After`
    /// (refreshes and removals still pass). A shared store is bounded by
    /// its server (Redis `maxmemory`).
    pub max_bindings: u32,
}

/// Longest address-of-record (the canonical To URI), Call-ID and
/// `+sip.instance` a REGISTER may carry, in bytes: longer ones get 400.
pub const MAX_FIELD: usize = 256;
/// Most bytes of Path a REGISTER may carry (all its entries together):
/// more get 400.
pub const MAX_PATH: usize = 2048;
/// Bytes of User-Agent kept with a binding; a longer one is cut (it is
/// only shown, never matched).
pub const MAX_USER_AGENT: usize = 256;

impl Default for Config {
    /// `min_expires: 60, max_expires: 3600, default_expires: 3600,
    /// max_contacts: 10, contact_max_size: 512, max_bindings: 1000000`.
    fn default() -> Config {
        Config {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            contact_max_size: 512,
            max_bindings: 1_000_000,
        }
    }
}

impl Config {
    /// Whether the settings make sense together (for the routes compiler):
    /// `0 < min_expires <= default_expires <= max_expires`, `max_contacts >= 1`.
    pub fn check(&self) -> Result<(), String> {
        if self.min_expires == 0 {
            return Err("registrar: min_expires must be at least 1".into());
        }
        if self.min_expires > self.max_expires {
            return Err(format!(
                "registrar: min_expires ({}) is above max_expires ({})",
                self.min_expires, self.max_expires
            ));
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(format!(
                "registrar: default_expires ({}) must be between min_expires ({}) and max_expires ({})",
                self.default_expires, self.min_expires, self.max_expires
            ));
        }
        if self.max_contacts == 0 {
            return Err("registrar: max_contacts must be at least 1".into());
        }
        if self.contact_max_size == 0 || self.max_bindings == 0 {
            return Err("registrar: contact_max_size and max_bindings must be at least 1".into());
        }
        Ok(())
    }
}

/// Where a REGISTER came from: requests to its contacts go back there
/// (the contact URI behind a NAT is usually unreachable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Received {
    pub transport: Transport,
    /// The source address of the REGISTER (after any NAT).
    pub addr: SocketAddr,
}

/// A REGISTER refused: the status to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    /// The reason phrase (says what was wrong for 400s).
    pub reason: &'static str,
    /// Extra header lines for the answer, each ending in CRLF
    /// (`"Min-Expires: 60\r\n"` for a 423), or "".
    pub headers: String,
}

impl Refusal {
    /// A refusal without extra headers.
    pub fn new(code: u16, reason: &'static str) -> Refusal {
        Refusal {
            code,
            reason,
            headers: String::new(),
        }
    }

    /// 400 with `reason`.
    pub(crate) fn bad(reason: &'static str) -> Refusal {
        Refusal::new(400, reason)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

impl std::error::Error for Refusal {}
