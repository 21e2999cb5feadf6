use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imgpipe_cloud::queue::attributes;
use imgpipe_core::metadata::Status;

use crate::harness::{derive_binary, dimensions, fixture, setup};

/// A minimal AWS Lambda Runtime API: serves one invocation event, captures the function's response.
/// Later `next` calls are held open, as Lambda does while no event is waiting.
fn runtime_api_stub(
    event: String,
    deadline_in: Duration,
) -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (results, received) = mpsc::channel();
    std::thread::spawn(move || {
        let served = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for stream in listener.incoming().flatten() {
            let (event, results, served) = (event.clone(), results.clone(), served.clone());
            std::thread::spawn(move || serve(stream, &event, deadline_in, &results, &served));
        }
    });
    (address, received)
}

fn serve(
    stream: TcpStream,
    event: &str,
    deadline_in: Duration,
    results: &mpsc::Sender<(String, String)>,
    served: &std::sync::atomic::AtomicBool,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        if path.ends_with("/invocation/next") {
            if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(600));
                return;
            }
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + deadline_in.as_millis();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nLambda-Runtime-Aws-Request-Id: req-1\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:derive\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1\r\n\r\n",
                event.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(event.as_bytes()).unwrap();
        } else {
            let reply = r#"{"status":"OK"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            );
            let _ = results.send((path, String::from_utf8_lossy(&body).into_owned()));
        }
    }
}

/// What Lambda sets for function `name`, with its Runtime API at `address`.
fn lambda_env(name: &str, address: &str) -> [(&'static str, String); 6] {
    [
        ("AWS_LAMBDA_RUNTIME_API", address.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769".to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".to_string()),
    ]
}

fn sqs_record(id: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": id, "receiptHandle": format!("handle-{id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1763800000000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:jobs", "awsRegion": "us-east-1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_mode_reports_only_retryable_messages_as_batch_item_failures() {
    let stack = setup("lambda-mode").await;
    let etag = stack
        .put("uploads/lambda.jpg", fixture("Portrait_1.jpg"))
        .await;
    let event = serde_json::json!({"Records": [
        sqs_record("good", &crate::harness::event_body(&stack.ingest, "uploads/lambda.jpg", &etag, 129059)),
        sqs_record("garbage", "this is not an S3 event"),
        sqs_record("unreachable", &crate::harness::event_body("imgpipe-no-such-ingest-bucket", "x.jpg", "e", 1)),
    ]});
    let (address, responses) = runtime_api_stub(event.to_string(), Duration::from_secs(300));
    let mut child = Command::new(derive_binary())
        .envs(crate::harness::aws_env())
        .envs(stack.worker_env(&[
            ("IMGPIPE_METRICS", "emf"),
            ("IMGPIPE_STACK_NAME", "it-lambda"),
            // A source bucket of this stack that cannot be read: transient (s3_get).
            ("IMGPIPE_BACKFILL_BUCKETS", "imgpipe-no-such-ingest-bucket"),
        ]))
        .envs(lambda_env("derive", &address))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (path, body) = responses
        .recv_timeout(Duration::from_secs(60))
        .expect("no response from the function within 60 s");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();

    // One EMF line per outcome on stdout, as CloudWatch Logs reads them under Lambda.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    let with = |metric: &str| {
        lines
            .iter()
            .find(|l| l.get(metric).is_some())
            .unwrap_or_else(|| panic!("no {metric} line in {lines:?}"))
    };
    let processed = with("Processed");
    assert_eq!(processed["Stack"], "it-lambda");
    assert!(processed["BytesOut"].as_f64().unwrap() > 0.0, "{processed}");
    // The replayed event says 2026-11-22: days old.
    assert!(
        processed["EventAge"].as_f64().unwrap() > 86_400.0,
        "{processed}"
    );
    assert_eq!(with("Failed")["FailureKind"], "bad_message");
    assert_eq!(with("Retried")["FailureKind"], "s3_get");
    assert_eq!(lines.len(), 3, "{lines:?}");

    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "the function reported an error: {body}"
    );
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "unreachable"}]})
    );
    let metadata = stack.wait_for_metadata("uploads/lambda.jpg").await;
    assert_eq!(metadata.status, Status::Done);
    let letters = stack.dlq_messages(1).await;
    assert_eq!(letters.len(), 1);
    let attrs = letters[0].message_attributes().unwrap();
    assert_eq!(
        attrs[attributes::ERROR_KIND].string_value(),
        Some("bad_message")
    );
    assert_eq!(
        attrs[attributes::ORIGINAL_MESSAGE_ID].string_value(),
        Some("garbage")
    );
}

