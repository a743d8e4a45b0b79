//! NAT traversal, sans-IO: telling whether the sender of a message is
//! behind a NAT (`behind_nat`), making the Contact of a message reachable
//! (`fix_contact`), and undoing that on the in-dialog requests that come
//! back to the fixed Contact.
//!
//! Nothing here touches a socket or the routes: the functions read a parsed
//! [`Message`], the address it came from and the transport, and return
//! what to do. `crate::ctx::nat` calls them for the routes, and
//! `crate::proxy::nat` applies the results.
//!
//! # The marker
//!
//! `fix_contact` rewrites the host and port of the Contact URI to the
//! address and port the message came from, and appends one URI parameter
//! recording what it replaced:
//!
//! ```text
//! <sip:phone@192.168.1.10:5060;ob>          from 203.0.113.7:40312 over UDP
//! <sip:phone@203.0.113.7:40312;ob;sfnat=192.168.1.10~5060~udp>
//! ```
//!
//! `sfnat=HOST~PORT~TRANSPORT`: the host the URI had (an IPv6 reference
//! keeps its brackets), its port (empty when the URI had none) and the
//! transport of the NAT binding (the one the message came over). Every
//! character of it is allowed unescaped in a URI parameter (RFC 3261 §25
//! `paramchar`). A peer sends in-dialog requests to the fixed URI, which
//! names the NAT binding; when such a request reaches the proxy as the last
//! hop of its Route set, the proxy sends it to the binding (over the
//! recorded transport) with the Request-URI the phone wrote, the marker
//! gone ([`restore`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use crate::sip::{HeaderName, Message, NameAddr, Uri, is_host, split_list};
use crate::target::parse_ip;
use crate::transport::Transport;

/// The name of the URI parameter `fix_contact` appends.
pub const MARKER: &str = "sfnat";

/// Whether `ip` is an address that cannot be reached from outside its own
/// network: RFC 1918 private (10/8, 172.16/12, 192.168/16), RFC 6598
/// shared (100.64/10, carrier-grade NAT), link-local (169.254/16,
/// fe80::/10), IPv6 unique local (fc00::/7). An IPv4-mapped IPv6 address
/// counts as its IPv4 address. Loopback is not in the list: a Contact of
/// 127.0.0.1 from elsewhere is caught by the comparison with the source.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 10
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..=127).contains(&b))
        || (a == 169 && b == 254)
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

/// Why a message is taken as sent from behind a NAT (the first reason
/// found, in this order). The Kamailio `nat_uac_test` flag each one
/// corresponds to is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatSign {
    /// The top Via's sent-by host is a private address (flag 4).
    ViaPrivate,
    /// The top Via's sent-by host is not the source address: another
    /// address, or a name (RFC 3261 §18.2.1, the rule that makes a proxy
    /// add `received`) (flag 2).
    ViaAddress,
    /// The top Via's port (5060, 5061 for TLS, when not written) is not
    /// the source port (flag 16).
    ViaPort,
    /// The Contact URI's host is a private address (flag 1, with the
    /// link-local and IPv6 ranges added).
    ContactPrivate,
    /// The Contact URI's host is another IP address than the source, or
    /// a `.invalid` name (RFC 7118 clients); other names are not looked up.
    ContactAddress,
    /// The Contact URI's port (5060, 5061 for `sips:` or
    /// `;transport=tls`, when not written) is not the source port (flag 128).
    ContactPort,
}

impl NatSign {
    /// For log lines.
    pub fn describe(self) -> &'static str {
        match self {
            NatSign::ViaPrivate => "the top Via names a private address",
            NatSign::ViaAddress => "the top Via names another address than the source",
            NatSign::ViaPort => "the top Via names another port than the source",
            NatSign::ContactPrivate => "the Contact names a private address",
            NatSign::ContactAddress => "the Contact names another address than the source",
            NatSign::ContactPort => "the Contact names another port than the source",
        }
    }
}

/// Whether the Contact of a message can be compared with the address it
/// came from: only when nobody but its sender handled it on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The message came straight from the element that wrote its Contact.
    Direct,
    /// It came through another proxy (whose address is the source): its
    /// Contact is only checked for private addresses.
    Relayed,
}

