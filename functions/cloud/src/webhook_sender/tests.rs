//! Unit tests of [`super`].

use super::*;
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Result<WebhookConfig, crate::config::ConfigError> {
    let mut map: HashMap<&str, &str> = [
        (
            "IMGPIPE_WEBHOOK_URLS",
            "https://a.example/hook, http://127.0.0.1:9/x",
        ),
        (
            "IMGPIPE_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("IMGPIPE_WEBHOOK_QUEUE_URL", "http://q"),
        ("IMGPIPE_WEBHOOK_DLQ_URL", "http://dlq"),
    ]
    .into_iter()
    .collect();
    map.extend(pairs.iter().copied());
    WebhookConfig::from_lookup(|k| map.get(k).map(|v| v.to_string()).filter(|v| !v.is_empty()))
}

#[test]
fn defaults_give_eight_attempts_over_more_than_a_day() {
    let c = config(&[]).unwrap();
    assert_eq!(
        c.endpoints,
        ["https://a.example/hook", "http://127.0.0.1:9/x"]
    );
    assert_eq!(c.max_attempts(), 8);
    let total: Duration = c.schedule.iter().sum();
    assert!(total >= Duration::from_secs(3600), "{total:?}");
    assert_eq!(
        total.as_secs(),
        5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000
    );
    assert_eq!(c.timeout, Duration::from_secs(15));
}

#[test]
fn bad_settings_name_the_variable() {
    let variable = |pairs: &[(&str, &str)]| config(pairs).unwrap_err().variable;
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_URLS", "ftp://x")]),
        "IMGPIPE_WEBHOOK_URLS"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_URLS", " , ")]),
        "IMGPIPE_WEBHOOK_URLS"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_SECRET", "whsec_c2hvcnQ=")]),
        "IMGPIPE_WEBHOOK_SECRET"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_SECRET_PARAMETER", "/imgpipe/secret")]),
        "IMGPIPE_WEBHOOK_SECRET"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", "1s,soon")]),
        "IMGPIPE_WEBHOOK_RETRY_SCHEDULE"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", "1h")]),
        "IMGPIPE_WEBHOOK_RETRY_SCHEDULE"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", "1s,13h")]),
        "IMGPIPE_WEBHOOK_RETRY_SCHEDULE"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_TIMEOUT_SECONDS", "0")]),
        "IMGPIPE_WEBHOOK_TIMEOUT_SECONDS"
    );
    assert_eq!(
        variable(&[("IMGPIPE_WEBHOOK_DLQ_URL", "")]),
        "IMGPIPE_WEBHOOK_DLQ_URL"
    );
    let ssm = config(&[
        ("IMGPIPE_WEBHOOK_SECRET", ""),
        ("IMGPIPE_WEBHOOK_SECRET_PARAMETER", "/s"),
    ])
    .unwrap();
    assert_eq!(ssm.secret, SecretSource::SsmParameter("/s".into()));
}

#[test]
fn messages_are_fresh_events_retries_or_refused() {
    let endpoints = ["https://a.example/hook".to_string()];
    let parse_message = |body: &str| parse_message(body, &endpoints);
    let event = r#"{"schema":"imgpipe.event/v1","id":"evt_1","type":"imgpipe.image.done","timestamp":"t","data":{}}"#;
    assert_eq!(
        parse_message(event),
        Ok(Delivery::Fresh {
            event: event.into()
        })
    );
    let wrapped = serde_json::json!({"Type": "Notification", "Message": event}).to_string();
    assert_eq!(
        parse_message(&wrapped),
        Ok(Delivery::Fresh {
            event: event.into()
        })
    );
    let retry = Retry {
        endpoint: "https://a.example/hook".into(),
        attempts: 3,
        event: event.into(),
    };
    let body = serde_json::to_string(&RetryEnvelope {
        webhook_retry: retry.clone(),
    })
    .unwrap();
    assert_eq!(parse_message(&body), Ok(Delivery::Retry(retry.clone())));
    // A retry naming an endpoint that is not configured is refused, never POSTed to.
    let elsewhere = Retry {
        endpoint: "http://169.254.169.254/latest/meta-data".into(),
        ..retry
    };
    let body = serde_json::to_string(&RetryEnvelope {
        webhook_retry: elsewhere,
    })
    .unwrap();
    assert!(
        parse_message(&body)
            .unwrap_err()
            .contains("not in IMGPIPE_WEBHOOK_URLS")
    );
    assert!(
        parse_message("{}")
            .unwrap_err()
            .contains("not an imgpipe event")
    );
    assert!(parse_message("nope").is_err());
}
