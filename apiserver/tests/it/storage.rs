//! The storage layer against a real etcd: key layout, resourceVersion =
//! revision, 409 on stale updates, paged lists, the watch cache and 410.

use std::time::Duration;

use ackemu_apiserver::cache::{CacheConfig, EventKind};
use ackemu_apiserver::etcd::Etcd as EtcdClient;
use ackemu_apiserver::storage::{ListOptions, Storage};
use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::{KeyLayout, LabelSelector, Registry};
use serde_json::json;

use crate::harness::{Backend, Etcd, eventually};

fn storage(etcd: &Etcd, cache: CacheConfig) -> Storage {
    let clock = Clock::real();
    let tasks = Tasks::new(clock.clone());
    let client = EtcdClient::connect(
        std::slice::from_ref(&etcd.endpoint),
        Duration::from_secs(5),
        tasks.clone(),
    )
    .unwrap();
    Storage::new(client, KeyLayout::default(), tasks, clock, cache)
}

fn pod(name: &str, app: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": {}})
}

#[tokio::test]
async fn crud_conflict_and_key_layout_on_real_etcd() -> anyhow::Result<()> {
    crud_conflict_and_key_layout(Backend::Etcd).await
}

#[tokio::test]
async fn crud_conflict_and_key_layout_on_ackemu_store() -> anyhow::Result<()> {
    crud_conflict_and_key_layout(Backend::Store).await
}

async fn crud_conflict_and_key_layout(backend: Backend) -> anyhow::Result<()> {
    let etcd = Etcd::start_backend(backend).await?;
    let s = storage(&etcd, CacheConfig::default());
    let r = Registry::builtin();
    let pods = r.preferred("", "pods").unwrap();
    let svcs = r.preferred("", "services").unwrap();

    let created = s.create(pods, "default", "app", pod("app", "web")).await?;
    assert_eq!(
        created.obj["metadata"]["resourceVersion"],
        created.rv.to_string()
    );
    let again = s
        .create(pods, "default", "app", pod("app", "web"))
        .await
        .unwrap_err();
    assert_eq!(
        (again.code, again.message.as_str()),
        (409, "pods \"app\" already exists")
    );
    s.create(
        svcs,
        "default",
        "web",
        json!({"metadata": {"name": "web", "namespace": "default"}}),
    )
    .await?;
    let keys = etcd.keys("/registry/")?;
    assert!(
        keys.contains(&"/registry/pods/default/app".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"/registry/services/specs/default/web".to_owned()),
        "{keys:?}"
    );

    let got = s.get(pods, "default", "app").await?;
    assert_eq!(got.rv, created.rv);
    let mut changed = got.obj.clone();
    changed["metadata"]["labels"]["v"] = json!("2");
    let updated = s
        .update(pods, "default", "app", changed.clone(), got.rv)
        .await?;
    assert!(updated.rv > got.rv);
    let stale = s
        .update(pods, "default", "app", changed, got.rv)
        .await
        .unwrap_err();
    assert_eq!(stale.code, 409);
    assert_eq!(stale.reason, "Conflict");
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on pods \"app\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let deleted = s.delete(pods, "default", "app", &updated).await?;
    assert!(deleted.rv > updated.rv);
    let missing = s.get(pods, "default", "app").await.unwrap_err();
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, "pods \"app\" not found")
    );
    Ok(())
}

