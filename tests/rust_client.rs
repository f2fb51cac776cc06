//! The Rust client (`clients/rust`, crate `herald-client`) against a real
//! herald on a free loopback port: publish, batch, info, delete and errors;
//! a subscription that resumes across a cut connection without loss or
//! duplicates and reports gaps; tokens herald accepts. The Rust blocks of
//! docs/sdk.md are the bodies of the `docs_*` functions below, checked
//! line for line and run.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herald::auth::JwtKey;
use herald_client::{BatchItem, Data, Herald, Item, Message, Subscription};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PUBLISH_KEY: &str = "PUBLISH_KEY";
const JWT_SECRET: &str = "JWT_SECRET";

fn client(addr: SocketAddr) -> Herald {
    Herald::new(&format!("http://{addr}")).unwrap()
}

/// The next item of a subscription, within the test deadline.
async fn next_item(subscription: &mut Subscription) -> Item {
    within("a subscription item", subscription.next())
        .await
        .expect("the subscription goes on")
        .expect("the subscription is open")
}

async fn next_message(subscription: &mut Subscription) -> Message {
    match next_item(subscription).await {
        Item::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_batch_info_delete_and_errors_with_their_code() {
    let server = start(|c| c.auth.publish_key = Some(PUBLISH_KEY.into())).await;
    let herald = client(server.addr).with_key(PUBLISH_KEY);

    let first = herald
        .publish("rc.news", "hello")
        .event("update")
        .idempotency_key("rc-1")
        .await
        .unwrap();
    assert_eq!(first.channel, "rc.news");
    let again = herald
        .publish("rc.news", "hello")
        .event("update")
        .idempotency_key("rc-1")
        .await
        .unwrap();
    assert_eq!(
        again.id, first.id,
        "a retried publish is not published twice"
    );

    let batch = herald
        .publish_batch([
            BatchItem::new("rc.news", serde_json::json!({"n": 2})),
            BatchItem::new("rc.bytes", vec![0u8, 159, 255]).event("blob"),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[1].channel, "rc.bytes");
    herald.publish("rc.bytes", &[1u8, 2]).await.unwrap();

    let info = herald.info("rc.news").await.unwrap();
    assert_eq!(info.messages, 2);
    assert_eq!(info.first_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(info.last_id.as_deref(), Some(batch[0].id.as_str()));

    // What was published arrives as published: text, JSON text, bytes.
    let page = poll(server.addr, "/sub/rc.news,rc.bytes?since=0").await;
    let messages = page["messages"].as_array().unwrap();
    let by = |i: usize, key: &str| messages[i][key].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (by(0, "data"), by(0, "event")),
        ("hello".into(), "update".into())
    );
    assert_eq!(by(1, "data"), r#"{"n":2}"#);
    assert_eq!(
        (by(2, "data"), by(2, "encoding")),
        ("AJ//".into(), "base64".into())
    );
    assert_eq!(by(3, "data"), "AQI=");

    let deleted = herald.delete("rc.news").await.unwrap();
    assert!(deleted.deleted);
    let gone = herald.info("rc.news").await.unwrap_err();
    assert_eq!((gone.status(), gone.code()), (Some(404), Some("not_found")));

    let bad = herald.publish("bad name", "x").await.unwrap_err();
    assert_eq!((bad.status(), bad.code()), (Some(400), Some("bad_channel")));
    let anonymous = client(server.addr)
        .publish("rc.news", "x")
        .await
        .unwrap_err();
    assert_eq!(
        (anonymous.status(), anonymous.code()),
        (Some(401), Some("unauthorized"))
    );
}

/// A TCP proxy in front of herald whose connections the test can cut.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (accepted, links) = (accepted.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            addr,
            accepted,
            links,
            accept,
        }
    }

    /// Drops every open connection, both ways, as a failing network would.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn a_cut_subscription_resumes_without_loss_or_duplicates() {
    let server = server().await;
    let proxy = Proxy::start(server.addr).await;
    let direct = client(server.addr);
    let mut subscription = client(proxy.addr)
        .subscribe(["rc.cut.a", "rc.cut.b"])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .await
        .unwrap();

    let first = direct.publish("rc.cut.a", "one").await.unwrap();
    let got = next_message(&mut subscription).await;
    assert_eq!(
        (got.id.as_str(), got.data.as_text()),
        (first.id.as_str(), Some("one"))
    );

    proxy.cut();
    // Published while the subscriber is away, on both channels.
    let two = direct.publish("rc.cut.a", "two").await.unwrap();
    let three = direct.publish("rc.cut.b", vec![3u8]).await.unwrap();
    let mut resumed = [
        next_message(&mut subscription).await,
        next_message(&mut subscription).await,
    ];
    resumed.sort_by(|x, y| x.channel.cmp(&y.channel));
    assert_eq!(resumed[0].id, two.id);
    assert_eq!(resumed[0].data, Data::Text("two".into()));
    assert_eq!(resumed[1].id, three.id);
    assert_eq!(resumed[1].data, Data::Binary(vec![3]));
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2, "it reconnected");

    let four = direct.publish("rc.cut.a", "four").await.unwrap();
    let got = next_message(&mut subscription).await;
    assert_eq!(got.id, four.id, "live again, nothing repeated");
    assert_eq!(
        subscription.cursor(),
        format!("rc.cut.a={},rc.cut.b={}", four.id, three.id)
    );
    subscription.close().await;
    assert!(subscription.next().await.unwrap().is_none());
}

