//! The gonet-rs servers the TypeScript client's tests run against: the `webtest.TestService`
//! of `clients/ts/test/proto/webtest.proto`, served over WebSocket with the protojson codec on
//! three listeners: a plain one, one with a login handshake and resume, and one that
//! pings its clients.
//!
//! The `ts-test-server` binary serves them for `npm test` in `clients/ts`; the `ts`
//! integration test serves them in-process, runs the Node tests and a headless Chromium
//! page against them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use gonet::{Builder, Codec, Router, Server, Session, Status};

gonet::include_protos!();

pub use webtest::Report;
use webtest::{
    Answer, Ask, Echo, Echoed, Fail, Identity, Login, Relay, Release, Shapes, Stall, Subscribe,
    Subscribed, TestEventsClient, TestService, TestServiceServer, Tick, Whoami,
};

/// The secret the login listener's handshake wants.
pub const SECRET: &str = "letmein";

/// Where reports of test pages go.
pub type Reports = tokio::sync::mpsc::UnboundedSender<Report>;

/// Who a session logged in as, on the login listener.
#[derive(Clone, Debug)]
struct Who {
    name: String,
    platform: String,
    version: String,
}

struct Tests {
    reports: Option<Reports>,
    /// Keys released so far, shared by both listeners.
    keys: Arc<Mutex<HashSet<String>>>,
    /// Wakes the stalls when a key is released.
    released: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestService for Tests {
    async fn echo(&self, _session: &Session, req: Echo) -> Result<Echoed, Status> {
        Ok(Echoed {
            text: req.text,
            count: req.count,
        })
    }

    async fn mirror(&self, _session: &Session, req: Shapes) -> Result<Shapes, Status> {
        Ok(req)
    }

    async fn fail(&self, _session: &Session, req: Fail) -> Result<Echoed, Status> {
        let code = u16::try_from(req.code)
            .map_err(|_| Status::invalid_argument(format!("code {} is not a u16", req.code)))?;
        Err(Status::new(gonet::Code::from_u16(code), req.message))
    }

    async fn stall(&self, _session: &Session, req: Stall) -> Result<Echoed, Status> {
        loop {
            let released = self.released.notified();
            if lock(&self.keys).contains(&req.key) {
                return Ok(Echoed {
                    text: format!("released {}", req.key),
                    count: 0,
                });
            }
            released.await;
        }
    }

    async fn release(&self, _session: &Session, req: Release) -> Result<Echoed, Status> {
        lock(&self.keys).insert(req.key.clone());
        self.released.notify_waiters();
        Ok(Echoed {
            text: req.key,
            count: 0,
        })
    }

    async fn subscribe(&self, session: &Session, req: Subscribe) -> Result<Subscribed, Status> {
        for n in 0..req.count {
            session
                .send(&Tick {
                    n,
                    text: req.text.clone(),
                })
                .map_err(|err| Status::unavailable(err.to_string()))?;
        }
        Ok(Subscribed { count: req.count })
    }

    async fn relay(&self, session: &Session, req: Relay) -> Result<Subscribed, Status> {
        let target = session
            .pool()
            .and_then(|pool| pool.user(&req.to))
            .ok_or_else(|| Status::not_found(format!("no session of user {:?}", req.to)))?;
        target
            .send(&Tick {
                n: 0,
                text: req.text,
            })
            .map_err(|err| Status::unavailable(err.to_string()))?;
        Ok(Subscribed { count: 1 })
    }

    async fn whoami(&self, session: &Session, _req: Whoami) -> Result<Identity, Status> {
        let who = session
            .get::<Who>()
            .ok_or_else(|| Status::unauthenticated("no handshake on this listener"))?;
        Ok(Identity {
            name: who.name,
            platform: who.platform,
            version: who.version,
        })
    }

    async fn ask(&self, session: &Session, req: Ask) -> Result<Answer, Status> {
        TestEventsClient::new(session.clone())
            .ask(req)
            .await
            .map_err(|err| Status::unavailable(format!("the client did not answer: {err}")))
    }

    async fn report(&self, _session: &Session, req: Report) -> Result<(), Status> {
        match &self.reports {
            Some(reports) => {
                let _ = reports.send(req);
                Ok(())
            }
            None => Err(Status::unimplemented("this server takes no reports")),
        }
    }
}

/// The three listeners.
#[derive(Debug)]
pub struct Servers {
    /// No handshake.
    pub plain: Server,
    /// A login handshake (payload `Login`, secret [`SECRET`]) and resume.
    pub login: Server,
    /// Pings a client after 50 ms of silence, and closes it after 1 s of silence.
    pub beat: Server,
}

impl Servers {
    /// Serves both on free loopback ports; page reports go to `reports`.
    pub async fn start(reports: Option<Reports>) -> Result<Self, gonet::ServeError> {
        let keys = Arc::new(Mutex::new(HashSet::new()));
        let released = Arc::new(Notify::new());
        let router = |reports: Option<Reports>| {
            Router::new().service(TestServiceServer::new(Tests {
                reports,
                keys: keys.clone(),
                released: released.clone(),
            }))
        };
        let plain = Builder::new()
            .codec(Codec::ProtoJson)
            .router(router(reports.clone()))
            .serve("ws://127.0.0.1:0/ws")
            .await?;
        let login = Builder::new()
            .codec(Codec::ProtoJson)
            .router(router(reports))
            .resume(Duration::from_secs(30))
            .on_handshake(
                |session: Session, hello: gonet::Handshake<Login>| async move {
                    if hello.payload.secret != SECRET {
                        return Err(Status::unauthenticated("bad secret"));
                    }
                    session.bind(hello.payload.name.clone());
                    session.insert(Who {
                        name: hello.payload.name,
                        platform: hello.platform,
                        version: hello.client_version,
                    });
                    Ok(())
                },
            )
            .serve("ws://127.0.0.1:0/login")
            .await?;
        let beat = Builder::new()
            .codec(Codec::ProtoJson)
            .router(router(None))
            .heartbeat(Duration::from_millis(50))
            .idle_timeout(Duration::from_secs(1))
            .serve("ws://127.0.0.1:0/beat")
            .await?;
        Ok(Self { plain, login, beat })
    }

    /// The URLs as JSON: `{"plain":"ws://...","login":"ws://...","beat":"ws://..."}`,
    /// what the Node tests read from `GONET_TS_SERVERS`.
    pub fn json(&self) -> String {
        serde_json::json!({
            "plain": self.plain.url(),
            "login": self.login.url(),
            "beat": self.beat.url(),
        })
        .to_string()
    }

    /// Stops both.
    pub async fn shutdown(self) {
        self.plain.shutdown().await;
        self.login.shutdown().await;
        self.beat.shutdown().await;
    }
}
