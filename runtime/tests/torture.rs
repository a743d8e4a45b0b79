//! RFC 4475 (SIP torture test messages) and RFC 5118 (IPv6 torture test
//! messages) against the zero-copy message layer: an explicit verdict for
//! every message with its reason, concrete fields of the well-formed ones,
//! byte-exact pass-through with an empty `Splice`, and a no-panic
//! robustness sweep over every prefix and deterministic byte mutations.

use std::path::PathBuf;

use sipforge_runtime::sip::{
    HeaderName, Invalid, Message, NameAddr, Splice, Uri, crlf_normalised, split_list,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Parses and `validate()` accepts it.
    Ok,
    /// `validate()` answers 400.
    Bad,
    /// `validate()` answers 505.
    Version,
}
use Verdict::{Bad, Ok as Good, Version};

/// RFC 4475 messages. Reasons cite RFC 4475 (§3.1.1 valid, §3.1.2 invalid,
/// §3.2 transaction layer, §3.3 application layer, §3.4 backward compat.)
/// and the RFC 3261 rule the proxy enforces.
const RFC4475: &[(&str, Verdict)] = &[
    // §3.1.1.1 wsinv: short tortuous INVITE — LWS, folding, compact forms,
    // odd case and escaped quotes are all legal.
    ("wsinv", Good),
    // §3.1.1.2 intmeth: unusual but legal token characters everywhere.
    ("intmeth", Good),
    // §3.1.1.3 esc01: escaped characters in URIs are legal.
    ("esc01", Good),
    // §3.1.1.4 escnull: escaped NUL in URIs is legal.
    ("escnull", Good),
    // §3.1.1.5 esc02: escapes in a method token / header name are just tokens.
    ("esc02", Good),
    // §3.1.1.6 lwsdisp: no LWS between display name and '<' is legal.
    ("lwsdisp", Good),
    // §3.1.1.7 longreq: long values, many Via headers incl. "Via :" forms.
    ("longreq", Good),
    // §3.1.1.8 dblreq: bytes after Content-Length in a datagram are ignored
    // (RFC 3261 §18.3).
    ("dblreq", Good),
    // §3.1.1.9 semiuri: ';' in the userinfo of the Request-URI is legal.
    ("semiuri", Good),
    // §3.1.1.10 transports: unknown transports in lower Vias are legal.
    ("transports", Good),
    // §3.1.1.11 mpart01: binary multipart body, framed by Content-Length.
    ("mpart01", Good),
    // §3.1.1.12 unreason: UTF-8 reason phrase is legal.
    ("unreason", Good),
    // §3.1.1.13 noreason: empty reason phrase is legal.
    ("noreason", Good),
    // §3.1.2.1 badinv01: Via "192.0.2.15;;,;,," has empty params: the top
    // Via cannot be parsed (RFC 3261 §20.42 via-params) → 400.
    ("badinv01", Bad),
    // §3.1.2.2 clerr: Content-Length 9999 larger than the datagram
    // (RFC 3261 §18.3) → 400.
    ("clerr", Bad),
    // §3.1.2.3 scalar02: CSeq number ≥ 2^31 (§8.1.1.5), Max-Forwards 300
    // (§20.22, 0-255) → 400.
    ("scalar02", Bad),
    // §3.1.2.4 scalarlg: response with CSeq ≥ 2^31 → 400 (a response gets
    // no reply: the proxy drops it).
    ("scalarlg", Bad),
    // §3.1.2.5 quotbal: unterminated quoted display name in To → 400.
    ("quotbal", Bad),
    // §3.1.2.6 ltgtruri: Request-URI in <> has no scheme → 400.
    ("ltgtruri", Bad),
    // §3.1.2.7 lwsruri: whitespace inside the Request-URI → 400.
    ("lwsruri", Bad),
    // §3.1.2.8 lwsstart: several SPs in the request line make the URI
    // contain whitespace (RFC 3261 §7.1: single SP) → 400.
    ("lwsstart", Bad),
    // §3.1.2.9 trws: trailing whitespace after SIP/2.0; the RFC allows
    // either verdict; we are liberal and trim it.
    ("trws", Good),
    // §3.1.2.10 escruri: escaped headers in a SIP Request-URI are not
    // allowed (RFC 3261 §19.1.1 table) → 400.
    ("escruri", Bad),
    // §3.1.2.11 baddate: malformed Date, a header a proxy does not use: the
    // RFC says an element SHOULD accept it; pass on untouched.
    ("baddate", Good),
    // §3.1.2.12 regbadct: Contact URI with unescaped '?' headers outside
    // <>; the proxy does not interpret Contact: the registrar's problem.
    ("regbadct", Good),
    // §3.1.2.13 badaspec: spaces inside <> of To; the RFC allows an element
    // to be liberal: we trim them (To still parses with a valid URI).
    ("badaspec", Good),
    // §3.1.2.14 baddn: unquoted display name with a comma; liberal accept
    // as the RFC permits (display names are not interpreted by a proxy).
    ("baddn", Good),
    // §3.1.2.15 badvers: SIP/7.0 in the request line → 505 Version Not
    // Supported (RFC 3261 §7.1 SIP-Version, §21.5.7).
    ("badvers", Version),
    // §3.1.2.16 mismatch01: CSeq method ≠ request method (§8.1.1.5) → 400.
    ("mismatch01", Bad),
    // §3.1.2.17 mismatch02: same, with an unknown method → 400.
    ("mismatch02", Bad),
    // §3.1.2.18 multi01: several To/From/Call-ID/CSeq (§7.3.1) → 400.
    ("multi01", Bad),
    // §3.1.2.19 mcl01: two Content-Length values, framing ambiguous → 400.
    ("mcl01", Bad),
    // §3.1.2.20 bcast: a well-formed response; the broadcast address in a
    // lower Via is for the response path to refuse, not the parser.
    ("bcast", Good),
    // §3.1.2.21 bigcode: status code 4294967301 is not 3 digits in
    // 100..=699 (RFC 3261 §7.2) → 400, i.e. the response is dropped.
    ("bigcode", Bad),
    // §3.2.1 badbranch: "z9hG4bK" alone is a valid (cookie-only) branch.
    ("badbranch", Good),
    // §3.3.1 insuf: missing To, From, Call-ID (RFC 3261 §8.1.1) → 400.
    ("insuf", Bad),
    // §3.3 unkscm: unknown Request-URI scheme; a proxy forwards it or
    // answers 416 by policy, it must parse.
    ("unkscm", Good),
    // §3.3 novelsc: novel scheme; same as unkscm.
    ("novelsc", Good),
    // §3.3 unksm2: unknown schemes in To/From/Contact are legal.
    ("unksm2", Good),
    // §3.3 bext01: Proxy-Require of an unknown option: parsed here, the
    // proxy core answers 420 with Unsupported.
    ("bext01", Good),
    // §3.3 invut: unknown Content-Type is for the UA to reject.
    ("invut", Good),
    // §3.3 regaut01: unknown auth scheme is for the registrar.
    ("regaut01", Good),
    // §3.3 regescrt: escaped Route header inside <> of a Contact is fine.
    ("regescrt", Good),
    // §3.3 sdp01: Accept mismatch is for the UA.
    ("sdp01", Good),
    // §3.4 inv2543: RFC 2543 request (no branch cookie, no Max-Forwards,
    // no Content-Length: body = rest of the datagram): must be accepted.
    ("inv2543", Good),
    // §3.3 zeromf: Max-Forwards 0 is well-formed; the core answers 483.
    ("zeromf", Good),
    // §3.3 cparam01: Contact param in addr-spec form.
    ("cparam01", Good),
    // §3.3 cparam02: URI param in name-addr form.
    ("cparam02", Good),
    // §3.1.2 ncl: negative Content-Length (RFC 3261 §20.14 1*DIGIT) → 400.
    ("ncl", Bad),
];

