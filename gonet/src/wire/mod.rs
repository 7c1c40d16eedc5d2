//! What travels on a connection, as bytes: the gonet v3 frame ([`frame`]), the typed
//! [`Message`] a frame's id and body stand for, the [`Status`] of an error reply, and
//! the framework's protocol extension (correlated calls and replies, error replies,
//! heartbeats; see `PROTOCOL.md`).
//!
//! Pure functions and state machines over bytes: nothing here does I/O or knows a
//! session. Uses `codec/` (a message's body); every folder above it (`session/`,
//! `service/`, `driver/`, `transport/`) may use this one.

mod extension;
pub mod frame;
mod message;
mod metadata;
mod status;

pub use extension::ExtensionError;
pub(crate) use extension::*;
pub use message::{Message, RESERVED_ID_START, is_user_id};
pub(crate) use metadata::ID_META;
pub use metadata::{Metadata, MetadataError, Scoped, TRACE_ID};
pub use status::{Code, Status};
