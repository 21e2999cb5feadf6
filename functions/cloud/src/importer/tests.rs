//! Unit tests of [`super`].

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A public address the tests' names resolve to; [`TestNetwork`] routes it to the local server.
const PUBLIC: &str = "93.184.215.14";

struct TestNetwork {
    names: HashMap<String, Vec<IpAddr>>,
    server: SocketAddr,
}

impl Network for TestNetwork {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            self.names
                .get(host)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
        })
    }

    fn socket_for(&self, checked: SocketAddr) -> SocketAddr {
        assert_eq!(
            checked.ip(),
            PUBLIC.parse::<IpAddr>().unwrap(),
            "only checked public addresses are dialled"
        );
        self.server
    }
}

/// A canned answer: the head, the body, and the delay between body bytes (a slow server).
type Answer = (String, Vec<u8>, Option<Duration>);

/// Answers every request with what `respond` gives for its path.
async fn server(respond: fn(&str) -> Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (head, body, drip) = respond(&path);
                let head = head.replace("PORT", &address.port().to_string());
                let _ = socket.write_all(head.as_bytes()).await;
                match drip {
                    None => {
                        let _ = socket.write_all(&body).await;
                    }
                    Some(delay) => {
                        for byte in body {
                            if socket.write_all(&[byte]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            });
        }
    });
    address
}

fn jpeg() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for tests"),
        )
        .join("../../tests/fixtures/images/Landscape_1.jpg"),
    )
    .unwrap()
}

fn ok(body: Vec<u8>) -> Answer {
    (
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ),
        body,
        None,
    )
}

fn redirect(to: &str) -> Answer {
    (
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        Vec::new(),
        None,
    )
}

fn routes(path: &str) -> Answer {
    match path {
        "/a.jpg" => ok(jpeg()),
        "/text" => ok(b"hello, not an image".to_vec()),
        "/big" => (
            "HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n".into(),
            vec![0; 16],
            None,
        ),
        "/big-chunked" => (
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".into(),
            vec![0xff; 2_000_000],
            None,
        ),
        "/slow" => (
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n".into(),
            vec![0; 100],
            Some(Duration::from_millis(100)),
        ),
        "/to-private" => redirect("http://internal.test:PORT/secret"),
        "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-elsewhere" => redirect("https://not-listed.test/a.jpg"),
        "/to-good" => redirect("/a.jpg"),
        "/loop" => redirect("/loop"),
        "/busy" => (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .into(),
            Vec::new(),
            None,
        ),
        "/missing" => (
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
            Vec::new(),
            None,
        ),
        _ => ok(Vec::new()),
    }
}

/// The policy, the network, and `url` with `PORT` replaced by the local server's port.
async fn setup() -> (ImportPolicy, Arc<dyn Network>, u16) {
    let server = server(routes).await;
    let public: IpAddr = PUBLIC.parse().unwrap();
    let names = HashMap::from([
        ("images.test".to_string(), vec![public]),
        (
            "internal.test".to_string(),
            vec!["10.0.0.5".parse().unwrap()],
        ),
        (
            "mixed.test".to_string(),
            vec![public, "192.168.1.10".parse().unwrap()],
        ),
        (
            "mapped.test".to_string(),
            vec!["::ffff:127.0.0.1".parse().unwrap()],
        ),
        (
            "ula.test".to_string(),
            vec!["fd00:ec2::254".parse().unwrap()],
        ),
    ]);
    let port = server.port();
    let policy = ImportPolicy {
        allow: AllowList::parse(&format!("images.test:{port}, internal.test:{port}, mixed.test:{port}, mapped.test:{port}, ula.test:{port}, 169.254.169.254:80")).unwrap(),
        allow_http: true,
        max_bytes: 1_000_000,
        timeout: Duration::from_secs(2),
    };
    (policy, Arc::new(TestNetwork { names, server }), port)
}

async fn refusal(url: &str) -> Refusal {
    let (policy, network, port) = setup().await;
    let url = url.replace("PORT", &port.to_string());
    fetch(&url, &policy, &network)
        .await
        .map(|f| f.final_url)
        .unwrap_err()
}

