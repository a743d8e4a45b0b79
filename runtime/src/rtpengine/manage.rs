//! What `rtp_manage` does with a SIP message: send rtpengine an offer, an
//! answer or a delete, or leave the message alone ([`decide`]), and with
//! which tags and via-branch. The rules are those of Kamailio's
//! `rtpengine_manage`, with the late offer followed through and two
//! deliberate differences (re-INVITE and UPDATE failures, below).
//!
//! Requests:
//!
//! | message | SDP | command |
//! | --- | --- | --- |
//! | INVITE, UPDATE | yes | offer |
//! | ACK | yes | answer (the INVITE had none: its 2xx made the offer) |
//! | PRACK | yes | answer (to an offer in a reliable 1xx, RFC 3262) |
//! | BYE, CANCEL | any | delete |
//! | anything else, or the above without SDP | | nothing |
//!
//! Responses (the request named by CSeq):
//!
//! | response | command |
//! | --- | --- |
//! | 101–299 to INVITE, with SDP | answer; offer if the INVITE had no SDP (late offer) |
//! | 101–299 to UPDATE or PRACK, with SDP | answer |
//! | ≥ 300 to an initial INVITE (401 and 407 included) | delete |
//! | 408 or 481 to a re-INVITE, UPDATE or PRACK | delete (the dialog is gone, RFC 5057) |
//! | anything else | nothing |
//!
//! A failed initial INVITE deletes even on 401 and 407: the caller sends a
//! new INVITE with credentials, and its offer sets the call up again
//! (rtpengine cancels a scheduled deletion on new signalling, or creates
//! the call afresh); not deleting would leave ports allocated until
//! rtpengine's own timeout whenever a caller gives up instead. A failed
//! re-INVITE or UPDATE leaves the session as it was (RFC 3261 §14.1), so
//! it deletes nothing (Kamailio deletes on any failure response), except
//! 408 and 481, which end the dialog.
//!
//! What a response needs to know of its request ([`RequestFacts`]: had it
//! SDP, was it in a dialog) the caller passes in [`Context::request`]; when
//! it is unknown, the request is taken to have had SDP and to be initial
//! (Kamailio's choice outside a transaction). Offers in a PRACK (rare,
//! RFC 3262 allows them) are read as answers.
//!
//! Tags follow the offer, not the headers: rtpengine's `from-tag` is the
//! tag of the side that made the offer, in the offer and in its answer.
//! A request is sent by its From side, a response by its To side; so an
//! offer's `from-tag` is the sender's (the From tag of an INVITE, the To
//! tag of a 200 that makes a late offer) and an answer's `to-tag` is the
//! sender's (the To tag of a 200, the From tag of a late offer's ACK).
//! A delete takes the headers as they are.
//!
//! Forks: rtpengine keeps one set of media per fork when the forks have
//! different via-branches, so the initial INVITE's transaction names its
//! fork. A response to an initial INVITE carries the branch of the Via
//! this proxy put on the request (its top Via as received, or
//! [`Context::branch`] when the caller knows better, e.g. after removing
//! it), so an answer or a fork's failure names the fork it comes from; the
//! initial INVITE's offer carries one only from [`Context::branch`]: the
//! branch of the Via the proxy adds when it sends the request on, for an
//! `rtp_manage` made per fork (then each fork's offer gets media of its
//! own). An offer made once for all forks carries none, and rtpengine then
//! pairs each answer with the offer's other side by its to-tag. Nothing
//! else carries a via-branch: in a dialog both tags name the sides (with
//! both known, rtpengine 10.5 goes by the tags alone), and the branch of a
//! later transaction (a re-INVITE, an ACK) is no fork's.

use std::fmt;

use super::ng::{Command, Flags, Request};
use super::sdp::{self, Sdp};
use crate::sip::Message;

