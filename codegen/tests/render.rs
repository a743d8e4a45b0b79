//! Rendering of diagnostics and the build-script directives.

use sipforge_codegen::{cargo_directives, compile, render_diagnostics};

const BAD: &str = "request:\n  - log: \"got $xx\"\n";

#[test]
fn rendered_has_location_caret_and_hint() {
    let d = compile("routes.yaml", BAD).unwrap_err();
    let r = render_diagnostics("routes.yaml", BAD, &d);
    let expected = "\
error: unknown variable `$xx`
 --> routes.yaml:2:15
  |
2 |   - log: \"got $xx\"
  |               ^^^ in this template
  |
  = help: variables are $rm $ru $rU $rd $rp $du $rs $rr $fu $fU $fd $ft $tu $tU $td $tt $ci $cs $si $sp $pr $ua $ds $au
";
    assert!(r.starts_with(expected), "got:\n{r}");
}

#[test]
fn cargo_error_lines_one_per_line() {
    let d = compile("routes.yaml", BAD).unwrap_err();
    let r = render_diagnostics("routes.yaml", BAD, &d);
    let lines = cargo_directives("error", &r);
    let all: Vec<&str> = lines.lines().collect();
    assert!(all.len() >= 6);
    assert!(
        all.iter().all(|l| l.starts_with("cargo::error=")),
        "{lines}"
    );
    assert_eq!(all[0], "cargo::error=error: unknown variable `$xx`");
    assert_eq!(all[1], "cargo::error= --> routes.yaml:2:15");
    assert!(all.iter().any(|l| l.ends_with("^^^ in this template")));
    // No empty directive (cargo drops empty messages), no trailing blank one.
    assert!(all.iter().all(|l| l.len() > "cargo::error=".len()));
}

#[test]
fn yaml_syntax_error_renders() {
    let text = "request:\n  - log: \"open\n";
    let d = compile("routes.yaml", text).unwrap_err();
    let r = render_diagnostics("routes.yaml", text, &d);
    assert!(r.contains("--> routes.yaml:2:10"), "{r}");
    assert!(r.contains("= help:"), "{r}");
}

/// Found by fuzzing (fuzz/ `routes_check`): YAML ends a line at a lone CR
/// too, so a file with old Mac line endings got diagnostics on lines that
/// the rendering (which split at LF only) did not have: an empty snippet
/// or the wrong line. Lines are now counted the YAML way everywhere.
#[test]
fn lone_carriage_returns_end_lines_for_positions_and_rendering() {
    let text = "request:\r  - log: \"hello\"\r  - log: \"got $xx\"\r";
    let d = compile("routes.yaml", text).unwrap_err();
    assert_eq!((d[0].line, d[0].column), (3, 15), "{d:?}");
    let r = render_diagnostics("routes.yaml", text, &d);
    assert!(r.contains("3 |   - log: \"got $xx\"\n"), "got:\n{r}");
    assert!(r.contains("^^^"), "got:\n{r}");

    // A YAML syntax error after lone CRs is on an existing line too.
    let text = "request:\r  - log: \"a\"\r  - log: [\r\r";
    let d = compile("routes.yaml", text).unwrap_err();
    let lines: Vec<&str> = sipforge_codegen::source_lines(text).collect();
    assert!(d[0].line as usize <= lines.len() + 1, "{d:?} of {lines:?}");

    let split = |t| sipforge_codegen::source_lines(t).collect::<Vec<_>>();
    assert_eq!(split("a\rb\r\nc\nd"), ["a", "b", "c", "d"]);
    assert_eq!(split("a\n\n"), ["a", ""]);
    assert_eq!(split(""), Vec::<&str>::new());
    assert_eq!(split("\r\r"), ["", ""]);
}

/// Found by fuzzing (fuzz/ `routes_check`): a quoted string folded over two
/// lines had the positions of its variables counted from its start as if
/// it were one line, so an unknown variable on the second line was
/// reported past the end of the first. Positions inside a scalar that is
/// not the file's own text on one line are now the scalar's start.
#[test]
fn positions_inside_a_folded_string_stay_on_a_line_of_the_file() {
    let text = "request:\n  - append_header: \"X-Folded:\n      $rq\"\n  - forward\n";
    let d = compile("routes.yaml", text).unwrap_err();
    assert_eq!(d[0].message, "unknown variable `$rq`");
    assert_eq!(
        (d[0].line, d[0].column),
        (2, 21),
        "the string's start: {d:?}"
    );
    let lines: Vec<&str> = sipforge_codegen::source_lines(text).collect();
    for d in &d {
        let line = lines[d.line as usize - 1];
        assert!(
            d.column as usize <= line.chars().count() + 1,
            "{d:?} in {line:?}"
        );
    }

    // An escape changes the length: the same.
    let text = "request:\n  - log: \"\\t\\t\\t\\t $rq\"\n  - forward\n";
    let d = compile("routes.yaml", text).unwrap_err();
    assert_eq!((d[0].line, d[0].column), (2, 11), "{d:?}");

    // A string that is the file's text keeps exact positions.
    let text = "request:\n  - append_header: \"X-One: $rq\"\n  - forward\n";
    let d = compile("routes.yaml", text).unwrap_err();
    assert_eq!((d[0].line, d[0].column), (2, 28), "{d:?}");
}