#[tokio::test]
async fn resuming_from_a_cursor_replays_what_was_missed_and_reports_gaps() {
    let server = start(|c| c.history.max_messages = 3).await;
    let herald = client(server.addr);
    let mut subscription = herald.subscribe(["rc.gap"]).await.unwrap();
    let first = herald.publish("rc.gap", "m1").await.unwrap();
    assert_eq!(next_message(&mut subscription).await.id, first.id);
    let cursor = subscription.cursor();
    subscription.close().await;

    let mut ids = Vec::new();
    for i in 2..=6 {
        ids.push(herald.publish("rc.gap", format!("m{i}")).await.unwrap().id);
    }
    // History keeps m4..m6: m2 and m3 are gone.
    let mut resumed = herald.subscribe(["rc.gap"]).since(cursor).await.unwrap();
    match next_item(&mut resumed).await {
        Item::Gap(gap) => {
            assert_eq!(gap.channel, "rc.gap");
            assert_eq!(gap.reason, "trimmed");
            assert_eq!(gap.missed, Some(2));
            assert_eq!(gap.first_id.as_deref(), Some(ids[2].as_str()));
        }
        other => panic!("expected a gap first, got {other:?}"),
    }
    for id in &ids[2..] {
        assert_eq!(&next_message(&mut resumed).await.id, id);
    }

    // since = "0": everything still in history, no gap.
    let mut everything = herald.subscribe(["rc.gap"]).since("0").await.unwrap();
    for id in &ids[2..] {
        assert_eq!(&next_message(&mut everything).await.id, id);
    }
}

#[tokio::test]
async fn a_refused_subscription_is_an_error_with_herald_code() {
    let server = start(|c| c.auth.jwt = Some(JwtKey::secret(JWT_SECRET))).await;
    let no_token = client(server.addr)
        .subscribe(["rc.secret"])
        .await
        .unwrap_err();
    assert_eq!(
        (no_token.status(), no_token.code()),
        (Some(401), Some("unauthorized"))
    );
    let bad_name = herald_client::Token::new("u")
        .subscribe(["*"])
        .sign(JWT_SECRET);
    let error = client(server.addr)
        .with_token(bad_name)
        .subscribe(["bad name"])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("bad_channel"));
}

// ---- docs/sdk.md, "Rust": each block is the body between the markers ----

