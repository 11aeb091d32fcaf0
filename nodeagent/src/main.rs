//! `ackemu-node <role>`: one node process per role. Invoked under a name
//! ending in `-cni` (the `ackemu-cni` link in a CNI bin dir) it is the CNI
//! plugin, as the CNI spec calls plugins with no arguments.

use clap::Parser as _;

fn main() {
    let invoked_as_plugin = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().ends_with("-cni"))
        })
        .unwrap_or(false);
    let cli = if invoked_as_plugin {
        ackemu_nodeagent::Cli::cni_plugin()
    } else {
        ackemu_nodeagent::Cli::parse()
    };
    std::process::exit(ackemu_nodeagent::main(cli));
}
