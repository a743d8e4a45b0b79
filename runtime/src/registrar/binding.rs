//! The bindings of one address-of-record and the RFC 3261 §10.3 rules for
//! updating them (steps 6–8), as pure functions: the current bindings and
//! a [`RegisterRequest`] in, the new bindings or a [`Refusal`] out. The
//! caller makes get + [`apply`] + put atomic per AoR (see [`super::store`]).
//!
//! A contact of the request matches a stored binding when both carry a
//! `+sip.instance` and the instances and `reg-id`s (or their absence) are
//! the same: RFC 5626 §6 keys a binding by (AoR, instance, reg-id), so it
//! replaces the flow's binding even when the device now registers another
//! Contact URI, and two flows of one device may share a URI (without
//! `reg-id`, the instance alone is the key, as in RFC 5627). Otherwise
//! (either has no instance) it matches when the URIs are equal under
//! §19.1.4.
//!
//! Ordering (§10.3 step 7): when a matched binding was written with the
//! request's Call-ID and a CSeq not lower than the request's, "the update
//! MUST be aborted and the request fails". The RFC names no status for it;
//! we answer 500, which §10.3 step 8 prescribes when any binding update
//! fails ("all tentative binding updates MUST be removed"), so nothing of
//! that request is applied. A binding written by another Call-ID (another
//! device, or the same one after a restart) is updated whatever the CSeq.

use std::fmt::Write as _;

use super::request::{Change, ContactUpdate, RegisterRequest};
use super::{Config, Received, Refusal, uri_equal};
use crate::digits::{push_2, push_u64};

/// One contact registered for an address-of-record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as sent (the request target of a lookup).
    pub contact: String,
    /// When it expires (unix seconds); it is gone from that second on.
    pub expires_at: u64,
    /// `q` times 1000; None when the contact had none (ranked as 1.0).
    pub q: Option<u16>,
    /// Call-ID and CSeq of the REGISTER that wrote it (§10.3 step 7).
    pub call_id: String,
    pub cseq: u32,
    /// RFC 5626 `+sip.instance` (without quotes) and `reg-id`.
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    /// The Path of the REGISTER (RFC 3327), in order: the Route set of
    /// requests to this contact.
    pub path: Vec<String>,
    /// Where the REGISTER came from: requests to this contact go there
    /// when `path` is empty (the contact is often behind a NAT).
    pub received: Received,
    pub user_agent: Option<String>,
    /// When the REGISTER that wrote it arrived (unix seconds): among equal
    /// `q`, the most recent registration is tried first.
    pub registered_at: u64,
}

impl Binding {
    /// Whether the binding has not expired at `now`.
    pub fn is_live(&self, now_unix: u64) -> bool {
        self.expires_at > now_unix
    }

    /// Seconds left at `now` (0 when expired).
    pub fn remaining(&self, now_unix: u64) -> u64 {
        self.expires_at.saturating_sub(now_unix)
    }

    /// `q` times 1000, 1000 when the contact gave none.
    pub fn q_or_default(&self) -> u16 {
        self.q.unwrap_or(1000)
    }

    /// Whether this contact of a request is this binding (see the module doc).
    fn matches(&self, u: &ContactUpdate) -> bool {
        match (&self.instance, &u.instance) {
            (Some(mine), Some(theirs)) => mine == theirs && self.reg_id == u.reg_id,
            _ => uri_equal(&self.contact, &u.contact),
        }
    }

    /// Whether `req` is older than (or the same as) the one that wrote it.
    fn is_newer_than(&self, req: &RegisterRequest) -> bool {
        self.call_id == req.call_id && req.cseq <= self.cseq
    }

    fn new(u: &ContactUpdate, req: &RegisterRequest, now_unix: u64) -> Binding {
        Binding {
            contact: u.contact.clone(),
            expires_at: now_unix.saturating_add(u64::from(u.expires)),
            q: u.q,
            call_id: req.call_id.clone(),
            cseq: req.cseq,
            instance: u.instance.clone(),
            reg_id: u.reg_id,
            path: match &req.flow_path {
                Some(entry) if req.path.is_empty() => vec![entry.clone()],
                _ => req.path.clone(),
            },
            received: req.received,
            user_agent: req.user_agent.clone(),
            registered_at: now_unix,
        }
    }
}

/// The answer to a REGISTER whose CSeq is not above a matched binding's
/// of the same Call-ID (see the module doc).
fn out_of_order() -> Refusal {
    Refusal::new(500, "Out of Order CSeq")
}

