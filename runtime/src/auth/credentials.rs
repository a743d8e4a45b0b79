//! The credentials file (`credentials:`), in htdigest format: one
//! `user:realm:HA1` per line, HA1 = H(user ":" realm ":" password) in hex.
//! The length of HA1 tells the hash: 32 hex digits MD5, 64 SHA-256 (so
//! SHA-512-256, also 64, cannot be told apart and is not supported here).
//! A user may have one line per algorithm; blank lines and lines starting
//! with `#` are ignored. Errors name `path:line` and never show the HA1.

use std::collections::HashMap;
use std::path::Path;

use super::Algorithm;

/// The HA1s of one user in one realm.
#[derive(Debug, Default, Clone)]
struct Entry {
    md5: Option<Box<[u8]>>,
    sha256: Option<Box<[u8]>>,
}

impl Entry {
    fn slot(&mut self, alg: Algorithm) -> &mut Option<Box<[u8]>> {
        match alg {
            Algorithm::Md5 => &mut self.md5,
            Algorithm::Sha256 => &mut self.sha256,
        }
    }
}

/// The parsed credentials file; immutable once built.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// realm → user → HA1s (two levels so lookups by `&str` allocate nothing).
    realms: HashMap<String, HashMap<String, Entry>>,
    lines: usize,
}

impl Credentials {
    /// Parse the text of the file at `path` (used in error messages only).
    /// Every bad line is reported, as `path:LINE: why`.
    pub fn parse(text: &str, path: &str) -> Result<Credentials, Vec<String>> {
        let mut creds = Credentials::default();
        let mut errors = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let n = k + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok((user, realm, alg, ha1)) => {
                    let entry = creds
                        .realms
                        .entry(realm.to_string())
                        .or_default()
                        .entry(user.to_string())
                        .or_default();
                    let slot = entry.slot(alg);
                    if slot.is_some() {
                        errors.push(format!(
                            "{path}:{n}: a second {} HA1 for user `{user}` in realm `{realm}`",
                            alg.name()
                        ));
                    } else {
                        *slot = Some(ha1.into_boxed_slice());
                        creds.lines += 1;
                    }
                }
                Err(why) => errors.push(format!("{path}:{n}: {why}")),
            }
        }
        if errors.is_empty() {
            Ok(creds)
        } else {
            Err(errors)
        }
    }

    /// Read and parse the file at `path`.
    pub fn load(path: &Path) -> Result<Credentials, Vec<String>> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| vec![format!("{name}: cannot read: {e}")])?;
        let text = String::from_utf8(bytes).map_err(|_| vec![format!("{name}: not UTF-8 text")])?;
        Credentials::parse(&text, &name)
    }

    /// The HA1 of `user` in `realm` for `alg`: lowercase hex bytes.
    pub fn ha1(&self, user: &str, realm: &str, alg: Algorithm) -> Option<&[u8]> {
        let entry = self.realms.get(realm)?.get(user)?;
        match alg {
            Algorithm::Md5 => entry.md5.as_deref(),
            Algorithm::Sha256 => entry.sha256.as_deref(),
        }
    }

    /// The number of HA1s (lines) loaded.
    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// `user:realm:HA1`: the user ends at the first colon, the HA1 starts after
/// the last, so a realm may contain colons.
fn parse_line(line: &str) -> Result<(&str, &str, Algorithm, Vec<u8>), String> {
    let (user, rest) = line
        .split_once(':')
        .ok_or("expected `user:realm:HA1`, found no `:`")?;
    let (realm, ha1) = rest
        .rsplit_once(':')
        .ok_or("expected `user:realm:HA1`, found only one `:`")?;
    if user.is_empty() {
        return Err("the user is empty".into());
    }
    if realm.is_empty() {
        return Err("the realm is empty".into());
    }
    if !ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the HA1 is not hexadecimal".into());
    }
    let alg = match ha1.len() {
        32 => Algorithm::Md5,
        64 => Algorithm::Sha256,
        n => {
            return Err(format!(
                "the HA1 has {n} hex digits: 32 (MD5) or 64 (SHA-256) expected"
            ));
        }
    };
    Ok((user, realm, alg, ha1.to_ascii_lowercase().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "939e7578ed9e3c518a452acee763bce9";
    const SHA: &str = "7987C64C30E25F1B74BE53F966B49B90F2808AA92FAF9A00262392D7B4794232";

    #[test]
    fn parses_comments_blanks_and_both_hashes() {
        let text = format!(
            "# users\n\n  \nalice:example.com:{MD5}\r\nalice:example.com:{SHA}\n\
             bob:sip:example.com:5060:{MD5}\n  # indented comment\nalice:other.org:{MD5}\n"
        );
        let c = Credentials::parse(&text, "users").unwrap();
        assert_eq!(c.len(), 4);
        assert!(!c.is_empty());
        assert_eq!(
            c.ha1("alice", "example.com", Algorithm::Md5),
            Some(MD5.as_bytes())
        );
        assert_eq!(
            c.ha1("alice", "example.com", Algorithm::Sha256),
            Some(SHA.to_ascii_lowercase().as_bytes())
        );
        assert_eq!(
            c.ha1("bob", "sip:example.com:5060", Algorithm::Md5),
            Some(MD5.as_bytes())
        );
        assert_eq!(
            c.ha1("bob", "sip:example.com:5060", Algorithm::Sha256),
            None
        );
        assert_eq!(c.ha1("Alice", "example.com", Algorithm::Md5), None);
        assert_eq!(c.ha1("alice", "nowhere", Algorithm::Md5), None);
        assert!(Credentials::parse("", "x").unwrap().is_empty());
    }

    #[test]
    fn reports_every_bad_line() {
        let secret = "0123456789abcdef0123456789abcde"; // 31 digits
        let text = format!(
            "ok:r:{MD5}\nnocolon\n:r:{MD5}\nu::{MD5}\nu:r:{secret}\nu:r:{}zz\nonly:one\n\
             ok:r:{MD5}\n# fine\n",
            &MD5[..30]
        );
        let errors = Credentials::parse(&text, "/etc/users").unwrap_err();
        assert_eq!(errors.len(), 7, "{errors:#?}");
        let want = [
            "/etc/users:2: expected",
            "/etc/users:3: the user is empty",
            "/etc/users:4: the realm is empty",
            "/etc/users:5: the HA1 has 31 hex digits",
            "/etc/users:6: the HA1 is not hexadecimal",
            "/etc/users:7: expected",
            "/etc/users:8: a second MD5 HA1 for user `ok` in realm `r`",
        ];
        for (e, w) in errors.iter().zip(want) {
            assert!(e.starts_with(w), "{e}");
            assert!(!e.contains(secret) && !e.contains(&MD5[..30]), "{e}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let e = Credentials::load(Path::new("/nonexistent/sipforge-users")).unwrap_err();
        assert!(
            e[0].starts_with("/nonexistent/sipforge-users: cannot read"),
            "{e:?}"
        );
    }
}
