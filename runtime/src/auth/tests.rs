//! Round trips through [`Authenticator::check`]: a fixed key, fake times,
//! and a tiny client that answers the challenges.

use super::*;

const REALM: &str = "example.com";
const T0: u64 = 1_700_000_000;

fn users() -> Credentials {
    let text = format!(
        "# test users\n\
         alice:{REALM}:{}\n\
         alice:{REALM}:{}\n\
         bob:{REALM}:{}\n\
         carol:other.org:{}\n",
        digest::ha1(Algorithm::Md5, "alice", REALM, "secret"),
        digest::ha1(Algorithm::Sha256, "alice", REALM, "secret"),
        digest::ha1(Algorithm::Sha256, "bob", REALM, "hunter2"),
        digest::ha1(Algorithm::Md5, "carol", "other.org", "pw"),
    );
    Credentials::parse(&text, "users").unwrap()
}

fn auth() -> Authenticator {
    Authenticator::new(
        AuthConfig::default(),
        NonceKey::from_bytes(b"a fixed test key, 32 bytes long!").unwrap(),
        users(),
    )
}

/// The nonce of a challenge value.
fn nonce_of(challenge: &str) -> String {
    let rest = digest::digest_params(challenge).unwrap();
    let params = digest::parse_params(rest).unwrap();
    digest::param(&params, "nonce").unwrap().to_string()
}

/// What a client sends for `user`/`password` answering `nonce`.
struct Answer<'a> {
    user: &'a str,
    password: &'a str,
    realm: &'a str,
    nonce: &'a str,
    alg: Algorithm,
    nc: Option<u32>,
    method: &'a str,
}

impl Answer<'_> {
    fn header(&self) -> String {
        let uri = "sip:example.com";
        let ha1 = digest::ha1(self.alg, self.user, self.realm, self.password);
        let nc = self.nc.map(|n| format!("{n:08x}"));
        let qop = nc.as_deref().map(|nc| ("auth", nc, "0a4f113b"));
        let response =
            digest::response(self.alg, ha1.as_bytes(), self.nonce, qop, self.method, uri);
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}",
            self.user,
            self.realm,
            self.nonce,
            self.alg.name()
        );
        if let Some(nc) = nc {
            h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"0a4f113b\""));
        }
        h
    }
}

fn answer<'a>(nonce: &'a str, user: &'a str, password: &'a str, alg: Algorithm) -> Answer<'a> {
    Answer {
        user,
        password,
        realm: REALM,
        nonce,
        alg,
        nc: Some(1),
        method: "INVITE",
    }
}

fn check(a: &Authenticator, expected_user: &str, headers: &[&str], now: u64) -> Outcome {
    a.check(
        &Request {
            method: "INVITE",
            realm: REALM,
            expected_user,
            credentials: headers,
        },
        now,
    )
}

fn ok(user: &str, header_index: usize) -> Outcome {
    Outcome::Ok {
        user: user.into(),
        header_index,
    }
}

#[test]
fn send_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Authenticator>();
    assert::<Credentials>();
}

#[test]
fn written_challenges_are_header_lines_of_the_same_values() {
    let a = auth();
    for stale in [false, true] {
        let mut out = Vec::new();
        a.write_challenges("Proxy-Authenticate", "we\"ird\\\r\n\0", stale, T0, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        let values = a.challenges("we\"ird\\\r\n\0", stale, T0);
        assert_eq!(lines.len(), values.len());
        for (line, value) in lines.iter().zip(&values) {
            let line = line.strip_prefix("Proxy-Authenticate: ").unwrap();
            let value = value.replace(&nonce_of(value), "N");
            assert_eq!(line.replace(&nonce_of(line), "N"), value);
        }
    }
}

#[test]
fn challenges_one_per_algorithm() {
    let a = auth();
    let c = a.challenges(REALM, false, T0);
    assert_eq!(c.len(), 2);
    let nonce = nonce_of(&c[0]);
    assert_eq!(
        c[0],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=SHA-256")
    );
    assert_eq!(
        c[1],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5")
    );
    let c = a.challenges(REALM, true, T0);
    assert!(c[0].ends_with("algorithm=SHA-256, stale=true"), "{}", c[0]);
    let md5_only = Authenticator::new(
        AuthConfig {
            algorithms: vec![Algorithm::Md5, Algorithm::Md5],
            nonce_ttl_secs: 60,
        },
        NonceKey::random(),
        Credentials::default(),
    );
    let c = md5_only.challenges("we\"ird\\\r\n\0", false, T0);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].starts_with("Digest realm=\"we\\\"ird\\\\\", nonce="),
        "{}",
        c[0]
    );
    assert!(!c[0].contains(['\r', '\n', '\0']));
}

