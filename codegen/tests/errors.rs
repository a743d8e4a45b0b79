//! One test per build-time error class: exact `file:line:column` and message.

use sipforge_codegen::{Diagnostic, compile, compile_file};

fn errors(text: &str) -> Vec<String> {
    match compile("routes.yaml", text) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.short("routes.yaml"))
            .collect(),
    }
}

/// Exactly one error, equal to `expected`.
#[track_caller]
fn one(text: &str, expected: &str) {
    let e = errors(text);
    assert_eq!(e, vec![expected.to_string()], "for:\n{text}");
}

fn diag(text: &str) -> Diagnostic {
    compile("routes.yaml", text)
        .unwrap_err()
        .into_iter()
        .find(Diagnostic::is_error)
        .unwrap()
}

#[test]
fn yaml_syntax() {
    let e = errors("request:\n  - log: \"unclosed\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("routes.yaml:2:10: YAML syntax error: "),
        "{e:?}"
    );
}

#[test]
fn unknown_top_level_key() {
    one(
        "request: [ forward ]\nrequests: []\n",
        "routes.yaml:2:1: unknown key `requests`",
    );
    assert_eq!(
        diag("request: [ forward ]\nrequests: []\n").hint.as_deref(),
        Some("did you mean `request`?")
    );
}

#[test]
fn duplicate_key() {
    one(
        "request: [ forward ]\nreply: [ drop ]\nreply: [ drop ]\n",
        "routes.yaml:3:1: duplicate key `reply`",
    );
}

#[test]
fn unknown_action() {
    one(
        "request:\n  - fwd: sip:a.example\n",
        "routes.yaml:2:5: unknown action `fwd`",
    );
    one(
        "request:\n  - frobnicate\n",
        "routes.yaml:2:5: unknown action `frobnicate`",
    );
}

#[test]
fn unknown_variable() {
    one(
        "request:\n  - log: \"x $xx\"\n  - drop\n",
        "routes.yaml:2:13: unknown variable `$xx`",
    );
    one(
        "request:\n  - if: $foo == 1\n    then: [ drop ]\n",
        "routes.yaml:2:9: unknown variable `$foo`",
    );
}

#[test]
fn lone_dollar() {
    one(
        "request:\n  - log: \"costs 5 $ total\"\n",
        "routes.yaml:2:19: lone `$` in a template",
    );
    assert_eq!(
        diag("request:\n  - log: \"5 $\"\n").hint.as_deref(),
        Some("write `$$` for a literal dollar sign")
    );
}

#[test]
fn unknown_destination_set() {
    one(
        "request:\n  - relay: backend\n",
        "routes.yaml:2:12: unknown destination set `backend`",
    );
}

#[test]
fn unknown_route() {
    one(
        "request:\n  - route: auth\n",
        "routes.yaml:2:12: unknown route `auth`",
    );
}

#[test]
fn request_missing() {
    one(
        "reply: [ drop ]\n",
        "routes.yaml:1:1: the routes file has no `request:` section",
    );
}

#[test]
fn variable_without_meaning() {
    one(
        "request:\n  - log: \"status $rs\"\n",
        "routes.yaml:2:18: `$rs` has no meaning in `request`",
    );
    one(
        "request: [ { route: r } ]\nroutes:\n  r: [ { log: \"$rr\" } ]\n",
        "routes.yaml:3:16: `$rr` has no meaning in route `r` (called from `request`)",
    );
}

#[test]
fn read_only_variable() {
    one(
        "request:\n  - set: { $fu: \"sip:x@y\" }\n",
        "routes.yaml:2:12: `$fu` is read-only",
    );
    one(
        "request: [ drop ]\nreply:\n  - set: { $ru: \"sip:a.example\" }\n",
        "routes.yaml:3:5: `set` cannot be used in `reply`",
    );
}

