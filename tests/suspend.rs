//! Requests waiting for a shared location store, sans-IO (the core's
//! `t_suspend` / `t_continue`): the core asks (`poll_ask`), the test
//! answers (`answer`) with plain values, as the network layer does with
//! Redis. Retransmissions while waiting are absorbed, a CANCEL ends a
//! waiting INVITE, store failures and a full table take the error paths.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::text::header;
use sipforge_runtime::proxy::suspend::{Answer, Ask, Query};
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener};
use sipforge_runtime::registrar::{Binding, Received, Refusal, StoreError};
use sipforge_runtime::transport::Transport;

const CALLER: &str = "127.0.0.1:5062";
const PHONE: &str = "127.0.0.1:5081";

fn core_with(config: CoreConfig) -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(
        &common::registrar_shared::ROUTES,
        Identity::new(vec![listener]),
        config,
    )
}

fn core() -> Core {
    core_with(CoreConfig::default())
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

fn invite(user: &str, id: &str) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-{id}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CALLER}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn cancel(user: &str, id: &str) -> String {
    format!(
        "CANCEL sip:{user}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-{id}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
}

fn register(user: &str, id: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r-{id}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@192.168.1.10:5060>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A binding of `user` registered from PHONE, live for 10 minutes.
fn binding(user: &str, now_unix: u64) -> Binding {
    Binding {
        contact: format!("sip:{user}@192.168.1.10:5060"),
        expires_at: now_unix + 600,
        q: None,
        call_id: "reg-1".into(),
        cseq: 1,
        instance: None,
        reg_id: None,
        path: Vec::new(),
        received: Received {
            transport: Transport::Udp,
            addr: PHONE.parse().unwrap(),
        },
        user_agent: None,
        registered_at: now_unix,
    }
}

fn status(text: &str) -> &str {
    text.split("\r\n").next().unwrap_or("")
}

#[test]
fn an_invite_waits_for_the_bindings_and_goes_to_the_contact_answered() {
    let core = core();
    let sent = feed(&core, &invite("bob", "w1"), CALLER);
    assert_eq!(sent.len(), 1, "only a 100 while waiting: {sent:?}");
    assert_eq!(sent[0].0, CALLER);
    assert!(status(&sent[0].1).starts_with("SIP/2.0 100"), "{sent:?}");
    let asked = asks(&core);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].query,
        Query::Bindings {
            aor: "sip:bob@example.com".into()
        }
    );
    assert_eq!(core.waiting(), 1);

    // A retransmission is absorbed: the 100 again, no second question.
    let again = feed(&core, &invite("bob", "w1"), CALLER);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(status(&again[0].1).starts_with("SIP/2.0 100"));
    assert!(asks(&core).is_empty(), "no second question");

    let now_unix = asked[0].now_unix;
    let sent = reply(
        &core,
        &asked[0],
        Answer::Bindings(Ok(vec![binding("bob", now_unix)])),
    );
    let invites: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 1, "{sent:?}");
    assert_eq!(invites[0].0, PHONE, "to where the REGISTER came from");
    assert!(
        invites[0]
            .1
            .starts_with("INVITE sip:bob@192.168.1.10:5060 SIP/2.0\r\n"),
        "the contact is the Request-URI: {}",
        invites[0].1
    );
    assert!(header(&invites[0].1, "Record-Route").is_some());
    assert_eq!(core.waiting(), 0);
    assert_eq!(core.transactions(), 1, "relayed statefully");

    // The same answer again (a late duplicate) changes nothing.
    assert!(reply(&core, &asked[0], Answer::Bindings(Ok(vec![]))).is_empty());
}

#[test]
fn no_binding_answers_404_and_a_store_failure_takes_the_not_found_path() {
    let core = core();
    feed(&core, &invite("bob", "nf1"), CALLER);
    let asked = asks(&core);
    let sent = reply(&core, &asked[0], Answer::Bindings(Ok(vec![])));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(status(&sent[0].1).starts_with("SIP/2.0 404"), "{sent:?}");

    feed(&core, &invite("bob", "nf2"), CALLER);
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Bindings(Err(StoreError::new("connection refused"))),
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(status(&sent[0].1).starts_with("SIP/2.0 404"), "{sent:?}");
    assert_eq!(core.waiting(), 0);
}

