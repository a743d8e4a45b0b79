//! The sipforge proxy: the routes compiled from `routes.yaml` by `build.rs`
//! (see `codegen/`) handed to the run time.

include!(concat!(env!("OUT_DIR"), "/routes.rs"));

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc settings of the proxy.
#[cfg(feature = "mimalloc")]
mod allocator {
    use std::ffi::{c_int, c_long};

    unsafe extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
        #[cfg(test)]
        fn mi_option_get(option: c_int) -> c_long;
    }

    /// `mi_option_purge_delay` in mimalloc v3's `include/mimalloc.h`
    /// (the test below checks it by its default, 1000 ms).
    const PURGE_DELAY: c_int = 15;

    /// Keep freed memory instead of giving it back to the system a second
    /// after it was freed: the same pages are used again at once by the
    /// next messages, and every page given back costs a page fault and a
    /// zeroing when it is touched again (measured: 4x the page faults and
    /// ~10% more user CPU per call). Like Kamailio's shared memory pool,
    /// the heap stays at its high-water mark. `MIMALLOC_PURGE_DELAY` in
    /// the environment still decides when set.
    pub fn keep_freed_memory() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: sets an integer option; called before any other thread runs.
            unsafe { mi_option_set(PURGE_DELAY, -1) }
        }
    }

    /// No transparent huge pages for the proxy's memory (mimalloc asks for
    /// them on its arenas): a 2 MiB page is zeroed whole at its first touch,
    /// which stalls the worker that touches it, and in a virtual machine
    /// that hands free 2 MiB blocks back to its host every such page is
    /// faulted in again by the host (measured here on the stateful bench
    /// scenario: ~10% less CPU per call without them; the heap of a SIP
    /// proxy is small, so the TLB gains little). 4 KiB pages, like
    /// Kamailio's shared memory. `MIMALLOC_ALLOW_THP` in the environment
    /// still decides when set (`MIMALLOC_ALLOW_THP=1`: huge pages again).
    pub fn no_huge_pages() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: a prctl with integer arguments; it sets a flag of
            // this process that the kernel reads when it faults a page in.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn huge_pages_are_off() {
            if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
                return;
            }
            super::no_huge_pages();
            // SAFETY: reads a flag of this process.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(disabled, 1, "PR_GET_THP_DISABLE after no_huge_pages");
        }

        #[test]
        fn the_option_set_is_the_purge_delay() {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
                return;
            }
            // SAFETY: reads an integer option.
            let default = unsafe { super::mi_option_get(super::PURGE_DELAY) };
            assert_eq!(default, 1000, "mimalloc's purge_delay default (ms)");
        }
    }
}

/// Every `tests/routes/*.yaml` fixture, compiled in debug builds so that
/// `cargo build` proves their generated code builds against the runtime API
/// (left out of release builds to keep them quick).
#[cfg(debug_assertions)]
#[allow(dead_code)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    {
        allocator::keep_freed_memory();
        allocator::no_huge_pages();
    }
    let build = sipforge_runtime::cli::Build::new(option_env!("SIPFORGE_GIT_COMMIT"));
    sipforge_runtime::cli::main_with(&ROUTES, build)
}
