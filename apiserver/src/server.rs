//! HTTPS serving: TLS (rustls, client certificates verified against the
//! cluster CA at cluster time), HTTP/1.1 and HTTP/2, and authentication:
//! the verified client certificate's CN is the user and its O values the
//! groups; a request without credentials is `system:anonymous`. Panics in a
//! handler become 500s instead of dropped connections.

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::tasks::Tasks;
use futures::FutureExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, Body, error_response};
use crate::rbac::UserInfo;
use crate::status::ApiError;

/// The user a verified client certificate names.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let id = ackemu_base::pki::identity_of(der).ok()?;
    if id.common_name.is_empty() {
        return None;
    }
    Some(UserInfo::authenticated(&id.common_name, &id.organizations))
}

async fn serve_request(
    api: Arc<Api>,
    req: Request<Incoming>,
    user: Option<UserInfo>,
) -> Response<Body> {
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = match (user, auth) {
        (Some(u), _) => u,
        (None, Some(auth)) => {
            let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) else {
                return error_response(&ApiError::unauthorized());
            };
            match api.authenticate_bearer(token).await {
                Ok(u) => u,
                Err(e) => return error_response(&e),
            }
        }
        (None, None) => UserInfo::anonymous(),
    };
    let path = req.uri().path().to_owned();
    match std::panic::AssertUnwindSafe(api.handle(req, user))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("panic while serving {path}");
            error_response(&ApiError::internal(format!("panic while serving {path}")))
        }
    }
}

/// Accepts connections until the tasks are cancelled.
pub async fn serve(api: Arc<Api>, listener: TcpListener, tls: rustls::ServerConfig, tasks: Tasks) {
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let token = tasks.token();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = token.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let token = token.clone();
        let clock = api.clock.clone();
        tasks.spawn(format!("conn {peer}"), async move {
            let tls = match clock.timeout(clock.to_cluster(Duration::from_secs(10)), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!("tls handshake from {peer} failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let user = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| user_from_cert(c));
            let svc = hyper::service::service_fn(move |req| {
                let api = api.clone();
                let user = user.clone();
                async move { Ok::<_, std::convert::Infallible>(serve_request(api, req, user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                }
                () = token.cancelled() => {}
            }
        });
    }
}
