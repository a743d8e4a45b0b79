//! Snapshot tests of the generated code for the root routes.yaml and every
//! fixture. Set `UPDATE_SNAPSHOTS=1` to rewrite the expected files.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn snapshot(rel: &str, name: &str) {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    let code = match sipforge_codegen::compile(rel, &text) {
        Ok(code) => code,
        Err(d) => panic!("{}", sipforge_codegen::render_diagnostics(rel, &text, &d)),
    };
    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.rs.snap"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &code).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "missing {}; run with UPDATE_SNAPSHOTS=1",
            expected_path.display()
        )
    });
    if code != expected {
        for (i, (a, b)) in code.lines().zip(expected.lines()).enumerate() {
            if a != b {
                panic!(
                    "{name}: first difference at line {}:\n  got:      {a}\n  expected: {b}\n(run with UPDATE_SNAPSHOTS=1 to accept)",
                    i + 1
                );
            }
        }
        panic!("{name}: output length differs (run with UPDATE_SNAPSHOTS=1 to accept)");
    }
}

#[test]
fn root_routes() {
    snapshot("routes.yaml", "routes");
}

#[test]
fn fixture_seed() {
    snapshot("tests/routes/seed.yaml", "seed");
}

#[test]
fn fixture_features() {
    snapshot("tests/routes/features.yaml", "features");
}

#[test]
fn fixture_stateful() {
    snapshot("tests/routes/stateful.yaml", "stateful");
}

#[test]
fn fixture_nat() {
    snapshot("tests/routes/nat.yaml", "nat");
}

#[test]
fn fixture_destinations() {
    snapshot("tests/routes/destinations.yaml", "destinations");
}

#[test]
fn no_inner_attributes_and_line_comments() {
    let text = std::fs::read_to_string(root().join("tests/routes/features.yaml")).unwrap();
    let code = sipforge_codegen::compile("features.yaml", &text).unwrap();
    assert!(!code.contains("#!["));
    assert!(!code.contains("__sipforge_line"));
    assert!(code.contains("// features.yaml:8\n"));
    assert!(code.contains(&format!(
        "source_sha256: \"{}\"",
        sipforge_codegen::sha256_hex(text.as_bytes())
    )));
}

#[test]
fn source_text_with_quotes_and_hashes() {
    let text = "# say \"#hi\"# here\nrequest: [ forward ]\n";
    let code = sipforge_codegen::compile("r.yaml", text).unwrap();
    assert!(code.contains("r##\"# say"));
    let text = "request: [ forward ]\r\n";
    let code = sipforge_codegen::compile("r.yaml", text).unwrap();
    assert!(code.contains("\\r\\n"));
}

#[test]
fn fixture_auth() {
    snapshot("tests/routes/auth.yaml", "auth");
}

#[test]
fn fixture_limits() {
    snapshot("tests/routes/limits.yaml", "limits");
}
