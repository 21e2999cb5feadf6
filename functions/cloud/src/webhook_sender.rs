//! The webhook sender: a [`BatchFunction`] over the webhook queue, an SQS subscription of the
//! events topic with raw message delivery.
//!
//! `event from the topic ⇒ signed POST to every endpoint (attempt 1) ⇒ each endpoint that did not
//! answer 2xx gets its own retry message ⇒ retried on the schedule (visibility backoff, same
//! webhook-id) ⇒ after the last attempt: the webhook DLQ, with the endpoint and the last status`
//!
//! Retries are per endpoint, so one endpoint that is down never re-sends to those that answered.
//! A retry message is `{"webhook_retry": {"endpoint", "attempts", "event"}}`: `attempts` made before
//! it was enqueued (the SQS receive count adds the rest). The dead-lettered body is the same
//! envelope with `attempts` 0, so redriving it to the webhook queue starts that endpoint's schedule
//! afresh (`imgpipe-webhooks` never re-sends to other endpoints for it).

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::batch::{self, BatchFunction, Outcome};
use crate::effects::{Attribute, Endpoints, Outgoing, Queues};
use crate::failure::Failure;
use crate::queue;
use crate::webhook::{self, Attempt, Signer};

/// Message attributes on dead-lettered webhook deliveries.
pub mod attributes {
    /// The endpoint that never answered 2xx.
    pub const URL: &str = "imgpipe.webhook_url";
    /// What its last attempt got (`HTTP 500 …`, `timed out`, `no answer: …`).
    pub const LAST_STATUS: &str = "imgpipe.webhook_last_status";
    /// Attempts made.
    pub const ATTEMPTS: &str = "imgpipe.webhook_attempts";
    /// The event's id (= the `webhook-id` header).
    pub const EVENT_ID: &str = "imgpipe.event_id";
    /// The event's type.
    pub const EVENT_TYPE: &str = "imgpipe.event_type";
}

/// The sender's configuration, read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `IMGPIPE_WEBHOOK_URLS` (required; comma-separated http(s) URLs): where every event goes.
    pub endpoints: Vec<String>,
    /// `IMGPIPE_WEBHOOK_SECRET` (`whsec_…`, several separated by spaces while rotating), or
    /// `IMGPIPE_WEBHOOK_SECRET_PARAMETER`: the name of an SSM SecureString holding it (AWS).
    pub secret: SecretSource,
    /// `IMGPIPE_WEBHOOK_RETRY_SCHEDULE` (default `5s,5m,30m,2h,5h,10h,10h`, Standard Webhooks'
    /// suggested schedule): the wait before each retry, so attempts = 1 + entries. The first entry
    /// is at most 15 min (SQS message delay), the others at most 12 h (visibility timeout).
    pub schedule: Vec<Duration>,
    /// `IMGPIPE_WEBHOOK_TIMEOUT_SECONDS` (default 15): how long one attempt waits for an answer.
    pub timeout: Duration,
    /// `IMGPIPE_WEBHOOK_QUEUE_URL` (required): the webhook queue (per-endpoint retries go there).
    pub queue_url: String,
    /// `IMGPIPE_WEBHOOK_DLQ_URL` (required): where undeliverable events end, with the last status.
    pub dlq_url: String,
    /// `IMGPIPE_CONCURRENCY` (default 16): events handled at once.
    pub concurrency: usize,
}

/// Where the signing secret comes from.
pub use crate::secret::SecretSource;

