//! `ackemu-vnic`: an ECS instance's virtual NIC and init (see
//! `ackemu_cloudsim::dataplane::vnic`).
use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let args = ackemu_cloudsim::dataplane::vnic::VnicArgs::parse();
    ackemu_base::logging::init(&ackemu_base::logging::LogConfig {
        v: args.v,
        json: false,
    });
    // Namespace work happens on this (main) thread before any runtime
    // thread exists.
    let nic = ackemu_cloudsim::dataplane::vnic::setup(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let run = ackemu_cloudsim::dataplane::vnic::run(nic, &args);
        ackemu_cloudsim::dataplane::vnic::announce_ready();
        run.await
    })?;
    Ok(())
}
