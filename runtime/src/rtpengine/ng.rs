//! rtpengine's ng control protocol on the wire: a datagram is
//! `COOKIE SPACE DICTIONARY`, the dictionary in bencode ([`super::bencode`]);
//! the reply carries the request's cookie.
//!
//! - [`Request`]: `ping`, `offer`, `answer`, `delete` (and `query`, for
//!   tests and tools) with the SIP identifiers of the call, the SDP, and
//!   the step's [`Flags`]; [`Request::encode`] writes the datagram.
//! - [`Flags`]: the `rtp_manage` flag string, words split into rtpengine's
//!   dictionary keys the way Kamailio's rtpengine module reads them (see
//!   [`Flags::parse`]), so a flag string written for Kamailio works here.
//! - [`Reply`]: a reply datagram: its cookie, `result` (`ok`, `pong`,
//!   `error`), `sdp`, `error-reason`, `warning`.
//! - [`Cookies`]: unique cookies: a random prefix per process and a
//!   counter. rtpengine remembers the cookies it answered for a while and
//!   answers a cookie it knows with the reply it sent then, without
//!   running the command again (that is how a retransmission is absorbed);
//!   a counter starting again at 1 after a restart, or one shared by two
//!   proxies, would get another request's old reply.
//!
//! Why bencode and not the JSON rtpengine also takes: bencode is what
//! rtpengine speaks natively (it converts JSON to bencode on arrival and
//! its reply back to JSON), and on this side encoding an offer with a
//! 400-byte SDP and decoding its reply took 0.6 µs in bencode against
//! 1.8 µs with serde_json and typed structs (SDP has a CR LF on every
//! line, which JSON escapes and unescapes).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::bencode::{self, DecodeError, Value, put_bytes};

/// The ng commands sipforge sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Ping,
    Offer,
    Answer,
    Delete,
    /// What rtpengine knows of a call (tests and tools; `rtp_manage` does
    /// not send it).
    Query,
}

impl Command {
    /// The command as rtpengine names it (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
            Command::Query => "query",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a flag string cannot be used (found when the routes are built).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagError {
    /// The word in question.
    pub word: String,
    pub reason: &'static str,
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtpengine flag `{}`: {}", self.word, self.reason)
    }
}

impl std::error::Error for FlagError {}

/// The flags of an `rtp_manage` step, split into the ng dictionary keys
/// they stand for. Parse once ([`Flags::parse`]), use for every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `flags`: every word that is not one of the forms below (`trust-address`,
    /// `symmetric`, `strict-source`, `codec-strip-PCMA`, ...), as written.
    pub flags: Vec<String>,
    /// `replace`: from `replace-origin`, `replace-session-connection`, ...
    pub replace: Vec<String>,
    /// `rtcp-mux`: from `rtcp-mux-offer`, `rtcp-mux-demux`, ...
    pub rtcp_mux: Vec<String>,
    /// `SDES`: from `SDES-off`, `SDES-no-AES_CM_128_HMAC_SHA1_32`, ...
    pub sdes: Vec<String>,
    /// `OSRTP`: from `OSRTP-offer`, `OSRTP-accept`, ...
    pub osrtp: Vec<String>,
    /// `direction`: the interfaces media comes from and goes to
    /// (`direction=priv direction=pub`, `in-iface=`/`out-iface=`, or the
    /// legacy words `internal`/`external`); at most two.
    pub direction: Vec<String>,
    /// Every other `key=value`: `ICE=force`, `DTLS=off`,
    /// `transport-protocol=RTP/SAVP`, `address-family=IP6`,
    /// `media-address=192.0.2.1`, `label=caller`, `TOS=184`,
    /// `delete-delay=0`, ... sent as the string value of that key (rtpengine
    /// reads its integer options from strings too). A key given twice
    /// keeps the last value.
    pub values: Vec<(String, String)>,
}

/// Keys a flag may not set: they come from the message.
const FROM_THE_MESSAGE: &[&str] = &[
    "command",
    "call-id",
    "from-tag",
    "to-tag",
    "via-branch",
    "sdp",
    "received-from",
];

/// Transport protocols that may be written as a word of their own
/// (`RTP/SAVP` for `transport-protocol=RTP/SAVP`).
const PROTOCOLS: &[&str] = &[
    "RTP/AVP",
    "RTP/SAVP",
    "RTP/AVPF",
    "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
];

