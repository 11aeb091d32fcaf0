//! systemd's event loop: one task owning units, jobs, connections and the
//! cookies, fed by a bounded event queue (connections' messages, supervisor
//! reports, timers). Everything systemd sends is sealed here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::bus_message::Body;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SystemdConfig;
use super::cookie::{CookieJar, SealError};
use super::names;
use super::supervisor::{self, SvcCmd, UnitReport};
use super::unitfile::ServiceUnit;
use crate::uds::{self, PeerCred};

/// What the event loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// A client connected.
    Connect {
        /// Connection id.
        id: u64,
        /// Came in on the private socket.
        private: bool,
        /// Socket credentials.
        peer: PeerCred,
        /// Messages to the client.
        tx: mpsc::Sender<Result<pb::BusMessage, tonic::Status>>,
    },
    /// A client sent a message.
    Message {
        /// Connection id.
        id: u64,
        /// The message.
        msg: pb::BusMessage,
    },
    /// A client went away.
    Disconnect {
        /// Connection id.
        id: u64,
    },
    /// A service supervisor reports.
    Unit(UnitReport),
    /// The bus daemon answers one of systemd's own calls.
    BusReply {
        /// The cookie of systemd's call.
        cookie: u32,
    },
}

struct Conn {
    unique: String,
    private: bool,
    peer: PeerCred,
    comm: String,
    since_ms: i64,
    subscribed: bool,
    /// Private connections have their own sd-bus object and cookie.
    jar: Option<CookieJar>,
    close_after_reply: bool,
    tx: mpsc::Sender<Result<pb::BusMessage, tonic::Status>>,
}

#[derive(Debug, Clone)]
struct Pending {
    member: String,
    unit: String,
    serial: u32,
    since_ms: i64,
    since: ackemu_base::clock::ClusterInstant,
    reason: String,
}

struct Unit {
    info: pb::UnitInfo,
    /// Services only.
    svc: Option<mpsc::Sender<SvcCmd>>,
}

struct Job {
    unit: String,
    requester: Option<(u64, u32)>,
}

/// A signal systemd is about to emit, and who waits for it.
#[derive(Clone)]
struct Outgoing {
    member: &'static str,
    body: Body,
    waiter: Option<(u64, u32)>,
}

/// What a handled call answers.
type CallResult = Result<Option<Body>, (String, String)>;

/// Handle on the running manager.
pub struct ManagerHandle {
    done: tokio::sync::watch::Receiver<bool>,
}

impl ManagerHandle {
    /// Resolves once the loop stopped every unit and exited.
    pub async fn stopped(mut self) {
        let _ = self.done.wait_for(|d| *d).await;
    }
}