#[test]
fn type_mismatch() {
    one(
        "request: [ drop ]\nreply:\n  - if: $rs == \"abc\"\n    then: [ drop ]\n",
        "routes.yaml:3:16: type mismatch: `$rs` is an integer but \"abc\" is text",
    );
    one(
        "request:\n  - if: $rm > 3\n    then: [ drop ]\n",
        "routes.yaml:2:15: type mismatch: `$rm` is text but `3` is an integer",
    );
    one(
        "request:\n  - if: $rU == FOO\n    then: [ drop ]\n",
        "routes.yaml:2:16: bare word `FOO`",
    );
}

#[test]
fn routing_in_reply() {
    let t = "request: [ drop ]\nreply:\n  - forward\n";
    one(t, "routes.yaml:3:5: `forward` cannot be used in `reply`");
    assert!(
        diag(t)
            .hint
            .unwrap()
            .contains("use `failure:` with `relay`")
    );
    one(
        "request: [ drop ]\nreply:\n  - relay\n",
        "routes.yaml:3:5: `relay` cannot be used in `reply`",
    );
    one(
        "request: [ drop ]\nreply:\n  - reply: 404\n",
        "routes.yaml:3:5: `reply` cannot be used in `reply`",
    );
}

#[test]
fn forward_in_failure() {
    let t = "request: [ relay ]\nfailure:\n  - forward\n";
    one(t, "routes.yaml:3:5: `forward` cannot be used in `failure`");
    assert!(diag(t).hint.unwrap().contains("relay"));
}

#[test]
fn invalid_regex() {
    one(
        "request:\n  - if: $ru =~ \"(a\"\n    then: [ drop ]\n",
        "routes.yaml:2:16: invalid regular expression: unclosed group",
    );
}

#[test]
fn invalid_uri() {
    one(
        "request:\n  - forward: http://a.example\n",
        "routes.yaml:2:14: invalid URI `http://a.example`: a URI starts with `sip:` or `sips:`",
    );
    one(
        "request:\n  - relay: sip:a.example:70000\n",
        "routes.yaml:2:12: invalid URI `sip:a.example:70000`: `70000` is not a port (1 to 65535)",
    );
    one(
        "request:\n  - forward: \"sip:\"\n",
        "routes.yaml:2:15: invalid URI `sip:`: the host is missing",
    );
}

#[test]
fn invalid_set_values() {
    one(
        "request:\n  - set: { $ru: \"sip:b@a.example?Route=x\" }\n  - forward\n",
        "routes.yaml:2:12: invalid value for `$ru`: a Request-URI or next hop cannot carry `?headers`",
    );
    one(
        "request:\n  - set: { $du: \"tel:+15551234\" }\n  - forward\n",
        "routes.yaml:2:12: invalid value for `$du`: a URI starts with `sip:` or `sips:`",
    );
    one(
        "request:\n  - set: { $rd: \"a.example:5070\" }\n  - forward\n",
        "routes.yaml:2:12: invalid value for `$rd`: `a.example:5070` is not a host name or IP address (a port goes into `$rp`)",
    );
    one(
        "request:\n  - set: { $rd: \"[::1\" }\n  - forward\n",
        "routes.yaml:2:12: invalid value for `$rd`: `[::1` is not a host name or IP address (a port goes into `$rp`)",
    );
}

#[test]
fn invalid_listen_and_advertise() {
    one(
        "listen: [ \"tls:127.0.0.1:5061\" ]\nrequest: [ drop ]\n",
        "routes.yaml:1:12: a `tls:` or `wss:` socket needs a `tls:` block",
    );
    one(
        "listen: [ \"wss:127.0.0.1:8443\" ]\nrequest: [ drop ]\n",
        "routes.yaml:1:12: a `tls:` or `wss:` socket needs a `tls:` block",
    );
    assert!(
        errors("listen: [ \"wss:127.0.0.1:8443\" ]\ntls: { certificate: /c.pem, key: /k.pem }\nrequest: [ drop ]\n")
            .is_empty()
    );
    assert!(errors("listen: [ \"ws:127.0.0.1:8080\" ]\nrequest: [ drop ]\n").is_empty());
    one(
        "listen: [ \"udp:localhost:5060\" ]\nrequest: [ drop ]\n",
        "routes.yaml:1:12: invalid listen socket: `localhost:5060` is not an IP address and port",
    );
    one(
        "advertise: \"proxy example:5060\"\nrequest: [ drop ]\n",
        "routes.yaml:1:13: invalid advertise address: `proxy example` is not a host name or IPv4 address",
    );
    one(
        "advertise: proxy.example.com:0\nrequest: [ drop ]\n",
        "routes.yaml:1:12: invalid advertise address: `0` is not a port (1 to 65535)",
    );
}

