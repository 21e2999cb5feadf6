//! URL imports: a manifest item that is a URL is fetched here and written into the ingest bucket
//! (`<IMGPIPE_IMPORT_PREFIX><manifest key>/<n>-<name>`), where its S3 event processes it like any
//! upload.
//!
//! Per hop (the first request and each of at most [`MAX_REDIRECTS`] redirects): check the URL
//! ([`url_policy::check_url`]) ⇒ resolve the host once ⇒ refuse the name if any address is not
//! global ([`url_policy::pick_address`]) ⇒ connect to that checked address only (the HTTP client
//! gets it as the host's sole address, with no proxy) ⇒ a redirect starts the next hop. The body
//! streams under the source byte limit and one deadline for the whole import, then the bytes must
//! sniff as an image. Resolution goes through [`Network`], so tests can say what a name resolves
//! to; there is no way to skip the checks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use imgpipe_core::format::SourceFormat;

use crate::url_policy::{self, AllowList, Refusal};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;

/// What may be imported, and how long it may take.
#[derive(Debug, Clone)]
pub struct ImportPolicy {
    /// `IMGPIPE_IMPORT_ALLOW_HOSTS` (default: empty, imports off).
    pub allow: AllowList,
    /// `IMGPIPE_IMPORT_ALLOW_HTTP` (default false): plain http too.
    pub allow_http: bool,
    /// Largest body, the source limit (`IMGPIPE_MAX_SOURCE_BYTES`).
    pub max_bytes: u64,
    /// `IMGPIPE_IMPORT_TIMEOUT_SECONDS` (default 30): the whole import, redirects included.
    pub timeout: Duration,
}

/// Name resolution and the socket a checked address is reached at.
pub trait Network: Send + Sync {
    /// The addresses of `host` (DNS in production).
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;

    /// Where to connect for the checked address `checked` (production: `checked` itself). Tests
    /// route a checked public address to their local server, as a NAT would; the address is
    /// checked before this is asked. The port is always the URL's.
    fn socket_for(&self, checked: SocketAddr) -> SocketAddr {
        checked
    }
}

/// The system resolver.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNetwork;

impl Network for SystemNetwork {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, port))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The HTTP client's only resolver: every name it looks up (however the URL spells it: a
/// trailing dot, another case) is the one checked address. `ClientBuilder::resolve` would not do:
/// its override matches the name exactly, and any other spelling falls through to the system
/// resolver.
struct PinnedResolver(SocketAddr);

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let socket = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(socket)) as reqwest::dns::Addrs) })
    }
}

/// A fetched image.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// What the magic bytes say.
    pub format: SourceFormat,
    /// The URL the body came from (after redirects).
    pub final_url: String,
    /// The address connected to for it.
    pub address: IpAddr,
}

/// Fetches `url` under `policy`; every refusal says its class and why.
pub async fn fetch(
    url: &str,
    policy: &ImportPolicy,
    network: &Arc<dyn Network>,
) -> Result<Fetched, Refusal> {
    match tokio::time::timeout(policy.timeout, fetch_hops(url, policy, network)).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::new(
            "timeout",
            format!(
                "{url} did not arrive within {} s",
                policy.timeout.as_secs_f32()
            ),
        )),
    }
}

