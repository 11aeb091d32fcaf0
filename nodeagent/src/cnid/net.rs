//! The daemon's netlink work: the `cni0` bridge, veth pairs, addresses and
//! routes, through `rtnetlink` (the crate speaks NETLINK_ROUTE on a socket,
//! as vishvananda/netlink does for terwayd, so the hang of S02 sits exactly
//! where the article found it: waiting for the kernel's answer).
//!
//! Every operation goes through [`Netlink::op`]: it is recorded in the task
//! dump as `netlink <request>`, passes the failpoint `cnid/netlink/recv`
//! after the request was sent (`hang` = the answer never arrives), and,
//! with `--netlink-timeout`, gives up after that long (the article's fix).
//!
//! Namespaces are bind mounts under a netns directory (`/run/netns`, as
//! `ip netns add` makes them), created from a throwaway thread that
//! `unshare`s its own network namespace.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::{Tasks, wait_on};
use futures::TryStreamExt as _;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Netlink and namespace failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The kernel refused.
    #[error("netlink {what}: {message}")]
    Netlink {
        /// The request.
        what: String,
        /// The kernel's answer.
        message: String,
        /// errno, when the kernel sent one.
        errno: i32,
    },
    /// No answer within `--netlink-timeout`.
    #[error("netlink {what}: no answer within {timeout:?} (--netlink-timeout)")]
    Timeout {
        /// The request.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// An injected failure.
    #[error("netlink {what}: {source}")]
    Injected {
        /// The request.
        what: String,
        /// The failpoint.
        source: ackemu_base::failpoint::FailpointError,
    },
    /// Namespace or socket setup.
    #[error("{what}: {message}")]
    Setup {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
}

impl NetError {
    fn setup(what: impl Into<String>, e: impl std::fmt::Display) -> NetError {
        NetError::Setup {
            what: what.into(),
            message: e.to_string(),
        }
    }

    /// Whether the kernel said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetError::Netlink { errno, .. } if *errno == libc_enodev() || *errno == 2)
    }
}

const fn libc_enodev() -> i32 {
    19
}

/// A netlink connection in one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    clock: Clock,
    timeout: Option<Duration>,
    ns: String,
}

