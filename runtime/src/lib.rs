//! sipforge run time: everything the proxy does that does not depend on the
//! routes file. The generated routes call into [`api`]; the binary hands its
//! compiled routes to [`cli::main`].

pub mod api;
pub mod ctx;
pub mod sip;
pub mod target;
pub mod transaction;