/// Applies a REGISTER to the bindings of its AoR (`current`, possibly with
/// expired ones, which are dropped) at `now_unix`: the bindings to store,
/// or the refusal to answer, in which case nothing may change. Refusals:
/// 500 for an out-of-order CSeq; 403 when the request would leave more than
/// `max_contacts` bindings and more than there were (a lowered limit does
/// not block refreshes). Every contact of the request is applied in order
/// before counting, so removals in the same request make room.
pub fn apply(
    current: &[Binding],
    req: &RegisterRequest,
    now_unix: u64,
    config: &Config,
) -> Result<Vec<Binding>, Refusal> {
    let mut live = current.iter().filter(|b| b.is_live(now_unix));
    let updates = match &req.change {
        Change::Fetch => return Ok(live.cloned().collect()),
        Change::Star => {
            if live.any(|b| b.is_newer_than(req)) {
                return Err(out_of_order());
            }
            return Ok(Vec::new());
        }
        Change::Contacts(updates) => updates,
    };
    // The bindings kept from before (borrowed: cloned only if they
    // survive) and the ones this request wrote (a contact listed twice
    // replaces its own first binding: no ordering check then).
    enum Slot<'a> {
        Kept(&'a Binding),
        Written(Binding),
    }
    let mut next: Vec<Slot<'_>> = current
        .iter()
        .filter(|b| b.is_live(now_unix))
        .map(Slot::Kept)
        .collect();
    let before = next.len();
    for u in updates {
        let mut out_of_order_seen = false;
        next.retain(|slot| {
            let (b, written) = match slot {
                Slot::Kept(b) => (*b, false),
                Slot::Written(b) => (b, true),
            };
            if !b.matches(u) {
                return true;
            }
            out_of_order_seen |= !written && b.is_newer_than(req);
            false
        });
        if out_of_order_seen {
            return Err(out_of_order());
        }
        if u.expires > 0 {
            next.push(Slot::Written(Binding::new(u, req, now_unix)));
        }
    }
    let limit = usize::try_from(config.max_contacts).unwrap_or(usize::MAX);
    if next.len() > limit && next.len() > before {
        return Err(Refusal::new(403, "Too Many Contacts"));
    }
    Ok(next
        .into_iter()
        .map(|slot| match slot {
            Slot::Kept(b) => b.clone(),
            Slot::Written(b) => b,
        })
        .collect())
}

/// The live bindings to try for a lookup: highest `q` first, then the most
/// recent registration first (later in `bindings` wins a tie); expired
/// ones left out.
pub fn targets(bindings: &[Binding], now_unix: u64) -> Vec<&Binding> {
    // Taken last to first, so that the stable sort leaves equal ones with
    // the later first.
    let mut out: Vec<&Binding> = bindings
        .iter()
        .rev()
        .filter(|b| b.is_live(now_unix))
        .collect();
    out.sort_by(|a, b| {
        b.q_or_default()
            .cmp(&a.q_or_default())
            .then(b.registered_at.cmp(&a.registered_at))
    });
    out
}

/// `q` as a qvalue: 1000 is `1`, 500 is `0.5`, 5 is `0.005`.
fn format_q(q: u16, out: &mut String) {
    if q >= 1000 {
        out.push('1');
        return;
    }
    let frac = format!("{q:03}");
    let frac = frac.trim_end_matches('0');
    out.push('0');
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
}

/// The Contact lines of a 200 to a REGISTER: every live binding, in
/// [`targets`] order, as `Contact: <uri>;expires=N` with the seconds left
/// at `now_unix`, plus its `q`, `+sip.instance` and `reg-id`. Each line
/// ends in CRLF; "" when there is no binding.
pub fn contact_lines(bindings: &[Binding], now_unix: u64) -> String {
    let mut out = String::new();
    push_contact_lines(&mut out, bindings, now_unix);
    out
}

/// [`contact_lines`] appended to `out` (written piece by piece, without
/// the formatter).
fn push_contact_lines(out: &mut String, bindings: &[Binding], now_unix: u64) {
    for b in targets(bindings, now_unix) {
        out.push_str("Contact: <");
        out.push_str(&b.contact);
        out.push_str(">;expires=");
        push_u64(out, b.remaining(now_unix));
        if let Some(q) = b.q {
            out.push_str(";q=");
            format_q(q, out);
        }
        if let Some(instance) = &b.instance {
            out.push_str(";+sip.instance=\"");
            out.push_str(instance);
            out.push('"');
        }
        if let Some(reg_id) = b.reg_id {
            out.push_str(";reg-id=");
            push_u64(out, u64::from(reg_id));
        }
        out.push_str("\r\n");
    }
}