#[test]
fn invalid_header_names() {
    one(
        "request:\n  - append_header: \"X Bad: 1\"\n",
        "routes.yaml:2:21: `X Bad` is not a valid header name",
    );
    one(
        "request:\n  - remove_header: \"X:Y\"\n",
        "routes.yaml:2:21: `X:Y` is not a valid header name",
    );
    one(
        "request:\n  - log: \"$hdr(A B)\"\n",
        "routes.yaml:2:11: `A B` is not a valid header name",
    );
    one(
        "request:\n  - reply: { code: 404, headers: [\"Bad@: x\"] }\n",
        "routes.yaml:2:36: `Bad@` is not a valid header name",
    );
}

#[test]
fn crlf_in_header_value() {
    one(
        "request:\n  - append_header: \"X-A: one\\r\\nX-B: two\"\n  - drop\n",
        "routes.yaml:2:21: a header value cannot contain CR or LF",
    );
}

#[test]
fn reply_codes() {
    one(
        "request:\n  - reply: 99\n",
        "routes.yaml:2:12: invalid reply code 99",
    );
    one(
        "request:\n  - reply: 700\n",
        "routes.yaml:2:12: invalid reply code 700",
    );
    let t = "request:\n  - reply: 100\n";
    one(t, "routes.yaml:2:12: `reply: 100` is not allowed");
    assert!(diag(t).hint.unwrap().contains("180-199"));
    assert!(errors("request:\n  - reply: 183\n").is_empty());
}

#[test]
fn unreachable_steps() {
    one(
        "request:\n  - forward\n  - log: \"x\"\n",
        "routes.yaml:3:5: unreachable step",
    );
    one(
        "request:\n  - if: in_dialog\n    then: [ relay ]\n    else: [ drop ]\n  - log: \"x\"\n",
        "routes.yaml:5:5: unreachable step",
    );
    one(
        "request:\n  - switch: $rm\n    cases:\n      INVITE: [ relay ]\n    default: [ exit ]\n  - drop\n",
        "routes.yaml:6:5: unreachable step",
    );
}

#[test]
fn route_loops() {
    one(
        "request: [ { route: a } ]\nroutes:\n  a: [ { route: b } ]\n  b: [ { route: a } ]\n",
        "routes.yaml:4:17: named routes call each other in a loop: `a` -> `b` -> `a`",
    );
    one(
        "request: [ { route: a } ]\nroutes:\n  a: [ { route: a } ]\n",
        "routes.yaml:3:17: named routes call each other in a loop: `a` -> `a`",
    );
}