/// What the caller knows beyond the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'c> {
    /// The fork, for the initial INVITE's transaction only (see the
    /// module doc). The INVITE: the branch of the Via this proxy adds when
    /// it sends it on (for an `rtp_manage` made per fork). Its responses:
    /// the branch of this proxy's Via the response came back on (default:
    /// the top Via's, as received).
    pub branch: Option<&'c str>,
    /// Responses: what the request they answer was (None: unknown).
    pub request: Option<RequestFacts>,
}

/// What a response's decision needs to know of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request carried SDP (an INVITE without it makes a late offer).
    pub had_sdp: bool,
    /// The request had a To tag (a re-INVITE, not an initial INVITE).
    pub in_dialog: bool,
}

impl RequestFacts {
    /// The facts of a request as the proxy sent it on.
    pub fn of(request: &Message<'_>) -> RequestFacts {
        RequestFacts {
            had_sdp: matches!(sdp::locate(request), Ok(Some(_))),
            in_dialog: request.to().is_some_and(|t| t.tag.is_some()),
        }
    }
}

/// The request to send rtpengine for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// [`Command::Offer`], [`Command::Answer`] or [`Command::Delete`].
    pub command: Command,
    pub call_id: &'a str,
    /// The tag of the side that made the offer (delete: the From tag).
    pub from_tag: &'a str,
    /// The other side's tag (an answer always has one).
    pub to_tag: Option<&'a str>,
    pub via_branch: Option<&'a str>,
    /// The SDP to send, and where to put rtpengine's (offer and answer).
    pub sdp: Option<Sdp<'a>>,
}

impl<'a> Decision<'a> {
    /// The ng request for this decision with the step's flags.
    pub fn request<'s>(&'s self, flags: &'s Flags) -> Request<'s> {
        let sdp = self.sdp.as_ref().map_or(&b""[..], |s| s.bytes);
        let request = match self.command {
            Command::Offer => Request::offer(self.call_id, self.from_tag, self.to_tag, sdp, flags),
            Command::Answer => Request::answer(
                self.call_id,
                self.from_tag,
                self.to_tag.unwrap_or(""),
                sdp,
                flags,
            ),
            _ => Request::delete(self.call_id, self.from_tag, self.to_tag, flags),
        };
        request.with_via_branch(self.via_branch)
    }
}

/// Why `rtp_manage` cannot handle a message that calls for it (the step
/// is then false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for Refused {}

fn refused<T>(reason: &'static str) -> Result<T, Refused> {
    Err(Refused { reason })
}

/// What the message calls for: Ok(None) when nothing (no SDP and nothing
/// ends); Err when it calls for something it lacks the parts of (no
/// Call-ID, no tag where one is needed, an SDP in a body left alone: see
/// [`sdp::locate`]).
pub fn decide<'a>(msg: &Message<'a>, ctx: &Context<'a>) -> Result<Option<Decision<'a>>, Refused> {
    let Some(command) = (if msg.is_request() {
        request_command(msg)?
    } else {
        response_command(msg, ctx)?
    }) else {
        return Ok(None);
    };
    let (command, sdp) = command;
    let Some(call_id) = msg.call_id() else {
        return refused("no Call-ID");
    };
    let from_tag = msg.from().and_then(|f| f.tag);
    let to_tag = msg.to().and_then(|t| t.tag);
    // Who sent the message, and who gets it.
    let (sender, receiver) = if msg.is_request() {
        (from_tag, to_tag)
    } else {
        (to_tag, from_tag)
    };
    let (from_tag, to_tag) = match command {
        Command::Offer => (sender, receiver),
        Command::Answer => {
            if sender.is_none() {
                return refused("an answer without the answering side's tag");
            }
            (receiver, sender)
        }
        _ => (from_tag, to_tag),
    };
    let Some(from_tag) = from_tag else {
        return refused("no tag for the offering side");
    };
    let via_branch = if !initial_invite(msg, ctx) {
        None
    } else if msg.is_request() {
        ctx.branch.filter(|_| command == Command::Offer)
    } else {
        ctx.branch.or_else(|| msg.top_via().and_then(|v| v.branch))
    };
    Ok(Some(Decision {
        command,
        call_id,
        from_tag,
        to_tag,
        via_branch,
        sdp,
    }))
}

