use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imgpipe_cloud::webhook::Signer;
use imgpipe_cloud::webhook_sender::attributes;

use crate::harness::{WEBHOOK_SECRET, fixture, setup};
use crate::receiver::{Receiver, verify_with_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_retried_with_the_same_id_verifies_with_the_python_library() {
    let stack = setup("webhook-retries").await;
    // The secret comes from an SSM SecureString, as on AWS.
    let parameter = format!("/imgpipe-it/webhook-secret-{}", std::process::id());
    stack
        .ssm
        .put_parameter()
        .name(&parameter)
        .value(WEBHOOK_SECRET)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let receiver = Receiver::start(vec![500, 500], 200).await;
    let sender = stack
        .start_webhook_sender(
            &receiver.url,
            &[
                ("IMGPIPE_WEBHOOK_SECRET", ""),
                ("IMGPIPE_WEBHOOK_SECRET_PARAMETER", &parameter),
            ],
        )
        .await;
    let worker = stack.start_worker().await;
    stack
        .put("uploads/hooked.jpg", fixture("Landscape_3.jpg"))
        .await;

    let received = receiver
        .wait_for(3, Duration::from_secs(60), Duration::from_secs(3))
        .await;
    worker.stop().await;
    sender.stop().await;

    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "500 twice, then 200, then nothing more"
    );
    let id = &received[0].headers["webhook-id"];
    assert!(id.starts_with("evt_"), "{id}");
    for r in &received {
        assert_eq!(
            &r.headers["webhook-id"], id,
            "every retry keeps the webhook-id"
        );
        assert_eq!(r.body, received[0].body, "every retry sends the same body");
        assert_eq!(r.headers["content-type"], "application/json");
        crate::harness::assert_valid_event(&r.body);
    }
    let event: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(&event["id"], id.as_str());
    assert_eq!(event["type"], "imgpipe.image.done");
    assert_eq!(event["data"]["source"]["key"], "uploads/hooked.jpg");

    // An independent implementation accepts all three; a tampered body and a stale (but correctly
    // signed) timestamp are refused.
    let mut deliveries: Vec<(HashMap<String, String>, String)> = received
        .iter()
        .map(|r| (r.headers.clone(), r.body.clone()))
        .collect();
    let (headers, body) = deliveries[2].clone();
    deliveries.push((
        headers,
        body.replace("uploads/hooked.jpg", "uploads/hacked.jpg"),
    ));
    let an_hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3600;
    let stale: HashMap<String, String> = Signer::new(WEBHOOK_SECRET)
        .unwrap()
        .headers(id, an_hour_ago, &received[2].body)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    deliveries.push((stale, received[2].body.clone()));
    let verdicts = verify_with_python(WEBHOOK_SECRET, &deliveries);
    assert_eq!(verdicts[..3], [Ok(()), Ok(()), Ok(())], "{verdicts:?}");
    assert!(
        verdicts[3].as_ref().unwrap_err().contains("signature"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[4].as_ref().unwrap_err().contains("old"),
        "{verdicts:?}"
    );

    assert_eq!(
        stack.depth(&stack.webhook_dlq_url).await,
        0,
        "delivered, so not dead-lettered"
    );
    assert_eq!(stack.depth(&stack.webhook_queue_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_accepts_ends_in_the_webhook_dlq_and_the_other_gets_it_once() {
    let stack = setup("webhook-dlq").await;
    let down = Receiver::start(vec![], 503).await;
    let up = Receiver::start(vec![], 204).await;
    // 1 + 4 scheduled retries = 5 attempts.
    let sender = stack
        .start_webhook_sender(
            &format!("{},{}", down.url, up.url),
            &[("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s")],
        )
        .await;
    let worker = stack.start_worker().await;
    stack
        .put("uploads/undeliverable.jpg", fixture("Landscape_1.jpg"))
        .await;

    let letters = {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let out = stack
                .sqs
                .receive_message()
                .queue_url(&stack.webhook_dlq_url)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .visibility_timeout(600)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if !messages.is_empty() {
                break messages;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing in the webhook DLQ within 90 s"
            );
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.stop().await;
    sender.stop().await;

    let to_down = down.received();
    assert_eq!(
        to_down.len(),
        5,
        "the configured attempts, no more: {to_down:?}"
    );
    assert!(
        to_down
            .iter()
            .all(|r| r.headers["webhook-id"] == to_down[0].headers["webhook-id"])
    );
    assert_eq!(
        up.received().len(),
        1,
        "the healthy endpoint got the event once"
    );
    assert_eq!(
        up.received()[0].headers["webhook-id"],
        to_down[0].headers["webhook-id"]
    );

    assert_eq!(letters.len(), 1, "{letters:?}");
    let attrs = letters[0].message_attributes().unwrap();
    let attr = |name: &str| attrs[name].string_value().unwrap().to_string();
    assert_eq!(attr(attributes::URL), down.url);
    assert!(
        attr(attributes::LAST_STATUS).contains("503"),
        "{}",
        attr(attributes::LAST_STATUS)
    );
    assert_eq!(attr(attributes::ATTEMPTS), "5");
    assert_eq!(attr(attributes::EVENT_ID), to_down[0].headers["webhook-id"]);
    assert_eq!(attr(attributes::EVENT_TYPE), "imgpipe.image.done");
    // The body keeps the event and names the endpoint, so a redrive retries only that endpoint.
    let body: serde_json::Value = serde_json::from_str(letters[0].body().unwrap()).unwrap();
    assert_eq!(body["webhook_retry"]["endpoint"], down.url.as_str());
    assert_eq!(body["webhook_retry"]["event"], to_down[0].body.as_str());
    assert_eq!(stack.depth(&stack.webhook_queue_url).await, 0);
}
