//! Shared support for the gonet-cluster integration tests.
#![allow(dead_code)]

pub(crate) mod nats;
