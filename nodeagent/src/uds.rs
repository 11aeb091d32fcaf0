//! gRPC (and plain HTTP debug routes) over unix sockets: the node roles'
//! only transport between each other.

use std::io;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::routing::get;
use axum::serve::IncomingStream;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// The peer of a unix-socket connection, read from `SO_PEERCRED` (what
/// `busctl` shows as a peer's PID).
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerCred {
    /// The peer's pid, when the kernel reported one.
    pub pid: Option<u32>,
    /// The peer's uid.
    pub uid: u32,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => PeerCred {
                pid: c.pid().and_then(|p| u32::try_from(p).ok()),
                uid: c.uid(),
            },
            Err(_) => PeerCred::default(),
        }
    }
}

/// The peer of a gRPC request served by [`serve`].
pub fn peer<T>(req: &tonic::Request<T>) -> PeerCred {
    req.extensions()
        .get::<axum::extract::ConnectInfo<PeerCred>>()
        .map(|c| c.0)
        .unwrap_or_default()
}

/// Bind `path` (replacing a stale socket, creating its directory).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// Routes every daemon serves next to its gRPC service, like terwayd's
/// `curl --unix-socket /var/run/eni/eni.socket http:/debug/pprof/goroutine`.
pub fn debug_routes() -> Router {
    Router::new().route(
        "/debug/tasks",
        get(|| async { ackemu_base::tasks::render_dump() }),
    )
}

/// Serve `router` (gRPC routes merged with HTTP routes) on `listener` until
/// `stop` is cancelled; the socket file is removed afterwards.
///
/// Requests still running [`SHUTDOWN_GRACE`] (real time) after `stop` are
/// abandoned: a daemon stuck in a call must still be restartable.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    router: Router,
    stop: CancellationToken,
    clock: &ackemu_base::clock::Clock,
) -> io::Result<()> {
    let graceful = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<PeerCred>(),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let grace = clock.to_cluster(SHUTDOWN_GRACE);
    let deadline = async {
        stop.cancelled().await;
        clock.sleep(grace).await;
    };
    let r = tokio::select! {
        r = graceful => r,
        () = deadline => {
            tracing::warn!("{}: requests still running at shutdown; abandoning them", path.display());
            Ok(())
        }
    };
    std::fs::remove_file(&path).ok();
    r
}

/// How long a stopping daemon waits for running requests.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// A gRPC channel to the unix socket at `path` (connects lazily).
pub fn channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(
        move |_: http::Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        },
    ))
}