impl Flags {
    /// Read a flag string: words separated by white space.
    ///
    /// - `replace-X`, `rtcp-mux-X`, `SDES-X`, `OSRTP-X`: X joins the list of
    ///   that name (`replace-origin` → `replace: [origin]`); so does the
    ///   `key=X` form of those four and of `flags`;
    /// - `direction=X` (twice for the two sides), `in-iface=X` (the side
    ///   the message comes from), `out-iface=X` (the side it goes to), and
    ///   the legacy words `internal` and `external`: `direction`;
    /// - a transport protocol alone (`RTP/AVP`, `RTP/SAVPF`,
    ///   `UDP/TLS/RTP/SAVPF`, ...): `transport-protocol`;
    /// - any other `key=value`: that key with that string value;
    /// - any other word: the `flags` list, as written (rtpengine ignores
    ///   a flag it does not know, with a warning in its log).
    ///
    /// Errors: a key or value left empty (`=x`, `ICE=`), a key that comes
    /// from the message (`call-id`, `from-tag`, `to-tag`, `via-branch`,
    /// `sdp`: `via-branch` is chosen by [`super::manage`]), more than two
    /// directions.
    pub fn parse(text: &str) -> Result<Flags, FlagError> {
        let mut f = Flags::default();
        let mut iface: [Option<String>; 2] = [None, None];
        for word in text.split_ascii_whitespace() {
            let err = |reason| {
                Err(FlagError {
                    word: word.to_string(),
                    reason,
                })
            };
            if let Some((key, value)) = word.split_once('=') {
                if key.is_empty() || value.is_empty() {
                    return err("a key=value with nothing on one side");
                }
                if FROM_THE_MESSAGE.contains(&key) {
                    return err("set from the SIP message, not from flags");
                }
                let value = value.to_string();
                match key {
                    "flags" => f.flags.push(value),
                    "replace" => f.replace.push(value),
                    "rtcp-mux" => f.rtcp_mux.push(value),
                    "SDES" => f.sdes.push(value),
                    "OSRTP" => f.osrtp.push(value),
                    "direction" => f.direction.push(value),
                    "in-iface" => iface[0] = Some(value),
                    "out-iface" => iface[1] = Some(value),
                    _ => match f.values.iter_mut().find(|(k, _)| k == key) {
                        Some((_, v)) => *v = value,
                        None => f.values.push((key.to_string(), value)),
                    },
                }
                continue;
            }
            let prefixed = [
                ("replace-", &mut f.replace),
                ("rtcp-mux-", &mut f.rtcp_mux),
                ("SDES-", &mut f.sdes),
                ("OSRTP-", &mut f.osrtp),
            ]
            .into_iter()
            .find_map(|(prefix, list)| Some((word.strip_prefix(prefix)?, list)));
            match prefixed {
                Some(("", _)) => return err("a prefix with nothing after it"),
                Some((rest, list)) => list.push(rest.to_string()),
                None if word == "internal" || word == "external" => {
                    f.direction.push(word.to_string())
                }
                None if PROTOCOLS.contains(&word) => {
                    match f.values.iter_mut().find(|(k, _)| k == "transport-protocol") {
                        Some((_, v)) => *v = word.to_string(),
                        None => f
                            .values
                            .push(("transport-protocol".to_string(), word.to_string())),
                    }
                }
                None => f.flags.push(word.to_string()),
            }
        }
        match iface {
            [None, None] => {}
            [from, to] if f.direction.is_empty() => {
                // One of the two alone: rtpengine's default for the other.
                f.direction = vec![
                    from.unwrap_or_else(|| "default".to_string()),
                    to.unwrap_or_else(|| "default".to_string()),
                ];
            }
            _ => {
                return Err(FlagError {
                    word: "in-iface/out-iface".to_string(),
                    reason: "both direction= and in-iface/out-iface",
                });
            }
        }
        if f.direction.len() > 2 {
            return Err(FlagError {
                word: f.direction.join(" "),
                reason: "more than two directions",
            });
        }
        Ok(f)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let lists: [(&str, &Vec<String>); 6] = [
            ("flags", &self.flags),
            ("replace", &self.replace),
            ("rtcp-mux", &self.rtcp_mux),
            ("SDES", &self.sdes),
            ("OSRTP", &self.osrtp),
            ("direction", &self.direction),
        ];
        for (key, items) in lists {
            if items.is_empty() {
                continue;
            }
            put_str(out, key);
            out.push(b'l');
            for item in items {
                put_str(out, item);
            }
            out.push(b'e');
        }
        for (key, value) in &self.values {
            put_str(out, key);
            put_str(out, value);
        }
    }
}

