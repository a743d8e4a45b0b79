//! Checks of `tls:` and `dns:`: a `tls:`/`wss:` socket needs a `tls:`
//! block; DNS servers are IP addresses with an optional port.

use super::Checker;
use crate::ast::*;

impl Checker<'_> {
    pub(super) fn transport_settings(&mut self) {
        let file = self.file;
        if file.tls.is_none()
            && let Some(l) = file.listen.iter().find(|l| {
                (l.node.starts_with("tls:") || l.node.starts_with("wss:"))
                    && super::check_listen(&l.node).is_ok()
            })
        {
            self.err(l.pos, l.len, "a `tls:` or `wss:` socket needs a `tls:` block", "", "add `tls: { certificate: /path/cert.pem, key: /path/key.pem }` (the files are read at start)");
        }
        if let Some(dns) = &file.dns {
            if dns.servers.is_empty() {
                self.err(Pos { line: 1, col: 1, offset: 0 }, 1, "`dns.servers` is empty", "", "list at least one server, or leave `dns:` out to use the system's resolver configuration");
            }
            for s in &dns.servers {
                if let Err(m) = dns_server(&s.node) {
                    self.err(s.pos, s.len, format!("invalid DNS server: {m}"), "", "write an IP address, with a port if not 53: `127.0.0.1`, `127.0.0.1:5353`, `[::1]:53`");
                }
            }
        }
    }
}

/// A DNS server `IP`, `IP:PORT` or `[v6]:PORT`, as `IP:PORT` (port 53 by default).
pub fn dns_server(text: &str) -> Result<String, String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr.to_string());
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(std::net::SocketAddr::new(ip, 53).to_string()),
        Err(_) => Err(format!(
            "`{text}` is not an IP address with an optional port"
        )),
    }
}
