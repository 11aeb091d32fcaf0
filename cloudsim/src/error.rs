//! API-visible cloud errors: a stable code (`Forbidden.RAM`,
//! `InvalidVpcId.NotFound`, …), a message, and the HTTP status the real
//! OpenAPI answers with. `grpc::status_of` is the one place that maps them to
//! gRPC statuses.

use std::fmt;

/// An error the cloud API returns to its caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloudError {
    /// Alibaba-style error code, e.g. `InvalidVpcId.NotFound`.
    pub code: String,
    /// Human-readable message, as the real API phrases it where we know it.
    pub message: String,
    /// HTTP status the real OpenAPI uses for this code.
    pub http_status: u16,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CloudError {}

/// The message RAM gives when a caller is not allowed an action.
pub const FORBIDDEN_RAM_MESSAGE: &str =
    "User not authorized to operate on the specified resource, or this API doesn't support RAM.";

impl CloudError {
    pub fn new(code: impl Into<String>, message: impl Into<String>, http_status: u16) -> Self {
        CloudError {
            code: code.into(),
            message: message.into(),
            http_status,
        }
    }

    /// 400 with `InvalidParameter` and a message naming the parameter.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new("InvalidParameter", message, 400)
    }

    /// 400 `MissingParameter`: a required parameter is absent.
    pub fn missing_param(name: &str) -> Self {
        Self::new(
            format!("Missing{name}"),
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
            400,
        )
    }

    /// 404 `<Kind>.NotFound`, e.g. `not_found("InvalidVpcId", "vpc-1")`.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            format!("{kind}.NotFound"),
            format!("The specified resource {id} does not exist."),
            404,
        )
    }

    pub fn forbidden_ram() -> Self {
        Self::new("Forbidden.RAM", FORBIDDEN_RAM_MESSAGE, 403)
    }

    pub fn malformed_policy(detail: impl fmt::Display) -> Self {
        Self::new(
            "MalformedPolicyDocument",
            format!("The policy document is malformed: {detail}"),
            400,
        )
    }

    pub fn quota(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, message, 400)
    }

    pub fn incorrect_status(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, message, 403)
    }

    pub fn already_exists(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, message, 409)
    }

    pub fn throttling() -> Self {
        Self::new(
            "Throttling.User",
            "Request was denied due to user flow control.",
            400,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", message, 500)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new("ServiceUnavailable", message, 503)
    }
}

pub type CloudResult<T> = Result<T, CloudError>;
