//! Integration tests of the scheduler core through its public API.

mod seed_article;
