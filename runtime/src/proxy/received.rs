//! `received` and `rport` on the top Via of a request we received
//! (RFC 3261 §18.2.1, RFC 3581 §4), and where responses to it go (§18.2.2).

use std::fmt::Write;
use std::net::SocketAddr;
use std::ops::Range;

use crate::sip::Via;
use crate::target::{DEFAULT_PORT, NextHop, parse_ip};
use crate::transport::Transport;

/// The edit of the top Via: replace `range` (possibly empty) with `text`,
/// and delete `remove` when set (a `received` the sender wrote itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEdit {
    pub range: Range<usize>,
    pub text: String,
    pub remove: Option<Range<usize>>,
}

impl ViaEdit {
    /// Write `buf[line]` with this edit applied (both of its ranges must
    /// lie inside `line`; if not, the line is written as it is).
    pub fn write_line(&self, buf: &[u8], line: Range<usize>, out: &mut Vec<u8>) {
        let inside = |r: &Range<usize>| line.start <= r.start && r.end <= line.end;
        let mut cuts: [Option<(&Range<usize>, &[u8])>; 2] = [
            Some((&self.range, self.text.as_bytes())),
            self.remove.as_ref().map(|r| (r, &b""[..])),
        ];
        if cuts.iter().flatten().any(|(r, _)| !inside(r)) {
            out.extend_from_slice(&buf[line]);
            return;
        }
        if let [Some(a), Some(b)] = &cuts
            && b.0.start < a.0.start
        {
            cuts.swap(0, 1);
        }
        let mut at = line.start;
        for (range, text) in cuts.into_iter().flatten() {
            out.extend_from_slice(&buf[at..range.start.max(at)]);
            out.extend_from_slice(text);
            at = at.max(range.end);
        }
        out.extend_from_slice(&buf[at..line.end]);
    }
}

