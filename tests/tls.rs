//! TLS on a `tls://` listener: HTTPS over HTTP/1.1 and HTTP/2 (ALPN), SSE
//! both ways, WSS on the raw and `/ws` endpoints, a plain and a TLS listener
//! side by side, certificate reload on a file change and on SIGHUP, and a
//! handshake that never finishes cut at the header read timeout. The
//! certificates are made by `openssl` for each test.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{within, WAIT};
use futures_util::{SinkExt, StreamExt};
use herald::http::RunningServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A directory of its own for one test's certificates, removed with it.
fn scratch(name: &str) -> common::Scratch {
    common::Scratch::new(&format!("tls-{name}"))
}

/// Makes a test certificate authority in `dir` (`ca.pem`, `ca.key`) and
/// returns its certificate, the one root every client of the test trusts.
fn make_ca(dir: &Path) -> CertificateDer<'static> {
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=herald test CA"])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made a CA");
    CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()
}

/// Makes a server certificate for 127.0.0.1 and localhost, named `cn` and
/// signed by the CA in `dir`, as `cert.pem` and `key.pem` (written beside,
/// then renamed in, as a deployment tool would). Returns the certificate.
fn make_certificate(dir: &Path, cn: &str) -> CertificateDer<'static> {
    let (cert, key) = (dir.join("cert.new"), dir.join("key.new"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-CA")
        .arg(dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made a certificate");
    std::fs::rename(&key, dir.join("key.pem")).unwrap();
    std::fs::rename(&cert, dir.join("cert.pem")).unwrap();
    CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap()
}

/// herald with a plain and a TLS listener on the certificate in `dir`.
async fn start(
    dir: &Path,
    configure: impl FnOnce(&mut herald::config::ServerConfig),
) -> RunningServer {
    common::start(|config| {
        config.listen = "127.0.0.1:0,tls://127.0.0.1:0".parse().unwrap();
        config.tls = Some(herald::config::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        });
        configure(config);
    })
    .await
}

/// An HTTPS client trusting `roots`; `h2`: HTTP/2 only, else HTTP/1.1 only.
fn https_client(roots: &[&CertificateDer<'static>], h2: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().use_rustls_tls().timeout(WAIT);
    for root in roots {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(root).unwrap());
    }
    builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

fn client_config(roots: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` trusting `roots`.
async fn tls_connect(
    addr: SocketAddr,
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(client_config(roots, alpn))
        .connect(name, tcp)
        .await
}

/// The certificate `addr` serves now.
async fn served_certificate(addr: SocketAddr, roots: &[&CertificateDer<'static>]) -> Vec<u8> {
    let stream = within("a TLS handshake", tls_connect(addr, roots, &[]))
        .await
        .expect("the handshake succeeds");
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn publish_over(client: &reqwest::Client, base: &str, channel: &str, data: &str) -> Value {
    let response = client
        .post(format!("{base}/pub/{channel}"))
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Reads SSE `data:` lines from a streaming response until `count` arrived.
async fn sse_data(response: reqwest::Response, count: usize) -> Vec<String> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    within("SSE events", async {
        loop {
            let data: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
                .collect();
            if data.len() >= count {
                return data;
            }
            let chunk = body.next().await.expect("the stream goes on").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
}

#[tokio::test]
async fn https_serves_http1_and_http2_with_event_streams_on_both() {
    let dir = scratch("https");
    let ca = make_ca(&dir);
    make_certificate(&dir, "herald test");
    let server = start(&dir, |_| {}).await;
    let base = format!("https://{}", server.tls_addr().unwrap());
    for h2 in [false, true] {
        let client = https_client(&[&ca], h2);
        let health = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let expected = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(health.version(), expected);
        let channel = if h2 { "over-h2" } else { "over-h1" };
        // Two event streams on the same client: over HTTP/2, one connection.
        let mut streams = Vec::new();
        for _ in 0..2 {
            let response = client
                .get(format!("{base}/sub/{channel}"))
                .header("accept", "text/event-stream")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), expected);
            let kind = response.headers()["content-type"].to_str().unwrap();
            assert!(kind.starts_with("text/event-stream"), "h2 {h2}: {kind}");
            streams.push(response);
        }
        common::wait_for_subscribers(server.addr, channel, 2).await;
        publish_over(&client, &base, channel, "one").await;
        publish_over(&client, &base, channel, "two").await;
        for stream in streams {
            assert_eq!(sse_data(stream, 2).await, ["one", "two"], "h2 {h2}");
        }
        // A long poll answers over the same client.
        let polled: Value = client
            .get(format!("{base}/sub/{channel}?since=0"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(polled["messages"].as_array().unwrap().len(), 2, "{polled}");
    }
    server.shutdown();
}

#[tokio::test]
async fn wss_serves_raw_and_protocol_sockets_and_meets_plain_subscribers() {
    let dir = scratch("wss");
    let ca = make_ca(&dir);
    make_certificate(&dir, "herald test");
    let server = start(&dir, |_| {}).await;
    let tls = server.tls_addr().unwrap();
    let connect = |path: &'static str| {
        let ca = ca.clone();
        async move {
            let stream = tls_connect(tls, &[&ca], &[b"http/1.1"]).await.unwrap();
            let (socket, response) =
                tokio_tungstenite::client_async(format!("wss://{tls}{path}"), stream)
                    .await
                    .unwrap();
            assert_eq!(response.status(), 101);
            socket
        }
    };
    let mut raw = within("a wss:// socket", connect("/sub/mixed")).await;
    let mut protocol = within("a wss:// /ws socket", connect("/ws")).await;
    protocol
        .send(Message::text(
            json!({"op": "sub", "channel": "mixed", "ref": 1}).to_string(),
        ))
        .await
        .unwrap();
    let mut plain = common::websocket(server.addr, "/sub/mixed").await;
    common::wait_for_subscribers(server.addr, "mixed", 3).await;
    // Published from the raw TLS socket: every subscriber, plain or TLS, hears it.
    raw.send(Message::text("from wss")).await.unwrap();
    let binary = vec![0u8, 159, 146, 150];
    common::publish(server.addr, "mixed", binary.clone()).await;
    let text = |m: Message| m.into_text().unwrap().to_string();
    assert_eq!(text(common::next_frame(&mut raw).await), "from wss");
    assert_eq!(
        common::next_frame(&mut raw).await,
        Message::binary(binary.clone())
    );
    assert_eq!(text(common::next_frame(&mut plain).await), "from wss");
    let answered: Value =
        serde_json::from_str(&text(common::next_frame(&mut protocol).await)).unwrap();
    assert_eq!(answered["op"], "ok", "{answered}");
    let message: Value =
        serde_json::from_str(&text(common::next_frame(&mut protocol).await)).unwrap();
    assert_eq!(message["data"], "from wss", "{message}");
    server.shutdown();
    // Shutdown reaches a TLS socket as it does a plain one: 1012.
    let closed = loop {
        match within("the close frame", raw.next()).await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(closed.unwrap().code), 1012);
}

#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart() {
    let dir = scratch("reload");
    let ca = make_ca(&dir);
    let first = make_certificate(&dir, "first");
    let server = start(&dir, |config| {
        config.tls_reload_interval = Duration::from_millis(50);
    })
    .await;
    let tls = server.tls_addr().unwrap();
    let old = first.clone();
    let open = tls_connect(tls, &[&ca], &[b"http/1.1"]).await.unwrap();
    assert_eq!(served_certificate(tls, &[&ca]).await, first.to_vec());
    let second = make_certificate(&dir, "second");
    assert_ne!(first.to_vec(), second.to_vec());
    within("the new certificate to be served", async {
        while served_certificate(tls, &[&ca]).await != second.to_vec() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A connection made before the reload keeps its session.
    assert_eq!(
        open.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        old.to_vec()
    );
    // A broken file leaves the good certificate in service.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    let metrics = async || {
        let text = reqwest::get(format!("http://{}/metrics", server.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("herald_tls_reloads_total{result=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    within("the failed reload to be counted", async {
        while metrics().await < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(served_certificate(tls, &[&ca]).await, second.to_vec());
    server.shutdown();
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_at_the_header_read_timeout() {
    let dir = scratch("stall");
    let ca = make_ca(&dir);
    make_certificate(&dir, "herald test");
    let server = start(&dir, |config| {
        config.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let tls = server.tls_addr().unwrap();
    // Connects and says nothing; then half a ClientHello: both are cut.
    for opening in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut stalled = TcpStream::connect(tls).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stalled, opening)
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = within("the server to close a stalled handshake", async {
            stalled.read_to_end(&mut rest).await
        })
        .await;
        assert!(
            read.is_err() || rest.is_empty(),
            "nothing but a close: {rest:?}"
        );
    }
    // The listener still serves a real client.
    let client = https_client(&[&ca], false);
    let health = client
        .get(format!("https://{tls}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_tls_handshakes_total{result=\"timeout\"} 2")),
        "two handshakes timed out:\n{text}"
    );
    server.shutdown();
}

/// `herald serve` as a process with a plain and a TLS listener.
struct Process {
    child: tokio::process::Child,
    plain: SocketAddr,
    tls: SocketAddr,
}

async fn serve_process(args: &[&str]) -> Process {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "tls://127.0.0.1:0",
        ])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        within("herald to listen", lines.next_line())
            .await
            .unwrap()
            .expect("herald printed its addresses")
    };
    let plain = next().await;
    let tls = next().await;
    let plain = plain.strip_prefix("herald listening on http://").unwrap();
    let tls = tls.strip_prefix("herald listening on https://").unwrap();
    Process {
        plain: plain.parse().unwrap(),
        tls: tls.parse().unwrap(),
        child,
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_at_once() {
    let dir = scratch("sighup");
    let ca = make_ca(&dir);
    let first = make_certificate(&dir, "first");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut herald = serve_process(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        // Only the signal reloads within this test's time.
        "--tls-reload-interval",
        "1h",
    ])
    .await;
    assert_eq!(served_certificate(herald.tls, &[&ca]).await, first.to_vec());
    let second = make_certificate(&dir, "second");
    let pid = herald.child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    within("the certificate to change after SIGHUP", async {
        while served_certificate(herald.tls, &[&ca]).await != second.to_vec() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Still serving, and on the plain port too.
    let health = reqwest::get(format!("http://{}/healthz", herald.plain))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    herald.child.start_kill().unwrap();
    let _ = herald.child.wait().await;
}

#[test]
fn a_tls_listener_and_the_certificate_go_together() {
    let dir = scratch("config");
    let file = dir.join("herald.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let good = check(
        "listen = [\"127.0.0.1:8080\", \"tls://0.0.0.0:8443\"]\n\
         tls_cert = \"/etc/herald/cert.pem\"\ntls_key = \"/etc/herald/key.pem\"\n\
         tls_reload_interval = \"10s\"\nno_ws_compression = true\n",
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let without_cert = check("listen = \"tls://0.0.0.0:8443\"\n");
    assert!(!without_cert.status.success());
    assert!(String::from_utf8_lossy(&without_cert.stderr).contains("--tls-cert"));
    let without_listener = check("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
    assert!(!without_listener.status.success());
    assert!(String::from_utf8_lossy(&without_listener.stderr).contains("tls://"));
    let half = check("listen = \"tls://0.0.0.0:8443\"\ntls_cert = \"c.pem\"\n");
    assert!(!half.status.success());
}

#[tokio::test]
async fn an_http2_client_turned_away_reads_its_refusal_as_http2() {
    let dir = scratch("h2-refusal");
    let ca = make_ca(&dir);
    make_certificate(&dir, "herald test");
    // One new connection per second from loopback, two at once at most.
    let server = start(&dir, |c| {
        c.connection_rate = 1.0;
        c.rate_limit_loopback = true;
    })
    .await;
    let base = format!("https://{}", server.tls_addr().unwrap());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        // A fresh client each time: a new connection, over HTTP/2.
        let client = https_client(&[&ca], true);
        let response = within("an answer", client.get(format!("{base}/healthz")).send())
            .await
            .expect("an HTTP/2 answer, even a refusal");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let status = response.status().as_u16();
        if status == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&429),
        "some connection was refused: {statuses:?}"
    );
    server.shutdown();
}
