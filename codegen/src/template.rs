//! Templates: `log`, `append_header` and `set` values with `$var`,
//! `$(var)`, `$hdr(Name)` and `$$`, split into pieces at build time.

use crate::ast::{Pos, Sp, TPiece, Template, Var};
use crate::diagnostic::Diagnostic;
use crate::suggest;

/// Split `text`, whose first character is at `base` in the file.
pub fn parse(text: &str, base: Pos, diags: &mut Vec<Diagnostic>) -> Template {
    parse_scalar(text, base, true, diags)
}

/// Split `text`, a scalar that starts at `base` in the file. `exact` says
/// the text is the file's own text there, on one line, so that character
/// `i` is `i` columns further; otherwise (folded over lines, escapes) a
/// position inside it is given as the scalar's start.
pub fn parse_scalar(text: &str, base: Pos, exact: bool, diags: &mut Vec<Diagnostic>) -> Template {
    let mut pieces: Vec<TPiece> = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    let pos_of = |i: usize| {
        if exact {
            base.advance(text[..i].chars().count(), i)
        } else {
            base
        }
    };
    while i < text.len() {
        if bytes[i] != b'$' {
            let ch = text[i..].chars().next().unwrap_or('\0');
            lit.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let rest = &text[i + 1..];
        if rest.starts_with('$') {
            lit.push('$');
            i += 2;
            continue;
        }
        match read_var(rest) {
            Some(Ok((var, used))) => {
                if !lit.is_empty() {
                    pieces.push(TPiece::Lit(std::mem::take(&mut lit)));
                }
                let len = text[i..i + 1 + used].chars().count();
                pieces.push(TPiece::Var(Sp::new(var, pos_of(i), len)));
                i += 1 + used;
            }
            Some(Err((msg, hint, used))) => {
                let len = text[i..i + 1 + used].chars().count();
                diags.push(
                    Diagnostic::error(pos_of(i), len as u32, msg)
                        .label("in this template")
                        .hint(hint),
                );
                i += 1 + used;
            }
            None => {
                diags.push(
                    Diagnostic::error(pos_of(i), 1, "lone `$` in a template")
                        .label("not followed by a variable name")
                        .hint("write `$$` for a literal dollar sign"),
                );
                lit.push('$');
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        pieces.push(TPiece::Lit(lit));
    }
    Template { pieces }
}

type VarRead = Result<(Var, usize), (String, String, usize)>;

/// Read a variable after a `$`: `rm`, `(rm)`, `hdr(Name)`. Returns the
/// variable and the number of bytes used after the `$`, an error, or None
/// when no name follows.
pub fn read_var(rest: &str) -> Option<VarRead> {
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')')?;
        let name = &inner[..close];
        return Some(named(name, close + 2));
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if name_len == 0 || !rest.as_bytes()[0].is_ascii_alphabetic() {
        return None;
    }
    let name = &rest[..name_len];
    if name == "hdr" {
        let after = &rest[3..];
        let Some(inner) = after.strip_prefix('(') else {
            return Some(Err((
                "`$hdr` needs a header name".into(),
                "write `$hdr(Name)`, e.g. `$hdr(User-Agent)`".into(),
                3,
            )));
        };
        let Some(close) = inner.find(')') else {
            return Some(Err((
                "unclosed `$hdr(`".into(),
                "write `$hdr(Name)` with a closing parenthesis".into(),
                rest.len(),
            )));
        };
        let header = inner[..close].trim().to_string();
        return Some(Ok((Var::Hdr(header), 3 + close + 2)));
    }
    Some(named(name, name_len))
}

fn named(name: &str, used: usize) -> VarRead {
    if let Some(v) = Var::by_name(name) {
        return Ok((v, used));
    }
    let mut hint = match suggest::closest(&format!("${name}"), Var::names()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "variables are {}",
            Var::names().collect::<Vec<_>>().join(" ")
        ),
    };
    // `$rUabc`: a known variable followed by text.
    if let Some(known) = Var::names()
        .filter(|n| name.starts_with(&n[1..]))
        .max_by_key(|n| n.len())
    {
        hint = format!(
            "to put text right after `{known}`, write `$({})`{}",
            &known[1..],
            &name[known.len() - 1..]
        );
    }
    Err((format!("unknown variable `${name}`"), hint, used))
}