impl WebhookConfig {
    /// Default retry schedule (Standard Webhooks' suggestion): attempts at 0, 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h and 10 h later; 8 attempts over about 28 hours.
    pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{ConfigError, read_number, read_required};
        let lookup: crate::config::Lookup<'_> = &lookup;
        let error = |variable: &'static str, message: String| ConfigError { variable, message };
        let required = |variable| read_required(lookup, variable);
        let number = |variable, default| read_number(lookup, variable, default);
        let endpoints: Vec<String> = required("IMGPIPE_WEBHOOK_URLS")?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        if endpoints.is_empty() {
            return Err(error("IMGPIPE_WEBHOOK_URLS", "lists no URL".into()));
        }
        for url in &endpoints {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Err(error(
                        "IMGPIPE_WEBHOOK_URLS",
                        format!("'{url}' is not an http(s) URL"),
                    ));
                }
            }
        }
        let secret = match (
            lookup("IMGPIPE_WEBHOOK_SECRET"),
            lookup("IMGPIPE_WEBHOOK_SECRET_PARAMETER"),
        ) {
            (Some(value), None) => {
                Signer::new(&value).map_err(|m| error("IMGPIPE_WEBHOOK_SECRET", m))?;
                SecretSource::Value(value)
            }
            (None, Some(name)) => SecretSource::SsmParameter(name),
            (Some(_), Some(_)) => {
                return Err(error(
                    "IMGPIPE_WEBHOOK_SECRET",
                    "set either it or IMGPIPE_WEBHOOK_SECRET_PARAMETER, not both".into(),
                ));
            }
            (None, None) => {
                return Err(error(
                    "IMGPIPE_WEBHOOK_SECRET",
                    "is required (or IMGPIPE_WEBHOOK_SECRET_PARAMETER, an SSM SecureString name)"
                        .into(),
                ));
            }
        };
        let schedule_text = lookup("IMGPIPE_WEBHOOK_RETRY_SCHEDULE")
            .unwrap_or_else(|| Self::DEFAULT_SCHEDULE.into());
        let schedule = parse_schedule(&schedule_text)
            .map_err(|m| error("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", m))?;
        let timeout = number("IMGPIPE_WEBHOOK_TIMEOUT_SECONDS", 15)?;
        if !(1..=300).contains(&timeout) {
            return Err(error(
                "IMGPIPE_WEBHOOK_TIMEOUT_SECONDS",
                "must be 1–300".into(),
            ));
        }
        Ok(Self {
            endpoints,
            secret,
            schedule,
            timeout: Duration::from_secs(timeout),
            queue_url: required("IMGPIPE_WEBHOOK_QUEUE_URL")?,
            dlq_url: required("IMGPIPE_WEBHOOK_DLQ_URL")?,
            concurrency: number("IMGPIPE_CONCURRENCY", 16)?.max(1) as usize,
        })
    }

    /// Attempts per endpoint: the first plus one per schedule entry.
    pub fn max_attempts(&self) -> u32 {
        1 + self.schedule.len() as u32
    }
}

/// `5s,5m,30m,2h` → durations; each at least 1 s, the first at most 15 min, the rest at most 12 h.
fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule: Vec<Duration> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| humantime::parse_duration(p).map_err(|e| format!("'{p}': {e}")))
        .collect::<Result<_, _>>()?;
    for (i, delay) in schedule.iter().enumerate() {
        let most = if i == 0 { 15 * 60 } else { 12 * 3600 };
        if delay.as_secs() < 1 || delay.as_secs() > most {
            return Err(format!(
                "entry {} ({}) must be between 1 s and {}",
                i + 1,
                humantime::format_duration(*delay),
                if i == 0 {
                    "15 min (the first retry is an SQS message delay)"
                } else {
                    "12 h (SQS visibility timeout)"
                }
            ));
        }
    }
    Ok(schedule)
}

/// A per-endpoint retry (and, with `attempts` 0, a dead-lettered delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The one endpoint to deliver to.
    pub endpoint: String,
    /// Attempts already made when this message was enqueued.
    pub attempts: u32,
    /// The event JSON, exactly as signed and sent.
    pub event: String,
}

#[derive(Deserialize, Serialize)]
struct RetryEnvelope {
    webhook_retry: Retry,
}

/// The identity of an event, read from its JSON.
#[derive(Deserialize)]
struct EventHead {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
}

/// What a message of the webhook queue asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    /// A fresh event: every endpoint, attempt 1.
    Fresh { event: String },
    /// One endpoint, after `attempts` attempts.
    Retry(Retry),
}

/// What `body` asks for. A retry is only honoured for an endpoint that is still configured: the
/// sender never POSTs, with imgpipe's signature, to a URL a queue message names on its own.
fn parse_message(body: &str, endpoints: &[String]) -> Result<Delivery, String> {
    if let Ok(envelope) = serde_json::from_str::<RetryEnvelope>(body) {
        let retry = envelope.webhook_retry;
        if !endpoints.contains(&retry.endpoint) {
            return Err(format!(
                "a retry for {}, which is not in IMGPIPE_WEBHOOK_URLS (any more); add it back and redrive, or drop the message",
                retry.endpoint
            ));
        }
        return Ok(Delivery::Retry(retry));
    }
    #[derive(Deserialize)]
    struct Sns {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Message")]
        message: String,
    }
    // A subscription without raw message delivery wraps the event in an SNS envelope.
    if let Ok(sns) = serde_json::from_str::<Sns>(body)
        && sns.kind == "Notification"
    {
        return parse_message(&sns.message, endpoints);
    }
    serde_json::from_str::<EventHead>(body)
        .map_err(|e| format!("not an imgpipe event or webhook retry: {e}"))?;
    Ok(Delivery::Fresh {
        event: body.to_string(),
    })
}

