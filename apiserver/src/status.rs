//! API errors as Kubernetes `Status` objects: one table from error to HTTP
//! code, `reason` and message text (`k8s.io/apimachinery/pkg/api/errors`).

use ackemu_kube::GroupResource;
use serde_json::{Value, json};

/// An error the API returns to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` (name, group, kind, causes).
    pub details: Option<Value>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after_seconds: Option<u64>,
}

fn details(gr: &GroupResource, name: &str) -> Option<Value> {
    Some(json!({"name": name, "group": gr.group, "kind": gr.resource}))
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
        }
    }

    /// An error with an explicit code and reason (`""` is
    /// `StatusReasonUnknown`, what Go errors that are not API statuses
    /// become: code 500, no reason, the error text as message).
    pub fn with_reason(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self {
            details: details(gr, name),
            ..Self::new(404, "NotFound", format!("{gr} \"{name}\" not found"))
        }
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self {
            details: details(gr, name),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{gr} \"{name}\" already exists"),
            )
        }
    }

    pub fn conflict(gr: &GroupResource, name: &str, why: &str) -> Self {
        Self {
            details: details(gr, name),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"),
            )
        }
    }

    /// The optimistic-concurrency conflict of a stale `resourceVersion`.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410 for a watch or list from a compacted resourceVersion.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_old(requested: i64, oldest: i64) -> Self {
        Self::gone(format!("too old resource version: {requested} ({oldest})"))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(
        kind: &str,
        gr: &GroupResource,
        name: &str,
        causes: Vec<(String, String, String)>,
    ) -> Self {
        let msgs: Vec<String> = causes
            .iter()
            .map(|(_, field, m)| format!("{field}: {m}"))
            .collect();
        let message = if msgs.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", msgs[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", msgs.join(", "))
        };
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(reason, field, message)| json!({"reason": reason, "message": message, "field": field}))
            .collect();
        Self {
            details: Some(json!({"name": name, "group": gr.group, "kind": kind, "causes": causes})),
            ..Self::new(422, "Invalid", message)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {ct:?}"
            ),
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    pub fn too_many_requests() -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(503, "ServiceUnavailable", message)
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// The success `Status` returned by some deletes.
pub fn success(gr: &GroupResource, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": gr.group, "kind": gr.resource, "uid": uid}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kubernetes() {
        let pods = GroupResource::new("", "pods");
        let deploy = GroupResource::new("apps", "deployments");
        let cases = [
            (
                ApiError::not_found(&pods, "app"),
                404,
                "NotFound",
                "pods \"app\" not found",
            ),
            (
                ApiError::already_exists(&deploy, "web"),
                409,
                "AlreadyExists",
                "deployments.apps \"web\" already exists",
            ),
            (
                ApiError::stale(&pods, "app"),
                409,
                "Conflict",
                "Operation cannot be fulfilled on pods \"app\": the object has been modified; please apply your changes to the latest version and try again",
            ),
            (
                ApiError::too_old(5, 10),
                410,
                "Expired",
                "too old resource version: 5 (10)",
            ),
            (
                ApiError::not_found_path(),
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ];
        for (e, code, reason, msg) in cases {
            let s = e.to_status();
            assert_eq!(s["code"], code);
            assert_eq!(s["reason"], reason);
            assert_eq!(s["message"], msg);
            assert_eq!(s["status"], "Failure");
        }
        let inv = ApiError::invalid(
            "Pod",
            &pods,
            "Bad",
            vec![(
                "FieldValueInvalid".into(),
                "metadata.name".into(),
                "Invalid value: \"Bad\": x".into(),
            )],
        );
        assert_eq!(
            inv.message,
            "Pod \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": x"
        );
        assert_eq!(inv.code, 422);
    }
}
