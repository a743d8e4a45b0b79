//! The proxy side of the registrar (`crate::registrar` holds the rules and
//! the stores): `save` answering a REGISTER, and the location service
//! `lookup` and `registered` read, turning bindings into the branches of
//! a fork (highest q first, a group per q-value; each branch to the
//! address the REGISTER came from, or along its Path).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ctx::{BranchTarget, Location};
use crate::registrar::{self, Binding, Config, Received, Store};
use crate::sip::Message;
use crate::transport::Transport;

/// How often (seconds) expired bindings are swept, on the way of a REGISTER.
const SWEEP_EVERY: u64 = 10;

/// The registrar of a core: its rules and its store.
pub struct Registrar {
    config: Config,
    store: Arc<dyn Store>,
    last_sweep: AtomicU64,
}

impl Registrar {
    /// The registrar the routes' settings ask for; Err for a store that
    /// cannot be used (only `memory` is built in so far).
    pub fn from_settings(s: &crate::api::RegistrarSettings) -> Result<Registrar, String> {
        if s.store != "memory" {
            return Err(format!(
                "registrar store `{}`: only `memory` is supported so far",
                s.store
            ));
        }
        Ok(Registrar {
            config: Config {
                min_expires: s.min_expires,
                max_expires: s.max_expires,
                default_expires: s.default_expires,
                max_contacts: s.max_contacts,
            },
            store: Arc::new(registrar::MemoryStore::new()),
            last_sweep: AtomicU64::new(0),
        })
    }

    /// `save`: handle the REGISTER that came over `transport` from
    /// `source`; the answer as (code, reason, header lines).
    pub fn save(
        &self,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
        now_unix: u64,
    ) -> (u16, Option<&'static str>, Vec<u8>) {
        self.sweep(now_unix);
        let received = Received {
            transport,
            addr: source,
        };
        let answer = match registrar::parse_register(msg, received, &self.config) {
            Err(refusal) => Err(refusal),
            Ok(req) => match self.store.register(&req, now_unix, &self.config) {
                Ok(Ok(bindings)) => Ok(registrar::ok_headers(&req, &bindings, now_unix)),
                Ok(Err(refusal)) => Err(refusal),
                Err(e) => {
                    crate::metrics::registrar_store_error();
                    crate::warn_limited!("registrar store: {}", e.message);
                    Err(e.refusal())
                }
            },
        };
        let (code, reason, headers) = match answer {
            Ok(headers) => (200, None, headers),
            Err(r) => (r.code, Some(r.reason), r.headers),
        };
        crate::metrics::register_answered(code);
        crate::metrics::set_registrations(self.store.aors(), self.store.contacts());
        (code, reason, headers.into_bytes())
    }

    fn sweep(&self, now_unix: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now_unix >= last + SWEEP_EVERY
            && self
                .last_sweep
                .compare_exchange(last, now_unix, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.store.sweep(now_unix);
        }
    }

    /// The location service at `now_unix`, for one route run.
    pub fn at(&self, now_unix: u64) -> LocationAt<'_> {
        LocationAt {
            registrar: self,
            now_unix,
        }
    }
}

/// The location service as `lookup` and `registered` see it at one time.
pub struct LocationAt<'a> {
    registrar: &'a Registrar,
    now_unix: u64,
}

impl Location for LocationAt<'_> {
    fn fork(&self, uri: &str) -> Option<Vec<Vec<BranchTarget>>> {
        let bindings = match registrar::lookup(&*self.registrar.store, uri, self.now_unix) {
            Ok(b) => b,
            Err(e) => {
                crate::metrics::registrar_store_error();
                crate::warn_limited!("lookup: registrar store: {}", e.message);
                return None;
            }
        };
        crate::metrics::lookup_done(!bindings.is_empty());
        if bindings.is_empty() {
            return None;
        }
        Some(groups(&bindings))
    }

    fn has(&self, uri: &str) -> bool {
        registrar::is_registered(&*self.registrar.store, uri, self.now_unix).unwrap_or(false)
    }
}

/// Bindings (highest q first) as fork groups, one per q-value.
fn groups(bindings: &[Binding]) -> Vec<Vec<BranchTarget>> {
    let mut out: Vec<Vec<BranchTarget>> = Vec::new();
    let mut last_q = None;
    for b in bindings {
        let q = b.q_or_default();
        if last_q != Some(q) {
            out.push(Vec::new());
            last_q = Some(q);
        }
        if let Some(group) = out.last_mut() {
            group.push(branch_to(b));
        }
    }
    out
}

/// The branch to one binding: its contact as Request-URI; along its Path
/// when it has one, else to where its REGISTER came from (the NAT
/// binding, or the connection for TCP), whatever the contact says.
fn branch_to(b: &Binding) -> BranchTarget {
    let du = b
        .path
        .is_empty()
        .then(|| crate::target::uri_of(b.received.addr, b.received.transport));
    BranchTarget {
        ruri: b.contact.clone(),
        du,
        route: b.path.clone(),
    }
}