#[test]
fn success_md5_and_sha256() {
    let a = auth();
    let c = a.challenges(REALM, false, T0);
    let n = nonce_of(&c[0]);
    let h = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    assert_eq!(check(&a, "alice", &[&h], T0 + 1), ok("alice", 0));
    // The nonce count belongs to the nonce, whatever the algorithm.
    let mut md5 = answer(&n, "alice", "secret", Algorithm::Md5);
    md5.nc = Some(2);
    assert_eq!(check(&a, "alice", &[&md5.header()], T0 + 1), ok("alice", 0));
    // Without algorithm: MD5; without qop: RFC 2069, reusable.
    let mut rfc2069 = answer(&n, "alice", "secret", Algorithm::Md5);
    rfc2069.nc = None;
    let h = rfc2069.header().replace(", algorithm=MD5", "");
    assert_eq!(check(&a, "alice", &[&h], T0 + 2), ok("alice", 0));
    assert_eq!(check(&a, "alice", &[&h], T0 + 3), ok("alice", 0));
    // Hex case of the response does not matter.
    let mut up = answer(&n, "bob", "hunter2", Algorithm::Sha256);
    up.nc = Some(7);
    let h = up.header();
    let resp = digest::param(
        &digest::parse_params(digest::digest_params(&h).unwrap()).unwrap(),
        "response",
    )
    .unwrap()
    .to_string();
    let h = h.replace(&resp, &resp.to_ascii_uppercase());
    assert_eq!(check(&a, "bob", &[&h], T0 + 4), ok("bob", 0));
    // REGISTER hashes its own method.
    let mut reg = answer(&n, "alice", "secret", Algorithm::Sha256);
    reg.method = "REGISTER";
    reg.nc = Some(9);
    let h = reg.header();
    let req = Request {
        method: "REGISTER",
        realm: REALM,
        expected_user: "alice",
        credentials: &[&h],
    };
    assert_eq!(a.check(&req, T0 + 5), ok("alice", 0));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let wrong = answer(&n, "alice", "guess", Algorithm::Sha256).header();
    let unknown = answer(&n, "mallory", "guess", Algorithm::Sha256).header();
    let w = check(&a, "alice", &[&wrong], T0);
    let u = check(&a, "mallory", &[&unknown], T0);
    assert_eq!(
        w,
        Outcome::Challenge {
            stale: false,
            reason: Failure::WrongPassword
        }
    );
    assert_eq!(
        u,
        Outcome::Challenge {
            stale: false,
            reason: Failure::UnknownUser
        }
    );
    // bob has no MD5 HA1: unknown for MD5.
    let h = answer(&n, "bob", "hunter2", Algorithm::Md5).header();
    assert_eq!(check(&a, "bob", &[&h], T0).reason(), Failure::UnknownUser);
    // A wrong password is not counted as a use of the nonce count.
    let right = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    assert_eq!(check(&a, "alice", &[&right], T0), ok("alice", 0));
}

#[test]
fn stale_nonce() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let good = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let bad = answer(&n, "alice", "nope", Algorithm::Sha256).header();
    let late = T0 + 301;
    assert_eq!(
        check(&a, "alice", &[&good], late),
        Outcome::Challenge {
            stale: true,
            reason: Failure::StaleNonce
        }
    );
    assert_eq!(
        check(&a, "alice", &[&bad], late),
        Outcome::Challenge {
            stale: false,
            reason: Failure::WrongPassword
        }
    );
    assert_eq!(check(&a, "alice", &[&good], T0 + 300), ok("alice", 0));
}

