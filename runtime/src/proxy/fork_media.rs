//! Media of their own for the forks of an INVITE (rtpengine's
//! via-branch, like Kamailio's `rtpengine_manage` run per branch).
//!
//! The request route's `rtp_manage` makes one offer, before the route
//! knows whether the call forks; it names the caller's Via branch, so
//! rtpengine keeps that media for the first fork. Every later fork of the
//! transaction (parallel forks of `lookup` or `relay: [..]`, the next
//! q-group, a branch the `failure` route adds) gets the same offer again
//! with its own branch as via-branch, and leaves with the SDP rtpengine
//! gave for it: each callee sees ports of its own, and rtpengine pairs
//! each fork's answer with its offer.
//!
//! Such a fork is not sent until rtpengine answers: it waits as an
//! [`Unsent`] client with its bytes built, its offer a question of the
//! core ([`super::suspend`], resumed by `Stateful::resume_fork`).
//! Retransmissions of the INVITE are absorbed by the transaction
//! meanwhile; a CANCEL, a 2xx or a 6xx from another fork ends it unsent.
//! When rtpengine cannot make the offer, the fork goes with the first
//! fork's SDP (shared media, as without forks) and a log line says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::stateful::Env;
use super::suspend::{AskId, HeldReply, MediaAsk, Memo, Query, Resume};
use crate::ctx::Edits;
use crate::rtpengine::sdp;
use crate::sip::Message;
use crate::transaction::{Action, Machine};

/// The media a new branch goes with.
pub(super) enum ForkMedia {
    /// The request route's SDP (or none to manage); the via-branch
    /// rtpengine knows its media by, if any.
    Shared(Option<String>),
    /// It waits for an offer of its own (the ask); its via-branch is the
    /// branch's id.
    Own(AskId),
}

/// Where a new branch (number `held.index` of its transaction) stands:
/// the first branch and branches of requests the route made no offer for
/// share the route's media; later ones ask for their own.
#[allow(clippy::too_many_arguments)]
pub(super) fn for_branch(
    env: &Env<'_>,
    now: Instant,
    held: HeldReply,
    shard: usize,
    source: SocketAddr,
    socket: usize,
    edits: &Edits,
    branch: &str,
) -> ForkMedia {
    let Some(offer) = &edits.media_offer else {
        return ForkMedia::Shared(None);
    };
    let shared = || ForkMedia::Shared(offer.via_branch.clone());
    let Some(waiting) = env.suspended.filter(|_| held.index > 0) else {
        return shared();
    };
    let ask = MediaAsk {
        via_branch: Some(branch.to_string()),
        to_tag: None,
        ..(**offer).clone()
    };
    let resume = Resume::Fork { held, shard };
    match waiting.suspend(
        now,
        env.unix_time(now),
        None,
        // The transaction keeps the request; the wait needs no copy.
        Vec::new(),
        source,
        socket,
        Memo::default(),
        resume,
        1,
        Query::Media(Box::new(ask)),
    ) {
        Ok(ask) => ForkMedia::Own(ask),
        Err(_) => {
            crate::warn_limited!(
                call_id = offer.call_id.as_str(),
                "rtp_manage: too many messages wait for rtpengine; the fork shares the first fork's media"
            );
            shared()
        }
    }
}

/// The request of a fork with the SDP rtpengine made for it (`answer`);
/// on an error, the request as built (the first fork's SDP).
pub(super) fn with_own_sdp(request: &[u8], answer: Result<Vec<u8>, String>) -> Vec<u8> {
    let spliced = answer.and_then(|new_sdp| {
        let msg =
            Message::parse(request).map_err(|_| "the fork's request does not parse".to_string())?;
        let found = sdp::locate(&msg)
            .map_err(|e| e.reason.to_string())?
            .ok_or_else(|| "the fork's request has no SDP".to_string())?;
        sdp::replace(&msg, &found, &new_sdp).map_err(|e| e.reason.to_string())
    });
    spliced.unwrap_or_else(|why| {
        crate::warn_limited!(
            "rtp_manage: no media of its own for a fork ({why}); it shares the first fork's"
        );
        request.to_vec()
    })
}

/// The client side of a fork built but not sent yet: no timer runs, and
/// nothing holds the transaction for it (it ends unsent when the rest
/// does).
#[derive(Debug)]
pub(super) struct Unsent {
    request: Arc<[u8]>,
}

impl Unsent {
    pub(super) fn new(request: Vec<u8>) -> Unsent {
        Unsent {
            request: Arc::from(request),
        }
    }

    /// The request as it will be sent (before its own SDP).
    pub(super) fn request(&self) -> &Arc<[u8]> {
        &self.request
    }
}

impl Machine for Unsent {
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, _now: Instant, _out: &mut Vec<Action>) {}

    fn is_terminated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(sdp: &str) -> Vec<u8> {
        format!(
            "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_fork_leaves_with_its_own_sdp_or_the_shared_one() {
        let shared = invite("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\n");
        let own = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30010 RTP/AVP 0\r\n";
        let sent = with_own_sdp(&shared, Ok(own.as_bytes().to_vec()));
        assert_eq!(sent, invite(own));
        let kept = with_own_sdp(&shared, Err("rtpengine down".into()));
        assert_eq!(kept, shared);
    }
}
