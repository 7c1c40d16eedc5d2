//! `gonet-cli` as a user runs it: the built binary in a temp dir.

mod gen_ts;
mod ids;
mod new;
mod util;
