//! Reading a REGISTER (RFC 3261 §10.3 steps 6–7 up to the store) into a
//! [`RegisterRequest`] with the [`crate::sip`] message view: the AoR from
//! To, Call-ID and CSeq, the contacts with their expiry after the
//! `min_expires`/`max_expires`/`default_expires` rules, `Contact: *`,
//! Path (RFC 3327), `+sip.instance` and `reg-id` (RFC 5626).
//!
//! Nothing here touches a store, so every refusal that does not depend on
//! the current bindings (400, 423) is decided before any lock is taken.

use crate::sip::{HeaderName, Message, NameAddr, Uri, split_list};

use super::aor::{aor_of, params};
use super::{Config, MAX_FIELD, MAX_PATH, MAX_USER_AGENT, Received, Refusal};

/// One Contact of a REGISTER, after the expiry rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactUpdate {
    /// The Contact URI as sent (without the `<>` and header parameters).
    pub contact: String,
    /// Seconds granted: the `expires` parameter, else the Expires header,
    /// else `default_expires`; clamped to `max_expires`; 0 removes.
    pub expires: u32,
    /// The `q` parameter times 1000 (`q=0.5` is 500); None when absent.
    pub q: Option<u16>,
    /// The `+sip.instance` parameter without its quotes
    /// (`<urn:uuid:...>`).
    pub instance: Option<String>,
    /// The `reg-id` parameter; only kept with an instance (RFC 5626 §6:
    /// without `+sip.instance` the RFC 3261 rules apply).
    pub reg_id: Option<u32>,
}

/// What a REGISTER asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `Contact: *` with `Expires: 0`: remove every binding.
    Star,
    /// Add, refresh or remove (expires 0) these contacts, in order.
    Contacts(Vec<ContactUpdate>),
    /// No Contact: only list the current bindings.
    Fetch,
}

/// A REGISTER read and checked, ready for [`super::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The canonical AoR of the To URI ([`aor_of`]).
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    pub change: Change,
    /// The Path header values in order (each element as written, e.g.
    /// `<sip:edge.example.com;lr>`): the route set towards the contacts.
    pub path: Vec<String>,
    /// `Supported: path` was in the request: the 200 echoes Path (RFC 3327 §5.3).
    pub path_supported: bool,
    /// Set by the proxy, not read from the request: with a shared store,
    /// the Path entry that leads the pool's other instances to the
    /// connection this REGISTER came over (see `proxy::flow`). Stored as
    /// the binding's Path when the request has none; never echoed.
    pub flow_path: Option<String>,
    pub received: Received,
    pub user_agent: Option<String>,
}

/// Reads a REGISTER. Err is the answer to send instead: 400 for a request
/// that is not a well-formed REGISTER (the reason phrase says what is
/// wrong) or carries more than a binding keeps (a Contact URI over
/// `contact_max_size`, an AoR, Call-ID or `+sip.instance` over
/// [`MAX_FIELD`], a Path over [`MAX_PATH`]: what a binding holds stays
/// small whatever the sender writes), 423 with `Min-Expires` for a contact asking for less than
/// `min_expires` seconds (but not 0), 403 for more than twice
/// `max_contacts` contacts (more than any request could remove and add).
pub fn parse_register(
    msg: &Message<'_>,
    received: Received,
    config: &Config,
) -> Result<RegisterRequest, Refusal> {
    if msg.method() != Some("REGISTER") {
        return Err(Refusal::bad("Not a REGISTER"));
    }
    let to = msg.to().ok_or(Refusal::bad("Missing or Bad To"))?;
    let aor = aor_of(to.uri).ok_or(Refusal::bad("To Is Not a SIP URI"))?;
    if aor.len() > MAX_FIELD {
        return Err(Refusal::bad("Address-of-Record Too Long"));
    }
    let call_id = msg.call_id().ok_or(Refusal::bad("Missing Call-ID"))?;
    if call_id.len() > MAX_FIELD {
        return Err(Refusal::bad("Call-ID Too Long"));
    }
    let cseq = match msg.cseq() {
        Some((n, "REGISTER")) => n,
        _ => return Err(Refusal::bad("Bad CSeq")),
    };
    let header_expires = expires_header(msg)?;
    let change = contacts(msg, header_expires, config)?;
    Ok(RegisterRequest {
        aor,
        call_id: call_id.to_owned(),
        cseq,
        change,
        path: path(msg)?,
        path_supported: msg
            .all(HeaderName::Supported)
            .flat_map(|h| msg.value(h).split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("path")),
        flow_path: None,
        received,
        user_agent: msg
            .first(HeaderName::UserAgent)
            .map(|h| msg.value(h))
            .filter(|v| !v.is_empty())
            .map(|v| cut(v, MAX_USER_AGENT).to_owned()),
    })
}

/// `s` cut to at most `most` bytes, on a character boundary.
fn cut(s: &str, most: usize) -> &str {
    if s.len() <= most {
        return s;
    }
    let mut end = most;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The Expires header's value; Err for more than one or a malformed one.
fn expires_header(msg: &Message<'_>) -> Result<Option<u32>, Refusal> {
    let mut found = msg.find("Expires");
    let Some(h) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(Refusal::bad("More Than One Expires"));
    }
    delta_seconds(msg.value(h))
        .map(Some)
        .ok_or(Refusal::bad("Bad Expires"))
}

/// `delta-seconds` (RFC 3261 §25): decimal digits; values past 2^32-1
/// count as 2^32-1 (§20.19 of the Expires header, and the same here).
pub(crate) fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u32, |n, c| {
        n.saturating_mul(10).saturating_add(u32::from(c - b'0'))
    }))
}

