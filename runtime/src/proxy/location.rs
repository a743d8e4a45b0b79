//! The proxy side of the registrar (`crate::registrar` holds the rules and
//! the stores): `save` answering a REGISTER, and the location service
//! `lookup` and `registered` read, turning bindings into the branches of
//! a fork (highest q first, a group per q-value; each branch to the
//! address the REGISTER came from, or along its Path).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flow::{self, Flow};
use super::identity::Identity;
use super::suspend::Memo;
use crate::ctx::{BranchTarget, Located, Location};
use crate::registrar::{
    self, Binding, Change, Config, Received, Refusal, RegisterRequest, Store, StoreError,
};
use crate::sip::Message;
use crate::transport::Transport;

/// The registrar of a core: its rules and, for the `memory` store, its
/// store. A shared store (`redis://`) is not the core's: the core asks the
/// network layer (see [`crate::proxy::suspend`]), which holds it.
pub struct Registrar {
    config: Config,
    /// None: a shared store, asked through the network layer.
    store: Option<Arc<dyn Store>>,
    /// `keepalive:`: the bindings behind NAT registered here, pinged.
    pub(crate) keepalives: Option<std::sync::Mutex<super::keepalive::Keepalives>>,
    /// When the timer lane next sweeps part of the memory store (see
    /// [`Registrar::next_sweep`]); None until the first REGISTER saved.
    sweep_at: std::sync::Mutex<Option<Instant>>,
}

/// How often the timer lane sweeps part of the memory store
/// ([`Store::sweep_some`]): as often as the timer threads wake anyway
/// when idle, so it adds no wake-up.
pub const SWEEP_TICK: Duration = Duration::from_secs(1);

/// What `save` does with a REGISTER.
pub enum Saving {
    /// Answer it now: (code, reason, header lines).
    Answer(u16, Option<&'static str>, Vec<u8>),
    /// Ask the shared store to apply it, then [`Registrar::saved`].
    Ask(Box<RegisterRequest>),
}

impl Registrar {
    /// The registrar the routes' settings ask for; Err for a store that
    /// cannot be used.
    pub fn from_settings(s: &crate::api::RegistrarSettings) -> Result<Registrar, String> {
        let store: Option<Arc<dyn Store>> = if s.store == "memory" {
            Some(Arc::new(registrar::MemoryStore::new()))
        } else if s.store.starts_with("redis://") || s.store.starts_with("rediss://") {
            None
        } else {
            return Err(format!(
                "registrar store `{}`: use `memory` or `redis://HOST:PORT/DB`",
                s.store
            ));
        };
        Ok(Registrar {
            config: Config {
                min_expires: s.min_expires,
                max_expires: s.max_expires,
                default_expires: s.default_expires,
                max_contacts: s.max_contacts,
                contact_max_size: s.contact_max_size,
                max_bindings: s.max_bindings,
            },
            store,
            keepalives: (s.keepalive_ms > 0).then(|| {
                std::sync::Mutex::new(super::keepalive::Keepalives::new(
                    std::time::Duration::from_millis(s.keepalive_ms),
                ))
            }),
            sweep_at: std::sync::Mutex::new(None),
        })
    }

    /// When the timer lane must call [`Registrar::on_sweep_timer`]: while
    /// the memory store holds bindings (expired ones included), every
    /// [`SWEEP_TICK`]. A registrar no REGISTER comes to any more (every
    /// phone gone at once) still frees its expired bindings and brings the
    /// `sipforge_registered_*` gauges down.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        let store = self.store.as_ref()?;
        if store.contacts() == 0 {
            return None;
        }
        *super::lock(&self.sweep_at)
    }

    /// The sweep timer at `now`: sweeps the part of the memory store due
    /// (see [`Store::sweep_some`]) and sets the gauges.
    pub(crate) fn on_sweep_timer(&self, now: Instant, now_unix: u64) {
        let Some(store) = &self.store else {
            return;
        };
        {
            let mut at = super::lock(&self.sweep_at);
            if at.is_none_or(|at| at > now) {
                return;
            }
            *at = Some(now + SWEEP_TICK);
        }
        if store.sweep_some(now_unix) > 0 {
            crate::metrics::set_registrations(store.aors(), store.contacts());
        }
    }