#[test]
fn destinations() {
    let base = "request: [ { relay: s } ]\ndestinations:\n  s:\n";
    one(
        &format!("{base}    algorithm: random\n    targets: [ sip:a.example ]\n"),
        "routes.yaml:4:16: unknown algorithm `random`",
    );
    one(
        &format!("{base}    algorithm: weighted\n    targets: []\n"),
        "routes.yaml:5:14: destination set `s` has no targets",
    );
    one(
        &format!("{base}    algorithm: weighted\n"),
        "routes.yaml:3:3: destination set `s` has no `targets`",
    );
    one(
        &format!("{base}    targets: [ {{ uri: sip:a.example, weight: 0 }} ]\n"),
        "routes.yaml:4:46: a weight must be a positive integer",
    );
    one(
        &format!("{base}    targets: [ \"sip:a b\" ]\n"),
        "routes.yaml:4:17: invalid target URI: a URI cannot contain spaces or control characters",
    );
    one(
        &format!("{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 10 }}\n"),
        "routes.yaml:5:24: invalid interval `10`",
    );
    assert!(
        errors(&format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 500ms }}\n"
        ))
        .is_empty()
    );
    assert!(
        errors(&format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 5s, timeout: 2s, failures: 5, successes: 1 }}\n"
        ))
        .is_empty()
    );
    one(
        &format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 1s, timeout: 2s }}\n"
        ),
        "routes.yaml:5:37: the probe timeout is longer than the probe interval",
    );
    one(
        &format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 1s, failures: 0 }}\n"
        ),
        "routes.yaml:5:38: `failures` must be a whole number from 1 to 1000",
    );
    one(
        &format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 1s, successes: two }}\n"
        ),
        "routes.yaml:5:39: `successes` must be a whole number from 1 to 1000",
    );
    one(
        &format!(
            "{base}    targets: [ sip:a.example ]\n    probe: {{ interval: 1s, retries: 2 }}\n"
        ),
        "routes.yaml:5:28: unknown key `retries`",
    );
    one(
        &format!("{base}    targets: [ sip:a.example ]\n    probe: {{ timeout: 1s }}\n"),
        "routes.yaml:5:12: `probe` needs an `interval`",
    );
    one(
        &format!("{base}    targets: [ sip:a.example, \"sip:A.example\" ]\n"),
        "routes.yaml:4:32: target `sip:A.example` is listed twice in destination set `s`",
    );
}

#[test]
fn switch_cases() {
    one(
        "request: [ drop ]\nreply:\n  - switch: $rs\n    cases:\n      5xx: [ drop ]\n      503: [ drop ]\n",
        "routes.yaml:6:7: unreachable case",
    );
    one(
        "request:\n  - switch: $rm\n    cases:\n      5xx: [ drop ]\n",
        "routes.yaml:4:7: status class cases need an integer variable, and `$rm` is text",
    );
}

#[test]
fn condition_syntax() {
    one(
        "request:\n  - if: $rm == \"INVITE\" and\n    then: [ drop ]\n",
        "routes.yaml:2:28: expected a condition, found the end of the condition",
    );
    one(
        "request:\n  - if: $rU\n    then: [ drop ]\n",
        "routes.yaml:2:9: `$rU` is not a condition",
    );
}

#[test]
fn unused_route_is_a_warning() {
    let out = compile_file(
        "routes.yaml",
        "request: [ drop ]\nroutes:\n  spare: [ exit ]\n",
    );
    assert!(out.code.is_some());
    let w: Vec<_> = out.warnings().map(|d| d.short("routes.yaml")).collect();
    assert_eq!(w, vec!["routes.yaml:3:3: route `spare` is never used"]);
}

#[test]
fn reports_every_error_at_once() {
    let text = "\
listen: [ \"tls:127.0.0.1:5061\" ]
bogus: 1
request:
  - log: \"$nope\"
  - if: $rm > 3
    then: [ { relay: nowhere } ]
  - forward
  - drop
reply:
  - forward
";
    assert_eq!(
        errors(text),
        vec![
            "routes.yaml:1:12: a `tls:` or `wss:` socket needs a `tls:` block",
            "routes.yaml:2:1: unknown key `bogus`",
            "routes.yaml:4:11: unknown variable `$nope`",
            "routes.yaml:5:15: type mismatch: `$rm` is text but `3` is an integer",
            "routes.yaml:6:22: unknown destination set `nowhere`",
            "routes.yaml:8:5: unreachable step",
            "routes.yaml:10:5: `forward` cannot be used in `reply`",
        ]
    );
}