/// The sender: configuration, a signer, and its [effect boundary](crate::effects): the
/// endpoints (HTTPS) and SQS.
pub struct Sender {
    /// The SDK client the drivers receive with (never used by the sender itself).
    driver_sqs: aws_sdk_sqs::Client,
    queues: Arc<dyn Queues>,
    http: Arc<dyn Endpoints>,
    signer: Signer,
    config: WebhookConfig,
}

impl Sender {
    /// Builds the sender from ready parts.
    pub fn new(sqs: aws_sdk_sqs::Client, signer: Signer, config: WebhookConfig) -> Self {
        let http = Arc::new(webhook::client(config.timeout));
        Self::with_effects(Arc::new(sqs.clone()), http, sqs, signer, config)
    }

    /// Builds the sender on `queues` and `http` (the AWS and HTTPS executors, or the fault
    /// simulator's); `driver_sqs` is only what [`BatchFunction::sqs`] hands the drivers.
    pub fn with_effects(
        queues: Arc<dyn Queues>,
        http: Arc<dyn Endpoints>,
        driver_sqs: aws_sdk_sqs::Client,
        signer: Signer,
        config: WebhookConfig,
    ) -> Self {
        Self {
            driver_sqs,
            queues,
            http,
            signer,
            config,
        }
    }