    /// A REGISTER was saved at `now`: the sweep timer runs from then on.
    fn arm_sweep(&self, now: Instant) {
        let mut at = super::lock(&self.sweep_at);
        if at.is_none() {
            *at = Some(now + SWEEP_TICK);
        }
    }

    /// A REGISTER from `source` left `bindings` for its AoR at `now`.
    fn keep_alive(&self, now: std::time::Instant, bindings: &[Binding], source: Received) {
        if let Some(k) = &self.keepalives {
            super::lock(k).saved(now, bindings, (source.transport, source.addr));
        }
    }

    /// The `memory` store (None: the store is shared).
    pub(crate) fn memory_store(&self) -> Option<&dyn Store> {
        self.store.as_deref()
    }

    /// Whether the bindings live in a shared store the network layer asks.
    pub fn is_shared(&self) -> bool {
        self.store.is_none()
    }

    /// The registrar's rules.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `save`: handle the REGISTER that came over `transport` from
    /// `source`: the answer, or (with a shared store) what to store.
    ///
    /// `identity`: this instance, for the Path entry of a REGISTER that
    /// came over a connection when the store is shared (see `flow`).
    pub fn save(
        &self,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
        identity: &Identity,
        now: std::time::Instant,
        now_unix: u64,
    ) -> Saving {
        let received = Received {
            transport,
            addr: source,
        };
        let req = match registrar::parse_register(msg, received, &self.config) {
            Ok(req) => req,
            Err(refusal) => return self.answer(Ok(Err(refusal)), None, now_unix),
        };
        let Some(store) = &self.store else {
            let mut req = req;
            // Calls to the phone leave from here (see `flow`): over its
            // connection, or to a phone on UDP behind a NAT, which lets
            // in only the address it registered with. A UDP phone
            // reachable where its Contact says is called directly by
            // every instance (and still when this one is down).
            let behind_nat = || match &req.change {
                Change::Contacts(updates) => updates
                    .iter()
                    .any(|u| !crate::nat::names_source(&u.contact, source)),
                Change::Star | Change::Fetch => false,
            };
            if transport.is_stream() || behind_nat() {
                req.flow_path = flow::path_entry(
                    identity,
                    Flow {
                        transport,
                        addr: source,
                    },
                );
            }
            return Saving::Ask(Box::new(req));
        };
        // (The memory store sweeps expired bindings itself, a shard at a
        // time, on the way of REGISTERs: `SHARD_SWEEP_EVERY`; and the
        // timer lane sweeps the rest: `next_sweep`.)
        self.arm_sweep(now);
        // The 200's header lines are written from the bindings as the
        // store keeps them (no copy of them for the answer); a copy only
        // for the keepalives, which are not the store's.
        let mut headers = String::new();
        let mut kept = None;
        let keepalives = self.keepalives.is_some();
        let result = store.register_with(&req, now_unix, &self.config, &mut |bindings| {
            headers = registrar::ok_headers(&req, bindings, now_unix);
            if keepalives {
                kept = Some(bindings.to_vec());
            }
        });
        crate::metrics::set_registrations(store.aors(), store.contacts());
        if let Some(bindings) = &kept {
            self.keep_alive(now, bindings, req.received);
        }
        self.answer_with(result.map(|r| r.map(|()| headers)).map_err(Some))
    }

    /// The answer to a REGISTER once the shared store applied `req`.
    pub fn saved(
        &self,
        req: &RegisterRequest,
        result: Result<Result<Vec<Binding>, Refusal>, StoreError>,
        now: std::time::Instant,
        now_unix: u64,
    ) -> (u16, Option<&'static str>, Vec<u8>) {
        if let Ok(Ok(bindings)) = &result {
            self.keep_alive(now, bindings, req.received);
        }
        match self.answer(result.map_err(Some), Some(req), now_unix) {
            Saving::Answer(code, reason, headers) => (code, reason, headers),
            Saving::Ask(_) => (500, Some("Server Internal Error"), Vec::new()),
        }
    }

