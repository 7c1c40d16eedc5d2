//! The schema model the generator works from: messages with ids, services with methods.
//!
//! The protobuf front end ([`crate::frontend`]) fills it from `.proto` files; tests and
//! other front ends can build it by hand.

use std::fmt;

/// Where a definition is written: a `.proto` file name (as imported) and a 1-based line.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file name as it is imported (`chat/room.proto`).
    pub file: String,
    /// The 1-based line, 0 when unknown.
    pub line: u32,
}

impl Location {
    /// A location in `file` at `line`.
    pub fn new(file: impl Into<String>, line: u32) -> Self {
        Self {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// Everything the generator needs from a set of `.proto` files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Every message of the compiled files (nested ones too).
    pub messages: Vec<MessageDef>,
    /// Every service of the compiled files.
    pub services: Vec<ServiceDef>,
}

impl Schema {
    /// The message with this full name (`chat.Say`, without a leading dot).
    pub fn message(&self, full_name: &str) -> Option<&MessageDef> {
        self.messages.iter().find(|m| m.full_name() == full_name)
    }
}

/// A message type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageDef {
    /// The proto package (`chat`, `game.lobby`, or empty).
    pub package: String,
    /// The name inside the package; nested messages are dotted (`Room.Member`).
    pub name: String,
    /// The `(gonet.id)` option, when set.
    pub id: Option<u32>,
    /// Where the message is declared.
    pub location: Location,
}

impl MessageDef {
    /// The full proto name (`chat.Room.Member`).
    pub fn full_name(&self) -> String {
        full_name(&self.package, &self.name)
    }
}

/// An rpc service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDef {
    /// The proto package.
    pub package: String,
    /// The service name (`SayService`).
    pub name: String,
    /// The rpcs, in declaration order.
    pub methods: Vec<MethodDef>,
    /// The comment above the service.
    pub doc: String,
    /// Where the service is declared.
    pub location: Location,
}

impl ServiceDef {
    /// The full proto name (`chat.SayService`).
    pub fn full_name(&self) -> String {
        full_name(&self.package, &self.name)
    }
}

/// One rpc of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodDef {
    /// The rpc name (`Say`).
    pub name: String,
    /// The full name of the request type (`chat.Say`).
    pub input: String,
    /// The full name of the reply type; [`EMPTY`] makes the rpc one-way.
    pub output: String,
    /// `stream` on the request (unsupported).
    pub client_streaming: bool,
    /// `stream` on the reply (unsupported).
    pub server_streaming: bool,
    /// The comment above the rpc.
    pub doc: String,
    /// Where the rpc is declared.
    pub location: Location,
}

impl MethodDef {
    /// Whether the rpc returns `google.protobuf.Empty`: no reply is sent or awaited.
    pub fn is_one_way(&self) -> bool {
        self.output == EMPTY
    }
}

/// The reply type of a one-way rpc.
pub const EMPTY: &str = "google.protobuf.Empty";

fn full_name(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}
