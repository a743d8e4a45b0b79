//! A pool of two instances sharing a real redis-server, with real SIP
//! stacks (issue 14, `proxy::flow`): a sipp phone registers over TCP
//! through instance A (tests/sipp/reg_uas_ok.xml with `-t t1`: a TCP
//! client, as a phone behind NAT is), and a sipp caller over UDP calls its
//! AoR through instance B. B's lookup follows the binding's flow entry to
//! A, which relays over the phone's own connection; the record-routed ACK
//! and BYE reach the phone the same way. tests/pool_flows.rs checks the
//! same with hand-made peers, message by message.
//!
//! Without sipp or redis-server the test prints SKIPPED and passes, except
//! on CI (`CI=true`), where it fails.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use common::redis::Redis;
use harness::{Over, Sipp, sipp_or_skip, wait_registered, work_dir};
use sipforge_runtime::transport::ListenAddr;

/// One instance of the pool on free loopback ports: (server, UDP, TCP).
async fn instance(redis: &Redis) -> (sipforge_runtime::net::Server, SocketAddr, SocketAddr) {
    let mut options = common::options();
    options.listen = vec![
        ListenAddr::parse("udp:127.0.0.1:0").unwrap(),
        ListenAddr::parse("tcp:127.0.0.1:0").unwrap(),
    ];
    options.registrar_store = Some(redis.url());
    options.secret = Some(b"the pool's secret, shared by both instances".to_vec());
    let server = sipforge_runtime::net::start(&common::registrar_shared::ROUTES, options)
        .await
        .expect("proxy starts");
    let (udp, tcp) = (server.local_addrs()[0], server.local_addrs()[1]);
    (server, udp, tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_phone_on_tcp_at_one_instance_takes_a_call_through_the_other() {
    let test = "a_sipp_phone_on_tcp_at_one_instance_takes_a_call_through_the_other";
    if !sipp_or_skip(test) {
        return;
    }
    let Some(redis) = Redis::start() else {
        return;
    };
    let (_a, _, a_tcp) = instance(&redis).await;
    let (_b, b_udp, _) = instance(&redis).await;
    let dir = work_dir("pool_call");
    let cid = format!("sfpool-{}-%u", std::process::id());

    // The phone: REGISTER over its TCP connection to A, then it waits for
    // the call on that connection (sipp gives the INVITE to the call of
    // its Call-ID: both sipps share -cid_str). 200 ms between its 180 and
    // 200.
    let phone = Sipp::uac_full(
        &dir,
        "phone",
        "reg_uas_ok.xml",
        a_tcp,
        1,
        1,
        &[],
        &["-s", "dave", "-cid_str", &cid, "-d", "200", "-trace_msg"],
        Over::Tcp,
    );
    wait_registered(&dir, "reg_uas_ok.xml").await;
    let caller = Sipp::uac_with(
        &dir,
        "caller",
        "reg_call_uac.xml",
        b_udp,
        1,
        1,
        &[],
        &["-s", "dave", "-cid_str", &cid, "-trace_msg"],
    );
    let caller = caller.finish(Duration::from_secs(22)).await;
    let phone = phone.finish(Duration::from_secs(5)).await;
    let all = format!("{}\n{}", caller.report(), phone.report());
    caller.assert_clean(1, "OutgoingCall", &all);
    phone.assert_clean(1, "OutgoingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}