    /// The answer to a REGISTER the store could not take.
    pub fn unavailable(
        &self,
        e: StoreError,
        now_unix: u64,
    ) -> (u16, Option<&'static str>, Vec<u8>) {
        match self.answer(Err(Some(e)), None, now_unix) {
            Saving::Answer(code, reason, headers) => (code, reason, headers),
            Saving::Ask(_) => (500, Some("Server Internal Error"), Vec::new()),
        }
    }

    /// The answer for a store's result (Err(None): refused before it).
    fn answer(
        &self,
        result: Result<Result<Vec<Binding>, Refusal>, Option<StoreError>>,
        req: Option<&RegisterRequest>,
        now_unix: u64,
    ) -> Saving {
        let result = match (result, req) {
            (Ok(Ok(bindings)), Some(req)) => {
                Ok(Ok(registrar::ok_headers(req, &bindings, now_unix)))
            }
            (Ok(Ok(_)), None) => Err(None),
            (Ok(Err(refusal)), _) => Ok(Err(refusal)),
            (Err(e), _) => Err(e),
        };
        self.answer_with(result)
    }

    /// The answer for a store's result with the 200's header lines
    /// written (Err(None): refused before it, or no request to answer).
    fn answer_with(&self, result: Result<Result<String, Refusal>, Option<StoreError>>) -> Saving {
        let answer = match result {
            Ok(Ok(headers)) => Ok(headers),
            Ok(Err(refusal)) => {
                if refusal.code == 503 && refusal.reason == registrar::TABLE_FULL {
                    crate::warn_limited!(
                        "registrar: the location table is full ({} bindings, max_bindings {}): REGISTERs adding bindings get 503",
                        self.store.as_ref().map_or(0, |s| s.contacts()),
                        self.config.max_bindings
                    );
                }
                Err(refusal)
            }
            Err(Some(e)) => {
                crate::metrics::registrar_store_error();
                crate::warn_limited!("registrar store: {}", e.message);
                Err(e.refusal())
            }
            Err(None) => Err(Refusal::new(500, "Server Internal Error")),
        };
        let (code, reason, headers) = match answer {
            Ok(headers) => (200, None, headers),
            Err(r) => (r.code, Some(r.reason), r.headers),
        };
        crate::metrics::register_answered(code);
        Saving::Answer(code, reason, headers.into_bytes())
    }

    /// The location service at `now_unix`, for one route run (`memo`: what
    /// earlier runs of the route on this request learned from a shared
    /// store).
    pub fn at<'a>(
        &'a self,
        identity: &'a Identity,
        now_unix: u64,
        memo: Option<&'a Memo>,
    ) -> LocationAt<'a> {
        LocationAt {
            registrar: self,
            identity,
            now_unix,
            memo,
        }
    }
}

/// The location service as `lookup` and `registered` see it at one time.
pub struct LocationAt<'a> {
    registrar: &'a Registrar,
    /// This instance: its own flow entries are left out of a Path.
    identity: &'a Identity,
    now_unix: u64,
    memo: Option<&'a Memo>,
}

impl LocationAt<'_> {
    /// `then` applied to the live bindings of `uri`'s AoR in the order to
    /// try them ([`registrar::targets`]): from the memory store (under its
    /// lock, nothing copied), or from the shared store's answer in the memo
    /// (none yet: ask it). A store error is logged and counted, and reads
    /// as no binding.
    fn with_targets<T>(&self, uri: &str, mut then: impl FnMut(&[&Binding]) -> T) -> Located<T> {
        let found = match &self.registrar.store {
            Some(store) => registrar::lookup_with(&**store, uri, self.now_unix, &mut then),
            None => {
                let Some(aor) = registrar::aor_of(uri) else {
                    return Located::Ready(then(&[]));
                };
                match self.memo.and_then(|m| m.bindings_of(&aor)) {
                    Some(Ok(b)) => Ok(then(&registrar::targets(b, self.now_unix))),
                    Some(Err(e)) => Err(e.clone()),
                    None => return Located::Ask(aor),
                }
            }
        };
        Located::Ready(found.unwrap_or_else(|e| {
            crate::metrics::registrar_store_error();
            crate::warn_limited!("lookup: registrar store: {}", e.message);
            then(&[])
        }))
    }
}

