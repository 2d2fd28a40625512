//! The reference chat backend.
