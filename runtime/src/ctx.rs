//! `Ctx`: what a route sees and does while it runs on one message.
//!
//! The generated code reads variables and calls actions through these
//! methods only (see `api`). STUB: bodies are filled in by the proxy core.

use std::borrow::Cow;

use crate::api::{Flow, Level, RelayTo, Target, Template, Var};

/// The context of one route run.
pub struct Ctx<'a> {
    _p: std::marker::PhantomData<&'a ()>,
}

impl<'a> Ctx<'a> {
    /// Value of a variable as text; empty when the message has none.
    pub fn get(&self, _v: Var) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    /// Value of an integer variable (`$rs`, `$cs`, `$sp`, `$rp`).
    pub fn int(&self, _v: Var) -> Option<i64> {
        None
    }
    /// `exists($hdr(Name))`
    pub fn has_header(&self, _name: &str) -> bool {
        false
    }
    /// `in_dialog`: the To header has a tag.
    pub fn in_dialog(&self) -> bool {
        false
    }
    /// `log`
    pub fn log(&mut self, _line: u32, _level: Level, _msg: &Template) {}
    /// `append_header: "Name: value"` (name checked at build time)
    pub fn append_header(&mut self, _line: u32, _name: &'static str, _value: &Template) {}
    /// `remove_header: Name`
    pub fn remove_header(&mut self, _line: u32, _name: &'static str) {}
    /// `set: { $var: template }`
    pub fn set(&mut self, _line: u32, _var: Var, _value: &Template) {}
    /// `record_route`
    pub fn record_route(&mut self, _line: u32) {}
    /// `reply` (ends the route)
    pub fn reply(
        &mut self,
        _line: u32,
        _code: u16,
        _reason: Option<&'static str>,
        _headers: &[(&'static str, &'static Template)],
    ) -> Flow {
        Flow::Stop
    }
    /// `forward` (ends the route)
    pub fn forward(&mut self, _line: u32, _to: Option<&'static Target>) -> Flow {
        Flow::Stop
    }
    /// `relay` (ends the route)
    pub fn relay(&mut self, _line: u32, _to: RelayTo) -> Flow {
        Flow::Stop
    }
    /// `drop` (ends the route)
    pub fn drop_message(&mut self, _line: u32) -> Flow {
        Flow::Stop
    }
}
