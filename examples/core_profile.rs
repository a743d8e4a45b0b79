//! Feeds a seed-example call (INVITE, 180, 200, ACK, BYE, 200) through the
//! sans-IO core in a loop, no sockets: for profiling the per-message path
//! with `valgrind --tool=callgrind` (instruction counts are repeatable).
//! `cargo build --release --example core_profile`

#[allow(dead_code, clippy::needless_return)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

use std::time::Instant;

use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener};

const INVITE: &str = "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-0\r\nFrom: sipp <sip:sipp@127.0.0.1:5070>;tag=1\r\nTo: service <sip:service@127.0.0.1:5080>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5070\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn main() {
    // PROFILE_LOGS=1: log through the same formatter as the binary, into a sink.
    if std::env::var_os("PROFILE_LOGS").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
            .init();
    }
    let routes: &'static dyn sipforge_runtime::api::Routes = &fixtures::seed::ROUTES;
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    let core = Core::new(routes, Identity::new(vec![listener]), CoreConfig::default());
    let uac = "127.0.0.1:5070".parse().unwrap();
    let uas = "127.0.0.1:5080".parse().unwrap();
    let mut out = Vec::new();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let start = Instant::now();
    for _ in 0..n {
        out.clear();
        core.handle(Instant::now(), INVITE.as_bytes(), uac, 0, &mut out);
        let forwarded = out.pop().expect("forwarded");
        let fwd = String::from_utf8_lossy(forwarded.bytes.as_ref()).into_owned();
        let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
        let resp = format!(
            "SIP/2.0 180 Ringing\r\n{}\r\n{}\r\nFrom: sipp <sip:sipp@127.0.0.1:5070>;tag=1\r\nTo: service <sip:service@127.0.0.1:5080>;tag=2\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            vias[0], vias[1]
        );
        for _ in 0..2 {
            out.clear();
            core.handle(Instant::now(), resp.as_bytes(), uas, 0, &mut out);
        }
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        for _ in 0..2 {
            out.clear();
            core.handle(Instant::now(), ack.as_bytes(), uac, 0, &mut out);
        }
        out.clear();
        core.handle(Instant::now(), resp.as_bytes(), uas, 0, &mut out);
    }
    let per = start.elapsed() / n as u32;
    eprintln!("{n} calls, {per:?} per call (6 messages) in the core");
}
