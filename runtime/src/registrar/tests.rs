//! The registrar's rules end to end: REGISTERs written as text, parsed
//! with [`crate::sip::Message::parse`], read by [`parse_register`] and
//! applied with [`apply`] or a [`MemoryStore`]; the clock is the
//! `now_unix` argument.

use std::net::SocketAddr;

use super::*;
use crate::sip::Message;
use crate::transport::Transport;

const T0: u64 = 1_700_000_000;

fn udp(addr: &str) -> Received {
    Received {
        transport: Transport::Udp,
        addr: addr.parse::<SocketAddr>().unwrap(),
    }
}

fn src() -> Received {
    udp("198.51.100.7:40123")
}

/// A REGISTER for `sip:Alice@example.com` with these extra header lines.
fn text(call_id: &str, cseq: u32, headers: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:Alice@example.com>\r\n\
         From: <sip:Alice@example.com>;tag=f{cseq}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {headers}\
         Content-Length: 0\r\n\r\n"
    )
}

fn parse_with(raw: &str, received: Received, config: &Config) -> Result<RegisterRequest, Refusal> {
    let msg = Message::parse(raw.as_bytes()).expect("frames");
    parse_register(&msg, received, config)
}

fn parse(raw: &str) -> Result<RegisterRequest, Refusal> {
    parse_with(raw, src(), &Config::default())
}

/// The bindings of one AoR and a config: REGISTERs go through
/// parse_register + apply, like the `save` step.
struct Aor {
    bindings: Vec<Binding>,
    config: Config,
}

impl Aor {
    fn new() -> Aor {
        Aor::with(Config::default())
    }

    fn with(config: Config) -> Aor {
        Aor {
            bindings: Vec::new(),
            config,
        }
    }

    fn register(&mut self, raw: &str, now: u64) -> Result<Vec<Binding>, Refusal> {
        let req = parse_with(raw, src(), &self.config)?;
        let next = apply(&self.bindings, &req, now, &self.config)?;
        self.bindings = next.clone();
        Ok(next)
    }

    fn contacts(&self, now: u64) -> Vec<&str> {
        targets(&self.bindings, now)
            .into_iter()
            .map(|b| b.contact.as_str())
            .collect()
    }
}

#[test]
fn add_keeps_everything_about_the_contact() {
    let raw = text(
        "c1",
        1,
        "Contact: \"Alice\" <sip:alice@10.0.0.1:5060;transport=udp>;q=0.7\r\n\
         Expires: 600\r\nUser-Agent: Phone/1.0\r\n",
    );
    let req = parse(&raw).unwrap();
    assert_eq!(req.aor, "sip:Alice@example.com");
    assert_eq!(req.call_id, "c1");
    assert_eq!(req.cseq, 1);
    let mut aor = Aor::new();
    let b = aor.register(&raw, T0).unwrap();
    assert_eq!(b.len(), 1);
    let b = &b[0];
    assert_eq!(b.contact, "sip:alice@10.0.0.1:5060;transport=udp");
    assert_eq!(b.expires_at, T0 + 600);
    assert_eq!(b.q, Some(700));
    assert_eq!((b.call_id.as_str(), b.cseq), ("c1", 1));
    assert_eq!(b.received, src());
    assert_eq!(b.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(b.registered_at, T0);
    assert!(b.path.is_empty());
}

#[test]
fn refresh_updates_the_same_binding() {
    let mut aor = Aor::new();
    aor.register(
        &text("c1", 1, "Contact: <sip:alice@10.0.0.1>\r\nExpires: 600\r\n"),
        T0,
    )
    .unwrap();
    // The same URI written differently (§19.1.4) is the same binding.
    let b = aor
        .register(
            &text("c1", 2, "Contact: sip:%61lice@10.0.0.1;expires=1200\r\n"),
            T0 + 100,
        )
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].expires_at, T0 + 1300);
    assert_eq!(b[0].cseq, 2);
    assert_eq!(b[0].contact, "sip:%61lice@10.0.0.1");
}

#[test]
fn remove_by_header_or_by_param() {
    let mut aor = Aor::new();
    aor.register(
        &text(
            "c1",
            1,
            "Contact: <sip:a@10.0.0.1>, <sip:b@10.0.0.2>, <sip:c@10.0.0.3>\r\n",
        ),
        T0,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0).len(), 3);
    aor.register(
        &text("c1", 2, "Contact: <sip:a@10.0.0.1>\r\nExpires: 0\r\n"),
        T0,
    )
    .unwrap();
    // The parameter wins over the header, both ways.
    aor.register(
        &text(
            "c1",
            3,
            "Contact: <sip:b@10.0.0.2>;expires=0, <sip:c@10.0.0.3>;expires=300\r\nExpires: 0\r\n",
        ),
        T0,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0), ["sip:c@10.0.0.3"]);
    assert_eq!(aor.bindings[0].expires_at, T0 + 300);
    // Removing what is not there is fine.
    let left = aor
        .register(
            &text("c1", 4, "Contact: <sip:zz@10.0.0.9>;expires=0\r\n"),
            T0,
        )
        .unwrap();
    assert_eq!(left.len(), 1);
}