#[test]
fn transaction_bounds_settings() {
    one(
        "max_branches: 0\nrequest: [ relay ]\n",
        "routes.yaml:1:15: `max_branches` must be a whole number from 1 to 64",
    );
    one(
        "max_branches: many\nrequest: [ relay ]\n",
        "routes.yaml:1:15: `max_branches` must be a whole number from 1 to 64",
    );
    one(
        "strict_response_source: maybe\nrequest: [ relay ]\n",
        "routes.yaml:1:25: expected `true` or `false`, found a string",
    );
    assert!(
        errors("max_branches: 64\nstrict_response_source: false\nrequest: [ relay ]\n").is_empty()
    );
}

#[test]
fn authentication_settings_and_step() {
    assert!(
        errors(
            "auth:\n  realm: \"$fd\"\n  credentials: /etc/sipforge/users\n  algorithms: [SHA-256, MD5]\n  nonce_ttl: 300s\nrequest:\n  - authenticate\n  - log: \"user $au\"\n  - relay\n"
        )
        .is_empty()
    );
    // Without an `auth:` block the defaults apply (credentials from --credentials).
    assert!(errors("request: [ authenticate, relay ]\n").is_empty());
    one(
        "auth: { algorithms: [SHA-256, SHA-1] }\nrequest: [ relay ]\n",
        "routes.yaml:1:31: unknown digest algorithm `SHA-1`",
    );
    one(
        "auth: { algorithms: [MD5, md5] }\nrequest: [ relay ]\n",
        "routes.yaml:1:27: `md5` is listed twice",
    );
    one(
        "auth: { realm: \"$rs\" }\nrequest: [ relay ]\n",
        "routes.yaml:1:17: `$rs` has no meaning in `request`",
    );
    one(
        "auth: { nonce: 5 }\nrequest: [ relay ]\n",
        "routes.yaml:1:9: unknown key `nonce`",
    );
    one(
        "request: [ relay ]\nreply: [ authenticate ]\n",
        "routes.yaml:2:10: `authenticate` cannot be used in `reply`",
    );
    one(
        "request: [ relay ]\nfailure: [ authenticate, relay ]\n",
        "routes.yaml:2:12: `authenticate` cannot be used in `failure`",
    );
    one(
        "request: [ { authenticate: yes }, relay ]\n",
        "routes.yaml:1:28: `authenticate` takes no value",
    );
}

#[test]
fn limits_and_network_lists() {
    assert!(
        errors(
            "limits:\n  per_source: { requests: 50, per: 1s, ban: 60s }\n  trusted: [ 10.0.0.0/8, \"192.0.2.1\", \"2001:db8::/32\" ]\nrequest:\n  - if: $si in [127.0.0.1, 10.0.0.0/8, \"::1\", fe80::/10]\n    then: [ relay ]\n  - if: not ($si in [\"192.168.0.0/16\"])\n    then: [ drop ]\n  - relay\n"
        )
        .is_empty()
    );
    one(
        "limits:\n  trusted: [ 10.1.0.0/8 ]\nrequest: [ relay ]\n",
        "routes.yaml:2:14: invalid trusted network: `10.1.0.0/8` has host bits set; the network is `10.0.0.0/8`",
    );
    one(
        "limits: { per_source: { requests: 50, per: 1s } }\nrequest: [ relay ]\n",
        "routes.yaml:1:23: `per_source` needs `requests`, `per` and `ban`",
    );
    one(
        "limits: { per_source: { requests: 0, per: 1s, ban: 1m } }\nrequest: [ relay ]\n",
        "routes.yaml:1:35: `requests` must be a whole number from 1 to 1000000",
    );
    one(
        "limits: { per_source: { requests: 5, per: 1s, ban: 1m, ipv6_prefix: 129 } }\nrequest: [ relay ]\n",
        "routes.yaml:1:69: `ipv6_prefix` must be a prefix length from 1 to 128",
    );
    assert!(
        errors("limits: { per_source: { requests: 5, per: 1s, ban: 1m, ipv6_prefix: 48 } }\nrequest: [ relay ]\n")
            .is_empty()
    );
    one(
        "request:\n  - if: $si in [10.0.0.0/8, \"office\"]\n    then: [ relay ]\n  - drop\n",
        "routes.yaml:2:29: invalid network in the list: `office` is not an IP address or network",
    );
    one(
        "request:\n  - if: $si in [10.0.0.0/33]\n    then: [ relay ]\n  - drop\n",
        "routes.yaml:2:17: invalid network in the list: `/33` is not a prefix length from 0 to 32",
    );
    one(
        "request:\n  - if: $sp in [10.0.0.1]\n    then: [ relay ]\n  - drop\n",
        "routes.yaml:2:9: a network list tests an address, and `$sp` is not one",
    );
}

