//! Port sharing on request only (`--takeover`).
//!
//! Every socket is bound with SO_REUSEPORT, so that a later instance may
//! join it during a rollout. Linux lets a socket join a port only when
//! every socket on it set SO_REUSEPORT (and belongs to the same effective
//! user), so that alone would let a second instance started by mistake
//! take half of the traffic without a word. So before binding a port, a
//! throwaway socket *without* SO_REUSEPORT probes it ([`held`]): when that
//! bind fails with "address in use", somebody holds the port, and
//!
//! - without `--takeover` the start fails, naming the address;
//! - with `--takeover` the real socket joins the holder's port (it fails,
//!   "address in use" too, when the holder's socket cannot be shared: a
//!   socket without SO_REUSEPORT, or another user's), and once this
//!   instance serves it asks the instances on the sibling link that hold
//!   one of its addresses to drain and exit ([`request`], [`is_for`]): the
//!   old instance then does what SIGTERM makes it do.
//!
//! Between the probe and the real bind another process may bind the port
//! (a window of a few microseconds): it then shares it, as before. A port
//! 0 is not probed: the kernel picks a port nobody holds.
//!
//! The request travels over the sibling link (see [`super::sibling`]): a
//! private directory only processes of our user can write to, the same
//! ones that could send us SIGTERM. It names the requester's network
//! namespace, since instances in different namespaces (containers,
//! tests) may share the directory and the same address without sharing a
//! port.

use std::io;
use std::net::SocketAddr;

/// First bytes of a takeover request on the sibling link (then, separated
/// by spaces: `pid=N`, `netns=ID` and the addresses taken over,
/// `udp:IP:PORT` or `tcp:IP:PORT`).
const MAGIC: &str = "SFTK1";

/// Whether another socket holds `addr`: a bind without SO_REUSEPORT
/// fails with "address in use". Other bind errors (an address of no
/// interface, a port we may not bind) are returned, naming the address.
/// Always false for port 0.
///
/// Every listener on an IPv6 address is bound with IPV6_V6ONLY, and so is
/// its probe: `udp:[::]:5060` serves IPv6 only, and `udp:0.0.0.0:5060`
/// beside it IPv4. (Linux's default, a dual-stack socket, would take the
/// IPv4 port too, so the second could not be bound, and IPv4 peers would
/// appear as `::ffff:a.b.c.d` in Vias and logs.) List both to serve both.
pub(super) fn held(addr: SocketAddr) -> io::Result<bool> {
    if addr.port() == 0 {
        return Ok(false);
    }
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| naming(addr, e))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true).map_err(|e| naming(addr, e))?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(naming(addr, e)),
    }
}

/// The error of a start without `--takeover` on a port somebody holds.
pub(super) fn in_use(addr: SocketAddr) -> io::Error {
    in_use_as("udp", addr)
}

/// [`in_use`] for a listener of `transport` (`udp`, `tcp`).
pub(super) fn in_use_as(transport: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{transport}:{addr}: address in use (another process holds it; start with --takeover to replace it)"
        ),
    )
}

/// A bind error, naming the address; "address in use" after the probe
/// means the holder's socket cannot be shared.
pub(super) fn naming(addr: SocketAddr, e: io::Error) -> io::Error {
    naming_as("udp", addr, e)
}

/// [`naming`] for a listener of `transport`.
pub(super) fn naming_as(transport: &str, addr: SocketAddr, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        return io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{transport}:{addr}: address in use by a socket that cannot be shared (one without SO_REUSEPORT, or another user's): stop that process first"
            ),
        );
    }
    io::Error::new(e.kind(), format!("{transport}:{addr}: {e}"))
}

/// This process's network namespace (`net:[INODE]`), or `-` when it
/// cannot be read (then namespaces are not compared).
fn network_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .filter(|ns| !ns.is_empty() && !ns.contains(char::is_whitespace))
        .unwrap_or_else(|| "-".to_string())
}

/// The request asking the holders of `addrs` to drain. Each address is
/// written `udp:`: an instance built before TCP listeners reads no other
/// word, and the port number is what matters (a `tcp:` word is read too).
pub(super) fn request(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut text = format!(
        "{MAGIC} pid={} netns={}",
        std::process::id(),
        network_namespace()
    );
    for addr in addrs {
        text.push_str(&format!(" udp:{addr}"));
    }
    text.into_bytes()
}