#[test]
fn star_removes_all_and_only_alone_with_expires_zero() {
    let mut aor = Aor::new();
    aor.register(&text("c1", 1, "Contact: <sip:a@h1>, <sip:b@h2>\r\n"), T0)
        .unwrap();
    aor.register(&text("c2", 1, "Contact: <sip:c@h3>\r\n"), T0)
        .unwrap();
    assert_eq!(aor.contacts(T0).len(), 3);
    for bad in [
        "Contact: *\r\n",
        "Contact: *\r\nExpires: 60\r\n",
        "Contact: *, <sip:a@h1>\r\nExpires: 0\r\n",
        "Contact: *\r\nContact: <sip:a@h1>\r\nExpires: 0\r\n",
    ] {
        let r = aor.register(&text("c1", 5, bad), T0).unwrap_err();
        assert_eq!(r.code, 400, "{bad}");
    }
    assert_eq!(aor.contacts(T0).len(), 3);
    // An older CSeq of a Call-ID that wrote a binding: nothing removed.
    let r = aor
        .register(&text("c2", 1, "Contact: *\r\nExpires: 0\r\n"), T0)
        .unwrap_err();
    assert_eq!(r.code, 500);
    assert_eq!(aor.contacts(T0).len(), 3);
    let left = aor
        .register(&text("c3", 1, "Contact: *\r\nExpires: 0\r\n"), T0)
        .unwrap();
    assert!(left.is_empty());
    assert_eq!(
        parse(&text("c3", 1, "m: *\r\nExpires: 0\r\n"))
            .unwrap()
            .change,
        Change::Star
    );
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    for headers in [
        "Contact: <sip:a@h>\r\nExpires: 30\r\n",
        "Contact: <sip:a@h>;expires=1\r\nExpires: 3600\r\n",
        "Contact: <sip:b@h>, <sip:a@h>;expires=59\r\n",
    ] {
        let r = parse(&text("c1", 1, headers)).unwrap_err();
        assert_eq!((r.code, r.reason), (423, "Interval Too Brief"), "{headers}");
        assert_eq!(r.headers, "Min-Expires: 60\r\n");
    }
    let req = parse(&text("c1", 1, "Contact: <sip:a@h>;expires=60\r\n")).unwrap();
    let Change::Contacts(u) = req.change else {
        panic!()
    };
    assert_eq!(u[0].expires, 60);
    // A malformed request is a 400 even when a contact is too brief.
    let r = parse(&text(
        "c1",
        1,
        "Contact: <sip:a@h>;expires=5, <sip:b@h>;q=7\r\n",
    ))
    .unwrap_err();
    assert_eq!(r.code, 400);
}

#[test]
fn long_asks_are_clamped_and_absent_ones_get_the_default() {
    let config = Config {
        default_expires: 1800,
        ..Config::default()
    };
    let mut aor = Aor::with(config);
    let b = aor
        .register(
            &text(
                "c1",
                1,
                "Contact: <sip:a@h>;expires=7200, <sip:b@h>, <sip:c@h>;expires=99999999999\r\n",
            ),
            T0,
        )
        .unwrap();
    let at: Vec<_> = b.iter().map(|b| b.expires_at - T0).collect();
    assert_eq!(at, [3600, 1800, 3600]);
    let b = aor
        .register(
            &text("c1", 2, "Contact: <sip:b@h>\r\nExpires: 5000\r\n"),
            T0,
        )
        .unwrap();
    assert!(b.iter().all(|b| b.expires_at == T0 + 3600));
}

#[test]
fn max_contacts_counts_existing_and_new_after_removals() {
    let config = Config {
        max_contacts: 2,
        ..Config::default()
    };
    let mut aor = Aor::with(config);
    aor.register(&text("c1", 1, "Contact: <sip:a@h>, <sip:b@h>\r\n"), T0)
        .unwrap();
    let r = aor
        .register(&text("c2", 1, "Contact: <sip:c@h>\r\n"), T0)
        .unwrap_err();
    assert_eq!((r.code, r.reason), (403, "Too Many Contacts"));
    assert_eq!(aor.contacts(T0).len(), 2);
    // Refreshing what is there is not adding.
    aor.register(&text("c1", 2, "Contact: <sip:a@h>, <sip:b@h>\r\n"), T0)
        .unwrap();
    // A removal in the same request makes room, wherever it is listed.
    aor.register(
        &text("c1", 3, "Contact: <sip:c@h>, <sip:a@h>;expires=0\r\n"),
        T0,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0), ["sip:c@h", "sip:b@h"]);
    // A list longer than any request could need is refused before apply.
    let five = "Contact: <sip:a@h>;expires=0, <sip:b@h>;expires=0, <sip:c@h>, <sip:d@h>\r\n";
    assert!(parse_with(&text("c1", 9, five), src(), &aor.config).is_ok());
    let five = five.replace("\r\n", ", <sip:e@h>\r\n");
    let r = parse_with(&text("c1", 9, &five), src(), &aor.config).unwrap_err();
    assert_eq!((r.code, r.reason), (403, "Too Many Contacts"));
    // Three new ones at once are too many even for an empty AoR.
    let mut empty = Aor::with(aor.config.clone());
    let r = empty
        .register(
            &text("c9", 1, "Contact: <sip:x@h>, <sip:y@h>, <sip:z@h>\r\n"),
            T0,
        )
        .unwrap_err();
    assert_eq!(r.code, 403);
    // Expired bindings do not count.
    aor.register(&text("c5", 1, "Contact: <sip:d@h>\r\n"), T0 + 3600)
        .unwrap();
    aor.register(&text("c6", 1, "Contact: <sip:e@h>\r\n"), T0 + 3600)
        .unwrap();
    // A lowered limit does not block refreshes or removals.
    aor.config.max_contacts = 1;
    aor.register(&text("c6", 2, "Contact: <sip:e@h>\r\n"), T0 + 3601)
        .unwrap();
    assert_eq!(aor.contacts(T0 + 3601).len(), 2);
    aor.register(
        &text("c6", 3, "Contact: <sip:e@h>;expires=0\r\n"),
        T0 + 3601,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0 + 3601), ["sip:d@h"]);
}

