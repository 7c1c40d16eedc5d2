//! Hostile input: what an attacker can send to a server, on every transport and codec.
//! Each case asserts on what the server did (closed, refused, the error it reported)
//! and that a canary session on the same server kept being answered.

#[path = "../core/support.rs"]
mod support;

#[path = "../kcp/raw.rs"]
mod kcp_raw;

mod admission;
mod canary;
mod codecs;
mod floods;
mod fuzz;
mod quic;
mod sigterm;
mod slow;
mod ws;
