//! Thin gRPC adapters: one service per product, all delegating to
//! [`Cloud::invoke`], plus the audit trail. [`status_of`] is the one
//! error→Status table.

use std::collections::BTreeMap;

use ackemu_proto::ackemu::cloud::v1 as pb;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::auth::{self, SignedRequest};
use crate::cloud::{Cloud, Product};
use crate::error::CloudError;

/// Maps a cloud error to a gRPC status: code from the HTTP status the real
/// API uses (authentication failures are Unauthenticated, throttling is
/// ResourceExhausted), message `<Code>: <Message>`, and the code and request
/// id as metadata.
pub fn status_of(e: &CloudError, request_id: &str) -> Status {
    let code = match (e.code.as_str(), e.http_status) {
        ("Throttling.User" | "Throttling", _) => tonic::Code::ResourceExhausted,
        (c, _)
            if c.starts_with("InvalidAccessKeyId")
                || c.starts_with("SignatureDoesNotMatch")
                || c.starts_with("InvalidSecurityToken")
                || c.starts_with("InvalidTimeStamp")
                || c == "MissingAccessKeyId"
                || c == "MissingSignature"
                || c == "MissingTimestamp"
                || c == "MissingSignatureNonce" =>
        {
            tonic::Code::Unauthenticated
        }
        (_, 403) => tonic::Code::PermissionDenied,
        (_, 404) => tonic::Code::NotFound,
        (_, 409) => tonic::Code::AlreadyExists,
        (_, 503) => tonic::Code::Unavailable,
        (_, s) if s >= 500 => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    };
    let mut st = Status::new(code, format!("{}: {}", e.code, e.message));
    if let Ok(v) = MetadataValue::try_from(e.code.as_str()) {
        st.metadata_mut().insert("x-acs-error-code", v);
    }
    if let Ok(v) = MetadataValue::try_from(request_id) {
        st.metadata_mut().insert("x-acs-request-id", v);
    }
    st
}

/// Reads the error code back from a status (clients).
pub fn error_code_of(st: &Status) -> Option<String> {
    st.metadata()
        .get("x-acs-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn signed(md: &MetadataMap) -> SignedRequest {
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    SignedRequest {
        access_key_id: get(auth::HDR_ACCESS_KEY_ID),
        timestamp_ms: get(auth::HDR_TIMESTAMP),
        nonce: get(auth::HDR_NONCE),
        security_token: get(auth::HDR_SECURITY_TOKEN),
        signature: get(auth::HDR_SIGNATURE),
    }
}

async fn invoke(
    cloud: &Cloud,
    product: Product,
    req: Request<pb::ActionRequest>,
) -> Result<Response<pb::ActionResponse>, Status> {
    let s = signed(req.metadata());
    let r = req.into_inner();
    let params: BTreeMap<String, String> = r.params.into_iter().collect();
    let inv = cloud.invoke(product, &r.action, params, &s).await;
    match inv.result {
        Ok(v) => Ok(Response::new(pb::ActionResponse {
            request_id: inv.request_id,
            json: v.to_string(),
        })),
        Err(e) => Err(status_of(&e, &inv.request_id)),
    }
}

macro_rules! product_service {
    ($ty:ident, $trait:path, $product:expr) => {
        #[derive(Clone)]
        pub struct $ty(pub Cloud);

        #[tonic::async_trait]
        impl $trait for $ty {
            async fn invoke(
                &self,
                req: Request<pb::ActionRequest>,
            ) -> Result<Response<pb::ActionResponse>, Status> {
                invoke(&self.0, $product, req).await
            }
        }
    };
}

product_service!(EcsSvc, pb::ecs_server::Ecs, Product::Ecs);
product_service!(VpcSvc, pb::vpc_server::Vpc, Product::Vpc);
product_service!(SlbSvc, pb::slb_server::Slb, Product::Slb);
product_service!(EssSvc, pb::ess_server::Ess, Product::Ess);
product_service!(RamSvc, pb::ram_server::Ram, Product::Ram);
product_service!(StsSvc, pb::sts_server::Sts, Product::Sts);
product_service!(
    RegistrySvc,
    pb::registry_server::Registry,
    Product::Registry
);

/// The parameters a LookupEvents request is signed with.
pub fn lookup_params(r: &pb::LookupEventsRequest) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    if r.after_seq > 0 {
        p.insert("AfterSeq".to_owned(), r.after_seq.to_string());
    }
    if !r.event_name.is_empty() {
        p.insert("EventName".to_owned(), r.event_name.clone());
    }
    if !r.caller.is_empty() {
        p.insert("Caller".to_owned(), r.caller.clone());
    }
    if r.limit > 0 {
        p.insert("Limit".to_owned(), r.limit.to_string());
    }
    p
}

#[derive(Clone)]
pub struct TrailSvc(pub Cloud);

#[tonic::async_trait]
impl pb::trail_server::Trail for TrailSvc {
    async fn lookup_events(
        &self,
        req: Request<pb::LookupEventsRequest>,
    ) -> Result<Response<pb::LookupEventsResponse>, Status> {
        let s = signed(req.metadata());
        let r = req.into_inner();
        let caller = self
            .0
            .authenticate(&s, "actiontrail", "LookupEvents", &lookup_params(&r))
            .map_err(|e| status_of(&e, ""))?;
        self.0
            .authorize_direct(&caller, "actiontrail:LookupEvents")
            .map_err(|e| status_of(&e, ""))?;
        let limit = if r.limit == 0 {
            1000
        } else {
            r.limit.min(10_000)
        } as usize;
        let events = self
            .0
            .audit_query(
                r.after_seq,
                Some(r.event_name.as_str()).filter(|x| !x.is_empty()),
                Some(r.caller.as_str()).filter(|x| !x.is_empty()),
                limit,
            )
            .into_iter()
            .map(|a| pb::AuditEvent {
                seq: a.seq,
                time_unix_ms: a.time_unix_ms,
                request_id: a.request_id,
                caller: a.caller,
                access_key_id: a.access_key_id,
                product: a.product,
                action: a.action,
                params: a.params.into_iter().collect(),
                success: a.success,
                error_code: a.error_code,
                error_message: a.error_message,
                detail: a.detail,
            })
            .collect();
        Ok(Response::new(pb::LookupEventsResponse { events }))
    }
}

/// All cloud services as tonic routes.
pub fn routes(cloud: &Cloud) -> tonic::service::Routes {
    tonic::service::Routes::new(pb::ecs_server::EcsServer::new(EcsSvc(cloud.clone())))
        .add_service(pb::vpc_server::VpcServer::new(VpcSvc(cloud.clone())))
        .add_service(pb::slb_server::SlbServer::new(SlbSvc(cloud.clone())))
        .add_service(pb::ess_server::EssServer::new(EssSvc(cloud.clone())))
        .add_service(pb::ram_server::RamServer::new(RamSvc(cloud.clone())))
        .add_service(pb::sts_server::StsServer::new(StsSvc(cloud.clone())))
        .add_service(pb::registry_server::RegistryServer::new(RegistrySvc(
            cloud.clone(),
        )))
        .add_service(pb::trail_server::TrailServer::new(TrailSvc(cloud.clone())))
}