/// The [`Path`] of a request: direct when it carries a single Via (its
/// sender's), relayed when another proxy added one.
pub fn request_path(msg: &Message<'_>) -> Path {
    let mut vias = msg
        .all(HeaderName::Via)
        .flat_map(|h| split_list(msg.value(h)));
    match (vias.next(), vias.next()) {
        (Some(_), Some(_)) => Path::Relayed,
        _ => Path::Direct,
    }
}

/// The [`Path`] of a response: relayed when its first Record-Route entry
/// is not ours (`is_us(host, port)`), which means a proxy between us and
/// the responder record-routed; direct otherwise (no Record-Route, or ours
/// on top). A proxy on the way that does not record-route cannot be seen.
pub fn response_path(msg: &Message<'_>, is_us: impl Fn(&str, Option<u16>) -> bool) -> Path {
    let Some(h) = msg.first(HeaderName::RecordRoute) else {
        return Path::Direct;
    };
    let first = split_list(msg.value(h))
        .next()
        .and_then(|(_, text)| NameAddr::parse(text))
        .and_then(|na| Uri::parse(na.uri).map(|u| (u.host, u.port)));
    match first {
        Some((host, port)) if is_us(host, port) => Path::Direct,
        _ => Path::Relayed,
    }
}

/// `behind_nat`: why the message's sender is taken as behind a NAT, or
/// None. A request is judged by its top Via (written by the element that
/// sent it to us) and its Contact; a response by its Contact only (its
/// Vias are ours and the ones before us). The Contact is compared with
/// `source` only on a [`Path::Direct`] message.
pub fn behind_nat(msg: &Message<'_>, source: SocketAddr, path: Path) -> Option<NatSign> {
    if msg.is_request()
        && let Some(via) = msg.top_via()
    {
        let host = parse_ip(via.host);
        if host.is_some_and(is_private) {
            return Some(NatSign::ViaPrivate);
        }
        if !host.is_some_and(|ip| same_ip(ip, source.ip())) {
            return Some(NatSign::ViaAddress);
        }
        let default = Transport::parse(via.transport).map_or(5060, Transport::default_port);
        if via.port.unwrap_or(default) != source.port() {
            return Some(NatSign::ViaPort);
        }
    }
    let contact = single_contact(msg).ok()?;
    let uri = Uri::parse(contact.uri).filter(Uri::is_sip)?;
    let host = parse_ip(uri.host);
    if host.is_some_and(is_private) {
        return Some(NatSign::ContactPrivate);
    }
    if path == Path::Relayed {
        return None;
    }
    let invalid_name = host.is_none() && is_invalid_name(uri.host);
    if invalid_name || host.is_some_and(|ip| !same_ip(ip, source.ip())) {
        return Some(NatSign::ContactAddress);
    }
    if uri.port.unwrap_or_else(|| default_port(contact.uri)) != source.port() {
        return Some(NatSign::ContactPort);
    }
    None
}

/// `pc.invalid`, `x.INVALID.`: a name that never resolves (RFC 6761 §6.4),
/// written by clients that have no address to give (RFC 7118 §5.2).
fn is_invalid_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.len() > 8
        && host.is_char_boundary(host.len() - 8)
        && host[host.len() - 8..].eq_ignore_ascii_case(".invalid")
}

/// Equal addresses, an IPv4-mapped IPv6 address being its IPv4 address.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Whether the Contact URI `contact` names `source` (IP and port): the
/// sender is reachable where it says, no NAT between us.
pub fn names_source(contact: &str, source: SocketAddr) -> bool {
    Uri::parse(contact).is_some_and(|uri| names(&uri, contact, source))
}

/// [`names_source`] of a parsed URI (`text`: the URI as written).
fn names(uri: &Uri<'_>, text: &str, source: SocketAddr) -> bool {
    parse_ip(uri.host).is_some_and(|ip| same_ip(ip, source.ip()))
        && uri.port.unwrap_or_else(|| default_port(text)) == source.port()
}

