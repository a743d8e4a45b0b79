//! sipforge run time: everything the proxy does that does not depend on the
//! routes file. Generated routes call into [`api`] and nothing else; the
//! binary hands its compiled routes to [`cli::main`]; tests start a proxy
//! in-process with [`net::start`].
//!
//! - [`sip`]: zero-copy view of received SIP messages, splice editing.
//! - [`proxy`]: the sans-IO proxy core (RFC 3261 §16).
//! - [`net`]: the I/O layer: a receive thread per socket, the timer task.
//! - [`ctx`]: what a route sees and does; [`api`]: the generated code's API.
//! - [`metrics`]: Prometheus counters and the `--metrics` endpoint.
//! - [`registrar`]: the sans-IO registrar and location service.
//! - [`nat`]: the sans-IO NAT detection, Contact fix and its marker.
//! - [`rtpengine`]: the sans-IO rtpengine control (`rtp_manage`).

pub mod api;
pub mod auth;
pub mod cli;
pub mod ctx;
mod digits;
pub(crate) mod hashbuf;
pub mod limits;
pub mod log;
pub mod log_limit;
pub mod logbuf;
pub mod logfmt;
pub mod metrics;
pub mod nat;
pub mod net;
pub mod proxy;
pub mod registrar;
pub mod resolve;
pub mod rtpengine;
pub mod sip;
pub mod target;
pub mod transaction;
pub mod transport;
