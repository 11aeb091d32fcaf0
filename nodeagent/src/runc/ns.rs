//! The namespaces a container process is born into.
//!
//! A container gets the pod's network namespace (setns) and a private
//! mount namespace of its own: the spawning thread unshares `CLONE_NEWNS`
//! (which also unshares its `fs_struct`, so the rest of the process is
//! unaffected), makes `/` a recursive slave — mounts made on the node still
//! propagate in, none of the container's propagate out — and bind-mounts the
//! spec's mounts (`/etc/resolv.conf`, the service-account token directory,
//! …) before it spawns the process, which inherits the namespace. The
//! thread exits right after; the namespace lives as long as the process.
//!
//! Exec joins an existing container: the thread unshares `CLONE_FS` (the
//! kernel refuses `setns` into a mount namespace for a task sharing its
//! `fs_struct`) and `setns`es into `/proc/<pid>/ns/{net,mnt}`.
//!
//! ackemu's containers have no root filesystem of their own: they see the
//! node's, so a mount point that does not exist is created there (an empty
//! directory, or an empty file when the source is a file), as runc creates
//! mount points inside a rootfs.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

use super::spec::Mount;

/// Where a process is spawned.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Network namespace to join.
    pub netns: Option<PathBuf>,
    /// Create a private mount namespace with these bind mounts.
    pub new_mounts: Option<Vec<Mount>>,
    /// Mount namespace to join (`/proc/<pid>/ns/mnt`).
    pub join_mnt: Option<PathBuf>,
}

/// Files opened before the spawning thread switches namespaces.
pub struct Opened {
    netns: Option<File>,
    mnt: Option<File>,
    new_mounts: Option<Vec<Mount>>,
}

fn open(p: &Path, what: &str) -> std::io::Result<File> {
    File::open(p)
        .map_err(|e| std::io::Error::new(e.kind(), format!("opening {what} {}: {e}", p.display())))
}

impl Target {
    /// Open the namespace files (in the caller's namespaces).
    pub fn open(&self) -> std::io::Result<Opened> {
        Ok(Opened {
            netns: self
                .netns
                .as_deref()
                .map(|p| open(p, "netns"))
                .transpose()?,
            mnt: self
                .join_mnt
                .as_deref()
                .map(|p| open(p, "mount namespace"))
                .transpose()?,
            new_mounts: self.new_mounts.clone(),
        })
    }
}

fn sys(what: String) -> impl FnOnce(nix::errno::Errno) -> std::io::Error {
    move |e| std::io::Error::other(format!("{what}: {e}"))
}

impl Opened {
    /// Switch the calling thread into the target namespaces. Call it only
    /// on a thread that exits afterwards.
    pub fn enter(&self) -> std::io::Result<()> {
        if let Some(ns) = &self.netns {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(sys("setns network namespace".into()))?;
        }
        if let Some(mnt) = &self.mnt {
            unshare(CloneFlags::CLONE_FS).map_err(sys("unshare CLONE_FS".into()))?;
            setns(mnt, CloneFlags::CLONE_NEWNS).map_err(sys("setns mount namespace".into()))?;
        }
        if let Some(mounts) = &self.new_mounts {
            unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare CLONE_NEWNS".into()))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .map_err(sys("making / rslave".into()))?;
            for m in mounts {
                bind(m)?;
            }
        }
        Ok(())
    }
}

/// Bind-mount `m.source` on `m.destination`, read-only if asked.
fn bind(m: &Mount) -> std::io::Result<()> {
    let src = Path::new(&m.source);
    let dst = Path::new(&m.destination);
    if !dst.is_absolute() {
        return Err(std::io::Error::other(format!(
            "mount destination {:?} is not an absolute path",
            m.destination
        )));
    }
    let meta = std::fs::metadata(src).map_err(|e| {
        std::io::Error::new(e.kind(), format!("mount source {}: {e}", src.display()))
    })?;
    if !dst.exists() {
        if meta.is_dir() {
            std::fs::create_dir_all(dst)?;
        } else {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dst)?;
        }
    }
    let what = format!("bind mount {} on {}", src.display(), dst.display());
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(what.clone()))?;
    if m.readonly {
        mount(
            None::<&str>,
            dst,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(sys(format!("{what} read-only")))?;
    }
    Ok(())
}
