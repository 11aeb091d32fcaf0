//! Explicit loopback forwards: the one way the host reaches a service
//! inside an instance (the API server for kubectl, say). A listener on a
//! host loopback address; each connection gets a socket opened inside the
//! instance's namespace (on a short-lived thread, so nothing pins the
//! namespace) that connects to the target there, and bytes are copied both
//! ways. Nothing is routed: the host namespace never learns an emulated
//! address.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use ackemu_base::tasks::Tasks;
use tokio::sync::{Semaphore, oneshot};

use super::netns::{self, DataplaneError, Result};

/// Concurrent connections per forward.
const MAX_CONNS: usize = 256;

/// Opens a TCP socket inside namespace `ns`.
async fn socket_in(tasks: &Tasks, ns: &str) -> Result<tokio::net::TcpSocket> {
    let (tx, rx) = oneshot::channel();
    let name = ns.to_owned();
    tasks.spawn_thread(format!("forward/socket/{ns}"), move || {
        let r = netns::enter(&name).and_then(|()| {
            tokio::net::TcpSocket::new_v4()
                .map_err(|e| DataplaneError::new(format!("opening a socket in {name}"), e))
        });
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| DataplaneError::new(format!("opening a socket in {ns}"), "the thread died"))?
}

/// Listens on `listen` (a loopback address) and forwards every connection
/// to `target` as seen from inside namespace `ns`. Returns the bound
/// address; runs until `tasks`' token is cancelled.
pub async fn start(
    tasks: &Tasks,
    listen: SocketAddr,
    ns: &str,
    target: SocketAddrV4,
) -> Result<SocketAddr> {
    if !listen.ip().is_loopback() {
        return Err(DataplaneError::new(
            format!("forwarding {listen}"),
            "forwards listen on loopback only",
        ));
    }
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DataplaneError::new(format!("binding {listen}"), e))?;
    let bound = l
        .local_addr()
        .map_err(|e| DataplaneError::new("forward listener", e))?;
    let token = tasks.token();
    let t = tasks.clone();
    let ns = ns.to_owned();
    let sem = Arc::new(Semaphore::new(MAX_CONNS));
    tasks.spawn(format!("forward/{bound}->{ns}/{target}"), async move {
        loop {
            let (mut client, _) = tokio::select! {
                () = token.cancelled() => return,
                a = l.accept() => match a {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("forward {bound}: accepting: {e}");
                        continue;
                    }
                },
            };
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                continue;
            };
            let (t2, ns2, tok) = (t.clone(), ns.clone(), token.clone());
            t.spawn(format!("forward/{bound}/conn"), async move {
                let _permit = permit;
                let sock = match socket_in(&t2, &ns2).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::info!("forward {bound}: {e}");
                        return;
                    }
                };
                let mut upstream = match sock.connect(target.into()).await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::info!("forward {bound}: connecting to {target} in {ns2}: {e}");
                        return;
                    }
                };
                tokio::select! {
                    () = tok.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                }
            });
        }
    });
    Ok(bound)
}