#[test]
fn tls_and_dns_blocks() {
    assert!(
        errors(
            "tls:\n  certificate: /etc/sipforge/cert.pem\n  key: /etc/sipforge/key.pem\n  ca: /etc/sipforge/ca.pem\n  verify_client: true\ndns: { servers: [\"127.0.0.1:5353\", \"::1\", 10.0.0.53] }\nrequest: [ relay ]\n"
        )
        .is_empty()
    );
    one(
        "tls: { certificate: /c.pem }\nrequest: [ relay ]\n",
        "routes.yaml:1:1: `tls` needs `certificate` and `key`",
    );
    one(
        "tls: { certificate: /c.pem, key: /k.pem, verify: true }\nrequest: [ relay ]\n",
        "routes.yaml:1:42: unknown key `verify`",
    );
    one(
        "dns: { servers: [\"dns.example.com\"] }\nrequest: [ relay ]\n",
        "routes.yaml:1:19: invalid DNS server: `dns.example.com` is not an IP address with an optional port",
    );
    // (Checked once `tls:` sockets are accepted; refused sockets say why first.)
    let e = errors("listen: [ \"tls:127.0.0.1:5061\" ]\nrequest: [ relay ]\n");
    assert!(!e.is_empty(), "{e:?}");
}

#[test]
fn registrar_lookup_save_and_forks() {
    assert!(
        errors(
            "registrar:\n  store: memory\n  min_expires: 60\n  max_expires: 3600\n  default_expires: 3600\n  max_contacts: 10\nrequest:\n  - if: $rm == REGISTER\n    then:\n      - save\n  - if: in_dialog\n    then: [ relay ]\n  - if: not registered and not registered(\"$fu\")\n    then:\n      - relay: [sip:a@127.0.0.1:5080, \"sip:b@127.0.0.1:5090;transport=tcp\"]\n  - record_route\n  - lookup: { not_found: [ { log: \"nobody\" } ] }\n  - relay\n"
        )
        .is_empty()
    );
    assert!(errors("request: [ lookup, relay ]\n").is_empty());
    one(
        "registrar: { store: mysql://x }\nrequest: [ save ]\n",
        "routes.yaml:1:21: unknown registrar store `mysql://x`",
    );
    one(
        "registrar: { min_expires: 600, max_expires: 60 }\nrequest: [ save ]\n",
        "routes.yaml:1:27: `min_expires` (600) is larger than `max_expires` (60)",
    );
    assert!(
        errors("registrar: { contact_max_size: 1024, max_bindings: 50000 }\nrequest: [ save ]\n")
            .is_empty()
    );
    one(
        "registrar: { contact_max_size: 0 }\nrequest: [ save ]\n",
        "routes.yaml:1:32: `contact_max_size` must be a positive whole number",
    );
    one(
        "registrar: { max_bindings: lots }\nrequest: [ save ]\n",
        "routes.yaml:1:28: expected a whole number, found a string",
    );
    one(
        "registrar: { store: \"redis://127.0.0.1:6379/0\", max_bindings: 10 }\nrequest: [ save ]\n",
        "routes.yaml:1:63: `max_bindings` bounds the `memory` store only",
    );
    one(
        "request: [ relay ]\nreply: [ lookup ]\n",
        "routes.yaml:2:10: `lookup` cannot be used in `reply`",
    );
    one(
        "request: [ save, relay ]\n",
        "routes.yaml:1:18: unreachable step",
    );
    one(
        "request: [ { relay: [] } ]\n",
        "routes.yaml:1:14: `relay: []` has no target",
    );
    one(
        "request: [ { relay: [sip:a@x, \"http://b\"] } ]\n",
        "routes.yaml:1:32: invalid URI `http://b`: a URI starts with `sip:` or `sips:`",
    );
    one(
        "request:\n  - if: registered($cs)\n    then: [ relay ]\n  - drop\n",
        "routes.yaml:2:20: `registered` takes an address-of-record, not `$cs`",
    );
    let e = errors(
        "registrar: { store: \"redis://127.0.0.1:6379/0\" }\nrequest: [ relay ]\nfailure:\n  - if: registered\n    then: [ drop ]\n",
    );
    assert_eq!(
        e,
        [
            "routes.yaml:4:5: `registered` cannot read a shared location store in `reply` or `failure`"
        ],
    );
    assert!(
        errors("registrar: { store: memory }\nrequest: [ relay ]\nfailure:\n  - if: registered\n    then: [ drop ]\n")
            .is_empty()
    );
}

