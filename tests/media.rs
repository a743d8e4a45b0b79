//! `rtp_manage` in the core, sans-IO: the core asks rtpengine (the test
//! answers with plain values, as the network layer does with a real one),
//! the message waits, then goes on with rtpengine's SDP; a failed offer
//! takes the route's `not rtp_manage` branch; a 200's answer waits in
//! its transaction; BYE deletes without waiting
//! (tests/routes/media.yaml). A forked call: each fork after the first
//! waits for an offer of its own, named by its branch
//! (tests/routes/media_fork_list.yaml).

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
    core_for(&common::media::ROUTES)
}

fn core_for(routes: &'static dyn sipforge_runtime::api::Routes) -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(routes, Identity::new(vec![listener]), CoreConfig::default())
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
    response_with_sdp("200 OK", "b-1", invite, sdp)
}

/// A response with SDP (To tag `tag`) to the INVITE a callee got.
fn response_with_sdp(status: &str, tag: &str, invite: &str, sdp: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in invite.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or("");
        if ["Via", "From", "Call-ID", "CSeq", "Record-Route"].contains(&name) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let to = header(invite, "To").unwrap();
    out.push_str(&format!(
        "To: {to};tag={tag}\r\nContact: <sip:bob@{CALLEE}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
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

const CAROL: &str = "127.0.0.1:5082";
const RELAYED_2: &str = "v=0\r\no=alice 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30010 RTP/AVP 0\r\n";

fn fork_core() -> Core {
    core_for(&common::media_fork_list::ROUTES)
}

fn invite_to<'s>(sent: &'s [(String, String)], to: &str) -> Option<&'s str> {
    sent.iter()
        .find(|(dest, t)| dest == to && t.starts_with("INVITE "))
        .map(|(_, t)| t.as_str())
}

/// The branch of a request's top Via.
fn top_branch(text: &str) -> String {
    let via = header(text, "Via").unwrap();
    via.split(";branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// A forked call up to the point where the second fork waits for its
/// offer: the first fork's INVITE and the second fork's question.
fn fork_waiting(core: &Core, id: &str) -> (String, Ask) {
    feed(core, &invite(id, OFFER), CALLER);
    let asked = asks(core);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let offer = media(&asked[0]);
    assert_eq!(offer.command, MediaCommand::Offer);
    assert_eq!(
        offer.via_branch.as_deref(),
        Some(format!("z9hG4bK-{id}").as_str()),
        "the route's offer names the caller's branch"
    );
    let sent = reply(
        core,
        &asked[0],
        Answer::Media(Ok(RELAYED.as_bytes().to_vec())),
    );
    let first = invite_to(&sent, CALLEE)
        .unwrap_or_else(|| panic!("the first fork goes at once: {sent:?}"))
        .to_string();
    assert_eq!(body(&first), RELAYED);
    assert!(
        invite_to(&sent, CAROL).is_none(),
        "the second fork waits: {sent:?}"
    );
    let asked = asks(core);
    assert_eq!(asked.len(), 1, "one offer for the second fork: {asked:?}");
    let own = media(&asked[0]);
    assert_eq!(own.command, MediaCommand::Offer);
    assert_eq!(
        own.sdp.as_deref(),
        Some(OFFER.as_bytes()),
        "the caller's SDP"
    );
    assert_eq!(
        (own.call_id.as_str(), own.from_tag.as_str()),
        (id, format!("a-{id}").as_str())
    );
    assert!(own.to_tag.is_none());
    let via = own.via_branch.as_deref().unwrap();
    assert!(
        via.starts_with("z9hG4bKsfT") && via != top_branch(&first),
        "{via}"
    );
    (first, asked[0].clone())
}

#[test]
fn each_fork_after_the_first_gets_an_offer_of_its_own() {
    let core = fork_core();
    let (first, ask) = fork_waiting(&core, "f1");
    let sent = reply(
        &core,
        &ask,
        Answer::Media(Ok(RELAYED_2.as_bytes().to_vec())),
    );
    let second = invite_to(&sent, CAROL).unwrap_or_else(|| panic!("{sent:?}"));
    assert_eq!(body(second), RELAYED_2, "the second fork's own media");
    assert_eq!(
        header(second, "Content-Length"),
        Some(RELAYED_2.len().to_string().as_str())
    );
    assert_eq!(
        Some(top_branch(second).as_str()),
        media(&ask).via_branch.as_deref()
    );

    // Each fork's answer names the branch its offer named.
    for (invite, from, tag, via) in [
        (second, CAROL, "c-2", top_branch(second)),
        (first.as_str(), CALLEE, "b-1", "z9hG4bK-f1".to_string()),
    ] {
        let early = response_with_sdp("183 Session Progress", tag, invite, ANSWER);
        assert!(feed(&core, &early, from).is_empty());
        let asked = asks(&core);
        assert_eq!(asked.len(), 1);
        let answer = media(&asked[0]);
        assert_eq!(answer.command, MediaCommand::Answer);
        assert_eq!(answer.to_tag.as_deref(), Some(tag));
        assert_eq!(answer.via_branch.as_deref(), Some(via.as_str()));
    }
}

#[test]
fn a_fork_whose_offer_fails_goes_with_the_first_forks_media() {
    let core = fork_core();
    let (_, ask) = fork_waiting(&core, "f2");
    let sent = reply(
        &core,
        &ask,
        Answer::Media(Err("no rtpengine answered".into())),
    );
    let second = invite_to(&sent, CAROL).unwrap_or_else(|| panic!("{sent:?}"));
    assert_eq!(body(second), RELAYED);
    // Its answer then names the media it shares: the caller's branch.
    let early = response_with_sdp("183 Session Progress", "c-2", second, ANSWER);
    assert!(feed(&core, &early, CAROL).is_empty());
    let asked = asks(&core);
    assert_eq!(media(&asked[0]).via_branch.as_deref(), Some("z9hG4bK-f2"));
}

#[test]
fn a_cancel_ends_a_fork_that_waits_for_its_offer_unsent() {
    let core = fork_core();
    let (first, ask) = fork_waiting(&core, "f3");
    let cancel = format!(
        "CANCEL sip:bob@{CALLEE} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-f3\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-f3\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: f3\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    let sent = feed(&core, &cancel, CALLER);
    assert!(
        sent.iter()
            .any(|(to, t)| to == CALLER && status(t) == "SIP/2.0 200 OK"),
        "{sent:?}"
    );
    // The offer's answer comes after the CANCEL: the fork is never sent.
    let sent = reply(
        &core,
        &ask,
        Answer::Media(Ok(RELAYED_2.as_bytes().to_vec())),
    );
    assert!(invite_to(&sent, CAROL).is_none(), "{sent:?}");
    // The first fork rings, gets its CANCEL, answers 487: the caller gets 487.
    let ringing = response_with_sdp("180 Ringing", "b-1", &first, "");
    let sent = feed(&core, &ringing, CALLEE);
    assert!(
        sent.iter()
            .any(|(to, t)| to == CALLEE && t.starts_with("CANCEL ")),
        "{sent:?}"
    );
    let _ = asks(&core);
    let terminated = response_with_sdp("487 Request Terminated", "b-1", &first, "");
    let sent = feed(&core, &terminated, CALLEE);
    assert!(
        sent.iter()
            .any(|(to, t)| to == CALLER && status(t) == "SIP/2.0 487 Request Terminated"),
        "{sent:?}"
    );
}
