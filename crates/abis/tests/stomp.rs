//! The STOMP client against a real ActiveMQ 5 broker (Debian's package, started by testkit):
//! text and bytes bodies, redelivery of what was not acknowledged, ERROR frames as typed errors,
//! heart-beats, the frame size limit, and a send/receive rate.
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

use std::time::{Duration, Instant};
use tessera_abis::stomp::{Body, Config, Connection, FrameError, MAX_FRAME_BYTES, SendOptions, StompError, SubscribeOptions};
use tessera_testkit::activemq::{self, Broker};

fn config(broker: &Broker) -> Config {
    Config::new(broker.stomp_addr()).with_credentials(activemq::USER, activemq::PASSWORD)
}

async fn connect(broker: &Broker) -> Connection {
    Connection::connect(&config(broker)).await.unwrap()
}

/// The next message, or a failure after `secs`.
async fn next(sub: &mut tessera_abis::stomp::Subscription, secs: u64) -> tessera_abis::stomp::Message {
    tokio::time::timeout(Duration::from_secs(secs), sub.next()).await.expect("no message in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_bytes_bodies_round_trip() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("bodies");
    let conn = connect(broker).await;
    assert!(conn.session().server.as_deref().is_some_and(|s| s.starts_with("ActiveMQ/")), "{:?}", conn.session());
    let mut sub = conn.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();

    let json = r#"{"id":"mosip.abis.ping","version":"1.1","requestId":"0b0c…","requesttime":"2020-03-29T07:01:24.692Z"}"#;
    let json_options = SendOptions { content_type: Some("application/json;charset=utf-8".into()), ..SendOptions::default() };
    conn.send(&queue, Body::Text(json), &json_options).await.unwrap();
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, b'\n', b'\r', 0]).collect();
    let extra = SendOptions { headers: vec![("correlation-id".into(), "a:b\\c\nd".into())], ..SendOptions::default() };
    conn.send(&queue, Body::Bytes(&bytes), &extra).await.unwrap();

    let text = next(&mut sub, 10).await;
    assert_eq!(text.text().unwrap(), json);
    assert_eq!(text.content_type(), Some("application/json;charset=utf-8"));
    assert_eq!(text.header("persistent"), Some("true"));
    // ActiveMQ made a TextMessage: it sends no content-length back for it.
    assert_eq!(text.header("content-length"), None);
    assert!(!text.redelivered());
    let binary = next(&mut sub, 10).await;
    assert_eq!(binary.body(), bytes.as_slice());
    assert_eq!(binary.header("content-length"), Some(bytes.len().to_string().as_str()));
    // Header escaping survives the broker both ways.
    assert_eq!(binary.header("correlation-id"), Some("a:b\\c\nd"));
    assert_ne!(text.message_id(), binary.message_id());
    sub.ack(&text).await.unwrap();
    sub.ack(&binary).await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_message_is_redelivered_after_the_consumer_dies() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("redelivery");
    let producer = connect(broker).await;
    producer.send(&queue, Body::Text(r#"{"requestId":"1"}"#), &SendOptions::default()).await.unwrap();
    producer.send(&queue, Body::Text(r#"{"requestId":"2"}"#), &SendOptions::default()).await.unwrap();

    // The first consumer takes both, handles (acknowledges) only the first, and crashes.
    let first = connect(broker).await;
    let mut sub = first.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    let one = next(&mut sub, 10).await;
    let two = next(&mut sub, 10).await;
    assert_eq!(one.text().unwrap(), r#"{"requestId":"1"}"#);
    sub.ack(&one).await.unwrap();
    first.abort();
    assert!(!first.is_alive());
    let err = sub.ack(&two).await.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");

    // The next consumer gets the second again, marked as redelivered, and nothing else.
    let second = connect(broker).await;
    let mut sub = second.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    let again = next(&mut sub, 10).await;
    assert_eq!(again.message_id(), two.message_id());
    assert_eq!(again.body(), two.body());
    assert!(again.redelivered());
    sub.ack(&again).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), sub.next()).await.is_err(), "an acknowledged message came back");
    drop(sub);
    second.disconnect().await.unwrap();

    // Once acknowledged, it is gone for good.
    let third = connect(broker).await;
    let mut sub = third.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), sub.next()).await.is_err(), "an acknowledged message came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_sends_the_message_to_the_dead_letter_queue() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("nack");
    let dlq = queue.replacen("/queue/", &format!("/queue/{}", activemq::DLQ_PREFIX), 1);
    let conn = connect(broker).await;
    conn.send(&queue, Body::Bytes(b"poison\0"), &SendOptions::default()).await.unwrap();
    let mut sub = conn.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    let m = next(&mut sub, 10).await;
    sub.nack(&m).await.unwrap();
    let mut dead = conn.subscribe(&dlq, &SubscribeOptions::default()).await.unwrap();
    let d = next(&mut dead, 10).await;
    assert_eq!(d.body(), b"poison\0");
    assert_eq!(d.header("original-destination"), Some(queue.as_str()));
    dead.ack(&d).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused() {
    let Some(broker) = Broker::shared() else { return };
    let config = Config::new(broker.stomp_addr()).with_credentials(activemq::USER, "wrong");
    let err = Connection::connect(&config).await.unwrap_err();
    let StompError::Refused(e) = &err else { panic!("{err:?}") };
    assert!(e.message.contains("password is invalid"), "{e}");
    assert!(err.is_fatal());
    assert!(!err.to_string().contains("wrong"), "the error repeats the passcode: {err}");
    let anonymous = Connection::connect(&Config::new(broker.stomp_addr())).await.unwrap_err();
    assert!(matches!(anonymous, StompError::Refused(_)), "{anonymous:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_where_not_authorised_is_a_broker_error() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("forbidden");
    let config = Config::new(broker.stomp_addr()).with_credentials(activemq::READER, activemq::READER_PASSWORD);
    let reader = Connection::connect(&config).await.unwrap();
    // Reading is allowed.
    let sub = reader.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    let err = reader.send(&queue, Body::Text("{}"), &SendOptions::default()).await.unwrap_err();
    let StompError::Broker(e) = &err else { panic!("{err:?}") };
    assert!(e.message.contains("not authorized to write"), "{e}");
    assert!(err.is_fatal());
    // The broker closed the connection after the ERROR: every later call says why.
    let later = reader.send(&queue, Body::Text("{}"), &SendOptions::default()).await.unwrap_err();
    assert!(matches!(later, StompError::Broker(_)), "{later:?}");
    drop(sub);
    assert!(!reader.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_connection_open() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("heartbeat");
    let mut config = config(broker);
    // Short enough that a missed beat shows within the test, long enough for a loaded machine.
    let period = Duration::from_millis(500);
    config.heartbeat_send = period;
    config.heartbeat_receive = period;
    let conn = Connection::connect(&config).await.unwrap();
    assert_eq!(conn.session().send_every, Some(period));
    assert_eq!(conn.session().receive_every, Some(period));
    let mut sub = conn.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
    // Without our heart-beats ActiveMQ drops the connection after about 2.5 periods of silence
    // (1.3 s at 500 ms, measured); ours ends after 3 of the broker's.
    tokio::time::sleep(period * 8).await;
    conn.send(&queue, Body::Text("still here"), &SendOptions::default()).await.unwrap();
    let m = next(&mut sub, 10).await;
    assert_eq!(m.text().unwrap(), "still here");
    sub.ack(&m).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_within_the_limit_passes_and_one_over_is_refused_locally() {
    let Some(broker) = Broker::shared() else { return };
    let queue = activemq::unique_queue("large");
    let conn = connect(broker).await;
    let mut sub = conn.subscribe(&queue, &SubscribeOptions { prefetch: 1, ..SubscribeOptions::default() }).await.unwrap();
    // Room for the headers ActiveMQ adds on the way out (about 300 bytes).
    let big: Vec<u8> = (0..MAX_FRAME_BYTES - 4096).map(|i| (i % 251) as u8).collect();
    conn.send(&queue, Body::Bytes(&big), &SendOptions::default()).await.unwrap();
    let m = next(&mut sub, 60).await;
    assert_eq!(m.body().len(), big.len());
    assert!(m.body() == big.as_slice());
    sub.ack(&m).await.unwrap();

    let over = vec![7u8; MAX_FRAME_BYTES];
    let err = conn.send(&queue, Body::Bytes(&over), &SendOptions::default()).await.unwrap_err();
    assert!(matches!(err, StompError::Invalid(FrameError::TooLarge { .. })), "{err:?}");
    assert!(!err.is_fatal());
    // Nothing reached the broker, and the connection goes on.
    conn.send(&queue, Body::Text("after"), &SendOptions::default()).await.unwrap();
    let m = next(&mut sub, 10).await;
    assert_eq!(m.text().unwrap(), "after");
    sub.ack(&m).await.unwrap();
}

/// Messages per second through the broker with the durable pattern (persistent sends with
/// receipts on one connection; receive and acknowledge-with-receipt on another), and with sends
/// pipelined (no receipt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_rate() {
    let Some(broker) = Broker::shared() else { return };
    const N: usize = 2000;
    let body = br#"{"id":"mosip.abis.identify","version":"1.1","requestId":"01234567-89ab-cdef-0123-456789abcdef","requesttime":"2020-03-29T07:01:24.692Z","referenceId":"01234567-89ab-cdef-0123-456789abcdef","referenceURL":""}"#;
    let text = std::str::from_utf8(body).unwrap();
    for (label, receipt) in [("send with receipt", true), ("send pipelined", false)] {
        let queue = activemq::unique_queue("rate");
        let producer = connect(broker).await;
        let consumer = connect(broker).await;
        let mut sub = consumer.subscribe(&queue, &SubscribeOptions::default()).await.unwrap();
        let start = Instant::now();
        let q = queue.clone();
        let send = tokio::spawn(async move {
            let options = SendOptions { receipt, ..SendOptions::default() };
            for _ in 0..N {
                producer.send(&q, Body::Text(text), &options).await.unwrap();
            }
            producer
        });
        for _ in 0..N {
            let m = next(&mut sub, 30).await;
            assert_eq!(m.body(), body);
            sub.ack(&m).await.unwrap();
        }
        let elapsed = start.elapsed();
        send.await.unwrap().disconnect().await.unwrap();
        eprintln!("STOMP {label}, receive + ack: {N} messages in {elapsed:.2?} = {:.0} messages/s", N as f64 / elapsed.as_secs_f64());
    }
}
