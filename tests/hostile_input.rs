//! Hostile input from issue 11 over real UDP sockets, through an in-process
//! proxy running `tests/routes/hostile_input.yaml`: `set` of Request-URI
//! parts from header values the sender controls (defect 7), and bare CR /
//! bare LF line ends and Content-Length framing (defect 8).

mod common;

use common::{Peer, Sip, request, response_to, start_proxy};

fn routes() -> &'static dyn sipforge_runtime::api::Routes {
    &common::hostile_input::ROUTES
}

/// An INVITE from `uac` to `sip:bob@<uas>` with `extra` header lines.
fn invite(uac: &Peer, uas: &Peer, call_id: &str, extra: &str) -> String {
    let via = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{call_id}",
        uac.port()
    );
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    request("INVITE", &ruri, &via, call_id, extra)
}

/// Every line of the header section ends in CRLF, no CR stands alone in
/// it, and Content-Length is the length of the body.
fn assert_framed(msg: &Sip) {
    let (head, body) = msg
        .0
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no CRLF CRLF after the headers: {:?}", msg.0));
    let b = head.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' => assert_eq!(b.get(i + 1), Some(&b'\n'), "bare CR at {i}: {head:?}"),
            b'\n' => assert_eq!(b[i - 1], b'\r', "bare LF at {i}: {head:?}"),
            _ => {}
        }
    }
    let cl = msg
        .header("Content-Length")
        .or_else(|| msg.header("l"))
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    assert_eq!(cl.parse::<usize>().unwrap(), body.len(), "{:?}", msg.0);
}

#[tokio::test]
async fn a_user_set_from_a_header_is_escaped_and_keeps_the_host() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let msg = invite(&uac, &uas, "esc-1", "X-User: evil@127.0.0.9:9999;x=\r\n");
    uac.send(proxy, &msg).await;
    let (got, _) = uas
        .recv("the INVITE stays on its host (not 127.0.0.9:9999)")
        .await;
    assert_eq!(
        got.start_line(),
        format!(
            "INVITE sip:evil%40127.0.0.9%3A9999;x=@127.0.0.1:{} SIP/2.0",
            uas.port()
        )
    );
    // A phone number with odd characters becomes an escaped user.
    let msg = invite(&uac, &uas, "esc-2", "X-User: +1 (555) 123-4567#9\r\n");
    uac.send(proxy, &msg).await;
    let (got, _) = uas.recv("the INVITE with an escaped number").await;
    assert_eq!(
        got.start_line(),
        format!(
            "INVITE sip:+1%20(555)%20123-4567%239@127.0.0.1:{} SIP/2.0",
            uas.port()
        )
    );
}

#[tokio::test]
async fn a_host_port_uri_or_next_hop_that_would_move_the_request_is_refused() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let unchanged = format!("INVITE sip:bob@127.0.0.1:{} SIP/2.0", uas.port());
    let hostile = [
        "X-Host: 127.0.0.9:9999;x=\r\n",
        "X-Host: evil@127.0.0.9\r\n",
        "X-Host: 127.0.0.9>\r\n",
        "X-Port: 9999;maddr=127.0.0.9\r\n",
        "X-Port: 0\r\n",
        "X-Ruri: sip:bob@127.0.0.9:9999?Route=%3Csip:127.0.0.9%3E\r\n",
        "X-Ruri: tel:+15551234\r\n",
        "X-Ruri: sip:evil@127.0.0.9:9999;x=@127.0.0.1\r\n",
        "X-Du: sip:127.0.0.9:9999?Route=%3Csip:127.0.0.9%3E\r\n",
        "X-Du: sip:evil@127.0.0.9:9999;x=@127.0.0.1\r\n",
    ];
    for (i, extra) in hostile.iter().enumerate() {
        let msg = invite(&uac, &uas, &format!("refuse-{i}"), extra);
        uac.send(proxy, &msg).await;
        let (got, _) = uas
            .recv(&format!(
                "{extra:?}: the step is skipped, the INVITE goes on"
            ))
            .await;
        assert_eq!(got.start_line(), unchanged, "{extra:?}");
    }
}

