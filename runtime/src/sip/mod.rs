//! SIP messages: a zero-copy view of one received datagram (framing, header
//! index, typed accessors, validation) and byte splicing for edits. Nothing
//! here allocates per header; the only heap allocation of a parse is the
//! header index.

mod fields;
mod header;
mod lex;
mod list;
pub mod message;
mod name_addr;
mod splice;
mod uri;
mod validate;
mod via;

pub use header::{expand_compact, names_equal, names_equal_bytes};
pub use list::{SplitList, split_list};
pub use message::{Header, HeaderName, Invalid, Message, ParseError, crlf_normalised};
pub use name_addr::NameAddr;
pub use splice::Splice;
pub use uri::{Uri, escape_user, is_host};
pub use via::Via;
