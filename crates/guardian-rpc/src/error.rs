//! What can go wrong with the pool, as kinds callers can branch on.

use std::{fmt, time::Duration};

use alloy::transports::{RpcError as AlloyRpcError, TransportError, TransportErrorKind};

/// Why the pool could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The endpoint list is empty.
    #[error("no RPC endpoint configured")]
    NoEndpoints,
    /// An endpoint URL with a scheme the pool does not speak.
    #[error("RPC endpoint {endpoint} has scheme {scheme}; expected http, https, ws or wss")]
    UnsupportedScheme {
        /// The endpoint, redacted.
        endpoint: String,
        /// Its scheme.
        scheme: String,
    },
    /// A bearer token that cannot be sent as an HTTP header.
    #[error("the bearer token for {endpoint} is not a valid header value")]
    InvalidBearer {
        /// The endpoint, redacted.
        endpoint: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client for {endpoint}: {message}")]
    Client {
        /// The endpoint, redacted.
        endpoint: String,
        /// What the HTTP library said.
        message: String,
    },
    /// A reachable endpoint serves another chain: nothing it says may be used.
    #[error(
        "{endpoint} reports chain id {reported}, but guardian is configured for chain {expected}"
    )]
    WrongChain {
        /// The endpoint, redacted.
        endpoint: String,
        /// The chain id it reported.
        reported: u64,
        /// The configured one.
        expected: u64,
    },
    /// Every endpoint was tried and none answered.
    #[error("{what} failed on every RPC endpoint: {}", Failures(.failures))]
    AllFailed {
        /// The request (method names).
        what: String,
        /// Each endpoint's failure, in the order they were tried.
        failures: Vec<EndpointFailure>,
    },
}

impl RpcError {
    /// Whether any endpoint (or the only failure) serves another chain.
    pub fn is_wrong_chain(&self) -> bool {
        match self {
            Self::WrongChain { .. } => true,
            Self::AllFailed { failures, .. } => {
                failures.iter().any(|f| f.kind == FailureKind::WrongChain)
            }
            _ => false,
        }
    }

    /// The failures of [`RpcError::AllFailed`] (empty for the other kinds).
    pub fn failures(&self) -> &[EndpointFailure] {
        match self {
            Self::AllFailed { failures, .. } => failures,
            _ => &[],
        }
    }
}

/// One endpoint's failure to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint, redacted (`scheme://host:port`).
    pub endpoint: String,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The error with its causes, the endpoint's URL scrubbed out.
    pub message: String,
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.message)
    }
}

struct Failures<'a>(&'a [EndpointFailure]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// The kinds of endpoint failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// No answer within the timeout.
    Timeout,
    /// HTTP 429: the endpoint rate-limits guardian.
    RateLimited,
    /// The endpoint serves another chain.
    WrongChain,
    /// Connecting (or the connection) failed, or the answer was not JSON-RPC.
    Transport,
    /// The caller's operation failed for its own reason (e.g. a reply it could not use).
    Other,
}

impl FailureKind {
    /// Classify a transport error by its type, never by its text.
    pub fn of(error: &TransportError) -> Self {
        match error {
            AlloyRpcError::Transport(kind) => match kind {
                TransportErrorKind::Custom(inner)
                    if inner.downcast_ref::<RequestTimedOut>().is_some() =>
                {
                    Self::Timeout
                }
                TransportErrorKind::Custom(inner)
                    if inner.downcast_ref::<RpcError>().is_some_and(RpcError::is_wrong_chain) =>
                {
                    Self::WrongChain
                }
                kind if kind.as_http_error().is_some_and(|e| e.is_rate_limit_err()) => {
                    Self::RateLimited
                }
                _ => Self::Transport,
            },
            _ => Self::Other,
        }
    }
}

/// A request that got no answer within the pool's timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no answer within {after:?}")]
pub struct RequestTimedOut {
    /// The timeout.
    pub after: Duration,
}
