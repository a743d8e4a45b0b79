//! `limits.per_source` through a running proxy (tests/routes/limits.yaml:
//! 20 requests per second, a 2 s ban, 127.0.0.2 trusted): a flood from one
//! source gets at most its share through, another source is unaffected, a
//! trusted one is never limited, and the ban ends.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Peer;

async fn peer_on(ip: &str) -> Peer {
    let socket = tokio::net::UdpSocket::bind(format!("{ip}:0"))
        .await
        .unwrap();
    Peer {
        addr: socket.local_addr().unwrap(),
        socket,
    }
}

fn options(peer: &Peer, n: usize) -> String {
    format!(
        "OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bK-lim-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood@example.com>;tag=l{n}\r\n\
         To: <sip:proxy@127.0.0.1>\r\n\
         Call-ID: limits-{n}-{}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        peer.addr,
        peer.port()
    )
}

/// Send `count` requests in batches of 20, each batch sent at once and
/// its answers collected before the next (a whole burst at once could
/// overflow socket buffers on a loaded machine); the answers that came.
async fn burst(proxy: SocketAddr, peer: &Peer, count: usize) -> usize {
    let mut answered = 0;
    let mut buf = vec![0u8; 65_535];
    for start in (0..count).step_by(20) {
        let end = (start + 20).min(count);
        for n in start..end {
            peer.send(proxy, &options(peer, n)).await;
        }
        let mut got = 0;
        while got < end - start {
            match tokio::time::timeout(Duration::from_millis(300), peer.socket.recv_from(&mut buf))
                .await
            {
                Ok(Ok(_)) => got += 1,
                _ => break,
            }
        }
        answered += got;
    }
    answered
}

/// Send `count` requests at once (a flood); the answers that came.
async fn flood_of(proxy: SocketAddr, peer: &Peer, count: usize) -> usize {
    for n in 0..count {
        peer.send(proxy, &options(peer, n)).await;
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 65_535];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(300), peer.socket.recv_from(&mut buf)).await
    {
        answered += 1;
    }
    answered
}

#[tokio::test]
async fn a_flood_is_cut_at_the_rate_and_banned_other_and_trusted_sources_are_not() {
    let (_server, proxy) = common::start_proxy(&common::limits::ROUTES).await;
    let flooder = peer_on("127.0.0.1").await;
    let passed = flood_of(proxy, &flooder, 200).await;
    // 20 at once, plus what refills while the burst is sent (20 per second).
    assert!((20..=30).contains(&passed), "{passed} of 200 passed");
    // Banned: nothing from this source, even at a trickle.
    assert_eq!(
        flood_of(proxy, &flooder, 3).await,
        0,
        "banned source answered"
    );
    // Another source has its own bucket; a trusted one has none.
    let other = peer_on("127.0.0.3").await;
    assert_eq!(burst(proxy, &other, 10).await, 10);
    let trusted = peer_on("127.0.0.2").await;
    assert_eq!(
        burst(proxy, &trusted, 200).await,
        200,
        "trusted source limited"
    );
    // The ban (2 s) ends, and the source starts again with a full bucket.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(burst(proxy, &flooder, 5).await, 5, "the ban did not end");
}

#[tokio::test]
async fn responses_from_a_banned_source_are_not_limited() {
    // A response is never counted: only requests fill the bucket.
    let (_server, proxy) = common::start_proxy(&common::limits::ROUTES).await;
    let peer = peer_on("127.0.0.4").await;
    for n in 0..100 {
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x{n}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send(proxy, &resp).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        burst(proxy, &peer, 10).await,
        10,
        "responses counted as requests"
    );
}
