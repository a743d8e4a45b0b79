//! Emitting `rtpengine:` (the control sockets, as `IP:PORT`) and
//! `rtp_manage` (a call of `Ctx::rtp_manage` with its flags).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{Emitter, lit};
use crate::ast::*;

impl Emitter {
    /// `rtpengine: &["IP:PORT", ...]` (checked by `check`).
    pub(super) fn media_settings(&self, file: &File) -> TokenStream {
        let sockets = file
            .rtpengine
            .iter()
            .filter_map(|s| crate::check::rtpengine_socket(&s.node).ok())
            .map(|a| lit(&a.to_string()));
        quote!(&[#(#sockets),*])
    }

    /// `cx.rtp_manage(line, flags)`.
    pub(super) fn rtp_manage(&self, line: u32, flags: Option<&Sp<String>>) -> TokenStream {
        let l = Literal::u32_unsuffixed(line);
        let flags = match flags {
            Some(f) => {
                let f = lit(&f.node);
                quote!(Some(#f))
            }
            None => quote!(None),
        };
        quote!(cx.rtp_manage(#l, #flags))
    }
}