    /// Loads AWS configuration from the environment, reads the secret (from SSM when configured)
    /// and builds the sender. Fails with the reason when the secret cannot be read.
    pub async fn from_config(config: WebhookConfig) -> Result<Self, String> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let secret = config.secret.read(&shared).await?;
        let signer = Signer::new(&secret).map_err(|e| format!("webhook secret: {e}"))?;
        Ok(Self::new(aws_sdk_sqs::Client::new(&shared), signer, config))
    }

    /// The configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    async fn settle(&self, message: &SqsMessage) -> Outcome {
        let body = message.body.as_deref().unwrap_or("");
        let receive_count = batch::receive_count(message);
        match parse_message(body, &self.config.endpoints) {
            Ok(Delivery::Fresh { event }) => self.deliver_fresh(&event).await,
            Ok(Delivery::Retry(retry)) => self.deliver_retry(retry, receive_count).await,
            Err(reason) => {
                let failure = Failure::permanent("bad_message", reason);
                let letter = queue::DeadLetter {
                    body,
                    failure: &failure,
                    source: None,
                    receive_count,
                    message_id: message.message_id.as_deref().unwrap_or(""),
                };
                match queue::send_to_dlq(&*self.queues, &self.config.dlq_url, &letter).await {
                    Ok(()) => Outcome::DeadLettered { failure },
                    Err(failure) => Outcome::Retry {
                        failure,
                        delay: Duration::from_secs(30),
                    },
                }
            }
        }
    }

    /// Attempt 1 to every endpoint; each failure becomes its own retry message.
    async fn deliver_fresh(&self, event: &str) -> Outcome {
        let id = event_head(event).map(|h| h.id).unwrap_or_default();
        let attempts = futures::future::join_all(
            self.config
                .endpoints
                .iter()
                .map(|url| webhook::deliver(&*self.http, &self.signer, url, &id, event)),
        )
        .await;
        let (mut delivered, mut retried) = (0, 0);
        for (url, attempt) in self.config.endpoints.iter().zip(attempts) {
            match attempt {
                Attempt::Delivered(status) => {
                    delivered += 1;
                    tracing::info!(event_id = %id, url, status, attempt = 1, "webhook delivered");
                }
                Attempt::Failed { status } => {
                    let retry = Retry {
                        endpoint: url.clone(),
                        attempts: 1,
                        event: event.to_string(),
                    };
                    let settled = if self.config.max_attempts() <= 1 {
                        self.dead_letter(retry, &status).await
                    } else {
                        tracing::warn!(event_id = %id, url, status, attempt = 1, "webhook not delivered; will retry");
                        self.enqueue_retry(&retry, self.config.schedule[0]).await
                    };
                    if let Err(failure) = settled {
                        // Nothing is lost: the whole event comes back (endpoints that answered get
                        // it again with the same webhook-id, which they dedupe on).
                        return Outcome::Retry {
                            failure,
                            delay: self
                                .config
                                .schedule
                                .first()
                                .copied()
                                .unwrap_or(Duration::from_secs(5)),
                        };
                    }
                    retried += 1;
                }
            }
        }
        Outcome::Done {
            processed: delivered,
            skipped: 0,
            forwarded: retried,
        }
    }

    /// One more attempt to one endpoint; backoff or the DLQ when it fails.
    async fn deliver_retry(&self, retry: Retry, receive_count: u32) -> Outcome {
        let id = event_head(&retry.event).map(|h| h.id).unwrap_or_default();
        let attempt = retry.attempts + receive_count;
        match webhook::deliver(
            &*self.http,
            &self.signer,
            &retry.endpoint,
            &id,
            &retry.event,
        )
        .await
        {
            Attempt::Delivered(status) => {
                tracing::info!(event_id = %id, url = %retry.endpoint, status, attempt, "webhook delivered");
                Outcome::Done {
                    processed: 1,
                    skipped: 0,
                    forwarded: 0,
                }
            }
            Attempt::Failed { status } if attempt < self.config.max_attempts() => {
                let delay = self.config.schedule[attempt as usize - 1];
                tracing::warn!(event_id = %id, url = %retry.endpoint, status, attempt, next_in_s = delay.as_secs(), "webhook not delivered; will retry");
                Outcome::Retry {
                    failure: Failure::transient("webhook", status),
                    delay,
                }
            }
            Attempt::Failed { status } => match self
                .dead_letter(
                    Retry {
                        attempts: attempt,
                        ..retry
                    },
                    &status,
                )
                .await
            {
                Ok(()) => Outcome::DeadLettered {
                    failure: Failure::transient("webhook_undeliverable", status),
                },
                Err(failure) => Outcome::Retry {
                    failure,
                    delay: Duration::from_secs(60),
                },
            },
        }
    }

    async fn enqueue_retry(&self, retry: &Retry, delay: Duration) -> Result<(), Failure> {
        let body = serde_json::to_string(&RetryEnvelope {
            webhook_retry: retry.clone(),
        })
        .expect("retry serialises");
        let message = Outgoing {
            body,
            attributes: Vec::new(),
            delay_seconds: delay.as_secs().min(900) as u32,
        };
        self.queues
            .send(&self.config.queue_url, &[message])
            .await
            .map_err(|e| Failure::transient("sqs_send", format!("webhook retry: {}", e.message)))
    }

    /// Sends an undeliverable event to the webhook DLQ: the retry envelope with `attempts` reset
    /// (so a redrive starts the endpoint's schedule afresh) and the last status as attributes.
    async fn dead_letter(&self, retry: Retry, last_status: &str) -> Result<(), Failure> {
        let head = event_head(&retry.event);
        let attempts = retry.attempts;
        let body = serde_json::to_string(&RetryEnvelope {
            webhook_retry: Retry {
                attempts: 0,
                ..retry.clone()
            },
        })
        .expect("retry serialises");
        let mut attributes = vec![
            Attribute::string(queue::attributes::ERROR_KIND, "webhook_undeliverable"),
            Attribute::string(
                queue::attributes::ERROR_MESSAGE,
                &format!(
                    "{} did not answer 2xx in {attempts} attempts; last: {last_status}",
                    retry.endpoint
                ),
            ),
            Attribute::string(attributes::URL, &retry.endpoint),
            Attribute::string(attributes::LAST_STATUS, last_status),
            Attribute::string(attributes::ATTEMPTS, &attempts.to_string()),
        ];
        if let Some(head) = head {
            attributes.push(Attribute::string(attributes::EVENT_ID, &head.id));
            attributes.push(Attribute::string(attributes::EVENT_TYPE, &head.event_type));
        }
        let message = Outgoing {
            body,
            attributes,
            delay_seconds: 0,
        };
        self.queues
            .send(&self.config.dlq_url, &[message])
            .await
            .map_err(|e| {
                Failure::transient("sqs_send", format!("to the webhook DLQ: {}", e.message))
            })?;
        tracing::error!(url = %retry.endpoint, attempts, last_status, "webhook undeliverable; sent to the webhook DLQ");
        Ok(())
    }
}

fn event_head(event: &str) -> Option<EventHead> {
    serde_json::from_str(event).ok()
}

impl BatchFunction for Sender {
    fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.driver_sqs
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn handle_message(&self, message: &SqsMessage) -> impl Future<Output = Outcome> + Send {
        self.settle(message)
    }
}

#[cfg(test)]
mod tests;
