//! SIP messages: zero-copy view (placeholder).