/// The extra header lines of the 200 to `req` (each ending in CRLF):
/// [`contact_lines`] of `bindings`, the Path of the request when the UA
/// said `Supported: path` (RFC 3327 §5.3), and a Date (§10.3 step 8).
pub fn ok_headers(req: &RegisterRequest, bindings: &[Binding], now_unix: u64) -> String {
    // Room for a binding's line and the Date without growing.
    let mut out = String::with_capacity(128 + bindings.len() * 96);
    push_contact_lines(&mut out, bindings, now_unix);
    if req.path_supported && !req.path.is_empty() {
        let _ = write!(out, "Path: {}\r\n", req.path.join(", "));
    }
    out.push_str("Date: ");
    push_http_date(&mut out, now_unix);
    out.push_str("\r\n");
    out
}

/// `unix` seconds as an RFC 1123 date in GMT (`Sat, 13 Nov 2010 23:29:00
/// GMT`), the form of the SIP Date header (RFC 3261 §20.17).
pub fn http_date(unix: u64) -> String {
    let mut out = String::with_capacity(29);
    push_http_date(&mut out, unix);
    out
}

/// [`http_date`] appended to `out`, written without the formatter.
fn push_http_date(out: &mut String, unix: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by eras
    // of 400 years counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    out.push_str(DAYS.get((days % 7) as usize).copied().unwrap_or("Thu"));
    out.push_str(", ");
    push_2(out, day);
    out.push(' ');
    out.push_str(MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan"));
    out.push(' ');
    push_u64(out, year);
    out.push(' ');
    push_2(out, secs / 3600);
    out.push(':');
    push_2(out, secs % 3600 / 60);
    out.push(':');
    push_2(out, secs % 60);
    out.push_str(" GMT");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }

    /// The date as the formatter wrote it before `push_http_date`.
    fn http_date_formatted(unix: u64) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = unix / 86_400;
        let secs = unix % 86_400;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[(days % 7) as usize],
            day,
            MONTHS[(month - 1) as usize],
            year,
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }

    #[test]
    fn dates_as_formatted() {
        let mut t = 0u64;
        while t < 5_000_000_000 {
            assert_eq!(http_date(t), http_date_formatted(t), "{t}");
            t += 86_400 * 3 + 3_599;
        }
        for t in [
            u64::MAX / 2,
            253_402_300_799,
            253_402_300_800,
            1_700_000_000,
        ] {
            assert_eq!(http_date(t), http_date_formatted(t), "{t}");
        }
    }

    /// The lines as `write!` wrote them before `push_contact_lines`.
    fn contact_lines_formatted(bindings: &[Binding], now_unix: u64) -> String {
        let mut out = String::new();
        for b in targets(bindings, now_unix) {
            let _ = write!(
                out,
                "Contact: <{}>;expires={}",
                b.contact,
                b.remaining(now_unix)
            );
            if let Some(q) = b.q {
                out.push_str(";q=");
                format_q(q, &mut out);
            }
            if let Some(instance) = &b.instance {
                let _ = write!(out, ";+sip.instance=\"{instance}\"");
            }
            if let Some(reg_id) = b.reg_id {
                let _ = write!(out, ";reg-id={reg_id}");
            }
            out.push_str("\r\n");
        }
        out
    }

    #[test]
    fn contact_lines_as_formatted() {
        let received = Received {
            transport: crate::transport::Transport::Udp,
            addr: "192.0.2.1:5060".parse().unwrap(),
        };
        let binding = |contact: &str, expires_at, q, instance: Option<&str>, reg_id| Binding {
            contact: contact.into(),
            expires_at,
            q,
            call_id: "c".into(),
            cseq: 1,
            instance: instance.map(str::to_owned),
            reg_id,
            path: Vec::new(),
            received,
            user_agent: None,
            registered_at: 5,
        };
        let bindings = [
            binding("sip:a@h", 3_600, None, None, None),
            binding("sip:b@h;transport=tcp", 100, Some(500), None, None),
            binding(
                "sip:c@h",
                4_000_000_000,
                Some(1000),
                Some("<urn:uuid:1>"),
                Some(2),
            ),
            binding("sip:d@h", 10, Some(0), Some("<urn:uuid:2>"), Some(u32::MAX)),
            binding("sip:gone@h", 9, None, None, None),
        ];
        for now in [0, 9, 10, 99, 3_599] {
            for n in 0..=bindings.len() {
                assert_eq!(
                    contact_lines(&bindings[..n], now),
                    contact_lines_formatted(&bindings[..n], now)
                );
            }
        }
    }

    #[test]
    fn q_formatting() {
        for (q, s) in [
            (1000, "1"),
            (500, "0.5"),
            (5, "0.005"),
            (0, "0"),
            (120, "0.12"),
        ] {
            let mut out = String::new();
            format_q(q, &mut out);
            assert_eq!(out, s);
        }
    }
}
