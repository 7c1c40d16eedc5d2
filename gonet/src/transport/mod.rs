//! Transports: thin adapters that turn a URL into connections and hand each connection
//! to the session driver.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::builder::Shared;
use crate::error::{DialError, ServeError};
use crate::session::Session;
use crate::url::{Transport, Url, UrlError, UrlErrorKind};

#[cfg(feature = "tcp")]
mod tcp;

/// A bound listener's address and its accept task.
pub(crate) struct Listening {
    pub(crate) local_addr: SocketAddr,
    pub(crate) task: JoinHandle<()>,
}

fn not_compiled(url: &str, transport: Transport) -> UrlError {
    UrlError::new(
        url,
        UrlErrorKind::FeatureDisabled {
            transport,
            feature: transport.feature(),
        },
    )
}

pub(crate) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let _ = (&shared, &stop, &tracker);
    match url.transport() {
        #[cfg(feature = "tcp")]
        Transport::Tcp => tcp::listen(url, raw, shared, stop, tracker).await,
        other => Err(not_compiled(raw, other).into()),
    }
}

pub(crate) async fn dial(url: &Url, raw: &str, shared: Arc<Shared>) -> Result<Session, DialError> {
    let _ = &shared;
    match url.transport() {
        #[cfg(feature = "tcp")]
        Transport::Tcp => tcp::dial(url, raw, shared).await,
        other => Err(not_compiled(raw, other).into()),
    }
}
