//! The NAT detection table, the Contact fix and the marker round trip.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A request with one Via (`via` is its sent-by and params) and the
/// Contact lines given (each `Contact: ...\r\n`).
fn request(via: &str, contacts: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-nat\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: nat-test\r\n\
         CSeq: 1 INVITE\r\n\
         {contacts}\
         Content-Length: 0\r\n\r\n"
    )
}

/// A response with our Via on top, the caller's below, and `extra` lines.
fn response(extra: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKsf-ours\r\n\
         Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK-caller\r\n\
         From: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:bob@example.com>;tag=b\r\n\
         Call-ID: nat-test\r\n\
         CSeq: 1 INVITE\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}

fn judge(text: &str, source: &str) -> Option<NatSign> {
    let msg = Message::parse(text.as_bytes()).unwrap();
    let path = if msg.is_request() {
        request_path(&msg)
    } else {
        response_path(&msg, |h, _| h == "198.51.100.1")
    };
    behind_nat(&msg, addr(source), path)
}

#[test]
fn private_ranges() {
    for ip in [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.10",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.10.20",
        "fd00::1",
        "fc00::1",
        "fe80::1",
        "febf::1",
        "::ffff:192.168.1.10",
        "::ffff:100.64.1.1",
    ] {
        assert!(is_private(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "172.15.255.255",
        "172.32.0.1",
        "192.169.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "169.253.0.1",
        "11.0.0.1",
        "127.0.0.1",
        "198.51.100.7",
        "2001:db8::1",
        "fec0::1",
        "::1",
        "::ffff:198.51.100.7",
    ] {
        assert!(!is_private(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn detection_table() {
    let src = "203.0.113.7:40312";
    let contact = |c: &str| format!("Contact: <{c}>\r\n");
    // (via sent-by and params, Contact lines, source, expected)
    let cases: Vec<(&str, String, &str, Option<NatSign>)> = vec![
        // Nothing says NAT: the Via and the Contact name the source.
        (
            "203.0.113.7:40312",
            contact("sip:alice@203.0.113.7:40312"),
            src,
            None,
        ),
        // No Contact at all: only the Via counts.
        ("203.0.113.7:40312", String::new(), src, None),
        // Private ranges in the Via (flag 4).
        (
            "192.168.1.10:5060",
            contact("sip:alice@192.168.1.10:5060"),
            src,
            Some(NatSign::ViaPrivate),
        ),
        (
            "100.64.3.4:5060",
            String::new(),
            src,
            Some(NatSign::ViaPrivate),
        ),
        (
            "[fe80::1]:5060",
            String::new(),
            "[2001:db8::7]:5060",
            Some(NatSign::ViaPrivate),
        ),
        // Via address other than the source (flag 2): received/rport the
        // sender wrote itself do not count.
        (
            "198.51.100.9:40312;received=203.0.113.7;rport=40312",
            String::new(),
            src,
            Some(NatSign::ViaAddress),
        ),
        // A name in the Via is not the source address (RFC 3261 §18.2.1).
        (
            "pc.example.com:40312",
            String::new(),
            src,
            Some(NatSign::ViaAddress),
        ),
        (
            "df7jal23ls0d.invalid",
            String::new(),
            src,
            Some(NatSign::ViaAddress),
        ),
        // Via port other than the source port (flag 16); no port is 5060.
        (
            "203.0.113.7:5060;rport",
            String::new(),
            src,
            Some(NatSign::ViaPort),
        ),
        ("203.0.113.7", String::new(), src, Some(NatSign::ViaPort)),
        ("203.0.113.7", String::new(), "203.0.113.7:5060", None),
        // Contact private while the Via looks public (flag 1).
        (
            "203.0.113.7:40312",
            contact("sip:alice@10.1.2.3:5060"),
            src,
            Some(NatSign::ContactPrivate),
        ),
        (
            "203.0.113.7:40312",
            contact("sip:alice@169.254.0.9"),
            src,
            Some(NatSign::ContactPrivate),
        ),
        (
            "[2001:db8::7]:5060",
            contact("sip:alice@[fd12:3456::1]:5060"),
            "[2001:db8::7]:5060",
            Some(NatSign::ContactPrivate),
        ),
        // Contact address or port other than the source (flag 128).
        (
            "203.0.113.7:40312",
            contact("sip:alice@198.51.100.3:40312"),
            src,
            Some(NatSign::ContactAddress),
        ),
        (
            "203.0.113.7:40312",
            contact("sip:alice@203.0.113.7:5060"),
            src,
            Some(NatSign::ContactPort),
        ),
        (
            "203.0.113.7:40312",
            contact("sip:alice@203.0.113.7"),
            src,
            Some(NatSign::ContactPort),
        ),
        (
            "203.0.113.7:40312",
            contact("sip:alice@abc123.invalid;transport=ws"),
            src,
            Some(NatSign::ContactAddress),
        ),
        // A name in the Contact is not looked up; its port still counts.
        (
            "203.0.113.7:40312",
            contact("sip:alice@pc.example.com:40312"),
            src,
            None,
        ),
        // sips: (and ;transport=tls) means 5061.
        (
            "203.0.113.7:5061",
            contact("sips:alice@203.0.113.7"),
            "203.0.113.7:5061",
            None,
        ),
        (
            "203.0.113.7:5061",
            contact("sip:alice@203.0.113.7;transport=tls"),
            "203.0.113.7:5060",
            Some(NatSign::ViaPort),
        ),
        (
            "203.0.113.7:5060",
            contact("sips:alice@203.0.113.7"),
            "203.0.113.7:5060",
            Some(NatSign::ContactPort),
        ),
        // IPv6 in brackets, and IPv4-mapped sources.
        (
            "[2001:db8::7]:5070",
            contact("sip:alice@[2001:db8::7]:5070"),
            "[2001:db8::7]:5070",
            None,
        ),
        (
            "[2001:db8::7]:5070",
            contact("sip:alice@[2001:db8::8]:5070"),
            "[2001:db8::7]:5070",
            Some(NatSign::ContactAddress),
        ),
        (
            "203.0.113.7:40312",
            contact("sip:alice@203.0.113.7:40312"),
            "[::ffff:203.0.113.7]:40312",
            None,
        ),
        // A tel: Contact or a `*` says nothing.
        ("203.0.113.7:40312", contact("tel:+15551234"), src, None),
        ("203.0.113.7:40312", "Contact: *\r\n".into(), src, None),
    ];
    for (via, contacts, source, expected) in cases {
        let text = request(via, &contacts);
        assert_eq!(
            judge(&text, source),
            expected,
            "Via {via}, {contacts:?} from {source}"
        );
    }
}

#[test]
fn a_contact_behind_another_proxy_is_only_checked_for_private_addresses() {
    // Two Vias: the request came through a proxy at 198.51.100.20.
    let text = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-p\r\n\
        Via: SIP/2.0/UDP 203.0.113.7:40312;received=203.0.113.7;branch=z9hG4bK-a\r\n\
        From: <sip:alice@example.com>;tag=a\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: x\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:alice@203.0.113.7:40312>\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(judge(text, "198.51.100.20:5060"), None);
    let private = text.replace("203.0.113.7:40312>", "192.168.0.5:5060>");
    assert_eq!(
        judge(&private, "198.51.100.20:5060"),
        Some(NatSign::ContactPrivate)
    );
}

#[test]
fn responses_are_judged_by_their_contact() {
    let src = "203.0.113.7:40312";
    assert_eq!(
        judge(&response("Contact: <sip:bob@192.168.1.10:5060>\r\n"), src),
        Some(NatSign::ContactPrivate)
    );
    assert_eq!(
        judge(&response("Contact: <sip:bob@203.0.113.7:40312>\r\n"), src),
        None
    );
    assert_eq!(
        judge(&response("Contact: <sip:bob@203.0.113.7:5060>\r\n"), src),
        Some(NatSign::ContactPort)
    );
    // No Contact: nothing to tell (the Vias are not the responder's).
    assert_eq!(judge(&response(""), src), None);
    // Our Record-Route on top: straight from the responder.
    assert_eq!(
        judge(
            &response("Record-Route: <sip:198.51.100.1;lr>\r\nContact: <sip:bob@198.51.100.3>\r\n"),
            src
        ),
        Some(NatSign::ContactAddress)
    );
    // Another proxy's on top: it relayed the response; only private counts.
    let relayed = "Record-Route: <sip:198.51.100.99;lr>, <sip:198.51.100.1;lr>\r\n";
    assert_eq!(
        judge(
            &response(&format!("{relayed}Contact: <sip:bob@198.51.100.3>\r\n")),
            src
        ),
        None
    );
    assert_eq!(
        judge(
            &response(&format!("{relayed}Contact: <sip:bob@10.0.0.3>\r\n")),
            src
        ),
        Some(NatSign::ContactPrivate)
    );
}

fn fix(text: &str, source: &str, transport: Transport) -> Result<String, Unfixed> {
    let msg = Message::parse(text.as_bytes()).unwrap();
    let fix = fix_contact(&msg, addr(source), transport)?;
    let mut splice = crate::sip::Splice::new();
    splice.replace(fix.range.clone(), fix.text.as_bytes());
    assert!(fix.line.start <= fix.range.start && fix.range.end <= fix.line.end);
    let out = String::from_utf8(splice.to_vec(text.as_bytes())).unwrap();
    let fixed = Message::parse(out.as_bytes()).unwrap();
    let h = fixed.first(HeaderName::Contact).unwrap();
    Ok(fixed.value(h).to_string())
}

#[test]
fn the_contact_is_rewritten_to_the_source_with_the_marker() {
    let via = "192.168.1.10:5060";
    let src = "203.0.113.7:40312";
    let cases = [
        (
            "Contact: <sip:phone@192.168.1.10:5060>\r\n",
            "<sip:phone@203.0.113.7:40312;sfnat=192.168.1.10~5060~udp>",
        ),
        (
            "Contact: \"Phone\" <sip:phone@192.168.1.10;transport=udp;ob>;+sip.instance=\"<urn:uuid:1>\"\r\n",
            "\"Phone\" <sip:phone@203.0.113.7:40312;transport=udp;ob;sfnat=192.168.1.10~~udp>;+sip.instance=\"<urn:uuid:1>\"",
        ),
        // A bare addr-spec gets brackets: the marker must be a URI parameter.
        (
            "Contact: sip:phone@192.168.1.10:5062;expires=60\r\n",
            "<sip:phone@203.0.113.7:40312;sfnat=192.168.1.10~5062~udp>;expires=60",
        ),
        (
            "m: <sip:192.168.1.10:5060>\r\n",
            "<sip:203.0.113.7:40312;sfnat=192.168.1.10~5060~udp>",
        ),
        (
            "Contact: <sip:phone@[fe80::1]:5060?Subject=x>\r\n",
            "<sip:phone@203.0.113.7:40312;sfnat=[fe80::1]~5060~udp?Subject=x>",
        ),
    ];
    for (contact, expected) in cases {
        let text = request(via, contact);
        assert_eq!(fix(&text, src, Transport::Udp).as_deref(), Ok(expected));
    }
    // An IPv6 source, over TCP.
    let text = request(via, "Contact: <sips:phone@192.168.1.10>\r\n");
    assert_eq!(
        fix(&text, "[2001:db8::7]:50000", Transport::Tls).as_deref(),
        Ok("<sips:phone@[2001:db8::7]:50000;sfnat=192.168.1.10~~tls>")
    );
}

#[test]
fn what_fix_contact_leaves_alone() {
    let src = "203.0.113.7:40312";
    let via = "192.168.1.10:5060";
    for (contacts, why) in [
        ("", Unfixed::NoContact),
        ("Contact: *\r\n", Unfixed::Star),
        (
            "Contact: <sip:a@10.0.0.1>, <sip:a@10.0.0.2>\r\n",
            Unfixed::Several,
        ),
        (
            "Contact: <sip:a@10.0.0.1>\r\nContact: <sip:a@10.0.0.2>\r\n",
            Unfixed::Several,
        ),
        ("Contact: <tel:+15551234>\r\n", Unfixed::NotSip),
        ("Contact: <sip:a@>\r\n", Unfixed::NotSip),
        (
            "Contact: <sip:a@203.0.113.9:5000;sfnat=10.0.0.1~5060~udp>\r\n",
            Unfixed::AlreadyMarked,
        ),
        (
            "Contact: <sip:a@203.0.113.7:40312>\r\n",
            Unfixed::AlreadyReachable,
        ),
    ] {
        let text = request(via, contacts);
        assert_eq!(fix(&text, src, Transport::Udp), Err(why), "{contacts:?}");
    }
}

#[test]
fn the_marker_round_trips() {
    let src = "203.0.113.7:40312";
    for (original, transport, binding) in [
        (
            "sip:phone@192.168.1.10:5060",
            Transport::Udp,
            "sip:203.0.113.7:40312;transport=udp",
        ),
        (
            "sip:phone@192.168.1.10;transport=tcp;ob",
            Transport::Tcp,
            "sip:203.0.113.7:40312;transport=tcp;sf-conn",
        ),
        (
            "sip:[fe80::1]:5080;lr",
            Transport::Udp,
            "sip:203.0.113.7:40312;transport=udp",
        ),
        (
            "sip:a@x.invalid;transport=ws",
            Transport::Ws,
            "sip:203.0.113.7:40312;transport=ws;sf-conn",
        ),
        (
            "sips:phone@10.0.0.9:5061?Subject=hi",
            Transport::Tls,
            "sip:203.0.113.7:40312;transport=tls;sf-conn",
        ),
    ] {
        let text = request("192.168.1.10", &format!("Contact: <{original}>\r\n"));
        let fixed = fix(&text, src, transport).unwrap();
        let fixed_uri = fixed.trim_start_matches('<').trim_end_matches('>');
        let back = restore(fixed_uri).unwrap_or_else(|| panic!("{fixed_uri}"));
        assert_eq!(back.ruri, original, "{fixed_uri}");
        assert_eq!(back.du, binding, "{fixed_uri}");
    }
    // An IPv6 binding.
    let text = request("192.168.1.10", "Contact: <sip:p@192.168.1.10:5060>\r\n");
    let fixed = fix(&text, "[2001:db8::7]:5060", Transport::Udp).unwrap();
    let back = restore(fixed.trim_matches(['<', '>'])).unwrap();
    assert_eq!(back.ruri, "sip:p@192.168.1.10:5060");
    assert_eq!(back.du, "sip:[2001:db8::7]:5060;transport=udp");
}

#[test]
fn a_marker_that_is_not_well_formed_is_left_alone() {
    for ruri in [
        "sip:phone@203.0.113.7:40312",
        "sip:phone@203.0.113.7:40312;sfnat",
        "sip:phone@203.0.113.7:40312;sfnat=",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~5060",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~5060~udp~x",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~99999~udp",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~0~udp",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~+5~udp",
        "sip:phone@203.0.113.7:40312;sfnat=10.0.0.1~5060~sctp",
        "sip:phone@203.0.113.7:40312;sfnat=~5060~udp",
        "sip:phone@203.0.113.7:40312;sfnat=a%40b~5060~udp",
        "sip:phone@203.0.113.7:40312;sfnat=a:b~5060~udp",
        // The binding must be an address, not a name.
        "sip:phone@proxy.example.com;sfnat=10.0.0.1~5060~udp",
        "tel:+1555;sfnat=10.0.0.1~5060~udp",
    ] {
        assert_eq!(restore(ruri), None, "{ruri}");
    }
    // Case does not matter for the name; other parameters stay in order.
    let back = restore("sip:p@203.0.113.7:1;a=1;SFNAT=10.0.0.1~~udp;lr").unwrap();
    assert_eq!(back.ruri, "sip:p@10.0.0.1;a=1;lr");
    assert_eq!(back.du, "sip:203.0.113.7:1;transport=udp");
}
