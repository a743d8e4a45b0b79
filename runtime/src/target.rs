//! Next hops: where a URI says a message should go (host, port, transport).
//! STUB: filled in with the proxy core.

/// A parsed next hop.
#[derive(Debug, Clone)]
pub struct NextHop {
    pub host: String,
    pub port: Option<u16>,
}

impl NextHop {
    pub fn from_uri(_text: &str) -> Option<NextHop> {
        None
    }
}
