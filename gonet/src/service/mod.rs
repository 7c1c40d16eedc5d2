//! Where a message meets the application: the [`Router`](router::Router) that maps
//! message ids to typed handlers, what a handler's result becomes on the wire
//! (`IntoReply`, `Reply`, `ReplyTo`), and `codegen`, the hidden module that the
//! `message!` macro and `gonet-build`'s generated services and clients build on.
//!
//! Uses `session/` (a handler receives its session), `wire/` and `codec/`. `driver/`
//! runs the router; `settings` holds it for the sessions.

#[doc(hidden)]
pub mod codegen;
pub(crate) mod layer;
pub(crate) mod router;
