//! Driving [`Streams`] from async code (feature `tokio`): a watch channel of its state, a
//! start and a close that run on tokio's blocking pool, a future that runs the application
//! until a shutdown signal, and [`Shutdown`], which turns SIGTERM and SIGINT into that signal.
//!
//! The stream threads stay plain threads (the processing path is synchronous); only what
//! blocks the caller (`start`, `close`) moves to `spawn_blocking`, so no runtime thread waits
//! on the application.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Streams, StreamsState};
use crate::error::{Error, Result};

impl Streams {
    /// A receiver of the application's state. It holds the current state and sees every
    /// later change in order; like every `watch` receiver it keeps only the latest value, so
    /// a reader that falls behind skips states in between (never sees them out of order).
    /// [`Streams::set_state_listener`] is told of every change.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let log = std::sync::Arc::new(streams_core::MemoryLog::new());
    /// # let topology = streams_core::TopologyBuilder::new().build()?;
    /// use streams_core::{Streams, StreamsConfig, StreamsState};
    /// let streams = Streams::new(topology, StreamsConfig::new("app", dir.path()), log)?;
    /// let mut states = streams.state_changes();
    /// assert_eq!(*states.borrow(), StreamsState::Created);
    /// streams.start_async().await?;
    /// states.wait_for(|s| *s == StreamsState::Running).await?;
    /// streams.close_async().await?;
    /// assert_eq!(*states.borrow_and_update(), StreamsState::NotRunning);
    /// # Ok(()) }
    /// ```
    pub fn state_changes(&self) -> watch::Receiver<StreamsState> {
        self.shared.state_watch.subscribe()
    }

    /// [`Streams::start`] on tokio's blocking pool (joining a consumer group and reading
    /// global tables to their end can take a while). Restores happen afterwards, in the stream
    /// threads; the state moves to `Running` when they are done.
    pub async fn start_async(&self) -> Result<()> {
        let handle = self.handle();
        blocking(move || handle.start()).await
    }

    /// [`Streams::close`] on tokio's blocking pool: a final commit, checkpoints written, the
    /// consumer group left. A task still restoring stops where it got and checkpoints that.
    pub async fn close_async(&self) -> Result<()> {
        let handle = self.handle();
        blocking(move || handle.close()).await
    }

    /// Starts the application, runs it until `shutdown` completes (or it stops by itself,
    /// after an error), then closes it cleanly. Returns the error that stopped it, if any.
    ///
    /// `shutdown` is first polled once [`Streams::start`] has returned, so it must remember a
    /// signal that came earlier: use [`Shutdown::wait`] (whose signal handlers are installed
    /// when the `Shutdown` is made), not a future that installs its handler when first
    /// polled (such as `tokio::signal::ctrl_c()`).
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut states = self.state_changes();
        self.start_async().await?;
        tokio::select! {
            () = shutdown => {
                tracing::info!(application_id = %self.shared.config.application_id, "shutdown requested: closing");
            }
            _ = states.wait_for(|s| matches!(s, StreamsState::Error | StreamsState::NotRunning)) => {}
        }
        self.close_async().await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Processing {
            task: None,
            processor: "-".into(),
            reason: format!("the blocking call on tokio's pool did not finish: {e}"),
        })?
}

/// A shutdown signal shared by the parts of a service: the application
/// ([`Streams::run_until`]), the HTTP server (`with_graceful_shutdown`), anything else that
/// should stop together. It fires once, when [`Shutdown::trigger`] is called or, for one made
/// with [`Shutdown::on_signals`], when the process receives SIGTERM or SIGINT; futures from
/// [`Shutdown::wait`] made before or after that all complete.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = streams_core::Shutdown::new();
/// let waiter = tokio::spawn(shutdown.wait());
/// shutdown.trigger();
/// waiter.await.unwrap();
/// shutdown.wait().await; // already fired: completes at once
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    fired: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal fired only by [`Shutdown::trigger`].
    pub fn new() -> Self {
        Shutdown {
            fired: Arc::new(watch::Sender::new(false)),
        }
    }

    /// A signal that SIGTERM and SIGINT (Ctrl-C) fire. The handlers are installed now, so
    /// from this call on these signals no longer end the process: make it before
    /// [`Streams::start`], and a SIGTERM during the start-up restore closes the application
    /// cleanly. A second signal while closing is logged and otherwise ignored.
    ///
    /// Must be called within a tokio runtime (it spawns the task that listens); fails with
    /// [`Error::InvalidState`] outside one, and with [`Error::Io`] when a handler cannot be
    /// installed.
    pub fn on_signals() -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::InvalidState {
            operation: "install signal handlers".into(),
            state: format!("outside a tokio runtime ({e})"),
        })?;
        let shutdown = Shutdown::new();
        let listeners = signals()?;
        let fired = shutdown.fired.clone();
        runtime.spawn(async move {
            let mut listeners = listeners;
            let name = listeners.next().await;
            tracing::info!(signal = name, "signal received: shutting down");
            fired.send_replace(true);
            loop {
                let name = listeners.next().await;
                tracing::warn!(
                    signal = name,
                    "signal received while shutting down: ignored"
                );
            }
        });
        Ok(shutdown)
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.fired.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.fired.borrow()
    }

    /// Completes once the signal has fired (at once if it has).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut fired = self.fired.subscribe();
        async move {
            // The sender lives in `self` and in the signal task; a dropped sender means
            // nothing can fire any more, and waiting forever is the honest answer.
            if fired.wait_for(|f| *f).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// SIGTERM and SIGINT, registered now.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

fn signals() -> Result<Signals> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let io = |e| Error::io("install a signal handler for", "SIGTERM/SIGINT", e);
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(io)?,
            int: signal(SignalKind::interrupt()).map_err(io)?,
        })
    }
    #[cfg(not(unix))]
    {
        Ok(Signals {})
    }
}

impl Signals {
    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            // `None`: no more signals can come; waiting forever beats spinning.
            tokio::select! {
                Some(()) = self.term.recv() => "SIGTERM",
                Some(()) = self.int.recv() => "SIGINT",
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
