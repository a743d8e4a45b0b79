//! The stateful proxy (`relay`, `failure`, CANCEL) over real UDP sockets on
//! 127.0.0.1, with `tests/routes/relay.yaml` and timers 10x shorter than
//! RFC 3261's so timeouts take seconds.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Peer, Sip, fast_timers, request, response_to, start_proxy_with};

fn routes() -> &'static dyn sipforge_runtime::api::Routes {
    &common::relay::ROUTES
}

struct Call {
    uac: Peer,
    uas: Peer,
    proxy: SocketAddr,
    call_id: String,
    via: String,
    ruri: String,
}

impl Call {
    async fn new(proxy: SocketAddr, call_id: &str) -> Call {
        let (uac, uas) = (Peer::bind().await, Peer::bind().await);
        let via = format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{call_id}",
            uac.port()
        );
        let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
        Call {
            uac,
            uas,
            proxy,
            call_id: call_id.to_string(),
            via,
            ruri,
        }
    }

    fn invite_text(&self, extra: &str) -> String {
        request(
            "INVITE",
            &self.ruri,
            &self.via,
            &self.call_id,
            &format!("Max-Forwards: 70\r\n{extra}"),
        )
    }

    async fn send_invite(&self, extra: &str) {
        self.uac.send(self.proxy, &self.invite_text(extra)).await;
    }

    /// The UAC's CANCEL for the INVITE (same branch, §9.1).
    async fn send_cancel(&self) {
        let cancel = request(
            "CANCEL",
            &self.ruri,
            &self.via,
            &self.call_id,
            "Max-Forwards: 70\r\n",
        );
        self.uac.send(self.proxy, &cancel).await;
    }

    /// The UAC's ACK for a non-2xx final response (same branch as the INVITE).
    async fn send_ack_for(&self, final_response: &Sip) {
        let to = final_response.header("To").unwrap();
        let ack = request(
            "ACK",
            &self.ruri,
            &self.via,
            &self.call_id,
            &format!("To: {to}\r\nMax-Forwards: 70\r\n"),
        );
        self.uac.send(self.proxy, &ack).await;
    }

    /// Next message at the UAC that is not a 100 Trying.
    async fn uac_next(&self, what: &str) -> Sip {
        loop {
            let (m, _) = self.uac.recv(what).await;
            if !m.start_line().starts_with("SIP/2.0 100") {
                return m;
            }
        }
    }
}

