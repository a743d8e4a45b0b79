//! The routes compiler's parse and check stages on arbitrary (mostly
//! mutated YAML) text: never panic; every diagnostic points inside the
//! input (its line exists, its column is within that line or just past
//! its end; lines counted as YAML counts them), and rendering them never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, mut diagnostics) = sipforge_codegen::parse::parse(text);
    if let Some(file) = &file {
        sipforge_codegen::check::check(file, &mut diagnostics);
    }
    // Lines as YAML counts them (LF, CRLF or a lone CR), as the positions
    // and the rendering do; the end of the input is a position too (line
    // count + 1, column 1, after a final line break).
    let lines: Vec<&str> = sipforge_codegen::source_lines(text).collect();
    for d in &diagnostics {
        let shown = d.short("fuzz.yaml");
        let line = d.line as usize;
        assert!(
            line >= 1 && line <= lines.len() + 1,
            "{shown}: line {line} of a {}-line input",
            lines.len()
        );
        let chars = lines.get(line - 1).map_or(0, |l| l.chars().count());
        assert!(
            d.column >= 1 && d.column as usize <= chars + 1,
            "{shown}: column {} of a line of {chars} characters",
            d.column
        );
        assert!(d.len >= 1, "{shown}: empty caret");
    }
    let _ = sipforge_codegen::render_diagnostics("fuzz.yaml", text, &diagnostics);
});
