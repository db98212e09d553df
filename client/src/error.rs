//! The client's typed errors: one variant per ZooKeeper-equivalent error code
//! of the contract, decoded from the `ErrorDetail` a server puts in a failed
//! call's gRPC status, plus the client's own connection and usage errors.

use prost::Message;
use synod_proto::v1::{ErrorCode, ErrorDetail};
use tonic::{Code, Status};

/// Result of every client operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed.
///
/// The variants named after ZooKeeper codes come from the server; `path` is
/// the node the server says the error is about (it may be empty when the
/// server did not name one). `ConnectionLoss` means the outcome of a write is
/// unknown: it may or may not have been applied, exactly as in ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no node {path}")]
    NoNode { path: String },
    #[error("node {path} already exists")]
    NodeExists { path: String },
    #[error("bad version for {path}")]
    BadVersion { path: String },
    #[error("node {path} is not empty")]
    NotEmpty { path: String },
    #[error("not authorized for {path}")]
    NoAuth { path: String },
    #[error("ephemeral nodes cannot have children: {path}")]
    NoChildrenForEphemerals { path: String },
    #[error("invalid ACL for {path}")]
    InvalidAcl { path: String },
    #[error("no watcher on {path}")]
    NoWatcher { path: String },
    #[error("quota exceeded for {path}")]
    QuotaExceeded { path: String },
    #[error("{}", lead("invalid path", &format!("invalid path {path:?}"), message))]
    InvalidPath { path: String, message: String },
    #[error("{}", lead("too large", "too large", message))]
    TooLarge { path: String, message: String },
    #[error("{}", lead("bad arguments", "bad arguments", message))]
    BadArguments { path: String, message: String },
    #[error("session expired")]
    SessionExpired,
    #[error("unknown session")]
    UnknownSession,
    #[error("authentication failed")]
    AuthFailed,
    #[error("server is throttling requests")]
    Throttled,
    #[error("operation timed out")]
    OperationTimeout,
    #[error("not implemented by the server: {message}")]
    Unimplemented { message: String },
    /// The server reported one of the codes that signal its own trouble
    /// (system error, runtime or data inconsistency, marshalling, API error).
    #[error("server error {}: {message}", code.as_str_name())]
    Server {
        code: ErrorCode,
        path: String,
        message: String,
    },
    /// The connection broke or the server could not serve the call now.
    #[error("connection lost: {message}")]
    ConnectionLoss { message: String },
    /// A transport-level failure (connecting, TLS, HTTP/2).
    #[error("{message}")]
    Transport { message: String },
    /// None of the configured endpoints accepted a connection and a session.
    #[error("could not connect to any of {endpoints}: {reason}")]
    NoServer { endpoints: String, reason: String },
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The caller asked for something the client refuses before sending.
    #[error("invalid argument: {message}")]
    InvalidArgument { message: String },
    /// A gRPC status without Synod's error detail (a proxy, or a server bug).
    #[error("rpc failed ({code:?}): {message}")]
    Rpc { code: Code, message: String },
    /// The client was closed (or dropped) and its session ended.
    #[error("client is closed")]
    Closed,
}

impl Error {
    /// Decodes a failed call's status: Synod's `ErrorDetail` when the status
    /// carries one, else a classification by gRPC code, so that transport
    /// failures surface as `ConnectionLoss`.
    pub fn from_status(status: &Status) -> Error {
        if let Some(detail) = decode_detail(status)
            && detail.code != ErrorCode::Ok as i32
        {
            let code = ErrorCode::try_from(detail.code).unwrap_or(ErrorCode::SystemError);
            let message = if detail.message.is_empty() {
                status.message().to_owned()
            } else {
                detail.message
            };
            return Error::from_code(code, detail.path, message);
        }
        let message = status.message().to_owned();
        match status.code() {
            // tonic reports refused connections, resets and broken streams
            // with these codes; none of them says anything about the request.
            Code::Unavailable | Code::Cancelled | Code::Unknown => {
                Error::ConnectionLoss { message }
            }
            Code::DeadlineExceeded => Error::OperationTimeout,
            Code::Unimplemented => Error::Unimplemented { message },
            code => Error::Rpc { code, message },
        }
    }