#[tokio::test]
async fn invite_relayed_with_100_trying_and_replies_passed_up() {
    let (server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-basic").await;
    call.send_invite("").await;
    let (trying, _) = call.uac.recv("100 Trying from the proxy").await;
    assert_eq!(trying.start_line(), "SIP/2.0 100 Trying");
    let (invite, _) = call.uas.recv("INVITE").await;
    assert!(
        invite.top_branch().starts_with("z9hG4bKsfT"),
        "stateful branch: {}",
        invite.top_branch()
    );
    assert_eq!(invite.header("X-Proxied").as_deref(), Some("You betcha"));
    assert!(invite.header("Record-Route").is_some());
    call.uas
        .send(proxy, &response_to(&invite, "100 Trying", ""))
        .await;
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    let ringing = call.uac_next("180").await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    assert_eq!(
        ringing.header("X-Proxied").as_deref(),
        Some("For the reply")
    );
    assert_eq!(ringing.header("X-Request").as_deref(), Some("INVITE bob"));
    call.uas
        .send(proxy, &response_to(&invite, "200 OK", ""))
        .await;
    let ok = call.uac_next("200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.headers("Via").len(), 1);
    // A 2xx retransmission passes too (RFC 6026).
    call.uas
        .send(proxy, &response_to(&invite, "200 OK", ""))
        .await;
    let again = call.uac_next("200 retransmission").await;
    assert_eq!(again.start_line(), "SIP/2.0 200 OK");
    // The transaction kept only the request line after the first 2xx:
    // the reply route's request variables still read it.
    assert_eq!(again.header("X-Request").as_deref(), Some("INVITE bob"));
    assert!(server.transactions() >= 1);
}

/// A non-INVITE whose final response went up frees its stored request
/// (nothing reads it any more) but keeps answering: the caller's
/// retransmission gets the same final response, with what the `reply`
/// route wrote from the request, and the callee's is absorbed.
#[tokio::test]
async fn a_settled_non_invite_still_answers_retransmissions() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-settled").await;
    let message = request(
        "MESSAGE",
        &call.ruri,
        &call.via,
        &call.call_id,
        "Max-Forwards: 70\r\n",
    );
    call.uac.send(proxy, &message).await;
    let (relayed, _) = call.uas.recv("MESSAGE").await;
    call.uas
        .send(proxy, &response_to(&relayed, "200 OK", ""))
        .await;
    let (ok, _) = call.uac.recv("200 for the MESSAGE").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("X-Request").as_deref(), Some("MESSAGE bob"));
    // The caller did not see it and sends the MESSAGE again.
    call.uac.send(proxy, &message).await;
    let (again, _) = call.uac.recv("the 200 again").await;
    assert_eq!(again.start_line(), "SIP/2.0 200 OK");
    assert_eq!(again.header("X-Request").as_deref(), Some("MESSAGE bob"));
    call.uas
        .expect_silence(300, "the retransmitted MESSAGE is not relayed")
        .await;
    // The callee's retransmitted 200 ends in its client transaction.
    call.uas
        .send(proxy, &response_to(&relayed, "200 OK", ""))
        .await;
    call.uac
        .expect_silence(300, "a retransmitted 200 of a settled MESSAGE")
        .await;
}

#[tokio::test]
async fn retransmitted_invite_is_absorbed_and_the_last_provisional_resent() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-rtx").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    let _ = call.uac_next("180").await;
    call.send_invite("").await;
    let resent = call.uac_next("the 180 again for the retransmission").await;
    assert_eq!(resent.start_line(), "SIP/2.0 180 Ringing");
    // The UAS saw the INVITE once (it is in Proceeding: no more retransmissions).
    call.uas
        .expect_silence(300, "the retransmitted INVITE is not relayed")
        .await;
}

#[tokio::test]
async fn downstream_that_drops_the_first_invite_gets_a_retransmission() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-lossy").await;
    call.send_invite("").await;
    let (first, _) = call.uas.recv("INVITE").await;
    // Ignore it: Timer A (T1 = 50 ms) retransmits with the same branch.
    let (second, _) = call.uas.recv("INVITE retransmission").await;
    assert!(second.start_line().starts_with("INVITE"));
    assert_eq!(first.top_branch(), second.top_branch());
    call.uas
        .send(proxy, &response_to(&second, "200 OK", ""))
        .await;
    assert_eq!(call.uac_next("200").await.start_line(), "SIP/2.0 200 OK");
}

#[tokio::test]
async fn a_404_is_rerouted_and_the_caller_never_sees_it() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-404").await;
    let second = Peer::bind().await;
    call.send_invite(&format!("X-Second: sip:127.0.0.1:{}\r\n", second.port()))
        .await;
    let (invite, _) = call.uas.recv("INVITE at the first UAS").await;
    call.uas
        .send(proxy, &response_to(&invite, "404 Not Found", ""))
        .await;
    // The first UAS gets the hop-by-hop ACK with the INVITE's branch.
    let (ack, _) = call.uas.recv("ACK for the 404").await;
    assert!(ack.start_line().starts_with("ACK "), "{}", ack.start_line());
    assert_eq!(ack.top_branch(), invite.top_branch());
    assert_eq!(ack.header("CSeq").as_deref(), Some("1 ACK"));
    assert!(ack.header("To").unwrap().contains("tag=b1"));
    let (rerouted, _) = second.recv("INVITE at the second UAS").await;
    assert_eq!(rerouted.header("X-Rerouted").as_deref(), Some("404"));
    assert_eq!(
        rerouted.header("X-Proxied").as_deref(),
        Some("You betcha"),
        "request route edits kept"
    );
    assert_ne!(rerouted.top_branch(), invite.top_branch(), "a new branch");
    second
        .send(proxy, &response_to(&rerouted, "200 OK", ""))
        .await;
    let ok = call.uac_next("200 from the second UAS").await;
    assert_eq!(
        ok.start_line(),
        "SIP/2.0 200 OK",
        "the caller never sees the 404"
    );
}

