//! `ackemu-cloudsim`: parses flags and runs the cloud.
use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ackemu_cloudsim::Config::parse();
    let env = ackemu_base::Env::init("cloudsim", &config.common).await?;
    let tasks = env.tasks.clone();
    let res = ackemu_cloudsim::run(config, env).await;
    tasks.shutdown().await;
    res
}