#[test]
fn cseq_ordering_per_call_id() {
    let mut aor = Aor::new();
    aor.register(
        &text("c1", 10, "Contact: <sip:a@h>\r\nExpires: 600\r\n"),
        T0,
    )
    .unwrap();
    for cseq in [9, 10] {
        let r = aor
            .register(
                &text("c1", cseq, "Contact: <sip:a@h>\r\nExpires: 0\r\n"),
                T0 + 1,
            )
            .unwrap_err();
        assert_eq!(r.code, 500, "{cseq}");
        let r = aor
            .register(
                &text("c1", cseq, "Contact: <sip:a@h>;expires=900\r\n"),
                T0 + 1,
            )
            .unwrap_err();
        assert_eq!(r.code, 500, "{cseq}");
    }
    assert_eq!(aor.bindings[0].expires_at, T0 + 600);
    // The whole request fails: its other contacts are not added either.
    let r = aor
        .register(
            &text("c1", 3, "Contact: <sip:new@h>, <sip:a@h>\r\n"),
            T0 + 1,
        )
        .unwrap_err();
    assert_eq!(r.code, 500);
    assert_eq!(aor.contacts(T0 + 1), ["sip:a@h"]);
    // Another Call-ID (another device, a reboot) goes through with any CSeq.
    aor.register(
        &text("other", 1, "Contact: <sip:a@h>;expires=900\r\n"),
        T0 + 2,
    )
    .unwrap();
    assert_eq!(aor.bindings[0].expires_at, T0 + 902);
    assert_eq!(aor.bindings[0].call_id, "other");
    // A higher CSeq of the same Call-ID goes through.
    aor.register(
        &text("other", 2, "Contact: <sip:a@h>;expires=0\r\n"),
        T0 + 3,
    )
    .unwrap();
    assert!(aor.bindings.is_empty());
    // A contact listed twice in one request: the last one wins.
    let b = aor
        .register(
            &text(
                "c7",
                1,
                "Contact: <sip:a@h>;expires=100, <sip:a@h>;expires=200\r\n",
            ),
            T0,
        )
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].expires_at, T0 + 200);
}

#[test]
fn targets_by_q_then_most_recent() {
    let mut aor = Aor::new();
    aor.register(
        &text(
            "c1",
            1,
            "Contact: <sip:half@h>;q=0.5, <sip:none@h>, <sip:most@h>;q=0.8\r\n",
        ),
        T0,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0), ["sip:none@h", "sip:most@h", "sip:half@h"]);
    aor.register(&text("c2", 1, "Contact: <sip:later@h>;q=0.5\r\n"), T0 + 10)
        .unwrap();
    aor.register(
        &text("c3", 1, "Contact: <sip:same-second@h>;q=0.5\r\n"),
        T0 + 10,
    )
    .unwrap();
    aor.register(&text("c4", 1, "Contact: <sip:one@h>;q=1.0\r\n"), T0 + 5)
        .unwrap();
    assert_eq!(
        aor.contacts(T0 + 10),
        [
            "sip:one@h",
            "sip:none@h",
            "sip:most@h",
            "sip:same-second@h",
            "sip:later@h",
            "sip:half@h"
        ]
    );
}

