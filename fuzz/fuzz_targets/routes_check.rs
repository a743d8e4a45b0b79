//! The routes compiler's parse and check stages on arbitrary (mostly
//! mutated YAML) text: never panic; every diagnostic points inside the
//! input (its line exists, its column is within that line or just past
//! its end), and rendering them never panics.
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
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &diagnostics {
        let line = d.line as usize;
        assert!(
            line >= 1 && line <= lines.len().max(1),
            "{}: line {} of a {}-line input",
            d.short("fuzz.yaml"),
            d.line,
            lines.len()
        );
        let chars = lines
            .get(line - 1)
            .map_or(0, |l| l.trim_end_matches('\r').chars().count());
        assert!(
            d.column >= 1 && d.column as usize <= chars + 1,
            "{}: column {} of a line of {chars} characters",
            d.short("fuzz.yaml"),
            d.column
        );
        assert!(d.len >= 1, "{}: empty caret", d.short("fuzz.yaml"));
    }
    let _ = sipforge_codegen::render_diagnostics("fuzz.yaml", text, &diagnostics);
});