/// Bind both sockets, start the supervisors and the loop.
pub fn start(
    config: &SystemdConfig,
    env: &Env,
    services: Vec<ServiceUnit>,
) -> anyhow::Result<ManagerHandle> {
    let (events_tx, events_rx) = mpsc::channel(config.queue_len);
    let next_conn = Arc::new(AtomicU64::new(2));
    for (path, private) in [
        (config.bus_socket.clone(), false),
        (config.private_socket.clone(), true),
    ] {
        let listener =
            uds::bind(&path).map_err(|e| anyhow::anyhow!("binding {}: {e}", path.display()))?;
        let svc = crate::grpc::bus::BusSvc::new(
            events_tx.clone(),
            private,
            next_conn.clone(),
            config.queue_len,
            env.tasks.clone(),
        );
        let router = tonic::service::Routes::new(svc.into_server())
            .into_axum_router()
            .merge(uds::debug_routes());
        let stop = env.tasks.token();
        let name = if private { "private" } else { "system" };
        let clock = env.clock.clone();
        env.tasks
            .spawn(format!("systemd/serve {name} bus"), async move {
                if let Err(e) = uds::serve(listener, path, router, stop, &clock).await {
                    tracing::error!("systemd: serving the {name} bus failed: {e}");
                }
            });
    }
    let mut units = BTreeMap::new();
    let mut to_start = Vec::new();
    let now_ms = env.clock.wall_unix_ms();
    for svc in services {
        let (tx, rx) = mpsc::channel(16);
        let info = pb::UnitInfo {
            name: svc.name.clone(),
            description: svc.description.clone(),
            load_state: "loaded".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            exec_start: svc.exec_start.join(" "),
            fragment_path: svc.name.clone(),
            enabled: svc.enabled,
            state_change_unix_ms: now_ms,
            ..Default::default()
        };
        if svc.enabled {
            to_start.push(tx.clone());
        }
        units.insert(
            svc.name.clone(),
            Unit {
                info,
                svc: Some(tx),
            },
        );
        let events = events_tx.clone();
        let clock = env.clock.clone();
        let token = env.tasks.token();
        let log_dir = config.log_dir.clone();
        env.tasks.spawn(
            format!("systemd/unit {}", svc.name),
            supervisor::supervise(svc, rx, events, clock, log_dir, token),
        );
    }
    for tx in to_start {
        let _ = tx.try_send(SvcCmd::Start { job: None });
    }
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut m = Manager {
        clock: env.clock.clone(),
        fix: config.cookie_fix,
        system: CookieJar::new(config.initial_cookie, config.cookie_fix),
        in_use: BTreeSet::new(),
        bus_serial: 0,
        conns: BTreeMap::new(),
        units,
        next_job: 0,
        jobs: BTreeMap::new(),
        pending: BTreeMap::new(),
        sealed: 0,
        seal_failures: 0,
        last_seal_error: String::new(),
        reexecs: 0,
        undelivered: Vec::new(),
        events_tx: events_tx.clone(),
    };
    let token = env.tasks.token();
    let gc_interval = config.gc_interval;
    env.tasks.spawn("systemd/manager", async move {
        m.run(events_rx, token, gc_interval).await;
        let _ = done_tx.send(true);
    });
    Ok(ManagerHandle { done: done_rx })
}

struct Manager {
    clock: Clock,
    fix: bool,
    system: CookieJar,
    /// Cookies of systemd's own calls still awaiting replies.
    in_use: BTreeSet<u32>,
    bus_serial: u32,
    conns: BTreeMap<u64, Conn>,
    units: BTreeMap<String, Unit>,
    next_job: u32,
    jobs: BTreeMap<u32, Job>,
    pending: BTreeMap<(u64, u32), Pending>,
    sealed: u64,
    seal_failures: u64,
    last_seal_error: String,
    reexecs: u32,
    /// JobRemoved signals that could not be sealed, with a waiter: the
    /// re-executed systemd announces those jobs again.
    undelivered: Vec<Outgoing>,
    events_tx: mpsc::Sender<Event>,
}