/// RFC 5118 messages (sections of RFC 5118).
const RFC5118: &[(&str, Verdict)] = &[
    // §4.1 valid IPv6 reference in Request-URI, Via and Contact.
    ("ipv6-good", Good),
    // §4.2 Request-URI "sip:2001:db8::10" has an IPv6 host without
    // brackets (RFC 3261 §19.1.1, §25.1 IPv6reference) → 400.
    ("ipv6-bad", Bad),
    // §4.3 "sip:[2001:db8::10:5070]": the port is part of the address.
    ("port-ambiguous", Good),
    // §4.4 "sip:[2001:db8::10]:5070": port 5070.
    ("port-unambiguous", Good),
    // §4.5 received with and without IPv6 delimiters: accept both.
    ("via-received-param-with-delim", Good),
    ("via-received-param-no-delim", Good),
    // §4.6 IPv6 in SDP: body is opaque to the proxy.
    ("ipv6-in-sdp", Good),
    // §4.7 multiple IPv4/IPv6 addresses in Vias.
    ("mult-ip-in-header", Good),
    // §4.8 multiple IP addresses in SDP.
    ("mult-ip-in-sdp", Good),
    // §4.9 IPv4-mapped IPv6 addresses.
    ("ipv4-mapped-ipv6", Good),
    // §4.10 three colons (bug in RFC 3261's ABNF) and the correct form:
    // the RFC asks parsers to be liberal; both are accepted.
    ("ipv6-bug-abnf-3-colons", Good),
    ("ipv6-correct-abnf-2-colons", Good),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn load_4475(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("rfc4475").join(format!("{name}.dat"))).unwrap()
}

