//! The child process the chaos tests switch: an ackemu-style process with an
//! admin port, a failpoint on its work path and an mTLS gRPC server whose
//! certificate checks read the cluster clock.

use std::net::SocketAddr;

use ackemu_base::admin::FaultSvc;
use ackemu_base::pki::{self, ClientAuth};
use ackemu_base::{CommonArgs, Env};
use ackemu_proto::ackemu::fault::v1::fault_service_server::FaultServiceServer;
use tokio::io::AsyncBufReadExt;

pub const ENV: &str = "ACKEMU_IT_CHILD";
pub const PKI_DIR_ENV: &str = "ACKEMU_IT_PKI_DIR";

pub fn main() {
    if std::env::var(ENV).as_deref() == Ok("cloudsim") {
        return cloudsim_main();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let args = CommonArgs {
            admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..CommonArgs::default()
        };
        let env = Env::init("it-child", &args).await.expect("env");
        env.health.set_ready(true);
        let tls_addr = match std::env::var(PKI_DIR_ENV) {
            Ok(dir) => serve_tls(&env, &dir).await,
            Err(_) => "none".to_string(),
        };
        println!("admin {}", env.admin_addr.expect("admin addr"));
        println!("tls {tls_addr}");
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                "work" => match ackemu_base::failpoint!("demo/work") {
                    Ok(()) => {
                        metrics::counter!("demo_work_total").increment(1);
                        println!("ok");
                    }
                    Err(e) => println!("error: {e}"),
                },
                "wall" => println!("{}", env.clock.wall_unix_ms()),
                other => println!("unknown command {other:?}"),
            }
        }
    });
}

async fn serve_tls(env: &Env, dir: &str) -> String {
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).expect("pki file");
    let cfg = pki::server_tls_config(
        &read("server.crt"),
        &read("server.key"),
        Some(&read("ca.crt")),
        ClientAuth::Required,
        &env.clock,
        &[b"h2"],
    )
    .expect("server tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let svc = FaultServiceServer::new(FaultSvc::new(env.clock.clone()));
    env.tasks.spawn("it-child/tls-grpc", async move {
        let r = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(pki::grpc::incoming(listener, cfg))
            .await;
        if let Err(e) = r {
            eprintln!("tls grpc server: {e}");
        }
    });
    addr.to_string()
}

/// Child mode `cloudsim`: the real cloud (in this process) with an admin
/// port, data in `ACKEMU_IT_DATA_DIR`. Prints `admin`, `tls none`, then
/// `cloud <grpc addr>` once it listens.
fn cloudsim_main() {
    use clap::Parser as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::env::var("ACKEMU_IT_DATA_DIR").expect("ACKEMU_IT_DATA_DIR");
        let listen_file = format!("{dir}/listen.json");
        let config = ackemu_cloudsim::Config::parse_from([
            "ackemu-cloudsim",
            "--data-dir",
            &format!("{dir}/data"),
            "--grpc-listen",
            "127.0.0.1:0",
            "--metadata-listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
            "--admin-profile-file",
            &format!("{dir}/profile.json"),
            "--listen-file",
            &listen_file,
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        let env = Env::init("cloudsim", &config.common).await.expect("env");
        println!("admin {}", env.admin_addr.expect("admin addr"));
        println!("tls none");
        let run_env = env.clone();
        env.tasks.spawn("it-child/cloudsim", async move {
            if let Err(e) = ackemu_cloudsim::run(config, run_env).await {
                eprintln!("cloudsim: {e:#}");
                std::process::exit(1);
            }
        });
        let clock = ackemu_base::clock::Clock::real();
        let grpc = loop {
            if let Ok(text) = std::fs::read_to_string(&listen_file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(g) = v["grpc"].as_str()
            {
                break g.to_string();
            }
            clock.sleep(std::time::Duration::from_millis(10)).await;
        };
        println!("cloud {grpc}");
        env.tasks.cancelled().await;
    });
}