#[tokio::test]
async fn no_answer_is_a_408_into_failure() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    // Rerouted on 408.
    let call = Call::new(proxy, "st-408r").await;
    let second = Peer::bind().await;
    call.send_invite(&format!("X-Second: sip:127.0.0.1:{}\r\n", second.port()))
        .await;
    // Timer B is 64*T1 = 3.2 s here; the silent first UAS just collects retransmissions.
    let (rerouted, _) = second
        .recv_within(6000, "INVITE at the second UAS after Timer B")
        .await;
    assert_eq!(rerouted.header("X-Rerouted").as_deref(), Some("408"));

    // Not rerouted: the caller gets a 408.
    let call = Call::new(proxy, "st-408").await;
    call.send_invite("").await;
    let _trying = call.uac.recv("100 Trying").await;
    let (got, _) = call.uac.recv_within(6000, "408 after Timer B").await;
    assert_eq!(got.start_line(), "SIP/2.0 408 Request Timeout");
    assert!(got.header("To").unwrap().contains("tag="));
}

#[tokio::test]
async fn failure_route_can_reply_and_503_goes_up_as_500() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-486").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "486 Busy Here", ""))
        .await;
    let got = call.uac_next("the failure route's reply").await;
    assert_eq!(got.start_line(), "SIP/2.0 480 Rerouted Busy");
    call.send_ack_for(&got).await;
    call.uas.recv("hop-by-hop ACK for the 486").await;
    call.uas
        .expect_silence(300, "the caller's ACK is absorbed")
        .await;

    let call = Call::new(proxy, "st-503").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "503 Service Unavailable", ""))
        .await;
    let got = call.uac_next("500").await;
    assert_eq!(got.start_line(), "SIP/2.0 500 Server Internal Error");
}

#[tokio::test]
async fn cancel_after_a_provisional() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-cancel").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    let _ = call.uac_next("180").await;
    call.send_cancel().await;
    let ok = call.uac_next("200 for the CANCEL").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("CSeq").as_deref(), Some("1 CANCEL"));
    let (cancel, _) = call.uas.recv("CANCEL downstream").await;
    assert!(cancel.start_line().starts_with("CANCEL "));
    assert_eq!(cancel.top_branch(), invite.top_branch());
    call.uas
        .send(proxy, &response_to(&cancel, "200 OK", ""))
        .await;
    call.uas
        .send(proxy, &response_to(&invite, "487 Request Terminated", ""))
        .await;
    let (ack, _) = call.uas.recv("ACK for the 487").await;
    assert!(ack.start_line().starts_with("ACK "));
    let terminated = call.uac_next("487 upstream").await;
    assert_eq!(terminated.start_line(), "SIP/2.0 487 Request Terminated");
    call.send_ack_for(&terminated).await;
    call.uas
        .expect_silence(300, "the caller's ACK for the 487 is absorbed")
        .await;
}