/// The port a SIP URI without one means: 5061 when it asks for TLS.
fn default_port(uri: &str) -> u16 {
    crate::target::uri_transport(uri).map_or(5060, Transport::default_port)
}

/// The one Contact of a message, with where its URI is in the buffer.
#[derive(Debug)]
struct Contact<'a> {
    /// The URI (inside the angle brackets, or the addr-spec).
    uri: &'a str,
    /// Its byte range in the message buffer.
    range: Range<usize>,
    /// Written as a bare addr-spec (no `<>`): parameters appended to the
    /// URI would become header parameters, so the URI gets brackets.
    bare: bool,
    /// The Contact header line.
    line: Range<usize>,
}

/// Why `fix_contact` left a message as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfixed {
    /// The message has no Contact.
    NoContact,
    /// `Contact: *` (a REGISTER removing every binding).
    Star,
    /// More than one Contact (a REGISTER or a 3xx): which one would be the
    /// sender's is not known, so none is changed.
    Several,
    /// The Contact does not parse, or is not a `sip:`/`sips:` URI.
    NotSip,
    /// The Contact already carries the marker (fixed by a proxy before).
    AlreadyMarked,
    /// The Contact already names the source address and port.
    AlreadyReachable,
}

impl Unfixed {
    /// For log lines.
    pub fn describe(self) -> &'static str {
        match self {
            Unfixed::NoContact => "the message has no Contact",
            Unfixed::Star => "the Contact is `*`",
            Unfixed::Several => "the message has more than one Contact",
            Unfixed::NotSip => "the Contact is not a sip: or sips: URI",
            Unfixed::AlreadyMarked => "the Contact is already fixed",
            Unfixed::AlreadyReachable => "the Contact already names the source",
        }
    }
}

/// The one Contact entry of `msg`; Err for none, `*`, several or one that
/// does not parse.
fn single_contact<'a>(msg: &Message<'a>) -> Result<Contact<'a>, Unfixed> {
    let buf = msg.buf();
    let mut found: Option<Contact<'a>> = None;
    for h in msg.all(HeaderName::Contact) {
        let value = msg.value(h);
        for (_, text) in split_list(value) {
            if found.is_some() {
                return Err(Unfixed::Several);
            }
            if text == "*" {
                return Err(Unfixed::Star);
            }
            let na = NameAddr::parse(text).ok_or(Unfixed::NotSip)?;
            let start = offset_in(buf, na.uri);
            found = Some(Contact {
                uri: na.uri,
                range: start..start + na.uri.len(),
                bare: !text.starts_with('<') && na.display.is_none(),
                line: h.line_range.clone(),
            });
        }
    }
    found.ok_or(Unfixed::NoContact)
}

/// Byte offset of `part` (a slice of `buf`) in `buf`.
fn offset_in(buf: &[u8], part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize)
}

/// The edit `fix_contact` asks for: replace `range` of the received
/// message with `text`. `line` is the Contact header line (kept as the
/// core's own while it is edited, so `remove_header` leaves it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactFix {
    pub range: Range<usize>,
    pub text: String,
    pub line: Range<usize>,
}

