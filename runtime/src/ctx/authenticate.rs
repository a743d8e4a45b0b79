//! The `authenticate` step (RFC 3261 §22): the request's digest
//! credentials are checked by [`crate::auth::Authenticator`]; accepted, the
//! route goes on with `$au` set and the consumed credentials header taken
//! out of what is forwarded (§22.3); otherwise the route ends with a
//! 401/407 challenge, or 403 when the credentials are valid but belong to
//! another user than the request's From (To for REGISTER).

use super::{Ctx, Decision, Section, unfold};
use crate::api::{Flow, Template};
use crate::auth::{Authenticator, Outcome, Request};

/// What `authenticate` needs besides the message, given by the core.
pub(crate) struct AuthEnv<'a> {
    pub authenticator: &'a Authenticator,
    /// `auth.realm` (None: the From domain).
    pub realm: Option<&'static Template>,
    /// Wall-clock time in seconds since the Unix epoch (nonces carry it,
    /// so that any instance sharing the key can check them).
    pub now_unix: u64,
}

impl<'a> Ctx<'a> {
    /// `authenticate`: Continue when the request carries valid credentials
    /// of the expected user; otherwise the route ends with the answer.
    /// ACK and CANCEL pass: neither can be challenged (§22.1; an ACK's
    /// INVITE was checked, a CANCEL must match its INVITE hop by hop).
    pub fn authenticate(&mut self, line: u32) -> Flow {
        if self.section != Section::Request {
            return Flow::Continue;
        }
        let method = self.msg.method().unwrap_or("");
        if method == "ACK" || method == "CANCEL" {
            return Flow::Continue;
        }
        let register = method == "REGISTER";
        if self.asked.is_some() {
            // The run is suspended: what it decides is thrown away.
            return Flow::Continue;
        }
        let step = self.auth_steps;
        self.auth_steps += 1;
        if let Some((user, index)) = self.accepted_before.get(step) {
            // An earlier run of the route on this request accepted these
            // credentials (checking them again would see a replay).
            let name = if register {
                "Authorization"
            } else {
                "Proxy-Authorization"
            };
            if let Some(h) = self.msg.find(name).nth(*index) {
                self.edits.removed_lines.push(h.line_range.clone());
            }
            self.au = Some(user.clone());
            return Flow::Continue;
        }
        let Some(env) = self.auth.as_ref() else {
            crate::metrics::auth_failure("unavailable", false);
            tracing::error!(
                target: "sipforge::routes",
                line,
                "authenticate: no credentials are loaded; answered 500"
            );
            return self.answer(500, None, Vec::new());
        };
        let (authenticator, now) = (env.authenticator, env.now_unix);
        let realm = match env.realm {
            Some(t) => self.expand(line, "auth realm", t).unwrap_or_default(),
            None => String::new(),
        };
        let realm = if realm.is_empty() {
            self.get(crate::api::Var::Fd).into_owned()
        } else {
            realm
        };
        let name = if register {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let headers: Vec<_> = self.msg.find(name).collect();
        let values: Vec<_> = headers.iter().map(|h| unfold(self.msg.value(h))).collect();
        let credentials: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
        let expected = if register {
            self.get(crate::api::Var::TUser)
        } else {
            self.get(crate::api::Var::FUser)
        };
        let request = Request {
            method,
            realm: &realm,
            expected_user: &expected,
            credentials: &credentials,
        };
        match authenticator.check(&request, now) {
            Outcome::Ok { user, header_index } => {
                crate::metrics::auth_success();
                if let Some(h) = headers.get(header_index) {
                    self.edits.removed_lines.push(h.line_range.clone());
                }
                self.accepted_now.push((user.clone(), header_index));
                self.au = Some(user);
                Flow::Continue
            }
            Outcome::Challenge { stale, reason } => {
                crate::metrics::auth_failure(reason.label(), true);
                tracing::debug!(
                    target: "sipforge::routes",
                    line,
                    reason = reason.label(),
                    realm = realm.as_str(),
                    "authenticate: challenged"
                );
                let header = if register {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let mut lines = Vec::with_capacity(160);
                authenticator.write_challenges(header, &realm, stale, now, &mut lines);
                self.answer(if register { 401 } else { 407 }, None, lines)
            }
            Outcome::Forbidden { user, reason } => {
                crate::metrics::auth_failure(reason.label(), false);
                tracing::info!(
                    target: "sipforge::routes",
                    line,
                    user = user.as_str(),
                    expected = expected.as_ref(),
                    "authenticate: valid credentials of another user; answered 403"
                );
                self.answer(403, Some("Forbidden"), Vec::new())
            }
        }
    }

    /// The username of the request's first credentials header (`$au`
    /// before `authenticate` accepted it), as Kamailio's `$au` reads it.
    pub(super) fn credentials_user(&self) -> Option<String> {
        let h = self
            .msg
            .find("Proxy-Authorization")
            .next()
            .or_else(|| self.msg.find("Authorization").next())?;
        crate::auth::username_of(&unfold(self.msg.value(h)))
    }

    fn answer(&mut self, code: u16, reason: Option<&'static str>, headers: Vec<u8>) -> Flow {
        self.decision = Decision::Reply {
            code,
            reason,
            headers,
        };
        Flow::Stop
    }
}