/// Whether the message is an initial INVITE or a response to one.
pub(crate) fn initial_invite(msg: &Message<'_>, ctx: &Context<'_>) -> bool {
    if msg.is_request() {
        msg.method() == Some("INVITE") && msg.to().is_some_and(|t| t.tag.is_none())
    } else {
        msg.cseq().is_some_and(|(_, m)| m == "INVITE") && !ctx.request.is_some_and(|r| r.in_dialog)
    }
}

type Found<'a> = Option<(Command, Option<Sdp<'a>>)>;

/// The message's SDP, for a command that sends one.
fn with_sdp<'a>(msg: &Message<'a>, command: Command) -> Result<Found<'a>, Refused> {
    match sdp::locate(msg) {
        Ok(Some(sdp)) => Ok(Some((command, Some(sdp)))),
        Ok(None) => Ok(None),
        Err(e) => refused(e.reason),
    }
}

fn request_command<'a>(msg: &Message<'a>) -> Result<Found<'a>, Refused> {
    match msg.method().unwrap_or("") {
        "INVITE" | "UPDATE" => with_sdp(msg, Command::Offer),
        "ACK" | "PRACK" => with_sdp(msg, Command::Answer),
        "BYE" | "CANCEL" => Ok(Some((Command::Delete, None))),
        _ => Ok(None),
    }
}

