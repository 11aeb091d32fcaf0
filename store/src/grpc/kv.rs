//! etcd's KV service.

use std::collections::BTreeSet;

use ackemu_proto::ackemu::store::v1::internal_request::Request as Internal;
use ackemu_proto::etcdserverpb::kv_server::Kv;
use ackemu_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse, range_request,
    request_op,
};
use tonic::{Request, Response, Status};

use super::{Api, status};
use crate::apply::Response as Applied;
use crate::errors::{EtcdError, EtcdResult};

fn check_range(r: &RangeRequest) -> EtcdResult<()> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err()
        || range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(EtcdError::Malformed("invalid sort option".into()));
    }
    Ok(())
}

fn check_put(p: &PutRequest) -> EtcdResult<()> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

fn check_ops(ops: &[RequestOp], max_ops: usize) -> EtcdResult<()> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(r)?,
            Some(request_op::Request::RequestPut(p)) => check_put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                return Err(EtcdError::EmptyKey);
            }
            Some(request_op::Request::RequestDeleteRange(_)) => {}
            Some(request_op::Request::RequestTxn(t)) => check_txn(t, max_ops)?,
            None => {
                return Err(EtcdError::Malformed(
                    "txn operation without a request".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Puts and deletes of one branch (nested transactions count both of their
/// branches), as etcd's `checkIntervals` sees them.
fn writes(ops: &[RequestOp], puts: &mut Vec<Vec<u8>>, dels: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => puts.push(p.key.clone()),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                dels.push((d.key.clone(), d.range_end.clone()))
            }
            Some(request_op::Request::RequestTxn(t)) => {
                writes(&t.success, puts, dels);
                writes(&t.failure, puts, dels);
            }
            _ => {}
        }
    }
}

fn check_branch_keys(ops: &[RequestOp]) -> EtcdResult<()> {
    let (mut puts, mut dels) = (Vec::new(), Vec::new());
    for op in ops {
        // Siblings may not overlap; a nested txn's two branches may.
        let (mut p, mut d) = (Vec::new(), Vec::new());
        match &op.request {
            Some(request_op::Request::RequestTxn(t)) => {
                check_branch_keys(&t.success)?;
                check_branch_keys(&t.failure)?;
                let (mut ps, mut ds, mut pf, mut df) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                writes(&t.success, &mut ps, &mut ds);
                writes(&t.failure, &mut pf, &mut df);
                let set: BTreeSet<Vec<u8>> = ps.into_iter().chain(pf).collect();
                p.extend(set);
                d.extend(ds);
                d.extend(df);
            }
            _ => writes(std::slice::from_ref(op), &mut p, &mut d),
        }
        for k in &p {
            if puts.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(p);
        dels.extend(d);
    }
    for k in &puts {
        for (s, e) in &dels {
            if crate::mvcc::KeyRange::new(s, e).contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
    }
    Ok(())
}

fn check_txn(t: &TxnRequest, max_ops: usize) -> EtcdResult<()> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    check_ops(&t.success, max_ops)?;
    check_ops(&t.failure, max_ops)?;
    check_branch_keys(&t.success)?;
    check_branch_keys(&t.failure)?;
    Ok(())
}

fn read_only(ops: &[RequestOp]) -> bool {
    ops.iter().all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) => true,
        Some(request_op::Request::RequestTxn(t)) => read_only(&t.success) && read_only(&t.failure),
        _ => false,
    })
}

fn serializable(ops: &[RequestOp]) -> bool {
    ops.iter().all(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.serializable,
        Some(request_op::Request::RequestTxn(t)) => {
            serializable(&t.success) && serializable(&t.failure)
        }
        _ => false,
    })
}

impl Api {
    async fn txn_inner(&self, t: TxnRequest) -> EtcdResult<TxnResponse> {
        check_txn(&t, self.shared.cfg.max_txn_ops)?;
        if read_only(&t.success) && read_only(&t.failure) {
            if !(serializable(&t.success) && serializable(&t.failure)) {
                self.shared.linearizable_barrier().await?;
            }
            // Evaluated locally on a write transaction that is never committed.
            let mut sm = self.shared.sm.write();
            let mut scratch = sm.mvcc.begin();
            let mut resp = sm.mvcc.txn(&mut scratch, &t)?;
            sm.mvcc.stamp_txn(&mut resp);
            drop(sm);
            let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or_default();
            resp.header = Some(self.shared.header_at(rev));
            return Ok(resp);
        }
        match self.shared.propose(Internal::Txn(t)).await? {
            Applied::Txn(mut r) => {
                let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
                r.header = Some(self.shared.header_at(rev));
                Ok(r)
            }
            other => Err(EtcdError::Storage(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Kv for Api {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        check_range(&r).map_err(status)?;
        let resp = self.shared.range(&r).await.map_err(status)?;
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = req.into_inner();
        check_put(&p).map_err(status)?;
        match self
            .shared
            .propose(Internal::Put(p))
            .await
            .map_err(status)?
        {
            Applied::Put(mut r) => {
                let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
                r.header = Some(self.shared.header_at(rev));
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = req.into_inner();
        if d.key.is_empty() {
            return Err(status(EtcdError::EmptyKey));
        }
        match self
            .shared
            .propose(Internal::DeleteRange(d))
            .await
            .map_err(status)?
        {
            Applied::DeleteRange(mut r) => {
                let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
                r.header = Some(self.shared.header_at(rev));
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.txn_inner(req.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        match self
            .shared
            .propose(Internal::Compaction(req.into_inner()))
            .await
            .map_err(status)?
        {
            Applied::Compaction(mut r) => {
                let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
                r.header = Some(self.shared.header_at(rev));
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    #[test]
    fn txn_validation_matches_etcd() {
        let cases: Vec<(&str, Vec<RequestOp>, Option<EtcdError>)> = vec![
            ("distinct puts", vec![put("a"), put("b")], None),
            (
                "duplicate puts",
                vec![put("a"), put("a")],
                Some(EtcdError::DuplicateKey),
            ),
            (
                "put inside a deleted range",
                vec![put("b"), del("a", "c")],
                Some(EtcdError::DuplicateKey),
            ),
            (
                "put outside a deleted range",
                vec![put("d"), del("a", "c")],
                None,
            ),
            (
                "nested branches may repeat a key",
                vec![nested(vec![put("a")], vec![put("a")])],
                None,
            ),
            (
                "nested put clashes with sibling",
                vec![put("a"), nested(vec![put("a")], vec![])],
                Some(EtcdError::DuplicateKey),
            ),
            ("empty key", vec![put("")], Some(EtcdError::EmptyKey)),
            (
                "too many ops",
                (0..200).map(|i| put(&format!("k{i}"))).collect(),
                Some(EtcdError::TooManyOps),
            ),
        ];
        for (name, success, want) in cases {
            let t = TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            };
            assert_eq!(check_txn(&t, 128).err(), want, "{name}");
        }
    }
}
