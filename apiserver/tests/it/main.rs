//! Integration tests of ackemu-apiserver: a real etcd, the real kubectl.

mod aggregator;
mod client;
mod grpc;
mod harness;
mod http;
mod kubectl;
mod kubelet;
mod python;
mod storage;
mod webhook;