#[tokio::test]
async fn an_allowed_image_is_fetched_from_the_checked_address() {
    let (policy, network, port) = setup().await;
    let fetched = fetch(
        &format!("http://images.test:{port}/a.jpg"),
        &policy,
        &network,
    )
    .await
    .unwrap();
    assert_eq!(fetched.bytes, jpeg());
    assert_eq!(fetched.format, SourceFormat::Jpeg);
    assert_eq!(fetched.address, PUBLIC.parse::<IpAddr>().unwrap());
    // A trailing dot or another case in the name reaches the same checked address.
    let fetched = fetch(
        &format!("http://IMAGES.test.:{port}/a.jpg"),
        &policy,
        &network,
    )
    .await
    .unwrap();
    assert_eq!(fetched.address, PUBLIC.parse::<IpAddr>().unwrap());
    // A redirect inside the allow-list is followed.
    let fetched = fetch(
        &format!("http://images.test:{port}/to-good"),
        &policy,
        &network,
    )
    .await
    .unwrap();
    assert_eq!(
        fetched.final_url,
        format!("http://images.test:{port}/a.jpg")
    );
}

#[tokio::test]
async fn each_refused_class_says_why() {
    let (mut policy, network, port) = setup().await;
    policy.allow_http = false;
    let r = fetch(
        &format!("http://images.test:{port}/a.jpg"),
        &policy,
        &network,
    )
    .await
    .unwrap_err();
    assert_eq!(r.class, "scheme");
    assert_eq!(refusal("gopher://images.test:PORT/a").await.class, "scheme");
    assert_eq!(
        refusal("http://elsewhere.test:PORT/a.jpg").await.class,
        "host_not_allowed"
    );
    for (url, needle) in [
        ("http://internal.test:PORT/a.jpg", "10.0.0.5"),
        ("http://mixed.test:PORT/a.jpg", "192.168.1.10"),
        ("http://mapped.test:PORT/a.jpg", "IPv4-mapped"),
        ("http://ula.test:PORT/a.jpg", "metadata"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ] {
        let r = refusal(url).await;
        assert_eq!(r.class, "private_address", "{url}: {r}");
        assert!(r.reason.contains(needle), "{url}: {r}");
    }
    let r = refusal("http://images.test:PORT/to-private").await;
    assert_eq!(r.class, "private_address", "{r}");
    assert!(r.reason.contains("internal.test"), "{r}");
    assert_eq!(
        refusal("http://images.test:PORT/to-metadata").await.class,
        "private_address"
    );
    assert_eq!(
        refusal("http://images.test:PORT/to-elsewhere").await.class,
        "host_not_allowed"
    );
    assert_eq!(
        refusal("http://images.test:PORT/loop").await.class,
        "too_many_redirects"
    );
    assert_eq!(
        refusal("http://images.test:PORT/big").await.class,
        "oversize"
    );
    assert_eq!(
        refusal("http://images.test:PORT/big-chunked").await.class,
        "oversize"
    );
    assert_eq!(
        refusal("http://images.test:PORT/slow").await.class,
        "timeout"
    );
    assert_eq!(
        refusal("http://images.test:PORT/text").await.class,
        "not_an_image"
    );
    assert_eq!(
        refusal("http://images.test:PORT/missing").await.class,
        "http_status"
    );
    let busy = refusal("http://images.test:PORT/busy").await;
    assert_eq!(busy.class, "server_error");
    assert!(busy.is_transient(), "a 503 is worth another try");
    assert!(
        !refusal("http://images.test:PORT/missing")
            .await
            .is_transient()
    );
    assert!(refusal("http://images.test:PORT/slow").await.is_transient());
    assert_eq!(refusal("not a url").await.class, "bad_url");
}

#[test]
fn import_keys_are_numbered_and_named_by_the_sniffed_format() {
    assert_eq!(
        import_key(
            "imports/",
            "manifests/m.csv",
            3,
            "https://x.test/photos/red%20flower.png?v=2",
            SourceFormat::Jpeg
        ),
        "imports/manifests/m.csv/00003-red_flower.jpg"
    );
    assert_eq!(
        import_key(
            "imports/",
            "m.json",
            0,
            "https://x.test/",
            SourceFormat::Webp
        ),
        "imports/m.json/00000-image.webp"
    );
}
