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