fn load_5118_raw(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("rfc5118").join(name)).unwrap()
}

/// Deliberate normalisation of the RFC 5118 files (see data README):
/// 1. line endings become CRLF (bare LF → CRLF; a no-op for files that are
///    already CRLF);
/// 2. a missing closing blank line after the headers is added;
/// 3. Content-Length is rewritten to the real body length, because the
///    RFC's values were counted with bare-LF line endings.
///
/// The raw files are tested too (`rfc5118_raw_files`): there a too-small
/// Content-Length simply truncates the body, like dblreq.
fn normalise_5118(raw: &[u8]) -> Vec<u8> {
    let mut crlf = Vec::with_capacity(raw.len() + 64);
    for (i, &c) in raw.iter().enumerate() {
        if c == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            crlf.push(b'\r');
        }
        crlf.push(c);
    }
    let text = crlf;
    let (head, body) = match find(&text, b"\r\n\r\n") {
        Some(i) => (&text[..i + 2], &text[i + 4..]),
        None => {
            let head = if text.ends_with(b"\r\n") {
                &text[..]
            } else {
                &text[..0]
            };
            (head, &[][..])
        }
    };
    let mut out = Vec::new();
    for line in head.split_inclusive(|&c| c == b'\n') {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"content-length:") || lower.starts_with(b"l:") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn verdict_of(raw: &[u8]) -> Result<Verdict, String> {
    let m = Message::parse(raw).map_err(|e| format!("parse error: {e}"))?;
    match m.validate() {
        Ok(()) => Ok(Good),
        Err(Invalid { code: 400, .. }) => Ok(Bad),
        Err(Invalid { code: 505, .. }) => Ok(Version),
        Err(other) => Err(format!("unexpected {other}")),
    }
}

#[test]
fn every_data_file_has_a_verdict() {
    for (dir, table) in [("rfc4475", RFC4475), ("rfc5118", RFC5118)] {
        for entry in std::fs::read_dir(data_dir().join(dir)).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            let name = file.trim_end_matches(".dat");
            assert!(
                table.iter().any(|(n, _)| *n == name),
                "{dir}/{file} has no verdict"
            );
        }
    }
    assert_eq!(RFC4475.len(), 49);
    assert_eq!(RFC5118.len(), 12);
}

