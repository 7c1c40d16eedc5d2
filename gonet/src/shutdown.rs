//! The operating system's request to stop: SIGTERM or Ctrl-C, for a server's `main`.
//! Beside the builder, outside the message path; uses no other module.

use std::future::Future;
use std::io;

/// Listening for a stop signal could not start.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// match gonet::shutdown_signal() {
///     Ok(stop) => {
///         // Serve until `stop` resolves, then shut the server down.
///         # let _ = stop;
///     }
///     Err(gonet::SignalError { signal, source }) => {
///         eprintln!("cannot listen for {signal} ({source}): serving until killed");
///     }
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {signal}: {source}")]
pub struct SignalError {
    /// The signal that could not be listened for, such as `SIGTERM`.
    pub signal: &'static str,
    /// Why: the operating system's error.
    #[source]
    pub source: io::Error,
}

/// Starts listening for the signals that ask a process to stop, and returns a future
/// that resolves at the first of them: SIGTERM or SIGINT (Ctrl-C) on Unix; Ctrl-C,
/// Ctrl-Break, closing the console and system shutdown on Windows.
///
/// SIGTERM is what docker, systemd and Kubernetes send to stop a process; without a
/// listener it kills the process at once, with requests in flight and connections
/// reset. Awaiting this future and then [`Server::shutdown`](crate::Server::shutdown)
/// drains instead: every request already read is answered before the process exits.
///
/// The listeners are installed when this function returns, not when the future is
/// first polled, so a signal that arrives in between is not lost and does not kill the
/// process; from then on those signals no longer stop the process by themselves, for as
/// long as the runtime runs. It returns a future rather than being an `async fn` for
/// that reason, and so that a caller can race it against other reasons to stop (a
/// closed standard input, an admin command) in a `select!`. Call it inside a Tokio
/// runtime with I/O enabled (`#[tokio::main]` or `Builder::enable_all`); it panics
/// outside one, as Tokio's own signal listeners do.
///
/// # Errors
///
/// [`SignalError`] if the operating system refuses a listener.
///
/// # Example
///
/// ```no_run
/// use gonet::{Builder, Router};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let server = Builder::new()
///         .router(Router::new())
///         .serve("tcp://127.0.0.1:7000")
///         .await?;
///     gonet::shutdown_signal()?.await;
///     server.shutdown().await;
///     Ok(())
/// }
/// ```
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, SignalError> {
    let signal = imp::listen()?;
    Ok(async move {
        let name = signal.await;
        tracing::info!(signal = name, "asked to stop: shutting down");
    })
}

/// Turns the operating system's refusal to listen for `signal` into a [`SignalError`].
#[cfg_attr(
    not(any(unix, windows)),
    allow(dead_code, reason = "Unix and Windows listen for more than Ctrl-C")
)]
fn refused(signal: &'static str) -> impl FnOnce(io::Error) -> SignalError {
    move |source| SignalError { signal, source }
}

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{SignalKind, signal};

    use super::{SignalError, refused};

    pub(super) fn listen()
    -> Result<impl Future<Output = &'static str> + Send + 'static, SignalError> {
        let mut term = signal(SignalKind::terminate()).map_err(refused("SIGTERM"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(refused("SIGINT"))?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
}

#[cfg(windows)]
mod imp {
    use tokio::signal::windows;

    use super::{SignalError, refused};

    pub(super) fn listen()
    -> Result<impl Future<Output = &'static str> + Send + 'static, SignalError> {
        let mut c = windows::ctrl_c().map_err(refused("Ctrl-C"))?;
        let mut brk = windows::ctrl_break().map_err(refused("Ctrl-Break"))?;
        let mut close = windows::ctrl_close().map_err(refused("console close"))?;
        let mut shutdown = windows::ctrl_shutdown().map_err(refused("system shutdown"))?;
        Ok(async move {
            tokio::select! {
                _ = c.recv() => "Ctrl-C",
                _ = brk.recv() => "Ctrl-Break",
                _ = close.recv() => "console close",
                _ = shutdown.recv() => "system shutdown",
            }
        })
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    use super::SignalError;

    pub(super) fn listen()
    -> Result<impl Future<Output = &'static str> + Send + 'static, SignalError> {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for Ctrl-C; serving on");
                    std::future::pending().await
                }
            }
        })
    }
}
