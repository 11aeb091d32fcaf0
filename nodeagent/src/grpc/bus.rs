//! The bus socket: each `Open` stream is one bus connection handed to
//! systemd's event loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ackemu_base::tasks::Tasks;
use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::bus_server::{Bus, BusServer};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::systemd::manager::Event;

/// The `Bus` service of one socket (system or private).
pub struct BusSvc {
    events: mpsc::Sender<Event>,
    private: bool,
    next_id: Arc<AtomicU64>,
    out_capacity: usize,
    tasks: Tasks,
}

impl BusSvc {
    /// A service feeding `events`.
    pub fn new(
        events: mpsc::Sender<Event>,
        private: bool,
        next_id: Arc<AtomicU64>,
        out_capacity: usize,
        tasks: Tasks,
    ) -> BusSvc {
        BusSvc {
            events,
            private,
            next_id,
            out_capacity,
            tasks,
        }
    }

    /// As a tonic server.
    pub fn into_server(self) -> BusServer<BusSvc> {
        BusServer::new(self)
    }
}

#[tonic::async_trait]
impl Bus for BusSvc {
    type OpenStream = ReceiverStream<Result<pb::BusMessage, Status>>;

    async fn open(
        &self,
        req: Request<Streaming<pb::BusMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let peer = crate::uds::peer(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(self.out_capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.events
            .send(Event::Connect {
                id,
                private: self.private,
                peer,
                tx,
            })
            .await
            .map_err(|_| Status::unavailable("systemd is shutting down"))?;
        let events = self.events.clone();
        let token = self.tasks.token();
        self.tasks
            .spawn(format!("bus/connection :1.{id}"), async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        m = inbound.next() => match m {
                            Some(Ok(mut msg)) => {
                                msg.sender = format!(":1.{id}");
                                if events.send(Event::Message { id, msg }).await.is_err() {
                                    break;
                                }
                            }
                            Some(Err(_)) | None => break,
                        },
                    }
                }
                let _ = events.send(Event::Disconnect { id }).await;
            });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