#[test]
fn a_register_is_answered_with_what_the_store_kept() {
    let core = core();
    let sent = feed(&core, &register("bob", "r1"), PHONE);
    assert!(sent.is_empty(), "no answer before the store's: {sent:?}");
    let asked = asks(&core);
    assert_eq!(asked.len(), 1);
    let Query::Save { request } = &asked[0].query else {
        panic!("a save: {asked:?}");
    };
    assert_eq!(request.aor, "sip:bob@example.com");
    assert_eq!(request.received.addr, PHONE.parse::<SocketAddr>().unwrap());

    // Retransmitted while the store works: absorbed, nothing asked again.
    assert!(feed(&core, &register("bob", "r1"), PHONE).is_empty());
    assert!(asks(&core).is_empty());

    let now_unix = asked[0].now_unix;
    let sent = reply(
        &core,
        &asked[0],
        Answer::Saved(Ok(Ok(vec![binding("bob", now_unix)]))),
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, PHONE);
    assert!(status(&sent[0].1).starts_with("SIP/2.0 200"), "{sent:?}");
    let contact = header(&sent[0].1, "Contact").expect("the bindings listed");
    assert!(
        contact.contains("sip:bob@192.168.1.10:5060") && contact.contains("expires=600"),
        "{contact}"
    );
}

#[test]
fn a_store_failure_answers_a_register_500_with_retry_after_and_refusals_pass_through() {
    let core = core();
    feed(&core, &register("bob", "r2"), PHONE);
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Saved(Err(StoreError::new("timed out"))),
    );
    assert_eq!(sent.len(), 1);
    assert!(status(&sent[0].1).starts_with("SIP/2.0 500"), "{sent:?}");
    assert!(header(&sent[0].1, "Retry-After").is_some(), "{}", sent[0].1);

    feed(&core, &register("bob", "r3"), PHONE);
    let asked = asks(&core);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Saved(Ok(Err(Refusal::new(403, "Too Many Contacts")))),
    );
    assert!(status(&sent[0].1).starts_with("SIP/2.0 403"), "{sent:?}");
}

#[test]
fn a_register_the_registrar_refuses_is_answered_without_asking() {
    let core = core();
    let brief = register("bob", "r4").replace("Expires: 600", "Expires: 5");
    let sent = feed(&core, &brief, PHONE);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(status(&sent[0].1).starts_with("SIP/2.0 423"), "{sent:?}");
    assert!(asks(&core).is_empty());
}

#[test]
fn a_cancel_ends_a_waiting_invite_with_487_and_its_late_answer_is_ignored() {
    let core = core();
    feed(&core, &invite("bob", "c1"), CALLER);
    let asked = asks(&core);
    let sent = feed(&core, &cancel("bob", "c1"), CALLER);
    let mut statuses: Vec<&str> = sent.iter().map(|(_, t)| status(t)).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"],
        "{sent:?}"
    );
    let cseqs: Vec<String> = sent
        .iter()
        .map(|(_, t)| header(t, "CSeq").unwrap().to_string())
        .collect();
    assert!(cseqs.contains(&"1 CANCEL".to_string()) && cseqs.contains(&"1 INVITE".to_string()));
    assert_eq!(core.waiting(), 0);
    let late = reply(
        &core,
        &asked[0],
        Answer::Bindings(Ok(vec![binding("bob", asked[0].now_unix)])),
    );
    assert!(late.is_empty(), "the call was cancelled: {late:?}");
}

#[test]
fn a_route_with_two_questions_asks_them_one_after_the_other() {
    // `registered("$fu")` (alice) then `lookup` (carol): two AoRs.
    let core = core();
    feed(&core, &invite("carol", "q1"), CALLER);
    let first = asks(&core);
    assert_eq!(
        first[0].query,
        Query::Bindings {
            aor: "sip:alice@example.com".into()
        }
    );
    let sent = reply(&core, &first[0], Answer::Bindings(Ok(vec![])));
    assert!(
        sent.iter()
            .all(|(_, t)| status(t).starts_with("SIP/2.0 100")),
        "waits again, nothing decided yet: {sent:?}"
    );
    let second = asks(&core);
    assert_eq!(
        second[0].query,
        Query::Bindings {
            aor: "sip:carol@example.com".into()
        }
    );
    let now_unix = second[0].now_unix;
    let sent = reply(
        &core,
        &second[0],
        Answer::Bindings(Ok(vec![binding("carol", now_unix)])),
    );
    assert!(
        sent.iter()
            .any(|(to, t)| to == PHONE && t.starts_with("INVITE sip:carol@192.168.1.10")),
        "{sent:?}"
    );

    // The caller registered: the route's first answer decides.
    feed(&core, &invite("carol", "q2"), CALLER);
    let first = asks(&core);
    let sent = reply(
        &core,
        &first[0],
        Answer::Bindings(Ok(vec![binding("alice", first[0].now_unix)])),
    );
    assert!(
        sent.iter()
            .any(|(_, t)| status(t).starts_with("SIP/2.0 480")),
        "{sent:?}"
    );
    assert!(asks(&core).is_empty());
}

