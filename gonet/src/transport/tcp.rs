//! TCP: one gonet v3 frame stream per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Listening;
use crate::driver;
use crate::driver::link::{StreamSink, StreamSource};
use crate::session::Session;
use crate::settings::Shared;
use crate::transport::error::{DialError, ServeError};
use crate::url::{Transport, Url};

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    let listener = TcpListener::bind(url.authority()).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    Ok(Listening::spawn(
        Transport::Tcp,
        local_addr,
        accept_loop(listener, shared, stop, tracker),
    ))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                if let Err(err) = start(stream, &shared, &tracker) {
                    tracing::warn!(error = %err, "connection not started");
                }
            }
            Err(err) => {
                // Out of file descriptors or a connection reset before accept: log, give
                // the system a moment, and keep serving the other sessions.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn start(stream: TcpStream, shared: &Arc<Shared>, tracker: &TaskTracker) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let session = Session::new(shared.clone(), peer, local, Transport::Tcp);
    if let Some(pool) = &shared.pool {
        if let Err(why) = pool.try_insert(&session) {
            pool.refused(peer, why);
            return Ok(());
        }
    }
    let (reader, writer) = stream.into_split();
    let source = StreamSource::for_session(reader, &session);
    driver::spawn(session, source, StreamSink::new(writer), Some(tracker));
    Ok(())
}

pub(super) async fn dial(url: &Url, raw: &str, shared: Arc<Shared>) -> Result<Session, DialError> {
    let connect_err = |source| DialError::Connect {
        url: raw.to_owned(),
        source,
    };
    let stream = TcpStream::connect(url.authority())
        .await
        .map_err(connect_err)?;
    stream.set_nodelay(true).map_err(connect_err)?;
    let peer = stream.peer_addr().map_err(connect_err)?;
    let local = stream.local_addr().map_err(connect_err)?;
    let timeout = shared.settings.connect_timeout;
    let session = Session::new(shared, peer, local, Transport::Tcp);
    let (reader, writer) = stream.into_split();
    let source = StreamSource::for_session(reader, &session);
    // A session that resumes connects again to the same address.
    let authority = url.authority().to_owned();
    let redial: driver::Redial<_, _> = Box::new(move |session: Session, to: Option<String>| {
        let authority = authority.clone();
        Box::pin(async move {
            let authority = match to {
                None => authority,
                Some(to) => match to.parse::<Url>() {
                    Ok(url) if url.transport() == Transport::Tcp => url.authority(),
                    _ => return Err(format!("cannot connect to {to}: not a tcp:// URL").into()),
                },
            };
            let stream = tokio::time::timeout(timeout, TcpStream::connect(authority.as_str()))
                .await
                .map_err(|_| format!("no connection within {timeout:?}"))??;
            stream.set_nodelay(true)?;
            session.set_addrs(stream.peer_addr()?, stream.local_addr()?);
            let (reader, writer) = stream.into_split();
            let source = StreamSource::for_session(reader, &session);
            Ok((source, StreamSink::new(writer)))
        })
    });
    driver::spawn_client(session.clone(), source, StreamSink::new(writer), redial);
    Ok(session)
}
