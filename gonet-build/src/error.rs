//! Build errors: every problem found in one run, each naming its `.proto` file and line.

use std::fmt;

use crate::model::Location;

/// Everything that went wrong in one build. Its `Display` lists every problem, one per
/// paragraph, each starting with `file:line`.
#[derive(Debug, thiserror::Error)]
pub struct BuildError {
    problems: Vec<Problem>,
}

impl BuildError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "gonet-build found {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f)?;
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// One problem in the schemas or in writing the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is, when it is in a `.proto` file.
    pub location: Option<Location>,
    /// What it is.
    pub kind: ProblemKind,
    /// The source lines around it, when known.
    pub snippet: Option<String>,
}

impl Problem {
    pub(crate) fn at(location: Location, kind: ProblemKind) -> Self {
        Self {
            location: Some(location),
            kind,
            snippet: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: error: {}", self.kind)?,
            None => write!(f, "error: {}", self.kind)?,
        }
        if let Some(snippet) = &self.snippet {
            for line in snippet.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// What kind of problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A `.proto` file does not parse or does not check.
    #[error("{0}")]
    Proto(String),
    /// An imported file is not on the include path.
    #[error("{0} (include paths: {1})")]
    MissingImport(String, String),
    /// Two messages share an id.
    #[error("gonet id {id} of {name} is already used by {other} at {other_location}")]
    DuplicateId {
        /// The id.
        id: u32,
        /// The later message.
        name: String,
        /// The earlier message.
        other: String,
        /// Where the earlier message is.
        other_location: Location,
    },
    /// The id is 0 or in the framework's range.
    #[error(
        "gonet id {id:#x} of {name} is reserved: message ids are 1..=0xFFFFFEFF (0 and 0xFFFFFF00.. belong to the framework)"
    )]
    ReservedId {
        /// The id.
        id: u32,
        /// The message.
        name: String,
    },
    /// A service uses a message that has no id.
    #[error(
        "rpc {service}.{method} uses {message} as its {role}, but {message} has no id: add `option (gonet.id) = N;` to it{hint}"
    )]
    MissingId {
        /// The service.
        service: String,
        /// The rpc.
        method: String,
        /// The message without an id.
        message: String,
        /// "request" or "reply".
        role: &'static str,
        /// More help.
        hint: &'static str,
    },
    /// Two rpcs of one service take the same request type.
    #[error(
        "rpcs {service}.{first} and {service}.{second} both take {message}: an incoming message is routed by its type, so each rpc needs its own request type"
    )]
    DuplicateRequest {
        /// The service.
        service: String,
        /// The first rpc.
        first: String,
        /// The second rpc.
        second: String,
        /// The request type.
        message: String,
    },
    /// A streaming rpc.
    #[error(
        "rpc {service}.{method} streams its {which}: gonet rpcs are one message in, one message (or none) out; send a sequence as separate messages or pushes"
    )]
    Streaming {
        /// The service.
        service: String,
        /// The rpc.
        method: String,
        /// "request", "reply" or "request and reply".
        which: &'static str,
    },
    /// The builder was configured wrongly.
    #[error("{0}")]
    Config(String),
    /// Generating or writing the output failed.
    #[error("{0}")]
    Output(String),
}