#[test]
fn rfc4475_verdicts() {
    let mut failures = Vec::new();
    for &(name, want) in RFC4475 {
        let got = verdict_of(&load_4475(name));
        if got != Ok(want) {
            let detail = Message::parse(&load_4475(name)).map(|m| m.validate());
            failures.push(format!("{name}: want {want:?}, got {got:?} ({detail:?})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rfc5118_verdicts() {
    let mut failures = Vec::new();
    for &(name, want) in RFC5118 {
        let raw = normalise_5118(&load_5118_raw(name));
        let got = verdict_of(&raw);
        if got != Ok(want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.len(), raw.len(), "{name}: normalised framing");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The files as shipped: same verdicts; a Content-Length smaller than the
/// body (counted with bare LF in the RFC) frames the body short, and the
/// surplus is ignored as datagram trailer (RFC 3261 §18.3).
#[test]
fn rfc5118_raw_files() {
    for &(name, want) in RFC5118 {
        let raw = load_5118_raw(name);
        assert_eq!(verdict_of(&raw), Ok(want), "{name}");
        let m = Message::parse(&raw).unwrap();
        assert_eq!(Some(m.body().len() as u64), m.content_length(), "{name}");
    }
}

/// `raw` with the CRLF of every `every`-th line of its start line, headers
/// and empty line turned into a bare LF (`every` 1: all of them; 2: mixed
/// line ends).
fn with_bare_lf(raw: &[u8], every: usize) -> Vec<u8> {
    let m = Message::parse(raw).unwrap();
    let (start, end) = (m.start_line_range().start, m.body_start());
    let mut out = raw[..start].to_vec();
    let mut line = 0;
    let mut i = start;
    while i < end {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            if line % every == 0 {
                i += 1;
                line += 1;
                continue;
            }
            line += 1;
        }
        out.push(raw[i]);
        i += 1;
    }
    out.extend_from_slice(&raw[end..]);
    out
}

/// Bare LF line ends (RFC 3261 §7 wants CRLF; RFC 4475 §3.1.2 lets an
/// element be liberal in what it accepts) are accepted, not refused: every
/// verdict above stays what it was. The proxy core handles such a datagram
/// as its CRLF copy (`crlf_normalised`), so nothing leaves with mixed line
/// ends. Checked on every torture message turned to bare-LF and to mixed
/// line ends (the data files themselves are all CRLF): the same verdict,
/// and the copy is the original byte for byte (the body, LFs and all,
/// untouched; Content-Length still right). No torture message has a bare
/// CR in its header section, which `validate` refuses with 400.
#[test]
fn bare_lf_line_ends_are_normalised_with_the_same_verdict() {
    for (name, raw) in corpus() {
        let m = Message::parse(&raw).unwrap();
        assert!(!m.has_bare_cr() && !m.has_bare_lf(), "{name}");
        assert_eq!(crlf_normalised(&raw), None, "{name}");
        for every in [1, 2, 3] {
            let lf = with_bare_lf(&raw, every);
            assert_ne!(lf, raw, "{name}");
            assert!(Message::parse(&lf).unwrap().has_bare_lf(), "{name}");
            assert_eq!(verdict_of(&lf), verdict_of(&raw), "{name} every {every}");
            let copy = crlf_normalised(&lf).unwrap();
            assert!(copy == raw, "{name} every {every}: the CRLF copy differs");
        }
    }
}

/// Concrete fields of well-formed messages:
/// (name, method or "" for a response, Request-URI, top Via host, top Via
/// branch, Call-ID).
type Fields = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

const FIELDS_4475: &[Fields] = &[
    (
        "wsinv",
        "INVITE",
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
        "192.0.2.2",
        Some("390skdjuw"),
        "wsinv.ndaksdj@192.0.2.1",
    ),
    (
        "intmeth",
        "!interesting-Method0123456789_*+`.%indeed'~",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "host1.example.com",
        Some("z9hG4bK-.!%66*_+`'~"),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
    ),
    (
        "esc01",
        "INVITE",
        "sip:sips%3Auser%40example.com@example.net",
        "host5.example.net",
        Some("z9hG4bKkdjuw"),
        "esc01.239409asdfakjkn23onasd0-3234",
    ),
    (
        "escnull",
        "REGISTER",
        "sip:example.com",
        "host5.example.com",
        Some("z9hG4bKkdjuw"),
        "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
    ),
    (
        "esc02",
        "RE%47IST%45R",
        "sip:registrar.example.com",
        "host.example.com",
        Some("z9hG4bK209%fzsnel234"),
        "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
    ),
    (
        "lwsdisp",
        "OPTIONS",
        "sip:user@example.com",
        "funky.example.com",
        Some("z9hG4bKkdjuw"),
        "lwsdisp.1234abcd@funky.example.com",
    ),
    (
        "longreq",
        "INVITE",
        "sip:user@example.com",
        "sip33.example.com",
        None,
        "longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid",
    ),
    (
        "dblreq",
        "REGISTER",
        "sip:example.com",
        "192.0.2.125",
        Some("z9hG4bKkdjuw23492"),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
    ),
    (
        "semiuri",
        "OPTIONS",
        "sip:user;par=u%40example.net@example.com",
        "192.0.2.1",
        Some("z9hG4bKkdjuw"),
        "semiuri.0ha0isndaksdj",
    ),
    (
        "transports",
        "OPTIONS",
        "sip:user@example.com",
        "t1.example.com",
        Some("z9hG4bKkdjuw"),
        "transports.kijh4akdnaqjkwendsasfdj",
    ),
    (
        "mpart01",
        "MESSAGE",
        "sip:kumiko@example.org",
        "127.0.0.1",
        Some("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"),
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
    ),
    (
        "unreason",
        "",
        "",
        "192.0.2.198",
        Some("z9hG4bK1324923"),
        "unreason.1234ksdfak3j2erwedfsASdf",
    ),
    (
        "noreason",
        "",
        "",
        "192.0.2.105",
        Some("z9hG4bK2398ndaoe"),
        "noreason.asndj203insdf99223ndf",
    ),
    (
        "trws",
        "OPTIONS",
        "sip:remote-target@example.com",
        "host1.examle.com",
        Some("z9hG4bK299342093"),
        "trws.oicu34958239neffasdhr2345r",
    ),
    (
        "baddate",
        "INVITE",
        "sip:user@example.com",
        "host.example.com",
        Some("z9hG4bKkdjuw"),
        "baddate.239423mnsadf3j23lj42--sedfnm234",
    ),
    (
        "regbadct",
        "REGISTER",
        "sip:example.com",
        "135.180.130.133",
        Some("z9hG4bKkdjuw"),
        "regbadct.k345asrl3fdbv@10.0.0.1",
    ),
    (
        "badaspec",
        "OPTIONS",
        "sip:user@example.org",
        "host4.example.com",
        Some("z9hG4bKkdju43234"),
        "badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
    ),
    (
        "baddn",
        "OPTIONS",
        "sip:t.watson@example.org",
        "c.example.com",
        Some("z9hG4bKkdjuw"),
        "baddn.31415@c.example.com",
    ),
    (
        "bcast",
        "",
        "",
        "192.0.2.198",
        Some("z9hG4bK1324923"),
        "bcast.0384840201234ksdfak3j2erwedfsASdf",
    ),
    (
        "badbranch",
        "OPTIONS",
        "sip:user@example.com",
        "192.0.2.1",
        Some("z9hG4bK"),
        "badbranch.sadonfo23i420jv0as0derf3j3n",
    ),
    (
        "unkscm",
        "OPTIONS",
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "host9.example.com",
        Some("z9hG4bKkdjuw39234"),
        "unkscm.nasdfasser0q239nwsdfasdkl34",
    ),
    (
        "novelsc",
        "OPTIONS",
        "soap.beep://192.0.2.103:3002",
        "host9.example.com",
        Some("z9hG4bKkdjuw39234"),
        "novelsc.asdfasser0q239nwsdfasdkl34",
    ),
    (
        "unksm2",
        "REGISTER",
        "sip:example.com",
        "192.0.2.21",
        Some("z9hG4bKkdjuw"),
        "unksm2.daksdj@hyphenated-host.example.com",
    ),
    (
        "bext01",
        "OPTIONS",
        "sip:user@example.com",
        "fold-and-staple.example.com",
        Some("z9hG4bKkdjuw"),
        "bext01.0ha0isndaksdj",
    ),
    (
        "invut",
        "INVITE",
        "sip:user@example.com",
        "somehost.example.com",
        Some("z9hG4bKkdjuw"),
        "invut.0ha0isndaksdjadsfij34n23d",
    ),
    (
        "regaut01",
        "REGISTER",
        "sip:example.com",
        "192.0.2.253",
        Some("z9hG4bKkdjuw"),
        "regaut01.0ha0isndaksdj",
    ),
    (
        "regescrt",
        "REGISTER",
        "sip:example.com",
        "host5.example.com",
        Some("z9hG4bKkdjuw"),
        "regescrt.k345asrl3fdbv@192.0.2.1",
    ),
    (
        "sdp01",
        "INVITE",
        "sip:user@example.com",
        "192.0.2.15",
        Some("z9hG4bKkdjuw"),
        "sdp01.ndaksdj9342dasdd",
    ),
    (
        "inv2543",
        "INVITE",
        "sip:UserB@example.com",
        "iftgw.example.com",
        None,
        "inv2543.1717@ift.client.example.com",
    ),
    (
        "zeromf",
        "OPTIONS",
        "sip:user@example.com",
        "host1.example.com",
        Some("z9hG4bKkdjuw2349i"),
        "zeromf.jfasdlfnm2o2l43r5u0asdfas",
    ),
    (
        "cparam01",
        "REGISTER",
        "sip:example.com",
        "saturn.example.com",
        Some("z9hG4bKkdjuw"),
        "cparam01.70710@saturn.example.com",
    ),
    (
        "cparam02",
        "REGISTER",
        "sip:example.com",
        "saturn.example.com",
        Some("z9hG4bKkdjuw"),
        "cparam02.70710@saturn.example.com",
    ),
];

#[test]
fn rfc4475_fields_of_well_formed_messages() {
    let good: Vec<_> = RFC4475.iter().filter(|(_, v)| *v == Good).collect();
    assert_eq!(
        good.len(),
        FIELDS_4475.len(),
        "every Ok message has field checks"
    );
    for &(name, method, ruri, via_host, branch, call_id) in FIELDS_4475 {
        let raw = load_4475(name);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.validate(), Ok(()), "{name}");
        if method.is_empty() {
            assert!(!m.is_request(), "{name}");
            assert!(m.status().is_some(), "{name}");
        } else {
            assert_eq!(m.method(), Some(method), "{name}");
            assert_eq!(m.request_uri(), Some(ruri), "{name}");
            assert_eq!(m.cseq().unwrap().1, method, "{name}");
        }
        let top = m.top_via().unwrap();
        assert_eq!(top.host, via_host, "{name}");
        assert_eq!(top.branch, branch, "{name}");
        assert_eq!(m.call_id(), Some(call_id), "{name}");
        // Body length equals Content-Length; without one the body is the
        // rest of the datagram.
        match m.content_length() {
            Some(cl) => assert_eq!(m.body().len() as u64, cl, "{name}"),
            None => assert_eq!(m.len(), raw.len(), "{name}"),
        }
        assert!(m.from().is_some() && m.to().is_some(), "{name}");
    }
}

#[test]
fn specific_details() {
    // dblreq: len() stops at Content-Length 0; the INVITE after it is ignored.
    let raw = load_4475("dblreq");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.body(), b"");
    assert_eq!(m.len(), m.body_start());
    assert!(m.len() < raw.len());
    assert!(raw[m.len()..].starts_with(b"\r\nINVITE"));

    // wsinv: folding, "Via  :", multi-element v:, whitespace in CSeq.
    let raw = load_4475("wsinv");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.cseq(), Some((9, "INVITE")));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.to().unwrap().tag, Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag, Some("98asjd8"));
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[2].branch, Some("z9hG4bK30239"));
    assert_eq!(m.find("NewFangledHeader").count(), 1);
    assert_eq!(m.value(m.find("s").next().unwrap()), "");
    assert_eq!(m.body().len(), 150);

    // longreq: 34 Via headers in all spellings, incl. "V :" and "Via  :".
    let m_raw = load_4475("longreq");
    let m = Message::parse(&m_raw).unwrap();
    assert_eq!(m.all(HeaderName::Via).count(), 34);
    assert_eq!(m.vias().count(), 34);
    assert_eq!(m.vias().last().unwrap().received, Some("192.0.2.5"));

    // mpart01: binary body preserved byte-exact; rport flag.
    let raw = load_4475("mpart01");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.body().len(), 553);
    assert_eq!(m.body(), &raw[raw.len() - 553..]);
    assert!(m.body().iter().any(|&b| b >= 0x80));
    assert_eq!(m.top_via().unwrap().rport, Some(None));
    assert_eq!(m.top_via().unwrap().port, Some(5070));

    // semiuri: user part with ';'.
    let m_raw = load_4475("semiuri");
    let m = Message::parse(&m_raw).unwrap();
    let uri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(uri.user, Some("user;par=u%40example.net"));
    assert_eq!(uri.host, "example.com");

    // esc02: "C%6Fntact" is an unknown header, not Contact.
    let raw = load_4475("esc02");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.all(HeaderName::Contact).count(), 2);
    assert_eq!(m.find("C%6Fntact").count(), 1);

    // unreason / noreason: reason phrases.
    let raw = load_4475("noreason");
    assert_eq!(Message::parse(&raw).unwrap().reason(), Some(""));
    let raw = load_4475("unreason");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().starts_with("= 2**3 * 5**2 "));

    // badinv01: no parseable top Via at all (so the core drops it).
    let raw = load_4475("badinv01");
    assert!(Message::parse(&raw).unwrap().top_via().is_none());

    // Specific reasons of a few rejections.
    let reason = |n: &str| {
        Message::parse(&load_4475(n))
            .unwrap()
            .validate()
            .unwrap_err()
    };
    assert_eq!(
        reason("badvers"),
        Invalid {
            code: 505,
            reason: "Version Not Supported"
        }
    );
    assert_eq!(reason("mismatch01").reason, "CSeq Method Mismatch");
    assert_eq!(reason("clerr").reason, "Bad Content-Length");
    assert_eq!(reason("ncl").reason, "Bad Content-Length");
    assert_eq!(reason("mcl01").reason, "Multiple Content-Length");
    assert_eq!(reason("escruri").reason, "Bad Request-URI");
    assert_eq!(reason("bigcode").reason, "Bad Status Code");
    assert_eq!(reason("quotbal").reason, "Bad To");
    assert_eq!(reason("badinv01").reason, "Bad Via");

    // RFC 5118 IPv6 details.
    let n = |name: &str| normalise_5118(&load_5118_raw(name));
    let raw = n("port-ambiguous");
    let m = Message::parse(&raw).unwrap();
    let u = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!((u.host, u.port), ("[2001:db8::10:5070]", None));
    let raw = n("port-unambiguous");
    let m = Message::parse(&raw).unwrap();
    let u = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!((u.host, u.port), ("[2001:db8::10]", Some(5070)));
    let raw = n("mult-ip-in-header");
    let m = Message::parse(&raw).unwrap();
    let hosts: Vec<_> = m.vias().map(|v| (v.host, v.port)).collect();
    assert_eq!(
        hosts,
        [
            ("[2001:db8::9:1]", Some(6050)),
            ("192.0.2.1", None),
            ("[2001:db8::9:255]", None)
        ]
    );
    let raw = n("via-received-param-with-delim");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.top_via().unwrap().received, Some("[2001:db8::9:255]"));
    let raw = n("via-received-param-no-delim");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.top_via().unwrap().received, Some("2001:db8::9:255"));
    let raw = n("ipv4-mapped-ipv6");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.top_via().unwrap().host, "[::ffff:192.0.2.10]");
    assert_eq!(m.top_via().unwrap().port, Some(19823));
    assert_eq!(m.body().len(), 245);
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = RFC4475
        .iter()
        .map(|(n, _)| (n.to_string(), load_4475(n)))
        .collect();
    for (n, _) in RFC5118 {
        all.push((n.to_string(), load_5118_raw(n)));
        all.push((
            format!("{n} (normalised)"),
            normalise_5118(&load_5118_raw(n)),
        ));
    }
    all
}

