//! Placeholder: the typed DSL is built on top of `streams-core` and `state-store`.