impl Manager {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        token: CancellationToken,
        gc_interval: std::time::Duration,
    ) {
        let mut gc = self.clock.interval(gc_interval);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = gc.tick() => self.gc_scopes().await,
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => break,
                },
            }
        }
        self.shutdown(&mut events).await;
    }

    /// Stop every service, drain their reports, close all connections.
    async fn shutdown(&mut self, events: &mut mpsc::Receiver<Event>) {
        let mut running: BTreeSet<String> = self
            .units
            .values()
            .filter(|u| u.svc.is_some())
            .map(|u| u.info.name.clone())
            .collect();
        // Supervisors see the same cancellation and stop their processes;
        // wait for them to report, bounded by the channel closing.
        while !running.is_empty() {
            match events.recv().await {
                Some(Event::Unit(r)) if r.exited_supervisor => {
                    running.remove(&r.name);
                }
                Some(_) => {}
                None => break,
            }
        }
        self.conns.clear();
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connect {
                id,
                private,
                peer,
                tx,
            } => {
                let comm = peer.pid.map(crate::proc::comm).unwrap_or_default();
                self.conns.insert(
                    id,
                    Conn {
                        unique: format!(":1.{id}"),
                        private,
                        peer,
                        comm,
                        since_ms: self.clock.wall_unix_ms(),
                        subscribed: false,
                        jar: private.then(|| CookieJar::new(0, self.fix)),
                        close_after_reply: false,
                        tx,
                    },
                );
            }
            Event::Disconnect { id } => {
                self.conns.remove(&id);
                self.pending.retain(|(c, _), _| *c != id);
            }
            Event::Message { id, msg } => self.on_message(id, msg).await,
            Event::Unit(r) => self.on_unit_report(r).await,
            Event::BusReply { cookie } => {
                self.in_use.remove(&cookie);
            }
        }
    }

    async fn on_message(&mut self, id: u64, msg: pb::BusMessage) {
        if msg.r#type() != pb::MessageType::MethodCall {
            return;
        }
        if msg.destination == names::BUS {
            self.bus_daemon_call(id, msg);
            return;
        }
        let unit = call_unit(&msg);
        let key = (id, msg.serial);
        // The debug interface reads state, like gdb; it is not a caller.
        let track = msg.interface != names::DEBUG;
        if track {
            self.pending.insert(
                key,
                Pending {
                    member: msg.member.clone(),
                    unit,
                    serial: msg.serial,
                    since_ms: self.clock.wall_unix_ms(),
                    since: self.clock.now(),
                    reason: "in progress".into(),
                },
            );
        }
        let mut signals = Vec::new();
        let result = self.dispatch(id, &msg, &mut signals).await;
        if !self.conns.contains_key(&id) {
            self.pending.remove(&key);
        } else {
            let reply = match result {
                Ok(body) => pb::BusMessage {
                    r#type: pb::MessageType::MethodReturn as i32,
                    reply_serial: msg.serial,
                    destination: msg.sender.clone(),
                    body,
                    ..Default::default()
                },
                Err((name, message)) => pb::BusMessage {
                    r#type: pb::MessageType::Error as i32,
                    reply_serial: msg.serial,
                    destination: msg.sender.clone(),
                    error_name: name,
                    error_message: message,
                    ..Default::default()
                },
            };
            match self.send_from_systemd(id, reply).await {
                Ok(()) => {
                    self.pending.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(
                        "systemd: Failed to process message [type=method_call sender={} path={} interface={} member={}]: {e}",
                        msg.sender,
                        msg.path,
                        msg.interface,
                        msg.member
                    );
                    if let Some(p) = self.pending.get_mut(&key) {
                        p.reason = format!("reply not sent: {e}");
                    }
                }
            }
            if let Some(c) = self.conns.get(&id)
                && c.close_after_reply
            {
                self.conns.remove(&id);
            }
        }
        for s in signals {
            self.emit(s).await;
        }
    }

    /// Calls to org.freedesktop.DBus are answered by the bus daemon, with
    /// its own serials: they never touch systemd's cookie.
    fn bus_daemon_call(&mut self, id: u64, msg: pb::BusMessage) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let body = match msg.member.as_str() {
            "Hello" => Some(Body::HelloReply(pb::HelloReply {
                unique_name: conn.unique.clone(),
            })),
            _ => None,
        };
        if msg.member == "AddMatch"
            && let Some(c) = self.conns.get_mut(&id)
        {
            // A match rule for systemd's signals: the bus routes them here.
            c.subscribed = true;
        }
        if let Some(Body::Hello(h)) = &msg.body
            && let Some(c) = self.conns.get_mut(&id)
            && c.comm.is_empty()
        {
            c.comm = h.comm.clone();
        }
        let reply = pb::BusMessage {
            r#type: pb::MessageType::MethodReturn as i32,
            reply_serial: msg.serial,
            sender: names::BUS.into(),
            body,
            ..Default::default()
        };
        self.send_from_bus(id, reply);
    }

    fn send_from_bus(&mut self, id: u64, mut msg: pb::BusMessage) {
        self.bus_serial = self.bus_serial.wrapping_add(1).max(1);
        msg.serial = self.bus_serial;
        msg.sender = names::BUS.into();
        self.deliver(id, msg);
    }

    fn deliver(&mut self, id: u64, msg: pb::BusMessage) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if let Err(e) = conn.tx.try_send(Ok(msg)) {
            match e {
                mpsc::error::TrySendError::Full(_) => tracing::warn!(
                    "bus: outgoing queue of {} (pid {:?}) is full; disconnecting it",
                    conn.unique,
                    conn.peer.pid
                ),
                mpsc::error::TrySendError::Closed(_) => {}
            }
            self.conns.remove(&id);
            self.pending.retain(|(c, _), _| *c != id);
        }
    }

    /// `bus_seal_message`: take the next cookie of the connection the
    /// message leaves on. The failpoint `systemd/bus/seal` with
    /// `return(<cookie>)` overwrites the system bus counter first — the
    /// article's `set var bus->cookie` in gdb.
    async fn seal(&mut self, id: u64) -> Result<u32, SealError> {
        let private = self.conns.get(&id).is_some_and(|c| c.private);
        if private {
            let c = self.conns.get_mut(&id).and_then(|c| c.jar.as_mut());
            return match c {
                Some(jar) => jar.seal(|_| false),
                None => Err(SealError::Exhausted),
            };
        }
        if let Err(e) = ackemu_base::failpoint!("systemd/bus/seal") {
            match crate::proc::parse_u64(&e.message) {
                Ok(v) => {
                    tracing::info!("systemd: bus cookie set to {v:#x} (failpoint)");
                    self.system.set(v);
                }
                Err(err) => tracing::warn!(
                    "systemd: failpoint systemd/bus/seal wants a cookie value as its return message: {err}"
                ),
            }
        }
        let in_use = &self.in_use;
        self.system.seal(|c| in_use.contains(&c))
    }

    async fn send_from_systemd(
        &mut self,
        id: u64,
        mut msg: pb::BusMessage,
    ) -> Result<(), SealError> {
        let sealed = self.seal(id).await;
        let cookie = match sealed {
            Ok(c) => c,
            Err(e) => {
                self.seal_failures += 1;
                self.last_seal_error = e.to_string();
                return Err(e);
            }
        };
        self.sealed += 1;
        metrics::counter!("ackemu_systemd_messages_sealed_total").increment(1);
        msg.serial = cookie;
        msg.sender = names::SYSTEMD_UNIQUE.into();
        self.deliver(id, msg);
        Ok(())
    }

    /// Emit a signal on the system bus to every subscribed connection (and
    /// to a job's requester on the private socket, sealed there).
    async fn emit(&mut self, s: Outgoing) {
        if let Some((w, _)) = s.waiter
            && self.conns.get(&w).is_some_and(|c| c.private)
        {
            let msg = pb::BusMessage {
                r#type: pb::MessageType::Signal as i32,
                path: names::SYSTEMD_PATH.into(),
                interface: names::MANAGER.into(),
                member: s.member.into(),
                body: Some(s.body.clone()),
                ..Default::default()
            };
            let _ = self.send_from_systemd(w, msg).await;
        }
        // Subscribers, and the job's requester (systemd tracks it).
        let subscribers: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                !c.private && (c.subscribed || s.waiter.is_some_and(|(w, _)| w == **id))
            })
            .map(|(id, _)| *id)
            .collect();
        // Sealed once on systemd's bus connection, whoever receives it.
        let Some(first) = subscribers.first().copied() else {
            return;
        };
        let msg = pb::BusMessage {
            r#type: pb::MessageType::Signal as i32,
            path: names::SYSTEMD_PATH.into(),
            interface: names::MANAGER.into(),
            member: s.member.into(),
            body: Some(s.body.clone()),
            ..Default::default()
        };
        match self.seal(first).await {
            Ok(cookie) => {
                self.sealed += 1;
                for id in subscribers {
                    let mut m = msg.clone();
                    m.serial = cookie;
                    m.sender = names::SYSTEMD_UNIQUE.into();
                    self.deliver(id, m);
                }
            }
            Err(e) => {
                self.seal_failures += 1;
                self.last_seal_error = e.to_string();
                tracing::warn!("systemd: Failed to send {} signal: {e}", s.member);
                if s.waiter.is_some() {
                    self.undelivered.push(s.clone());
                }
                if let Some((conn, serial)) = s.waiter
                    && self.conns.contains_key(&conn)
                {
                    let unit = match &msg.body {
                        Some(Body::JobSignal(j)) => j.unit.clone(),
                        _ => String::new(),
                    };
                    self.pending.insert(
                        (conn, serial),
                        Pending {
                            member: s.member.into(),
                            unit,
                            serial,
                            since_ms: self.clock.wall_unix_ms(),
                            since: self.clock.now(),
                            reason: format!("signal not sent: {e}"),
                        },
                    );
                }
            }
        }
    }

    fn new_job(&mut self, unit: &str, requester: Option<(u64, u32)>) -> (u32, String) {
        self.next_job = self.next_job.wrapping_add(1).max(1);
        let id = self.next_job;
        self.jobs.insert(
            id,
            Job {
                unit: unit.to_string(),
                requester,
            },
        );
        (id, format!("{}/job/{id}", names::SYSTEMD_PATH))
    }

    fn job_signal(&self, member: &'static str, id: u32, result: &str) -> Outgoing {
        let job = self.jobs.get(&id);
        Outgoing {
            member,
            body: Body::JobSignal(pb::JobSignal {
                job_id: id,
                job_path: format!("{}/job/{id}", names::SYSTEMD_PATH),
                unit: job.map(|j| j.unit.clone()).unwrap_or_default(),
                result: result.to_string(),
            }),
            waiter: if member == "JobRemoved" {
                job.and_then(|j| j.requester)
            } else {
                None
            },
        }
    }

    fn unit_signal(member: &'static str, unit: &str) -> Outgoing {
        Outgoing {
            member,
            body: Body::UnitSignal(pb::UnitSignal {
                unit: unit.to_string(),
                unit_path: unit_path(unit),
            }),
            waiter: None,
        }
    }

    async fn dispatch(
        &mut self,
        id: u64,
        msg: &pb::BusMessage,
        signals: &mut Vec<Outgoing>,
    ) -> CallResult {
        let unit_req = match &msg.body {
            Some(Body::UnitRequest(r)) => Some(r.clone()),
            _ => None,
        };
        let need_unit = || {
            unit_req.clone().ok_or_else(|| {
                (
                    names::ERR_INVALID_ARGS.to_string(),
                    format!("{} expects a unit name", msg.member),
                )
            })
        };
        match (msg.interface.as_str(), msg.member.as_str()) {
            (names::MANAGER, "Subscribe") => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.subscribed = true;
                }
                // sd_bus_track: systemd watches the subscriber's name with
                // an AddMatch call of its own; its cookie is in use until
                // the bus replies.
                if let Ok(cookie) = self.seal(id).await {
                    self.sealed += 1;
                    self.in_use.insert(cookie);
                    let _ = self.events_tx.try_send(Event::BusReply { cookie });
                }
                Ok(None)
            }
            (names::MANAGER, "Unsubscribe") => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.subscribed = false;
                }
                Ok(None)
            }
            (names::MANAGER, "StartTransientUnit") => {
                let Some(Body::StartTransientUnit(req)) = &msg.body else {
                    return Err((
                        names::ERR_INVALID_ARGS.into(),
                        "StartTransientUnit expects (name, mode, properties)".into(),
                    ));
                };
                self.start_transient(id, msg.serial, req, signals)
            }
            (names::MANAGER, "StopUnit") => {
                let r = need_unit()?;
                self.stop_unit(id, msg.serial, &r.name, signals)
            }
            (names::MANAGER, "StartUnit" | "RestartUnit") => {
                let r = need_unit()?;
                let restart = msg.member == "RestartUnit";
                self.start_service(id, msg.serial, &r.name, restart, signals)
            }
            (names::MANAGER, "GetUnit") => {
                let r = need_unit()?;
                match self.units.get(&r.name) {
                    Some(u) => Ok(Some(Body::UnitInfo(u.info.clone()))),
                    None => Err(no_such_unit(&r.name)),
                }
            }
            (names::MANAGER, "ListUnits") => Ok(Some(Body::UnitList(pb::UnitList {
                units: self.units.values().map(|u| u.info.clone()).collect(),
            }))),
            (names::MANAGER, "Reexecute") => {
                self.reexec(id);
                signals.append(&mut self.undelivered);
                Ok(None)
            }
            (names::DEBUG, "BusStatus") => Ok(Some(Body::BusStatus(self.bus_status()))),
            (iface, member) => Err((
                names::ERR_UNKNOWN_METHOD.into(),
                format!("Unknown method {member} or interface {iface}."),
            )),
        }
    }

    fn start_transient(
        &mut self,
        id: u64,
        serial: u32,
        req: &pb::StartTransientUnit,
        signals: &mut Vec<Outgoing>,
    ) -> CallResult {
        let kind = req.name.rsplit_once('.').map(|(_, k)| k).unwrap_or("");
        if kind != "slice" && kind != "scope" {
            return Err((
                names::ERR_INVALID_ARGS.into(),
                format!("Unit type {kind} does not support transient units."),
            ));
        }
        if self.units.contains_key(&req.name) {
            return Err((
                names::ERR_UNIT_EXISTS.into(),
                format!("Unit {} already exists.", req.name),
            ));
        }
        let props = req.properties.clone().unwrap_or_default();
        let slice = if kind == "slice" {
            parent_slice(&req.name)
        } else if props.slice.is_empty() {
            "system.slice".to_string()
        } else {
            props.slice.clone()
        };
        // Parent slices are loaded implicitly, as systemd does.
        let mut parent = slice.clone();
        while !parent.is_empty() && !self.units.contains_key(&parent) {
            self.insert_unit(&parent, "", Vec::new(), false);
            signals.push(Self::unit_signal("UnitNew", &parent));
            parent = parent_slice(&parent);
        }
        self.insert_unit(&req.name, &slice, props.pids.clone(), true);
        if let Some(u) = self.units.get_mut(&req.name) {
            u.info.description = props.description.clone();
        }
        let (job, path) = self.new_job(&req.name, Some((id, serial)));
        signals.push(self.job_signal("JobNew", job, ""));
        signals.push(Self::unit_signal("UnitNew", &req.name));
        signals.push(self.job_signal("JobRemoved", job, "done"));
        self.jobs.remove(&job);
        Ok(Some(Body::JobReply(pb::JobReply {
            job_id: job,
            job_path: path,
        })))
    }

    fn insert_unit(&mut self, name: &str, slice: &str, pids: Vec<u32>, transient: bool) {
        let sub = if name.ends_with(".scope") {
            "running"
        } else {
            "active"
        };
        self.units.insert(
            name.to_string(),
            Unit {
                info: pb::UnitInfo {
                    name: name.to_string(),
                    load_state: "loaded".into(),
                    active_state: "active".into(),
                    sub_state: sub.into(),
                    main_pid: 0,
                    pids,
                    slice: slice.to_string(),
                    transient,
                    state_change_unix_ms: self.clock.wall_unix_ms(),
                    result: "success".into(),
                    ..Default::default()
                },
                svc: None,
            },
        );
    }

    fn stop_unit(
        &mut self,
        id: u64,
        serial: u32,
        name: &str,
        signals: &mut Vec<Outgoing>,
    ) -> CallResult {
        let Some(unit) = self.units.get(name) else {
            return Err(no_such_unit(name));
        };
        if let Some(tx) = unit.svc.clone() {
            let (job, path) = self.new_job(name, Some((id, serial)));
            signals.push(self.job_signal("JobNew", job, ""));
            if tx.try_send(SvcCmd::Stop { job: Some(job) }).is_err() {
                self.jobs.remove(&job);
                return Err((
                    "org.freedesktop.systemd1.JobFailed".into(),
                    format!("supervisor of {name} is busy"),
                ));
            }
            return Ok(Some(Body::JobReply(pb::JobReply {
                job_id: job,
                job_path: path,
            })));
        }
        // Stopping a slice stops everything below it.
        let mut victims = vec![name.to_string()];
        let mut i = 0;
        while i < victims.len() {
            let parent = victims[i].clone();
            victims.extend(
                self.units
                    .values()
                    .filter(|u| u.info.slice == parent && u.svc.is_none())
                    .map(|u| u.info.name.clone()),
            );
            i += 1;
        }
        let (job, path) = self.new_job(name, Some((id, serial)));
        signals.push(self.job_signal("JobNew", job, ""));
        for v in victims.iter().rev() {
            if let Some(u) = self.units.remove(v) {
                for pid in &u.info.pids {
                    if crate::proc::alive(*pid) {
                        let _ = crate::proc::signal(*pid, Signal::SIGTERM);
                    }
                }
                signals.push(Self::unit_signal("UnitRemoved", v));
            }
        }
        signals.push(self.job_signal("JobRemoved", job, "done"));
        self.jobs.remove(&job);
        Ok(Some(Body::JobReply(pb::JobReply {
            job_id: job,
            job_path: path,
        })))
    }

    fn start_service(
        &mut self,
        id: u64,
        serial: u32,
        name: &str,
        restart: bool,
        signals: &mut Vec<Outgoing>,
    ) -> CallResult {
        let Some(unit) = self.units.get(name) else {
            return Err(no_such_unit(name));
        };
        let Some(tx) = unit.svc.clone() else {
            // A transient unit that exists is already started.
            let (job, path) = self.new_job(name, Some((id, serial)));
            signals.push(self.job_signal("JobNew", job, ""));
            signals.push(self.job_signal("JobRemoved", job, "done"));
            self.jobs.remove(&job);
            return Ok(Some(Body::JobReply(pb::JobReply {
                job_id: job,
                job_path: path,
            })));
        };
        let (job, path) = self.new_job(name, Some((id, serial)));
        signals.push(self.job_signal("JobNew", job, ""));
        let cmd = if restart {
            SvcCmd::Restart { job: Some(job) }
        } else {
            SvcCmd::Start { job: Some(job) }
        };
        if tx.try_send(cmd).is_err() {
            self.jobs.remove(&job);
            return Err((
                "org.freedesktop.systemd1.JobFailed".into(),
                format!("supervisor of {name} is busy"),
            ));
        }
        Ok(Some(Body::JobReply(pb::JobReply {
            job_id: job,
            job_path: path,
        })))
    }

    async fn on_unit_report(&mut self, r: UnitReport) {
        if let Some(u) = self.units.get_mut(&r.name) {
            if r.exited_supervisor {
                // Consumed here when the loop saw it before the shutdown
                // token: [`Manager::shutdown`] must not wait for it again.
                u.svc = None;
            }
            u.info.active_state = r.active_state.into();
            u.info.sub_state = r.sub_state.into();
            u.info.main_pid = r.main_pid;
            u.info.pids = if r.main_pid == 0 {
                Vec::new()
            } else {
                vec![r.main_pid]
            };
            u.info.restarts = r.restarts;
            u.info.result = r.result.into();
            u.info.exit_code = r.exit_code;
            u.info.state_change_unix_ms = self.clock.wall_unix_ms();
        }
        if let Some((job, result)) = r.job_done {
            let s = self.job_signal("JobRemoved", job, result);
            self.jobs.remove(&job);
            self.emit(s).await;
        }
    }

    /// `systemctl daemon-reexec`: systemd serializes its state, re-executes
    /// and reconnects to the bus with a fresh sd-bus object — so the cookie
    /// starts over. The bus daemon answers every call systemd left
    /// unanswered with NoReply; private connections are closed.
    fn reexec(&mut self, caller: u64) {
        tracing::info!("systemd: Reexecuting.");
        self.reexecs += 1;
        let orphaned: Vec<(u64, u32)> = self
            .pending
            .keys()
            .filter(|(c, _)| *c != caller && self.conns.get(c).is_some_and(|c| !c.private))
            .copied()
            .collect();
        for (conn, serial) in orphaned {
            self.pending.remove(&(conn, serial));
            self.send_from_bus(
                conn,
                pb::BusMessage {
                    r#type: pb::MessageType::Error as i32,
                    reply_serial: serial,
                    error_name: names::ERR_NO_REPLY.into(),
                    error_message:
                        "Message recipient disconnected from message bus without replying".into(),
                    ..Default::default()
                },
            );
        }
        self.pending.retain(|(c, _), _| *c == caller);
        self.system = CookieJar::new(0, self.fix);
        self.in_use.clear();
        let private: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, c)| c.private && **id != caller)
            .map(|(id, _)| *id)
            .collect();
        for id in private {
            self.conns.remove(&id);
        }
        if let Some(c) = self.conns.get_mut(&caller)
            && c.private
        {
            c.close_after_reply = true;
        }
    }

    fn bus_status(&self) -> pb::BusStatus {
        let now = self.clock.now();
        let mut pending: Vec<pb::PendingCall> = self
            .pending
            .iter()
            .filter_map(|((conn, _), p)| {
                let c = self.conns.get(conn)?;
                Some(pb::PendingCall {
                    sender: c.unique.clone(),
                    pid: c.peer.pid.unwrap_or(0),
                    comm: c.comm.clone(),
                    member: p.member.clone(),
                    unit: p.unit.clone(),
                    serial: p.serial,
                    since_unix_ms: p.since_ms,
                    waiting_ms: now.saturating_duration_since(p.since).as_millis() as u64,
                    reason: p.reason.clone(),
                })
            })
            .collect();
        pending.sort_by_key(|p| std::cmp::Reverse(p.waiting_ms));
        pb::BusStatus {
            cookie: self.system.current(),
            cookie_fix: self.fix,
            messages_sealed: self.sealed,
            seal_failures: self.seal_failures,
            last_seal_error: self.last_seal_error.clone(),
            pending,
            connections: self
                .conns
                .values()
                .map(|c| pb::BusConnection {
                    unique_name: c.unique.clone(),
                    pid: c.peer.pid.unwrap_or(0),
                    comm: c.comm.clone(),
                    since_unix_ms: c.since_ms,
                    subscribed: c.subscribed,
                })
                .collect(),
            reexecs: self.reexecs,
            units: self.units.len() as u32,
            jobs_total: self.next_job,
        }
    }

    /// Scopes whose processes have all exited are garbage-collected, as
    /// systemd does.
    async fn gc_scopes(&mut self) {
        let dead: Vec<String> = self
            .units
            .values()
            .filter(|u| {
                u.info.transient
                    && u.info.name.ends_with(".scope")
                    && !u.info.pids.is_empty()
                    && u.info.pids.iter().all(|p| !crate::proc::alive(*p))
            })
            .map(|u| u.info.name.clone())
            .collect();
        for name in dead {
            self.units.remove(&name);
            ackemu_base::v!(2, "systemd: {name}: Succeeded.");
            self.emit(Self::unit_signal("UnitRemoved", &name)).await;
        }
    }
}

