//! Container mounts: a private mount namespace per container with the
//! pod's resolv.conf and service-account files at the standard paths, and
//! exec joining it.

use std::path::{Path, PathBuf};

use ackemu_proto::ackemu::node::v1 as pb;

use crate::server_rig::{Ctr, Node, read, sh};
use crate::util::{can_netns, wait_for};

const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn ns_link(p: &str) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .display()
        .to_string()
}

#[tokio::test]
async fn containers_see_their_mounts_in_a_private_mount_namespace_and_exec_joins_it() {
    if !can_netns("containers_see_their_mounts_in_a_private_mount_namespace_and_exec_joins_it") {
        return;
    }
    let mut n = Node::start("172.16.11.0/24").await;
    let files = n.path("kubelet/pods/uid-web");
    let sa_dir = files.join("volumes/kubernetes.io~projected/kube-api-access-x");
    std::fs::create_dir_all(&sa_dir).unwrap();
    std::fs::write(sa_dir.join("token"), "eyJhbGciOiJFUzI1NiJ9.test.sig").unwrap();
    std::fs::write(sa_dir.join("ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(sa_dir.join("namespace"), "shop").unwrap();
    let resolv = files.join("resolv.conf");
    let resolv_text = "nameserver 172.19.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";
    std::fs::write(&resolv, resolv_text).unwrap();
    let host_resolv = read(Path::new("/etc/resolv.conf"));

    let sb = n.run_sandbox("shop", "web").await;
    let id = n
        .run_container(
            &sb,
            "shop",
            "web",
            Ctr {
                name: "app",
                image: "toolbox",
                command: sh(&format!(
                    "cat /etc/resolv.conf; cat {SA}/namespace; echo; exec sleep 1000"
                )),
                mounts: vec![
                    pb::Mount {
                        container_path: "/etc/resolv.conf".into(),
                        host_path: resolv.display().to_string(),
                        readonly: false,
                    },
                    pb::Mount {
                        container_path: SA.into(),
                        host_path: sa_dir.display().to_string(),
                        readonly: true,
                    },
                ],
                attempt: 0,
            },
        )
        .await;
    let log = n.log_path(&id).await;
    wait_for(
        "the container printed its resolv.conf and namespace",
        || {
            let l = read(&log);
            l.contains("stdout F nameserver 172.19.0.10") && l.contains("stdout F shop")
        },
    )
    .await;
    let pid = n.pid(&id).await;
    assert_ne!(
        ns_link(&format!("/proc/{pid}/ns/mnt")),
        ns_link("/proc/self/ns/mnt"),
        "the container has its own mount namespace"
    );
    assert_eq!(
        read(Path::new("/etc/resolv.conf")),
        host_resolv,
        "the node's resolv.conf is untouched"
    );
    assert_eq!(
        read(&PathBuf::from(SA).join("token")),
        "",
        "nothing leaks out"
    );

    let exec = |cmd: Vec<String>| pb::ExecSyncRequest {
        container_id: id.clone(),
        cmd,
        timeout: 0,
    };
    let out = n
        .cri
        .exec_sync(exec(vec!["cat".into(), format!("{SA}/token")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"eyJhbGciOiJFUzI1NiJ9.test.sig");

    let out = n
        .cri
        .exec_sync(exec(sh("readlink /proc/self/ns/mnt /proc/self/ns/net")))
        .await
        .unwrap()
        .into_inner();
    let want = format!(
        "{}\n{}\n",
        ns_link(&format!("/proc/{pid}/ns/mnt")),
        ns_link(&format!("/proc/{pid}/ns/net"))
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        want,
        "exec joins both"
    );

    let out = n
        .cri
        .exec_sync(exec(sh(&format!("echo forged > {SA}/token"))))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(out.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&sa_dir.join("token")), "eyJhbGciOiJFUzI1NiJ9.test.sig");

    // A mount with a relative path is refused before anything runs.
    let err = n
        .cri
        .create_container(pb::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(pb::ContainerConfig {
                metadata: Some(pb::ContainerMetadata {
                    name: "bad".into(),
                    attempt: 0,
                }),
                command: sh("true"),
                mounts: vec![pb::Mount {
                    container_path: "etc/hosts".into(),
                    host_path: "/etc/hosts".into(),
                    readonly: true,
                }],
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    n.cri
        .remove_pod_sandbox(pb::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await
        .unwrap();
}