#[test]
fn nat_step_and_condition() {
    assert!(
        errors(
            "request:\n  - if: behind_nat and not in_dialog\n    then: [ fix_contact ]\n  - relay\nreply:\n  - if: \"!behind_nat\"\n    then: [ exit ]\n  - fix_contact\nfailure:\n  - if: behind_nat\n    then: [ { log: \"caller behind NAT\" } ]\nroutes:\n  nat: [ fix_contact ]\n"
        )
        .is_empty()
    );
    one(
        "request: [ relay ]\nfailure: [ fix_contact ]\n",
        "routes.yaml:2:12: `fix_contact` cannot be used in `failure`",
    );
    one(
        "request: [ relay ]\nfailure: [ { route: nat } ]\nroutes:\n  nat: [ fix_contact ]\n",
        "routes.yaml:4:10: `fix_contact` cannot be used in route `nat` (called from `failure`)",
    );
    let d = diag("request: [ relay ]\nfailure: [ fix_contact ]\n");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("in `request`")),
        "{d:?}"
    );
    one(
        "request: [ { fix_contact: yes }, relay ]\n",
        "routes.yaml:1:27: `fix_contact` takes no value",
    );
    one(
        "request:\n  - if: behind_nat($si)\n    then: [ fix_contact ]\n  - relay\n",
        "routes.yaml:2:19: `behind_nat` takes no argument",
    );
    one(
        "request: [ fix_contacts, relay ]\n",
        "routes.yaml:1:12: unknown action `fix_contacts`",
    );
}

#[test]
fn rtp_manage_needs_rtpengine_and_a_udp_socket() {
    one(
        "request:\n  - rtp_manage\n  - relay\n",
        "routes.yaml:2:5: `rtp_manage` needs an `rtpengine:` list",
    );
    one(
        "request:\n  - if: not rtp_manage(\"replace-origin\")\n    then: [ drop ]\n  - relay\n",
        "routes.yaml:2:5: `rtp_manage` needs an `rtpengine:` list",
    );
    one(
        "rtpengine: [ \"tcp:127.0.0.1:2223\" ]\nrequest: [ relay ]\n",
        "routes.yaml:1:15: `tcp:127.0.0.1:2223` is not an rtpengine control socket: only `udp:IP:PORT` (the ng protocol over UDP) is supported",
    );
    assert!(
        errors("rtpengine: [ \"udp:127.0.0.1:2223\" ]\nrequest:\n  - rtp_manage: \"replace-origin\"\n  - relay\nreply:\n  - rtp_manage\nfailure:\n  - rtp_manage\n")
            .is_empty()
    );
}
