//! The hypervisor backend: what actually boots, stops and deletes an ECS
//! instance. The control plane only decides *that* an instance runs; a
//! backend makes it so (the local netns/TUN backend lives with the data
//! plane). [`RecordingBackend`] records calls for tests and can append them
//! to a JSON-lines file so a test driving the real binary can read them.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

/// Everything a backend needs to bring an instance up.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceSpec {
    pub instance_id: String,
    pub host_name: String,
    pub instance_type: String,
    pub cpu_core_count: u32,
    pub memory_size_gib: f64,
    pub vpc_id: String,
    pub vswitch_id: String,
    /// The primary ENI's address and prefix length.
    pub private_ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The VSwitch gateway (the `.253` of a /24).
    pub gateway: Ipv4Addr,
    /// Decoded UserData, run once the instance is up.
    pub user_data: String,
    pub ram_role: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("hypervisor {op} {instance_id}: {message}")]
pub struct HypervisorError {
    pub op: &'static str,
    pub instance_id: String,
    pub message: String,
}

pub trait HypervisorBackend: Send + Sync + 'static {
    /// Creates (or restarts) the instance and runs its UserData; resolves
    /// when the instance is up.
    fn boot(&self, spec: InstanceSpec) -> BoxFuture<'static, Result<(), HypervisorError>>;
    /// Stops the instance, keeping what `boot` needs to start it again.
    fn stop(&self, instance_id: String) -> BoxFuture<'static, Result<(), HypervisorError>>;
    /// Removes every trace of the instance; deleting an unknown instance
    /// succeeds.
    fn delete(&self, instance_id: String) -> BoxFuture<'static, Result<(), HypervisorError>>;
    /// After a cloudsim restart, for an instance the state says is
    /// Running: re-attach it if it still runs, boot it again if not.
    /// Backends without a data plane have nothing to do.
    fn resume(&self, spec: InstanceSpec) -> BoxFuture<'static, Result<(), HypervisorError>> {
        let _ = spec;
        Box::pin(async { Ok(()) })
    }
    /// The instance's console output so far (what its UserData printed),
    /// at most its last [`CONSOLE_OUTPUT_MAX`] bytes; `None` when this
    /// backend keeps none for it.
    fn console_output(&self, instance_id: &str) -> Option<String> {
        let _ = instance_id;
        None
    }
}

/// ECS returns the last 64 KiB of an instance's console output.
pub const CONSOLE_OUTPUT_MAX: usize = 64 * 1024;

/// The last [`CONSOLE_OUTPUT_MAX`] bytes of `text`, cut at a character
/// boundary.
pub fn console_tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(CONSOLE_OUTPUT_MAX);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum HypervisorEvent {
    Boot { spec: InstanceSpec },
    Stop { instance_id: String },
    Delete { instance_id: String },
}

/// Records every call; optionally fails boots of chosen instances.
#[derive(Debug, Clone, Default)]
pub struct RecordingBackend {
    events: Arc<Mutex<Vec<HypervisorEvent>>>,
    log: Option<PathBuf>,
    fail_boot_message: Arc<Mutex<Option<String>>>,
    consoles: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

impl RecordingBackend {
    pub fn new() -> RecordingBackend {
        RecordingBackend::default()
    }

    /// Also appends each event as a JSON line to `path`.
    pub fn with_log(path: PathBuf) -> RecordingBackend {
        RecordingBackend {
            log: Some(path),
            ..Default::default()
        }
    }

    pub fn events(&self) -> Vec<HypervisorEvent> {
        self.events.lock().clone()
    }

    /// What [`HypervisorBackend::console_output`] answers for `instance_id`.
    pub fn set_console_output(&self, instance_id: &str, text: &str) {
        self.consoles
            .lock()
            .insert(instance_id.to_owned(), text.to_owned());
    }

    /// Makes every following boot fail with `message` (`None` to stop).
    pub fn fail_boots(&self, message: Option<String>) {
        *self.fail_boot_message.lock() = message;
    }

    fn record(&self, ev: HypervisorEvent) -> Result<(), String> {
        if let Some(path) = &self.log {
            use std::io::Write as _;
            let line = serde_json::to_string(&ev).map_err(|e| e.to_string())?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("opening {}: {e}", path.display()))?;
            writeln!(f, "{line}").map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        self.events.lock().push(ev);
        Ok(())
    }
}

impl HypervisorBackend for RecordingBackend {
    fn console_output(&self, instance_id: &str) -> Option<String> {
        self.consoles
            .lock()
            .get(instance_id)
            .map(|t| console_tail(t).to_owned())
    }

    fn boot(&self, spec: InstanceSpec) -> BoxFuture<'static, Result<(), HypervisorError>> {
        let id = spec.instance_id.clone();
        let fail = self.fail_boot_message.lock().clone();
        let res = match fail {
            Some(message) => Err(HypervisorError {
                op: "boot",
                instance_id: id,
                message,
            }),
            None => self
                .record(HypervisorEvent::Boot { spec })
                .map_err(|message| HypervisorError {
                    op: "boot",
                    instance_id: id,
                    message,
                }),
        };
        Box::pin(async move { res })
    }

    fn stop(&self, instance_id: String) -> BoxFuture<'static, Result<(), HypervisorError>> {
        let res = self
            .record(HypervisorEvent::Stop {
                instance_id: instance_id.clone(),
            })
            .map_err(|message| HypervisorError {
                op: "stop",
                instance_id,
                message,
            });
        Box::pin(async move { res })
    }

    fn delete(&self, instance_id: String) -> BoxFuture<'static, Result<(), HypervisorError>> {
        let res = self
            .record(HypervisorEvent::Delete {
                instance_id: instance_id.clone(),
            })
            .map_err(|message| HypervisorError {
                op: "delete",
                instance_id,
                message,
            });
        Box::pin(async move { res })
    }
}