#[test]
fn empty_splice_is_byte_exact() {
    for (name, raw) in corpus() {
        let mut out = Vec::new();
        Splice::new().apply(&raw, &mut out);
        assert_eq!(out, raw, "{name}");
    }
}

/// Calls every accessor and checks the structural invariants; must never
/// panic whatever the input.
fn exercise(buf: &[u8]) {
    let Ok(m) = Message::parse(buf) else {
        return;
    };
    let _ = m.validate();
    assert!(m.len() <= buf.len());
    assert!(m.headers_end() <= m.body_start() && m.body_start() <= m.len());
    let _ = (
        m.method(),
        m.request_uri(),
        m.version(),
        m.status(),
        m.reason(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
        m.max_forwards(),
        m.content_length(),
    );
    if let Some(u) = m.request_uri().and_then(Uri::parse) {
        let _ = (u.param("lr"), u.is_sip());
    }
    for h in m.headers() {
        assert!(h.line_range.end <= m.headers_end());
        assert!(h.value_range.end <= h.line_range.end);
        let v = m.value(h);
        for (off, elem) in split_list(v) {
            assert!(off + elem.len() <= v.len());
            if let Some(na) = NameAddr::parse(elem)
                && let Some(u) = Uri::parse(na.uri)
            {
                let _ = u.param("transport");
            }
        }
        let _ = m.find(m.name_text(h)).count();
    }
    for v in m.vias() {
        assert!(v.range.end <= buf.len() && v.params_end <= buf.len());
        let _ = v.has_magic_cookie();
    }
    if let Some(copy) = crlf_normalised(buf) {
        let c = Message::parse(&copy).expect("the CRLF copy parses");
        assert!(!c.has_bare_lf());
        assert_eq!(c.body(), m.body());
    }
    if let Some(r) = m.top_via_removal() {
        let mut s = Splice::new();
        s.delete(r);
        s.insert(m.headers_end(), "Max-Forwards: 70\r\n");
        let out = s.to_vec(buf);
        let _ = Message::parse(&out).map(|m2| m2.validate());
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b":;,\"<>[]@?=/ \t\r\n\\\x00\x7f\xff\xc3";

fn mutate(rng: &mut XorShift, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        let byte = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(5) {
            0 if at < v.len() => v[at] = byte,
            1 if at < v.len() => {
                v.remove(at);
            }
            2 => v.insert(at, byte),
            3 => v.truncate(at),
            _ if at < v.len() => {
                // Duplicate a chunk (repeats headers, separators, digits).
                let end = (at + rng.below(40)).min(v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            _ => v.push(byte),
        }
    }
    v
}

#[test]
fn robustness_prefixes_and_mutations() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for (_name, raw) in corpus() {
        for end in 0..=raw.len() {
            exercise(&raw[..end]);
        }
        for _ in 0..300 {
            exercise(&mutate(&mut rng, &raw));
        }
    }
    for junk in [
        &b""[..],
        b"\r\n",
        b"\n\n\n",
        b" ",
        b"SIP/2.0",
        b"SIP/2.0 \n\n",
        b"A B C\n\n",
        b"A  \n\n",
    ] {
        exercise(junk);
    }
}
