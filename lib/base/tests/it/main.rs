//! Integration tests of lib/base's public API.

mod failpoints;
