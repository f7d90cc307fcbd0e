//! etcd clients for the workloads: one lazily connected gRPC channel per member, a deadline on
//! every request, and the classification of errors into "certainly did not happen" (`fail`) and
//! "may have happened" (`info`).

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tonic::Code;

/// Every request's deadline. A linearizable read on a member cut off from the majority takes
/// etcd's request timeout (5 s + 2 election timeouts) to fail, so this ends it first.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A client bound to one member. Connecting is lazy: this does not wait for the member.
pub async fn connect(endpoint: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(OP_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    Client::connect([endpoint], Some(options)).await.expect("a well-formed endpoint")
}

/// Why a request did not complete normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It certainly had no effect: refused before it was sent, or answered with an error that
    /// etcd returns only for requests it did not apply.
    Definite(String),
    /// It may have taken effect (a timeout, a dropped connection, a leader change).
    Indefinite(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Definite(message) | Failure::Indefinite(message) => message,
        }
    }
}

pub fn classify(error: &etcd_client::Error) -> Failure {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = format!("{:?}: {}", status.code(), status.message());
            match status.code() {
                Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::NotFound
                | Code::OutOfRange
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::Unimplemented
                | Code::AlreadyExists
                | Code::ResourceExhausted => Failure::Definite(message),
                Code::Unavailable if never_sent(status.message()) => Failure::Definite(message),
                _ => Failure::Indefinite(message),
            }
        }
        etcd_client::Error::TransportError(error) => Failure::Definite(format!("transport: {error}")),
        other => Failure::Indefinite(other.to_string()),
    }
}

/// Messages of a connection that could not be made, so nothing was sent.
fn never_sent(message: &str) -> bool {
    ["tcp connect error", "Connection refused", "error trying to connect"].iter().any(|m| message.contains(m))
}

/// Runs a request under [`OP_TIMEOUT`].
pub async fn timed<T>(request: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, Failure> {
    match tokio::time::timeout(OP_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(&error)),
        Err(_) => Err(Failure::Indefinite("client timeout".to_string())),
    }
}

/// The revision of a response header, if it had one.
pub fn revision(header: Option<&etcd_client::ResponseHeader>) -> Option<i64> {
    header.map(|header| header.revision())
}