fn no_such_unit(name: &str) -> (String, String) {
    (
        names::ERR_NO_SUCH_UNIT.into(),
        format!("Unit {name} not loaded."),
    )
}

fn unit_path(unit: &str) -> String {
    let escaped: String = unit
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect();
    format!("{}/unit/{escaped}", names::SYSTEMD_PATH)
}

/// `a-b-c.slice` → `a-b.slice` → `a.slice` → `-.slice` → "" (the root).
fn parent_slice(name: &str) -> String {
    let Some(stem) = name.strip_suffix(".slice") else {
        return String::new();
    };
    if stem == "-" {
        return String::new();
    }
    match stem.rsplit_once('-') {
        Some((parent, _)) if !parent.is_empty() => format!("{parent}.slice"),
        _ => "-.slice".into(),
    }
}

fn call_unit(msg: &pb::BusMessage) -> String {
    match &msg.body {
        Some(Body::StartTransientUnit(r)) => r.name.clone(),
        Some(Body::UnitRequest(r)) => r.name.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_slices() {
        assert_eq!(
            parent_slice("kubepods-besteffort-pod1.slice"),
            "kubepods-besteffort.slice"
        );
        assert_eq!(parent_slice("kubepods-besteffort.slice"), "kubepods.slice");
        assert_eq!(parent_slice("kubepods.slice"), "-.slice");
        assert_eq!(parent_slice("-.slice"), "");
        assert_eq!(
            parent_slice("libcontainer_42_systemd_test_default.slice"),
            "-.slice"
        );
    }

    #[test]
    fn unit_paths_are_escaped() {
        assert_eq!(
            unit_path("a-b.scope"),
            "/org/freedesktop/systemd1/unit/a_2db_2escope"
        );
    }
}