/// The edit that records where the request came from, if one is needed.
/// `received` is set when the sent-by host is not the source IP (always
/// when `rport` is asked for), `rport` gets the source port. Values the
/// sender wrote into `received` or `rport` are replaced, never trusted:
/// they would steer where the responses go (RFC 3261 §18.2.1, RFC 3581 §4).
///
/// Over a connection (`transport` TCP, TLS, WS) `rport` is always written,
/// asked for or not (Kamailio's `force_rport`): the Via then names the
/// connection's far end, where responses must go (§18.2.2), whoever
/// forwards them, even a stateless proxy that keeps no connection state.
pub fn top_via_edit(via: &Via<'_>, source: SocketAddr, transport: Transport) -> Option<ViaEdit> {
    let force_rport = transport.is_stream() && via.rport.is_none();
    let asked = via.rport.is_some() || force_rport;
    let needs_received = asked || parse_ip(via.host) != Some(source.ip());
    let mut received = String::new();
    if needs_received {
        received.push_str(";received=");
        match source.ip() {
            std::net::IpAddr::V4(v4) => {
                let _ = write!(received, "{v4}");
            }
            // RFC 5118 §4.5: an IPv6 received value, without brackets
            // (RFC 3261's grammar; every parser we know takes it).
            std::net::IpAddr::V6(v6) => {
                let _ = write!(received, "{v6}");
            }
        }
    }
    // Already what we would write: nothing to do.
    let received_ok = match via.received {
        Some(value) => needs_received && parse_ip(value) == Some(source.ip()),
        None => !needs_received,
    };
    let rport_ok = match via.rport {
        Some(Some(port)) => port == source.port(),
        Some(None) => false,
        None => !force_rport,
    };
    if received_ok && rport_ok {
        return None;
    }
    let mut text = String::new();
    let mut remove = None;
    let range = match &via.rport_range {
        Some(rport) if via.rport.is_some() => {
            // `;rport=PORT;received=IP` where the rport was; a received
            // written elsewhere goes.
            let _ = write!(text, ";rport={}", source.port());
            text.push_str(&received);
            remove = via.received_range.clone();
            rport.clone()
        }
        _ => {
            if force_rport {
                let _ = write!(text, ";rport={}", source.port());
            }
            text.push_str(&received);
            match &via.received_range {
                Some(r) => r.clone(),
                None => via.params_end..via.params_end,
            }
        }
    };
    Some(ViaEdit {
        range,
        text,
        remove,
    })
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
/// `rport` was asked for or the request came over a connection (which the
/// response goes back on, §18.2.2), else at the sent-by port.
pub fn reply_destination(via: &Via<'_>, source: SocketAddr, transport: Transport) -> SocketAddr {
    let port = if via.rport.is_some() || transport.is_stream() {
        source.port()
    } else {
        via.port.unwrap_or(DEFAULT_PORT)
    };
    SocketAddr::new(source.ip(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(via: &str, source: &str) -> Option<String> {
        let v = Via::parse(via, 0).unwrap();
        let e = top_via_edit(&v, source.parse().unwrap(), Transport::Udp)?;
        let mut out = String::new();
        let mut at = 0;
        let mut cuts = vec![(e.range.clone(), e.text.clone())];
        if let Some(r) = e.remove {
            cuts.push((r, String::new()));
        }
        cuts.sort_by_key(|(r, _)| r.start);
        for (r, t) in cuts {
            out.push_str(&via[at..r.start]);
            out.push_str(&t);
            at = r.end;
        }
        out.push_str(&via[at..]);
        Some(out)
    }

    #[test]
    fn received_and_rport_come_from_the_source() {
        let src = "192.0.2.7:40000";
        assert_eq!(
            edit("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKa", src),
            None
        );
        assert_eq!(
            edit("SIP/2.0/UDP host.example:5060;branch=z9hG4bKa", src).unwrap(),
            "SIP/2.0/UDP host.example:5060;branch=z9hG4bKa;received=192.0.2.7"
        );
        assert_eq!(
            edit("SIP/2.0/UDP 192.0.2.7:5060;rport;branch=z9hG4bKa", src).unwrap(),
            "SIP/2.0/UDP 192.0.2.7:5060;rport=40000;received=192.0.2.7;branch=z9hG4bKa"
        );
    }

    #[test]
    fn values_the_sender_wrote_are_replaced() {
        let src = "192.0.2.7:40000";
        // A forged received and rport: both rewritten.
        assert_eq!(
            edit(
                "SIP/2.0/UDP 10.0.0.1:5060;received=203.0.113.66;rport=9999;branch=z9hG4bKa",
                src
            )
            .unwrap(),
            "SIP/2.0/UDP 10.0.0.1:5060;rport=40000;received=192.0.2.7;branch=z9hG4bKa"
        );
        // rport before received.
        assert_eq!(
            edit(
                "SIP/2.0/UDP 10.0.0.1:5060;rport=9999;branch=z9hG4bKa;received=203.0.113.66",
                src
            )
            .unwrap(),
            "SIP/2.0/UDP 10.0.0.1:5060;rport=40000;received=192.0.2.7;branch=z9hG4bKa"
        );
        // A forged received alone.
        assert_eq!(
            edit(
                "SIP/2.0/UDP 10.0.0.1;received=203.0.113.66;branch=z9hG4bKa",
                src
            )
            .unwrap(),
            "SIP/2.0/UDP 10.0.0.1;received=192.0.2.7;branch=z9hG4bKa"
        );
        // A received where none is needed (sent-by is the source): removed.
        assert_eq!(
            edit(
                "SIP/2.0/UDP 192.0.2.7;received=203.0.113.66;branch=z9hG4bKa",
                src
            )
            .unwrap(),
            "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKa"
        );
        // Already right: untouched.
        assert_eq!(
            edit(
                "SIP/2.0/UDP 10.0.0.1;rport=40000;received=192.0.2.7;branch=z9hG4bKa",
                src
            ),
            None
        );
    }

    #[test]
    fn responses_go_where_the_edit_says() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let forged = "SIP/2.0/UDP 10.0.0.1:5060;received=203.0.113.66;rport=9999;branch=z9hG4bKa";
        let edited = edit(forged, "192.0.2.7:40000").unwrap();
        let v = Via::parse(&edited, 0).unwrap();
        assert_eq!(response_destination(&v), Some(NextHop::Addr(src)));
        let v = Via::parse(forged, 0).unwrap();
        assert_eq!(reply_destination(&v, src, Transport::Udp), src);
    }
}
