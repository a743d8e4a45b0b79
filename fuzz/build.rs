//! Compiles the fuzz routes (`routes/*.yaml`) with sipforge-codegen into
//! `$OUT_DIR/routes_<name>.rs`, as the proxy's own build.rs does.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("under cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("under cargo"));
    for name in ["stateless", "stateful", "registrar"] {
        let path = manifest.join("routes").join(format!("{name}.yaml"));
        println!("cargo::rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).expect("the fuzz routes file");
        let shown = format!("fuzz/routes/{name}.yaml");
        match sipforge_codegen::compile(&shown, &text) {
            Ok(code) => std::fs::write(out_dir.join(format!("routes_{name}.rs")), code)
                .expect("write the generated routes"),
            Err(diagnostics) => {
                let rendered = sipforge_codegen::render_diagnostics(&shown, &text, &diagnostics);
                print!("{}", sipforge_codegen::cargo_directives("error", &rendered));
                return;
            }
        }
    }
}
