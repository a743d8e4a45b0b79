//! Build errors and warnings, and their rustc-style rendering.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::ast::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the routes file, pointing at `line:column` (1-based,
/// column in characters) with a caret `len` characters wide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u32,
    pub column: u32,
    pub len: u32,
    pub message: String,
    pub label: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(pos: Pos, len: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            line: pos.line.max(1),
            column: pos.col.max(1),
            len: len.max(1),
            message: message.into(),
            label: String::new(),
            hint: None,
        }
    }

    pub fn warning(pos: Pos, len: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(pos, len, message)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `routes.yaml:3:9: message` on one line, for tests and logs.
    pub fn short(&self, path: &str) -> String {
        format!("{}:{}:{}: {}", path, self.line, self.column, self.message)
    }
}

/// Render diagnostics like rustc does:
///
/// ```text
/// error: unknown variable `$xx`
///  --> routes.yaml:3:15
///   |
/// 3 |   - log: "got $xx"
///   |               ^^^ not a variable of the routes language
///   |
///   = help: variables are $rm, $ru, ...
/// ```
pub fn render_diagnostics(path: &str, text: &str, diagnostics: &[Diagnostic]) -> String {
    let renderer = Renderer::plain();
    let mut out = String::new();
    for d in diagnostics {
        let line_text = source_lines(text).nth(d.line as usize - 1).unwrap_or("");
        // Byte range of the caret within the line.
        let start = byte_at_char(line_text, d.column as usize - 1);
        let end = byte_at_char(line_text, (d.column + d.len) as usize - 1).max(start);
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut annotation = AnnotationKind::Primary.span(start..end);
        if !d.label.is_empty() {
            annotation = annotation.label(d.label.as_str());
        }
        let snippet = Snippet::source(line_text)
            .line_start(d.line as usize)
            .path(path)
            .annotation(annotation);
        let mut group: Group<'_> = level.primary_title(d.message.as_str()).element(snippet);
        if let Some(h) = &d.hint {
            group = group.element(Level::HELP.message(h.as_str()));
        }
        out.push_str(&renderer.render(&[group]));
        out.push_str("\n\n");
    }
    out
}

/// The lines of a routes file as the YAML parser counts them, and so as
/// every position in a diagnostic counts them: a line ends at LF, CRLF or
/// a lone CR (YAML 1.2 §5.4), where `str::lines` only knows the first two.
/// Like `str::lines`, no empty last line after a final line break.
pub fn source_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(end) => {
                let next = if s[end..].starts_with("\r\n") {
                    end + 2
                } else {
                    end + 1
                };
                rest = Some(&s[next..]);
                Some(&s[..end])
            }
            None => {
                rest = None;
                (!s.is_empty()).then_some(s)
            }
        }
    })
}

fn byte_at_char(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

/// Turn rendered diagnostics into build-script directives, one per line
/// (`cargo::error=` or `cargo::warning=`): cargo takes a directive's message
/// from a single line, so a multi-line report needs one directive per line.
/// Empty lines become a single space so cargo keeps them.
pub fn cargo_directives(directive: &str, rendered: &str) -> String {
    let mut out = String::new();
    for line in rendered.trim_end().lines() {
        let line = if line.is_empty() { " " } else { line };
        out.push_str("cargo::");
        out.push_str(directive);
        out.push('=');
        out.push_str(line);
        out.push('\n');
    }
    out
}
