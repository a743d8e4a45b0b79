//! Emitting `auth:`, `limits:`, `authenticate` and network lists: the
//! settings literals and the `NetList` tables (sorted ranges, searched at
//! run time).

use std::str::FromStr;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::{Emitter, lit, marker, template};
use crate::ast::*;
use crate::nets::{self, Range};

impl Emitter {
    /// A `NetList` static for these networks (entries already checked).
    pub(super) fn net_list<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a str>,
        line: u32,
    ) -> Ident {
        let ranges = nets::ranges(entries).unwrap_or_default();
        if let Some((id, _, _)) = self.nets.iter().find(|(_, r, _)| *r == ranges) {
            return id.clone();
        }
        let id = format_ident!("NETS_{}", self.nets.len() + 1);
        self.nets.push((id.clone(), ranges, line));
        id
    }

    /// The `NetList` statics.
    pub(super) fn net_statics(&self) -> Vec<TokenStream> {
        self.nets
            .iter()
            .map(|(id, ranges, line)| {
                let m = marker(*line);
                let items = ranges.iter().map(range);
                quote! { #m static #id: NetList = NetList::new(&[#(#items),*]); }
            })
            .collect()
    }

    /// `auth: Some(AuthSettings { .. })` when the file has `auth:` or
    /// uses `authenticate`, else `None`.
    pub(super) fn auth_settings(&self, file: &File) -> TokenStream {
        if file.auth.is_none() && !uses_authenticate(file) {
            return quote!(None);
        }
        let spec = file.auth.as_ref();
        let realm = match spec.and_then(|a| a.realm.as_ref()) {
            Some(t) => {
                let t = template(t);
                quote!(Some(#t))
            }
            None => quote!(None),
        };
        let path = |p: Option<&Sp<String>>| match p {
            Some(p) => {
                let p = lit(&p.node);
                quote!(Some(#p))
            }
            None => quote!(None),
        };
        let credentials = path(spec.and_then(|a| a.credentials.as_ref()));
        let secret = path(spec.and_then(|a| a.secret.as_ref()));
        let names: Vec<String> = match spec.and_then(|a| a.algorithms.as_ref()) {
            Some(algs) => algs.iter().map(|a| a.node.to_ascii_uppercase()).collect(),
            None => AuthSpec::ALGORITHMS.iter().map(|s| s.to_string()).collect(),
        };
        let algorithms = names.iter().map(|n| {
            let v = format_ident!("{}", if n == "MD5" { "Md5" } else { "Sha256" });
            quote!(DigestAlgorithm::#v)
        });
        let ttl = Literal::u64_unsuffixed(
            spec.and_then(|a| a.nonce_ttl_ms)
                .unwrap_or(AuthSpec::DEFAULT_NONCE_TTL_MS),
        );
        quote! {
            Some(AuthSettings {
                realm: #realm,
                credentials: #credentials,
                algorithms: &[#(#algorithms),*],
                nonce_ttl_ms: #ttl,
                secret: #secret,
            })
        }
    }

    /// `tls: Some(TlsSettings { .. })` or `None`.
    pub(super) fn tls_settings(&self, file: &File) -> TokenStream {
        let Some(tls) = &file.tls else {
            return quote!(None);
        };
        let certificate = lit(&tls.certificate.node);
        let key = lit(&tls.key.node);
        let ca = match &tls.ca {
            Some(ca) => {
                let ca = lit(&ca.node);
                quote!(Some(#ca))
            }
            None => quote!(None),
        };
        let verify = tls.verify_client;
        quote! {
            Some(TlsSettings {
                certificate: #certificate,
                key: #key,
                ca: #ca,
                verify_client: #verify,
            })
        }
    }

    /// `dns: Some(DnsSettings { .. })` or `None`; servers as `IP:PORT`.
    pub(super) fn dns_settings(&self, file: &File) -> TokenStream {
        let Some(dns) = &file.dns else {
            return quote!(None);
        };
        let servers = dns
            .servers
            .iter()
            .filter_map(|s| crate::check::dns_server(&s.node).ok())
            .map(|s| lit(&s));
        quote!(Some(DnsSettings { servers: &[#(#servers),*] }))
    }

    /// `limits: Some(LimitSettings { .. })` or `None`.
    pub(super) fn limit_settings(&mut self, file: &File) -> TokenStream {
        let Some(limits) = &file.limits else {
            return quote!(None);
        };
        let per_source = match &limits.per_source {
            Some(p) => {
                let requests = Literal::u32_unsuffixed(p.requests);
                let per = Literal::u64_unsuffixed(p.per_ms);
                let ban = Literal::u64_unsuffixed(p.ban_ms);
                let prefix = match p.ipv6_prefix {
                    Some(n) => {
                        let n = Literal::u8_unsuffixed(n);
                        quote!(#n)
                    }
                    None => quote!(DEFAULT_IPV6_PREFIX),
                };
                quote!(Some(PerSource {
                    requests: #requests,
                    per_ms: #per,
                    ban_ms: #ban,
                    ipv6_prefix: #prefix,
                }))
            }
            None => quote!(None),
        };
        let line = limits.trusted.first().map_or(1, |t| t.pos.line);
        let trusted = self.net_list(limits.trusted.iter().map(|t| t.node.as_str()), line);
        quote! {
            Some(LimitSettings {
                per_source: #per_source,
                trusted: &#trusted,
            })
        }
    }

    /// `$var in [networks]`.
    pub(super) fn in_nets(&mut self, lhs: &Operand, items: &[Sp<Operand>]) -> TokenStream {
        let line = items.first().map_or(1, |i| i.pos.line);
        let id = self.net_list(items.iter().filter_map(|i| nets::item_text(&i.node)), line);
        let Operand::Var(v) = lhs else {
            return quote!(false);
        };
        let v = super::var(v);
        quote!(cx.ip_in(#v, &#id))
    }
}

/// `NetRange::v4(lo, hi)` / `NetRange::v6(lo, hi)`.
fn range(r: &Range) -> TokenStream {
    // Hexadecimal: the network boundaries read at a glance (0x0a000000..0x0affffff).
    let hex = |v: u128, digits: usize| {
        Literal::from_str(&format!("0x{v:0digits$x}"))
            .unwrap_or_else(|_| Literal::u128_unsuffixed(v))
    };
    if r.v4 {
        let (lo, hi) = (hex(r.lo, 8), hex(r.hi, 8));
        quote!(NetRange::v4(#lo, #hi))
    } else {
        let (lo, hi) = (hex(r.lo, 32), hex(r.hi, 32));
        quote!(NetRange::v6(#lo, #hi))
    }
}

/// Whether any block of the file has an `authenticate` step.
fn uses_authenticate(file: &File) -> bool {
    fn walk(b: &Block) -> bool {
        b.iter().any(|s| match &s.kind {
            StepKind::Authenticate => true,
            StepKind::Lookup { not_found: Some(b) } => walk(b),
            StepKind::If {
                then, otherwise, ..
            } => walk(then) || otherwise.as_ref().is_some_and(walk),
            StepKind::Switch { cases, default, .. } => {
                cases.iter().any(|c| walk(&c.body)) || default.as_ref().is_some_and(walk)
            }
            _ => false,
        })
    }
    file.sections.iter().any(|s| walk(&s.body)) || file.routes.iter().any(|r| walk(&r.body))
}
