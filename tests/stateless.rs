//! The stateless proxy over real UDP sockets on 127.0.0.1: a test UAC and
//! UAS around an in-process proxy running `tests/routes/proxy_core.yaml`.

mod common;

use common::{Peer, Sip, request, response_to, start_proxy};

fn routes() -> &'static dyn sipforge_runtime::api::Routes {
    &common::proxy_core::ROUTES
}

/// Send an INVITE from `uac` through the proxy to `uas`; return what the UAS got.
async fn invite_through(
    uac: &Peer,
    uas: &Peer,
    proxy: std::net::SocketAddr,
    call_id: &str,
    extra: &str,
) -> Sip {
    let via = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{call_id}",
        uac.port()
    );
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    uac.send(proxy, &request("INVITE", &ruri, &via, call_id, extra))
        .await;
    uas.recv("INVITE at the UAS").await.0
}

#[tokio::test]
async fn invite_and_replies_pass_with_the_seed_headers() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let got = invite_through(&uac, &uas, proxy, "call-1", "Max-Forwards: 70\r\n").await;
    assert!(
        got.start_line().starts_with("INVITE sip:bob@127.0.0.1:"),
        "{got:?}"
    );
    assert_eq!(got.header("X-Proxied").as_deref(), Some("You betcha"));
    assert_eq!(got.header("Max-Forwards").as_deref(), Some("69"));
    let vias = got.headers("Via");
    assert_eq!(vias.len(), 2, "our Via on top of the UAC's: {vias:?}");
    assert!(
        vias[0].starts_with(&format!("SIP/2.0/UDP {proxy};branch=z9hG4bK")),
        "top Via is the proxy's: {}",
        vias[0]
    );
    assert!(vias[1].contains("branch=z9hG4bK-call-1"));
    let rr = got.header("Record-Route").expect("record_route ran");
    assert_eq!(rr, format!("<sip:{proxy};lr>"));

    for status in ["180 Ringing", "200 OK"] {
        uas.send(proxy, &response_to(&got, status, "")).await;
        let (reply, from) = uac.recv(status).await;
        assert_eq!(from, proxy, "the reply comes from the proxy's socket");
        assert_eq!(reply.start_line(), format!("SIP/2.0 {status}"));
        assert_eq!(reply.header("X-Proxied").as_deref(), Some("For the reply"));
        let vias = reply.headers("Via");
        assert_eq!(vias.len(), 1, "our Via was popped: {vias:?}");
        assert!(vias[0].contains("branch=z9hG4bK-call-1"));
    }
}

#[tokio::test]
async fn rport_and_received_are_filled_and_used() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    // The UAC claims a sent-by that is not where it sends from (a NAT).
    let via = "SIP/2.0/UDP 192.0.2.7:5999;rport;branch=z9hG4bK-nat";
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    uac.send(proxy, &request("OPTIONS", &ruri, via, "call-nat", ""))
        .await;
    let (got, _) = uas.recv("OPTIONS at the UAS").await;
    let vias = got.headers("Via");
    assert!(
        vias[1].contains(&format!(";rport={};received=127.0.0.1", uac.port())),
        "received/rport recorded: {}",
        vias[1]
    );
    uas.send(proxy, &response_to(&got, "200 OK", "")).await;
    let (reply, _) = uac
        .recv("the 200 goes to received:rport, not to the sent-by")
        .await;
    assert_eq!(reply.start_line(), "SIP/2.0 200 OK");
}

#[tokio::test]
async fn max_forwards_zero_gets_483_missing_gets_70() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-mf0", uac.port());
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    uac.send(
        proxy,
        &request("OPTIONS", &ruri, &via, "call-mf0", "Max-Forwards: 0\r\n"),
    )
    .await;
    let (reply, _) = uac.recv("483").await;
    assert_eq!(reply.start_line(), "SIP/2.0 483 Too Many Hops");
    assert!(
        reply.header("To").unwrap().contains(";tag="),
        "stateless reply adds a To tag"
    );
    uas.expect_silence(200, "a request with Max-Forwards 0 is not forwarded")
        .await;

    let got = invite_through(&uac, &uas, proxy, "call-mf-missing", "").await;
    assert_eq!(got.header("Max-Forwards").as_deref(), Some("70"));
}

