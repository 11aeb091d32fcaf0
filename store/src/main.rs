use ackemu_base::Env;
use ackemu_store::{Args, config::Config, run};
use anyhow::Context as _;
use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::init("ackemu-store", &args.common).await?;
    let cfg = Config::from_args(&args).context("invalid flags")?;
    run(cfg, env).await.context("ackemu-store failed")
}