#[test]
fn instance_and_reg_id_replace_the_flow_binding() {
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"";
    let mut aor = Aor::new();
    aor.register(
        &text(
            "c1",
            1,
            &format!("Contact: <sip:a@10.0.0.1:5060>;{inst};reg-id=1\r\n"),
        ),
        T0,
    )
    .unwrap();
    // Another flow (reg-id 2) with the same URI (RFC 5626: the instance and
    // reg-id are the key, not the URI): a second binding.
    aor.register(
        &text(
            "c2",
            1,
            &format!("Contact: <sip:a@10.0.0.1:5060>;{inst};reg-id=2\r\n"),
        ),
        T0,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0).len(), 2);
    // The device comes back with a new address and Call-ID on flow 1.
    let b = aor
        .register(
            &text(
                "c3",
                1,
                &format!("Contact: <sip:a@10.9.9.9:6000>;{inst};reg-id=1\r\n"),
            ),
            T0 + 1,
        )
        .unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(
        aor.contacts(T0 + 1),
        ["sip:a@10.9.9.9:6000", "sip:a@10.0.0.1:5060"]
    );
    // Without reg-id the instance alone is the key (RFC 5627).
    aor.register(
        &text("c4", 1, &format!("Contact: <sip:g@10.0.0.3>;{inst}\r\n")),
        T0 + 2,
    )
    .unwrap();
    aor.register(
        &text("c5", 1, &format!("Contact: <sip:g@10.0.0.4>;{inst}\r\n")),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0 + 3).len(), 3);
    // A binding made without an instance is matched by its URI.
    aor.register(&text("c6", 1, "Contact: <sip:p@10.0.0.5>\r\n"), T0 + 3)
        .unwrap();
    aor.register(
        &text(
            "c6",
            2,
            &format!("Contact: <sip:p@10.0.0.5>;{inst};reg-id=7\r\n"),
        ),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0 + 3).len(), 4);
    aor.register(
        &text("c6", 3, "Contact: <sip:p@10.0.0.5>;expires=0\r\n"),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(aor.contacts(T0 + 3).len(), 3);
    aor.register(
        &text(
            "c6",
            4,
            &format!("Contact: <sip:z@10.0.0.6>;{inst};reg-id=7\r\n"),
        ),
        T0 + 3,
    )
    .unwrap();
    aor.register(
        &text(
            "c6",
            5,
            &format!("Contact: <sip:z@10.0.0.6>;{inst};reg-id=7;expires=0\r\n"),
        ),
        T0 + 3,
    )
    .unwrap();
    aor.register(
        &text(
            "c4",
            2,
            &format!("Contact: <sip:g@10.0.0.4>;{inst};expires=0\r\n"),
        ),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(
        aor.contacts(T0 + 3),
        ["sip:a@10.9.9.9:6000", "sip:a@10.0.0.1:5060"]
    );
    let flow1 = &aor.bindings[1];
    assert_eq!(
        flow1.instance.as_deref(),
        Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
    );
    assert_eq!(flow1.reg_id, Some(1));
    // reg-id without an instance is ignored (plain RFC 3261 binding).
    let req = parse(&text("c1", 1, "Contact: <sip:x@h>;reg-id=3\r\n")).unwrap();
    let Change::Contacts(u) = req.change else {
        panic!()
    };
    assert_eq!((u[0].instance.as_deref(), u[0].reg_id), (None, None));
    // The 200 shows both parameters.
    let lines = contact_lines(&aor.bindings, T0 + 1);
    assert!(
        lines.contains(&format!(
            "<sip:a@10.9.9.9:6000>;expires=3600;{inst};reg-id=1\r\n"
        )),
        "{lines}"
    );
}

#[test]
fn path_and_source_are_kept() {
    let tcp = Received {
        transport: Transport::Tcp,
        addr: "[2001:db8::5]:5070".parse().unwrap(),
    };
    let raw = text(
        "c1",
        1,
        "Path: <sip:edge1.example.net;lr>\r\nPath: <sip:edge2.example.net;lr>, \
         <sip:[2001:db8::9]:5080;lr;ob>\r\nSupported: gruu, path\r\nContact: <sip:a@192.168.1.2:5060>\r\n",
    );
    let config = Config::default();
    let req = parse_with(&raw, tcp, &config).unwrap();
    assert!(req.path_supported);
    let bindings = apply(&[], &req, T0, &config).unwrap();
    let b = &bindings[0];
    assert_eq!(
        b.path,
        [
            "<sip:edge1.example.net;lr>",
            "<sip:edge2.example.net;lr>",
            "<sip:[2001:db8::9]:5080;lr;ob>"
        ]
    );
    assert_eq!(b.received, tcp);
    let ok = ok_headers(&req, &bindings, T0);
    assert!(
        ok.starts_with("Contact: <sip:a@192.168.1.2:5060>;expires=3600\r\n"),
        "{ok}"
    );
    assert!(ok.contains(
        "Path: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>, <sip:[2001:db8::9]:5080;lr;ob>\r\n"
    ));
    assert!(
        ok.ends_with("Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"),
        "{ok}"
    );
    // Stored whatever Supported says, echoed only when the UA supports it.
    let raw = raw.replace("Supported: gruu, path\r\n", "");
    let req = parse_with(&raw, tcp, &config).unwrap();
    assert!(!req.path_supported);
    assert_eq!(req.path.len(), 3);
    assert!(!ok_headers(&req, &bindings, T0).contains("Path:"));
    for bad in [
        "Path: junk\r\n",
        "Path: <sip:x;lr\r\n",
        "Path: <tel:+1>\r\n",
        "Path: ,\r\n",
    ] {
        let r = parse(&text("c1", 1, &format!("{bad}Contact: <sip:a@h>\r\n"))).unwrap_err();
        assert_eq!((r.code, r.reason), (400, "Bad Path"), "{bad}");
    }
}

#[test]
fn a_flow_path_is_stored_only_without_a_path_and_never_echoed() {
    let tcp = Received {
        transport: Transport::Tcp,
        addr: "203.0.113.7:40312".parse().unwrap(),
    };
    let config = Config::default();
    let flow = "<sip:198.51.100.1:5060;lr;sf-flow=tcp~203.0.113.7~40312~0123456789abcdef>";
    let raw = text(
        "c1",
        1,
        "Supported: path\r\nContact: <sip:a@192.168.1.2:5060;transport=tcp>\r\n",
    );
    let mut req = parse_with(&raw, tcp, &config).unwrap();
    assert_eq!(req.flow_path, None, "never read from the request");
    req.flow_path = Some(flow.to_string());
    let bindings = apply(&[], &req, T0, &config).unwrap();
    assert_eq!(bindings[0].path, [flow]);
    assert!(!ok_headers(&req, &bindings, T0).contains("Path:"));
    // A refresh over a new connection replaces it.
    let raw2 = text(
        "c1",
        2,
        "Contact: <sip:a@192.168.1.2:5060;transport=tcp>\r\n",
    );
    let mut req2 = parse_with(&raw2, tcp, &config).unwrap();
    let moved = flow.replace("40312", "40999");
    req2.flow_path = Some(moved.clone());
    let bindings = apply(&bindings, &req2, T0 + 10, &config).unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].path, [moved.as_str()]);
    // A REGISTER that came with a Path (an edge in front) keeps its own.
    let raw3 = text(
        "c1",
        3,
        "Path: <sip:edge.example.net;lr>\r\nContact: <sip:a@192.168.1.2:5060;transport=tcp>\r\n",
    );
    let mut req3 = parse_with(&raw3, tcp, &config).unwrap();
    req3.flow_path = Some(flow.to_string());
    let bindings = apply(&bindings, &req3, T0 + 20, &config).unwrap();
    assert_eq!(bindings[0].path, ["<sip:edge.example.net;lr>"]);
}

