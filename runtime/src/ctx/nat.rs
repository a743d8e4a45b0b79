//! The `behind_nat` condition and the `fix_contact` step: the route's side
//! of [`crate::nat`]. `behind_nat` reads the message the section runs on
//! (the request in `request` and `failure`, the response in `reply`);
//! `fix_contact` records the Contact edit, which the core splices into what
//! it sends (`crate::proxy::nat`).

use std::net::SocketAddr;

use super::{Ctx, Section};
use crate::nat::{self, Path};
use crate::proxy::Identity;

/// What `behind_nat` and `fix_contact` need besides the message, given by
/// the core (a context without it judges by its source alone).
#[derive(Clone, Copy, Default)]
pub(crate) struct NatEnv<'a> {
    /// The address the message came from, when it is not the context's
    /// source: a response in stateful `reply`, whose `$si` reads the
    /// request's source.
    pub peer: Option<SocketAddr>,
    /// This proxy: a response whose first Record-Route entry is not ours
    /// came through another proxy.
    pub identity: Option<&'a Identity>,
}

impl<'a> Ctx<'a> {
    /// Give `behind_nat` and `fix_contact` what they need.
    pub(crate) fn set_nat(&mut self, env: NatEnv<'a>) -> &mut Ctx<'a> {
        self.nat = env;
        self
    }

    /// The address the message itself came from.
    fn sender(&self) -> SocketAddr {
        self.nat.peer.unwrap_or(self.source)
    }

    /// `behind_nat`: the sender of the message is taken as behind a NAT
    /// (see [`crate::nat::behind_nat`] for the rules).
    pub fn behind_nat(&self) -> bool {
        let path = if self.msg.is_request() {
            nat::request_path(self.msg)
        } else {
            match self.nat.identity {
                Some(us) => nat::response_path(self.msg, |host, port| us.is_us(host, port)),
                None => Path::Direct,
            }
        };
        let sign = nat::behind_nat(self.msg, self.sender(), path);
        if let Some(sign) = sign
            && !self.quiet()
        {
            tracing::debug!(
                target: "sipforge::routes",
                source = %self.sender(),
                "behind_nat: {}",
                sign.describe()
            );
        }
        sign.is_some()
    }

    /// `fix_contact`: the Contact of the message (a request in `request`, a
    /// response in `reply`) is rewritten to the address and port it came
    /// from, with the marker. Nothing is changed for a message without
    /// exactly one sip:/sips: Contact, one already fixed, or one whose
    /// Contact already names the source (logged at debug). The build
    /// refuses it in `failure`; there it does nothing.
    pub fn fix_contact(&mut self, line: u32) {
        if self.section == Section::Failure {
            return;
        }
        match nat::fix_contact(self.msg, self.sender(), self.transport) {
            Ok(fix) => self.edits.contact = Some(fix),
            Err(_) if self.quiet() => {}
            Err(why) => tracing::debug!(
                target: "sipforge::routes",
                line,
                "fix_contact: {}; left as it is",
                why.describe()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    #[test]
    fn a_request_and_a_response_are_fixed_to_where_they_came_from() {
        let raw = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.168.1.10:5060>\r\n\
Content-Length: 0\r\n\r\n";
        let msg = Message::parse(raw).unwrap();
        let mut cx = Ctx::for_request(&msg, "203.0.113.7:40312".parse().unwrap());
        assert!(cx.behind_nat());
        cx.fix_contact(1);
        assert_eq!(
            cx.edits.contact.as_ref().map(|f| f.text.as_str()),
            Some("sip:alice@203.0.113.7:40312;sfnat=192.168.1.10~5060~udp")
        );

        let raw = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKsf1\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
Call-ID: c\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@10.0.0.2:5062>\r\n\
Content-Length: 0\r\n\r\n";
        let msg = Message::parse(raw).unwrap();
        // Stateful `reply`: the context's source is the caller's; the
        // response came from the callee's NAT binding.
        let mut cx = Ctx::for_reply(&msg, None, "192.0.2.1:5060".parse().unwrap());
        cx.set_transport(crate::transport::Transport::Tcp)
            .set_nat(NatEnv {
                peer: Some("198.51.100.50:33000".parse().unwrap()),
                identity: None,
            });
        assert!(cx.behind_nat());
        cx.fix_contact(1);
        assert_eq!(
            cx.edits.contact.as_ref().map(|f| f.text.as_str()),
            Some("sip:bob@198.51.100.50:33000;sfnat=10.0.0.2~5062~tcp")
        );
    }
}
