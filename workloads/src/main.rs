//! `ackemu-workload <program> [args…]` — the entrypoint of every emulated image.
//! Invoked as `nslookup`, `wget`, … through a symlink, it runs that program.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    let invoked = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let program =
        if invoked != "ackemu-workload" && ackemu_workloads::PROGRAMS.contains(&invoked.as_str()) {
            argv.remove(0);
            invoked
        } else if argv.len() >= 2 {
            argv.remove(0);
            argv.remove(0)
        } else {
            eprintln!(
                "usage: ackemu-workload <program> [args…]\nprograms: {}",
                ackemu_workloads::PROGRAMS.join(", ")
            );
            return ExitCode::from(2);
        };
    ackemu_workloads::run(&program, &argv).await
}
