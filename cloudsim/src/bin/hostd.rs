//! `ackemu-hostd`: an ECS container's host agent in docker-compose (see
//! `ackemu_cloudsim::dataplane::compose`).
use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = ackemu_cloudsim::dataplane::compose::HostConfig::parse();
    let env = ackemu_base::Env::init("hostd", &cfg.common).await?;
    let tasks = env.tasks.clone();
    let agent = ackemu_cloudsim::dataplane::compose::HostAgent::new(&cfg, tasks.clone())?;
    for port in &cfg.publish {
        agent.publish(*port).await?;
    }
    let bound = agent.serve(cfg.listen).await?;
    tracing::info!("host agent listening on {bound}");
    env.health.set_ready(true);
    tasks.cancelled().await;
    env.health.set_ready(false);
    agent.shutdown().await;
    tasks.shutdown().await;
    Ok(())
}
