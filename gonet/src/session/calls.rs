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
    /// No new calls; the pending ones still get their replies.
    winding_down: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    table: Mutex<Table>,
    /// Notified when the last pending call ends (for a session going away).
    empty: tokio::sync::Notify,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a call; `None` once the session is closed.
    pub(crate) fn start(&self) -> Option<(u32, oneshot::Receiver<Outcome>)> {
        let mut table = self.lock();
        if table.closed || table.winding_down {
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
        let mut table = self.lock();
        if table.pending.remove(&call).is_some() && table.pending.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Refuses new calls from now on, and waits until no call is pending.
    pub(crate) async fn wind_down(&self) {
        self.lock().winding_down = true;
        self.idle().await;
    }

    /// Takes new calls again after a wind-down (a fresh session follows).
    pub(crate) fn reopen(&self) {
        self.lock().winding_down = false;
    }

    /// Waits until no call is pending.
    async fn idle(&self) {
        loop {
            let empty = self.empty.notified();
            if self.lock().pending.is_empty() {
                return;
            }
            empty.await;
        }
    }

    /// Delivers a reply; false if no call waits for it.
    pub(crate) fn resolve(&self, call: u32, outcome: Outcome) -> bool {
        let sender = {
            let mut table = self.lock();
            let sender = table.pending.remove(&call);
            if sender.is_some() && table.pending.is_empty() {
                self.empty.notify_waiters();
            }
            sender
        };
        match sender {
            Some(tx) => {
                // The caller may have given up just now; that is not an error.
                let _ = tx.send(outcome);
                true
            }
            None => false,
        }
    }

    /// Fails every pending call; new ones are still taken (a fresh session follows).
    pub(crate) fn fail_pending(&self) {
        let mut table = self.lock();
        table.pending.clear();
        self.empty.notify_waiters();
    }

    /// Fails every pending call and refuses new ones.
    pub(crate) fn close(&self) {
        let mut table = self.lock();
        table.closed = true;
        table.pending.clear();
        self.empty.notify_waiters();
    }
}
