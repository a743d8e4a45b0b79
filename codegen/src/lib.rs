//! sipforge-codegen: compiles a `routes.yaml` into Rust code that calls
//! `sipforge_runtime::api`.
//!
//! The pipeline is `yaml` (YAML with positions) -> `parse` (syntax tree) ->
//! `check` (every build-time rule, all errors at once) -> `emit` (Rust via
//! quote, syn and prettyplease). `build.rs` of the proxy calls [`compile_file`]
//! and prints [`cargo_directives`] when there are errors.

pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod emit;
pub mod expr;
pub mod nets;
pub mod parse;
mod suggest;
pub mod template;
pub mod yaml;

use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, Severity, cargo_directives, render_diagnostics, source_lines};

/// The result of compiling one file: the code when there is no error, and
/// every diagnostic (warnings too), sorted by position.
#[derive(Debug)]
pub struct Output {
    pub code: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Output {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

/// Compile a routes file: `path` is how the file is named in messages and
/// in `Settings::source_path`, `text` its contents.
pub fn compile_file(path: &str, text: &str) -> Output {
    let (file, mut diagnostics) = parse::parse(text);
    if let Some(file) = &file {
        check::check(file, &mut diagnostics);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column, d.severity));
    diagnostics.dedup();
    let code = match &file {
        Some(file) if !diagnostics.iter().any(Diagnostic::is_error) => {
            let sha256 = sha256_hex(text.as_bytes());
            let src = emit::Source {
                path,
                text,
                sha256: &sha256,
            };
            match emit::emit(file, &src) {
                Ok(code) => Some(code),
                Err(msg) => {
                    diagnostics.push(Diagnostic::error(ast::Pos { line: 1, col: 1, offset: 0 }, 1, msg).hint("this is a bug in sipforge-codegen; please report it with the routes file"));
                    None
                }
            }
        }
        _ => None,
    };
    Output { code, diagnostics }
}

/// Compile a routes file to Rust code, or every error (warnings are
/// dropped on success; see [`compile_file`] to get them).
pub fn compile(path: &str, text: &str) -> Result<String, Vec<Diagnostic>> {
    let out = compile_file(path, text);
    match out.code {
        Some(code) => Ok(code),
        None => Err(out.diagnostics),
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
