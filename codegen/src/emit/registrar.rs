//! Emitting `registrar:`, `lookup` and `registered`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{Emitter, lit, template};
use crate::ast::*;
use crate::check::block_ends;

impl Emitter {
    /// `registrar: Some(RegistrarSettings { .. })` when the file has the
    /// block or uses `save`, `lookup` or `registered`, else `None`.
    pub(super) fn registrar_settings(&self, file: &File) -> TokenStream {
        if file.registrar.is_none() && !uses_registrar(file) {
            return quote!(None);
        }
        let r = file.registrar.as_ref();
        let num = |get: fn(&RegistrarSpec) -> &Option<Sp<i64>>, default: u32| {
            let n = r
                .and_then(|r| get(r).as_ref())
                .map_or(default, |s| u32::try_from(s.node).unwrap_or(default));
            Literal::u32_unsuffixed(n)
        };
        let store = lit(r
            .and_then(|r| r.store.as_ref())
            .map_or("memory", |s| s.node.as_str()));
        let min = num(|r| &r.min_expires, RegistrarSpec::DEFAULT_MIN_EXPIRES);
        let max = num(|r| &r.max_expires, RegistrarSpec::DEFAULT_MAX_EXPIRES);
        let def = num(|r| &r.default_expires, RegistrarSpec::DEFAULT_EXPIRES);
        let contacts = num(|r| &r.max_contacts, RegistrarSpec::DEFAULT_MAX_CONTACTS);
        let contact_size = num(
            |r| &r.contact_max_size,
            RegistrarSpec::DEFAULT_CONTACT_MAX_SIZE,
        );
        let bindings = num(|r| &r.max_bindings, RegistrarSpec::DEFAULT_MAX_BINDINGS);
        let keepalive = Literal::u64_unsuffixed(r.and_then(|r| r.keepalive_ms).unwrap_or(0));
        quote! {
            Some(RegistrarSettings {
                store: #store,
                min_expires: #min,
                max_expires: #max,
                default_expires: #def,
                max_contacts: #contacts,
                contact_max_size: #contact_size,
                max_bindings: #bindings,
                keepalive_ms: #keepalive,
            })
        }
    }

    /// `lookup`: when the Request-URI has no contact, `not_found` runs,
    /// then 404 unless it ended the route.
    pub(super) fn lookup(&mut self, line: u32, not_found: Option<&Block>) -> TokenStream {
        let l = Literal::u32_unsuffixed(line);
        let body = not_found.map(|b| self.block(b)).unwrap_or_default();
        let ends = not_found.is_some_and(block_ends);
        let fallback = if ends {
            quote!()
        } else {
            quote!(return cx.reply(#l, 404, None, &[]);)
        };
        quote! {
            if !cx.lookup(#l) {
                #body
                #fallback
            }
        }
    }

    /// `registered`, `registered("$fu")`, `registered("sip:...")`.
    pub(super) fn registered(&self, arg: Option<&Sp<Operand>>) -> TokenStream {
        let aor: Option<Template> = arg.map(|a| match &a.node {
            Operand::Var(v) => Template {
                pieces: vec![TPiece::Var(Sp::new(v.clone(), a.pos, 1))],
            },
            Operand::Str(s) => match crate::check::registered_var(s) {
                Some(v) => Template {
                    pieces: vec![TPiece::Var(Sp::new(v, a.pos, 1))],
                },
                None => Template {
                    pieces: vec![TPiece::Lit(s.clone())],
                },
            },
            _ => Template::default(),
        });
        match aor {
            Some(t) => {
                let t = template(&t);
                quote!(cx.registered(Some(#t)))
            }
            None => quote!(cx.registered(None)),
        }
    }
}

/// Whether any block uses `save`, `lookup` or `registered`.
fn uses_registrar(file: &File) -> bool {
    fn expr(e: &Expr) -> bool {
        match e {
            Expr::Registered(_) => true,
            Expr::And(a, b) | Expr::Or(a, b) => expr(a) || expr(b),
            Expr::Not(a) => expr(a),
            _ => false,
        }
    }
    fn walk(b: &Block) -> bool {
        b.iter().any(|s| match &s.kind {
            StepKind::Save | StepKind::Lookup { .. } => true,
            StepKind::If {
                cond,
                then,
                otherwise,
            } => expr(cond) || walk(then) || otherwise.as_ref().is_some_and(walk),
            StepKind::Switch { cases, default, .. } => {
                cases.iter().any(|c| walk(&c.body)) || default.as_ref().is_some_and(walk)
            }
            _ => false,
        })
    }
    file.sections.iter().any(|s| walk(&s.body)) || file.routes.iter().any(|r| walk(&r.body))
}
