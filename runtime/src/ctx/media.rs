//! The `rtp_manage` step (media through rtpengine, like Kamailio's
//! `rtpengine_manage`): which ng command the message calls for, and the
//! SDP rtpengine returned put in place of the message's.
//!
//! What a message calls for is decided by [`crate::rtpengine::manage`]
//! (its module doc has the tables: offers, answers, late offers, which
//! failures delete, which tags go where, multipart bodies). This step adds
//! what only a route run knows:
//!
//! - In `failure` the step deletes the whole call (use it where the
//!   failure route ends the call); a BYE or CANCEL in `request` deletes
//!   the whole call too (no to-tag: one would narrow it to one dialogue).
//! - The via-branch: an offer made in `request` is made once, before
//!   there are forks, and names none. When the transaction forks, the
//!   core repeats the offer per fork with the fork's branch
//!   ([`Edits::media_offer`], see `proxy::stateful`), and the `reply`
//!   route then names the fork a response came back on
//!   ([`Ctx::set_media_branch`]); otherwise no message names one.
//!
//! An offer or answer needs rtpengine's SDP before the message goes on:
//! the route run is suspended with the question (see
//! [`crate::proxy::suspend`]), and the next run finds the answer in its
//! memo. A delete is told, not asked: nobody waits for it. The step is
//! true when rtpengine did what the message called for (or nothing was
//! called for), false when it could not be used (the message then goes
//! on with its own SDP, unless the routes test the step and decide
//! otherwise: `if: not rtp_manage`).
//!
//! [`Edits::media_offer`]: super::Edits::media_offer

use super::{Ctx, Section};
use crate::proxy::suspend::{MediaAsk, MediaCommand, Query};
use crate::rtpengine::manage::{self, RequestFacts};
use crate::rtpengine::ng::Command;
use crate::rtpengine::sdp::Sdp;

impl<'a> Ctx<'a> {
    /// Name the fork a response came back on, for rtpengine's via-branch
    /// (only when the fork's offer named it).
    pub(crate) fn set_media_branch(&mut self, branch: Option<&'a str>) -> &mut Ctx<'a> {
        self.media_branch = branch;
        self
    }

    /// `rtp_manage` / `rtp_manage: "flags"` (see the module doc).
    pub fn rtp_manage(&mut self, line: u32, flags: Option<&'static str>) -> bool {
        if self.asked.is_some() {
            return false;
        }
        let (ask, sdp) = match self.media_ask(flags) {
            Ok(Some(found)) => found,
            Ok(None) => return true,
            Err(why) => {
                if !self.quiet() {
                    crate::warn_limited!(line, "rtp_manage: left alone: {why}");
                }
                return false;
            }
        };
        if ask.command == MediaCommand::Delete {
            if !self.quiet() {
                self.tells.push(ask);
            }
            return true;
        }
        let step = self.media_steps;
        self.media_steps += 1;
        self.queries += 1;
        match self.media_before.get(step) {
            Some(Ok(new_sdp)) => {
                let body = spliced_body(self.msg.body(), self.msg.body_start(), sdp, new_sdp);
                self.edits.body = Some(body);
                if self.section == Section::Request
                    && manage::initial_invite(self.msg, &manage::Context::default())
                {
                    // Kept for the forks: each gets this offer again with
                    // its own via-branch (the SDP as received).
                    self.edits.media_offer = Some(Box::new(ask));
                }
                true
            }
            Some(Err(why)) => {
                if !self.quiet() {
                    crate::warn_limited!(line, "rtp_manage: rtpengine not used: {why}");
                }
                false
            }
            None => {
                self.asked = Some(Query::Media(Box::new(ask)));
                false
            }
        }
    }

    /// The ng request the message calls for and where its SDP is (None:
    /// nothing to do; Err: it calls for something it lacks the parts of).
    fn media_ask(
        &self,
        flags: Option<&'static str>,
    ) -> Result<Option<(MediaAsk, Option<Sdp<'a>>)>, &'static str> {
        let msg = self.msg;
        if self.section == Section::Failure {
            let (Some(call_id), Some(from_tag)) = (msg.call_id(), msg.from().and_then(|f| f.tag))
            else {
                return Err("no Call-ID or From tag");
            };
            let ask = MediaAsk {
                command: MediaCommand::Delete,
                call_id: call_id.to_string(),
                from_tag: from_tag.to_string(),
                to_tag: None,
                via_branch: None,
                sdp: None,
                flags,
                source: self.source.ip(),
            };
            return Ok(Some((ask, None)));
        }
        let request = if msg.is_request() {
            None
        } else {
            self.request_msg()
                .filter(|r| r.is_request())
                .map(RequestFacts::of)
        };
        // The fork a message's media belongs to: an initial INVITE's offer
        // names the caller's branch (the first fork keeps that media; see
        // `proxy::fork_media`), a response the fork it came back on.
        let branch = if msg.is_request() {
            msg.top_via()
                .and_then(|v| v.branch)
                .filter(|b| b.starts_with("z9hG4bK"))
        } else {
            self.media_branch
        };
        let context = manage::Context { branch, request };
        let Some(decision) = manage::decide(msg, &context).map_err(|r| r.reason)? else {
            return Ok(None);
        };
        let command = match decision.command {
            Command::Offer => MediaCommand::Offer,
            Command::Answer => MediaCommand::Answer,
            _ => MediaCommand::Delete,
        };
        // A request's delete (BYE, CANCEL) ends the whole call.
        let whole_call = command == MediaCommand::Delete && msg.is_request();
        let ask = MediaAsk {
            command,
            call_id: decision.call_id.to_string(),
            from_tag: decision.from_tag.to_string(),
            to_tag: decision.to_tag.filter(|_| !whole_call).map(str::to_string),
            // Only a fork whose offer named its branch names it again
            // (a response's top Via names no offer rtpengine knows).
            via_branch: branch.and(decision.via_branch).map(str::to_string),
            sdp: decision.sdp.as_ref().map(|s| s.bytes.to_vec()),
            flags,
            source: self.source.ip(),
        };
        Ok(Some((ask, decision.sdp)))
    }
}

/// The body with `new_sdp` in place of the SDP at `sdp` (the whole body,
/// or one part of a multipart body; `body_start`: the body's offset in the
/// message, the SDP's range being absolute).
pub(crate) fn spliced_body(
    body: &[u8],
    body_start: usize,
    sdp: Option<Sdp<'_>>,
    new_sdp: &[u8],
) -> Vec<u8> {
    let Some(range) = sdp.map(|s| s.range) else {
        return new_sdp.to_vec();
    };
    let (start, end) = (range.start - body_start, range.end - body_start);
    let mut out = Vec::with_capacity(body.len() - (end - start) + new_sdp.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(new_sdp);
    out.extend_from_slice(&body[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtpengine::sdp;
    use crate::sip::Message;

    #[test]
    fn a_multipart_body_keeps_its_other_parts() {
        let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=old\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n";
        let text = format!(
            "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             Content-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let msg = Message::parse(text.as_bytes()).unwrap();
        let found = sdp::locate(&msg).unwrap().unwrap();
        let out = spliced_body(
            msg.body(),
            msg.body_start(),
            Some(found),
            b"v=0\r\no=new\r\n",
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, body.replace("v=0\r\no=old\r\n", "v=0\r\no=new\r\n"));
        assert_eq!(
            spliced_body(msg.body(), msg.body_start(), None, b"v=0\r\n"),
            b"v=0\r\n"
        );
    }
}
