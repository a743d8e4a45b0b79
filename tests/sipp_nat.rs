//! NAT traversal with real SIP stacks: a sipp phone behind NAT
//! (tests/sipp/nat_uas.xml: Via and Contact 192.168.1.10:5060, sent from
//! sipp's own socket) registers through an in-process proxy running
//! tests/routes/nat.yaml; a sipp caller (tests/sipp/nat_call_uac.xml)
//! calls it, sees its 200's Contact fixed to the binding with the marker,
//! and sends its ACK and BYE there along the Record-Route; the phone gets
//! them at its binding with its own private Request-URI.
//!
//! tests/nat.rs covers the same with hand-made UDP peers (and the caller
//! behind NAT). How the phone and the caller share a call: see
//! tests/sipp_registrar.rs. Without sipp the test prints SKIPPED and
//! passes, except on CI (`CI=true`), where it fails.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Sipp, sipp_or_skip, wait_registered, work_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_behind_nat_takes_a_call_and_its_dialog_through_the_binding() {
    let test = "a_phone_behind_nat_takes_a_call_and_its_dialog_through_the_binding";
    if !sipp_or_skip(test) {
        return;
    }
    let (_server, proxy) = common::start_proxy(&common::nat::ROUTES).await;
    let dir = work_dir("nat_call");
    let cid = format!("sfnat-{}-%u", std::process::id());
    // 200 ms between the 180 and the 200: two workers could swap them.
    let options = ["-s", "phone", "-cid_str", &cid, "-d", "200", "-trace_msg"];
    let uas = Sipp::uac_with(&dir, "phone", "nat_uas.xml", proxy, 1, 1, &[], &options);
    wait_registered(&dir, "nat_uas.xml").await;
    let options = ["-s", "phone", "-cid_str", &cid, "-trace_msg"];
    let uac = Sipp::uac_with(
        &dir,
        "caller",
        "nat_call_uac.xml",
        proxy,
        1,
        1,
        &[],
        &options,
    );
    let uac = uac.finish(Duration::from_secs(22)).await;
    let uas = uas.finish(Duration::from_secs(5)).await;
    let all = format!("{}\n{}", uac.report(), uas.report());
    uac.assert_clean(1, "OutgoingCall", &all);
    uas.assert_clean(1, "OutgoingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}