#[tokio::test]
async fn paged_lists_and_selectors() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let s = storage(&etcd, CacheConfig::default());
    let r = Registry::builtin();
    let pods = r.preferred("", "pods").unwrap();
    for i in 0..7 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        s.create(
            pods,
            "default",
            &format!("p{i}"),
            pod(&format!("p{i}"), app),
        )
        .await?;
    }
    s.create(
        pods,
        "other",
        "x",
        json!({"metadata": {"name": "x", "namespace": "other", "labels": {"app": "web"}}}),
    )
    .await?;

    // Pages of 3 at one revision, with continue tokens.
    let mut names = Vec::new();
    let mut opts = ListOptions {
        limit: 3,
        ..Default::default()
    };
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = s.list(pods, Some("default"), &opts).await?;
        pages += 1;
        first_rv.get_or_insert(page.rv);
        assert_eq!(
            Some(page.rv),
            first_rv,
            "every page is read at the first page's revision"
        );
        names.extend(
            page.items
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);

    // Selector with a limit still fills pages.
    let opts = ListOptions {
        limit: 2,
        labels: LabelSelector::parse("app=web")?,
        ..Default::default()
    };
    let page = s.list(pods, None, &opts).await?;
    assert_eq!(page.items.len(), 2);
    assert!(page.continue_token.is_some());

    // Consistent list from the watch cache, all namespaces.
    let all = s
        .list(
            pods,
            None,
            &ListOptions {
                labels: LabelSelector::parse("app=web")?,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(all.items.len(), 5);

    // A continue token from a compacted revision is 410.
    let page = s
        .list(
            pods,
            Some("default"),
            &ListOptions {
                limit: 2,
                ..Default::default()
            },
        )
        .await?;
    let token = page.continue_token.clone().unwrap();
    let mut last = s.get(pods, "default", "p0").await?;
    for _ in 0..3 {
        last = s
            .update(pods, "default", "p0", last.obj.clone(), last.rv)
            .await?;
    }
    s.etcd().compact(last.rv).await?;
    let err = s
        .list(
            pods,
            Some("default"),
            &ListOptions {
                limit: 2,
                continue_token: Some(token),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (410, "Expired"));
    Ok(())
}

#[tokio::test]
async fn watch_cache_replays_and_expires() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let s = storage(
        &etcd,
        CacheConfig {
            window_events: 5,
            ..CacheConfig::default()
        },
    );
    let r = Registry::builtin();
    let pods = r.preferred("", "pods").unwrap();
    let first = s.create(pods, "default", "w0", pod("w0", "web")).await?;
    let cache = s.cache(pods)?;
    let clock = Clock::real();
    cache
        .wait_for(first.rv, &clock, Duration::from_secs(10))
        .await?;

    // A watch from "now" sees later changes in order.
    let (initial, mut live) = cache.watch(first.rv)?;
    assert!(initial.is_empty());
    let second = s.create(pods, "default", "w1", pod("w1", "web")).await?;
    let upd = s
        .update(pods, "default", "w1", second.obj.clone(), second.rv)
        .await?;
    s.delete(pods, "default", "w1", &upd).await?;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let ev = live.recv().await.expect("event");
        kinds.push((
            ev.kind,
            ev.obj["metadata"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        kinds,
        [
            (EventKind::Added, "w1".to_owned()),
            (EventKind::Modified, "w1".to_owned()),
            (EventKind::Deleted, "w1".to_owned())
        ]
    );

    // From 0: synthetic ADDED for what exists.
    let (initial, _) = cache.watch(0)?;
    assert_eq!(initial.len(), 1);
    assert_eq!(initial[0].kind, EventKind::Added);

    // Push the window past the first revision: 410 with Kubernetes' text.
    let mut cur = first.clone();
    for _ in 0..8 {
        cur = s
            .update(pods, "default", "w0", cur.obj.clone(), cur.rv)
            .await?;
    }
    cache
        .wait_for(cur.rv, &clock, Duration::from_secs(10))
        .await?;
    let err = cache.watch(first.rv).unwrap_err();
    assert_eq!((err.code, err.reason), (410, "Expired"));
    assert!(
        err.message
            .starts_with(&format!("too old resource version: {} (", first.rv)),
        "{}",
        err.message
    );
    // A recent revision still works.
    let ok = eventually("replay from a recent revision", || {
        let r = cache.watch(cur.rv - 1).map(|(i, _)| i.len());
        async move { Ok(r.ok()) }
    })
    .await?;
    assert_eq!(ok, 1);
    Ok(())
}
