//! A webhook endpoint for the tests: answers each request with the next status of a script, keeps
//! what it received (headers and exact body), and can have its deliveries checked by the Python
//! `standardwebhooks` library (tests/verify_webhooks.py).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

use crate::harness::repo_root;

/// One request the endpoint got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the endpoint answered.
    pub status: u16,
}

pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on 127.0.0.1; request i is answered `script[i]`, or `then` once the script ran out.
    pub async fn start(script: Vec<u16>, then: u16) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&received);
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            let script = script.clone();
            async move {
                let mut log = log.lock().unwrap();
                let status = script.get(log.len()).copied().unwrap_or(then);
                log.push(Received {
                    headers: headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status,
                });
                (
                    StatusCode::from_u16(status).unwrap(),
                    "answered by the test receiver",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/imgpipe", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to `timeout`) until at least `n` requests arrived, then `settle` more for extras.
    pub async fn wait_for(&self, n: usize, timeout: Duration, settle: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        while self.received().len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} webhook requests within {timeout:?}: {:?}",
                self.received().len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(settle).await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Verifies each (headers, body) with the `standardwebhooks` package from PyPI; `Err` carries the
/// library's reason.
pub fn verify_with_python(
    secret: &str,
    deliveries: &[(HashMap<String, String>, String)],
) -> Vec<Result<(), String>> {
    use std::io::Write;
    let input: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|(headers, body)| serde_json::json!({"headers": headers, "body": body}))
        .collect();
    let python = std::env::var("IMGPIPE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    let mut child = std::process::Command::new(&python)
        .arg(repo_root().join("tests/verify_webhooks.py"))
        .arg(secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "verify_webhooks.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["ok"] == true {
                Ok(())
            } else {
                Err(v["error"].as_str().unwrap_or("").to_string())
            }
        })
        .collect()
}