/// One ng request. Build it with [`Request::ping`], [`Request::offer`],
/// [`Request::answer`], [`Request::delete`] or [`Request::query`], then
/// [`Request::encode`] it with a cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub command: Command,
    /// Empty for `ping`.
    pub call_id: &'a str,
    /// For offer and answer, the tag of the side that made the offer;
    /// empty for `ping` and `query`.
    pub from_tag: &'a str,
    /// For an answer, the tag of the side that answers.
    pub to_tag: Option<&'a str>,
    /// Which fork of the call this is (see [`super::manage`]).
    pub via_branch: Option<&'a str>,
    pub sdp: Option<&'a [u8]>,
    pub flags: Option<&'a Flags>,
    /// The address the SIP message came from (rtpengine's `received-from`,
    /// used for media when the flags say `SIP-source-address`).
    pub received_from: Option<IpAddr>,
}

impl<'a> Request<'a> {
    fn new(command: Command, call_id: &'a str, from_tag: &'a str) -> Request<'a> {
        Request {
            command,
            call_id,
            from_tag,
            to_tag: None,
            via_branch: None,
            sdp: None,
            flags: None,
            received_from: None,
        }
    }

    /// Is rtpengine alive?
    pub fn ping() -> Request<'static> {
        Request::new(Command::Ping, "", "")
    }

    /// The offer in `sdp`, made by the side tagged `from_tag`; `to_tag` is
    /// the other side's when known (a re-INVITE, a late offer).
    pub fn offer(
        call_id: &'a str,
        from_tag: &'a str,
        to_tag: Option<&'a str>,
        sdp: &'a [u8],
        flags: &'a Flags,
    ) -> Request<'a> {
        Request {
            to_tag,
            sdp: Some(sdp),
            flags: Some(flags),
            ..Request::new(Command::Offer, call_id, from_tag)
        }
    }

    /// The answer in `sdp` from the side tagged `to_tag` to the offer made
    /// by the side tagged `from_tag`.
    pub fn answer(
        call_id: &'a str,
        from_tag: &'a str,
        to_tag: &'a str,
        sdp: &'a [u8],
        flags: &'a Flags,
    ) -> Request<'a> {
        Request {
            to_tag: Some(to_tag),
            sdp: Some(sdp),
            flags: Some(flags),
            ..Request::new(Command::Answer, call_id, from_tag)
        }
    }

    /// End the call (or, with `to_tag` or a via-branch, one fork of it).
    pub fn delete(
        call_id: &'a str,
        from_tag: &'a str,
        to_tag: Option<&'a str>,
        flags: &'a Flags,
    ) -> Request<'a> {
        Request {
            to_tag,
            flags: Some(flags),
            ..Request::new(Command::Delete, call_id, from_tag)
        }
    }

    /// What rtpengine knows of a call.
    pub fn query(call_id: &'a str) -> Request<'a> {
        Request::new(Command::Query, call_id, "")
    }

    pub fn with_via_branch(mut self, branch: Option<&'a str>) -> Request<'a> {
        self.via_branch = branch;
        self
    }

    pub fn with_received_from(mut self, ip: IpAddr) -> Request<'a> {
        self.received_from = Some(ip);
        self
    }

    /// The datagram: `cookie`, a space, the dictionary.
    pub fn encode(&self, cookie: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(cookie.len() + 1 + self.size_hint());
        out.extend_from_slice(cookie.as_bytes());
        out.push(b' ');
        self.encode_dict(&mut out);
        out
    }

    /// About how long the dictionary is.
    fn size_hint(&self) -> usize {
        160 + self.sdp.map_or(0, <[u8]>::len)
    }

    /// The dictionary alone (the client puts a cookie before it).
    pub fn dict(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        self.encode_dict(&mut out);
        out
    }

    fn encode_dict(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        put_str(out, "command");
        put_str(out, self.command.as_str());
        let mut field = |key: &str, value: &str| {
            if !value.is_empty() {
                put_str(out, key);
                put_str(out, value);
            }
        };
        field("call-id", self.call_id);
        field("from-tag", self.from_tag);
        field("to-tag", self.to_tag.unwrap_or(""));
        field("via-branch", self.via_branch.unwrap_or(""));
        if let Some(sdp) = self.sdp {
            put_str(out, "sdp");
            put_bytes(out, sdp);
        }
        if let Some(ip) = self.received_from {
            put_str(out, "received-from");
            out.push(b'l');
            put_str(out, if ip.is_ipv4() { "IP4" } else { "IP6" });
            put_str(out, &ip.to_string());
            out.push(b'e');
        }
        if let Some(flags) = self.flags {
            flags.encode(out);
        }
        out.push(b'e');
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// What rtpengine said of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `ok` (perhaps with a [`Reply::warning`]).
    Ok,
    /// `pong`: the reply to a ping.
    Pong,
    /// `error`, with a [`Reply::error_reason`].
    Error,
    /// Any other result (`load limit` exists, for proxies that announce
    /// they support it: sipforge does not).
    Other,
}

impl Outcome {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Pong => "pong",
            Outcome::Error => "error",
            Outcome::Other => "other",
        }
    }
}

