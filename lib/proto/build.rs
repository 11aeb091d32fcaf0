//! Compiles every `.proto` under `proto/` with tonic/prost. The module tree
//! (`src/lib.rs` includes it) is generated from the protobuf packages, so a
//! new `.proto` needs no edit here.
//!
//! protoc comes from the `protoc-bin-vendored` crate (offline, no apt step);
//! `PROTOC` in the environment overrides it.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
        // SAFETY: the build script is single-threaded; nothing reads the
        // environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc)
        };
    }
    let root = PathBuf::from("proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos);
    println!("cargo:rerun-if-changed=proto");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let include = protoc_bin_vendored::include_path().expect("vendored protoc include path");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("_all.rs")
        .compile_protos(&protos, &[root, include])
        .expect("compiling protos");
}