async fn fetch_hops(
    url: &str,
    policy: &ImportPolicy,
    network: &Arc<dyn Network>,
) -> Result<Fetched, Refusal> {
    let mut current: reqwest::Url = url
        .parse()
        .map_err(|e| Refusal::new("bad_url", format!("'{url}' is not a URL: {e}")))?;
    for hop in 0..=MAX_REDIRECTS {
        let (host, port) = url_policy::check_url(&current, &policy.allow, policy.allow_http)?;
        let addresses = match host.parse::<IpAddr>() {
            Ok(literal) => vec![literal],
            Err(_) => network
                .resolve(&host, port)
                .await
                .map_err(|e| Refusal::new("network", format!("resolving {host}: {e}")))?,
        };
        let address = url_policy::pick_address(&host, &addresses)?;
        let socket = network.socket_for(SocketAddr::new(address, port));
        let client = reqwest::Client::builder()
            .dns_resolver(PinnedResolver(socket))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.timeout)
            .user_agent(concat!("imgpipe-importer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Refusal::new("network", format!("HTTP client: {e}")))?;
        let response = client
            .get(current.clone())
            .header(reqwest::header::ACCEPT, "image/*")
            .send()
            .await
            .map_err(|e| {
                Refusal::new(
                    "network",
                    format!("GET {current} ({address}): {}", chain(&e)),
                )
            })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    Refusal::new(
                        "http_status",
                        format!("{current} answered {status} without a Location"),
                    )
                })?;
            let next = current
                .join(location)
                .map_err(|e| Refusal::new("bad_url", format!("redirect to '{location}': {e}")))?;
            if hop == MAX_REDIRECTS {
                return Err(Refusal::new(
                    "too_many_redirects",
                    format!("{url} redirected more than {MAX_REDIRECTS} times (last to {next})"),
                ));
            }
            current = next;
            continue;
        }
        if !status.is_success() {
            let class = if status.is_server_error() || status.as_u16() == 429 {
                "server_error"
            } else {
                "http_status"
            };
            return Err(Refusal::new(
                class,
                format!("GET {current} answered {status}"),
            ));
        }
        let bytes = read_body(response, &current, policy.max_bytes).await?;
        let format = imgpipe_core::format::sniff(&bytes).map_err(|e| {
            Refusal::new(
                "not_an_image",
                format!("{current}: the body is not an image imgpipe reads ({e})"),
            )
        })?;
        return Ok(Fetched {
            bytes,
            format,
            final_url: current.to_string(),
            address,
        });
    }
    unreachable!("the last hop returns")
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn read_body(
    mut response: reqwest::Response,
    url: &reqwest::Url,
    max: u64,
) -> Result<Vec<u8>, Refusal> {
    let over = |n: u64| {
        Refusal::new(
            "oversize",
            format!("{url} is {n} bytes or more, over the {max}-byte source limit"),
        )
    };
    if let Some(length) = response.content_length()
        && length > max
    {
        return Err(over(length));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Refusal::new("network", format!("reading {url}: {e}")))?
    {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(over(body.len() as u64 + chunk.len() as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One URL of a manifest, as its own job on the GPU queue (the long-running worker, so a slow host
/// holds no Lambda): fetched, written into the manifest's bucket, its outcome recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportJob {
    /// The URL as the manifest lists it.
    pub url: String,
    /// The manifest's bucket (imports are written there).
    pub bucket: String,
    /// The manifest's key.
    pub manifest_key: String,
    /// The manifest's ETag: an outcome written for another version of the manifest is not this
    /// job's.
    pub manifest_etag: Option<String>,
    /// The URL's position among the manifest's URLs.
    pub index: usize,
    /// Where the file goes in `bucket` (the fan-out's `IMGPIPE_IMPORT_PREFIX`, so the worker that
    /// fetches cannot put it outside the notification prefix by its own configuration).
    pub prefix: String,
}

impl ImportJob {
    /// The SQS body: `{"imgpipeImport": {...}}`.
    pub fn to_body(&self) -> String {
        serde_json::json!({ "imgpipeImport": self }).to_string()
    }
}

/// Where the outcome of the `index`-th URL of `manifest_key` is written in the output bucket:
/// `<prefix><manifest key>/imports/<index>.json`.
pub fn outcome_key(
    layout: &imgpipe_core::OutputLayout,
    manifest_key: &str,
    index: usize,
) -> String {
    format!("{}{manifest_key}/imports/{index:05}.json", layout.prefix)
}

/// The ingest key of the `index`-th URL of `manifest_key`: `<prefix><manifest key>/<index>-<last
/// path segment>`, the extension set from the sniffed format.
pub fn import_key(
    prefix: &str,
    manifest_key: &str,
    index: usize,
    url: &str,
    format: SourceFormat,
) -> String {
    let segment = url
        .parse::<reqwest::Url>()
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
        })
        .map(|s| {
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let stem: String = segment
        .rsplit_once('.')
        .map_or(segment.as_str(), |(stem, _)| stem)
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let stem = if stem.is_empty() {
        "image".to_string()
    } else {
        stem
    };
    let extension = match format {
        SourceFormat::Jpeg => "jpg",
        other => other.as_str(),
    };
    format!("{prefix}{manifest_key}/{index:05}-{stem}.{extension}")
}

#[cfg(test)]
mod tests {
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
                self.names.get(host).cloned().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such name")
                })
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
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
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
}