#[tokio::test]
async fn cancel_before_a_provisional_waits_for_one() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-early-cancel").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.send_cancel().await;
    let ok = call.uac_next("200 for the CANCEL").await;
    assert_eq!(ok.header("CSeq").as_deref(), Some("1 CANCEL"));
    // §9.1: no CANCEL before the branch answered provisionally.
    let (m, _) = call
        .uas
        .recv("the INVITE retransmission, not a CANCEL")
        .await;
    assert!(
        m.start_line().starts_with("INVITE"),
        "got {}",
        m.start_line()
    );
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    loop {
        let (m, _) = call.uas.recv("CANCEL once the 180 came").await;
        if m.start_line().starts_with("CANCEL") {
            assert_eq!(m.top_branch(), invite.top_branch());
            break;
        }
    }
}

#[tokio::test]
async fn a_200_that_beats_the_cancel_wins() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-race").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    call.uas
        .send(proxy, &response_to(&invite, "200 OK", ""))
        .await;
    // The 180 and the 200 may pass each other (two workers, UDP).
    let lines: Vec<String> = [
        call.uac_next("the 180 or the 200").await,
        call.uac_next("the 200 or the 180").await,
    ]
    .iter()
    .map(|m| m.start_line().to_string())
    .collect();
    assert!(lines.iter().any(|l| l == "SIP/2.0 200 OK"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "SIP/2.0 180 Ringing"),
        "{lines:?}"
    );
    call.send_cancel().await;
    let ok = call.uac_next("200 for the CANCEL").await;
    assert_eq!(ok.header("CSeq").as_deref(), Some("1 CANCEL"));
    call.uas
        .expect_silence(300, "no CANCEL after the 200")
        .await;
}

#[tokio::test]
async fn the_table_is_bounded_and_transactions_end() {
    let mut config = fast_timers();
    config.max_transactions = 1;
    let (server, proxy) = start_proxy_with(routes(), config).await;
    let call = Call::new(proxy, "st-full-1").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    let other = Call::new(proxy, "st-full-2").await;
    other.send_invite("").await;
    let busy = other.uac_next("503 when the table is full").await;
    assert_eq!(busy.start_line(), "SIP/2.0 503 Service Unavailable");
    assert_eq!(busy.header("Retry-After").as_deref(), Some("5"));
    assert_eq!(server.transactions(), 1);
    call.uas
        .send(proxy, &response_to(&invite, "404 Not Found", ""))
        .await;
    let nf = call.uac_next("404").await;
    call.send_ack_for(&nf).await;
    // The client side keeps the ACK for retransmitted 404s during Timer D
    // (at least 32 s on UDP, whatever T1 is); then the entry is freed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while server.transactions() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.transactions(), 0, "the transaction freed itself");
}

#[tokio::test]
async fn a_486_that_beats_the_cancel_goes_up_and_failure_does_not_run() {
    let (_server, proxy) = start_proxy_with(routes(), fast_timers()).await;
    let call = Call::new(proxy, "st-486-race").await;
    call.send_invite("").await;
    let (invite, _) = call.uas.recv("INVITE").await;
    call.uas
        .send(proxy, &response_to(&invite, "180 Ringing", ""))
        .await;
    let _ = call.uac_next("180").await;
    call.send_cancel().await;
    let ok = call.uac_next("200 for the CANCEL").await;
    assert_eq!(ok.header("CSeq").as_deref(), Some("1 CANCEL"));
    let (cancel, _) = call.uas.recv("CANCEL downstream").await;
    assert!(cancel.start_line().starts_with("CANCEL "));
    // The callee was already answering busy: its 486 crosses the CANCEL.
    call.uas
        .send(proxy, &response_to(&invite, "486 Busy Here", ""))
        .await;
    call.uas
        .send(
            proxy,
            &response_to(&cancel, "481 Call/Transaction Does Not Exist", ""),
        )
        .await;
    let busy = call.uac_next("the 486 upstream").await;
    // Cancelled: the failure route (which turns 486 into 480) does not run.
    assert_eq!(busy.start_line(), "SIP/2.0 486 Busy Here");
    let (ack, _) = call.uas.recv("hop-by-hop ACK for the 486").await;
    assert!(ack.start_line().starts_with("ACK "));
}
