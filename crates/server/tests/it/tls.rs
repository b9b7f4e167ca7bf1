//! The channel, part 1 (issue #16): HTTPS on the listener with certificates generated here
//! (rcgen), reload without dropped connections, HSTS, HTTP/2 by ALPN; plain HTTP refused off
//! loopback; forwarding headers believed only from trusted proxies; mutual TLS (client
//! certificates of configured CAs only: no certificate, expired, another CA and revoked by a
//! CRL reloaded in place are refused, open connections kept).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use trustgate_core::Secret;
use trustgate_server::{Config, Server, StartError};
use trustgate_testkit::tls::TestCa as Ca;

const TOKEN: &str = "tg_test_tls_0123456789abcdefghijklmnop";
const BOUND: Duration = Duration::from_secs(10);

/// A server certificate from `ca`: (chain PEM, key PEM, leaf DER).
fn issue(ca: &Ca, cn: &str) -> (String, String, CertificateDer<'static>) {
    let c = ca.server(cn);
    (c.cert_pem, c.key_pem, CertificateDer::from(c.der))
}

fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Written next to the target and renamed: a reader never sees half a file.
    for (path, text) in [(&c, cert), (&k, key)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }
    (c, k)
}

struct Running {
    addr: SocketAddr,
    /// The mutual-TLS listener's address, when there is one.
    mtls: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StartError>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn base_config(dir: &tempfile::TempDir) -> Config {
    Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        data_dir: dir.path().join("data"),
        bootstrap_token: Some(Secret::new(TOKEN)),
        ..Config::default()
    }
}

