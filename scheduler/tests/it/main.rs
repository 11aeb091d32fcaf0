//! Integration tests: the scheduler core through its public API, and the
//! `ackemu-scheduler` binary against a real API server process
//! (`ackemu-apiserver` on a real etcd) with Node objects the tests write.

mod harness;
mod leader;
mod process;
mod seed_article;
mod verbose;