/// Whether a datagram on the sibling link is a takeover request.
pub(super) fn is_request(datagram: &[u8]) -> bool {
    datagram.starts_with(MAGIC.as_bytes()) && datagram.get(MAGIC.len()).is_none_or(|&b| b == b' ')
}

/// A takeover request, read.
#[derive(Debug, PartialEq)]
struct Request {
    pid: Option<u32>,
    netns: String,
    addrs: Vec<SocketAddr>,
}

/// Read a request; None when it is not one.
fn parse(datagram: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut words = text.split_ascii_whitespace();
    (words.next()? == MAGIC).then_some(())?;
    let mut request = Request {
        pid: None,
        netns: "-".to_string(),
        addrs: Vec::new(),
    };
    for word in words {
        if let Some(pid) = word.strip_prefix("pid=") {
            request.pid = pid.parse().ok();
        } else if let Some(ns) = word.strip_prefix("netns=") {
            request.netns = ns.to_string();
        } else {
            let addr = word
                .strip_prefix("udp:")
                .or_else(|| word.strip_prefix("tcp:"))?;
            request.addrs.push(addr.parse().ok()?);
        }
    }
    Some(request)
}

/// Whether two bound addresses share a port: the same port, and the same
/// IP or an unspecified one on either side (`[::]` also covers IPv4).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let v6_any = |x: SocketAddr| x.is_ipv6() && x.ip().is_unspecified();
    a.port() == b.port()
        && (a.ip() == b.ip()
            || v6_any(a)
            || v6_any(b)
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// When `datagram` is a takeover request for one of `ours` (our bound
/// addresses, in our network namespace): the requester's pid, if it said,
/// and the address of ours it takes over.
pub(super) fn is_for(datagram: &[u8], ours: &[SocketAddr]) -> Option<(Option<u32>, SocketAddr)> {
    let request = parse(datagram)?;
    let here = network_namespace();
    if request.netns != "-" && here != "-" && request.netns != here {
        return None;
    }
    let taken = ours
        .iter()
        .copied()
        .find(|&mine| request.addrs.iter().any(|&theirs| overlap(mine, theirs)))?;
    Some((request.pid, taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_port_is_held_only_when_a_bind_without_reuseport_fails() {
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        assert!(held(addr).unwrap());
        assert!(!held(a("127.0.0.1:0")).unwrap(), "port 0 is never held");
        drop(holder);
        assert!(!held(addr).unwrap());
        let e = in_use(addr).to_string();
        assert!(e.contains(&format!("udp:{addr}")) && e.contains("address in use"));
    }

    #[test]
    fn requests_round_trip_and_match_only_overlapping_addresses() {
        let bytes = request(&[a("127.0.0.1:5060"), a("[::1]:5062")]);
        assert!(is_request(&bytes));
        let read = parse(&bytes).unwrap();
        assert_eq!(read.pid, Some(std::process::id()));
        assert_eq!(read.addrs, vec![a("127.0.0.1:5060"), a("[::1]:5062")]);
        assert_eq!(
            is_for(&bytes, &[a("127.0.0.1:5070"), a("127.0.0.1:5060")]),
            Some((Some(std::process::id()), a("127.0.0.1:5060")))
        );
        assert_eq!(is_for(&bytes, &[a("127.0.0.1:5061")]), None);
        assert_eq!(
            is_for(&bytes, &[a("0.0.0.0:5060")]).unwrap().1,
            a("0.0.0.0:5060")
        );
        assert_eq!(is_for(&bytes, &[a("[::]:5060")]).unwrap().1, a("[::]:5060"));
        assert_eq!(is_for(&bytes, &[a("127.0.0.2:5060")]), None);
        // Another network namespace: another port, whatever the address.
        let elsewhere = b"SFTK1 pid=7 netns=net:[1] udp:127.0.0.1:5060";
        if network_namespace() != "-" {
            assert_eq!(is_for(elsewhere, &[a("127.0.0.1:5060")]), None);
        }
        for bad in [
            &b"SFTK1 udp:nowhere"[..],
            b"SFTK1 sctp:127.0.0.1:5060",
            b"SFTK12 udp:127.0.0.1:5060",
            b"SFSB1\x00",
        ] {
            assert_eq!(is_for(bad, &[a("127.0.0.1:5060")]), None, "{bad:?}");
        }
        assert!(!is_request(b"SFTK12"));
    }
}
