//! NATS subjects of a cluster. Every subject starts with `gonet.<cluster>`; a name
//! that is not a safe subject token (letters, digits, `_` and `-`) is written as `~`
//! and its bytes in hex, so any user id or group name maps to one token and no two
//! names to the same one.

use std::fmt::Write;

/// Encodes `name` as one subject token.
pub(crate) fn token(name: &str) -> String {
    let safe = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if safe {
        return name.to_owned();
    }
    let mut out = String::with_capacity(1 + 2 * name.len());
    out.push('~');
    for b in name.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The subjects of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn new(cluster: &str) -> Self {
        Self {
            prefix: format!("gonet.{}", token(cluster)),
        }
    }

    pub(crate) fn heartbeat(&self) -> String {
        format!("{}.hb", self.prefix)
    }

    pub(crate) fn forward(&self, node: &str) -> String {
        format!("{}.fwd.{}", self.prefix, token(node))
    }

    pub(crate) fn control(&self, node: &str) -> String {
        format!("{}.node.{}", self.prefix, token(node))
    }

    pub(crate) fn user(&self, uid: &str) -> String {
        format!("{}.user.{}", self.prefix, token(uid))
    }

    pub(crate) fn group(&self, group: &str) -> String {
        format!("{}.group.{}", self.prefix, token(group))
    }

    pub(crate) fn groups(&self) -> String {
        format!("{}.group.*", self.prefix)
    }

    pub(crate) fn bind_event(&self) -> String {
        format!("{}.event.bind", self.prefix)
    }

    pub(crate) fn close_event(&self) -> String {
        format!("{}.event.close", self.prefix)
    }

    pub(crate) fn events(&self) -> String {
        format!("{}.event.*", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_become_one_distinct_token() {
        assert_eq!(token("room-1"), "room-1");
        assert_eq!(token("a.b"), "~612e62");
        assert_eq!(token(""), "~");
        assert_eq!(token("*"), "~2a");
        assert_ne!(token("~2a"), token("*"));
        assert_eq!(Subjects::new("game").user("a b"), "gonet.game.user.~612062");
    }
}