impl Location for LocationAt<'_> {
    fn fork(&self, uri: &str) -> Located<Option<Vec<Vec<BranchTarget>>>> {
        let found = self.with_targets(uri, |targets| {
            (!targets.is_empty()).then(|| groups(targets, self.identity))
        });
        if let (Located::Ready(groups), Some(_)) = (&found, &self.registrar.store) {
            crate::metrics::lookup_done(groups.is_some());
        }
        found
    }

    fn has(&self, uri: &str) -> Located<bool> {
        self.with_targets(uri, |targets| !targets.is_empty())
    }
}
/// Bindings (highest q first) as fork groups, one per q-value.
fn groups(bindings: &[&Binding], us: &Identity) -> Vec<Vec<BranchTarget>> {
    let mut out: Vec<Vec<BranchTarget>> = Vec::new();
    let mut last_q = None;
    for b in bindings {
        let q = b.q_or_default();
        if last_q != Some(q) {
            out.push(Vec::new());
            last_q = Some(q);
        }
        if let Some(group) = out.last_mut() {
            group.push(branch_to(b, us));
        }
    }
    out
}

/// The branch to one binding: its contact as Request-URI; along its Path
/// when it has one, else to where its REGISTER came from (the NAT
/// binding, or the connection for TCP), whatever the contact says. A
/// Path that is only our own flow entry (the phone registered here, see
/// `flow`) is left out: we send to it ourselves.
fn branch_to(b: &Binding, us: &Identity) -> BranchTarget {
    let own_flow = matches!(b.path.as_slice(), [only] if flow::is_own_entry(us, only));
    let direct = b.path.is_empty() || own_flow;
    let (addr, transport) = (b.received.addr, b.received.transport);
    BranchTarget {
        ruri: b.contact.clone(),
        // Over a connection: that one only (the phone's source port takes
        // no new connection); over UDP, UDP whatever the size.
        du: direct.then(|| crate::target::binding_uri(addr, transport)),
        route: if own_flow { Vec::new() } else { b.path.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Listener;

    fn member(addr: &str) -> Identity {
        Identity::with_secret(
            vec![Listener::new(addr.parse().unwrap(), None).unwrap()],
            b"a secret shared by the whole pool",
        )
    }

    fn binding(path: Vec<String>) -> Binding {
        Binding {
            contact: "sip:a@192.168.1.2:5060;transport=tcp".into(),
            expires_at: 100,
            q: None,
            call_id: "c".into(),
            cseq: 1,
            instance: None,
            reg_id: None,
            path,
            received: Received {
                transport: Transport::Tcp,
                addr: "203.0.113.7:40312".parse().unwrap(),
            },
            user_agent: None,
            registered_at: 0,
        }
    }

    #[test]
    fn the_owner_sends_to_its_connection_the_others_along_the_flow_entry() {
        let a = member("198.51.100.1:5060");
        let b = member("198.51.100.2:5060");
        let flow = Flow {
            transport: Transport::Tcp,
            addr: "203.0.113.7:40312".parse().unwrap(),
        };
        let entry = flow::path_entry(&a, flow).unwrap();
        let stored = binding(vec![entry.clone()]);
        let at_a = branch_to(&stored, &a);
        assert_eq!(
            at_a.du.as_deref(),
            Some("sip:203.0.113.7:40312;transport=tcp;sf-conn")
        );
        assert!(at_a.route.is_empty());
        let at_b = branch_to(&stored, &b);
        assert_eq!(at_b.du, None);
        assert_eq!(at_b.route, std::slice::from_ref(&entry));
        assert_eq!(at_b.ruri, stored.contact);
        // Our entry behind an edge's is not left out (it is not alone).
        let two = binding(vec!["<sip:edge.example.net;lr>".into(), entry.clone()]);
        assert_eq!(branch_to(&two, &a).route.len(), 2);
        // Ours after a restart without --secret-file (another key): still
        // ours, to the binding's source.
        let restarted = Identity::new(a.listeners.clone());
        let at_restarted = branch_to(&stored, &restarted);
        assert_eq!(at_restarted.du, at_a.du);
        assert!(at_restarted.route.is_empty());
    }
}
