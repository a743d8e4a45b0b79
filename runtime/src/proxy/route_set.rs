//! Route header processing for requests we proxy (RFC 3261 §16.4, §16.12):
//! our own top Route entries are removed (loose routing; two entries when
//! we double-record-routed), a strict router upstream is detected by a
//! Request-URI that is our own and fixed by taking the last Route entry as
//! the Request-URI, and the first Route entry left is the next hop.

use std::ops::Range;

use super::identity::Identity;
use crate::sip::{HeaderName, Message, NameAddr, Uri, split_list};

/// What Route processing decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteSet<'a> {
    /// Byte ranges to delete from the request (our Route entries).
    pub removals: Vec<Range<usize>>,
    /// The new Request-URI when the previous hop was a strict router.
    pub new_request_uri: Option<&'a str>,
    /// URI of the first Route entry left: where the request goes next.
    pub next_hop: Option<&'a str>,
    /// The transport our last removed Route entry names: with two of our
    /// entries (written when the transport changes, RFC 5658), the one
    /// facing where the request goes on.
    pub side: Option<crate::transport::Transport>,
    /// A phone registered here (its connection or NAT binding) named by a
    /// flow token in one of our removed entries (see [`super::flow`]).
    pub flow: Option<super::flow::Flow>,
}

struct Entry<'a> {
    header: usize,
    start: usize,
    end: usize,
    uri: &'a str,
}

/// Process the Route headers of `msg` for a proxy that is `us`.
pub fn process<'a>(msg: &Message<'a>, us: &Identity) -> RouteSet<'a> {
    let mut entries: Vec<Entry<'a>> = Vec::new();
    for (index, h) in msg.headers().iter().enumerate() {
        if h.name != HeaderName::Route {
            continue;
        }
        let value = msg.value(h);
        let base = h.value_range.start;
        for (offset, text) in split_list(value) {
            let uri = NameAddr::parse(text).map_or(text, |na| na.uri);
            entries.push(Entry {
                header: index,
                start: base + offset,
                end: base + offset + text.len(),
                uri,
            });
        }
    }
    let mut result = RouteSet::default();
    if entries.is_empty() {
        return result;
    }
    let is_us = |uri: &str| Uri::parse(uri).is_some_and(|u| us.is_us(u.host, u.port));
    let mut remove = vec![false; entries.len()];
    // §16.4: a Request-URI that is ours means a strict router sent it.
    if msg.request_uri().is_some_and(is_us) {
        let last = entries.len() - 1;
        result.new_request_uri = Some(entries[last].uri);
        remove[last] = true;
    }
    for (i, e) in entries.iter().enumerate().take(2) {
        if remove[i] || !is_us(e.uri) {
            break;
        }
        remove[i] = true;
    }
    result.side = entries
        .iter()
        .take(2)
        .zip(&remove)
        .take_while(|(_, r)| **r)
        .last()
        .and_then(|(e, _)| crate::target::uri_transport(e.uri));
    // Most Route entries carry no token: one search before any parse.
    result.flow = entries
        .iter()
        .take(2)
        .zip(&remove)
        .take_while(|(_, r)| **r)
        .filter(|(e, _)| super::flow::may_carry_token(e.uri))
        .find_map(|(e, _)| Uri::parse(e.uri).and_then(|u| super::flow::verify(us, &u)));
    result.next_hop = entries
        .iter()
        .zip(&remove)
        .find(|(_, r)| !**r)
        .map(|(e, _)| e.uri);
    result.removals = removal_ranges(msg, &entries, &remove);
    result
}

/// Turn removed entries into byte ranges: a whole header line when all its
/// entries go, else each entry with the comma that joins it to a neighbour.
fn removal_ranges(msg: &Message<'_>, entries: &[Entry<'_>], remove: &[bool]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let header = entries[i].header;
        let mut j = i;
        while j < entries.len() && entries[j].header == header {
            j += 1;
        }
        let group = &entries[i..j];
        let marks = &remove[i..j];
        if marks.iter().all(|r| *r) {
            if let Some(h) = msg.headers().get(header) {
                ranges.push(h.line_range.clone());
            }
        } else {
            for (k, e) in group.iter().enumerate() {
                if !marks[k] {
                    continue;
                }
                if let Some(next) = group.get(k + 1) {
                    ranges.push(e.start..next.start);
                } else if k > 0 {
                    ranges.push(group[k - 1].end..e.end);
                }
            }
        }
        i = j;
    }
    ranges
}