    /// Builds the error for a contract error code; `Ok` has no error and
    /// yields `Server` so that a confused caller still gets a value.
    pub fn from_code(
        code: ErrorCode,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        let path = path.into();
        let message = message.into();
        match code {
            ErrorCode::NoNode => Error::NoNode { path },
            ErrorCode::NodeExists => Error::NodeExists { path },
            ErrorCode::BadVersion => Error::BadVersion { path },
            ErrorCode::NotEmpty => Error::NotEmpty { path },
            ErrorCode::NoAuth => Error::NoAuth { path },
            ErrorCode::NoChildrenForEphemerals => Error::NoChildrenForEphemerals { path },
            ErrorCode::InvalidAcl => Error::InvalidAcl { path },
            ErrorCode::NoWatcher => Error::NoWatcher { path },
            ErrorCode::QuotaExceeded => Error::QuotaExceeded { path },
            ErrorCode::InvalidPath => Error::InvalidPath { path, message },
            ErrorCode::TooLarge => Error::TooLarge { path, message },
            ErrorCode::BadArguments => Error::BadArguments { path, message },
            ErrorCode::SessionExpired => Error::SessionExpired,
            ErrorCode::UnknownSession => Error::UnknownSession,
            ErrorCode::AuthFailed => Error::AuthFailed,
            ErrorCode::Throttled => Error::Throttled,
            ErrorCode::OperationTimeout => Error::OperationTimeout,
            ErrorCode::Unimplemented => Error::Unimplemented { message },
            ErrorCode::ConnectionLoss => Error::ConnectionLoss { message },
            ErrorCode::Ok
            | ErrorCode::SystemError
            | ErrorCode::RuntimeInconsistency
            | ErrorCode::DataInconsistency
            | ErrorCode::MarshallingError
            | ErrorCode::ApiError => Error::Server {
                code,
                path,
                message,
            },
        }
    }

    /// The contract's code for this error, when it has one.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::NoNode { .. } => ErrorCode::NoNode,
            Error::NodeExists { .. } => ErrorCode::NodeExists,
            Error::BadVersion { .. } => ErrorCode::BadVersion,
            Error::NotEmpty { .. } => ErrorCode::NotEmpty,
            Error::NoAuth { .. } => ErrorCode::NoAuth,
            Error::NoChildrenForEphemerals { .. } => ErrorCode::NoChildrenForEphemerals,
            Error::InvalidAcl { .. } => ErrorCode::InvalidAcl,
            Error::NoWatcher { .. } => ErrorCode::NoWatcher,
            Error::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Error::InvalidPath { .. } => ErrorCode::InvalidPath,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::BadArguments { .. } | Error::InvalidArgument { .. } => ErrorCode::BadArguments,
            Error::SessionExpired => ErrorCode::SessionExpired,
            Error::UnknownSession => ErrorCode::UnknownSession,
            Error::AuthFailed => ErrorCode::AuthFailed,
            Error::Throttled => ErrorCode::Throttled,
            Error::OperationTimeout => ErrorCode::OperationTimeout,
            Error::Unimplemented { .. } => ErrorCode::Unimplemented,
            Error::Server { code, .. } => *code,
            Error::ConnectionLoss { .. }
            | Error::Transport { .. }
            | Error::NoServer { .. }
            | Error::Closed => ErrorCode::ConnectionLoss,
            Error::InvalidEndpoint { .. } | Error::Rpc { .. } => return None,
        })
    }

    /// The node the error is about, when the server named one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::NoNode { path }
            | Error::NodeExists { path }
            | Error::BadVersion { path }
            | Error::NotEmpty { path }
            | Error::NoAuth { path }
            | Error::NoChildrenForEphemerals { path }
            | Error::InvalidAcl { path }
            | Error::NoWatcher { path }
            | Error::QuotaExceeded { path }
            | Error::InvalidPath { path, .. }
            | Error::TooLarge { path, .. }
            | Error::BadArguments { path, .. }
            | Error::Server { path, .. } => Some(path.as_str()).filter(|p| !p.is_empty()),
            _ => None,
        }
    }

    /// True when the connection, not the request, failed: a read can be
    /// retried as is, a write may or may not have been applied.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            Error::ConnectionLoss { .. } | Error::Transport { .. } | Error::NoServer { .. }
        )
    }

    /// True when the session is gone for good and a new client is needed.
    pub fn is_session_gone(&self) -> bool {
        matches!(self, Error::SessionExpired | Error::UnknownSession)
    }

    /// Fills in the path when the server did not name one, so that messages
    /// like "no node /a" stay useful.
    pub(crate) fn with_default_path(mut self, default: &str) -> Error {
        match &mut self {
            Error::NoNode { path }
            | Error::NodeExists { path }
            | Error::BadVersion { path }
            | Error::NotEmpty { path }
            | Error::NoAuth { path }
            | Error::NoChildrenForEphemerals { path }
            | Error::InvalidAcl { path }
            | Error::NoWatcher { path }
            | Error::QuotaExceeded { path }
            | Error::InvalidPath { path, .. }
            | Error::TooLarge { path, .. }
            | Error::BadArguments { path, .. }
            | Error::Server { path, .. }
                if path.is_empty() =>
            {
                default.clone_into(path);
            }
            _ => {}
        }
        self
    }

    /// Flattens a transport error and its causes into one line: tonic's own
    /// `Display` says only "transport error".
    pub(crate) fn transport(err: &(dyn std::error::Error + 'static)) -> Error {
        Error::Transport {
            message: error_chain(err),
        }
    }
}

