//! `received` and `rport` on the top Via of a request we received
//! (RFC 3261 §18.2.1, RFC 3581 §4), and where responses to it go (§18.2.2).

use std::fmt::Write;
use std::net::SocketAddr;
use std::ops::Range;

use crate::sip::Via;
use crate::target::{DEFAULT_PORT, NextHop, parse_ip};

/// One edit of the top Via: replace `range` (possibly empty) with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEdit {
    pub range: Range<usize>,
    pub text: String,
}

/// The edit that records where the request came from, if one is needed:
/// `received` when the sent-by host is not the source IP (always when
/// `rport` is asked for), `rport=PORT` filling an empty `rport`.
pub fn top_via_edit(via: &Via<'_>, source: SocketAddr) -> Option<ViaEdit> {
    let needs_received =
        via.received.is_none() && (via.rport.is_some() || parse_ip(via.host) != Some(source.ip()));
    let mut text = String::new();
    let range = match (via.rport, &via.rport_range) {
        (Some(None), Some(range)) => {
            let _ = write!(text, ";rport={}", source.port());
            range.clone()
        }
        _ => via.params_end..via.params_end,
    };
    if needs_received {
        let _ = write!(text, ";received={}", source.ip());
    }
    (!text.is_empty()).then_some(ViaEdit { range, text })
}

/// Where a response to a request with this top Via goes (§18.2.2 for
/// unreliable transports, RFC 3581 §4): to `received` (or the sent-by
/// host), at `rport` when it has a value, else the sent-by port.
pub fn response_destination(via: &Via<'_>) -> Option<NextHop> {
    let host = via.received.unwrap_or(via.host);
    let port = match via.rport {
        Some(Some(port)) => Some(port),
        _ => via.port,
    };
    NextHop::from_host_port(host, Some(port.unwrap_or(DEFAULT_PORT)))
}

/// Where a response to a request we just received goes, computed from the
/// source address before any edit: the source IP, at the source port when
/// `rport` was asked for, else at the sent-by port.
pub fn reply_destination(via: &Via<'_>, source: SocketAddr) -> SocketAddr {
    let port = if via.rport.is_some() {
        source.port()
    } else {
        via.port.unwrap_or(DEFAULT_PORT)
    };
    SocketAddr::new(source.ip(), port)
}
