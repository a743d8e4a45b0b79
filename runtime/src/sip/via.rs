//! One Via element (RFC 3261 §20.42, §25.1 via-parm; RFC 3581 rport;
//! RFC 5118 IPv6 references): sent-protocol, sent-by and the parameters a
//! proxy needs, with absolute offsets for splicing `received`/`rport`.

use std::ops::Range;

use super::lex::{self, DIGIT, HOST, IPV6, PARAM_VALUE, TOKEN, quoted_end, scan, skip_ws};
use memchr::memchr;

/// A parsed via-parm. Offsets are absolute (in the message buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// This Via element in buf, trimmed.
    pub range: Range<usize>,
    /// "UDP", "TCP", ... as written.
    pub transport: &'a str,
    /// Host of sent-by; IPv6 keeps its brackets: "[2001:db8::1]".
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    pub received: Option<&'a str>,
    /// Absolute range of the ";received=..." text incl. the ';'.
    pub received_range: Option<Range<usize>>,
    /// `Some(None)` for a bare ";rport".
    pub rport: Option<Option<u16>>,
    /// Absolute range of the ";rport" / ";rport=123" text incl. the ';'.
    pub rport_range: Option<Range<usize>>,
    /// Absolute offset just after the last param (or after sent-by when
    /// there is none): where ";received=..." can be inserted.
    pub params_end: usize,
}

/// `[...]` holding only hex digits, ':' and '.', with at least one ':'.
pub(crate) fn is_ipv6_reference(s: &[u8]) -> bool {
    match s {
        [b'[', inner @ .., b']'] => inner.contains(&b':') && lex::all(inner, IPV6),
        _ => false,
    }
}

/// Expects `want` at `i` (after optional whitespace); returns the index after it.
fn expect(b: &[u8], i: usize, want: u8) -> Option<usize> {
    let i = skip_ws(b, i);
    (b.get(i) == Some(&want)).then_some(i + 1)
}

/// A non-empty token at `i` (after optional whitespace): `(start, end)`.
fn token_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let s = skip_ws(b, i);
    let e = scan(b, s, TOKEN);
    (e > s).then_some((s, e))
}

/// sent-protocol (`SIP / 2.0 / UDP`): `(start, transport start, transport end)`.
fn sent_protocol(b: &[u8]) -> Option<(usize, usize, usize)> {
    // Fast path for the usual spelling; the general path gives the same result.
    if b.starts_with(b"SIP/2.0/") {
        let (ts, te) = token_at(b, 8)?;
        return Some((0, ts, te));
    }
    let (start, name_end) = token_at(b, 0)?;
    let i = expect(b, name_end, b'/')?;
    let (_, ver_end) = token_at(b, i)?;
    let i = expect(b, ver_end, b'/')?;
    let (ts, te) = token_at(b, i)?;
    Some((start, ts, te))
}

/// End of the sent-by host starting at `hs` (an IPv6 reference or a host name).
fn host_end(b: &[u8], hs: usize) -> Option<usize> {
    if b.get(hs) == Some(&b'[') {
        let close = hs + memchr(b']', b.get(hs..)?)? + 1;
        return is_ipv6_reference(b.get(hs..close)?).then_some(close);
    }
    Some(scan(b, hs, HOST))
}

/// Which of the params a proxy reads a via-param name is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Branch,
    Received,
    Rport,
    Other,
}

fn known_param(name: &[u8]) -> Known {
    if lex::eq_ignore_case(name, b"branch") {
        Known::Branch
    } else if lex::eq_ignore_case(name, b"received") {
        Known::Received
    } else if lex::eq_ignore_case(name, b"rport") {
        Known::Rport
    } else {
        Known::Other
    }
}

