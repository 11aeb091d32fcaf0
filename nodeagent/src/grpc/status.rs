//! The one error → `Status` table of the runtime's CRI surface.

use tonic::{Code, Status};

use crate::runtime::RuntimeError;

/// Map a runtime error to its gRPC status.
pub fn runtime(e: RuntimeError) -> Status {
    let code = match &e {
        RuntimeError::NotFound(_) => Code::NotFound,
        RuntimeError::InvalidArgument(_) => Code::InvalidArgument,
        RuntimeError::FailedPrecondition(_) => Code::FailedPrecondition,
        RuntimeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        RuntimeError::Runc { .. } | RuntimeError::Network(_) | RuntimeError::Internal(_) => {
            Code::Unknown
        }
    };
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (RuntimeError::NotFound("x".into()), Code::NotFound),
            (
                RuntimeError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                RuntimeError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                RuntimeError::DeadlineExceeded("x".into()),
                Code::DeadlineExceeded,
            ),
            (RuntimeError::Network("x".into()), Code::Unknown),
        ];
        for (e, code) in cases {
            assert_eq!(runtime(e).code(), code);
        }
    }
}
