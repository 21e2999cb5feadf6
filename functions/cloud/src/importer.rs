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

/// The web through a [`Network`] (the system's in production): [`fetch`].
pub struct NetworkWeb(pub Arc<dyn Network>);

#[async_trait::async_trait]
impl crate::effects::Web for NetworkWeb {
    async fn fetch(&self, url: &str, policy: &ImportPolicy) -> Result<Fetched, Refusal> {
        fetch(url, policy, &self.0).await
    }
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
mod tests;