/// A `qvalue` (`0`, `0.5`, `1.000`; RFC 3261 §25) times 1000.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, c| n * 10 + u16::from(c - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The Contact headers as a [`Change`].
fn contacts(
    msg: &Message<'_>,
    header_expires: Option<u32>,
    config: &Config,
) -> Result<Change, Refusal> {
    let mut elements = Vec::new();
    for h in msg.find("Contact") {
        let before = elements.len();
        elements.extend(split_list(msg.value(h)).map(|(_, e)| e));
        if elements.len() == before {
            return Err(Refusal::bad("Empty Contact"));
        }
    }
    if elements.is_empty() {
        return Ok(Change::Fetch);
    }
    if elements.contains(&"*") {
        if elements.len() > 1 {
            return Err(Refusal::bad("Contact * Must Be Alone"));
        }
        if header_expires != Some(0) {
            return Err(Refusal::bad("Contact * Needs Expires: 0"));
        }
        return Ok(Change::Star);
    }
    // No valid request lists more than it may remove and add; refusing
    // longer lists here keeps the work of apply() bounded.
    let most = usize::try_from(config.max_contacts)
        .unwrap_or(usize::MAX)
        .saturating_mul(2);
    if elements.len() > most {
        return Err(Refusal::new(403, "Too Many Contacts"));
    }
    let mut updates = Vec::with_capacity(elements.len());
    let mut too_brief = false;
    for element in elements {
        let (update, brief) = contact(element, header_expires, config)?;
        too_brief |= brief;
        updates.push(update);
    }
    if too_brief {
        return Err(Refusal {
            code: 423,
            reason: "Interval Too Brief",
            headers: format!("Min-Expires: {}\r\n", config.min_expires),
        });
    }
    Ok(Change::Contacts(updates))
}

/// One Contact element, and whether it asks for too short an interval.
fn contact(
    element: &str,
    header_expires: Option<u32>,
    config: &Config,
) -> Result<(ContactUpdate, bool), Refusal> {
    let na = NameAddr::parse(element).ok_or(Refusal::bad("Bad Contact"))?;
    if !Uri::parse(na.uri).is_some_and(|u| u.is_sip()) {
        return Err(Refusal::bad("Contact Is Not a SIP URI"));
    }
    if na.uri.len() > usize::try_from(config.contact_max_size).unwrap_or(usize::MAX) {
        return Err(Refusal::bad("Contact URI Too Long"));
    }
    let mut update = ContactUpdate {
        contact: na.uri.to_owned(),
        expires: 0,
        q: None,
        instance: None,
        reg_id: None,
    };
    let mut param_expires = None;
    for (name, value) in params(na.params) {
        let value = value.unwrap_or("");
        if name.eq_ignore_ascii_case("expires") && param_expires.is_none() {
            param_expires = Some(delta_seconds(value).ok_or(Refusal::bad("Bad Contact expires"))?);
        } else if name.eq_ignore_ascii_case("q") && update.q.is_none() {
            update.q = Some(qvalue(value).ok_or(Refusal::bad("Bad Contact q"))?);
        } else if name.eq_ignore_ascii_case("+sip.instance") && update.instance.is_none() {
            let inner = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if inner.is_empty() {
                return Err(Refusal::bad("Bad Contact +sip.instance"));
            }
            if inner.len() > MAX_FIELD {
                return Err(Refusal::bad("Contact +sip.instance Too Long"));
            }
            update.instance = Some(inner.to_owned());
        } else if name.eq_ignore_ascii_case("reg-id") && update.reg_id.is_none() {
            update.reg_id = Some(
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&r| r > 0 && value.bytes().all(|c| c.is_ascii_digit()))
                    .ok_or(Refusal::bad("Bad Contact reg-id"))?,
            );
        }
    }
    if update.instance.is_none() {
        update.reg_id = None;
    }
    let mut brief = false;
    update.expires = match param_expires.or(header_expires) {
        Some(0) => 0,
        Some(asked) if asked < config.min_expires => {
            brief = true;
            0
        }
        Some(asked) => asked.min(config.max_expires),
        None => config.default_expires.min(config.max_expires),
    };
    Ok((update, brief))
}

/// The Path header elements, in order; Err when one is not a SIP
/// name-addr, or when they add up to more than [`MAX_PATH`] bytes.
fn path(msg: &Message<'_>) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for h in msg.find("Path") {
        let before = out.len();
        for (_, element) in split_list(msg.value(h)) {
            let uri = NameAddr::parse(element).map(|na| na.uri);
            if !uri.and_then(Uri::parse).is_some_and(|u| u.is_sip()) {
                return Err(Refusal::bad("Bad Path"));
            }
            bytes += element.len();
            if bytes > MAX_PATH {
                return Err(Refusal::bad("Path Too Long"));
            }
            out.push(element.to_owned());
        }
        if out.len() == before {
            return Err(Refusal::bad("Bad Path"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues() {
        for (s, q) in [
            ("0", 0),
            ("0.5", 500),
            ("0.05", 50),
            ("0.123", 123),
            ("1", 1000),
            ("1.000", 1000),
            ("0.", 0),
        ] {
            assert_eq!(qvalue(s), Some(q), "{s}");
        }
        for s in ["", "1.5", "1.001", "2", "0.1234", "-0", ".5", "0.a", "01"] {
            assert_eq!(qvalue(s), None, "{s}");
        }
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aéb", 3), "aé");
    }

    #[test]
    fn deltas() {
        assert_eq!(delta_seconds(" 3600 "), Some(3600));
        assert_eq!(delta_seconds("0"), Some(0));
        assert_eq!(delta_seconds("99999999999999999999"), Some(u32::MAX));
        for s in ["", "-1", "1h", "1.5", "0x10"] {
            assert_eq!(delta_seconds(s), None, "{s}");
        }
    }
}
