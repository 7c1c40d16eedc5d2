//! Hostile input: what an attacker can send to a server, on every transport and codec.
//! Each case asserts on what the server did (closed, refused, the error it reported)
//! and that a canary session on the same server kept being answered.

#[path = "../core/support.rs"]
mod support;

mod canary;
mod fuzz;
mod sigterm;
