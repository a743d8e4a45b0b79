//! The sipforge proxy: the routes compiled from `routes.yaml` by `build.rs`
//! (see `codegen/`) handed to the run time.

include!(concat!(env!("OUT_DIR"), "/routes.rs"));

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every `tests/routes/*.yaml` fixture, compiled in debug builds so that
/// `cargo build` proves their generated code builds against the runtime API
/// (left out of release builds to keep them quick).
#[cfg(debug_assertions)]
#[allow(dead_code)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

fn main() -> std::process::ExitCode {
    let build = sipforge_runtime::cli::Build::new(option_env!("SIPFORGE_GIT_COMMIT"));
    sipforge_runtime::cli::main_with(&ROUTES, build)
}
