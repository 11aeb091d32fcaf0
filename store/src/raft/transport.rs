//! Peer connections: one long-lived gRPC stream per peer carries batches of
//! raft-rs messages (their own protobuf encoding as bytes); snapshots go as
//! a unary call so the sender learns the outcome and can tell raft.
//!
//! Every queue is bounded: when a peer's queue is full the message is
//! dropped and raft is told the peer is unreachable (raft retransmits).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_proto::ackemu::store::v1::RaftBatch;
use ackemu_proto::ackemu::store::v1::store_peer_client::StorePeerClient;
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::node::Input;

/// Largest gRPC message between peers (snapshots travel whole).
pub const PEER_MAX_MESSAGE_BYTES: usize = 1 << 30;
const BATCH_MAX_MESSAGES: usize = 128;

struct Peer {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
    channel: Channel,
    stop: CancellationToken,
}

pub struct Transport {
    me: u64,
    peers: Mutex<HashMap<u64, Peer>>,
    tasks: Tasks,
    clock: Clock,
    inbox: mpsc::Sender<Input>,
    queue_capacity: usize,
}

pub fn peer_client(channel: Channel) -> StorePeerClient<Channel> {
    StorePeerClient::new(channel)
        .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES)
}

fn channel_for(urls: &[String]) -> Option<Channel> {
    let url = urls.first()?;
    let ep = Endpoint::from_shared(url.clone()).ok()?;
    Some(
        ep.connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .connect_lazy(),
    )
}

impl Transport {
    pub fn new(
        me: u64,
        tasks: Tasks,
        clock: Clock,
        inbox: mpsc::Sender<Input>,
        queue_capacity: usize,
    ) -> Arc<Self> {
        Arc::new(Transport {
            me,
            peers: Mutex::new(HashMap::new()),
            tasks,
            clock,
            inbox,
            queue_capacity,
        })
    }

    /// Makes the peer set match `members` (id → peer URLs).
    pub fn set_peers(&self, members: &[(u64, Vec<String>)]) {
        let mut peers = self.peers.lock();
        peers.retain(|id, p| {
            let keep = members.iter().any(|(m, urls)| m == id && *urls == p.urls);
            if !keep {
                p.stop.cancel();
            }
            keep
        });
        for (id, urls) in members {
            if *id == self.me || peers.contains_key(id) {
                continue;
            }
            let Some(channel) = channel_for(urls) else {
                tracing::warn!(peer = %format!("{id:x}"), ?urls, "peer has no usable URL");
                continue;
            };
            let (tx, rx) = mpsc::channel(self.queue_capacity);
            let stop = self.tasks.token().child_token();
            let task = PeerSender {
                to: *id,
                from: self.me,
                channel: channel.clone(),
                rx,
                stop: stop.clone(),
                inbox: self.inbox.clone(),
                clock: self.clock.clone(),
            };
            self.tasks
                .spawn(format!("store/peer/send/{id:x}"), task.run());
            peers.insert(
                *id,
                Peer {
                    urls: urls.clone(),
                    tx,
                    channel,
                    stop,
                },
            );
        }
    }

    /// Queues messages; returns the peers that could not take them.
    pub fn send(&self, msgs: Vec<Message>) -> Vec<u64> {
        let mut unreachable = Vec::new();
        let peers = self.peers.lock();
        for m in msgs {
            let to = m.to;
            match peers.get(&to) {
                Some(p) => {
                    if p.tx.try_send(m).is_err() {
                        metrics::counter!("ackemu_store_peer_dropped_total").increment(1);
                        unreachable.push(to);
                    }
                }
                None => unreachable.push(to),
            }
        }
        unreachable.sort_unstable();
        unreachable.dedup();
        unreachable
    }

    pub fn client(&self, id: u64) -> Option<StorePeerClient<Channel>> {
        self.peers
            .lock()
            .get(&id)
            .map(|p| peer_client(p.channel.clone()))
    }
}

struct PeerSender {
    to: u64,
    from: u64,
    channel: Channel,
    rx: mpsc::Receiver<Message>,
    stop: CancellationToken,
    inbox: mpsc::Sender<Input>,
    clock: Clock,
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    m.write_to_bytes().ok()
}

impl PeerSender {
    async fn run(mut self) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let (tx, rx) = mpsc::channel::<RaftBatch>(64);
            let mut client = peer_client(self.channel.clone());
            let call = client.raft(ReceiverStream::new(rx));
            tokio::pin!(call);
            let ended = loop {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    res = &mut call => break res.err(),
                    m = self.rx.recv() => {
                        let Some(first) = m else { return };
                        let mut msgs = vec![first];
                        while msgs.len() < BATCH_MAX_MESSAGES {
                            match self.rx.try_recv() {
                                Ok(m) => msgs.push(m),
                                Err(_) => break,
                            }
                        }
                        let mut pending = Vec::new();
                        let mut open = true;
                        for m in msgs {
                            if m.get_msg_type() == MessageType::MsgSnapshot {
                                open = open && self.flush(&tx, &mut pending).await;
                                self.send_snapshot(m).await;
                            } else if let Some(bytes) = encode(&m) {
                                pending.push(bytes);
                            }
                        }
                        open = open && self.flush(&tx, &mut pending).await;
                        if !open {
                            // The call ended; its result says why.
                            break (&mut call).await.err();
                        }
                    }
                }
            };
            if let Some(status) = ended {
                tracing::debug!("raft stream to {:x} ended: {}", self.to, status.message());
                if status.code() == tonic::Code::PermissionDenied {
                    tracing::warn!(
                        "peer {:x} says this member was removed from the cluster",
                        self.to
                    );
                    let _ = self.inbox.send(Input::Removed).await;
                    return;
                }
            }
            let _ = self.inbox.try_send(Input::Unreachable(self.to));
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.clock.sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Sends the pending messages as one batch; false when the stream is gone.
    async fn flush(&self, tx: &mpsc::Sender<RaftBatch>, pending: &mut Vec<Vec<u8>>) -> bool {
        if pending.is_empty() {
            return true;
        }
        let messages = std::mem::take(pending);
        if let Err(e) = ackemu_base::failpoint!("store/peer/send") {
            tracing::debug!(
                "dropping {} raft messages to {:x}: {e}",
                messages.len(),
                self.to
            );
            return true;
        }
        tx.send(RaftBatch {
            from: self.from,
            messages,
        })
        .await
        .is_ok()
    }

    async fn send_snapshot(&mut self, m: Message) {
        let ok = match ackemu_base::failpoint!("store/snapshot/send") {
            Err(e) => {
                tracing::warn!("snapshot to {:x} not sent: {e}", self.to);
                false
            }
            Ok(()) => match encode(&m) {
                Some(bytes) => {
                    let mut client = peer_client(self.channel.clone());
                    let batch = RaftBatch {
                        from: self.from,
                        messages: vec![bytes],
                    };
                    match client.raft_snapshot(batch).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!("snapshot to {:x} failed: {}", self.to, e.message());
                            false
                        }
                    }
                }
                None => false,
            },
        };
        let _ = self.inbox.send(Input::SnapshotStatus(self.to, ok)).await;
    }
}