/// Under Lambda, an image whose turn comes with less time left than it is predicted to need is not
/// started: it comes back as a batch item failure before the deadline, while the small ones before
/// and after it are done (rather than the runtime killing the invocation and SQS redelivering all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_mode_returns_images_it_has_no_time_for_before_the_deadline() {
    let stack = setup("lambda-deadline").await;
    let mut records = Vec::new();
    for (id, fixture_name) in [
        ("small-1", "Portrait_1.jpg"),
        ("large", "large_olympus-e-p3_12mp.jpg"),
        ("small-2", "Landscape_1.jpg"),
    ] {
        let key = format!("uploads/{id}.jpg");
        let bytes = fixture(fixture_name);
        let size = bytes.len();
        let etag = stack.put(&key, bytes).await;
        let body = crate::harness::event_body(&stack.ingest, &key, &etag, size);
        records.push(sqs_record(id, &body));
    }
    let event = serde_json::json!({ "Records": records });
    // 12 MP (2.9 MB) is predicted at 1 s + 2.8 MiB × 1.5 s × 1.5 ≈ 7.2 s; a 130 KB photo at ≈ 1.3 s.
    let deadline_in = Duration::from_secs(6);
    let invoked = Instant::now();
    let (address, responses) = runtime_api_stub(event.to_string(), deadline_in);
    let mut child = Command::new(derive_binary())
        .envs(crate::harness::aws_env())
        .envs(stack.worker_env(&[("IMGPIPE_CONCURRENCY", "1")]))
        .envs(lambda_env("derive", &address))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (path, body) = responses
        .recv_timeout(Duration::from_secs(60))
        .expect("no response from the function within 60 s");
    let answered = invoked.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "the function reported an error: {body}"
    );
    assert!(
        answered < deadline_in,
        "answered {answered:?} after the invocation, past its {deadline_in:?} deadline"
    );
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "large"}]})
    );
    for key in ["uploads/small-1.jpg", "uploads/small-2.jpg"] {
        assert_eq!(
            stack.wait_for_metadata(key).await.status,
            Status::Done,
            "{key}"
        );
    }
    assert!(
        stack
            .get(&stack.derivatives, &stack.metadata_key("uploads/large.jpg"))
            .await
            .is_none(),
        "the large image was started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_binary_finishes_in_flight_images_on_sigterm() {
    let stack = setup("sigterm").await;
    let mut child = Command::new(derive_binary())
        .envs(crate::harness::aws_env())
        .envs(stack.worker_env(&[]))
        .args(["--wait-seconds", "1", "--concurrency", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The bucket's notification configurations (created, removed, expired) each sent an
    // s3:TestEvent: let the worker take those first, so the message it holds below is the upload's.
    stack.wait_until_drained().await;
    stack
        .put("uploads/big.jpg", fixture("large_olympus-e-p3_12mp.jpg"))
        .await;
    // Wait until the worker holds the upload's message, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_flight = stack
            .sqs
            .get_queue_attributes()
            .queue_url(&stack.queue_url)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        let count: u64 = in_flight
            .attributes()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let done = stack
            .get(&stack.derivatives, &stack.metadata_key("uploads/big.jpg"))
            .await
            .is_some();
        if count > 0 && !done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never picked the upload up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit_deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < exit_deadline,
            "worker did not exit within 60 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "worker exited with {status}");
    // The in-flight image was finished and its message deleted, not abandoned.
    let metadata = stack.wait_for_metadata("uploads/big.jpg").await;
    assert_eq!(metadata.status, Status::Done);
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        0,
        "message left on the queue"
    );
}

/// An API Gateway HTTP API (payload 2.0) event for `POST /v1/uploads`, as Lambda delivers it.
fn api_gateway_upload_event(body: &str) -> String {
    serde_json::json!({
        "version": "2.0", "routeKey": "ANY /v1/{proxy+}", "rawPath": "/v1/uploads", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com",
                    "x-forwarded-proto": "https", "content-length": body.len().to_string()},
        "requestContext": {"accountId": "000000000000", "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/v1/uploads", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "req-1", "routeKey": "ANY /v1/{proxy+}", "stage": "$default",
            "time": "30/Nov/2026:16:00:00 +0000", "timeEpoch": 1796054400000u64},
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_api_gateway_http_api_events_under_lambda() {
    let stack = setup("api-lambda-mode").await;
    let event = api_gateway_upload_event(
        r#"{"filename": "from lambda.jpg", "content_type": "image/webp", "bytes": 4096}"#,
    );
    let (address, responses) = runtime_api_stub(event, Duration::from_secs(300));
    let mut child = Command::new(crate::harness::api_binary())
        .envs(crate::harness::aws_env())
        .envs([
            ("IMGPIPE_INGEST_BUCKET", stack.ingest.as_str()),
            ("IMGPIPE_OUTPUT_BUCKET", stack.derivatives.as_str()),
        ])
        .envs(lambda_env("api", &address))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (path, body) = responses
        .recv_timeout(Duration::from_secs(60))
        .expect("no response from the api function within 60 s");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-1/response");
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["statusCode"], 201, "{response}");
    let upload: serde_json::Value =
        serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let id = upload["id"].as_str().unwrap();
    assert_eq!(upload["key"], format!("uploads/{id}/from lambda.jpg"));
    assert_eq!(upload["upload"]["fields"]["Content-Type"], "image/webp");
    // Behind API Gateway the status URL is the public https one.
    assert_eq!(
        upload["status_url"],
        format!("https://abc123.execute-api.us-east-1.amazonaws.com/v1/images/{id}")
    );
}

/// A worker holds its messages for its own short visibility (`--visibility-seconds`), renewed by its
/// heartbeat, not for the queue's (6× the Lambda timeout): killed mid-image, its message is back on
/// the queue within seconds for another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_message_is_back_long_before_the_queues_visibility_timeout() {
    let stack = setup("kill-recovery").await;
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let queue_visibility = stack.count(&stack.queue_url, &[A::VisibilityTimeout]).await;
    assert!(
        queue_visibility >= 180,
        "the template's queue: {queue_visibility} s"
    );
    let mut child = Command::new(derive_binary())
        .envs(crate::harness::aws_env())
        .envs(stack.worker_env(&[]))
        .args([
            "--wait-seconds",
            "1",
            "--concurrency",
            "1",
            "--visibility-seconds",
            "4",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    stack.wait_until_drained().await;
    stack
        .put("uploads/held.jpg", fixture("large_olympus-e-p3_12mp.jpg"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_flight = stack
            .count(
                &stack.queue_url,
                &[A::ApproximateNumberOfMessagesNotVisible],
            )
            .await;
        if in_flight > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never took the upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Back within a long poll or two (well under the queue's timeout), received a second time.
    let back = Instant::now() + Duration::from_secs(40);
    let message = loop {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .wait_time_seconds(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .unwrap();
        if let Some(message) = out.messages.unwrap_or_default().into_iter().next() {
            break message;
        }
        assert!(
            Instant::now() < back,
            "the killed worker's message is still hidden (queue visibility {queue_visibility} s)"
        );
    };
    assert!(message.body().unwrap().contains("uploads/held.jpg"));
    let receives = &message.attributes().unwrap()
        [&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount];
    assert_eq!(receives, "2");
}

/// A Lambda function URL event (payload 2.0) for `GET raw_path`, as CloudFront's origin failover
/// sends it through OAC.
fn function_url_event(raw_path: &str) -> String {
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "",
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "accept": "image/webp",
                    "x-forwarded-proto": "https", "via": "2.0 abc.cloudfront.net (CloudFront)"},
        "requestContext": {"accountId": "anonymous", "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws", "domainPrefix": "abc123",
            "http": {"method": "GET", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Amazon CloudFront"},
            "requestId": "req-1", "routeKey": "$default", "stage": "$default",
            "time": "07/Dec/2026:12:00:00 +0000", "timeEpoch": 1796644800000u64},
        "isBase64Encoded": false
    })
    .to_string()
}

/// Runs `render` under the Runtime API stub for one function-URL event; its JSON response.
fn render_under_lambda(
    stack: &crate::harness::Stack,
    raw_path: &str,
    extra: &[(&str, &str)],
) -> serde_json::Value {
    let (address, responses) =
        runtime_api_stub(function_url_event(raw_path), Duration::from_secs(300));
    let mut child = Command::new(crate::harness::render_binary())
        .envs(crate::harness::aws_env())
        .envs([("IMGPIPE_OUTPUT_BUCKET", stack.derivatives.as_str())])
        .envs(extra.iter().copied())
        .envs(lambda_env("render", &address))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (path, body) = responses
        .recv_timeout(Duration::from_secs(120))
        .expect("no response from the render function within 120 s");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "the function reported an error: {body}"
    );
    serde_json::from_str(&body).unwrap()
}

/// The `render` binary answers a function-URL event under Lambda: a signed variant is rendered,
/// stored at its canonical key and returned base64-encoded; past the inline limit it is stored and
/// answered with a redirect to itself; an unsigned one is refused without a render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_answers_function_url_events_under_lambda() {
    use base64::Engine as _;
    use imgpipe_core::preset::{Fit, OutputFormat};
    use imgpipe_core::variant::{Params, SigningKeys, signed_segment};
    let stack = setup("render-lambda-mode").await;
    let worker = stack.start_worker().await;
    stack
        .put("uploads/fn url.jpg", fixture("Landscape_1.jpg"))
        .await;
    stack.wait_for_metadata("uploads/fn url.jpg").await;
    let secret = "k".repeat(32);
    let keys = SigningKeys::parse(&secret).unwrap();
    let dir = "derived/uploads/fn url.jpg/";
    let url_dir = "/derived/uploads/fn%20url.jpg/";
    let env = [("IMGPIPE_VARIANT_KEYS", secret.as_str())];
    let params = |width| Params {
        width: Some(width),
        height: None,
        fit: Fit::Inside,
        quality: None,
        format: OutputFormat::Webp,
    };

    let small = signed_segment(&keys, dir, &params(320));
    let response = render_under_lambda(&stack, &format!("{url_dir}{small}"), &env);
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["headers"]["content-type"], "image/webp");
    assert_eq!(response["isBase64Encoded"], true);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(dimensions(&bytes), (320, 240));
    let stored = format!("{dir}{}", params(320).canonical());
    assert_eq!(
        stack.get(&stack.derivatives, &stored).await.as_deref(),
        Some(&bytes[..])
    );

    let large = signed_segment(&keys, dir, &params(480));
    let limited = [env[0], ("IMGPIPE_RENDER_INLINE_MAX_BYTES", "1000")];
    let response = render_under_lambda(&stack, &format!("{url_dir}{large}"), &limited);
    assert_eq!(response["statusCode"], 302, "{response}");
    assert_eq!(response["headers"]["location"], format!("{url_dir}{large}"));
    assert_eq!(response["headers"]["cache-control"], "no-store");
    let stored = format!("{dir}{}", params(480).canonical());
    let kept = stack
        .get(&stack.derivatives, &stored)
        .await
        .expect("stored");
    assert!(kept.len() > 1000);

    let unsigned = format!("{url_dir}{}", params(640).canonical());
    let response = render_under_lambda(&stack, &unsigned, &env);
    assert_eq!(response["statusCode"], 403, "{response}");
    let canonical_640 = format!("{dir}{}", params(640).canonical());
    assert!(
        stack
            .get(&stack.derivatives, &canonical_640)
            .await
            .is_none()
    );
    worker.stop().await;
}
