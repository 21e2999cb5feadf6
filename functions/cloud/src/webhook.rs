//! Signed webhooks as the [Standard Webhooks](https://www.standardwebhooks.com) spec defines them,
//! and one delivery attempt.
//!
//! A delivery is a `POST` of the event JSON with `Content-Type: application/json` and three headers:
//! `webhook-id` (the event id, the same on every retry: receivers dedupe on it),
//! `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per configured secret, separated by
//! spaces, so a secret can be rotated without a gap). Signing is the `standardwebhooks` crate, the
//! spec authors' own Rust library. Any 2xx answer means delivered; redirects are not followed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook,
};

/// Signs deliveries with one or more secrets (`whsec_` + base64, as Standard Webhooks libraries
/// give them).
pub struct Signer {
    secrets: Vec<Webhook>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} secret(s), redacted)", self.secrets.len())
    }
}

impl Signer {
    /// Secrets separated by spaces or commas: the new one and, while rotating, the old one.
    pub fn new(secrets: &str) -> Result<Self, String> {
        let secrets: Vec<Webhook> = secrets
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, secret)| {
                let key = secret.strip_prefix("whsec_").unwrap_or(secret);
                let webhook = Webhook::new(key).map_err(|e| {
                    format!("secret {} is not whsec_ followed by base64: {e}", i + 1)
                })?;
                // The spec asks for 24 to 64 random bytes; refuse what is surely a typo.
                let bytes = key.len() / 4 * 3;
                if bytes < 24 {
                    return Err(format!(
                        "secret {} has about {bytes} bytes; use at least 24 random bytes (e.g. `openssl rand -base64 32`)",
                        i + 1
                    ));
                }
                Ok(webhook)
            })
            .collect::<Result<_, _>>()?;
        if secrets.is_empty() {
            return Err("no secret given".into());
        }
        Ok(Self { secrets })
    }

    /// The three Standard Webhooks headers for `body` sent as message `id` at `timestamp`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &str) -> [(&'static str, String); 3] {
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|w| {
                w.sign(id, timestamp, body.as_bytes())
                    .expect("a &str is UTF-8")
            })
            .collect();
        [
            (HEADER_WEBHOOK_ID, id.to_string()),
            (HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string()),
            (HEADER_WEBHOOK_SIGNATURE, signatures.join(" ")),
        ]
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered 2xx with this status.
    Delivered(u16),
    /// Anything else: an HTTP status outside 2xx (`HTTP 500`), a timeout, a refused connection.
    Failed {
        /// One line: `HTTP 500 Internal Server Error: <start of the body>`, `timed out`, …
        status: String,
    },
}

/// The HTTP client deliveries use: `timeout` per attempt, no redirects, imgpipe's user agent.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imgpipe-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("TLS backend initialises")
}

/// POSTs `body` (an event with id `id`) to `url`, signed now, through `endpoints`.
pub async fn deliver(
    endpoints: &dyn crate::effects::Endpoints,
    signer: &Signer,
    url: &str,
    id: &str,
    body: &str,
) -> Attempt {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let headers = signer.headers(id, timestamp, body);
    endpoints.post(url, &headers, body).await
}

/// The real endpoints: HTTPS through [`client`].
#[async_trait::async_trait]
impl crate::effects::Endpoints for reqwest::Client {
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &str) -> Attempt {
        let mut request = self
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) => {
                let status = response.status();
                let snippet = snippet(response).await;
                Attempt::Failed {
                    status: format!("HTTP {status}: {}", snippet.trim())
                        .trim_end_matches(": ")
                        .to_string(),
                }
            }
            Err(e) if e.is_timeout() => Attempt::Failed {
                status: "timed out (no answer within IMGPIPE_WEBHOOK_TIMEOUT_SECONDS)".into(),
            },
            Err(e) => Attempt::Failed {
                status: format!("no answer: {}", error_chain(&e)),
            },
        }
    }
}

/// How much of a failing endpoint's body is read: enough for [`SNIPPET_CHARS`] characters of
/// 4-byte UTF-8. The endpoint is not ours: its body may be endless, so it is never read whole.
pub const MAX_SNIPPET_BYTES: usize = 4 * SNIPPET_CHARS;
/// Characters of a failing endpoint's body kept in the attempt's status line.
pub const SNIPPET_CHARS: usize = 200;

/// The start of `response`'s body: at most [`MAX_SNIPPET_BYTES`] read, then the response is
/// dropped (which closes the connection), and [`SNIPPET_CHARS`] characters kept.
async fn snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_SNIPPET_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .take(SNIPPET_CHARS)
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// An endpoint that answers 500 with a body that never ends (a terabyte announced, bytes sent
    /// until the client hangs up): the attempt must end with the status and a short snippet, not
    /// wait for the body until the timeout (reading it whole would time out here).
    #[tokio::test]
    async fn a_failing_endpoints_endless_body_is_not_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // The server writes until the client hangs up, and says how much it managed to write.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 1000000000000\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return 0;
            }
            let block = "é overloaded ".repeat(4096);
            let mut written = 0u64;
            while socket.write_all(block.as_bytes()).await.is_ok() {
                written += block.len() as u64;
            }
            written
        });
        let signer = Signer::new(SECRET).unwrap();
        let attempt = deliver(
            &client(Duration::from_secs(5)),
            &signer,
            &format!("http://{address}/hook"),
            "msg_1",
            "{}",
        )
        .await;
        let Attempt::Failed { status } = attempt else {
            panic!("delivered to an endpoint that answered 500: {attempt:?}");
        };
        assert!(
            status.starts_with("HTTP 500 Internal Server Error: é overloaded é overloaded"),
            "{status}"
        );
        let snippet = status.trim_start_matches("HTTP 500 Internal Server Error: ");
        assert!(snippet.chars().count() <= SNIPPET_CHARS, "{status}");
        // The client hung up after the snippet: the server got no further than the sockets'
        // buffers (a few MiB on loopback), where reading the body whole would take it until the
        // client's timeout (gigabytes).
        let written = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the client never hung up")
            .unwrap();
        assert!(
            written < 64 << 20,
            "the client read {written} bytes of an endless body"
        );
    }

    #[test]
    fn signs_as_the_spec_example_does() {
        // The Standard Webhooks specification's own example (spec/standard-webhooks.md): this id,
        // timestamp, body and secret give this signature.
        let signer = Signer::new(SECRET).unwrap();
        let body = r#"{"test": 2432232314}"#;
        let headers = signer.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            headers[0],
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into())
        );
        assert_eq!(headers[1], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(
            headers[2],
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into()
            )
        );
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let other = "whsec_dGhpcyBpcyBhIHNlY29uZCBzZWNyZXQga2V5IQ==";
        let signer = Signer::new(&format!("{SECRET} {other}")).unwrap();
        let [_, _, (_, signature)] = signer.headers("msg_1", 1, "{}");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn bad_secrets_are_refused_with_a_reason() {
        assert!(Signer::new("").unwrap_err().contains("no secret"));
        assert!(Signer::new("whsec_%%%").unwrap_err().contains("base64"));
        assert!(
            Signer::new("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("at least 24")
        );
        assert!(!format!("{:?}", Signer::new(SECRET).unwrap()).contains("MfKQ"));
    }
}
