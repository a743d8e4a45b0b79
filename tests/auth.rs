//! Digest authentication through a running proxy (tests/routes/auth.yaml):
//! challenges, MD5 and SHA-256 answers computed here, wrong passwords,
//! stale and replayed nonces, 403 for another user's credentials, the
//! consumed credentials removed and others kept, the ACK to a 407
//! absorbed, and two instances sharing a nonce key.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Peer, Sip};
use md5::Md5;
use sha2::{Digest, Sha256};
use sipforge_runtime::auth::{Algorithm, AuthConfig, Authenticator, Credentials, NonceKey};

const REALM: &str = "example.com";
const KEY: &[u8] = b"a nonce key shared by the pool, 32 bytes";

fn hex_digest(alg: &str, text: &str) -> String {
    let bytes: Vec<u8> = if alg == "MD5" {
        Md5::digest(text.as_bytes()).to_vec()
    } else {
        Sha256::digest(text.as_bytes()).to_vec()
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ha1(alg: &str, user: &str, pass: &str) -> String {
    hex_digest(alg, &format!("{user}:{REALM}:{pass}"))
}

/// alice (MD5 and SHA-256) and bob (MD5 only).
fn authenticator(ttl_secs: u64) -> Arc<Authenticator> {
    let file = format!(
        "# test users\n\nalice:{REALM}:{}\nalice:{REALM}:{}\nbob:{REALM}:{}\n",
        ha1("MD5", "alice", "secret"),
        ha1("SHA-256", "alice", "secret"),
        ha1("MD5", "bob", "hunter2"),
    );
    let credentials = Credentials::parse(&file, "users").expect("the test file parses");
    Arc::new(Authenticator::new(
        AuthConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_ttl_secs: ttl_secs,
        },
        NonceKey::from_bytes(KEY).expect("a long enough key"),
        credentials,
    ))
}

async fn proxy() -> (sipforge_runtime::net::Server, SocketAddr) {
    common::start_proxy_auth(
        &common::auth::ROUTES,
        Default::default(),
        Some(authenticator(2)),
    )
    .await
}

/// The parameters of a challenge (`Digest realm="..", nonce="..", ...`).
fn params(challenge: &str) -> HashMap<String, String> {
    let rest = challenge
        .trim()
        .strip_prefix("Digest")
        .expect("a Digest challenge");
    rest.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

struct Answer<'a> {
    alg: &'a str,
    user: &'a str,
    pass: &'a str,
    nonce: &'a str,
    method: &'a str,
    uri: &'a str,
    nc: u32,
}

/// A `Digest ...` credentials value answering with qop=auth.
fn credentials(a: &Answer<'_>) -> String {
    let cnonce = "0a4f113b";
    let nc = format!("{:08x}", a.nc);
    let ha2 = hex_digest(a.alg, &format!("{}:{}", a.method, a.uri));
    let response = hex_digest(
        a.alg,
        &format!(
            "{}:{}:{nc}:{cnonce}:auth:{ha2}",
            ha1(a.alg, a.user, a.pass),
            a.nonce
        ),
    );
    format!(
        "Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
        a.user, a.nonce, a.uri, a.alg
    )
}

fn invite(
    caller: &Peer,
    target: &Peer,
    call: &str,
    cseq: u32,
    from_user: &str,
    extra: &str,
) -> String {
    format!(
        "INVITE sip:carol@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{call}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@example.com>;tag=f-{call}\r\n\
         To: <sip:carol@example.com>\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:{from_user}@127.0.0.1:{}>\r\n\
         X-Target: sip:127.0.0.1:{}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        caller.port(),
        caller.port(),
        target.port()
    )
}

/// Send an INVITE without credentials; the 407 and its challenges.
async fn challenge(
    proxy: SocketAddr,
    caller: &Peer,
    target: &Peer,
    call: &str,
) -> (Sip, Vec<String>) {
    caller
        .send(proxy, &invite(caller, target, call, 1, "alice", ""))
        .await;
    let (resp, _) = caller.recv("407 challenge").await;
    let challenges = resp.headers("Proxy-Authenticate");
    (resp, challenges)
}

fn nonce_of(challenges: &[String], alg: &str) -> String {
    let c = challenges
        .iter()
        .find(|c| params(c).get("algorithm").map(String::as_str) == Some(alg))
        .unwrap_or_else(|| panic!("no {alg} challenge in {challenges:?}"));
    params(c)["nonce"].clone()
}

#[tokio::test]
async fn an_invite_without_credentials_is_challenged_with_every_algorithm_and_its_ack_absorbed() {
    let (_server, proxy) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    let (resp, challenges) = challenge(proxy, &caller, &target, "auth-1").await;
    assert!(resp.start_line().starts_with("SIP/2.0 407"), "{}", resp.0);
    assert!(resp.header("WWW-Authenticate").is_none());
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    let first = params(&challenges[0]);
    let second = params(&challenges[1]);
    assert_eq!(
        first["algorithm"], "SHA-256",
        "the configured order: SHA-256 first"
    );
    assert_eq!(second["algorithm"], "MD5");
    for p in [&first, &second] {
        assert_eq!(p["realm"], REALM, "the realm defaults to the From domain");
        assert_eq!(p["qop"], "auth");
        assert!(!p.contains_key("stale"));
    }
    // The ACK to the 407 (same branch, the 407's To tag) ends at the proxy.
    let to = resp.header("To").unwrap();
    let ack = format!(
        "ACK sip:carol@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-auth-1-1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f-auth-1\r\nTo: {to}\r\nCall-ID: auth-1\r\nCSeq: 1 ACK\r\nX-Target: sip:127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
        caller.port(),
        target.port()
    );
    caller.send(proxy, &ack).await;
    target.expect_silence(300, "the ACK to our own 407").await;
    caller.expect_silence(100, "nothing answers an ACK").await;
}

#[tokio::test]
async fn valid_md5_and_sha256_answers_pass_with_au_set_and_the_used_credentials_removed() {
    let (_server, proxy) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    for (i, alg) in ["MD5", "SHA-256"].into_iter().enumerate() {
        let call = format!("auth-ok-{i}");
        let (_, challenges) = challenge(proxy, &caller, &target, &call).await;
        let nonce = nonce_of(&challenges, alg);
        let answer = credentials(&Answer {
            alg,
            user: "alice",
            pass: "secret",
            nonce: &nonce,
            method: "INVITE",
            uri: "sip:carol@example.com",
            nc: 1,
        });
        // Credentials for another proxy's realm travel on untouched.
        let other = "Digest username=\"alice\", realm=\"carrier.example\", nonce=\"abc\", uri=\"sip:carol@example.com\", response=\"00\"";
        let extra = format!("Proxy-Authorization: {other}\r\nProxy-Authorization: {answer}\r\n");
        caller
            .send(proxy, &invite(&caller, &target, &call, 2, "alice", &extra))
            .await;
        let (fwd, _) = target
            .recv(&format!("the INVITE with {alg} credentials"))
            .await;
        assert!(fwd.start_line().starts_with("INVITE "), "{}", fwd.0);
        assert_eq!(fwd.header("X-AU").as_deref(), Some("alice"));
        assert_eq!(
            fwd.headers("Proxy-Authorization"),
            vec![other.to_string()],
            "ours consumed, the carrier's kept"
        );
    }
}

#[tokio::test]
async fn wrong_password_unknown_user_and_forged_nonce_get_a_fresh_challenge() {
    let (_server, proxy) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    let (_, challenges) = challenge(proxy, &caller, &target, "auth-bad").await;
    let nonce = nonce_of(&challenges, "MD5");
    let mut forged = nonce.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let cases = [
        ("alice", "wrong", nonce.as_str()),
        ("mallory", "secret", nonce.as_str()),
        ("alice", "secret", forged.as_str()),
    ];
    for (n, (user, pass, nonce)) in cases.into_iter().enumerate() {
        let answer = credentials(&Answer {
            alg: "MD5",
            user,
            pass,
            nonce,
            method: "INVITE",
            uri: "sip:carol@example.com",
            nc: 1,
        });
        let extra = format!("Proxy-Authorization: {answer}\r\n");
        caller
            .send(
                proxy,
                &invite(&caller, &target, "auth-bad", 2 + n as u32, "alice", &extra),
            )
            .await;
        let (resp, _) = caller.recv("a new challenge").await;
        assert!(
            resp.start_line().starts_with("SIP/2.0 407"),
            "{user}/{pass}: {}",
            resp.0
        );
        let c = resp.headers("Proxy-Authenticate");
        assert!(c.iter().all(|c| !params(c).contains_key("stale")), "{c:?}");
    }
    target.expect_silence(200, "nothing gets through").await;
}

#[tokio::test]
async fn another_users_credentials_get_403() {
    let (_server, proxy) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    let (_, challenges) = challenge(proxy, &caller, &target, "auth-403").await;
    let nonce = nonce_of(&challenges, "MD5");
    // bob's valid credentials on a request From alice.
    let answer = credentials(&Answer {
        alg: "MD5",
        user: "bob",
        pass: "hunter2",
        nonce: &nonce,
        method: "INVITE",
        uri: "sip:carol@example.com",
        nc: 1,
    });
    let extra = format!("Proxy-Authorization: {answer}\r\n");
    caller
        .send(
            proxy,
            &invite(&caller, &target, "auth-403", 2, "alice", &extra),
        )
        .await;
    let (resp, _) = caller.recv("403").await;
    assert!(resp.start_line().starts_with("SIP/2.0 403"), "{}", resp.0);
    target.expect_silence(200, "nothing gets through").await;
}

#[tokio::test]
async fn a_replayed_nonce_count_and_an_expired_nonce_get_stale_challenges() {
    let (_server, proxy) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    let (_, challenges) = challenge(proxy, &caller, &target, "auth-stale").await;
    let nonce = nonce_of(&challenges, "SHA-256");
    let answer = |nc| {
        credentials(&Answer {
            alg: "SHA-256",
            user: "alice",
            pass: "secret",
            nonce: &nonce,
            method: "INVITE",
            uri: "sip:carol@example.com",
            nc,
        })
    };
    let send = |cseq: u32, nc: u32| {
        let extra = format!("Proxy-Authorization: {}\r\n", answer(nc));
        invite(&caller, &target, "auth-stale", cseq, "alice", &extra)
    };
    caller.send(proxy, &send(2, 1)).await;
    target.recv("nc=1 passes").await;
    caller.send(proxy, &send(3, 2)).await;
    target.recv("nc=2 passes").await;
    caller.send(proxy, &send(4, 2)).await;
    let (resp, _) = caller.recv("nc=2 again: replayed").await;
    assert!(resp.start_line().starts_with("SIP/2.0 407"), "{}", resp.0);
    let c = resp.headers("Proxy-Authenticate");
    assert!(
        c.iter()
            .all(|c| params(c).get("stale").map(String::as_str) == Some("true")),
        "{c:?}"
    );
    // The nonce lives 2 s (nonce_ttl): later it is stale, and says so.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    caller.send(proxy, &send(5, 3)).await;
    let (resp, _) = caller.recv("an expired nonce").await;
    assert!(resp.start_line().starts_with("SIP/2.0 407"), "{}", resp.0);
    let c = resp.headers("Proxy-Authenticate");
    assert!(
        c.iter()
            .all(|c| params(c).get("stale").map(String::as_str) == Some("true")),
        "{c:?}"
    );
    target.expect_silence(100, "nothing else got through").await;
}

#[tokio::test]
async fn register_is_challenged_with_401_and_checked_against_the_to_user() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    let register = |cseq: u32, to_user: &str, extra: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-reg-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=r1\r\n\
             To: <sip:{to_user}@example.com>\r\n\
             Call-ID: reg-1\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:alice@127.0.0.1:{}>\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n",
            phone.port(),
            phone.port()
        )
    };
    phone.send(proxy, &register(1, "alice", "")).await;
    let (resp, _) = phone.recv("401").await;
    assert!(resp.start_line().starts_with("SIP/2.0 401"), "{}", resp.0);
    assert!(resp.header("Proxy-Authenticate").is_none());
    let challenges = resp.headers("WWW-Authenticate");
    assert_eq!(challenges.len(), 2);
    let nonce = nonce_of(&challenges, "MD5");
    let answer = credentials(&Answer {
        alg: "MD5",
        user: "alice",
        pass: "secret",
        nonce: &nonce,
        method: "REGISTER",
        uri: "sip:example.com",
        nc: 1,
    });
    phone
        .send(
            proxy,
            &register(2, "alice", &format!("Authorization: {answer}\r\n")),
        )
        .await;
    let (resp, _) = phone.recv("200").await;
    assert!(resp.start_line().starts_with("SIP/2.0 200"), "{}", resp.0);
    assert_eq!(resp.header("X-AU").as_deref(), Some("alice"));
    // alice's credentials registering bob: 403.
    let answer = credentials(&Answer {
        alg: "MD5",
        user: "alice",
        pass: "secret",
        nonce: &nonce,
        method: "REGISTER",
        uri: "sip:example.com",
        nc: 2,
    });
    phone
        .send(
            proxy,
            &register(3, "bob", &format!("Authorization: {answer}\r\n")),
        )
        .await;
    let (resp, _) = phone.recv("403").await;
    assert!(resp.start_line().starts_with("SIP/2.0 403"), "{}", resp.0);
}