impl<'a> Via<'a> {
    /// Parses one via-parm; `base` is the offset of `text` in the buffer.
    /// Whitespace (including folded line breaks) is allowed around '/', ':',
    /// ';' and '='. Returns None for anything malformed, including empty or
    /// valueless `branch`/`received` params and a non-numeric `rport`.
    pub fn parse(text: &'a str, base: usize) -> Option<Via<'a>> {
        let b = text.as_bytes();
        let (start, ts, te) = sent_protocol(b)?;
        let transport = text.get(ts..te)?;

        let hs = skip_ws(b, te);
        if hs == te {
            return None;
        }
        let he = host_end(b, hs)?;
        if he == hs {
            return None;
        }
        let host = text.get(hs..he)?;

        let mut end = he;
        let mut port = None;
        let j = skip_ws(b, he);
        if b.get(j) == Some(&b':') {
            let ps = skip_ws(b, j + 1);
            let pe = scan(b, ps, DIGIT);
            port = Some(lex::parse_u16(b.get(ps..pe)?)?);
            end = pe;
        }

        let mut via = Via {
            range: 0..0,
            transport,
            host,
            port,
            branch: None,
            received: None,
            received_range: None,
            rport: None,
            rport_range: None,
            params_end: 0,
        };
        loop {
            let semi = skip_ws(b, end);
            match b.get(semi) {
                None => break,
                Some(b';') => {}
                Some(_) => return None,
            }
            let (ns, ne) = token_at(b, semi + 1)?;
            end = ne;
            let mut value = None;
            let eq = skip_ws(b, ne);
            if b.get(eq) == Some(&b'=') {
                let vs = skip_ws(b, eq + 1);
                let ve = if b.get(vs) == Some(&b'"') {
                    quoted_end(b, vs)?
                } else {
                    scan(b, vs, PARAM_VALUE)
                };
                if ve == vs {
                    return None;
                }
                value = Some(text.get(vs..ve)?);
                end = ve;
            }
            match known_param(b.get(ns..ne)?) {
                Known::Branch => via.branch = via.branch.or(Some(value?)),
                Known::Received if via.received.is_none() => {
                    via.received = Some(value?);
                    via.received_range = Some(base + semi..base + end);
                }
                Known::Rport if via.rport.is_none() => {
                    via.rport = Some(match value {
                        Some(v) => Some(lex::parse_u16(v.as_bytes())?),
                        None => None,
                    });
                    via.rport_range = Some(base + semi..base + end);
                }
                Known::Received | Known::Rport | Known::Other => {}
            }
        }
        via.range = base + start..base + end;
        via.params_end = base + end;
        Some(via)
    }

    /// True when the branch starts with the RFC 3261 magic cookie "z9hG4bK".
    pub fn has_magic_cookie(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        let t = "SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds";
        let v = Via::parse(t, 10).unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.example.com");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
        assert!(v.has_magic_cookie());
        assert_eq!(v.range, 10..10 + t.len());
        assert_eq!(v.params_end, 10 + t.len());
        assert_eq!(v.rport, None);
    }

    #[test]
    fn ipv6_and_received() {
        let t = "SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKas3";
        let v = Via::parse(t, 0).unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received, Some("[2001:db8::9:255]"));
        let t = "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3";
        let v = Via::parse(t, 0).unwrap();
        assert_eq!(v.port, None);
        assert_eq!(v.received, Some("2001:db8::9:255"));
        assert!(Via::parse("SIP/2.0/UDP [2001:db8::zz]", 0).is_none());
        assert!(Via::parse("SIP/2.0/UDP [2001:db8::1", 0).is_none());
    }

    #[test]
    fn rport_forms() {
        let t = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d8;rport";
        let v = Via::parse(t, 100).unwrap();
        assert_eq!(v.rport, Some(None));
        let r = v.rport_range.clone().unwrap();
        assert_eq!(&t[r.start - 100..r.end - 100], ";rport");
        assert_eq!(v.params_end, 100 + t.len());

        let t = "SIP/2.0/UDP h;rport=5061;branch=z9hG4bKx";
        let v = Via::parse(t, 0).unwrap();
        assert_eq!(v.rport, Some(Some(5061)));
        assert_eq!(&t[v.rport_range.unwrap()], ";rport=5061");
        assert_eq!(v.branch, Some("z9hG4bKx"));
        assert!(Via::parse("SIP/2.0/UDP h;rport=abc", 0).is_none());
        assert!(Via::parse("SIP/2.0/UDP h;rport=70000", 0).is_none());
    }

    #[test]
    fn whitespace_everywhere() {
        let t = "SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239";
        let v = Via::parse(t, 0).unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.168.255.111");
        assert_eq!(v.branch, Some("z9hG4bK30239"));
        assert_eq!(v.params_end, t.len());
        let t = "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw";
        let v = Via::parse(t, 0).unwrap();
        assert_eq!(v.host, "192.0.2.2");
        assert!(!v.has_magic_cookie());
    }

    #[test]
    fn malformed() {
        for t in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host:port",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;x=\"unterminated",
        ] {
            assert!(Via::parse(t, 0).is_none(), "{t:?}");
        }
        let v = Via::parse("SIP/2.0/UDP h;x=\"a b;c\";branch=z9hG4bK1", 0).unwrap();
        assert_eq!(v.branch, Some("z9hG4bK1"));
        let v = Via::parse("SIP/2.0/UDP iftgw.example.com", 0).unwrap();
        assert_eq!(v.branch, None);
        assert!(!v.has_magic_cookie());
    }
}
