//! The seed's app: HTTP on 0.0.0.0:2580, `/` answers
//! `This is a small app for kubernetes...`.

use std::process::ExitCode;

use ackemu_base::tasks::shutdown_signal;
use axum::Router;
use axum::routing::get;

/// The body `/` returns.
pub const BODY: &str = "This is a small app for kubernetes...\n";

/// The router.
pub fn router() -> Router {
    Router::new().route("/", get(|| async { BODY }))
}

/// `app [--listen ADDR]` (default `0.0.0.0:2580`).
pub async fn main(args: &[String]) -> Result<ExitCode, String> {
    let listen = match args {
        [] => "0.0.0.0:2580".to_string(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        other => {
            return Err(format!(
                "unexpected arguments {other:?}: usage: app [--listen ADDR]"
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("listen tcp {listen}: {e}"))?;
    eprintln!(
        "app listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
