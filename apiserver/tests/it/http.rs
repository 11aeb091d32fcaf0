//! Raw HTTPS requests where kubectl would hide the response (it retries
//! 429s and turns watch streams into tables): max-in-flight, 410 Gone,
//! bookmarks, anonymous access.

use std::time::Duration;

use ackemu_base::pki::{self, Ca, CertSpec};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::harness::{Backend, Cluster, eventually};

/// A minimal HTTPS/1.1 client presenting a client certificate (or none).
struct Client {
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl Client {
    fn new(c: &Cluster, user: Option<(&str, &str)>) -> anyhow::Result<Client> {
        let ca = Ca::from_pem(
            &std::fs::read_to_string(c.dir.path().join("pki/ca.crt"))?,
            &std::fs::read_to_string(c.dir.path().join("pki/ca.key"))?,
        )?;
        let cert = match user {
            Some((name, group)) => Some(ca.issue(
                &CertSpec::client(name, &[group], Duration::from_secs(3600)),
                &c.env.clock,
            )?),
            None => None,
        };
        let tls = pki::client_tls_config(
            &c.server.ca_pem,
            cert.as_ref()
                .map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
            &c.env.clock,
            &[b"http/1.1"],
        )?;
        Ok(Client {
            addr: c.server.addr,
            tls: std::sync::Arc::new(tls),
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        self.send_with(method, path, body, None).await
    }

    async fn json_as(&self, method: &str, path: &str, user: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.send_with(method, path, None, Some(user)).await?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        impersonate: Option<&str>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let conn_task = async move {
            let _ = conn.await;
        };
        // The connection future is driven alongside the request by the caller's runtime.
        let tasks = ackemu_base::tasks::Tasks::new(ackemu_base::clock::Clock::real());
        tasks.spawn("test-http-conn", conn_task);
        let mut req = hyper::Request::builder().method(method);
        if let Some(u) = impersonate {
            req = req.header("Impersonate-User", u);
        }
        let req = req
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        Ok(sender.send_request(req).await?)
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let resp = self.send(method, path, body).await?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((code, v))
    }
}

#[tokio::test]
async fn max_in_flight_answers_429_with_retry_after() -> anyhow::Result<()> {
    let c = Cluster::start_with(|cfg| cfg.api.max_requests_in_flight = 1).await?;
    let admin = Client::new(&c, Some(("kubernetes-admin", "system:masters")))?;
    ackemu_base::failpoint::set("apiserver/request", "hang")?;
    let a = admin.send("GET", "/api/v1/namespaces", None);
    let b = admin.send("GET", "/api/v1/namespaces", None);
    tokio::pin!(a);
    tokio::pin!(b);
    // One request holds the only slot (hung in the failpoint); the other is refused.
    let (refused, held) = tokio::select! {
        r = &mut a => (r?, b),
        r = &mut b => (r?, a),
    };
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("1")
    );
    let body: Value = serde_json::from_slice(&refused.into_body().collect().await?.to_bytes())?;
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(
        body["message"],
        "Too many requests, please try again later."
    );
    ackemu_base::failpoint::clear("apiserver/request");
    let held = held.await?;
    assert_eq!(held.status().as_u16(), 200);
    Ok(())
}

#[tokio::test]
async fn watch_from_compacted_window_is_410_and_bookmarks_flow() -> anyhow::Result<()> {
    watch_410_and_bookmarks(Backend::Etcd).await
}

#[tokio::test]
async fn watch_from_compacted_window_is_410_and_bookmarks_flow_on_ackemu_store()
-> anyhow::Result<()> {
    watch_410_and_bookmarks(Backend::Store).await
}

async fn watch_410_and_bookmarks(backend: Backend) -> anyhow::Result<()> {
    let c = Cluster::start_on(backend, |cfg| {
        cfg.cache.window_events = 3;
        cfg.api.bookmark_interval = Duration::from_millis(200);
    })
    .await?;
    let admin = Client::new(&c, Some(("kubernetes-admin", "system:masters")))?;
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": "0"}});
    let (code, created) = admin
        .json("POST", "/api/v1/namespaces/default/configmaps", Some(cm))
        .await?;
    assert_eq!(code, 201, "{created}");
    let first_rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .parse()?;
    // Warm the cache, then push the window past the first revision.
    let (code, _) = admin
        .json("GET", "/api/v1/namespaces/default/configmaps", None)
        .await?;
    assert_eq!(code, 200);
    let mut cur = created.clone();
    for i in 1..=6 {
        cur["data"]["n"] = serde_json::json!(i.to_string());
        let (code, v) = admin
            .json(
                "PUT",
                "/api/v1/namespaces/default/configmaps/c",
                Some(cur.clone()),
            )
            .await?;
        assert_eq!(code, 200, "{v}");
        cur = v;
    }
    // A stale update is a 409 with Kubernetes' message.
    let (code, v) = admin
        .json(
            "PUT",
            "/api/v1/namespaces/default/configmaps/c",
            Some(created.clone()),
        )
        .await?;
    assert_eq!(code, 409);
    assert_eq!(v["reason"], "Conflict");
    let last_rv = cur["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_owned();
    let gone = eventually("the watch window to pass the first revision", || {
        let admin = &admin;
        async move {
            let (code, v) = admin
                .json(
                    "GET",
                    &format!(
                        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={first_rv}"
                    ),
                    None,
                )
                .await?;
            Ok((code == 410).then_some(v))
        }
    })
    .await?;
    assert_eq!(gone["reason"], "Expired");
    assert!(
        gone["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("too old resource version: {first_rv} (")),
        "{gone}"
    );

    // A watch from the latest revision with bookmarks gets BOOKMARK events.
    let resp = admin
        .send("GET", &format!("/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion={last_rv}"), None)
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let mut buf = String::new();
    let bookmark = c
        .env
        .clock
        .timeout(Duration::from_secs(30), async {
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return None };
                if let Some(d) = frame.data_ref() {
                    buf.push_str(&String::from_utf8_lossy(d));
                }
                if let Some(line) = buf.lines().find(|l| l.contains("\"BOOKMARK\"")) {
                    return serde_json::from_str::<Value>(line).ok();
                }
            }
            None
        })
        .await?
        .context("a bookmark event")?;
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    let rv: i64 = bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .context("bookmark rv")?
        .parse()?;
    assert!(rv >= last_rv.parse::<i64>()?);
    Ok(())
}

#[tokio::test]
async fn anonymous_gets_health_but_not_resources() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let anon = Client::new(&c, None)?;
    let (code, body) = anon.json("GET", "/healthz", None).await?;
    assert_eq!((code, body), (200, Value::String("ok".to_owned())));
    let (code, v) = anon.json("GET", "/version", None).await?;
    assert_eq!(code, 200);
    assert_eq!(v["gitVersion"], "v1.33.1");
    let (code, v) = anon
        .json("GET", "/api/v1/namespaces/default/pods", None)
        .await?;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let (code, v) = anon.json("GET", "/apis", None).await?;
    assert_eq!(code, 403, "{v}");
    let user = Client::new(&c, Some(("someone", "dev")))?;
    let (code, v) = user.json("GET", "/apis", None).await?;
    assert_eq!(code, 200, "{v}");
    assert!(
        v["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == "apps"))
    );
    Ok(())
}

#[tokio::test]
async fn impersonation_needs_permission_and_is_audited() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let audit_path = dir.path().join("audit.log");
    let audit_cfg = audit_path.clone();
    let c = Cluster::start_with(move |cfg| cfg.api.audit_log = Some(audit_cfg)).await?;
    let admin = Client::new(&c, Some(("kubernetes-admin", "system:masters")))?;
    let someone = Client::new(&c, Some(("someone", "dev")))?;
    let (code, v) = admin
        .json_as("GET", "/api/v1/namespaces/default/pods", "jiang")
        .await?;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "pods is forbidden: User \"jiang\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let (code, v) = someone
        .json_as("GET", "/api/v1/namespaces/default/pods", "jiang")
        .await?;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "users \"jiang\" is forbidden: User \"someone\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let line = eventually("the audit event of the impersonated request", || {
        let path = audit_path.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Ok(text
                .lines()
                .find(|l| l.contains("impersonatedUser"))
                .map(str::to_owned))
        }
    })
    .await?;
    let ev: Value = serde_json::from_str(&line)?;
    assert_eq!(ev["user"]["username"], "kubernetes-admin");
    assert_eq!(ev["impersonatedUser"]["username"], "jiang");
    assert_eq!(ev["objectRef"]["resource"], "pods");
    assert_eq!(ev["verb"], "list");
    assert_eq!(ev["responseStatus"]["code"], 403);
    Ok(())
}
