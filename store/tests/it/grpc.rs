//! etcd API details etcdctl does not expose, through a plain gRPC client.

use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_proto::etcdserverpb::kv_client::KvClient;
use ackemu_proto::etcdserverpb::watch_client::WatchClient;
use ackemu_proto::etcdserverpb::{
    PutRequest, RangeRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse, watch_request,
};
use anyhow::{Context as _, Result};
use tonic::Code;

use crate::cluster::Cluster;

async fn next(
    clock: &Clock,
    s: &mut tonic::Streaming<WatchResponse>,
    what: &str,
) -> Result<WatchResponse> {
    clock
        .timeout(Duration::from_secs(10), s.message())
        .await
        .with_context(|| format!("waiting for {what}"))??
        .with_context(|| format!("stream ended before {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_cancel_and_malformed_requests() -> Result<()> {
    let c = Cluster::start(3, &[])?;
    let clock = Clock::real();
    let url = format!("http://{}", c.members[1].endpoint());
    let mut kv = KvClient::connect(url.clone()).await?;
    let mut watch = WatchClient::connect(url).await?;

    // Malformed requests get etcd's errors.
    let err = kv
        .range(RangeRequest::default())
        .await
        .expect_err("empty key");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    let err = kv
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .expect_err("value with ignore_value");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "etcdserver: value is provided")
    );
    let err = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            revision: 1 << 40,
            ..Default::default()
        })
        .await
        .expect_err("future revision");
    assert_eq!(err.code(), Code::OutOfRange);

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut stream = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let create = |id: i64| WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"/p/".to_vec(),
                range_end: b"/p0".to_vec(),
                watch_id: id,
                prev_kv: true,
                ..Default::default()
            },
        )),
    };
    tx.send(create(7)).await?;
    let r = next(&clock, &mut stream, "created").await?;
    assert!(r.created && r.watch_id == 7, "{r:?}");
    // A second watch with the same ID is refused.
    tx.send(create(7)).await?;
    let r = next(&clock, &mut stream, "duplicate refused").await?;
    assert!(r.canceled && r.watch_id == -1, "{r:?}");

    kv.put(PutRequest {
        key: b"/p/a".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    })
    .await?;
    let put2 = kv
        .put(PutRequest {
            key: b"/p/a".to_vec(),
            value: b"2".to_vec(),
            ..Default::default()
        })
        .await?;
    let rev = put2.into_inner().header.context("header")?.revision;
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = next(&clock, &mut stream, "events").await?;
        got.extend(r.events);
    }
    let prev = got[1].prev_kv.as_ref().context("prev_kv")?;
    assert_eq!(
        (
            prev.value.as_slice(),
            got[1].kv.as_ref().unwrap().mod_revision
        ),
        (&b"1"[..], rev)
    );

    // A progress request answers with watch ID -1 at a revision that no
    // later event will precede.
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    })
    .await?;
    let r = next(&clock, &mut stream, "progress").await?;
    assert!(r.watch_id == -1 && r.events.is_empty(), "{r:?}");
    assert!(r.header.context("header")?.revision >= rev);

    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 7 },
        )),
    })
    .await?;
    let r = next(&clock, &mut stream, "cancel").await?;
    assert!(r.canceled && r.watch_id == 7, "{r:?}");
    Ok(())
}

/// A watch opened with etcd's `hasleader` metadata (clientv3's
/// WithRequireLeader, which kube-apiserver uses) ends with `etcdserver: no
/// leader` once its member has been without a leader for a few election
/// timeouts; a plain watch on the same member stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_watch_ends_when_the_member_loses_its_leader() -> Result<()> {
    let mut c = Cluster::start(3, &[])?;
    c.wait_healthy()?;
    let clock = Clock::real();
    let url = format!("http://{}", c.members[0].endpoint());
    let mut watch = WatchClient::connect(url).await?;
    let create = || WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"/rl/".to_vec(),
                range_end: b"/rl0".to_vec(),
                ..Default::default()
            },
        )),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(create()).await?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut led = watch.watch(req).await?.into_inner();
    assert!(next(&clock, &mut led, "created").await?.created);
    let (ptx, prx) = tokio::sync::mpsc::channel(8);
    ptx.send(create()).await?;
    let mut plain = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(prx))
        .await?
        .into_inner();
    assert!(next(&clock, &mut plain, "created").await?.created);

    // Member 0 alone cannot have a leader.
    c.members[1].kill();
    c.members[2].kill();
    let end = clock
        .timeout(Duration::from_secs(30), led.message())
        .await
        .context("the require-leader watch should end")?;
    let err = end.expect_err("the stream ends with an error");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
    // The plain watch is still served: it answers a progress request.
    ptx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    })
    .await?;
    let r = next(&clock, &mut plain, "progress on the plain watch").await?;
    assert!(r.events.is_empty() && !r.canceled, "{r:?}");
    Ok(())
}