impl Netlink {
    /// A connection in the calling process' namespace (the node's).
    pub fn here(
        tasks: &Tasks,
        clock: Clock,
        timeout: Option<Duration>,
    ) -> Result<Netlink, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::setup("opening a netlink socket", e))?;
        tasks.spawn("cnid/netlink node connection", conn);
        Ok(Netlink {
            handle,
            clock,
            timeout,
            ns: "node".into(),
        })
    }

    /// A connection whose socket lives in the namespace at `path`: opened
    /// from a thread that joined it (a socket stays in the namespace it was
    /// created in).
    pub async fn in_netns(
        tasks: &Tasks,
        clock: Clock,
        timeout: Option<Duration>,
        path: &Path,
    ) -> Result<Netlink, NetError> {
        let ns = File::open(path)
            .map_err(|e| NetError::setup(format!("opening {}", path.display()), e))?;
        let rt = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.spawn_thread("cnid/netns-socket", move || {
            let r = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::setup("setns into the pod namespace", e))
                .and_then(|()| {
                    let _enter = rt.enter();
                    rtnetlink::new_connection().map_err(|e| {
                        NetError::setup("opening a netlink socket in the pod namespace", e)
                    })
                });
            let _ = tx.send(r);
        });
        let (conn, handle, _) = rx
            .await
            .map_err(|_| NetError::setup("opening a pod netlink socket", "the thread died"))??;
        tasks.spawn(format!("cnid/netlink {}", path.display()), conn);
        Ok(Netlink {
            handle,
            clock,
            timeout,
            ns: path.display().to_string(),
        })
    }

    /// Run one netlink request: recorded in the task dump, failpoint
    /// `cnid/netlink/recv` after the send, bounded by `--netlink-timeout`.
    pub async fn op<T, F>(&self, what: &str, fut: F) -> Result<T, NetError>
    where
        F: Future<Output = Result<T, rtnetlink::Error>>,
    {
        let what = format!("{what} [{}]", self.ns);
        let call = async {
            let r = fut.await;
            // The request went out; now "receive" its answer.
            ackemu_base::failpoint!("cnid/netlink/recv").map_err(|source| NetError::Injected {
                what: what.clone(),
                source,
            })?;
            r.map_err(|e| {
                let errno = match &e {
                    rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
                    _ => 0,
                };
                NetError::Netlink {
                    what: what.clone(),
                    message: e.to_string(),
                    errno,
                }
            })
        };
        let recorded = wait_on(format!("netlink recvfrom: {what}"), async {
            match self.timeout {
                Some(t) => match self.clock.timeout(t, call).await {
                    Ok(r) => r,
                    Err(_) => Err(NetError::Timeout {
                        what: what.clone(),
                        timeout: t,
                    }),
                },
                None => call.await,
            }
        });
        recorded.await
    }

    /// RTM_GETLINK by name; `None` when absent.
    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetError> {
        let h = self.handle.clone();
        let n = name.to_string();
        let r = self
            .op(&format!("RTM_GETLINK {name}"), async move {
                h.link().get().match_name(n).execute().try_next().await
            })
            .await;
        match r {
            Ok(l) => Ok(l),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn index(&self, name: &str) -> Result<u32, NetError> {
        self.link(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NetError::Netlink {
                what: format!("RTM_GETLINK {name} [{}]", self.ns),
                message: "no such device".into(),
                errno: libc_enodev(),
            })
    }

    /// The bridge `name` with `gateway/prefix`, created on first use.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
    ) -> Result<u32, NetError> {
        let index = match self.link(name).await? {
            Some(l) => l.header.index,
            None => {
                let h = self.handle.clone();
                let msg = LinkBridge::new(name).build();
                self.op(&format!("RTM_NEWLINK {name} type bridge"), async move {
                    h.link().add(msg).execute().await
                })
                .await?;
                self.index(name).await?
            }
        };
        let h = self.handle.clone();
        let addrs: Vec<_> = self
            .op(&format!("RTM_GETADDR {name}"), async move {
                h.address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        let has = addrs.iter().any(|a| {
            a.attributes.iter().any(|at| {
                matches!(at, rtnetlink::packet_route::address::AddressAttribute::Address(std::net::IpAddr::V4(ip)) if *ip == gateway)
            })
        });
        if !has {
            let h = self.handle.clone();
            self.op(
                &format!("RTM_NEWADDR {gateway}/{prefix} dev {name}"),
                async move {
                    h.address()
                        .add(index, gateway.into(), prefix)
                        .replace()
                        .execute()
                        .await
                },
            )
            .await?;
        }
        self.set_up(index, name).await?;
        Ok(index)
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetError> {
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.op(&format!("RTM_SETLINK {name} up"), async move {
            h.link().set(msg).execute().await
        })
        .await
    }

    /// A veth pair `host` <-> `peer` in this namespace.
    pub async fn add_veth(&self, host: &str, peer: &str) -> Result<(), NetError> {
        let h = self.handle.clone();
        let msg = LinkVeth::new(host, peer).build();
        self.op(
            &format!("RTM_NEWLINK {host} type veth peer {peer}"),
            async move { h.link().add(msg).execute().await },
        )
        .await
    }

    /// `LinkSetNsFd`: move `name` into the namespace open as `ns`.
    pub async fn set_netns(&self, name: &str, ns: &File) -> Result<(), NetError> {
        use std::os::fd::AsRawFd as _;
        let index = self.index(name).await?;
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        self.op(
            &format!("RTM_SETLINK {name} netns (LinkSetNsFd)"),
            async move { h.link().set(msg).execute().await },
        )
        .await
    }

    /// Enslave `name` to the bridge and bring it up.
    pub async fn attach_up(&self, name: &str, bridge: u32) -> Result<(), NetError> {
        let index = self.index(name).await?;
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_index(index)
            .controller(bridge)
            .up()
            .build();
        self.op(
            &format!("RTM_SETLINK {name} master {bridge} up"),
            async move { h.link().set(msg).execute().await },
        )
        .await
    }

    /// Delete link `name`; `false` when it did not exist.
    pub async fn del_link(&self, name: &str) -> Result<bool, NetError> {
        let Some(l) = self.link(name).await? else {
            return Ok(false);
        };
        let h = self.handle.clone();
        let index = l.header.index;
        match self
            .op(&format!("RTM_DELLINK {name}"), async move {
                h.link().del(index).execute().await
            })
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// In a pod namespace: rename `tmp` to `ifname`, address it, bring it
    /// and `lo` up, default route via `gateway`. Returns the MAC.
    pub async fn configure_pod_if(
        &self,
        tmp: &str,
        ifname: &str,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<String, NetError> {
        let index = self.index(tmp).await?;
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_index(index)
            .name(ifname.to_string())
            .build();
        self.op(&format!("RTM_SETLINK {tmp} name {ifname}"), async move {
            h.link().set(msg).execute().await
        })
        .await?;
        let h = self.handle.clone();
        self.op(
            &format!("RTM_NEWADDR {ip}/{prefix} dev {ifname}"),
            async move {
                h.address()
                    .add(index, ip.into(), prefix)
                    .replace()
                    .execute()
                    .await
            },
        )
        .await?;
        self.set_up(index, ifname).await?;
        let lo = self.index("lo").await?;
        self.set_up(lo, "lo").await?;
        let h = self.handle.clone();
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        self.op(
            &format!("RTM_NEWROUTE default via {gateway} dev {ifname}"),
            async move { h.route().add(route).replace().execute().await },
        )
        .await?;
        let l = self.link(ifname).await?;
        Ok(l.map(|l| mac_of(&l)).unwrap_or_default())
    }

    /// The IPv4 addresses on `ifname`.
    pub async fn addresses(&self, ifname: &str) -> Result<Vec<Ipv4Addr>, NetError> {
        let index = self.index(ifname).await?;
        let h = self.handle.clone();
        let addrs: Vec<_> = self
            .op(&format!("RTM_GETADDR {ifname}"), async move {
                h.address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        Ok(addrs
            .iter()
            .flat_map(|a| a.attributes.iter())
            .filter_map(|at| match at {
                rtnetlink::packet_route::address::AddressAttribute::Address(
                    std::net::IpAddr::V4(ip),
                ) => Some(*ip),
                _ => None,
            })
            .collect())
    }
}

fn mac_of(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Make `dir` a shared mount point, as `ip netns add` does, so namespace
/// mounts under it show up in other mount namespaces.
fn ensure_netns_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NetError::setup(format!("creating {}", dir.display()), e))?;
    let shared = |d: &Path| {
        nix::mount::mount(
            None::<&str>,
            d,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared(dir) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                NetError::setup(format!("bind-mounting {} onto itself", dir.display()), e)
            })?;
            shared(dir).map_err(|e| NetError::setup(format!("making {} shared", dir.display()), e))
        }
        Err(e) => Err(NetError::setup(
            format!("making {} shared", dir.display()),
            e,
        )),
    }
}

/// Create a named network namespace at `path` (a bind mount of a fresh
/// namespace), like `ip netns add`.
pub async fn create_netns(tasks: &Tasks, path: &Path) -> Result<(), NetError> {
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    ensure_netns_dir(&dir)?;
    let target = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tasks.spawn_thread("cnid/netns-create", move || {
        let r = (|| {
            File::create(&target)
                .map_err(|e| NetError::setup(format!("creating {}", target.display()), e))?;
            // This thread alone moves into a new namespace, then pins it.
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::setup("unshare(CLONE_NEWNET)", e))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                NetError::setup(
                    format!("bind-mounting the namespace on {}", target.display()),
                    e,
                )
            })
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&target);
        }
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| NetError::setup("creating a netns", "the thread died"))?
}

/// Unmount and remove the named namespace at `path` (no error if absent).
pub fn delete_netns(path: &Path) -> Result<(), NetError> {
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(NetError::setup(format!("unmounting {}", path.display()), e)),
    }
    std::fs::remove_file(path)
        .map_err(|e| NetError::setup(format!("removing {}", path.display()), e))
}

/// Host-side veth name and the peer's temporary name for (container, ifname):
/// deterministic, so a DEL after a restart finds what an ADD made.
pub fn veth_names(container_id: &str, ifname: &str) -> (String, String) {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    let hex = hex::encode(&h[..4]);
    (format!("veth{hex}"), format!("tmp{hex}"))
}

/// Whether `path` lies in `dir` (namespaces the daemon may create).
pub fn under(path: &Path, dir: &Path) -> bool {
    path.parent() == Some(dir)
}

/// The netns directory default.
pub fn default_netns_dir() -> PathBuf {
    PathBuf::from("/run/netns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_and_short() {
        let (h, p) = veth_names("abc", "eth0");
        assert_eq!(veth_names("abc", "eth0"), (h.clone(), p.clone()));
        assert_ne!(veth_names("abd", "eth0").0, h);
        assert!(h.len() <= 15 && p.len() <= 15, "IFNAMSIZ");
        assert!(h.starts_with("veth") && p.starts_with("tmp"));
    }
}
