//! Loading what `authenticate` checks against: the credentials file
//! (`auth.credentials`, `--credentials` wins) and the nonce key
//! (`auth.secret`, else random per process), at start and, for the
//! credentials, again on SIGHUP. Errors name the file; `--check` reports
//! them without starting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::Routes;
use crate::auth::{AuthConfig, Authenticator, Credentials, NonceKey};

/// The authenticator and the file it reloads from.
#[derive(Debug)]
pub(super) struct Loaded {
    pub authenticator: Arc<Authenticator>,
    pub credentials: PathBuf,
}

/// Load the credentials and nonce key the routes need; None when the
/// routes do not authenticate.
pub(super) fn load(
    routes: &'static dyn Routes,
    credentials: Option<&Path>,
) -> Result<Option<Loaded>, String> {
    let Some(auth) = &routes.settings().auth else {
        if let Some(path) = credentials {
            return Err(format!(
                "--credentials {} given, but the routes have no `auth:` and never `authenticate`",
                path.display()
            ));
        }
        return Ok(None);
    };
    let path = match credentials {
        Some(p) => p.to_path_buf(),
        None => match auth.credentials {
            Some(p) => PathBuf::from(p),
            None => {
                return Err(
                    "the routes `authenticate` but no credentials file is named: give `auth.credentials` or --credentials PATH"
                        .to_string(),
                );
            }
        },
    };
    let users = read(&path)?;
    let key = match auth.secret {
        Some(secret) => NonceKey::load(Path::new(secret))?,
        None => NonceKey::random(),
    };
    let config = AuthConfig::from_settings(auth);
    Ok(Some(Loaded {
        authenticator: Arc::new(Authenticator::new(config, key, users)),
        credentials: path,
    }))
}

/// Read a credentials file; every bad line is named in the one error.
fn read(path: &Path) -> Result<Credentials, String> {
    Credentials::load(path).map_err(|errors| {
        let shown: Vec<&str> = errors.iter().take(5).map(String::as_str).collect();
        let more = errors.len().saturating_sub(shown.len());
        let mut text = format!("credentials file: {}", shown.join("; "));
        if more > 0 {
            text.push_str(&format!(" (and {more} more)"));
        }
        text
    })
}

/// Reload the credentials (SIGHUP). A file that no longer reads keeps the
/// users loaded before, with an error logged.
pub(super) fn reload(loaded: &Loaded) {
    match read(&loaded.credentials) {
        Ok(users) => {
            let count = users.len();
            loaded.authenticator.replace_credentials(users);
            tracing::info!(
                path = %loaded.credentials.display(),
                users = count,
                "SIGHUP: credentials reloaded"
            );
        }
        Err(e) => tracing::error!(
            path = %loaded.credentials.display(),
            "SIGHUP: credentials not reloaded, the ones loaded before stay: {e}"
        ),
    }
}

/// Reload the credentials on every SIGHUP, for as long as the task runs.
pub(super) fn reload_on_sighup(loaded: Loaded) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reload(&loaded);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_MD5: &str = "alice:example.com:0123456789abcdef0123456789abcdef";
    const BOB_MD5: &str = "bob:example.com:fedcba9876543210fedcba9876543210";

    /// A file of this test in the system's temporary directory.
    fn file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("sipforge-cli-auth-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write the test file");
        path
    }

    #[test]
    fn a_bad_line_is_named_by_path_and_line_without_its_ha1() {
        let path = file(
            "bad",
            &format!("# users\n{ALICE_MD5}\nbob:example.com:nothex\n"),
        );
        let err = read(&path).expect_err("a bad line is an error");
        let at = format!("{}:3:", path.display());
        assert!(err.starts_with("credentials file: "), "{err}");
        assert!(err.contains(&at), "names {at}: {err}");
        assert!(!err.contains("nothex"), "never echoes the HA1: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_missing_file_is_named() {
        let path = std::env::temp_dir().join("sipforge-cli-auth-does-not-exist");
        let err = read(&path).expect_err("a missing file is an error");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    /// What SIGHUP does: a good file replaces the users; a file that no
    /// longer reads keeps the ones loaded before.
    #[test]
    fn reload_replaces_the_users_and_keeps_them_when_the_file_is_bad() {
        let path = file("reload", &format!("{ALICE_MD5}\n"));
        let loaded = Loaded {
            authenticator: Arc::new(Authenticator::new(
                AuthConfig::default(),
                NonceKey::random(),
                read(&path).expect("the first file reads"),
            )),
            credentials: path.clone(),
        };
        assert_eq!(loaded.authenticator.credentials_count(), 1);

        std::fs::write(&path, format!("{ALICE_MD5}\n{BOB_MD5}\n")).unwrap();
        reload(&loaded);
        assert_eq!(loaded.authenticator.credentials_count(), 2, "reloaded");

        std::fs::write(&path, "alice:example.com\n").unwrap();
        reload(&loaded);
        assert_eq!(
            loaded.authenticator.credentials_count(),
            2,
            "a bad file keeps the users loaded before"
        );

        std::fs::remove_file(&path).unwrap();
        reload(&loaded);
        assert_eq!(
            loaded.authenticator.credentials_count(),
            2,
            "a missing file keeps the users loaded before"
        );
    }
}