/// `fix_contact`: the edit that makes the Contact of `msg` name `source`
/// (the NAT binding the message came from over `transport`), with the
/// marker recording what it named. Err says why nothing is changed.
pub fn fix_contact(
    msg: &Message<'_>,
    source: SocketAddr,
    transport: Transport,
) -> Result<ContactFix, Unfixed> {
    let contact = single_contact(msg)?;
    let uri = Uri::parse(contact.uri)
        .filter(Uri::is_sip)
        .ok_or(Unfixed::NotSip)?;
    if uri.param(MARKER).is_some() {
        return Err(Unfixed::AlreadyMarked);
    }
    if names(&uri, contact.uri, source) {
        return Err(Unfixed::AlreadyReachable);
    }
    let mut text = String::with_capacity(contact.uri.len() + 64);
    if contact.bare {
        text.push('<');
    }
    let (before, _, after) = split_host_port(contact.uri, &uri);
    text.push_str(before);
    push_addr(&mut text, source);
    // The marker goes after the last parameter, before any `?headers`.
    let params_end = after.find('?').unwrap_or(after.len());
    text.push_str(&after[..params_end]);
    text.push(';');
    text.push_str(MARKER);
    text.push('=');
    text.push_str(uri.host);
    text.push('~');
    if let Some(port) = uri.port {
        text.push_str(&port.to_string());
    }
    text.push('~');
    text.push_str(transport.name());
    text.push_str(&after[params_end..]);
    if contact.bare {
        text.push('>');
    }
    // Every piece comes from a parsed URI or is ours; checked anyway: no
    // run-time value may carry a line break into a header.
    if text.bytes().any(|b| b.is_ascii_control()) {
        return Err(Unfixed::NotSip);
    }
    Ok(ContactFix {
        range: contact.range,
        text,
        line: contact.line,
    })
}

/// `text` (a sip/sips URI parsed as `uri`) cut around its host and port:
/// what comes before the host, the host and port, what follows the port.
fn split_host_port<'t>(text: &'t str, uri: &Uri<'t>) -> (&'t str, &'t str, &'t str) {
    let host_at = (uri.host.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let mut end = host_at + uri.host.len();
    if uri.port.is_some() && text.as_bytes().get(end) == Some(&b':') {
        end += 1 + text[end + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
    }
    (&text[..host_at], &text[host_at..end], &text[end..])
}

/// `IP:PORT`, IPv6 in brackets, an IPv4-mapped IPv6 address as IPv4.
fn push_addr(out: &mut String, addr: SocketAddr) {
    crate::target::push_addr(out, SocketAddr::new(addr.ip().to_canonical(), addr.port()));
}

/// A Request-URI carrying the marker, undone: the URI as the phone wrote
/// it, and the next hop (`$du`) that reaches its NAT binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub ruri: String,
    pub du: String,
}

/// The Request-URI `ruri` with the marker undone, when it carries a
/// well-formed one (`sfnat=HOST~PORT~TRANSPORT` with a host, a port or
/// nothing and a known transport) and names the binding by IP address.
/// None otherwise: the request goes where its Request-URI says.
pub fn restore(ruri: &str) -> Option<Restored> {
    // Cheap test first: most Request-URIs carry no marker.
    if !contains_ignore_case(ruri, MARKER) {
        return None;
    }
    let uri = Uri::parse(ruri).filter(Uri::is_sip)?;
    let value = uri.param(MARKER)??;
    let mut parts = value.split('~');
    let (host, port, transport) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_host(host) {
        return None;
    }
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&n| n != 0)?)
        }
        _ => return None,
    };
    let transport = Transport::parse(transport)?;
    let binding_ip = parse_ip(uri.host)?;
    let binding_port = uri.port.unwrap_or_else(|| transport.default_port());
    let binding = SocketAddr::new(binding_ip, binding_port);

    let (before, _, after) = split_host_port(ruri, &uri);
    let mut out = String::with_capacity(ruri.len());
    out.push_str(before);
    out.push_str(host);
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    out.push_str(&without_param(after, MARKER));
    // What came back must be a URI that names the original host and port
    // and no longer carries the marker.
    let back = Uri::parse(&out)?;
    if !back.host.eq_ignore_ascii_case(host) || back.port != port || back.param(MARKER).is_some() {
        return None;
    }
    Some(Restored {
        du: crate::target::binding_uri(binding, transport),
        ruri: out,
    })
}

/// `tail` (what follows a URI's host and port: `;params?headers`) without
/// every `;name` / `;name=value` parameter of that name.
fn without_param(tail: &str, name: &str) -> String {
    let params_end = tail.find('?').unwrap_or(tail.len());
    let (params, headers) = tail.split_at(params_end);
    let mut out = String::with_capacity(tail.len());
    for piece in params.split(';').skip(1) {
        let key = piece.split('=').next().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case(name) {
            out.push(';');
            out.push_str(piece);
        }
    }
    out.push_str(headers);
    out
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests;
