//! Integration tests: the controller-manager against a real API server
//! process (`ackemu-apiserver` on a real etcd), with the test itself
//! playing the kubelet where pods must become ready; the cloud controllers
//! and the autoscaler run as their binaries against a real cloudsim.

mod autoscaler;
mod bootstrap;
mod cloud;
mod gc;
mod harness;
mod namespace;
mod nodes;
mod services;
mod workloads;