fn response_command<'a>(msg: &Message<'a>, ctx: &Context<'a>) -> Result<Found<'a>, Refused> {
    let Some((_, method)) = msg.cseq() else {
        return refused("a response without CSeq");
    };
    let status = msg.status().unwrap_or(0);
    let facts = ctx.request.unwrap_or(RequestFacts {
        had_sdp: true,
        in_dialog: false,
    });
    let dialog_gone = matches!(status, 408 | 481);
    match (method, status) {
        (_, 0..=100) => Ok(None),
        ("INVITE", 101..=299) if facts.had_sdp => with_sdp(msg, Command::Answer),
        ("INVITE", 101..=299) => with_sdp(msg, Command::Offer),
        ("INVITE", _) if !facts.in_dialog || dialog_gone => Ok(Some((Command::Delete, None))),
        ("UPDATE" | "PRACK", 101..=299) => with_sdp(msg, Command::Answer),
        ("UPDATE" | "PRACK", _) if dialog_gone => Ok(Some((Command::Delete, None))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    /// A request from a (tag `a`) to b (tag `to`, if any).
    fn request(method: &str, to_tag: Option<&str>, sdp: bool) -> Vec<u8> {
        let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
        let body = if sdp { SDP } else { "" };
        let ct = if sdp {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        format!(
            "{method} sip:b@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKuac\r\n\
             From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>{to}\r\n\
             Call-ID: call-1\r\nCSeq: 2 {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A response from b (tag `to_tag`) through this proxy (top Via
    /// `branch`) to a request of `method`.
    fn response(status: u16, method: &str, to_tag: &str, branch: &str, sdp: bool) -> Vec<u8> {
        let body = if sdp { SDP } else { "" };
        let ct = if sdp {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        format!(
            "SIP/2.0 {status} Whatever\r\n\
             Via: SIP/2.0/UDP 198.51.100.1;branch={branch}\r\n\
             Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKuac\r\n\
             From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag={to_tag}\r\n\
             Call-ID: call-1\r\nCSeq: 2 {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// (command, from-tag, to-tag, via-branch, has SDP) or None.
    type Summary = Option<(Command, String, Option<String>, Option<String>, bool)>;

    fn summary(buf: &[u8], ctx: Context<'_>) -> Summary {
        let msg = Message::parse(buf).unwrap();
        let d = decide(&msg, &ctx).unwrap()?;
        assert_eq!(d.call_id, "call-1");
        if let Some(sdp) = &d.sdp {
            assert_eq!(sdp.bytes, SDP.as_bytes());
        }
        Some((
            d.command,
            d.from_tag.to_string(),
            d.to_tag.map(str::to_string),
            d.via_branch.map(str::to_string),
            d.sdp.is_some(),
        ))
    }

    fn s(command: Command, from: &str, to: Option<&str>, via: Option<&str>, sdp: bool) -> Summary {
        Some((
            command,
            from.to_string(),
            to.map(str::to_string),
            via.map(str::to_string),
            sdp,
        ))
    }

    const NONE: Context<'static> = Context {
        branch: None,
        request: None,
    };
    use Command::{Answer, Delete, Offer};

    #[test]
    fn requests() {
        assert_eq!(
            summary(&request("INVITE", None, true), NONE),
            s(Offer, "a", None, None, true)
        );
        assert_eq!(summary(&request("INVITE", None, false), NONE), None);
        assert_eq!(
            summary(&request("UPDATE", Some("b"), true), NONE),
            s(Offer, "a", Some("b"), None, true)
        );
        assert_eq!(summary(&request("UPDATE", Some("b"), false), NONE), None);
        assert_eq!(
            summary(&request("BYE", Some("b"), false), NONE),
            s(Delete, "a", Some("b"), None, false)
        );
        assert_eq!(
            summary(&request("CANCEL", None, false), NONE),
            s(Delete, "a", None, None, false)
        );
        for method in ["OPTIONS", "MESSAGE", "INFO", "REGISTER", "NOTIFY"] {
            assert_eq!(
                summary(&request(method, None, true), NONE),
                None,
                "{method}"
            );
        }
        assert_eq!(summary(&request("ACK", Some("b"), false), NONE), None);
        assert_eq!(summary(&request("PRACK", Some("b"), false), NONE), None);
    }

    #[test]
    fn an_offer_per_fork_carries_the_forks_branch() {
        let ctx = Context {
            branch: Some("z9hG4bKsf-fork2"),
            request: None,
        };
        assert_eq!(
            summary(&request("INVITE", None, true), ctx),
            s(Offer, "a", None, Some("z9hG4bKsf-fork2"), true)
        );
        // A BYE or CANCEL ends the whole call, whatever the fork.
        assert_eq!(
            summary(&request("CANCEL", None, false), ctx),
            s(Delete, "a", None, None, false)
        );
        // A re-INVITE, an UPDATE or an ACK is in a dialog: the tags name
        // both sides, and their branch is no fork's.
        assert_eq!(
            summary(&request("INVITE", Some("b"), true), ctx),
            s(Offer, "a", Some("b"), None, true)
        );
        assert_eq!(
            summary(&request("UPDATE", Some("b"), true), ctx),
            s(Offer, "a", Some("b"), None, true)
        );
        assert_eq!(
            summary(&request("ACK", Some("b"), true), ctx),
            s(Answer, "b", Some("a"), None, true)
        );
    }

    #[test]
    fn responses_with_an_answer() {
        assert_eq!(
            summary(&response(183, "INVITE", "b", "z9hG4bKsf1", true), NONE),
            s(Answer, "a", Some("b"), Some("z9hG4bKsf1"), true)
        );
        let had = Context {
            branch: None,
            request: Some(RequestFacts {
                had_sdp: true,
                in_dialog: false,
            }),
        };
        assert_eq!(
            summary(&response(200, "INVITE", "b", "z9hG4bKsf1", true), had),
            s(Answer, "a", Some("b"), Some("z9hG4bKsf1"), true)
        );
        assert_eq!(
            summary(&response(180, "INVITE", "b", "z9hG4bKsf1", false), had),
            None
        );
        assert_eq!(
            summary(&response(100, "INVITE", "b", "z9hG4bKsf1", true), had),
            None
        );
        // In a dialog the tags say it all: no via-branch.
        assert_eq!(
            summary(&response(200, "UPDATE", "b", "z9hG4bKsf1", true), NONE),
            s(Answer, "a", Some("b"), None, true)
        );
        let reinvite = Context {
            branch: Some("z9hG4bKsf1"),
            request: Some(RequestFacts {
                had_sdp: true,
                in_dialog: true,
            }),
        };
        assert_eq!(
            summary(&response(200, "INVITE", "b", "z9hG4bKsf1", true), reinvite),
            s(Answer, "a", Some("b"), None, true)
        );
        assert_eq!(
            summary(&response(200, "BYE", "b", "z9hG4bKsf1", false), NONE),
            None
        );
        assert_eq!(
            summary(&response(200, "CANCEL", "b", "z9hG4bKsf1", false), NONE),
            None
        );
        assert_eq!(
            summary(&response(200, "OPTIONS", "b", "z9hG4bKsf1", true), NONE),
            None
        );
    }

    #[test]
    fn late_offer_the_2xx_offers_and_the_ack_answers() {
        let invite = request("INVITE", None, false);
        let facts = RequestFacts::of(&Message::parse(&invite).unwrap());
        assert_eq!(
            facts,
            RequestFacts {
                had_sdp: false,
                in_dialog: false
            }
        );
        let ctx = Context {
            branch: None,
            request: Some(facts),
        };
        // The callee's 200 is the offer: the callee (To tag b) offers.
        assert_eq!(
            summary(&response(200, "INVITE", "b", "z9hG4bKsf1", true), ctx),
            s(Offer, "b", Some("a"), Some("z9hG4bKsf1"), true)
        );
        // A reliable 183 can make it too (then the PRACK answers).
        assert_eq!(
            summary(&response(183, "INVITE", "b", "z9hG4bKsf1", true), ctx),
            s(Offer, "b", Some("a"), Some("z9hG4bKsf1"), true)
        );
        // The caller's ACK answers it: still from-tag b, to-tag a.
        assert_eq!(
            summary(&request("ACK", Some("b"), true), NONE),
            s(Answer, "b", Some("a"), None, true)
        );
        assert_eq!(
            summary(&request("PRACK", Some("b"), true), NONE),
            s(Answer, "b", Some("a"), None, true)
        );
    }

    #[test]
    fn failures() {
        let initial = Context {
            branch: None,
            request: Some(RequestFacts {
                had_sdp: true,
                in_dialog: false,
            }),
        };
        for status in [300, 401, 403, 404, 407, 408, 480, 486, 487, 500, 503, 603] {
            assert_eq!(
                summary(
                    &response(status, "INVITE", "b", "z9hG4bKsf1", false),
                    initial
                ),
                s(Delete, "a", Some("b"), Some("z9hG4bKsf1"), false),
                "{status}"
            );
        }
        // Unknown request: taken as an initial INVITE.
        assert_eq!(
            summary(&response(486, "INVITE", "b", "z9hG4bKsf1", false), NONE),
            s(Delete, "a", Some("b"), Some("z9hG4bKsf1"), false)
        );
        let reinvite = Context {
            branch: None,
            request: Some(RequestFacts {
                had_sdp: true,
                in_dialog: true,
            }),
        };
        for status in [488, 491, 500] {
            assert_eq!(
                summary(
                    &response(status, "INVITE", "b", "z9hG4bKsf1", false),
                    reinvite
                ),
                None,
                "{status}: the session stays as it was"
            );
            assert_eq!(
                summary(&response(status, "UPDATE", "b", "z9hG4bKsf1", false), NONE),
                None
            );
        }
        for status in [408, 481] {
            assert_eq!(
                summary(
                    &response(status, "INVITE", "b", "z9hG4bKsf1", false),
                    reinvite
                ),
                s(Delete, "a", Some("b"), None, false),
                "{status}: the dialog is gone"
            );
            assert_eq!(
                summary(&response(status, "UPDATE", "b", "z9hG4bKsf1", false), NONE),
                s(Delete, "a", Some("b"), None, false)
            );
        }
        assert_eq!(
            summary(&response(486, "BYE", "b", "z9hG4bKsf1", false), NONE),
            None
        );
        let invite = request("INVITE", Some("b"), true);
        let facts = RequestFacts::of(&Message::parse(&invite).unwrap());
        assert_eq!(
            facts,
            RequestFacts {
                had_sdp: true,
                in_dialog: true
            }
        );
    }

    #[test]
    fn forked_answers_name_their_fork() {
        let one = summary(&response(183, "INVITE", "b1", "z9hG4bKsf-1", true), NONE);
        let two = summary(&response(183, "INVITE", "b2", "z9hG4bKsf-2", true), NONE);
        assert_eq!(one, s(Answer, "a", Some("b1"), Some("z9hG4bKsf-1"), true));
        assert_eq!(two, s(Answer, "a", Some("b2"), Some("z9hG4bKsf-2"), true));
        // The fork that fails deletes its own branch.
        assert_eq!(
            summary(&response(486, "INVITE", "b2", "z9hG4bKsf-2", false), NONE),
            s(Delete, "a", Some("b2"), Some("z9hG4bKsf-2"), false)
        );
        // The caller knows the fork's branch (its own Via already gone).
        let ctx = Context {
            branch: Some("z9hG4bKsf-3"),
            request: None,
        };
        assert_eq!(
            summary(&response(183, "INVITE", "b3", "z9hG4bKuac", true), ctx),
            s(Answer, "a", Some("b3"), Some("z9hG4bKsf-3"), true)
        );
    }

    #[test]
    fn refusals() {
        let cases: [(Vec<u8>, &str); 5] = [
            (
                String::from_utf8(request("INVITE", None, true))
                    .unwrap()
                    .replace("Call-ID: call-1\r\n", "")
                    .into_bytes(),
                "no Call-ID",
            ),
            (
                String::from_utf8(request("INVITE", None, true))
                    .unwrap()
                    .replace(";tag=a", "")
                    .into_bytes(),
                "no tag for the offering side",
            ),
            (
                String::from_utf8(response(183, "INVITE", "b", "z9hG4bKsf1", true))
                    .unwrap()
                    .replace(";tag=b", "")
                    .into_bytes(),
                "an answer without the answering side's tag",
            ),
            (
                String::from_utf8(response(183, "INVITE", "b", "z9hG4bKsf1", true))
                    .unwrap()
                    .replace("CSeq: 2 INVITE\r\n", "")
                    .into_bytes(),
                "a response without CSeq",
            ),
            (
                String::from_utf8(request("INVITE", None, true))
                    .unwrap()
                    .replace("application/sdp", "multipart/mixed")
                    .into_bytes(),
                "a multipart body without a boundary",
            ),
        ];
        for (buf, reason) in cases {
            let msg = Message::parse(&buf).unwrap();
            assert_eq!(decide(&msg, &NONE), Err(Refused { reason }));
        }
        // A message that calls for nothing is not refused for what it lacks.
        let buf = String::from_utf8(request("OPTIONS", None, false))
            .unwrap()
            .replace("Call-ID: call-1\r\n", "")
            .into_bytes();
        assert_eq!(decide(&Message::parse(&buf).unwrap(), &NONE), Ok(None));
    }

    #[test]
    fn the_decision_makes_its_request() {
        let buf = response(183, "INVITE", "b", "z9hG4bKsf1", true);
        let msg = Message::parse(&buf).unwrap();
        let d = decide(&msg, &NONE).unwrap().unwrap();
        let flags = Flags::parse("replace-origin").unwrap();
        let r = d.request(&flags);
        assert_eq!(
            (r.command, r.call_id, r.from_tag, r.to_tag, r.via_branch),
            (Answer, "call-1", "a", Some("b"), Some("z9hG4bKsf1"))
        );
        assert_eq!(r.sdp, Some(SDP.as_bytes()));
        assert_eq!(r.flags, Some(&flags));

        let buf = request("BYE", Some("b"), false);
        let msg = Message::parse(&buf).unwrap();
        let d = decide(&msg, &NONE).unwrap().unwrap();
        let r = d.request(&flags);
        assert_eq!((r.command, r.to_tag, r.sdp), (Delete, Some("b"), None));
    }
}