#[test]
fn forged_nonces() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let mut flipped = n.clone().into_bytes();
    flipped[20] = if flipped[20] == b'x' { b'y' } else { b'x' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_realm = nonce_of(&a.challenges("other.org", false, T0)[0]);
    let other_key = Authenticator::new(AuthConfig::default(), NonceKey::random(), users());
    let other_key = nonce_of(&other_key.challenges(REALM, false, T0)[0]);
    for nonce in [
        flipped.as_str(),
        &other_realm,
        &other_key,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "",
    ] {
        let h = answer(nonce, "alice", "secret", Algorithm::Sha256).header();
        assert_eq!(
            check(&a, "alice", &[&h], T0),
            Outcome::Challenge {
                stale: false,
                reason: Failure::ForgedNonce
            },
            "{nonce}"
        );
    }
    // Issued more than 30 s in the future.
    let future = nonce_of(&a.challenges(REALM, false, T0 + 31)[0]);
    let h = answer(&future, "alice", "secret", Algorithm::Sha256).header();
    assert_eq!(check(&a, "alice", &[&h], T0).reason(), Failure::ForgedNonce);
}

#[test]
fn replayed_and_increasing_nc() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let mut ans = answer(&n, "alice", "secret", Algorithm::Sha256);
    let first = ans.header();
    assert_eq!(check(&a, "alice", &[&first], T0), ok("alice", 0));
    assert_eq!(
        check(&a, "alice", &[&first], T0 + 1),
        Outcome::Challenge {
            stale: true,
            reason: Failure::Replayed
        }
    );
    for nc in 2..=5 {
        ans.nc = Some(nc);
        let h = ans.header();
        assert_eq!(check(&a, "alice", &[&h], T0 + 1), ok("alice", 0), "nc {nc}");
    }
    ans.nc = Some(3);
    let h = ans.header();
    assert_eq!(
        check(&a, "alice", &[&h], T0 + 1).reason(),
        Failure::Replayed
    );
    // The same nc under another nonce is fine.
    let n2 = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let h = answer(&n2, "alice", "secret", Algorithm::Sha256).header();
    assert_eq!(check(&a, "alice", &[&h], T0 + 1), ok("alice", 0));
}

#[test]
fn user_mismatch_is_forbidden() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let h = answer(&n, "bob", "hunter2", Algorithm::Sha256).header();
    assert_eq!(
        check(&a, "alice", &[&h], T0),
        Outcome::Forbidden {
            user: "bob".into(),
            reason: Failure::UserMismatch
        }
    );
    // Usernames compare exactly.
    let mut ans = answer(&n, "alice", "secret", Algorithm::Sha256);
    ans.nc = Some(2);
    let h = ans.header();
    assert_eq!(
        check(&a, "Alice", &[&h], T0).reason(),
        Failure::UserMismatch
    );
}

#[test]
fn realm_selection() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let ours = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let mut theirs = answer(&n, "carol", "pw", Algorithm::Md5);
    theirs.realm = "other.org";
    let theirs = theirs.header();
    assert_eq!(
        check(&a, "alice", &["Basic YWxpY2U6c2VjcmV0", &theirs, &ours], T0),
        ok("alice", 2)
    );
    assert_eq!(
        check(&a, "carol", &[&theirs], T0),
        Outcome::Challenge {
            stale: false,
            reason: Failure::WrongRealm
        }
    );
    // Realms compare case-sensitively, after unescaping.
    let upper = ours.replace("realm=\"example.com\"", "realm=\"EXAMPLE.COM\"");
    assert_eq!(
        check(&a, "alice", &[&upper], T0).reason(),
        Failure::WrongRealm
    );
    let mut ans = answer(&n, "alice", "secret", Algorithm::Sha256);
    ans.nc = Some(2);
    let escaped = ans
        .header()
        .replace("realm=\"example.com\"", "realm=\"exa\\mple.com\"");
    assert_eq!(check(&a, "alice", &["x", &escaped], T0), ok("alice", 1));
    assert_eq!(
        check(&a, "alice", &[], T0),
        Outcome::Challenge {
            stale: false,
            reason: Failure::NoCredentials
        }
    );
    assert_eq!(
        check(&a, "alice", &["Basic abc"], T0).reason(),
        Failure::NoCredentials
    );
}