#[test]
fn one_answer_serves_every_question_about_the_same_aor() {
    // `registered` (the Request-URI) then `lookup`: one AoR, one question.
    let core = core();
    feed(&core, &invite("nobody", "s1"), CALLER);
    let asked = asks(&core);
    assert_eq!(asked.len(), 1);
    let sent = reply(
        &core,
        &asked[0],
        Answer::Bindings(Ok(vec![binding("nobody", asked[0].now_unix)])),
    );
    assert!(
        sent.iter()
            .any(|(_, t)| status(t).starts_with("SIP/2.0 500")),
        "the `registered` branch ran: {sent:?}"
    );
    assert!(asks(&core).is_empty(), "asked once");
}

#[test]
fn a_full_table_handles_the_request_as_a_store_failure_at_once() {
    let core = core_with(CoreConfig {
        max_waiting: 1,
        ask_timeout: Duration::from_secs(2),
        ..CoreConfig::default()
    });
    feed(&core, &invite("bob", "f1"), CALLER);
    let sent = feed(&core, &invite("bob", "f2"), CALLER);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        status(&sent[0].1).starts_with("SIP/2.0 404"),
        "not found, as with a store down: {sent:?}"
    );
    let sent = feed(&core, &register("dave", "f3"), PHONE);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(status(&sent[0].1).starts_with("SIP/2.0 500"), "{sent:?}");
    assert!(header(&sent[0].1, "Retry-After").is_some());
    assert_eq!(asks(&core).len(), 1, "only the first one asked");
    assert_eq!(core.waiting(), 1);
}

mod with_auth {
    //! `authenticate` before a question to the store: the route's second
    //! run takes the first run's verdict on the credentials.

    use super::*;
    use md5::{Digest, Md5};
    use sipforge_runtime::auth::{Algorithm, AuthConfig, Authenticator, Credentials, NonceKey};

    fn md5_hex(text: &str) -> String {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn core() -> Core {
        let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
        let core = Core::new(
            &common::registrar_shared_auth::ROUTES,
            Identity::new(vec![listener]),
            CoreConfig::default(),
        );
        let users = format!(
            "alice:example.com:{}\n",
            md5_hex("alice:example.com:secret")
        );
        core.set_authenticator(std::sync::Arc::new(Authenticator::new(
            AuthConfig {
                algorithms: vec![Algorithm::Md5],
                nonce_ttl_secs: 300,
            },
            NonceKey::from_bytes(b"a nonce key for the suspend tests!").unwrap(),
            Credentials::parse(&users, "users").unwrap(),
        )));
        core
    }

    fn with_credentials(nonce: &str) -> String {
        let uri = "sip:bob@example.com";
        let ha1 = md5_hex("alice:example.com:secret");
        let ha2 = md5_hex(&format!("INVITE:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let line = format!(
            "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", \
             nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, \
             qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
        );
        invite("bob", "au2").replace(
            "Content-Length: 0\r\n",
            &format!("{line}Content-Length: 0\r\n"),
        )
    }

    #[test]
    fn credentials_accepted_before_the_question_are_not_checked_again() {
        let core = core();
        let sent = feed(&core, &invite("bob", "au1"), CALLER);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(status(&sent[0].1).starts_with("SIP/2.0 407"), "{sent:?}");
        assert!(asks(&core).is_empty(), "challenged before any question");
        let challenge = header(&sent[0].1, "Proxy-Authenticate").unwrap();
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();

        let sent = feed(&core, &with_credentials(&nonce), CALLER);
        assert!(
            sent.iter()
                .all(|(_, t)| status(t).starts_with("SIP/2.0 100")),
            "accepted, waiting for the store: {sent:?}"
        );
        let asked = asks(&core);
        assert_eq!(asked.len(), 1);
        let sent = reply(
            &core,
            &asked[0],
            Answer::Bindings(Ok(vec![binding("bob", asked[0].now_unix)])),
        );
        let invite = sent
            .iter()
            .find(|(_, t)| t.starts_with("INVITE "))
            .unwrap_or_else(|| panic!("relayed, not challenged again: {sent:?}"));
        assert_eq!(header(&invite.1, "X-AU"), Some("alice"), "{}", invite.1);
        assert!(
            header(&invite.1, "Proxy-Authorization").is_none(),
            "the consumed credentials are removed: {}",
            invite.1
        );
    }
}
