//! The admin port every process serves (`--admin-listen`): the gRPC
//! `FaultService` and, on the same port, HTTP `/metrics` (Prometheus text),
//! `/healthz`, `/readyz`, `/debug/tasks` and `/debug/failpoints`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ackemu_proto::ackemu::fault::v1 as pb;
use ackemu_proto::ackemu::fault::v1::fault_service_server::{FaultService, FaultServiceServer};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::{failpoint, tasks};

/// Liveness and readiness, as `/healthz` and `/readyz` report them.
#[derive(Clone, Debug)]
pub struct Health {
    healthy: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: Arc::new(AtomicBool::new(true)),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Health {
    /// Set `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    /// Set `/healthz`.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Current liveness.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the global `metrics` recorder
/// on first use.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests): keep ours
            // for rendering anyway.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What the admin server needs.
#[derive(Clone)]
pub struct AdminState {
    /// The process clock (the fault service moves its offset).
    pub clock: Clock,
    /// Health flags.
    pub health: Health,
    /// Component name, shown in `/metrics` and `/healthz`.
    pub component: String,
}

/// The gRPC fault service.
#[derive(Clone)]
pub struct FaultSvc {
    clock: Clock,
}

impl FaultSvc {
    /// Serve faults for `clock`'s process.
    pub fn new(clock: Clock) -> Self {
        FaultSvc { clock }
    }
    fn clock_state(&self) -> pb::ClockState {
        pb::ClockState {
            time_scale: self.clock.time_scale(),
            epoch_unix_ms: self.clock.epoch_unix_ms(),
            offset_ms: self.clock.offset_ms(),
            wall_unix_ms: self.clock.wall_unix_ms(),
            monotonic_ms: self.clock.now().as_millis() as u64,
        }
    }
}

fn to_pb(s: failpoint::Status) -> pb::Failpoint {
    pb::Failpoint {
        name: s.name,
        action: s.action,
        hits: s.hits,
        fired: s.fired,
        parked: s.parked,
    }
}

#[tonic::async_trait]
impl FaultService for FaultSvc {
    async fn list_failpoints(
        &self,
        _: Request<pb::ListFailpointsRequest>,
    ) -> Result<Response<pb::ListFailpointsResponse>, Status> {
        Ok(Response::new(pb::ListFailpointsResponse {
            failpoints: failpoint::list().into_iter().map(to_pb).collect(),
        }))
    }

    async fn set_failpoint(
        &self,
        req: Request<pb::SetFailpointRequest>,
    ) -> Result<Response<pb::SetFailpointResponse>, Status> {
        let req = req.into_inner();
        let st = failpoint::set(&req.name, &req.action)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::warn!("failpoint {} set to {}", req.name, req.action);
        Ok(Response::new(pb::SetFailpointResponse {
            failpoint: Some(to_pb(st)),
        }))
    }

    async fn clear_failpoint(
        &self,
        req: Request<pb::ClearFailpointRequest>,
    ) -> Result<Response<pb::ClearFailpointResponse>, Status> {
        let name = req.into_inner().name;
        let was_active = failpoint::clear(&name);
        tracing::warn!("failpoint {name} cleared (was active: {was_active})");
        Ok(Response::new(pb::ClearFailpointResponse { was_active }))
    }

    async fn get_clock(
        &self,
        _: Request<pb::GetClockRequest>,
    ) -> Result<Response<pb::ClockState>, Status> {
        Ok(Response::new(self.clock_state()))
    }

    async fn set_clock_offset(
        &self,
        req: Request<pb::SetClockOffsetRequest>,
    ) -> Result<Response<pb::ClockState>, Status> {
        let ms = req.into_inner().offset_ms;
        self.clock.set_offset_ms(ms);
        tracing::warn!("cluster clock offset set to {ms}ms");
        Ok(Response::new(self.clock_state()))
    }

    async fn dump_tasks(
        &self,
        _: Request<pb::DumpTasksRequest>,
    ) -> Result<Response<pb::DumpTasksResponse>, Status> {
        Ok(Response::new(pb::DumpTasksResponse {
            tasks: tasks::dump()
                .into_iter()
                .map(|t| pb::TaskInfo {
                    id: t.id,
                    name: t.name,
                    waiting_on: t.waiting_on.unwrap_or_default(),
                    waiting_ms: t.waiting.as_millis() as u64,
                    age_ms: t.age.as_millis() as u64,
                    kind: t.kind.to_string(),
                })
                .collect(),
        }))
    }
}

async fn metrics_text(State(st): State<AdminState>) -> impl IntoResponse {
    metrics::gauge!("ackemu_tasks").set(tasks::dump().len() as f64);
    metrics::gauge!("ackemu_clock_offset_seconds").set(st.clock.offset_ms() as f64 / 1000.0);
    let parked: u32 = failpoint::list().iter().map(|f| f.parked).sum();
    metrics::gauge!("ackemu_failpoint_parked").set(f64::from(parked));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

async fn healthz(State(st): State<AdminState>) -> impl IntoResponse {
    if st.health.is_healthy() {
        (StatusCode::OK, "ok".to_string())
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} is not healthy", st.component),
        )
    }
}

async fn readyz(State(st): State<AdminState>) -> impl IntoResponse {
    if st.health.is_ready() {
        (StatusCode::OK, "ok".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} is not ready", st.component),
        )
    }
}

async fn debug_tasks() -> impl IntoResponse {
    tasks::render_dump()
}

async fn debug_failpoints() -> impl IntoResponse {
    let mut out = String::new();
    for f in failpoint::list() {
        out.push_str(&format!(
            "{}\t{}\thits={}\tfired={}\tparked={}\n",
            f.name, f.action, f.hits, f.fired, f.parked
        ));
    }
    out
}

/// The admin router: gRPC FaultService + HTTP endpoints on one port.
pub fn router(state: AdminState) -> Router {
    let grpc =
        tonic::service::Routes::new(FaultServiceServer::new(FaultSvc::new(state.clock.clone())))
            .into_axum_router();
    let http = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/debug/tasks", get(debug_tasks))
        .route("/debug/failpoints", get(debug_failpoints))
        .with_state(state);
    grpc.merge(http).fallback(not_found)
}

/// gRPC callers get `Unimplemented`; HTTP callers get a plain 404.
async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        Status::unimplemented(format!("no such method {}", req.uri().path())).into_http()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

/// Serve the admin router on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Bind `addr` (port 0 picks one) and return the listener and its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