/// Prefixes a server's message unless it already says what it is about:
/// synod-node sends its whole error text ("invalid path \"a\": ..."), other
/// servers may send just the reason.
fn lead(marker: &str, prefix: &str, message: &str) -> String {
    let already = message
        .get(..marker.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(marker));
    if already || prefix.is_empty() {
        message.to_owned()
    } else if message.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}: {message}")
    }
}

fn decode_detail(status: &Status) -> Option<ErrorDetail> {
    let details = status.details();
    // An empty buffer decodes to a default message; that is "no detail".
    if details.is_empty() {
        return None;
    }
    ErrorDetail::decode(details).ok()
}

pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(code: Code, detail: ErrorDetail) -> Status {
        Status::with_details(code, "server says", detail.encode_to_vec().into())
    }

    #[test]
    fn decodes_no_node_with_path() {
        let status = status_with(
            Code::NotFound,
            ErrorDetail {
                code: ErrorCode::NoNode as i32,
                path: "/a".into(),
                message: "no such node".into(),
            },
        );
        let err = Error::from_status(&status);
        assert_eq!(err, Error::NoNode { path: "/a".into() });
        assert_eq!(err.to_string(), "no node /a");
        assert_eq!(err.code(), Some(ErrorCode::NoNode));
        assert_eq!(err.path(), Some("/a"));
    }

    #[test]
    fn decodes_every_code_back_to_itself() {
        let codes = [
            ErrorCode::NoNode,
            ErrorCode::NodeExists,
            ErrorCode::BadVersion,
            ErrorCode::NotEmpty,
            ErrorCode::NoAuth,
            ErrorCode::NoChildrenForEphemerals,
            ErrorCode::InvalidAcl,
            ErrorCode::NoWatcher,
            ErrorCode::QuotaExceeded,
            ErrorCode::InvalidPath,
            ErrorCode::TooLarge,
            ErrorCode::BadArguments,
            ErrorCode::SessionExpired,
            ErrorCode::UnknownSession,
            ErrorCode::AuthFailed,
            ErrorCode::Throttled,
            ErrorCode::OperationTimeout,
            ErrorCode::Unimplemented,
            ErrorCode::ConnectionLoss,
            ErrorCode::SystemError,
            ErrorCode::RuntimeInconsistency,
            ErrorCode::DataInconsistency,
            ErrorCode::MarshallingError,
            ErrorCode::ApiError,
        ];
        for code in codes {
            let status = status_with(
                Code::FailedPrecondition,
                ErrorDetail {
                    code: code as i32,
                    path: "/x".into(),
                    message: "m".into(),
                },
            );
            assert_eq!(Error::from_status(&status).code(), Some(code), "{code:?}");
        }
    }

    #[test]
    fn keeps_server_message_for_limits() {
        let status = status_with(
            Code::InvalidArgument,
            ErrorDetail {
                code: ErrorCode::TooLarge as i32,
                path: "/big".into(),
                message: "data of 2000000 bytes over the limit of 1048576".into(),
            },
        );
        let err = Error::from_status(&status);
        assert_eq!(
            err.to_string(),
            "too large: data of 2000000 bytes over the limit of 1048576"
        );
    }

    #[test]
    fn empty_detail_message_falls_back_to_status_message() {
        let status = status_with(
            Code::InvalidArgument,
            ErrorDetail {
                code: ErrorCode::InvalidPath as i32,
                path: "a".into(),
                message: String::new(),
            },
        );
        assert_eq!(
            Error::from_status(&status),
            Error::InvalidPath {
                path: "a".into(),
                message: "server says".into()
            }
        );
    }

    #[test]
    fn unknown_code_number_is_a_system_error() {
        let status = status_with(
            Code::Internal,
            ErrorDetail {
                code: 4242,
                path: String::new(),
                message: "new code".into(),
            },
        );
        assert!(matches!(
            Error::from_status(&status),
            Error::Server {
                code: ErrorCode::SystemError,
                ..
            }
        ));
    }

    #[test]
    fn statuses_without_detail_are_classified_by_code() {
        let lost = Error::from_status(&Status::unavailable("tcp connect error"));
        assert!(lost.is_connection_loss());
        assert!(Error::from_status(&Status::unknown("transport error")).is_connection_loss());
        assert!(Error::from_status(&Status::cancelled("reset")).is_connection_loss());
        assert_eq!(
            Error::from_status(&Status::deadline_exceeded("slow")),
            Error::OperationTimeout
        );
        assert!(matches!(
            Error::from_status(&Status::internal("boom")),
            Error::Rpc {
                code: Code::Internal,
                ..
            }
        ));
    }

    #[test]
    fn garbage_details_are_ignored() {
        let status = Status::with_details(Code::NotFound, "nope", vec![0xff, 0xff, 0xff].into());
        assert!(matches!(
            Error::from_status(&status),
            Error::Rpc {
                code: Code::NotFound,
                ..
            }
        ));
    }

    #[test]
    fn default_path_only_fills_empty_paths() {
        let err = Error::NoNode {
            path: String::new(),
        }
        .with_default_path("/a");
        assert_eq!(err.to_string(), "no node /a");
        let err = Error::NoNode { path: "/b".into() }.with_default_path("/a");
        assert_eq!(err.to_string(), "no node /b");
    }

    #[test]
    fn server_messages_are_not_prefixed_twice() {
        let err = Error::InvalidPath {
            path: "a".into(),
            message: "invalid path \"a\": path must start with /".into(),
        };
        assert_eq!(
            err.to_string(),
            "invalid path \"a\": path must start with /"
        );
        let err = Error::InvalidPath {
            path: "a".into(),
            message: "path must start with /".into(),
        };
        assert_eq!(
            err.to_string(),
            "invalid path \"a\": path must start with /"
        );
        let err = Error::BadArguments {
            path: String::new(),
            message: "bad arguments: the root cannot be deleted".into(),
        };
        assert_eq!(err.to_string(), "bad arguments: the root cannot be deleted");
        let err = Error::TooLarge {
            path: "/big".into(),
            message: String::new(),
        };
        assert_eq!(err.to_string(), "too large");
    }

    #[test]
    fn session_gone() {
        assert!(Error::SessionExpired.is_session_gone());
        assert!(Error::UnknownSession.is_session_gone());
        assert!(!Error::NoNode { path: "/".into() }.is_session_gone());
    }
}