/// Publish (docs/sdk.md): herald started with `--publish-key PUBLISH_KEY`.
async fn docs_publish(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    // sdk.md rust publish
    use herald_client::{BatchItem, Herald};
    use serde_json::json;

    let herald = Herald::new(url)?.with_key("PUBLISH_KEY");
    let answer = herald
        .publish("news", json!({"title": "hello"}))
        .event("update")
        .idempotency_key("news-1")
        .await?;
    println!("{} {}", answer.id, answer.subscribers);
    herald
        .publish_batch([
            BatchItem::new("news", "one"),
            BatchItem::new("alerts", vec![0u8, 1]),
        ])
        .await?;
    println!("{:?}", herald.info("news").await?.last_id);
    // sdk.md end
    Ok(())
}

/// Subscribe and resume (docs/sdk.md): runs until the test stops it.
async fn docs_subscribe(url: &str, cursor_file: &str) -> Result<(), Box<dyn std::error::Error>> {
    // sdk.md rust subscribe
    use herald_client::{Herald, Item};

    let saved = std::path::Path::new(cursor_file); // where this process got to, across restarts
    let herald = Herald::new(url)?.with_key("PUBLISH_KEY");
    let since = std::fs::read_to_string(saved).unwrap_or_default();
    let mut messages = herald.subscribe(["news", "alerts"]).since(since).await?;
    while let Some(item) = messages.next().await? {
        match item {
            Item::Gap(gap) => println!(
                "missed {:?} on {}: reload it from the database",
                gap.missed, gap.channel
            ),
            Item::Message(m) => println!("{} {} {:?} {:?}", m.channel, m.id, m.event, m.data),
        }
        std::fs::write(saved, messages.cursor())?;
    }
    // sdk.md end
    Ok(())
}

/// Mint a token (docs/sdk.md).
fn docs_token() -> String {
    // sdk.md rust token
    use herald_client::Token;
    use std::time::Duration;

    let token = Token::new("user-42")
        .subscribe(["news", "user.42.*"])
        .publish(["chat.*"])
        .ttl(Duration::from_secs(3600))
        .sign("JWT_SECRET");
    println!("{token}");
    // sdk.md end
    token
}

/// Verify a webhook (docs/sdk.md).
fn docs_webhook(body: &[u8], signature: Option<&str>) -> u16 {
    // sdk.md rust webhook
    use herald_client::verify_webhook;

    fn handle_herald_webhook(body: &[u8], signature: Option<&str>) -> u16 {
        if !verify_webhook("WEBHOOK_SECRET", body, signature) {
            return 401;
        }
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        for event in payload["events"].as_array().into_iter().flatten() {
            println!("{} {}", event["type"], event["channel"]);
        }
        204
    }
    // sdk.md end
    handle_herald_webhook(body, signature)
}

/// The ```rust NAME blocks of docs/sdk.md, by name.
fn docs_blocks() -> Vec<(String, String)> {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sdk.md"))
        .expect("docs/sdk.md exists");
    let mut blocks = Vec::new();
    let mut rest = docs.as_str();
    while let Some(at) = rest.find("\n```rust ") {
        rest = &rest[at + "\n```rust ".len()..];
        let (name, body) = rest.split_once('\n').unwrap();
        let end = body.find("\n```").expect("a closed block");
        blocks.push((name.trim().to_owned(), body[..end].to_owned()));
        rest = &body[end..];
    }
    blocks
}

/// The lines between `// sdk.md rust NAME` and `// sdk.md end` in this file, dedented.
fn marked_region(name: &str) -> String {
    let source = include_str!("rust_client.rs");
    let start = format!("// sdk.md rust {name}\n");
    let at = source
        .find(&start)
        .unwrap_or_else(|| panic!("no region {name}"))
        + start.len();
    let region = &source[at..];
    let region = &region[..region.find("// sdk.md end").unwrap()];
    region
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

#[test]
fn the_rust_blocks_of_docs_sdk_md_are_the_code_these_tests_run() {
    let blocks = docs_blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["publish", "subscribe", "token", "webhook"]);
    for (name, block) in &blocks {
        // The docs name a herald on 8080 and a file; the tests pass theirs.
        let block = block
            .replace("Herald::new(\"http://127.0.0.1:8080\")", "Herald::new(url)")
            .replace("Path::new(\"news.cursor\")", "Path::new(cursor_file)");
        assert_eq!(
            block.trim_end(),
            marked_region(name),
            "docs/sdk.md's rust {name} block differs from tests/rust_client.rs"
        );
    }
}

