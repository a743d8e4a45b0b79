//! The `rtp_manage` step (media through rtpengine, like Kamailio's
//! `rtpengine_manage`): which ng command the message calls for, and the
//! SDP rtpengine returned put in place of the message's.
//!
//! - `request`: an INVITE or UPDATE with SDP is an offer; an ACK or PRACK
//!   with SDP an answer (late offer: the 200 carried the offer); BYE and
//!   CANCEL delete the session; anything else is left alone.
//! - `reply`: a 18x/2xx with SDP to an INVITE, UPDATE or PRACK is the
//!   answer, or the offer when the request had no SDP (late offer); a
//!   failed final response (300 and up) to an INVITE deletes.
//! - `failure`: deletes (use it where the failure route ends the call).
//!
//! An offer or answer needs rtpengine's SDP before the message goes on:
//! the route run is suspended with the question (see
//! [`crate::proxy::suspend`]), and the next run finds the answer in its
//! memo. A delete is told, not asked: nobody waits for it. The step is
//! true when rtpengine did what the message called for (or nothing was
//! called for), false when it could not be used (the message then goes
//! on with its own SDP, unless the routes test the step and decide
//! otherwise: `if: not rtp_manage`).

use super::{Ctx, Section};
use crate::proxy::suspend::{MediaAsk, MediaCommand, Query};
use crate::sip::{HeaderName, Message};

/// The SDP body of a message: its body when Content-Type says
/// `application/sdp` (or, without Content-Type, the body looks like SDP).
fn sdp_of<'m>(msg: &Message<'m>) -> Option<&'m [u8]> {
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    match msg.first(HeaderName::ContentType) {
        Some(h) => msg
            .value(h)
            .trim()
            .as_bytes()
            .get(..15)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"application/sdp"))
            .then_some(body),
        None => body.starts_with(b"v=0").then_some(body),
    }
}

impl Ctx<'_> {
    /// `rtp_manage` / `rtp_manage: "flags"` (see the module doc).
    pub fn rtp_manage(&mut self, line: u32, flags: Option<&'static str>) -> bool {
        if self.asked.is_some() {
            return false;
        }
        let Some(command) = self.media_command() else {
            return true;
        };
        let (Some(call_id), Some(from_tag)) =
            (self.msg.call_id(), self.msg.from().and_then(|f| f.tag))
        else {
            if !self.quiet() {
                crate::warn_limited!(line, "rtp_manage: no Call-ID or From tag: left alone");
            }
            return false;
        };
        // A delete names the to-tag only for one failed fork (a response
        // of 300 and up in `reply`): BYE, CANCEL and `failure` end the
        // whole call, which a to-tag would narrow to one dialogue.
        let whole_call = command == MediaCommand::Delete && self.section != Section::Reply;
        let to_tag = if whole_call {
            None
        } else {
            self.msg.to().and_then(|t| t.tag).map(str::to_string)
        };
        let ask = MediaAsk {
            command,
            call_id: call_id.to_string(),
            from_tag: from_tag.to_string(),
            to_tag,
            // The request route runs once for every fork, before there
            // are forks: rtpengine's via-branch (one media leg per fork)
            // is not given; every fork shares the offer's media.
            via_branch: None,
            sdp: None,
            flags,
            source: self.source.ip(),
        };
        if command == MediaCommand::Delete {
            if !self.quiet() {
                self.tells.push(ask);
            }
            return true;
        }
        let step = self.media_steps;
        self.media_steps += 1;
        self.queries += 1;
        match self.media_before.get(step) {
            Some(Ok(sdp)) => {
                self.edits.body = Some(sdp.clone());
                true
            }
            Some(Err(why)) => {
                if !self.quiet() {
                    crate::warn_limited!(line, "rtp_manage: rtpengine not used: {why}");
                }
                false
            }
            None => {
                let sdp = sdp_of(self.msg).map(<[u8]>::to_vec);
                self.asked = Some(Query::Media(Box::new(MediaAsk { sdp, ..ask })));
                false
            }
        }
    }

    /// The ng command this message calls for (None: leave it alone).
    fn media_command(&self) -> Option<MediaCommand> {
        let has_sdp = sdp_of(self.msg).is_some();
        match self.section {
            Section::Failure => Some(MediaCommand::Delete),
            Section::Request => match self.msg.method()? {
                "INVITE" | "UPDATE" if has_sdp => Some(MediaCommand::Offer),
                "ACK" | "PRACK" if has_sdp => Some(MediaCommand::Answer),
                "BYE" | "CANCEL" => Some(MediaCommand::Delete),
                _ => None,
            },
            Section::Reply => {
                let status = self.msg.status()?;
                let method = self.msg.cseq().map(|(_, m)| m)?;
                if status >= 300 {
                    return (method == "INVITE").then_some(MediaCommand::Delete);
                }
                if !(180..300).contains(&status)
                    || !has_sdp
                    || !matches!(method, "INVITE" | "UPDATE" | "PRACK")
                {
                    return None;
                }
                // The request's SDP made this the answer; without one
                // (late offer) the response carries the offer.
                let request_had_sdp = self
                    .request_msg()
                    .filter(|r| r.is_request())
                    .is_none_or(|r| sdp_of(r).is_some());
                Some(if request_had_sdp {
                    MediaCommand::Answer
                } else {
                    MediaCommand::Offer
                })
            }
        }
    }
}
