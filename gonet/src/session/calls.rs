//! Calls waiting for their replies, by call number.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::wire::Status;

/// How a call ended on the wire.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply { id: u32, body: Bytes },
    Error(Status),
}

#[derive(Debug, Default)]
struct Table {
    next: u32,
    pending: HashMap<u32, oneshot::Sender<Outcome>>,
    closed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    table: Mutex<Table>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a call; `None` once the session is closed.
    pub(crate) fn start(&self) -> Option<(u32, oneshot::Receiver<Outcome>)> {
        let mut table = self.lock();
        if table.closed {
            return None;
        }
        // Call numbers wrap; one still pending after 2^32 calls is skipped.
        let mut call = table.next;
        while table.pending.contains_key(&call) {
            call = call.wrapping_add(1);
        }
        table.next = call.wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        table.pending.insert(call, tx);
        Some((call, rx))
    }

    /// Forgets a call (timed out or cancelled).
    pub(crate) fn cancel(&self, call: u32) {
        self.lock().pending.remove(&call);
    }

    /// Delivers a reply; false if no call waits for it.
    pub(crate) fn resolve(&self, call: u32, outcome: Outcome) -> bool {
        let sender = self.lock().pending.remove(&call);
        match sender {
            Some(tx) => {
                // The caller may have given up just now; that is not an error.
                let _ = tx.send(outcome);
                true
            }
            None => false,
        }
    }

    /// Fails every pending call and refuses new ones.
    pub(crate) fn close(&self) {
        let mut table = self.lock();
        table.closed = true;
        table.pending.clear();
    }
}
