//! [`Status`]: the error a handler returns and a caller receives.

use std::fmt;

/// What kind of failure a [`Status`] reports. Sent on the wire as a u16.
///
/// ```
/// use gonet::{CallError, Code};
///
/// /// Whether a failed call is worth another try.
/// fn retry(err: &CallError) -> bool {
///     match err.status().map(|status| status.code()) {
///         Some(Code::Unavailable | Code::ResourceExhausted) => true,
///         Some(_) => false, // the peer answered: trying again changes nothing
///         None => matches!(err, CallError::Timeout { .. }),
///     }
/// }
/// # let _ = retry;
///
/// assert_eq!(Code::from_u16(Code::NotFound.to_u16()), Code::NotFound);
/// assert_eq!(Code::from_u16(900), Code::Other(900)); // a code from a newer peer
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// An error with no better code.
    Unknown,
    /// The request is invalid (for example its body failed to decode).
    InvalidArgument,
    /// A requested entity does not exist.
    NotFound,
    /// The entity to create exists already.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// The caller is not authenticated.
    Unauthenticated,
    /// A quota or limit is exhausted.
    ResourceExhausted,
    /// The system is not in a state that allows this.
    FailedPrecondition,
    /// The service is unavailable for now; a retry may work.
    Unavailable,
    /// A bug on the serving side (a handler panicked, a reply failed to encode).
    Internal,
    /// No handler serves the message id.
    Unimplemented,
    /// The handler finished without a reply to a call that expects one.
    NoReply,
    /// A code this version does not know.
    Other(u16),
}

impl Code {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Code::Unknown => 1,
            Code::InvalidArgument => 2,
            Code::NotFound => 3,
            Code::AlreadyExists => 4,
            Code::PermissionDenied => 5,
            Code::Unauthenticated => 6,
            Code::ResourceExhausted => 7,
            Code::FailedPrecondition => 8,
            Code::Unavailable => 9,
            Code::Internal => 10,
            Code::Unimplemented => 11,
            Code::NoReply => 12,
            Code::Other(n) => n,
        }
    }

    /// The code for a wire value.
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => Code::Unknown,
            2 => Code::InvalidArgument,
            3 => Code::NotFound,
            4 => Code::AlreadyExists,
            5 => Code::PermissionDenied,
            6 => Code::Unauthenticated,
            7 => Code::ResourceExhausted,
            8 => Code::FailedPrecondition,
            9 => Code::Unavailable,
            10 => Code::Internal,
            11 => Code::Unimplemented,
            12 => Code::NoReply,
            n => Code::Other(n),
        }
    }
}

/// An error result of a handler, sent back to a caller that is waiting for a reply.
///
/// ```
/// use gonet::{Code, Status};
/// let status = Status::not_found("no such room: lobby");
/// assert_eq!(status.code(), Code::NotFound);
/// assert_eq!(status.to_string(), "NotFound: no such room: lobby");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Status {
    code: Code,
    message: String,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $code:ident),* $(,)?) => {
        impl Status {
            $($(#[$doc])* pub fn $fn(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            })*
        }
    };
}

constructors! {
    /// A [`Code::InvalidArgument`] status.
    invalid_argument => InvalidArgument,
    /// A [`Code::NotFound`] status.
    not_found => NotFound,
    /// A [`Code::AlreadyExists`] status.
    already_exists => AlreadyExists,
    /// A [`Code::PermissionDenied`] status.
    permission_denied => PermissionDenied,
    /// A [`Code::Unauthenticated`] status.
    unauthenticated => Unauthenticated,
    /// A [`Code::ResourceExhausted`] status.
    resource_exhausted => ResourceExhausted,
    /// A [`Code::FailedPrecondition`] status.
    failed_precondition => FailedPrecondition,
    /// A [`Code::Unavailable`] status.
    unavailable => Unavailable,
    /// A [`Code::Internal`] status.
    internal => Internal,
    /// A [`Code::Unimplemented`] status.
    unimplemented => Unimplemented,
}

impl Status {
    /// A status with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}
