//! The `rtpengine:` list and the `rtp_manage` step's flags (media relay
//! through rtpengine's ng control protocol).

use super::Parser;
use crate::ast::Sp;
use crate::yaml::{Node, Value};

impl Parser<'_> {
    /// `rtpengine: [ "udp:127.0.0.1:2223", ... ]` (or one string).
    pub(super) fn rtpengine(&mut self, v: &Node) -> Vec<Sp<String>> {
        self.socket_list(
            v,
            "a list of rtpengine control sockets",
            "e.g. `rtpengine: [ \"udp:127.0.0.1:2223\" ]`",
            "an rtpengine control socket such as `udp:127.0.0.1:2223`",
            "quote it: \"udp:127.0.0.1:2223\"",
        )
    }

    /// `rtp_manage: "replace-origin replace-session-connection"`.
    pub(super) fn rtp_flags(&mut self, v: &Node) -> Option<Sp<String>> {
        match &v.value {
            Value::Str(s) => Some(self.sp_str(v, s)),
            _ => {
                self.expected(
                    v,
                    "rtpengine flags as one string",
                    "e.g. `- rtp_manage: \"replace-origin replace-session-connection\"`",
                );
                None
            }
        }
    }
}
