//! Media relay through rtpengine (Sipwise's RTP proxy), sans-IO: the
//! pieces the `rtp_manage` step is made of, each a plain function or a
//! state machine that takes bytes and the time and gives bytes back.
//!
//! - [`manage`]: what a SIP message calls for ([`manage::decide`]): an
//!   offer, an answer, a delete, or nothing, and with which tags.
//! - [`ng`]: the ng control protocol: requests ([`ng::Request`]) with the
//!   step's flags ([`ng::Flags`]), replies ([`ng::Reply`]), cookies.
//! - [`bencode`]: the ng protocol's dictionary format.
//! - [`sdp`]: where a message's SDP is, and the message with rtpengine's
//!   SDP in its place and Content-Length fixed ([`sdp::replace`]).
//! - [`instances`]: several rtpengines, one chosen per call by a hash of
//!   its Call-ID, dead ones skipped and probed until they answer again.
//! - [`client`]: requests in flight ([`client::Client`]): retransmission
//!   with the same cookie, replies matched by cookie, failover, events
//!   for the metrics.
//!
//! One `rtp_manage` on a message is: [`manage::decide`]; nothing to do →
//! done; else build the request ([`manage::Decision::request`]), hand it
//! to the [`client::Client`] and wait for its [`client::Event`]; on a
//! reply with SDP, [`sdp::replace`] the body. A failure (no instance
//! answered, an error result) makes `rtp_manage` false.

pub mod bencode;
pub mod client;
pub mod instances;
pub mod manage;
pub mod ng;
pub mod sdp;
