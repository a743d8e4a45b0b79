//! Checks of `rtpengine:` and `rtp_manage`: every control socket is
//! `udp:IP:PORT`, a routes file that manages media names at least one,
//! and the flags are one line of printable text (they go into the ng
//! request as they are).

use super::{Checker, Ctx};
use crate::ast::*;

/// An rtpengine control socket: `udp:IP:PORT` (IPv6 in brackets), as the
/// address it names.
pub fn rtpengine_socket(text: &str) -> Result<std::net::SocketAddr, String> {
    let Some(addr) = text.strip_prefix("udp:") else {
        return Err(format!(
            "`{text}` is not an rtpengine control socket: only `udp:IP:PORT` (the ng protocol over UDP) is supported"
        ));
    };
    addr.parse()
        .map_err(|_| format!("`{addr}` is not an IP address and port"))
}

impl Checker<'_> {
    pub(super) fn media_settings(&mut self) {
        for s in &self.file.rtpengine {
            if let Err(m) = rtpengine_socket(&s.node) {
                self.err(
                    s.pos,
                    s.len,
                    m,
                    "",
                    "e.g. `rtpengine: [ \"udp:127.0.0.1:2223\" ]`",
                );
            }
        }
    }

    /// `rtp_manage` (a step at `at`, or a condition): rtpengine must be
    /// named, and the flags must be printable text.
    pub(super) fn rtp_manage(&mut self, at: (Pos, u32), flags: Option<&Sp<String>>, _ctx: Ctx) {
        if self.file.rtpengine.is_empty() {
            self.err(
                at.0,
                at.1,
                "`rtp_manage` needs an `rtpengine:` list",
                "nothing to send the offer, answer or delete to",
                "add e.g. `rtpengine: [ \"udp:127.0.0.1:2223\" ]`",
            );
        }
        if let Some(f) = flags
            && f.node.chars().any(|c| c.is_control())
        {
            self.err(
                f.pos,
                f.len,
                "rtpengine flags must be printable text on one line",
                "",
                "e.g. `\"replace-origin replace-session-connection\"`",
            );
        }
    }
}
