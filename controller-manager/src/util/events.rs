//! Kubernetes Events a core asks its driver to record.

use ackemu_kube::meta::ObjectMeta;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The object an event is about (`involvedObject`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    pub fn new(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

/// One event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub object: ObjectRef,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Event {
    pub fn normal(object: ObjectRef, reason: &str, message: impl Into<String>) -> Event {
        Event {
            object,
            type_: EventType::Normal,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn warning(object: ObjectRef, reason: &str, message: impl Into<String>) -> Event {
        Event {
            object,
            type_: EventType::Warning,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}