#[tokio::test]
async fn the_docs_publish_and_subscribe_with_resume_against_herald() {
    let server = start(|c| {
        c.auth.publish_key = Some(PUBLISH_KEY.into());
        c.history.max_messages = 2;
    })
    .await;
    let url = format!("http://{}", server.addr);
    docs_publish(&url).await.unwrap();
    let herald = client(server.addr).with_key(PUBLISH_KEY);
    let news = herald.info("news").await.unwrap();
    assert_eq!(news.messages, 2);
    assert_eq!(herald.info("alerts").await.unwrap().messages, 1);

    let dir = std::env::temp_dir().join(format!("herald-rust-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cursor_file = dir.join("news.cursor");
    let _ = std::fs::remove_file(&cursor_file);
    let cursor_path = cursor_file.to_str().unwrap().to_owned();

    // Runs the snippet until `until` is true of the saved cursor.
    let run_until = |until: Box<dyn Fn(&str) -> bool>| {
        let (url, cursor_path) = (url.clone(), cursor_path.clone());
        async move {
            let watch = async {
                loop {
                    let saved = std::fs::read_to_string(&cursor_path).unwrap_or_default();
                    if until(&saved) {
                        return saved;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                ended = docs_subscribe(&url, &cursor_path) => panic!("the snippet ended: {ended:?}"),
                saved = within("the snippet's saved cursor", watch) => saved,
            }
        }
    };

    // First run: from now; it saves its position after each message.
    let publisher = herald.clone();
    let wait_then_publish = async {
        within("the snippet's subscription", async {
            while publisher.info("alerts").await.unwrap().subscribers == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        publisher.publish("news", "live").await.unwrap().id
    };
    let (saved, live) = tokio::join!(
        run_until(Box::new(|saved: &str| saved.contains("news="))),
        wait_then_publish
    );
    assert!(saved.contains(&format!("news={live}")), "{saved}");

    // Published while the process is down; history keeps only 2 of 3.
    for i in 0..3 {
        herald
            .publish("news", format!("while away {i}"))
            .await
            .unwrap();
    }
    let last = herald.info("news").await.unwrap().last_id.unwrap();
    let saved = run_until(Box::new(move |saved: &str| {
        saved.contains(&format!("news={last}"))
    }))
    .await;
    assert!(saved.contains("alerts="), "{saved}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_docs_token_is_accepted_by_herald_and_the_webhook_check_holds() {
    let server = start(|c| c.auth.jwt = Some(JwtKey::secret(JWT_SECRET))).await;
    let token = client(server.addr).with_token(docs_token());
    let mut subscription = token.subscribe(["news", "user.42.inbox"]).await.unwrap();
    let publisher = client(server.addr).with_token(docs_token());
    let published = publisher.publish("chat.lobby", "hi").await;
    assert!(
        published.is_ok(),
        "chat.* may be published to: {published:?}"
    );
    let refused = token.subscribe(["user.7.inbox"]).await.unwrap_err();
    assert_eq!(refused.code(), Some("forbidden"));
    subscription.close().await;

    // A body signed as herald signs it (HMAC-SHA256 of the raw body).
    use hmac::Mac;
    let body = br#"{"events":[{"type":"channel.occupied","channel":"news","time_ms":1}]}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"WEBHOOK_SECRET").unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let header = format!("sha256={hex}");
    assert_eq!(docs_webhook(body, Some(&header)), 204);
    assert_eq!(docs_webhook(b"{\"events\":[]}", Some(&header)), 401);
    assert_eq!(docs_webhook(body, None), 401);
}