#[test]
fn expired_bindings_are_invisible_and_swept() {
    let store = MemoryStore::with_shards(4);
    let config = Config::default();
    let save = |raw: &str, now: u64| {
        let req = parse(raw).unwrap();
        store.register(&req, now, &config).unwrap()
    };
    save(
        &text(
            "c1",
            1,
            "Contact: <sip:short@h>;expires=60, <sip:long@h>\r\n",
        ),
        T0,
    )
    .unwrap();
    let bob = text("b1", 1, "Contact: <sip:bob@h>;expires=60\r\n")
        .replace("sip:Alice@example.com", "sip:bob@example.com");
    save(&bob, T0).unwrap();
    let alice = "sip:Alice@example.com";
    assert_eq!(store.get(alice, T0 + 59).unwrap().len(), 2);
    let at_60 = store.get(alice, T0 + 60).unwrap();
    assert_eq!(at_60.len(), 1);
    assert_eq!(targets(&at_60, T0 + 60)[0].contact, "sip:long@h");
    // targets() ignores expired ones in what it is given too.
    let raw_bindings = store.update(alice, |b| Ok(b.to_vec())).unwrap().unwrap();
    assert_eq!(raw_bindings.len(), 2);
    assert_eq!(targets(&raw_bindings, T0 + 60).len(), 1);
    assert!(contact_lines(&raw_bindings, T0 + 60).contains("long"));
    assert!(!contact_lines(&raw_bindings, T0 + 60).contains("short"));
    assert_eq!((store.aors(), store.contacts()), (2, 3));
    assert_eq!(store.sweep(T0 + 60), 2);
    assert_eq!((store.aors(), store.contacts()), (1, 1));
    assert_eq!(store.sweep(T0 + 60), 0);
    assert_eq!(store.sweep(T0 + 3600), 1);
    assert_eq!((store.aors(), store.contacts()), (0, 0));
    assert!(store.get(alice, T0).unwrap().is_empty());
}

#[test]
fn lookup_and_registered_by_uri() {
    let store = MemoryStore::new();
    let config = Config::default();
    let req = parse(&text(
        "c1",
        1,
        "Contact: <sip:low@h>;q=0.1, <sip:high@h>\r\n",
    ))
    .unwrap();
    store.register(&req, T0, &config).unwrap().unwrap();
    let found = lookup(&store, "sip:Alice@EXAMPLE.COM;transport=tcp", T0).unwrap();
    let uris: Vec<_> = found.iter().map(|b| b.contact.as_str()).collect();
    assert_eq!(uris, ["sip:high@h", "sip:low@h"]);
    assert!(is_registered(&store, "\"A\" <sip:Alice@example.com>;tag=1", T0).unwrap());
    assert!(!is_registered(&store, "sip:alice@example.com", T0).unwrap());
    assert!(!is_registered(&store, "sip:Alice@example.com", T0 + 3600).unwrap());
    assert!(!is_registered(&store, "tel:+1555", T0).unwrap());
    assert!(lookup(&store, "garbage", T0).unwrap().is_empty());
}

#[test]
fn aor_is_canonical() {
    let to = |uri: &str| {
        let raw = text("c1", 1, "Contact: <sip:a@h>\r\n").replace("<sip:Alice@example.com>", uri);
        parse(&raw).map(|r| r.aor)
    };
    let a = to("<sip:Alice@EXAMPLE.com:5060;transport=udp>").unwrap();
    assert_eq!(a, "sip:Alice@example.com");
    assert_eq!(to("\"Alice\" <sip:Alice@example.com>").unwrap(), a);
    assert_eq!(to("sip:Alice@Example.Com").unwrap(), a);
    assert_ne!(to("<sip:alice@example.com>").unwrap(), a);
    assert_eq!(
        to("<sip:Alice@example.com:5070>").unwrap(),
        "sip:Alice@example.com:5070"
    );
    assert_eq!(to("<tel:+15551234>").unwrap_err().code, 400);
    // What a lookup of the Request-URI computes matches what save stored.
    assert_eq!(aor_of("sip:Alice@example.com;user=phone").unwrap(), a);
}

#[test]
fn contact_lines_show_the_seconds_left() {
    let mut aor = Aor::new();
    aor.register(
        &text("c1", 1, "Contact: <sip:a@h>;q=0.25;expires=600;x=y\r\n"),
        T0,
    )
    .unwrap();
    aor.register(
        &text("c2", 1, "Contact: <sip:b@h;transport=tcp>\r\n"),
        T0 + 50,
    )
    .unwrap();
    assert_eq!(
        contact_lines(&aor.bindings, T0 + 100),
        "Contact: <sip:b@h;transport=tcp>;expires=3550\r\n\
         Contact: <sip:a@h>;expires=500;q=0.25\r\n"
    );
    assert_eq!(contact_lines(&[], T0), "");
    // A fetch (no Contact) changes nothing and lists them all.
    let before = aor.bindings.clone();
    let b = aor
        .register(&text("c1", 1, "Expires: 0\r\n"), T0 + 100)
        .unwrap();
    assert_eq!(b, before);
}