/// Why a datagram is not an ng reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// No space after a cookie.
    NoCookie,
    /// A JSON reply (sipforge sends bencode, so it expects bencode).
    NotBencode,
    Decode(DecodeError),
    /// Bencode, but not a dictionary with a string `result`.
    NoResult,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NoCookie => f.write_str("no cookie"),
            ReplyError::NotBencode => f.write_str("not bencode"),
            ReplyError::Decode(e) => write!(f, "bad bencode: {e}"),
            ReplyError::NoResult => f.write_str("no result in the reply"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Split a datagram into its cookie and its dictionary bytes.
pub fn split_cookie(datagram: &[u8]) -> Result<(&[u8], &[u8]), ReplyError> {
    let space = datagram
        .iter()
        .position(|&c| c == b' ')
        .ok_or(ReplyError::NoCookie)?;
    if space == 0 {
        return Err(ReplyError::NoCookie);
    }
    Ok((&datagram[..space], &datagram[space + 1..]))
}

/// A reply, with what `rtp_manage` needs taken out of it (owned, to be
/// kept while the message waits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub cookie: Vec<u8>,
    pub outcome: Outcome,
    /// The `result` as written.
    pub result: String,
    /// The rewritten SDP (offer and answer).
    pub sdp: Option<Vec<u8>>,
    pub error_reason: Option<String>,
    pub warning: Option<String>,
}

impl Reply {
    /// Read a reply datagram.
    pub fn parse(datagram: &[u8]) -> Result<Reply, ReplyError> {
        let (cookie, body) = split_cookie(datagram)?;
        if body.first() == Some(&b'{') {
            return Err(ReplyError::NotBencode);
        }
        let dict = bencode::decode(body).map_err(ReplyError::Decode)?;
        Reply::of(cookie, &dict)
    }

    /// The reply in an already decoded dictionary.
    pub fn of(cookie: &[u8], dict: &Value<'_>) -> Result<Reply, ReplyError> {
        let result = dict
            .get("result")
            .and_then(Value::as_str)
            .ok_or(ReplyError::NoResult)?;
        let outcome = match result {
            "ok" => Outcome::Ok,
            "pong" => Outcome::Pong,
            "error" => Outcome::Error,
            _ => Outcome::Other,
        };
        let text = |key| {
            dict.get(key)
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        Ok(Reply {
            cookie: cookie.to_vec(),
            outcome,
            result: result.to_string(),
            sdp: dict
                .get("sdp")
                .and_then(Value::as_bytes)
                .map(<[u8]>::to_vec),
            error_reason: text("error-reason"),
            warning: text("warning"),
        })
    }
}

/// Unique cookies: `<prefix>_<counter>`, the prefix random per process.
#[derive(Debug)]
pub struct Cookies {
    prefix: String,
    next: AtomicU64,
}

impl Cookies {
    /// A random prefix (8 hex digits from the std's randomly keyed hasher,
    /// mixed with the process id and the time).
    pub fn new() -> Cookies {
        use std::hash::{BuildHasher, RandomState};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let word = RandomState::new().hash_one((std::process::id(), now));
        Cookies::with_prefix(&format!("{:08x}", word as u32))
    }