#[tokio::test]
async fn instances_sharing_the_nonce_key_accept_each_others_nonces() {
    let (_a, proxy_a) = proxy().await;
    let (_b, proxy_b) = proxy().await;
    let (caller, target) = (Peer::bind().await, Peer::bind().await);
    let (_, challenges) = challenge(proxy_a, &caller, &target, "auth-pool").await;
    let nonce = nonce_of(&challenges, "MD5");
    let answer = credentials(&Answer {
        alg: "MD5",
        user: "alice",
        pass: "secret",
        nonce: &nonce,
        method: "INVITE",
        uri: "sip:carol@example.com",
        nc: 1,
    });
    let extra = format!("Proxy-Authorization: {answer}\r\n");
    caller
        .send(
            proxy_b,
            &invite(&caller, &target, "auth-pool", 2, "alice", &extra),
        )
        .await;
    let (fwd, _) = target.recv("instance B accepts A's nonce").await;
    assert_eq!(fwd.header("X-AU").as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_network_list_condition_lets_a_listed_source_through_without_credentials() {
    let (_server, proxy) = proxy().await;
    let target = Peer::bind().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let caller = Peer {
        addr: socket.local_addr().unwrap(),
        socket,
    };
    caller
        .send(
            proxy,
            &invite(&caller, &target, "auth-trusted", 1, "alice", ""),
        )
        .await;
    let (fwd, _) = target.recv("a request from 127.0.0.9").await;
    assert_eq!(fwd.header("X-Trusted").as_deref(), Some("127.0.0.9"));
    assert!(fwd.header("X-AU").is_none());
}