#[test]
fn malformed_registers_get_400_with_a_reason() {
    let ok = text("c1", 1, "Contact: <sip:a@h>\r\n");
    let cases: Vec<(String, &str)> = vec![
        (
            ok.replace("To: <sip:Alice@example.com>\r\n", ""),
            "Missing or Bad To",
        ),
        (
            ok.replace("To: <sip:Alice@example.com>", "To: <sip:Alice@example.com"),
            "Missing or Bad To",
        ),
        (ok.replace("Call-ID: c1\r\n", ""), "Missing Call-ID"),
        (ok.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"), "Bad CSeq"),
        (
            ok.replace("CSeq: 1 REGISTER", "CSeq: x REGISTER"),
            "Bad CSeq",
        ),
        (
            ok.replace("REGISTER sip:", "OPTIONS sip:"),
            "Not a REGISTER",
        ),
        (text("c1", 1, "Contact: <sip:a@h\r\n"), "Bad Contact"),
        (text("c1", 1, "Contact: <sip:a@h> junk\r\n"), "Bad Contact"),
        (
            text("c1", 1, "Contact: <http://h/>\r\n"),
            "Contact Is Not a SIP URI",
        ),
        (
            text("c1", 1, "Contact: <sip:a@ho st>\r\n"),
            "Contact Is Not a SIP URI",
        ),
        (text("c1", 1, "Contact:\r\n"), "Empty Contact"),
        (
            text("c1", 1, "Contact: <sip:a@h>\r\nExpires: soon\r\n"),
            "Bad Expires",
        ),
        (
            text("c1", 1, "Contact: <sip:a@h>\r\nExpires: -1\r\n"),
            "Bad Expires",
        ),
        (
            text(
                "c1",
                1,
                "Contact: <sip:a@h>\r\nExpires: 60\r\nExpires: 60\r\n",
            ),
            "More Than One Expires",
        ),
        (
            text("c1", 1, "Contact: <sip:a@h>;expires=1h\r\n"),
            "Bad Contact expires",
        ),
        (text("c1", 1, "Contact: <sip:a@h>;q=2\r\n"), "Bad Contact q"),
        (
            text(
                "c1",
                1,
                "Contact: <sip:a@h>;+sip.instance=\"\";reg-id=1\r\n",
            ),
            "Bad Contact +sip.instance",
        ),
        (
            text(
                "c1",
                1,
                "Contact: <sip:a@h>;+sip.instance=\"<x>\";reg-id=0\r\n",
            ),
            "Bad Contact reg-id",
        ),
    ];
    for (raw, reason) in cases {
        let r = parse(&raw).unwrap_err();
        assert_eq!((r.code, r.reason), (400, reason), "{raw}");
        assert!(r.headers.is_empty());
    }
}

#[test]
fn truncations_and_mutations_never_panic() {
    let full = text(
        "c1@h",
        7,
        "Path: <sip:edge.example.net;lr>\r\nSupported: path, outbound\r\n\
         Contact: \"A, B\" <sip:a@10.0.0.1:5060;transport=tcp>;q=0.5;expires=120;\
         +sip.instance=\"<urn:uuid:1>\";reg-id=1, sip:b@h;expires=0\r\n\
         m: <sip:%61@[2001:db8::1]>\r\nExpires: 600\r\nUser-Agent: x\r\n",
    );
    let config = Config::default();
    let existing = {
        let req = parse(&full).unwrap();
        apply(&[], &req, T0, &config).unwrap()
    };
    let run = |bytes: &[u8]| {
        if let Ok(msg) = Message::parse(bytes)
            && let Ok(req) = parse_register(&msg, src(), &config)
            && let Ok(b) = apply(&existing, &req, T0 + 1, &config)
        {
            let _ = contact_lines(&b, T0 + 2);
            let _ = ok_headers(&req, &b, T0 + 2);
        }
    };
    let bytes = full.as_bytes();
    for end in 0..=bytes.len() {
        run(&bytes[..end]);
    }
    for i in 0..bytes.len() {
        for c in [
            b';', b'"', b'<', b'>', b',', b'*', b'=', b'\0', 0xff, b'\n', b' ', b'%',
        ] {
            let mut m = bytes.to_vec();
            m[i] = c;
            run(&m);
            m.insert(i, c);
            run(&m);
        }
    }
}

#[test]
fn store_updates_are_atomic_per_aor() {
    let store = MemoryStore::with_shards(2);
    let config = Config {
        max_contacts: 1000,
        ..Config::default()
    };
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, config) = (&store, &config);
            s.spawn(move || {
                for i in 0..25 {
                    let raw = text(
                        &format!("t{t}"),
                        i + 1,
                        &format!("Contact: <sip:u{t}x{i}@h>\r\n"),
                    );
                    let req = parse_with(&raw, src(), config).unwrap();
                    store.register(&req, T0, config).unwrap().unwrap();
                }
            });
        }
    });
    assert_eq!(store.get("sip:Alice@example.com", T0).unwrap().len(), 100);
    assert_eq!((store.aors(), store.contacts()), (1, 100));
    // A refusal stores nothing.
    let req = parse(&text("t0", 1, "Contact: <sip:u0x0@h>;expires=0\r\n")).unwrap();
    let r = store.register(&req, T0, &config).unwrap().unwrap_err();
    assert_eq!(r.code, 500);
    assert_eq!(store.contacts(), 100);
    // put drops expired bindings; an empty put removes the AoR.
    let all = store.get("sip:Alice@example.com", T0).unwrap();
    store.put("sip:Alice@example.com", all, T0 + 3600).unwrap();
    assert_eq!(store.aors(), 0);
}

#[test]
fn async_interface_of_the_memory_store() {
    use std::task::{Context, Poll, Waker};
    fn ready<T>(mut f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        let mut cx = Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the memory store never waits"),
        }
    }
    let store = MemoryStore::new();
    let dyn_store: &dyn AsyncStore = &store;
    let config = Config::default();
    let req = parse(&text("c1", 1, "Contact: <sip:a@h>\r\n")).unwrap();
    let saved = ready(dyn_store.save(&req, T0, &config)).unwrap().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        ready(dyn_store.lookup("sip:Alice@example.com", T0)).unwrap(),
        saved
    );
    assert_eq!(ready(dyn_store.counts()).unwrap(), (1, 1));
    assert_eq!(ready(dyn_store.expire(T0 + 3600)).unwrap(), 1);
    assert_eq!(StoreError::new("down").refusal().code, 500);
}

