//! MOSIP's own ABIS transport: request messages on an ActiveMQ queue (`mosip-to-abis`), answers
//! on another (`abis-to-mosip`), over STOMP ([`crate::stomp`]).
//!
//! Delivery is at least once. A message is acknowledged only after its answer has been accepted
//! by the broker (a persistent SEND with a receipt), so a crash or a lost connection anywhere
//! before that leaves the request on the queue, and the broker delivers it again. A request
//! delivered twice is answered twice with the same answer and executed once: the engine stores
//! every answer under its request id. The answer goes out in the form the request came in (a
//! text message for a text message, bytes for bytes), as MOSIP's registration processor reads
//! both; it carries the request's `correlation-id` when there is one.
//!
//! The consumer reconnects with capped exponential back-off (1 s doubling to 30 s) for as long as
//! the process runs; a broker that refuses the credentials is retried too, and logged each time.

use crate::Engine;
use crate::stomp::{self, Body, Connection, SendOptions, SubscribeOptions};
use std::sync::Arc;
use std::time::Duration;
use tessera_store::now_ms;
use tokio::sync::{Semaphore, watch};

/// MOSIP's queue names (`mosip-to-abis` / `abis-to-mosip` in MOSIP's ABIS documentation).
pub const INBOUND_DEFAULT: &str = "/queue/mosip-to-abis";
pub const OUTBOUND_DEFAULT: &str = "/queue/abis-to-mosip";
/// Requests served at once (and so the broker's prefetch).
pub const CONCURRENCY_DEFAULT: u32 = 4;
/// Most requests served at once.
pub const CONCURRENCY_MAX: u32 = 64;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where the queues are.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub stomp: stomp::Config,
    /// STOMP destination requests arrive on.
    pub inbound: String,
    /// STOMP destination answers are sent to.
    pub outbound: String,
    /// Requests served at once, 1 to [`CONCURRENCY_MAX`].
    pub concurrency: u32,
}

impl QueueConfig {
    /// MOSIP's queue names on the broker at `addr`.
    #[must_use]
    pub fn new(stomp: stomp::Config) -> Self {
        QueueConfig { stomp, inbound: INBOUND_DEFAULT.into(), outbound: OUTBOUND_DEFAULT.into(), concurrency: CONCURRENCY_DEFAULT }
    }
}

/// Serves the inbound queue until `stop` turns true, reconnecting whenever the connection ends.
pub async fn run(engine: Arc<Engine>, cfg: QueueConfig, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        if *stop.borrow() {
            return;
        }
        let served = tokio::select! {
            r = serve_connection(&engine, &cfg) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match served {
            // The connection worked for a while: start the back-off again.
            Ok(()) => backoff = BACKOFF_FIRST,
            Err(e) => tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "ABIS queue connection failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: subscribe, serve until it fails. `Ok` when at least one message was
/// served before the connection ended.
async fn serve_connection(engine: &Arc<Engine>, cfg: &QueueConfig) -> Result<(), stomp::StompError> {
    let concurrency = cfg.concurrency.clamp(1, CONCURRENCY_MAX);
    let conn = Arc::new(Connection::connect(&cfg.stomp).await?);
    let mut sub = conn.subscribe(&cfg.inbound, &SubscribeOptions { prefetch: concurrency, ..SubscribeOptions::default() }).await?;
    tracing::info!(server = conn.session().server.as_deref().unwrap_or("?"), queue = %cfg.inbound, "serving the ABIS queue");
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let mut served_any = false;
    loop {
        let message = match sub.next().await {
            Ok(m) => m,
            Err(e) if served_any => {
                tracing::warn!(error = %e, "ABIS queue connection ended; reconnecting");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        served_any = true;
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return Ok(()) };
        let (engine, conn, outbound) = (Arc::clone(engine), Arc::clone(&conn), cfg.outbound.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(&engine, &conn, &outbound, &message).await {
                // Not acknowledged: the broker delivers it again (to us after a reconnect).
                tracing::warn!(error = %e, "answering an ABIS queue message failed; it stays on the queue");
                conn.abort();
            }
        });
    }
}

async fn answer(engine: &Engine, conn: &Connection, outbound: &str, message: &stomp::Message) -> Result<(), stomp::StompError> {
    let response = engine.handle(message.body(), now_ms()).await;
    let json = serde_json::to_string(&response).unwrap_or_default();
    let mut options = SendOptions { content_type: Some("application/json".into()), ..SendOptions::default() };
    if let Some(c) = message.header("correlation-id") {
        options.headers.push(("correlation-id".into(), c.to_owned()));
    }
    // ActiveMQ marks a bytes message with content-length; a text message has none.
    let body = if message.header("content-length").is_some() { Body::Bytes(json.as_bytes()) } else { Body::Text(&json) };
    conn.send(outbound, body, &options).await?;
    conn.ack(message).await
}
