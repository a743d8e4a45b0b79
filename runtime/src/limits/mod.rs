//! Abuse limits (`limits:` in the routes file), sans-IO: the caller passes
//! addresses and `Instant`s in and acts on the answers.
//!
//! ```yaml
//! limits:
//!   per_source: { requests: 50, per: 1s, ban: 60s }
//!   trusted: [ 10.0.0.0/8, "192.0.2.1" ]
//! ```
//!
//! - [`Limiter`] ([`per_source`]): a token bucket per
//!   source (an IPv6 one: its /64, or `ipv6_prefix`) in a bounded table
//!   shared by every worker; over the rate a
//!   source is ignored for the ban ([`Verdict`]). Trusted sources are never
//!   limited.
//! - [`NetList`] ([`net_list`]): a sorted table of
//!   networks ([`Net`], [`NetRange`]), built at compile time by the code
//!   generator, for `trusted:` and `$si in [10.0.0.0/8, ...]`.

mod bucket;
pub mod net_list;
pub mod per_source;

pub use bucket::MAX_BAN_MS;
pub use net_list::{Net, NetList, NetRange};
pub use per_source::{BanMessage, DEFAULT_IPV6_PREFIX, Limiter, PerSource, Verdict, source_key};
