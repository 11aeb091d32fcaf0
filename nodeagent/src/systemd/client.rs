//! A bus client in the manner of go-systemd's `dbus.Conn`: calls wait for
//! their reply (with no timeout — as runc's did), job-creating calls then
//! wait for the job's `JobRemoved` signal.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use ackemu_base::tasks::{Tasks, wait_on};
use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::bus_client::BusClient as GrpcBusClient;
use ackemu_proto::ackemu::node::v1::bus_message::Body;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use super::names;

/// Bus call failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not open the connection.
    #[error("connecting to the bus at {path}: {status}")]
    Connect {
        /// Socket path.
        path: String,
        /// Transport error.
        status: tonic::Status,
    },
    /// The connection closed while waiting.
    #[error("bus connection closed while waiting for {what}")]
    Disconnected {
        /// What was awaited.
        what: String,
    },
    /// An error reply.
    #[error("{name}: {message}")]
    Remote {
        /// D-Bus error name.
        name: String,
        /// Its message.
        message: String,
    },
    /// A reply of an unexpected shape.
    #[error("unexpected reply to {member}: expected {expected}")]
    Unexpected {
        /// The call.
        member: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl BusError {
    /// The D-Bus error name, for remote errors.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            BusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A short description of a call for logs and dumps.
pub fn call_summary(msg: &pb::BusMessage) -> String {
    match &msg.body {
        Some(Body::StartTransientUnit(r)) => format!("{}({})", msg.member, r.name),
        Some(Body::UnitRequest(r)) => format!("{}({})", msg.member, r.name),
        _ => msg.member.clone(),
    }
}

const DONE_JOBS_KEPT: usize = 1024;

#[derive(Default)]
struct Table {
    replies: HashMap<u32, oneshot::Sender<pb::BusMessage>>,
    job_waiters: HashMap<String, oneshot::Sender<String>>,
    /// JobRemoved seen before anyone waited for it (bounded).
    done_jobs: VecDeque<(String, String)>,
    closed: bool,
}

/// One bus connection.
pub struct BusClient {
    tx: mpsc::Sender<pb::BusMessage>,
    serial: Mutex<u32>,
    table: Arc<Mutex<Table>>,
    unique_name: String,
}

impl BusClient {
    /// Connect to the bus socket at `path`, say Hello as `comm`.
    pub async fn connect(path: &Path, comm: &str, tasks: &Tasks) -> Result<BusClient, BusError> {
        let mut grpc = GrpcBusClient::new(crate::uds::channel(path));
        let (tx, rx) = mpsc::channel(64);
        let inbound = grpc
            .open(ReceiverStream::new(rx))
            .await
            .map_err(|status| BusError::Connect {
                path: path.display().to_string(),
                status,
            })?
            .into_inner();
        let table = Arc::new(Mutex::new(Table::default()));
        let t = table.clone();
        let token = tasks.token();
        tasks.spawn("bus/client reader", async move {
            let mut inbound = inbound;
            loop {
                let m = tokio::select! {
                    () = token.cancelled() => break,
                    m = inbound.next() => m,
                };
                let Some(Ok(msg)) = m else { break };
                let mut t = t.lock();
                match msg.r#type() {
                    pb::MessageType::MethodReturn | pb::MessageType::Error => {
                        if let Some(w) = t.replies.remove(&msg.reply_serial) {
                            let _ = w.send(msg);
                        }
                    }
                    pb::MessageType::Signal if msg.member == "JobRemoved" => {
                        if let Some(Body::JobSignal(j)) = msg.body {
                            match t.job_waiters.remove(&j.job_path) {
                                Some(w) => {
                                    let _ = w.send(j.result);
                                }
                                None => {
                                    t.done_jobs.push_back((j.job_path, j.result));
                                    if t.done_jobs.len() > DONE_JOBS_KEPT {
                                        t.done_jobs.pop_front();
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            let mut t = t.lock();
            t.closed = true;
            t.replies.clear();
            t.job_waiters.clear();
        });
        let mut c = BusClient {
            tx,
            serial: Mutex::new(0),
            table,
            unique_name: String::new(),
        };
        let hello = c
            .call(
                names::BUS,
                "/org/freedesktop/DBus",
                names::BUS,
                "Hello",
                Some(Body::Hello(pb::Hello {
                    comm: comm.to_string(),
                })),
            )
            .await?;
        if let Some(Body::HelloReply(h)) = hello.body {
            c.unique_name = h.unique_name;
        }
        Ok(c)
    }

    /// The unique name the bus gave this connection.
    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }

    /// Send a method call and wait for its reply — forever, if none comes.
    pub async fn call(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        body: Option<Body>,
    ) -> Result<pb::BusMessage, BusError> {
        let serial = {
            let mut s = self.serial.lock();
            *s = s.wrapping_add(1).max(1);
            *s
        };
        let msg = pb::BusMessage {
            r#type: pb::MessageType::MethodCall as i32,
            serial,
            destination: destination.into(),
            path: path.into(),
            interface: interface.into(),
            member: member.into(),
            body,
            ..Default::default()
        };
        let summary = call_summary(&msg);
        let (wtx, wrx) = oneshot::channel();
        {
            let mut t = self.table.lock();
            if t.closed {
                return Err(BusError::Disconnected { what: summary });
            }
            t.replies.insert(serial, wtx);
        }
        if self.tx.send(msg).await.is_err() {
            return Err(BusError::Disconnected { what: summary });
        }
        let what = format!("bus: reply to {summary} (serial {serial}) from {destination}");
        let reply = wait_on(what, wrx)
            .await
            .map_err(|_| BusError::Disconnected {
                what: summary.clone(),
            })?;
        if reply.r#type() == pb::MessageType::Error {
            return Err(BusError::Remote {
                name: reply.error_name,
                message: reply.error_message,
            });
        }
        Ok(reply)
    }

    async fn manager_call(
        &self,
        member: &str,
        body: Option<Body>,
    ) -> Result<pb::BusMessage, BusError> {
        self.call(
            names::SYSTEMD,
            names::SYSTEMD_PATH,
            names::MANAGER,
            member,
            body,
        )
        .await
    }

    /// Add a match rule for systemd's signals (`AddMatch` on the bus, as
    /// go-systemd does; systemd itself is not involved).
    pub async fn add_match(&self) -> Result<(), BusError> {
        self.call(
            names::BUS,
            "/org/freedesktop/DBus",
            names::BUS,
            "AddMatch",
            None,
        )
        .await
        .map(|_| ())
    }

    /// systemd's `Subscribe`: receive every Job/Unit signal.
    pub async fn subscribe(&self) -> Result<(), BusError> {
        self.manager_call("Subscribe", None).await.map(|_| ())
    }

    async fn wait_job(&self, member: &str, reply: pb::BusMessage) -> Result<String, BusError> {
        let Some(Body::JobReply(job)) = reply.body else {
            return Err(BusError::Unexpected {
                member: member.into(),
                expected: "a job path",
            });
        };
        let (wtx, wrx) = oneshot::channel();
        {
            let mut t = self.table.lock();
            if let Some(i) = t.done_jobs.iter().position(|(p, _)| *p == job.job_path) {
                let (_, result) = t.done_jobs.remove(i).unwrap_or_default();
                return Ok(result);
            }
            if t.closed {
                return Err(BusError::Disconnected {
                    what: format!("JobRemoved of {}", job.job_path),
                });
            }
            t.job_waiters.insert(job.job_path.clone(), wtx);
        }
        wait_on(format!("bus: JobRemoved signal of {}", job.job_path), wrx)
            .await
            .map_err(|_| BusError::Disconnected {
                what: format!("JobRemoved of {}", job.job_path),
            })
    }

    /// `StartTransientUnit` and wait for its job; returns the job result.
    pub async fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: pb::UnitProperties,
    ) -> Result<String, BusError> {
        let reply = self
            .manager_call(
                "StartTransientUnit",
                Some(Body::StartTransientUnit(pb::StartTransientUnit {
                    name: name.into(),
                    mode: mode.into(),
                    properties: Some(properties),
                })),
            )
            .await?;
        self.wait_job("StartTransientUnit", reply).await
    }

    async fn unit_job(&self, member: &str, name: &str) -> Result<String, BusError> {
        let reply = self
            .manager_call(
                member,
                Some(Body::UnitRequest(pb::UnitRequest {
                    name: name.into(),
                    mode: "replace".into(),
                })),
            )
            .await?;
        self.wait_job(member, reply).await
    }

    /// `StopUnit(name, "replace")` and wait for its job.
    pub async fn stop_unit(&self, name: &str) -> Result<String, BusError> {
        self.unit_job("StopUnit", name).await
    }

    /// `StartUnit(name, "replace")` and wait for its job.
    pub async fn start_unit(&self, name: &str) -> Result<String, BusError> {
        self.unit_job("StartUnit", name).await
    }

    /// `RestartUnit(name, "replace")` and wait for its job.
    pub async fn restart_unit(&self, name: &str) -> Result<String, BusError> {
        self.unit_job("RestartUnit", name).await
    }

    /// `GetUnit`.
    pub async fn get_unit(&self, name: &str) -> Result<pb::UnitInfo, BusError> {
        let r = self
            .manager_call(
                "GetUnit",
                Some(Body::UnitRequest(pb::UnitRequest {
                    name: name.into(),
                    mode: String::new(),
                })),
            )
            .await?;
        match r.body {
            Some(Body::UnitInfo(u)) => Ok(u),
            _ => Err(BusError::Unexpected {
                member: "GetUnit".into(),
                expected: "a unit",
            }),
        }
    }

    /// `ListUnits`.
    pub async fn list_units(&self) -> Result<Vec<pb::UnitInfo>, BusError> {
        match self.manager_call("ListUnits", None).await?.body {
            Some(Body::UnitList(l)) => Ok(l.units),
            _ => Err(BusError::Unexpected {
                member: "ListUnits".into(),
                expected: "a unit list",
            }),
        }
    }

    /// `Reexecute`.
    pub async fn reexecute(&self) -> Result<(), BusError> {
        self.manager_call("Reexecute", None).await.map(|_| ())
    }

    /// `ackemu.Debug.BusStatus`: the cookie and who waits.
    pub async fn bus_status(&self) -> Result<pb::BusStatus, BusError> {
        let r = self
            .call(
                names::SYSTEMD,
                names::SYSTEMD_PATH,
                names::DEBUG,
                "BusStatus",
                None,
            )
            .await?;
        match r.body {
            Some(Body::BusStatus(s)) => Ok(s),
            _ => Err(BusError::Unexpected {
                member: "BusStatus".into(),
                expected: "the bus status",
            }),
        }
    }
}
