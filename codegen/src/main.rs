//! `sipforge-codegen emit FILE` prints the generated Rust;
//! `sipforge-codegen check FILE` prints diagnostics (exit 1 on errors).

use std::process::ExitCode;

const USAGE: &str = "usage: sipforge-codegen emit FILE   print the Rust code generated from FILE
       sipforge-codegen check FILE  report errors and warnings in FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, path) = match args.as_slice() {
        [cmd, path] if cmd == "emit" || cmd == "check" => (cmd.as_str(), path.as_str()),
        [h] if h == "-h" || h == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let out = sipforge_codegen::compile_file(path, &text);
    if !out.diagnostics.is_empty() {
        eprint!(
            "{}",
            sipforge_codegen::render_diagnostics(path, &text, &out.diagnostics)
        );
    }
    let n = out.errors().count();
    match (cmd, out.code) {
        (_, None) => {
            eprintln!("error: {path}: {n} error{}", if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
        ("emit", Some(code)) => {
            print!("{code}");
            ExitCode::SUCCESS
        }
        _ => {
            println!("ok");
            ExitCode::SUCCESS
        }
    }
}