    /// A fixed prefix (tests).
    pub fn with_prefix(prefix: &str) -> Cookies {
        Cookies {
            prefix: prefix.to_string(),
            next: AtomicU64::new(1),
        }
    }

    /// The next cookie.
    pub fn next_cookie(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}_{n}", self.prefix)
    }
}

impl Default for Cookies {
    fn default() -> Cookies {
        Cookies::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_request(datagram: &[u8]) -> (String, Value<'_>) {
        let (cookie, body) = split_cookie(datagram).unwrap();
        (
            String::from_utf8(cookie.to_vec()).unwrap(),
            bencode::decode(body).unwrap(),
        )
    }

    fn strings(v: Option<&Value<'_>>) -> Vec<String> {
        v.and_then(Value::as_list)
            .unwrap_or(&[])
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn ping_is_the_documented_datagram() {
        assert_eq!(
            Request::ping().encode("5323_1"),
            b"5323_1 d7:command4:pinge"
        );
    }

    #[test]
    fn offer_carries_the_call_and_the_split_flags() {
        let flags = Flags::parse(
            "replace-origin replace-session-connection trust-address ICE=remove \
             rtcp-mux-demux RTP/AVP direction=priv direction=pub SDES-off TOS=184",
        )
        .unwrap();
        let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
        let req = Request::offer("cid@host", "ft", None, sdp, &flags)
            .with_via_branch(Some("z9hG4bKsf1"))
            .with_received_from("192.0.2.1".parse().unwrap());
        let datagram = req.encode("ab12_7");
        let (cookie, d) = decode_request(&datagram);
        assert_eq!(cookie, "ab12_7");
        let s = |k| d.get(k).and_then(Value::as_str);
        assert_eq!(s("command"), Some("offer"));
        assert_eq!(s("call-id"), Some("cid@host"));
        assert_eq!(s("from-tag"), Some("ft"));
        assert_eq!(d.get("to-tag"), None);
        assert_eq!(s("via-branch"), Some("z9hG4bKsf1"));
        assert_eq!(d.get("sdp").and_then(Value::as_bytes), Some(&sdp[..]));
        assert_eq!(strings(d.get("received-from")), ["IP4", "192.0.2.1"]);
        assert_eq!(strings(d.get("flags")), ["trust-address"]);
        assert_eq!(strings(d.get("replace")), ["origin", "session-connection"]);
        assert_eq!(strings(d.get("rtcp-mux")), ["demux"]);
        assert_eq!(strings(d.get("SDES")), ["off"]);
        assert_eq!(strings(d.get("direction")), ["priv", "pub"]);
        assert_eq!(s("ICE"), Some("remove"));
        assert_eq!(s("transport-protocol"), Some("RTP/AVP"));
        assert_eq!(s("TOS"), Some("184"));
    }

    #[test]
    fn answer_and_delete() {
        let flags = Flags::parse("").unwrap();
        let datagram = Request::answer("c", "a", "b", b"v=0\r\n", &flags).encode("x_1");
        assert_eq!(
            datagram,
            b"x_1 d7:command6:answer7:call-id1:c8:from-tag1:a6:to-tag1:b3:sdp5:v=0\r\ne"
        );
        let flags = Flags::parse("delete-delay=0").unwrap();
        let datagram = Request::delete("c", "a", None, &flags).encode("x_2");
        assert_eq!(
            datagram,
            &b"x_2 d7:command6:delete7:call-id1:c8:from-tag1:a12:delete-delay1:0e"[..]
        );
        let datagram = Request::query("c").encode("x_3");
        assert_eq!(datagram, b"x_3 d7:command5:query7:call-id1:ce");
    }

    #[test]
    fn ipv6_received_from() {
        let flags = Flags::default();
        let d = Request::offer("c", "a", None, b"v=0", &flags)
            .with_received_from("2001:db8::1".parse().unwrap())
            .encode("k");
        let (_, v) = decode_request(&d);
        assert_eq!(strings(v.get("received-from")), ["IP6", "2001:db8::1"]);
    }

    #[test]
    fn flag_words_map_like_kamailio() {
        let f = Flags::parse(
            "  symmetric\tOSRTP-offer codec-strip-PCMA in-iface=priv out-iface=pub \
             label=callee ICE=force ICE=remove RTP/SAVPF replace=origin flags=asymmetric \
             SDES-no-AES_CM_128_HMAC_SHA1_32 internal ",
        );
        assert_eq!(
            f.unwrap_err().reason,
            "both direction= and in-iface/out-iface",
            "`internal` is a direction"
        );
        let f = Flags::parse(
            "symmetric OSRTP-offer codec-strip-PCMA in-iface=priv out-iface=pub \
             label=callee ICE=force ICE=remove RTP/SAVPF replace=origin flags=asymmetric \
             SDES-no-AES_CM_128_HMAC_SHA1_32",
        )
        .unwrap();
        assert_eq!(f.flags, ["symmetric", "codec-strip-PCMA", "asymmetric"]);
        assert_eq!(f.osrtp, ["offer"]);
        assert_eq!(f.sdes, ["no-AES_CM_128_HMAC_SHA1_32"]);
        assert_eq!(f.replace, ["origin"]);
        assert_eq!(f.direction, ["priv", "pub"]);
        assert_eq!(
            f.values,
            [
                ("label".to_string(), "callee".to_string()),
                ("ICE".to_string(), "remove".to_string()),
                ("transport-protocol".to_string(), "RTP/SAVPF".to_string()),
            ]
        );
        let f = Flags::parse("out-iface=pub").unwrap();
        assert_eq!(f.direction, ["default", "pub"]);
        let f = Flags::parse("external internal").unwrap();
        assert_eq!(f.direction, ["external", "internal"]);
        assert_eq!(Flags::parse("").unwrap(), Flags::default());
    }

    #[test]
    fn bad_flags_are_refused_with_the_word() {
        for (text, word) in [
            ("ICE=", "ICE="),
            ("=x", "=x"),
            ("replace-", "replace-"),
            ("ok call-id=x", "call-id=x"),
            ("via-branch=auto", "via-branch=auto"),
            ("to-tag=1", "to-tag=1"),
        ] {
            assert_eq!(Flags::parse(text).unwrap_err().word, word, "{text}");
        }
        assert!(Flags::parse("direction=a in-iface=b").is_err());
        assert!(Flags::parse("direction=a direction=b direction=c").is_err());
    }

    // Replies as rtpengine 10.5.3.5 wrote them (captured from the daemon,
    // `--interface=127.0.0.1`).
    const PONG: &[u8] = b"c1 d6:result4:ponge";
    const OFFER_REPLY: &[u8] = b"c2 d3:sdp238:v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=rtcp:40001\r\n6:result2:oke";
    const ERROR_REPLY: &[u8] = b"c6 d6:result5:error12:error-reason15:Unknown call-ide";
    const WARNING_REPLY: &[u8] =
        b"c7 d7:warning38:Call-ID not found or tags didn't match6:result2:oke";
    const NO_SDP_REPLY: &[u8] = b"c8 d6:result5:error12:error-reason22:No SDP body in messagee";
    /// A delete's reply: the call's statistics (the same as a query's).
    const DELETE_REPLY: &[u8] = b"c11 d7:createdi1796222471e10:created_usi140345e11:last signali1796222471e4:SSRCde4:tagsd3:ft1d3:tag3:ft17:createdi1796222471e13:subscriptionsld3:tag0:4:type12:offer/answeree11:subscribersld3:tag0:4:type12:offer/answeree6:mediasld5:indexi1e4:type5:audio8:protocol7:RTP/AVP7:streamsld10:local porti40040e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address10:192.0.2.104:porti49170ee19:advertised endpointd6:family4:IPv47:address10:192.0.2.104:porti49170ee11:last packeti1796222471e5:flagsl3:RTP6:fillede5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeed10:local porti40041e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address10:192.0.2.104:porti49171ee19:advertised endpointd6:family4:IPv47:address10:192.0.2.104:porti49171ee11:last packeti1796222471e5:flagsl4:RTCP6:fillede5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeee5:flagsl11:initialized4:send4:recveeee12:<untagged 1>d3:tag0:7:createdi1796222471e13:subscriptionsld3:tag3:ft14:type12:offer/answeree11:subscribersld3:tag3:ft14:type12:offer/answeree6:mediasld5:indexi1e4:type5:audio8:protocol7:RTP/AVP7:streamsld10:local porti40026e13:local address9:127.0.0.16:family4:IPv48:endpointde19:advertised endpointde11:last packeti1796222471e5:flagsl3:RTP3:ICEe5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeed10:local porti40027e13:local address9:127.0.0.16:family4:IPv48:endpointde19:advertised endpointde11:last packeti1796222471e5:flagsl4:RTCP3:ICEe5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeee5:flagsl4:send4:recv3:ICE15:ICE controllingeeeee6:totalsd3:RTPd7:packetsi0e5:bytesi0e6:errorsi0ee4:RTCPd7:packetsi0e5:bytesi0e6:errorsi0eee6:result2:oke";

    #[test]
    fn real_replies_parse() {
        let r = Reply::parse(PONG).unwrap();
        assert_eq!(
            (r.cookie.as_slice(), r.outcome),
            (&b"c1"[..], Outcome::Pong)
        );

        let r = Reply::parse(OFFER_REPLY).unwrap();
        assert_eq!(r.outcome, Outcome::Ok);
        let sdp = String::from_utf8(r.sdp.unwrap()).unwrap();
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{sdp}");
        assert_eq!(sdp.len(), 238);

        let r = Reply::parse(ERROR_REPLY).unwrap();
        assert_eq!(r.outcome, Outcome::Error);
        assert_eq!(r.error_reason.as_deref(), Some("Unknown call-id"));
        assert_eq!(r.sdp, None);

        let r = Reply::parse(NO_SDP_REPLY).unwrap();
        assert_eq!(r.error_reason.as_deref(), Some("No SDP body in message"));

        let r = Reply::parse(WARNING_REPLY).unwrap();
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(
            r.warning.as_deref(),
            Some("Call-ID not found or tags didn't match")
        );

        let r = Reply::parse(DELETE_REPLY).unwrap();
        assert_eq!((r.cookie.as_slice(), r.outcome), (&b"c11"[..], Outcome::Ok));
    }

    #[test]
    fn real_replies_round_trip_through_the_decoder() {
        for datagram in [
            PONG,
            OFFER_REPLY,
            ERROR_REPLY,
            WARNING_REPLY,
            NO_SDP_REPLY,
            DELETE_REPLY,
        ] {
            let (cookie, body) = split_cookie(datagram).unwrap();
            let value = bencode::decode(body).unwrap();
            let mut again = cookie.to_vec();
            again.push(b' ');
            value.encode(&mut again);
            assert_eq!(again, datagram);
        }
        // The statistics are there to read, nested as rtpengine nests them.
        let (_, body) = split_cookie(DELETE_REPLY).unwrap();
        let v = bencode::decode(body).unwrap();
        let port = v
            .get("tags")
            .and_then(|t| t.get("ft1"))
            .and_then(|t| t.get("medias"))
            .and_then(Value::as_list)
            .and_then(|m| m[0].get("streams"))
            .and_then(Value::as_list)
            .and_then(|s| s[0].get("local port"))
            .and_then(Value::as_int);
        assert_eq!(port, Some(40040));
    }

    #[test]
    fn what_is_not_a_reply() {
        assert_eq!(Reply::parse(b"d6:result2:oke"), Err(ReplyError::NoCookie));
        assert_eq!(Reply::parse(b" d6:result2:oke"), Err(ReplyError::NoCookie));
        assert_eq!(
            Reply::parse(br#"c {"result":"ok"}"#),
            Err(ReplyError::NotBencode)
        );
        assert_eq!(Reply::parse(b"c d3:sdp1:xe"), Err(ReplyError::NoResult));
        assert_eq!(Reply::parse(b"c d6:resulti1ee"), Err(ReplyError::NoResult));
        assert_eq!(Reply::parse(b"c i1e"), Err(ReplyError::NoResult));
        assert!(matches!(Reply::parse(b"c "), Err(ReplyError::Decode(_))));
        assert!(matches!(
            Reply::parse(b"c d6:result2:ok"),
            Err(ReplyError::Decode(_))
        ));
        let r = Reply::parse(b"c d6:result10:load limite").unwrap();
        assert_eq!(
            (r.outcome, r.result.as_str()),
            (Outcome::Other, "load limit")
        );
    }

    #[test]
    fn cookies_are_unique_and_prefixed() {
        let c = Cookies::with_prefix("p");
        assert_eq!(c.next_cookie(), "p_1");
        assert_eq!(c.next_cookie(), "p_2");
        let a = Cookies::new().next_cookie();
        let b = Cookies::new().next_cookie();
        assert_ne!(a, b, "two processes (or restarts) do not share cookies");
        assert!(a.ends_with("_1") && a.len() == 10, "{a}");
    }
}
