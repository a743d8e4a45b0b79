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
  = help: variables are $rm $ru $rU $rd $rp $du $rs $rr $fu $fU $fd $ft $tu $tU $td $tt $ci $cs $si $sp $pr $ua $ds
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