async fn start(dir: tempfile::TempDir, config: Config) -> Running {
    let server = Server::start(config).await.expect("start");
    let addr = server.local_addr().expect("bound");
    let mtls = server.mtls_local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        mtls,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

async fn start_tls(ca: &Ca, configure: impl FnOnce(&mut Config)) -> (Running, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = issue(ca, "first");
    let (cert_file, key_file) = write_pair(dir.path(), &cert, &key);
    let mut config = base_config(&dir);
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    configure(&mut config);
    let path = dir.path().to_path_buf();
    (start(dir, config).await, path)
}

/// A TLS connection to `addr` trusting `ca` only, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der.clone()))
        .expect("root");
    let mut config =
        rustls::ClientConfig::builder_with_provider(trustgate_listener::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

fn served_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

/// `GET path` on an HTTP/1.1 connection: (status, HSTS header, body).
async fn get_h1(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (StatusCode, Option<String>, Bytes) {
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(BOUND, sender.send_request(request))
        .await
        .expect("bounded")
        .expect("response");
    let status = response.status();
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, hsts, body)
}

async fn http1_over(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(connection);
    sender
}

#[tokio::test]
async fn https_speaks_http2_and_http1_by_alpn_with_hsts_and_nothing_in_clear() {
    let ca = Ca::new("tls test CA");
    let (server, _) = start_tls(&ca, |_| {}).await;
    // HTTP/2 when the client offers it first.
    let stream = connect(server.addr, &ca, &[b"h2", b"http/1.1"])
        .await
        .expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let response = h2
        .send_request(
            Request::get("https://localhost/healthz")
                .body(Empty::<Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("h2 response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    // HTTP/1.1 when that is all the client speaks.
    let stream = connect(server.addr, &ca, &[b"http/1.1"])
        .await
        .expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = http1_over(stream).await;
    let (status, hsts, _) = get_h1(&mut h1, "/healthz").await;
    assert_eq!(
        (status, hsts.as_deref()),
        (StatusCode::OK, Some("max-age=31536000"))
    );
    // The discovery document names the https issuer.
    let (status, _, body) = get_h1(&mut h1, "/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK);
    let discovery: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        discovery["issuer"],
        format!("https://{}", server.addr),
        "the default issuer is https with TLS"
    );
    // Plain HTTP to the TLS port gets no HTTP answer: the handshake fails and the
    // connection is closed.
    let mut plain = TcpStream::connect(server.addr).await.expect("tcp");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(BOUND, plain.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no HTTP in clear: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A client that does not trust the CA fails its handshake.
    let stranger = Ca::new("another CA");
    assert!(
        connect(server.addr, &stranger, &[b"http/1.1"])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_within_the_header_budget() {
    let ca = Ca::new("tls test CA");
    let (server, _) = start_tls(&ca, |c| c.http.header_read_timeout_secs = 1).await;
    let mut idle = TcpStream::connect(server.addr).await.expect("tcp");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(BOUND, idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_open_connections() {
    let ca = Ca::new("tls test CA");
    let (server, dir) = start_tls(&ca, |c| c.tls.reload_check_secs = 1).await;
    let first = connect(server.addr, &ca, &[b"http/1.1"])
        .await
        .expect("tls");
    let old = served_certificate(&first);
    let mut open = http1_over(first).await;
    assert_eq!(get_h1(&mut open, "/healthz").await.0, StatusCode::OK);

    // Renewed in place: picked up by the file check.
    let (cert, key, renewed) = issue(&ca, "renewed");
    assert_ne!(renewed, old);
    write_pair(&dir, &cert, &key);
    let deadline = Instant::now() + BOUND;
    loop {
        let stream = connect(server.addr, &ca, &[b"http/1.1"])
            .await
            .expect("tls");
        if served_certificate(&stream) == renewed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection opened before the reload still works, on its old session.
    assert_eq!(get_h1(&mut open, "/healthz").await.0, StatusCode::OK);

    // A broken pair (a key that is not the certificate's) is refused; the renewed one stays.
    let (_, other_key, _) = issue(&ca, "mismatched");
    write_pair(&dir, &cert, &other_key);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stream = connect(server.addr, &ca, &[b"http/1.1"])
        .await
        .expect("still served");
    assert_eq!(served_certificate(&stream), renewed);
    let mut h1 = http1_over(stream).await;
    assert_eq!(get_h1(&mut h1, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_certificate_that_does_not_load_fails_the_start() {
    let ca = Ca::new("tls test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _, _) = issue(&ca, "a");
    let (_, other_key, _) = issue(&ca, "b");
    let (cert_file, key_file) = write_pair(dir.path(), &cert, &other_key);
    let mut config = base_config(&dir);
    config.tls.cert_file = Some(cert_file.clone());
    config.tls.key_file = Some(key_file.clone());
    let err = Server::start(config).await.expect_err("mismatched key");
    assert!(err.to_string().contains("not the certificate's"), "{err}");

    let mut config = base_config(&dir);
    config.tls.cert_file = Some(dir.path().join("missing.pem"));
    config.tls.key_file = Some(key_file.clone());
    let err = Server::start(config).await.expect_err("missing file");
    assert!(err.to_string().contains("cannot read"), "{err}");

    std::fs::write(&cert_file, "not a certificate").expect("write");
    let mut config = base_config(&dir);
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    let err = Server::start(config).await.expect_err("no PEM");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

/// An audited admin request from `from` (a 127/8 address) with `headers`; the IP its audit
/// event records.
async fn audited_ip(server: &Running, from: [u8; 4], headers: &[(&str, &str)], n: u32) -> String {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    let stream = socket.connect(server.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request_id = format!("tls-proxy-test-{n}");
    let mut request = Request::post("/admin/v1/users")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("x-request-id", &request_id);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = serde_json::json!({"username": format!("proxied{n}"), "email": format!("p{n}@example.com")});
    let response = sender
        .send_request(
            request
                .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
        .expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + BOUND;
    loop {
        let events: Value = client
            .get(format!("http://{}/admin/v1/audit", server.addr))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("json");
        if let Some(event) = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["request_id"] == request_id.as_str())
        {
            return event["ip"].as_str().expect("ip").to_owned();
        }
        assert!(Instant::now() < deadline, "no audit event for {request_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forwarding_headers_count_only_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(&dir);
    config.http.trusted_proxies = vec!["127.0.0.2".into()];
    let server = start(dir, config).await;
    let spoof = [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-proto", "https"),
    ];
    // A client that is not the proxy writes the headers itself: ignored.
    assert_eq!(
        audited_ip(&server, [127, 0, 0, 3], &spoof, 1).await,
        "127.0.0.3"
    );
    // The proxy's word is taken.
    assert_eq!(
        audited_ip(&server, [127, 0, 0, 2], &spoof, 2).await,
        "198.51.100.7"
    );
    // What the client put in front of the proxy's entry is not.
    let chained = [("x-forwarded-for", "203.0.113.1, 198.51.100.8")];
    assert_eq!(
        audited_ip(&server, [127, 0, 0, 2], &chained, 3).await,
        "198.51.100.8"
    );
    // RFC 7239.
    let forwarded = [("forwarded", "for=\"[2001:db8::5]:4711\";proto=https")];
    assert_eq!(
        audited_ip(&server, [127, 0, 0, 2], &forwarded, 4).await,
        "2001:db8::5"
    );
}

#[tokio::test]
async fn hsts_follows_the_trusted_proxy_scheme_on_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(&dir);
    config.http.trusted_proxies = vec!["127.0.0.0/8".into()];
    let server = start(dir, config).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/healthz", server.addr);
    let plain = client.get(&url).send().await.expect("plain");
    assert!(plain.headers().get("strict-transport-security").is_none());
    let proxied = client
        .get(&url)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("proxied https");
    assert_eq!(
        proxied.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

/// A TLS connection to `addr` trusting `ca`, presenting `client` (certificate and key PEM).
async fn connect_as(
    addr: SocketAddr,
    ca: &Ca,
    client: Option<(&str, &str)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der.clone()))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(trustgate_listener::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// `GET path` over mutual TLS as `client`: the status and JSON body, or the error that ended
/// it (with TLS 1.3 the server refuses a client certificate after the client's handshake is
/// done, so the refusal shows on the first read).
async fn get_as(
    addr: SocketAddr,
    ca: &Ca,
    client: Option<(&str, &str)>,
    path: &str,
) -> Result<(StatusCode, Value), String> {
    let stream = connect_as(addr, ca, client)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = match tokio::time::timeout(BOUND, sender.send_request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out".into()),
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// `POST path` with a form body and `authorization` over mutual TLS as `client`: status and
/// JSON body.
async fn post_form_as(
    addr: SocketAddr,
    ca: &Ca,
    client: Option<(&str, &str)>,
    path: &str,
    authorization: Option<&str>,
    form: &str,
) -> (StatusCode, Value) {
    let stream = connect_as(addr, ca, client).await.expect("tls");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1");
    tokio::spawn(connection);
    let mut request = Request::post(path).header("host", "localhost");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(Bytes::from(form.to_owned())))
        .expect("request");
    let response = tokio::time::timeout(BOUND, sender.send_request(request))
        .await
        .expect("bounded")
        .expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn healthz_as(
    addr: SocketAddr,
    ca: &Ca,
    client: Option<(&str, &str)>,
) -> Result<StatusCode, String> {
    get_as(addr, ca, client, "/healthz")
        .await
        .map(|(status, _)| status)
}

#[tokio::test]
async fn mutual_tls_admits_current_certificates_of_the_configured_cas_only() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("another CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = issue(&server_ca, "server");
    let (cert_file, key_file) = write_pair(dir.path(), &cert, &key);
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).expect("write");
    let crl_file = dir.path().join("clients.crl.pem");
    std::fs::write(&crl_file, client_ca.crl(&[])).expect("write");
    let mut config = base_config(&dir);
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    config.tls.reload_check_secs = 1;
    config.mtls.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.mtls.ca_files = vec![ca_file];
    config.mtls.crl_files = vec![crl_file.clone()];
    let server = Server::start(config).await.expect("start");
    let mutual = server
        .mtls_local_addr()
        .expect("bound")
        .expect("an mTLS listener");
    let addr = server.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let running = Running {
        addr,
        mtls: Some(mutual),
        stop: Some(stop),
        task,
        _dir: dir,
    };

    let billing = client_ca.client("billing", Some("spiffe://example.org/ns/prod/sa/billing"));
    let reports = client_ca.client("reports", None);
    let (billing_cert, billing_key) = pem_pair(&billing);
    let as_billing = Some((billing_cert.as_str(), billing_key.as_str()));
    assert_eq!(
        healthz_as(mutual, &server_ca, as_billing).await,
        Ok(StatusCode::OK)
    );
    // Kept open across the CRL change below.
    let open = connect_as(mutual, &server_ca, as_billing)
        .await
        .expect("tls");
    let mut open = http1_over(open).await;
    assert_eq!(get_h1(&mut open, "/healthz").await.0, StatusCode::OK);

    // No certificate, an expired one, one of another CA: the handshake is refused.
    let expired = pem_pair(&client_ca.expired_client("old"));
    let stranger = pem_pair(&stranger_ca.client("stranger", None));
    let own = pem_pair(&trustgate_testkit::tls::self_signed_client("billing"));
    for (what, client) in [
        ("no certificate", None),
        ("expired", Some((expired.0.as_str(), expired.1.as_str()))),
        (
            "another CA",
            Some((stranger.0.as_str(), stranger.1.as_str())),
        ),
        (
            "self-signed, by default",
            Some((own.0.as_str(), own.1.as_str())),
        ),
    ] {
        let answer = healthz_as(mutual, &server_ca, client).await;
        assert!(answer.is_err(), "{what}: {answer:?}");
    }
    // The main listener does not ask for one.
    let plain = connect(running.addr, &server_ca, &[b"http/1.1"])
        .await
        .expect("tls");
    assert_eq!(
        get_h1(&mut http1_over(plain).await, "/healthz").await.0,
        StatusCode::OK
    );

    // Revoked by a CRL published again in place: refused once the file is read again; the
    // open connection and the certificates not revoked carry on.
    let (reports_cert, reports_key) = pem_pair(&reports);
    let as_reports = Some((reports_cert.as_str(), reports_key.as_str()));
    assert_eq!(
        healthz_as(mutual, &server_ca, as_reports).await,
        Ok(StatusCode::OK)
    );
    let tmp = crl_file.with_extension("tmp");
    std::fs::write(&tmp, client_ca.crl(&[reports.serial])).expect("write");
    std::fs::rename(&tmp, &crl_file).expect("rename");
    let deadline = Instant::now() + BOUND;
    while healthz_as(mutual, &server_ca, as_reports).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the revocation was never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        healthz_as(mutual, &server_ca, as_billing).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        get_h1(&mut open, "/healthz").await.0,
        StatusCode::OK,
        "not dropped"
    );

    // Who a certificate is: the service account its SPIFFE ID (else its subject DN) is bound
    // to; unbound, authenticated with no permissions.
    let admin = https_client(&server_ca);
    let api = |path: &str| format!("https://localhost:{}{path}", running.addr.port());
    let created: Value = admin
        .post(api("/admin/v1/service-accounts"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "billing" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let billing_id = created["id"].as_str().expect("id").to_owned();
    let whoami = |client| get_as(mutual, &server_ca, client, "/admin/v1/whoami");
    let (status, me) = whoami(as_billing).await.expect("whoami");
    assert_eq!(status, StatusCode::OK);
    assert!(
        me["subject"]
            .as_str()
            .expect("subject")
            .starts_with("service:x509-"),
        "{me}"
    );
    assert_eq!(me["name"], "O=trustgate tests,CN=billing");
    assert_eq!(me["key_id"], Value::Null);
    let (status, _) = get_as(mutual, &server_ca, as_billing, "/admin/v1/service-accounts")
        .await
        .expect("answer");
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an unbound certificate may do nothing"
    );
    let bind = |body: Value| {
        let admin = admin.clone();
        let url = api(&format!(
            "/admin/v1/service-accounts/{billing_id}/certificates"
        ));
        async move {
            admin
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("bind")
                .status()
        }
    };
    let spiffe = "spiffe://example.org/ns/prod/sa/billing";
    assert_eq!(
        bind(serde_json::json!({ "spiffe_id": spiffe })).await,
        StatusCode::CREATED
    );
    assert_eq!(
        bind(serde_json::json!({ "spiffe_id": spiffe })).await,
        StatusCode::OK
    );
    assert_eq!(
        bind(serde_json::json!({ "spiffe_id": "https://example.org/x" })).await,
        StatusCode::BAD_REQUEST
    );
    let (_, me) = whoami(as_billing).await.expect("whoami");
    assert_eq!(me["subject"], format!("service:{billing_id}"));
    // A malformed credential next to the certificate is refused, never the certificate's.
    let stream = connect_as(mutual, &server_ca, as_billing)
        .await
        .expect("tls");
    let mut h1 = http1_over(stream).await;
    let request = Request::get("/admin/v1/whoami")
        .header("host", "localhost")
        .header("authorization", "Basic eDp5")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let answer = h1.send_request(request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        me["certificate"].as_str().map(str::len),
        Some(43),
        "x5t#S256"
    );
    // Its roles decide: admin granted, the admin API opens to the certificate.
    let granted = admin
        .post(api("/admin/v1/roles"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "subject": format!("service:{billing_id}"), "role": "admin" }))
        .send()
        .await
        .expect("grant");
    assert!(granted.status().is_success(), "{}", granted.status());
    let (status, _) = get_as(mutual, &server_ca, as_billing, "/admin/v1/service-accounts")
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    // The certificate identifies only on the mutual-TLS listener: elsewhere a key is needed.
    let plain = admin
        .get(api("/admin/v1/whoami"))
        .send()
        .await
        .expect("answer");
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    // Disabled: the certificate authenticates nothing.
    let disabled = admin
        .post(api(&format!(
            "/admin/v1/service-accounts/{billing_id}/disable"
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("disable");
    assert!(disabled.status().is_success());
    let (status, _) = whoami(as_billing).await.expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // RFC 8705 §3: a token requested over mutual TLS is bound to the client certificate.
    let discovery = get_json(&admin, &api("/.well-known/openid-configuration")).await;
    assert_eq!(
        discovery["tls_client_certificate_bound_access_tokens"],
        true
    );
    assert_eq!(
        discovery["mtls_endpoint_aliases"]["token_endpoint"],
        format!("https://127.0.0.1:{}/oauth2/token", mutual.port())
    );
    let registered: Value = admin
        .post(api("/admin/v1/clients"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "name": "billing worker",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": ["invoices:read"],
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            registered["client_id"].as_str().expect("id"),
            registered["client_secret"].as_str().expect("secret")
        ))
    };
    let (status, issued) = post_form_as(
        mutual,
        &server_ca,
        as_billing,
        "/oauth2/token",
        Some(&format!("Basic {basic}")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let claims = access_token_claims(&issued);
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        trustgate_authn::certificates::thumbprint(&billing.der)
    );

    // tls_client_auth (RFC 8705 §2.1): the certificate is the client's credential.
    let worker: Value = admin
        .post(api("/admin/v1/clients"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "name": "certificate worker",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": ["invoices:read"],
            "auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "O=trustgate tests,CN=billing",
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    assert!(
        worker.get("client_secret").is_none_or(Value::is_null),
        "{worker}"
    );
    let form = format!(
        "grant_type=client_credentials&client_id={}",
        worker["client_id"].as_str().expect("id")
    );
    let (status, issued) =
        post_form_as(mutual, &server_ca, as_billing, "/oauth2/token", None, &form).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let (other_cert, other_key) = pem_pair(&client_ca.client("other", None));
    let as_other = Some((other_cert.as_str(), other_key.as_str()));
    let (status, refused) =
        post_form_as(mutual, &server_ca, as_other, "/oauth2/token", None, &form).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another certificate: {refused}"
    );
    assert_eq!(refused["error"], "invalid_client");
    let off_mtls = admin
        .post(api("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(
        off_mtls.status(),
        StatusCode::UNAUTHORIZED,
        "no certificate"
    );

    // A CRL that no longer loads: logged, the current one stays (the revoked stays revoked).
    std::fs::write(&crl_file, "not a CRL").expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(healthz_as(mutual, &server_ca, as_reports).await.is_err());
    assert_eq!(
        healthz_as(mutual, &server_ca, as_billing).await,
        Ok(StatusCode::OK)
    );
    drop(running);
}

/// An HTTPS client trusting `ca` only (the admin API and discovery on the main listener).
fn https_client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("ca"))
        .build()
        .expect("client")
}

/// `GET url` as JSON.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json")
}

/// The claims of the `access_token` in a token response (not verified: the server just
/// issued it).
fn access_token_claims(response: &Value) -> Value {
    use base64::Engine as _;
    let payload = response["access_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("json")
}

/// `(certificate PEM, key PEM)` of a test client certificate.
fn pem_pair(c: &trustgate_testkit::tls::ClientCertificate) -> (String, String) {
    (c.cert_pem.clone(), c.key_pem.clone())
}

#[tokio::test]
async fn self_signed_certificates_authenticate_only_the_client_that_registered_them() {
    use trustgate_testkit::tls::{expired_self_signed_client, self_signed_client};
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = tempfile::tempdir().expect("tempdir");
    let ca_file = files.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).expect("write");
    let (running, _) = start_tls(&server_ca, |config| {
        config.mtls.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        config.mtls.ca_files = vec![ca_file.clone()];
        config.mtls.accept_self_signed = true;
    })
    .await;
    let mutual = running.mtls.expect("an mTLS listener");
    // Same names, three certificates: one the CA issued, two self-signed.
    let issued = client_ca.client("billing", None);
    let own = self_signed_client("billing");
    let forged = self_signed_client("billing");
    let (issued_pem, own_pem, forged_pem) = (pem_pair(&issued), pem_pair(&own), pem_pair(&forged));
    let as_issued = Some((issued_pem.0.as_str(), issued_pem.1.as_str()));
    let as_own = Some((own_pem.0.as_str(), own_pem.1.as_str()));
    let as_forged = Some((forged_pem.0.as_str(), forged_pem.1.as_str()));

    // The handshake takes a self-signed certificate, but not an expired one.
    assert_eq!(
        healthz_as(mutual, &server_ca, as_own).await,
        Ok(StatusCode::OK)
    );
    let expired = pem_pair(&expired_self_signed_client("old"));
    let answer = healthz_as(
        mutual,
        &server_ca,
        Some((expired.0.as_str(), expired.1.as_str())),
    )
    .await;
    assert!(answer.is_err(), "expired: {answer:?}");

    // A self-signed certificate names nobody at the machine APIs; the CA's does.
    let (status, _) = get_as(mutual, &server_ca, as_own, "/admin/v1/whoami")
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, me) = get_as(mutual, &server_ca, as_issued, "/admin/v1/whoami")
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK, "{me}");

    let admin = https_client(&server_ca);
    let api = |path: &str| format!("https://localhost:{}{path}", running.addr.port());
    let discovery = get_json(&admin, &api("/.well-known/openid-configuration")).await;
    let methods = discovery["token_endpoint_auth_methods_supported"].to_string();
    assert!(
        methods.contains("\"self_signed_tls_client_auth\""),
        "{methods}"
    );
    let register = |body: Value| {
        let admin = admin.clone();
        let url = api("/admin/v1/clients");
        async move {
            let answer: Value = admin
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("register")
                .json()
                .await
                .expect("json");
            let id = answer["client_id"].as_str().expect("registered").to_owned();
            format!("grant_type=client_credentials&client_id={id}")
        }
    };
    let server_ca = &server_ca;
    let token = |client, form: String| async move {
        post_form_as(mutual, server_ca, client, "/oauth2/token", None, &form).await
    };

    // tls_client_auth by subject DN: a self-signed certificate with that DN is not the client.
    let by_dn = register(serde_json::json!({
        "name": "by DN",
        "grant_types": ["client_credentials"],
        "scopes": ["invoices:read"],
        "auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "O=trustgate tests,CN=billing",
    }))
    .await;
    assert_eq!(token(as_issued, by_dn.clone()).await.0, StatusCode::OK);
    let (status, refused) = token(as_own, by_dn).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(refused["error"], "invalid_client");

    // self_signed_tls_client_auth: the registered certificate, and only it.
    let self_signed = register(serde_json::json!({
        "name": "self-signed",
        "grant_types": ["client_credentials"],
        "scopes": ["invoices:read"],
        "auth_method": "self_signed_tls_client_auth",
        "jwks": { "keys": [own.jwk] },
    }))
    .await;
    let (status, issued_token) = token(as_own, self_signed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{issued_token}");
    let claims = access_token_claims(&issued_token);
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        trustgate_authn::certificates::thumbprint(&own.der),
        "bound to the certificate"
    );
    for (what, client) in [("same names", as_forged), ("the CA's", as_issued)] {
        let (status, refused) = token(client, self_signed.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {refused}");
        assert_eq!(refused["error"], "invalid_client");
    }
    drop(running);
}

#[tokio::test]
async fn mutual_tls_needs_tls_and_a_ca_and_files_that_load() {
    let server_ca = Ca::new("server CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(&dir);
    config.mtls.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.mtls.ca_files = vec![dir.path().join("ca.pem")];
    let err = Server::start(config).await.expect_err("no TLS");
    assert!(err.to_string().contains("mtls.listen"), "{err}");

    let (cert, key, _) = issue(&server_ca, "server");
    let (cert_file, key_file) = write_pair(dir.path(), &cert, &key);
    let mut config = base_config(&dir);
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    config.mtls.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let err = Server::start(config.clone()).await.expect_err("no CA");
    assert!(err.to_string().contains("mtls.ca_files"), "{err}");
    config.mtls.ca_files = vec![dir.path().join("missing.pem")];
    let err = Server::start(config.clone())
        .await
        .expect_err("missing CA file");
    assert!(err.to_string().contains("cannot read"), "{err}");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &server_ca.pem).expect("write");
    let crl_file = dir.path().join("crl.pem");
    std::fs::write(
        &crl_file,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .expect("write");
    config.mtls.ca_files = vec![ca_file];
    config.mtls.crl_files = vec![crl_file];
    let err = Server::start(config)
        .await
        .expect_err("a CRL that does not parse");
    let text = err.to_string();
    assert!(
        text.contains("revocation list") || text.contains("CRL"),
        "{text}"
    );
}
