//! The SIP parser and validator on arbitrary bytes: never panic; the ranges
//! a parsed message reports lie inside the datagram, in order; splicing a
//! parsed message without edits, or with every header line replaced by
//! itself, gives back the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipforge_runtime::sip::{Message, NameAddr, Splice, Uri};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    assert_eq!(msg.buf(), data);
    // Never panics, whatever it decides.
    let _ = msg.validate();
    if !msg.is_request() {
        let _ = msg.validate_response();
    }

    // Ranges: inside the message, header lines in order, after the start
    // line and before the end of the header block.
    let len = msg.len();
    assert!(len <= data.len(), "message longer than the datagram");
    assert!(
        msg.headers_end() <= msg.body_start(),
        "headers end after the body starts"
    );
    assert!(msg.body_start() <= len, "body starts after the end");
    assert_eq!(msg.body().len(), len - msg.body_start());
    let start_line = msg.start_line_range();
    assert!(start_line.start <= start_line.end && start_line.end <= msg.headers_end());
    let mut at = start_line.end;
    for h in msg.headers() {
        let line = h.line_range.clone();
        assert!(
            at <= line.start && line.start < line.end,
            "header lines overlap: {line:?} after {at}"
        );
        assert!(
            line.end <= msg.headers_end(),
            "header line {line:?} past the header block"
        );
        for part in [&h.name_range, &h.value_range] {
            assert!(
                line.start <= part.start && part.start <= part.end && part.end <= line.end,
                "{part:?} outside its line {line:?}"
            );
        }
        at = line.end;
        let _ = (msg.value(h), msg.name_text(h));
    }

    // Splicing: no edit is the identity; replacing every header line (and
    // the start line) by its own bytes too.
    assert_eq!(
        Splice::new().to_vec(msg.buf()),
        data,
        "an empty splice changed the message"
    );
    let mut same = Splice::new();
    same.replace(start_line.clone(), &data[start_line.clone()]);
    for h in msg.headers() {
        same.replace(h.line_range.clone(), &data[h.line_range.clone()]);
    }
    same.insert(msg.headers_end(), b"");
    assert_eq!(
        same.to_vec(data),
        data,
        "a splice of identical edits changed the message"
    );

    // The accessors the proxy uses on every message.
    let _ = (
        msg.method(),
        msg.request_uri(),
        msg.status(),
        msg.reason(),
        msg.version(),
    );
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.max_forwards(),
        msg.content_length(),
    );
    let _ = (msg.from(), msg.to(), msg.top_via(), msg.top_via_removal());
    for via in msg.vias() {
        let _ = via.has_magic_cookie();
    }
    if let Some(uri) = msg.request_uri() {
        let _ = Uri::parse(uri);
    }
    for h in msg.headers() {
        let value = msg.value(h);
        let _ = NameAddr::parse(value);
        let _ = Uri::parse(value);
    }
});
