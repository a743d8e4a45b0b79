//! The proxy core, sans-IO: a datagram and its source go in, the datagrams
//! to send come out. No sockets, no clocks, no tokio; the network layer
//! (`crate::net`) owns those. Unit tests drive it with plain byte strings.

pub mod branch;
pub mod identity;
pub mod received;
pub mod reply;
pub mod route_set;
mod stateless;

use std::net::SocketAddr;

use crate::api::Routes;
use crate::target::NextHop;
pub use identity::{Identity, Listener};

/// A datagram the core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Index of the listening socket to send from.
    pub socket: usize,
    /// Where to.
    pub to: NextHop,
    pub bytes: Vec<u8>,
}

/// The proxy core: the compiled routes and who we are.
pub struct Core {
    routes: &'static dyn Routes,
    identity: Identity,
}

impl Core {
    pub fn new(routes: &'static dyn Routes, identity: Identity) -> Core {
        Core { routes, identity }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Handle one received datagram that arrived on socket `socket` from
    /// `source`; what must be sent is pushed onto `out`.
    pub fn handle(
        &self,
        datagram: &[u8],
        source: SocketAddr,
        socket: usize,
        out: &mut Vec<Outgoing>,
    ) {
        stateless::handle(self, datagram, source, socket, out)
    }
}