#[test]
fn config_checks() {
    assert!(Config::default().check().is_ok());
    for bad in [
        Config {
            min_expires: 0,
            ..Config::default()
        },
        Config {
            min_expires: 4000,
            ..Config::default()
        },
        Config {
            default_expires: 30,
            ..Config::default()
        },
        Config {
            default_expires: 7200,
            ..Config::default()
        },
        Config {
            max_contacts: 0,
            ..Config::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}

/// A REGISTER for `sip:{user}@example.com` with these extra header lines.
fn text_for(user: &str, call_id: &str, cseq: u32, headers: &str) -> String {
    text(call_id, cseq, headers)
        .replace("sip:Alice@example.com", &format!("sip:{user}@example.com"))
}

/// A REGISTER of `sip:{user}@example.com` (Call-ID `user`, CSeq `cseq`)
/// with these header lines, through `store` at `now`.
fn store_register(
    store: &MemoryStore,
    config: &Config,
    (user, cseq): (&str, u32),
    headers: &str,
    now: u64,
) -> Result<Vec<Binding>, Refusal> {
    let req = parse_with(&text_for(user, user, cseq, headers), src(), config).unwrap();
    store.register(&req, now, config).unwrap()
}

#[test]
fn a_binding_keeps_only_bounded_fields() {
    let refused = |raw: &str, config: &Config| parse_with(raw, src(), config).unwrap_err();
    let config = Config::default();
    // The Contact URI: up to contact_max_size (512) bytes.
    let uri = |len: usize| format!("sip:{}@h", "a".repeat(len - "sip:@h".len()));
    assert_eq!(uri(512).len(), 512);
    let at_most = text("c1", 1, &format!("Contact: <{}>\r\n", uri(512)));
    assert!(parse(&at_most).is_ok());
    let over = text("c1", 1, &format!("Contact: <{}>\r\n", uri(513)));
    let r = refused(&over, &config);
    assert_eq!((r.code, r.reason), (400, "Contact URI Too Long"));
    let roomy = Config {
        contact_max_size: 1024,
        ..Config::default()
    };
    assert!(parse_with(&over, src(), &roomy).is_ok());
    // The AoR, the Call-ID and +sip.instance: up to MAX_FIELD bytes.
    let long = "x".repeat(MAX_FIELD);
    let r = refused(&text_for(&long, "c1", 1, ""), &config);
    assert_eq!((r.code, r.reason), (400, "Address-of-Record Too Long"));
    assert!(parse(&text(&long, 1, "")).is_ok());
    let r = refused(&text(&format!("{long}y"), 1, ""), &config);
    assert_eq!((r.code, r.reason), (400, "Call-ID Too Long"));
    let instance = |len: usize| {
        text(
            "c1",
            1,
            &format!(
                "Contact: <sip:a@h>;+sip.instance=\"<urn:{}>\"\r\n",
                "u".repeat(len - 6)
            ),
        )
    };
    assert!(parse(&instance(MAX_FIELD)).is_ok());
    let r = refused(&instance(MAX_FIELD + 1), &config);
    assert_eq!((r.code, r.reason), (400, "Contact +sip.instance Too Long"));
    // Path: up to MAX_PATH bytes in all, however many headers carry it.
    let entry = format!("<sip:{}.example.com;lr>", "p".repeat(90));
    let path = |n: usize| {
        (0..n)
            .map(|_| format!("Path: {entry}\r\n"))
            .collect::<String>()
    };
    let fits = MAX_PATH / entry.len();
    assert!(
        parse(&text(
            "c1",
            1,
            &format!("{}Contact: <sip:a@h>\r\n", path(fits))
        ))
        .is_ok()
    );
    let r = refused(
        &text(
            "c1",
            1,
            &format!("{}Contact: <sip:a@h>\r\n", path(fits + 1)),
        ),
        &config,
    );
    assert_eq!((r.code, r.reason), (400, "Path Too Long"));
    // User-Agent is only shown: a long one is cut, on a character boundary.
    let ua = format!("{}é{}", "u".repeat(MAX_USER_AGENT - 1), "v".repeat(500));
    let req = parse(&text(
        "c1",
        1,
        &format!("Contact: <sip:a@h>\r\nUser-Agent: {ua}\r\n"),
    ))
    .unwrap();
    assert_eq!(
        req.user_agent.as_deref(),
        Some("u".repeat(MAX_USER_AGENT - 1).as_str())
    );
}

#[test]
fn a_full_memory_store_refuses_new_bindings_not_refreshes_or_removals() {
    let store = MemoryStore::with_shards(4);
    let config = Config {
        max_bindings: 3,
        ..Config::default()
    };
    let register = |user: &str, cseq: u32, headers: &str, now: u64| {
        store_register(&store, &config, (user, cseq), headers, now)
    };
    for user in ["a", "b", "c"] {
        register(user, 1, "Contact: <sip:x@h>\r\n", T0).unwrap();
    }
    assert_eq!(store.contacts(), 3);
    // A new AoR, or a second contact of a stored one: 503, nothing stored.
    let r = register("d", 1, "Contact: <sip:x@h>\r\n", T0).unwrap_err();
    assert_eq!((r.code, r.reason), (503, TABLE_FULL));
    assert_eq!(r.headers, format!("Retry-After: {FULL_RETRY_AFTER}\r\n"));
    let r = register("a", 2, "Contact: <sip:x@h>, <sip:y@h>\r\n", T0).unwrap_err();
    assert_eq!(r.code, 503);
    assert_eq!((store.aors(), store.contacts()), (3, 3));
    // A refresh, a replacement and a fetch add nothing: they pass.
    register("a", 3, "Contact: <sip:x@h>;expires=600\r\n", T0).unwrap();
    register("b", 2, "Contact: <sip:x@h>;expires=0, <sip:z@h>\r\n", T0).unwrap();
    assert_eq!(register("c", 2, "", T0).unwrap().len(), 1);
    // A removal makes room.
    register("c", 3, "Contact: *\r\nExpires: 0\r\n", T0).unwrap();
    register("d", 2, "Contact: <sip:x@h>\r\n", T0).unwrap();
    assert_eq!((store.aors(), store.contacts()), (3, 3));
    // So does expiry, once swept: `a` expires at T0 + 600, the others
    // later. (A REGISTER sweeps its own shard and one more in turn; with
    // four shards, whether those hold `a` depends on the hash, so the
    // whole store is swept here.)
    assert_eq!(
        register("e", 1, "Contact: <sip:x@h>\r\n", T0 + 599)
            .unwrap_err()
            .code,
        503
    );
    store.sweep(T0 + 601);
    register("e", 2, "Contact: <sip:x@h>\r\n", T0 + 601).unwrap();
    assert_eq!(store.contacts(), 3);
}

/// [`store_register`] of `user`'s first REGISTER (CSeq 1) with the
/// default rules, which must be accepted.
fn register_first(store: &MemoryStore, user: &str, headers: &str, now: u64) {
    store_register(store, &Config::default(), (user, 1), headers, now).unwrap();
}

#[test]
fn a_register_sweeps_its_shard_of_expired_bindings_every_ten_seconds() {
    // One shard: every REGISTER lands in it.
    let store = MemoryStore::with_shards(1);
    let register = |user: &str, headers: &str, now: u64| register_first(&store, user, headers, now);
    register("a", "Contact: <sip:x@h>;expires=60\r\n", T0);
    register("b", "Contact: <sip:x@h>;expires=60\r\n", T0 + 5);
    register("c", "Contact: <sip:x@h>;expires=3600\r\n", T0 + 5);
    assert_eq!((store.aors(), store.contacts()), (3, 3));
    // `a` expired at T0 + 60: the next REGISTER frees it (the last sweep
    // was at T0), and `b`, expired at T0 + 65, only after 10 s more.
    register("d", "Contact: <sip:x@h>\r\n", T0 + 61);
    assert_eq!((store.aors(), store.contacts()), (3, 3), "a gone, d in");
    assert!(store.get("sip:a@example.com", T0 + 61).unwrap().is_empty());
    register("e", "Contact: <sip:x@h>\r\n", T0 + 66);
    assert_eq!(
        store.contacts(),
        4,
        "b expired but not swept yet: within 10 s"
    );
    register("f", "Contact: <sip:x@h>\r\n", T0 + 71);
    assert_eq!(store.contacts(), 4, "b swept, f in");
}

#[test]
fn registers_sweep_the_other_shards_in_turn() {
    // Two shards: two REGISTERs sweep both, wherever their AoRs land.
    let store = MemoryStore::with_shards(2);
    let register = |user: &str, headers: &str, now: u64| register_first(&store, user, headers, now);
    for user in ["a", "b", "c", "d", "e", "f"] {
        register(user, "Contact: <sip:x@h>;expires=60\r\n", T0);
    }
    assert_eq!(store.contacts(), 6);
    register("x", "Contact: <sip:x@h>\r\n", T0 + 100);
    register("y", "Contact: <sip:x@h>\r\n", T0 + 100);
    assert_eq!((store.aors(), store.contacts()), (2, 2));
}

#[test]
fn the_timer_sweeps_a_tenth_of_the_shards_a_call_when_no_register_comes() {
    // 20 shards: each call looks at the next 2 in turn; ten calls, one a
    // second, come round all of them.
    let store = MemoryStore::with_shards(20);
    // `count` AoRs named `prefix`N, registered at `now` for 60 s.
    let fill = |prefix: &str, count: usize, now: u64| {
        for i in 0..count {
            let brief = "Contact: <sip:x@h>;expires=60\r\n";
            register_first(&store, &format!("{prefix}{i}"), brief, now);
        }
    };
    fill("u", 200, T0);
    assert_eq!((store.aors(), store.contacts()), (200, 200));
    // Expired at T0 + 60; no REGISTER comes any more.
    let removed = store.sweep_some(T0 + 100);
    assert!(removed > 0, "the first call frees some");
    assert!(
        store.contacts() > 0,
        "two shards of twenty, not all: {removed}"
    );
    // (AoRs, bindings) after `calls` more sweeps at `now`.
    let after = |calls: usize, now: u64| {
        for _ in 0..calls {
            store.sweep_some(now);
        }
        (store.aors(), store.contacts())
    };
    assert_eq!(after(9, T0 + 100), (0, 0), "ten calls: every shard");

    // A shard swept is not swept again within 10 s: bindings that expire
    // at T0 + 105 stay until the calls from T0 + 110 on.
    fill("v", 50, T0 + 45);
    register_first(&store, "w", "Contact: <sip:x@h>;expires=3600\r\n", T0 + 45);
    assert_eq!(store.contacts(), 51);
    for _ in 0..10 {
        assert_eq!(store.sweep_some(T0 + 106), 0, "swept at T0 + 100");
    }
    assert_eq!(after(10, T0 + 111), (1, 1), "only the live one left");
    assert_eq!(store.get("sip:w@example.com", T0 + 111).unwrap().len(), 1);
}
