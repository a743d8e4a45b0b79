//! Every core (issue 12): a proxy with two workers per socket under a few
//! thousand calls that all come from ONE source address (a single SBC or
//! carrier sends everything from one IP:port, which `SO_REUSEPORT` would
//! pin to one socket). Both workers must take a real share of the
//! messages, and no call may fail, statelessly and statefully.
//!
//! Alone in its test binary: the per-worker counters are process-wide, so
//! no other proxy may run beside this one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

mod common;

use common::text::{header, response};

const CALLS: usize = 2_000;
/// Calls in progress at once: enough that the lead cannot keep up and
/// finds a backlog (`BACKLOG` in runtime/src/net/udp.rs: 64 datagrams
/// waiting in a row) to call the other worker, few enough that the
/// loopback never drops a burst.
const WINDOW: usize = 64;

fn worker_messages(worker: usize) -> f64 {
    sipforge_runtime::metrics::sample(
        &sipforge_runtime::metrics::encode(),
        &format!("sipforge_worker_messages_total{{worker=\"{worker}\"}}"),
    )
    .unwrap_or(0.0)
}
/// A response to `req` as a UAS writes it (every Via copied).
/// The callee: 180 and 200 to each INVITE, 200 to each BYE (and to any
/// retransmission of either).
async fn uas(socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("INVITE ") {
            let _ = socket
                .send_to(response(&msg, "180 Ringing", "uas").as_bytes(), from)
                .await;
            let _ = socket
                .send_to(response(&msg, "200 OK", "uas").as_bytes(), from)
                .await;
        } else if msg.starts_with("BYE ") {
            let _ = socket
                .send_to(response(&msg, "200 OK", "uas").as_bytes(), from)
                .await;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Inviting,
    Byeing,
}

struct Call {
    stage: Stage,
    sent: Instant,
    to_tag: String,
}

/// Every call from one UAC socket through the proxy: INVITE, (180, 200),
/// ACK, BYE, 200; requests resent after 500 ms without an answer. Returns
/// the calls that did not finish.
async fn calls(proxy: SocketAddr, uas: SocketAddr, mode: &str) -> Vec<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let request = |method: &str, id: &str, cseq: u32, branch: &str, to_tag: &str| {
        let to_tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        format!(
            "{method} sip:bob@{uas} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\n\
             From: <sip:alice@example.com>;tag={id}\r\nTo: <sip:bob@example.com>{to_tag}\r\n\
             Call-ID: {id}\r\nCSeq: {cseq} {method}\r\nX-Mode: {mode}\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let mut live: HashMap<String, Call> = HashMap::new();
    let mut next = 0usize;
    let mut done = 0usize;
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(120);
    while done < CALLS && Instant::now() < deadline {
        while live.len() < WINDOW && next < CALLS {
            let id = format!("{mode}-{next}");
            next += 1;
            let invite = request("INVITE", &id, 1, &format!("{id}-i"), "");
            socket.send_to(invite.as_bytes(), proxy).await.unwrap();
            live.insert(
                id,
                Call {
                    stage: Stage::Inviting,
                    sent: Instant::now(),
                    to_tag: String::new(),
                },
            );
        }
        let received =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await;
        if let Ok(Ok((n, _))) = received {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let id = header(&msg, "Call-ID").unwrap_or("").to_string();
            let cseq = header(&msg, "CSeq").unwrap_or("");
            if let Some(call) = live.get_mut(&id) {
                if call.stage == Stage::Inviting
                    && cseq.ends_with("INVITE")
                    && msg.starts_with("SIP/2.0 200")
                {
                    let to = header(&msg, "To").unwrap_or("");
                    call.to_tag = to.split("tag=").nth(1).unwrap_or("").to_string();
                    let ack = request("ACK", &id, 1, &format!("{id}-a"), &call.to_tag);
                    socket.send_to(ack.as_bytes(), proxy).await.unwrap();
                    let bye = request("BYE", &id, 2, &format!("{id}-b"), &call.to_tag);
                    socket.send_to(bye.as_bytes(), proxy).await.unwrap();
                    call.stage = Stage::Byeing;
                    call.sent = Instant::now();
                } else if call.stage == Stage::Byeing
                    && cseq.ends_with("BYE")
                    && msg.starts_with("SIP/2.0 200")
                {
                    live.remove(&id);
                    done += 1;
                }
            }
        }
        // Resend what got no answer (UDP may lose a datagram).
        let now = Instant::now();
        for (id, call) in live.iter_mut() {
            if now.duration_since(call.sent) > Duration::from_millis(500) {
                let text = match call.stage {
                    Stage::Inviting => request("INVITE", id, 1, &format!("{id}-i"), ""),
                    Stage::Byeing => request("BYE", id, 2, &format!("{id}-b"), &call.to_tag),
                };
                socket.send_to(text.as_bytes(), proxy).await.unwrap();
                call.sent = now;
            }
        }
    }
    let mut failed: Vec<String> = live.into_keys().collect();
    failed.extend((next..CALLS).map(|i| format!("{mode}-{i} (never started)")));
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_calls_of_one_source() {
    let (server, proxy) = common::start_proxy_with(
        &common::loops::ROUTES,
        sipforge_runtime::proxy::CoreConfig::default(),
    )
    .await;
    let callee = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let uas_addr = callee.local_addr().unwrap();
    let uas_task = tokio::spawn(uas(Arc::clone(&callee)));
    for mode in ["forward", "relay"] {
        let before = [worker_messages(0), worker_messages(1)];
        let failed = calls(proxy, uas_addr, mode).await;
        assert!(
            failed.is_empty(),
            "{mode}: {} calls failed, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        let handled = [
            worker_messages(0) - before[0],
            worker_messages(1) - before[1],
        ];
        let total = handled[0] + handled[1];
        // Six messages per call at least reach the proxy (INVITE, 180,
        // 200, ACK, BYE, 200).
        assert!(total >= (6 * CALLS) as f64, "{mode}: {handled:?}");
        for (worker, n) in handled.iter().enumerate() {
            assert!(
                *n >= total * 0.1,
                "{mode}: worker {worker} handled {n} of {total} messages: the load from one source was not spread"
            );
        }
        println!("{mode}: messages per worker {handled:?}");
    }
    uas_task.abort();
    server.shutdown().await;
}
