//! `rtp_manage` in the core, sans-IO: the core asks rtpengine (the test
//! answers with plain values, as the network layer does with a real one),
//! the message waits, then goes on with rtpengine's SDP; a failed offer
//! takes the route's `not rtp_manage` branch; a 200's answer waits in
//! its transaction; BYE deletes without waiting
//! (tests/routes/media.yaml).

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::text::header;
use sipforge_runtime::proxy::suspend::{Answer, Ask, MediaCommand, Query};
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener};

const CALLER: &str = "127.0.0.1:5062";
const CALLEE: &str = "127.0.0.1:5081";
const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const RELAYED: &str = "v=0\r\no=alice 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=bob 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
const ANSWER_RELAYED: &str = "v=0\r\no=bob 2 2 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n";

fn core() -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(
        &common::media::ROUTES,
        Identity::new(vec![listener]),
        CoreConfig::default(),
    )
}

fn feed(core: &Core, text: &str, from: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let source: SocketAddr = from.parse().unwrap();
    core.handle(Instant::now(), text.as_bytes(), source, 0, &mut out);
    common::sent_texts(out)
}

fn reply(core: &Core, ask: &Ask, answer: Answer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    core.answer(Instant::now(), ask.id, answer, &mut out);
    common::sent_texts(out)
}

fn asks(core: &Core) -> Vec<Ask> {
    std::iter::from_fn(|| core.poll_ask()).collect()
}

fn media(ask: &Ask) -> &sipforge_runtime::proxy::suspend::MediaAsk {
    match &ask.query {
        Query::Media(m) => m,
        other => panic!("an rtpengine question: {other:?}"),
    }
}

fn invite(id: &str, sdp: &str) -> String {
    let ctype = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:bob@{CALLEE} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-{id}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CALLER}>\r\n{ctype}\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The callee's 200 with SDP to the INVITE it got.
fn ok_with_sdp(invite: &str, sdp: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in invite.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or("");
        if ["Via", "From", "Call-ID", "CSeq", "Record-Route"].contains(&name) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let to = header(invite, "To").unwrap();
    out.push_str(&format!(
        "To: {to};tag=b-1\r\nContact: <sip:bob@{CALLEE}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    out
}

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn status(text: &str) -> &str {
    text.split("\r\n").next().unwrap_or("")
}

#[test]
fn an_offer_waits_for_rtpengine_and_goes_on_with_its_sdp() {
    let core = core();
    let sent = feed(&core, &invite("m1", OFFER), CALLER);
    assert_eq!(
        sent.len(),
        1,
        "only the 100 while rtpengine works: {sent:?}"
    );
    assert!(status(&sent[0].1).starts_with("SIP/2.0 100"));
    let asked = asks(&core);
    assert_eq!(asked.len(), 1);
    let m = media(&asked[0]);
    assert_eq!(m.command, MediaCommand::Offer);
    assert_eq!(m.call_id, "m1");
    assert_eq!(m.from_tag, "a-m1");
    assert_eq!(m.sdp.as_deref(), Some(OFFER.as_bytes()));
    assert_eq!(m.flags, Some("replace-origin replace-session-connection"));

    // The INVITE retransmitted meanwhile: the 100 again, nothing asked.
    let again = feed(&core, &invite("m1", OFFER), CALLER);
    assert!(
        again
            .iter()
            .all(|(_, t)| status(t).starts_with("SIP/2.0 100"))
    );
    assert!(asks(&core).is_empty());

    let sent = reply(
        &core,
        &asked[0],
        Answer::Media(Ok(RELAYED.as_bytes().to_vec())),
    );
    let relayed = sent
        .iter()
        .find(|(to, t)| to == CALLEE && t.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("relayed: {sent:?}"));
    assert_eq!(body(&relayed.1), RELAYED);
    assert_eq!(
        header(&relayed.1, "Content-Length"),
        Some(RELAYED.len().to_string().as_str())
    );

    // The callee's 200 with its SDP: the reply route asks for the answer.
    let sent = feed(&core, &ok_with_sdp(&relayed.1, ANSWER), CALLEE);
    assert!(sent.is_empty(), "the 200 waits for rtpengine: {sent:?}");
    let asked = asks(&core);
    assert_eq!(asked.len(), 1);
    let m = media(&asked[0]);
    assert_eq!(m.command, MediaCommand::Answer);
    assert_eq!(m.to_tag.as_deref(), Some("b-1"));
    assert_eq!(m.sdp.as_deref(), Some(ANSWER.as_bytes()));
    let sent = reply(
        &core,
        &asked[0],
        Answer::Media(Ok(ANSWER_RELAYED.as_bytes().to_vec())),
    );
    let ok = sent
        .iter()
        .find(|(to, t)| to == CALLER && status(t) == "SIP/2.0 200 OK")
        .unwrap_or_else(|| panic!("the 200 goes up: {sent:?}"));
    assert_eq!(body(&ok.1), ANSWER_RELAYED);
    assert_eq!(
        header(&ok.1, "Content-Length"),
        Some(ANSWER_RELAYED.len().to_string().as_str())
    );

    // BYE: a delete nobody waits for, and the BYE goes on at once.
    let rr = header(&relayed.1, "Record-Route").unwrap();
    let bye = format!(
        "BYE sip:bob@{CALLEE} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-m1bye\r\n\
         Max-Forwards: 70\r\nRoute: {rr}\r\nFrom: <sip:alice@example.com>;tag=a-m1\r\n\
         To: <sip:bob@example.com>;tag=b-1\r\nCall-ID: m1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let sent = feed(&core, &bye, CALLER);
    assert!(
        sent.iter()
            .any(|(to, t)| to == CALLEE && t.starts_with("BYE ")),
        "{sent:?}"
    );
    let told = asks(&core);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].id, 0, "nobody waits for a delete");
    assert_eq!(media(&told[0]).command, MediaCommand::Delete);
}

#[test]
fn a_failed_offer_takes_the_routes_503_branch() {
    let core = core();
    feed(&core, &invite("m2", OFFER), CALLER);
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Media(Err("no rtpengine answered".into())),
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status(&sent[0].1), "SIP/2.0 503 Media Relay Unavailable");
}

#[test]
fn an_invite_without_sdp_asks_nothing() {
    let core = core();
    let sent = feed(&core, &invite("m3", ""), CALLER);
    assert!(
        sent.iter()
            .any(|(to, t)| to == CALLEE && t.starts_with("INVITE ")),
        "{sent:?}"
    );
    assert!(asks(&core).is_empty());
}

#[test]
fn an_answer_rtpengine_cannot_give_lets_the_response_go_on_with_its_own_sdp() {
    // `rtp_manage` as a plain step (the reply route here): rtpengine not
    // answering is logged, and the message goes on as it came.
    let core = core();
    feed(&core, &invite("m4", OFFER), CALLER);
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Media(Ok(RELAYED.as_bytes().to_vec())),
    );
    let relayed = sent
        .iter()
        .find(|(to, t)| to == CALLEE && t.starts_with("INVITE "))
        .unwrap()
        .1
        .clone();
    assert!(feed(&core, &ok_with_sdp(&relayed, ANSWER), CALLEE).is_empty());
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Media(Err("no rtpengine answered".into())),
    );
    let ok = sent
        .iter()
        .find(|(to, t)| to == CALLER && status(t) == "SIP/2.0 200 OK")
        .unwrap_or_else(|| panic!("the 200 goes up anyway: {sent:?}"));
    assert_eq!(body(&ok.1), ANSWER, "with the callee's own SDP");
}