#[tokio::test]
async fn stateless_reply_from_the_routes() {
    let (_server, proxy) = start_proxy(routes()).await;
    let uac = Peer::bind().await;
    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-reg", uac.port());
    uac.send(
        proxy,
        &request(
            "REGISTER",
            "sip:example.com",
            &via,
            "call-reg",
            "Max-Forwards: 70\r\n",
        ),
    )
    .await;
    let (reply, _) = uac.recv("403").await;
    assert_eq!(reply.start_line(), "SIP/2.0 403 Registration Forbidden");
    assert_eq!(reply.header("X-Why").as_deref(), Some("no alice"));
    assert_eq!(reply.header("Call-ID").as_deref(), Some("call-reg"));
    assert_eq!(reply.header("CSeq").as_deref(), Some("1 REGISTER"));
    assert_eq!(reply.headers("Via"), vec![via.clone()]);
    let tag1 = reply.header("To").unwrap();
    assert!(tag1.contains(";tag="));
    // A retransmission gets the same To tag.
    uac.send(
        proxy,
        &request(
            "REGISTER",
            "sip:example.com",
            &via,
            "call-reg",
            "Max-Forwards: 70\r\n",
        ),
    )
    .await;
    let (again, _) = uac.recv("403 again").await;
    assert_eq!(again.header("To").unwrap(), tag1);
}

#[tokio::test]
async fn loose_routing_removes_our_route_and_follows_the_next() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, next) = (Peer::bind().await, Peer::bind().await);
    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-lr", uac.port());
    // In-dialog BYE: R-URI is the remote target (unreachable), the route set
    // is us then `next`.
    let extra = format!(
        "To: <sip:bob@example.com>;tag=b1\r\nRoute: <sip:{proxy};lr>, <sip:127.0.0.1:{};lr>\r\nMax-Forwards: 10\r\n",
        next.port()
    );
    uac.send(
        proxy,
        &request("BYE", "sip:bob@192.0.2.99:5060", &via, "call-lr", &extra),
    )
    .await;
    let (got, _) = next.recv("BYE at the next Route hop").await;
    assert_eq!(
        got.start_line(),
        "BYE sip:bob@192.0.2.99:5060 SIP/2.0",
        "R-URI kept"
    );
    assert_eq!(
        got.headers("Route"),
        vec![format!("<sip:127.0.0.1:{};lr>", next.port())]
    );
    assert!(
        got.header("Record-Route").is_none(),
        "no record_route in dialog"
    );
}

#[tokio::test]
async fn strict_router_upstream_is_fixed() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, target) = (Peer::bind().await, Peer::bind().await);
    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-sr", uac.port());
    // A strict router put our Record-Route URI into the R-URI and the remote
    // target last in Route.
    let extra = format!(
        "To: <sip:bob@example.com>;tag=b1\r\nRoute: <sip:bob@127.0.0.1:{}>\r\n",
        target.port()
    );
    let ruri = format!("sip:{proxy};lr");
    uac.send(proxy, &request("BYE", &ruri, &via, "call-sr", &extra))
        .await;
    let (got, _) = target.recv("BYE at the remote target").await;
    assert_eq!(
        got.start_line(),
        format!("BYE sip:bob@127.0.0.1:{} SIP/2.0", target.port())
    );
    assert!(got.header("Route").is_none());
}

#[tokio::test]
async fn a_response_whose_top_via_is_not_ours_is_dropped() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uas, uac) = (Peer::bind().await, Peer::bind().await);
    let forged = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKforged\r\n\
         From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: forged\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        uac.port()
    );
    uas.send(proxy, &forged).await;
    uac.expect_silence(300, "a response not carrying our Via")
        .await;
}