#[tokio::test]
async fn a_request_with_a_bare_cr_in_its_headers_gets_400() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    for (i, extra) in [
        "Subject: hello\rX-Injected: yes\r\n",
        "Subject: hello\r\r\n",
        "Subject: one,\r\n two\rX-Injected: yes\r\n",
    ]
    .iter()
    .enumerate()
    {
        uac.send(proxy, &invite(&uac, &uas, &format!("cr-{i}"), extra))
            .await;
        let (reply, _) = uac.recv("400 for a bare CR").await;
        assert_eq!(reply.start_line(), "SIP/2.0 400 Bare CR in Header");
        assert_framed(&reply);
        uas.expect_silence(100, "a bare CR is never forwarded")
            .await;
    }
    // In a header the 400 copies: the copy has no bare CR either.
    let msg = invite(&uac, &uas, "cr-from", "").replace(
        "From: <sip:alice@example.com>;tag=a1",
        "From: <sip:alice@example.com>;tag=a1\rX-Injected: yes",
    );
    uac.send(proxy, &msg).await;
    let (reply, _) = uac.recv("400 for a bare CR in From").await;
    assert_eq!(reply.start_line(), "SIP/2.0 400 Bare CR in Header");
    assert_framed(&reply);
    assert!(reply.header("X-Injected").is_none(), "{:?}", reply.0);
    uas.expect_silence(100, "not forwarded").await;
}

#[tokio::test]
async fn a_response_with_a_bare_cr_is_dropped() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    uac.send(proxy, &invite(&uac, &uas, "cr-resp", "")).await;
    let (got, _) = uas.recv("INVITE").await;
    for status in ["180 Ringing\rX-Injected: yes", "183 Progress"] {
        let extra = if status.starts_with("183") {
            "Subject: hi\rX-Injected: yes\r\n"
        } else {
            ""
        };
        uas.send(proxy, &response_to(&got, status, extra)).await;
        uac.expect_silence(200, "a response with a bare CR is dropped")
            .await;
    }
    uas.send(proxy, &response_to(&got, "200 OK", "")).await;
    let (reply, _) = uac.recv("a clean 200 still passes").await;
    assert_eq!(reply.start_line(), "SIP/2.0 200 OK");
}

#[tokio::test]
async fn bare_lf_line_ends_are_forwarded_as_crlf() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    // Mixed line ends (RFC 4475-style bare LF on some lines), no
    // Content-Length (the body is the rest of the datagram), LFs in the body.
    let body = "v=0\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\n";
    let msg = invite(&uac, &uas, "lf-1", "Subject: a,\n b\n")
        .replace("Content-Length: 0\r\n\r\n", "")
        .replacen("\r\n", "\n", 2)
        + "\n"
        + body;
    uac.send(proxy, &msg).await;
    let (got, _) = uas.recv("INVITE with bare LF line ends").await;
    assert_framed(&got);
    assert_eq!(got.body(), body, "the body is passed as it is");
    assert_eq!(got.header("Subject").as_deref(), Some("a,"));
    // The response, with bare LF ends too, goes up with CRLF ones.
    let resp = response_to(&got, "180 Ringing", "X-Lf: 1\n").replace("\r\n", "\n");
    uas.send(proxy, &resp).await;
    let (reply, _) = uac.recv("180 with bare LF ends").await;
    assert_eq!(reply.start_line(), "SIP/2.0 180 Ringing");
    assert_framed(&reply);
    assert_eq!(reply.header("X-Lf").as_deref(), Some("1"));
}

#[tokio::test]
async fn what_is_sent_has_a_content_length_equal_to_its_body() {
    let (_server, proxy) = start_proxy(routes()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    // No Content-Length on UDP: the body is the rest of the datagram, and
    // the forwarded copy says how long it is.
    let msg = invite(&uac, &uas, "cl-none", "").replace("Content-Length: 0\r\n\r\n", "\r\nabc");
    uac.send(proxy, &msg).await;
    let (got, _) = uas.recv("INVITE without Content-Length").await;
    assert_framed(&got);
    assert_eq!(got.body(), "abc");
    // Bytes after the body Content-Length frames are discarded (§18.3).
    let msg = invite(&uac, &uas, "cl-short", "").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 3\r\n\r\nabcdef",
    );
    uac.send(proxy, &msg).await;
    let (got, _) = uas.recv("INVITE with bytes after its body").await;
    assert_framed(&got);
    assert_eq!(got.body(), "abc");
    // A Content-Length larger than the datagram is a 400.
    let msg = invite(&uac, &uas, "cl-long", "")
        .replace("Content-Length: 0\r\n\r\n", "Content-Length: 30\r\n\r\nabc");
    uac.send(proxy, &msg).await;
    let (reply, _) = uac.recv("400 for a Content-Length past the end").await;
    assert_eq!(reply.start_line(), "SIP/2.0 400 Bad Content-Length");
    uas.expect_silence(100, "not forwarded").await;
    // Leading keep-alive CRLFs are not sent on.
    let msg = format!("\r\n\r\n{}", invite(&uac, &uas, "cl-lead", ""));
    uac.send(proxy, &msg).await;
    let (got, _) = uas.recv("INVITE after keep-alive bytes").await;
    assert!(got.0.starts_with("INVITE "), "{:?}", got.0);
}
