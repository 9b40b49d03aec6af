//! Byte-level state stores.
