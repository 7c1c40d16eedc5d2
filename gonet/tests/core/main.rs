//! Runtime core tests: real servers on 127.0.0.1, real clients, real codecs.

mod support;

mod codecs;
mod drain;
mod handshake;
mod layers;
mod lifecycle;
mod limits;
mod messages;
mod metrics;
mod pool;
mod shutdown;
mod wire;
mod worker;
