//! Small facts about processes read from /proc, and signals.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The command name of `pid` (`/proc/<pid>/comm`), or empty.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Send `sig` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    match kill(Pid::from_raw(raw), sig) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        r => r,
    }
}

/// Send `sig` to the process group led by `pgid`.
pub fn signal_group(pgid: u32, sig: Signal) -> nix::Result<()> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    match nix::sys::signal::killpg(Pid::from_raw(raw), sig) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        r => r,
    }
}

/// The inode of a namespace file (`/proc/<pid>/ns/net`), which identifies
/// the namespace.
pub fn ns_inode(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata(path)?.ino())
}

/// Parse `0x…` hex or decimal.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    r.map_err(|e| format!("invalid number {s:?}: {e}"))
}