#[tokio::test]
async fn retransmission_and_cancel_get_the_invites_branch() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let first = invite_through(&uac, &uas, proxy, "call-br", "").await;
    let again = invite_through(&uac, &uas, proxy, "call-br", "").await;
    let branch = |m: &Sip| m.headers("Via")[0].clone();
    assert_eq!(
        branch(&first),
        branch(&again),
        "retransmission, same branch"
    );
    let via = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-call-br",
        uac.port()
    );
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    let cancel =
        request("CANCEL", &ruri, &via, "call-br", "").replace("CSeq: 1 CANCEL", "CSeq: 1 CANCEL");
    uac.send(proxy, &cancel).await;
    let (got, _) = uas.recv("CANCEL").await;
    assert!(got.start_line().starts_with("CANCEL"));
    assert_eq!(
        branch(&got),
        branch(&first),
        "CANCEL branch = INVITE branch"
    );
    let other = invite_through(&uac, &uas, proxy, "call-br-2", "").await;
    assert_ne!(branch(&other), branch(&first));
}

#[tokio::test]
async fn malformed_input_is_answered_or_dropped_and_the_proxy_lives_on() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    // Garbage, an empty datagram, a keep-alive, binary noise.
    uac.send_bytes(proxy, b"\x00\x01\x02garbage\r\n\r\n").await;
    uac.send_bytes(proxy, b"\r\n\r\n").await;
    uac.send_bytes(proxy, &[0xff; 1500]).await;
    uac.expect_silence(200, "garbage gets no answer").await;
    // A request missing Call-ID gets a 400 with a reason.
    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-bad", uac.port());
    let bad = request("OPTIONS", "sip:x@127.0.0.1", &via, "x", "").replace("Call-ID: x\r\n", "");
    uac.send(proxy, &bad).await;
    let (reply, _) = uac.recv("400 for a missing Call-ID").await;
    assert!(
        reply.start_line().starts_with("SIP/2.0 400 "),
        "{}",
        reply.start_line()
    );
    // Still alive.
    let got = invite_through(&uac, &uas, proxy, "call-alive", "").await;
    assert!(got.start_line().starts_with("INVITE"));
}

#[tokio::test]
async fn header_values_cannot_inject_headers() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    // A folded header value: its line break must not survive into the copy.
    let got = invite_through(
        &uac,
        &uas,
        proxy,
        "call-inj",
        "X-Copy: one,\r\n X-Injected: yes\r\n",
    )
    .await;
    assert_eq!(
        got.header("X-Copied").as_deref(),
        Some("one, X-Injected: yes")
    );
    assert!(got.header("X-Injected").is_none(), "{}", got.0);
}

#[tokio::test]
async fn remove_header_drop_and_du() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas, elsewhere) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    let got = invite_through(
        &uac,
        &uas,
        proxy,
        "call-rm",
        "X-Secret: s3cr3t\r\nX-Keep: k\r\n",
    )
    .await;
    assert!(got.header("X-Secret").is_none());
    assert_eq!(got.header("X-Keep").as_deref(), Some("k"));

    let via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-drop", uac.port());
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    uac.send(
        proxy,
        &request("INVITE", &ruri, &via, "call-drop", "X-Drop: 1\r\n"),
    )
    .await;
    uas.expect_silence(200, "dropped by the routes").await;
    uac.expect_silence(10, "dropped: no answer either").await;

    let extra = format!("X-Route-To: sip:127.0.0.1:{}\r\n", elsewhere.port());
    uac.send(
        proxy,
        &request(
            "INVITE",
            &ruri,
            &via.replace("drop", "du"),
            "call-du",
            &extra,
        ),
    )
    .await;
    let (got, _) = elsewhere.recv("$du overrides the R-URI as next hop").await;
    assert_eq!(got.start_line(), format!("INVITE {ruri} SIP/2.0"));
}
