//! The live members of the cluster, as one node sees them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::envelope::Heartbeat;

/// A live node of the cluster.
///
/// ```
/// # async fn demo(node: gonet_cluster::Node) {
/// for member in node.members() {
///     println!("{} ({}) serves {:?}", member.id, member.kind, member.ids);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: Arc<str>,
    /// The node's type (`gate`, `room`, ...).
    pub kind: Arc<str>,
    /// The message ids it serves to other nodes, sorted.
    pub ids: Arc<[u32]>,
    /// It drains: it finishes what it has and takes nothing new.
    pub draining: bool,
}

impl Member {
    pub(crate) fn from_heartbeat(hb: &Heartbeat) -> Self {
        let mut ids = hb.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        Self {
            id: hb.node.as_str().into(),
            kind: hb.kind.as_str().into(),
            ids: ids.into(),
            draining: hb.draining,
        }
    }

    /// Whether it serves message `id`.
    pub fn serves(&self, id: u32) -> bool {
        self.ids.binary_search(&id).is_ok()
    }
}

#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) member: Member,
    pub(crate) last: Instant,
}

/// What changed with one heartbeat.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Joined,
    Updated,
    Same,
}

#[derive(Debug, Default)]
pub(crate) struct Members {
    pub(crate) nodes: HashMap<Arc<str>, Seen>,
}

impl Members {
    pub(crate) fn heard(&mut self, member: Member, now: Instant) -> Change {
        match self.nodes.get_mut(&member.id) {
            Some(seen) => {
                seen.last = now;
                if seen.member == member {
                    Change::Same
                } else {
                    seen.member = member;
                    Change::Updated
                }
            }
            None => {
                self.nodes
                    .insert(member.id.clone(), Seen { member, last: now });
                Change::Joined
            }
        }
    }

    /// Removes the nodes silent since before `deadline`.
    pub(crate) fn sweep(&mut self, deadline: Instant) -> Vec<Arc<str>> {
        let gone: Vec<Arc<str>> = self
            .nodes
            .iter()
            .filter(|(_, seen)| seen.last < deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.nodes.remove(id);
        }
        gone
    }

    /// Counts everyone as just heard (after this node's own link came back).
    pub(crate) fn refresh(&mut self, now: Instant) {
        for seen in self.nodes.values_mut() {
            seen.last = now;
        }
    }

    pub(crate) fn list(&self) -> Vec<Member> {
        let mut list: Vec<Member> = self.nodes.values().map(|s| s.member.clone()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}
