//! Conditions of `if`: a small lexer and a recursive-descent parser.
//!
//! Token positions are character offsets into the condition string, mapped
//! back into the file through the position of the condition's first
//! character.

use crate::ast::{CmpOp, Expr, Operand, Pos, Sp};
use crate::diagnostic::Diagnostic;
use crate::template;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Operand(Operand),
    Cmp(CmpOp),
    Match(bool),
    And,
    Or,
    Not,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    DotDot,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: Pos,
    len: u32,
}

struct Error {
    pos: Pos,
    len: u32,
    message: String,
    hint: String,
}

fn lex(text: &str, base: Pos, exact: bool) -> Result<Vec<Token>, Error> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = text.as_bytes();
    let pos_of = |i: usize| {
        if exact {
            base.advance(text[..i].chars().count(), i)
        } else {
            base
        }
    };
    while i < text.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let two = text.get(i..i + 2).unwrap_or("");
        let tok = match two {
            "==" => Some(Tok::Cmp(CmpOp::Eq)),
            "!=" => Some(Tok::Cmp(CmpOp::Ne)),
            "<=" => Some(Tok::Cmp(CmpOp::Le)),
            ">=" => Some(Tok::Cmp(CmpOp::Ge)),
            "=~" => Some(Tok::Match(false)),
            "!~" => Some(Tok::Match(true)),
            "&&" => Some(Tok::And),
            "||" => Some(Tok::Or),
            ".." => Some(Tok::DotDot),
            _ => None,
        };
        if let Some(tok) = tok {
            i += 2;
            out.push(Token {
                tok,
                pos: pos_of(start),
                len: 2,
            });
            continue;
        }
        let tok = match c {
            b'<' => Some(Tok::Cmp(CmpOp::Lt)),
            b'>' => Some(Tok::Cmp(CmpOp::Gt)),
            b'!' => Some(Tok::Not),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(tok) = tok {
            i += 1;
            out.push(Token {
                tok,
                pos: pos_of(start),
                len: 1,
            });
            continue;
        }
        // An address or network (`10.0.0.0/8`, `::1`, `fe80::/10`) in a list.
        let run = text[i..]
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'/'))
            .count();
        if run > 0 && crate::nets::looks_like_net(&text[i..i + run]) {
            i += run;
            out.push(Token {
                tok: Tok::Operand(Operand::Net(text[start..i].to_string())),
                pos: pos_of(start),
                len: run as u32,
            });
            continue;
        }
        let tok = if c == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(ch) = text[i..].chars().next() else {
                    return Err(Error {
                        pos: pos_of(start),
                        len: 1,
                        message: "unclosed string in condition".into(),
                        hint: "close the string with `\"`".into(),
                    });
                };
                i += ch.len_utf8();
                match ch {
                    '"' => break,
                    '\\' => {
                        let Some(n) = text[i..].chars().next() else {
                            continue;
                        };
                        i += n.len_utf8();
                        s.push(n);
                    }
                    _ => s.push(ch),
                }
            }
            Tok::Operand(Operand::Str(s))
        } else if c.is_ascii_digit() {
            while i < text.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            match text[start..i].parse::<i64>() {
                Ok(n) => Tok::Operand(Operand::Int(n)),
                Err(_) => {
                    return Err(Error {
                        pos: pos_of(start),
                        len: (i - start) as u32,
                        message: "integer too large".into(),
                        hint: "integers are 64-bit".into(),
                    });
                }
            }
        } else if c == b'$' {
            match template::read_var(&text[i + 1..]) {
                Some(Ok((v, used))) => {
                    i += 1 + used;
                    Tok::Operand(Operand::Var(v))
                }
                Some(Err((message, hint, used))) => {
                    return Err(Error {
                        pos: pos_of(start),
                        len: text[start..(i + 1 + used).min(text.len())].chars().count() as u32,
                        message,
                        hint,
                    });
                }
                None => {
                    return Err(Error {
                        pos: pos_of(start),
                        len: 1,
                        message: "lone `$` in condition".into(),
                        hint: "variables look like `$rm` or `$hdr(Name)`".into(),
                    });
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < text.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            match &text[start..i] {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                "in" => Tok::In,
                w => Tok::Operand(Operand::Word(w.to_string())),
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(Error {
                pos: pos_of(start),
                len: 1,
                message: format!("unexpected character `{ch}` in condition"),
                hint: "operators are == != < <= > >= =~ !~ in and or not".into(),
            });
        };
        out.push(Token {
            tok,
            pos: pos_of(start),
            len: text[start..i].chars().count() as u32,
        });
    }
    out.push(Token {
        tok: Tok::End,
        pos: pos_of(text.len()),
        len: 1,
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.at]
    }
    fn next(&mut self) -> Token {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }
    fn unexpected(&self, expected: &str) -> Error {
        let t = self.peek();
        let found = if t.tok == Tok::End {
            "the end of the condition".to_string()
        } else {
            describe(&t.tok)
        };
        Error {
            pos: t.pos,
            len: t.len,
            message: format!("expected {expected}, found {found}"),
            hint: "conditions look like `$rs == 404 and $rm == \"INVITE\"`".into(),
        }
    }
    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, Error> {
        if self.peek().tok == tok {
            Ok(self.next())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut lhs = self.and()?;
        while self.peek().tok == Tok::Or {
            self.next();
            let rhs = self.and()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }
    fn and(&mut self) -> Result<Expr, Error> {
        let mut lhs = self.unary()?;
        while self.peek().tok == Tok::And {
            self.next();
            let rhs = self.unary()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }
    fn unary(&mut self) -> Result<Expr, Error> {
        if self.peek().tok == Tok::Not {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Expr, Error> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Operand(Operand::Word(w)) if w == "in_dialog" => {
                self.next();
                Ok(Expr::InDialog)
            }
            Tok::Operand(Operand::Word(w)) if w == "behind_nat" => {
                self.next();
                if self.peek().tok == Tok::LParen {
                    let t = self.peek();
                    return Err(Error {
                        pos: t.pos,
                        len: t.len,
                        message: "`behind_nat` takes no argument".into(),
                        hint: "it tests the message the section runs on: write `behind_nat`".into(),
                    });
                }
                Ok(Expr::BehindNat)
            }
            Tok::Operand(Operand::Word(w)) if w == "rtp_manage" => {
                let at = self.next().pos;
                if self.peek().tok != Tok::LParen {
                    return Ok(Expr::RtpManage(None, at));
                }
                self.next();
                let arg = self.operand()?;
                self.expect(Tok::RParen, "`)`")?;
                let Operand::Str(flags) = arg.node else {
                    return Err(Error {
                        pos: arg.pos,
                        len: arg.len,
                        message: "`rtp_manage` takes its flags as one string".into(),
                        hint: "e.g. `rtp_manage(\"replace-origin\")`".into(),
                    });
                };
                Ok(Expr::RtpManage(
                    Some(Sp {
                        node: flags,
                        pos: arg.pos,
                        len: arg.len,
                    }),
                    at,
                ))
            }
            Tok::Operand(Operand::Word(w)) if w == "registered" => {
                self.next();
                if self.peek().tok != Tok::LParen {
                    return Ok(Expr::Registered(None));
                }
                self.next();
                let arg = self.operand()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Registered(Some(arg)))
            }
            Tok::Operand(Operand::Word(w)) if w == "exists" => {
                self.next();
                self.expect(Tok::LParen, "`(` after `exists`")?;
                let arg = self.next();
                let Tok::Operand(Operand::Var(crate::ast::Var::Hdr(name))) = arg.tok else {
                    return Err(Error {
                        pos: arg.pos,
                        len: arg.len,
                        message: "`exists` takes a header: `exists($hdr(Name))`".into(),
                        hint: "e.g. `exists($hdr(X-Customer))`".into(),
                    });
                };
                self.expect(Tok::RParen, "`)`")?;
                // Point at the name inside `$hdr(...)`.
                let name_pos = arg.pos.advance(5, 5);
                let len = name.chars().count();
                Ok(Expr::Exists(Sp::new(name, name_pos, len)))
            }
            Tok::Operand(_) => self.comparison(),
            _ => Err(self.unexpected("a condition")),
        }
    }
    fn operand(&mut self) -> Result<Sp<Operand>, Error> {
        let t = self.next();
        match t.tok {
            Tok::Operand(o) => Ok(Sp {
                node: o,
                pos: t.pos,
                len: t.len,
            }),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a variable, a string or a number"))
            }
        }
    }
    fn int(&mut self) -> Result<Sp<i64>, Error> {
        let t = self.next();
        match t.tok {
            Tok::Operand(Operand::Int(n)) => Ok(Sp {
                node: n,
                pos: t.pos,
                len: t.len,
            }),
            _ => {
                self.at -= 1;
                Err(self.unexpected("an integer"))
            }
        }
    }
    fn comparison(&mut self) -> Result<Expr, Error> {
        let lhs = self.operand()?;
        let t = self.peek().clone();
        match t.tok {
            Tok::Cmp(op) => {
                self.next();
                let rhs = self.operand()?;
                Ok(Expr::Cmp {
                    lhs,
                    op: Sp {
                        node: op,
                        pos: t.pos,
                        len: t.len,
                    },
                    rhs,
                })
            }
            Tok::Match(negate) => {
                self.next();
                let regex = self.operand()?;
                Ok(Expr::Match {
                    lhs,
                    negate,
                    op: t.pos,
                    regex,
                })
            }
            Tok::In => {
                self.next();
                if self.peek().tok == Tok::LBracket {
                    self.next();
                    let mut items = Vec::new();
                    if self.peek().tok != Tok::RBracket {
                        loop {
                            items.push(self.operand()?);
                            if self.peek().tok == Tok::Comma {
                                self.next();
                                continue;
                            }
                            break;
                        }
                    }
                    self.expect(Tok::RBracket, "`,` or `]`")?;
                    Ok(Expr::InList { lhs, items })
                } else {
                    let lo = self
                        .int()
                        .map_err(|_| self.unexpected("`[` or a range like `500..599`"))?;
                    self.expect(Tok::DotDot, "`..` in a range like `500..599`")?;
                    let hi = self.int()?;
                    Ok(Expr::InRange { lhs, lo, hi })
                }
            }
            _ => Ok(Expr::Bare(lhs)),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Operand(Operand::Var(v)) => format!("`{}`", v.display()),
        Tok::Operand(Operand::Str(s)) => format!("\"{s}\""),
        Tok::Operand(Operand::Int(n)) => format!("`{n}`"),
        Tok::Operand(Operand::Word(w)) => format!("`{w}`"),
        Tok::Operand(Operand::Net(n)) => format!("`{n}`"),
        Tok::Cmp(op) => format!("`{}`", op.text()),
        Tok::Match(false) => "`=~`".into(),
        Tok::Match(true) => "`!~`".into(),
        Tok::And => "`and`".into(),
        Tok::Or => "`or`".into(),
        Tok::Not => "`not`".into(),
        Tok::In => "`in`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::DotDot => "`..`".into(),
        Tok::End => "the end".into(),
    }
}

/// Parse a condition whose first character is at `base`. A syntax error is
/// reported and gives `None`.
pub fn parse(text: &str, base: Pos, diags: &mut Vec<Diagnostic>) -> Option<Expr> {
    parse_scalar(text, base, true, diags)
}

/// Parse a condition, a scalar that starts at `base` in the file; `exact`
/// as in [`crate::template::parse_scalar`].
pub fn parse_scalar(
    text: &str,
    base: Pos,
    exact: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    let result = lex(text, base, exact).and_then(|toks| {
        let mut p = Parser { toks, at: 0 };
        let e = p.or()?;
        if p.peek().tok != Tok::End {
            return Err(p.unexpected("`and`, `or` or the end of the condition"));
        }
        Ok(e)
    });
    match result {
        Ok(e) => Some(e),
        Err(e) => {
            diags.push(
                Diagnostic::error(e.pos, e.len, e.message)
                    .label("in this condition")
                    .hint(e.hint),
            );
            None
        }
    }
}