#[test]
fn malformed_and_unsupported() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let good = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let cases = [
        (format!("{good}, username=\"alice\""), Failure::Malformed),
        (
            good.replace("qop=auth", "qop=auth-int"),
            Failure::UnsupportedAlgorithm,
        ),
        (
            good.replace("SHA-256", "SHA-256-sess"),
            Failure::UnsupportedAlgorithm,
        ),
        (good.replace("nc=00000001", "nc=1"), Failure::Malformed),
        (good.replace("uri=", "url="), Failure::Malformed),
        (format!("{good}, \"oops"), Failure::Malformed),
        (
            "Digest realm=\"example.com\"".to_string(),
            Failure::Malformed,
        ),
        ("Digest username=\"alice\"".to_string(), Failure::Malformed),
        ("Digest".to_string(), Failure::Malformed),
    ];
    for (h, why) in cases {
        assert_eq!(
            check(&a, "alice", &[&h], T0),
            Outcome::Challenge {
                stale: false,
                reason: why
            },
            "{h}"
        );
    }
    // An algorithm we know but did not configure.
    let sha_only = Authenticator::new(
        AuthConfig {
            algorithms: vec![Algorithm::Sha256],
            nonce_ttl_secs: 300,
        },
        NonceKey::from_bytes(b"a fixed test key, 32 bytes long!").unwrap(),
        users(),
    );
    let h = answer(&n, "alice", "secret", Algorithm::Md5).header();
    assert_eq!(
        check(&sha_only, "alice", &[&h], T0).reason(),
        Failure::UnsupportedAlgorithm
    );
    // Folded and oddly spaced, still fine.
    let folded = good
        .replace(", ", " ,\r\n\t")
        .replace("Digest ", "digest  ");
    let mut ans = answer(&n, "alice", "secret", Algorithm::Sha256);
    ans.nc = Some(2);
    let folded2 = ans.header().replace(", ", " ,\r\n\t");
    assert_eq!(check(&a, "alice", &[&folded], T0), ok("alice", 0));
    assert_eq!(check(&a, "alice", &[&folded2], T0), ok("alice", 0));
}

#[test]
fn check_never_panics_on_mutations() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let good = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let bytes = good.as_bytes();
    for cut in 0..bytes.len() {
        let h = String::from_utf8_lossy(&bytes[..cut]);
        assert!(!matches!(check(&a, "alice", &[&h], T0), Outcome::Ok { .. }));
    }
    for at in 0..bytes.len() {
        for r in [b'"', b'\\', b',', b'=', b' ', 0xff, b'0'] {
            let mut m = bytes.to_vec();
            m[at] = r;
            let h = String::from_utf8_lossy(&m);
            let _ = check(&a, "alice", &[&h], T0);
        }
    }
}

#[test]
fn replace_credentials_like_sighup() {
    let a = auth();
    assert_eq!(a.credentials_count(), 4);
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let before = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let held = a.current();
    let text = format!(
        "alice:{REALM}:{}\n",
        digest::ha1(Algorithm::Sha256, "alice", REALM, "new secret")
    );
    a.replace_credentials(Credentials::parse(&text, "users").unwrap());
    assert_eq!(a.credentials_count(), 1);
    // A check in flight keeps the old table.
    assert_eq!(held.len(), 4);
    assert_eq!(
        check(&a, "alice", &[&before], T0).reason(),
        Failure::WrongPassword
    );
    let mut after = answer(&n, "alice", "new secret", Algorithm::Sha256);
    after.nc = Some(2);
    assert_eq!(check(&a, "alice", &[&after.header()], T0), ok("alice", 0));
}

#[test]
fn labels() {
    assert_eq!(Failure::NoCredentials.label(), "no_credentials");
    assert_eq!(
        Failure::UnsupportedAlgorithm.label(),
        "unsupported_algorithm"
    );
    assert_eq!(Failure::None.label(), "none");
    assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse("MD5-sess"), None);
    assert_eq!(Algorithm::parse("SHA-256-sess"), None);
    assert_eq!(Algorithm::Sha256.name(), "SHA-256");
}

#[test]
fn challenge_kinds() {
    let r = ChallengeKind::for_method("REGISTER");
    assert_eq!((r.status, r.challenge_header), (401, "WWW-Authenticate"));
    assert_eq!(r.credentials_header, "Authorization");
    let i = ChallengeKind::for_method("INVITE");
    assert_eq!((i.status, i.challenge_header), (407, "Proxy-Authenticate"));
    assert_eq!(i.credentials_header, "Proxy-Authorization");
}

#[test]
fn concurrent_replays_accept_exactly_one() {
    let a = auth();
    let n = nonce_of(&a.challenges(REALM, false, T0)[0]);
    let h = answer(&n, "alice", "secret", Algorithm::Sha256).header();
    let oks = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| check(&a, "alice", &[&h], T0) == ok("alice", 0)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(false))
            .filter(|&ok| ok)
            .count()
    });
    assert_eq!(oks, 1);
}
