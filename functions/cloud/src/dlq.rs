//! Dead-lettered jobs for operators: look at them without consuming them ([`peek`]), send them back
//! to work ([`redrive`], [`move_task`]), or drop them ([`purge`]).
//!
//! A dead-lettered message carries its original body unchanged plus the reason as message
//! attributes ([`crate::queue::attributes`]); a message SQS itself moved after `maxReceiveCount`
//! receives (a worker that crashed or timed out on it) has no reason, and is listed as
//! `max_receives`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};

use crate::event::{Notification, parse_body};
use crate::failure::Failure;
use crate::queue::attributes;

/// How long a peeked message stays hidden from other readers of the DLQ.
const HOLD: Duration = Duration::from_secs(60);
/// How long a redrive keeps the letters it skips hidden, so a long redrive does not meet them again
/// (they are made visible at its end; if it dies, they reappear after this).
const REDRIVE_HOLD: Duration = Duration::from_secs(900);

/// One dead-lettered job, as `imgpipe dlq list` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Letter {
    /// SQS message id in the DLQ.
    pub message_id: String,
    /// Source bucket, from the attributes or the body.
    pub bucket: Option<String>,
    /// Source key (decoded), from the attributes or the body.
    pub key: Option<String>,
    /// The source's ETag, from the body.
    pub etag: Option<String>,
    /// Letters of the same source (bucket, key, ETag) this one stands for: a letter is sent at
    /// least once, so a crash between a failed document and its letter sends another on redelivery
    /// ([`by_source`]).
    pub copies: u32,
    /// Failure kind (`corrupt`, `over_limit`, `retries_exhausted`, …; `max_receives` when SQS moved
    /// it without a reason).
    pub kind: String,
    /// The failure sentence.
    pub message: String,
    /// Whether a retry can help, when the handler said.
    pub retryable: Option<bool>,
    /// Receives of the original message before it was dead-lettered.
    pub attempts: Option<u32>,
    /// Seconds since it was dead-lettered.
    pub age_s: u64,
    /// The body (what a redrive sends back).
    #[serde(skip)]
    pub body: String,
    /// When it was dead-lettered, milliseconds since the epoch.
    #[serde(skip)]
    pub sent_ms: u64,
    #[serde(skip)]
    receipt_handle: String,
}

/// `kind` when SQS moved a message after `maxReceiveCount` receives, without imgpipe's reason.
pub const MAX_RECEIVES: &str = "max_receives";

impl Letter {
    /// Reads a received DLQ message; `now_ms` is the current time in milliseconds since the epoch.
    pub fn from_message(message: &Message, now_ms: u64) -> Self {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_string)
        };
        let body = message.body().unwrap_or_default().to_string();
        let first_record = match parse_body(&body) {
            Ok(Notification::Records(records)) => records.into_iter().next(),
            _ => None,
        };
        let sent_ms = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(now_ms);
        let kind = attribute(attributes::ERROR_KIND);
        Self {
            message_id: message.message_id().unwrap_or_default().to_string(),
            bucket: attribute(attributes::SOURCE_BUCKET)
                .or_else(|| first_record.as_ref().map(|r| r.bucket.clone())),
            key: attribute(attributes::SOURCE_KEY)
                .or_else(|| first_record.as_ref().map(|r| r.key.clone())),
            etag: first_record.as_ref().and_then(|r| r.etag.clone()),
            copies: 1,
            message: attribute(attributes::ERROR_MESSAGE).unwrap_or_else(|| {
                if kind.is_some() {
                    String::new()
                } else {
                    "SQS moved it after the queue's maxReceiveCount receives: a worker crashed or timed out on it".into()
                }
            }),
            kind: kind.unwrap_or_else(|| MAX_RECEIVES.into()),
            retryable: attribute(attributes::RETRYABLE).and_then(|v| v.parse().ok()),
            attempts: attribute(attributes::RECEIVE_COUNT).and_then(|v| v.parse().ok()),
            age_s: now_ms.saturating_sub(sent_ms) / 1000,
            body,
            sent_ms,
            receipt_handle: message.receipt_handle().unwrap_or_default().to_string(),
        }
    }
}

/// The source a letter is about, `None` for a letter with no key (an unreadable message).
fn source_of(letter: &Letter) -> Option<(Option<String>, String, Option<String>)> {
    letter
        .key
        .clone()
        .map(|key| (letter.bucket.clone(), key, letter.etag.clone()))
}

/// One letter per source (bucket, key, ETag), the first seen, with `copies` counting the others.
/// Letters without a key are kept as they are.
pub fn by_source(letters: Vec<Letter>) -> Vec<Letter> {
    let mut out: Vec<Letter> = Vec::with_capacity(letters.len());
    let mut index: std::collections::HashMap<(Option<String>, String, Option<String>), usize> =
        std::collections::HashMap::new();
    for letter in letters {
        match source_of(&letter) {
            Some(source) => match index.get(&source) {
                Some(&at) => out[at].copies += letter.copies,
                None => {
                    index.insert(source, out.len());
                    out.push(letter);
                }
            },
            None => out.push(letter),
        }
    }
    out
}

/// Letters per failure kind.
pub fn kinds(letters: &[Letter]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for letter in letters {
        *kinds.entry(letter.kind.clone()).or_default() += 1;
    }
    kinds
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sqs_error<E>(
    operation: &str,
    queue: &str,
    e: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> Failure
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    Failure::transient(
        "sqs",
        format!("SQS {operation} {queue}: {}", crate::aws_error::brief(&e)),
    )
}

/// Receives up to 10 messages of `queue`, hidden for `hold`.
async fn receive(sqs: &Client, queue: &str, hold: Duration) -> Result<Vec<Message>, Failure> {
    let out = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(hold.as_secs() as i32)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| sqs_error("ReceiveMessage", queue, e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes held messages visible again at once.
async fn release(sqs: &Client, queue: &str, handles: &[String]) -> Result<(), Failure> {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and handle set")
            })
            .collect();
        sqs.change_message_visibility_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", queue, e))?;
    }
    Ok(())
}

/// Walks a DLQ batch by batch, each message received once and hidden for the walk's hold.
/// Messages seen before (received again because their hold ran out) are not handed out again;
/// their newest handles are kept in `again`, to be released with the rest. The walk ends at an empty
/// batch or one with nothing new: every letter has been looked at.
struct Walk<'a> {
    sqs: &'a Client,
    dlq: &'a str,
    hold: Duration,
    seen: HashSet<String>,
    again: Vec<String>,
}

impl<'a> Walk<'a> {
    fn new(sqs: &'a Client, dlq: &'a str, hold: Duration) -> Self {
        Walk {
            sqs,
            dlq,
            hold,
            seen: HashSet::new(),
            again: Vec::new(),
        }
    }

    /// The next batch's letters not seen before; `None` when the walk is over.
    async fn next(&mut self) -> Result<Option<Vec<Letter>>, Failure> {
        let batch = receive(self.sqs, self.dlq, self.hold).await?;
        let now = now_ms();
        let mut new = Vec::new();
        for message in &batch {
            let letter = Letter::from_message(message, now);
            if self.seen.insert(letter.message_id.clone()) {
                new.push(letter);
            } else {
                self.again.push(letter.receipt_handle);
            }
        }
        Ok((!new.is_empty()).then_some(new))
    }
}

/// Up to `max` letters of `dlq`, without consuming them: each is received, read and made visible
/// again (its DLQ receive count grows by one; nothing reads that count).
pub async fn peek(sqs: &Client, dlq: &str, max: usize) -> Result<Vec<Letter>, Failure> {
    let mut letters: Vec<Letter> = Vec::new();
    let mut walk = Walk::new(sqs, dlq, HOLD);
    let result = async {
        while letters.len() < max {
            let Some(new) = walk.next().await? else { break };
            letters.extend(new);
        }
        Ok::<(), Failure>(())
    }
    .await;
    let mut handles: Vec<String> = letters.iter().map(|l| l.receipt_handle.clone()).collect();
    handles.append(&mut walk.again);
    release(sqs, dlq, &handles).await?;
    result?;
    letters.truncate(max);
    letters.sort_by(|a, b| b.age_s.cmp(&a.age_s).then(a.key.cmp(&b.key)));
    Ok(letters)
}

/// Which letters a redrive takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this failure kind.
    pub kind: Option<String>,
    /// At most this many.
    pub max: Option<u64>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    /// Messages sent back to work.
    pub moved: u64,
    /// Messages looked at and left in the DLQ (another kind, or over `max`).
    pub left: u64,
    /// Extra copies of a source already sent back in this redrive: deleted, not sent again.
    pub duplicates: u64,
    /// `receive-send-delete` or `move-task`.
    pub method: &'static str,
}

/// Sends the selected letters of `dlq` back to `target`: each is received, sent to `target` with
/// its original body, then deleted from the DLQ. Interrupted between the send and the delete, a
/// letter reappears in the DLQ after [`HOLD`] and a second redrive sends it again: the handler's
/// idempotency makes that harmless, and no letter can be lost. The new message starts with a
/// receive count of 1, so the job gets all its attempts again. Only letters dead-lettered before
/// the redrive started are taken, so a job that fails again and comes back is not sent round again.
pub async fn redrive(
    sqs: &Client,
    dlq: &str,
    target: &str,
    selection: &Selection,
) -> Result<Redriven, Failure> {
    let mut report = Redriven {
        method: "receive-send-delete",
        ..Redriven::default()
    };
    let mut held: Vec<String> = Vec::new();
    let mut sent_back = std::collections::HashSet::new();
    let mut walk = Walk::new(sqs, dlq, REDRIVE_HOLD);
    let started_ms = now_ms();
    let result = async {
        loop {
            if selection.max.is_some_and(|max| report.moved >= max) {
                break;
            }
            let Some(new) = walk.next().await? else { break };
            for letter in new {
                let wanted = letter.sent_ms < started_ms
                    && selection.kind.as_ref().is_none_or(|k| *k == letter.kind)
                    && selection.max.is_none_or(|max| report.moved < max);
                if !wanted {
                    if letter.sent_ms < started_ms {
                        report.left += 1;
                    }
                    held.push(letter.receipt_handle);
                    continue;
                }
                let source = source_of(&letter);
                // Another copy of a letter this redrive already sent back is deleted, not sent:
                // one job per source.
                let copy = source.as_ref().is_some_and(|s| sent_back.contains(s));
                if !copy {
                    sqs.send_message()
                        .queue_url(target)
                        .message_body(&letter.body)
                        .message_attributes(
                            attributes::REDRIVEN,
                            crate::queue::string_attribute(&letter.kind),
                        )
                        .send()
                        .await
                        .map_err(|e| sqs_error("SendMessage", target, e))?;
                }
                sqs.delete_message()
                    .queue_url(dlq)
                    .receipt_handle(&letter.receipt_handle)
                    .send()
                    .await
                    .map_err(|e| sqs_error("DeleteMessage", dlq, e))?;
                if copy {
                    report.duplicates += 1;
                } else {
                    report.moved += 1;
                    sent_back.extend(source);
                }
            }
        }
        Ok::<(), Failure>(())
    }
    .await;
    held.append(&mut walk.again);
    release(sqs, dlq, &held).await?;
    result?;
    Ok(report)
}

/// Moves every message of `dlq` to `target` with SQS's own `StartMessageMoveTask` and waits until
/// the task ends. The moved messages keep their attributes, so the handler knows them as redriven
/// by their `imgpipe.error_kind`. SQS also keeps each message's receive count (LocalStack 4.13
/// observed), so a message received often enough in the DLQ arrives with its attempts used up:
/// prefer [`redrive`].
pub async fn move_task(sqs: &Client, dlq: &str, target: &str) -> Result<Redriven, Failure> {
    let arn = |queue: String| async move {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", &queue, e))?;
        out.attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| Failure::permanent("sqs", format!("{queue} has no QueueArn")))
    };
    let source_arn = arn(dlq.to_string()).await?;
    let target_arn = arn(target.to_string()).await?;
    let task = sqs
        .start_message_move_task()
        .source_arn(&source_arn)
        .destination_arn(&target_arn)
        .send()
        .await
        .map_err(|e| sqs_error("StartMessageMoveTask", dlq, e))?;
    let handle = task.task_handle().unwrap_or_default().to_string();
    let started_ms = now_ms() as i64;
    for _ in 0..600 {
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&source_arn)
            .max_results(10)
            .send()
            .await
            .map_err(|e| sqs_error("ListMessageMoveTasks", dlq, e))?;
        // Ours: its handle, or (finished tasks carry none) the latest started since we asked.
        let ours = tasks
            .results()
            .iter()
            .filter(|t| {
                t.task_handle() == Some(handle.as_str())
                    || t.started_timestamp() >= started_ms - 5_000
            })
            .max_by_key(|t| t.started_timestamp());
        if let Some(task) = ours {
            match task.status() {
                Some("COMPLETED") => {
                    return Ok(Redriven {
                        moved: task.approximate_number_of_messages_moved().max(0) as u64,
                        left: 0,
                        duplicates: 0,
                        method: "move-task",
                    });
                }
                Some("FAILED") | Some("CANCELLED") => {
                    return Err(Failure::transient(
                        "sqs",
                        format!(
                            "StartMessageMoveTask {}: {} after {} messages",
                            task.status().unwrap_or_default(),
                            task.failure_reason().unwrap_or("no reason given"),
                            task.approximate_number_of_messages_moved()
                        ),
                    ));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Failure::transient(
        "sqs",
        format!(
            "the message move task {handle} did not end within 10 minutes; see ListMessageMoveTasks"
        ),
    ))
}

/// Deletes every message of `dlq` (PurgeQueue; SQS allows one purge per queue per minute).
pub async fn purge(sqs: &Client, dlq: &str) -> Result<(), Failure> {
    sqs.purge_queue()
        .queue_url(dlq)
        .send()
        .await
        .map_err(|e| sqs_error("PurgeQueue", dlq, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::MessageAttributeValue;

    fn string(v: &str) -> MessageAttributeValue {
        crate::queue::string_attribute(v)
    }

    #[test]
    fn a_letter_reads_the_reason_from_the_attributes() {
        let message = Message::builder()
            .message_id("m1")
            .body(r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"in"},"object":{"key":"a+b.jpg"}}}]}"#)
            .message_attributes(attributes::ERROR_KIND, string("corrupt"))
            .message_attributes(attributes::ERROR_MESSAGE, string("truncated JPEG"))
            .message_attributes(attributes::RETRYABLE, string("false"))
            .message_attributes(attributes::RECEIVE_COUNT, string("1"))
            .attributes(MessageSystemAttributeName::SentTimestamp, "1000")
            .build();
        let letter = Letter::from_message(&message, 61_000);
        assert_eq!(letter.kind, "corrupt");
        assert_eq!(letter.message, "truncated JPEG");
        assert_eq!(letter.retryable, Some(false));
        assert_eq!(letter.attempts, Some(1));
        assert_eq!(letter.age_s, 60);
        // No key attribute: the body's record gives it, decoded.
        assert_eq!(letter.key.as_deref(), Some("a b.jpg"));
        assert_eq!(letter.bucket.as_deref(), Some("in"));
    }

    #[test]
    fn a_letter_sqs_moved_has_no_reason_and_says_so() {
        let message = Message::builder().message_id("m2").body("{}").build();
        let letter = Letter::from_message(&message, 0);
        assert_eq!(letter.kind, MAX_RECEIVES);
        assert!(letter.message.contains("maxReceiveCount"));
        assert_eq!(letter.key, None);
        let json = serde_json::to_value(&letter).unwrap();
        assert!(json.get("body").is_none() && json.get("receipt_handle").is_none());
    }

    #[test]
    fn letters_of_the_same_source_collapse_and_count_their_copies() {
        let letter = |key: Option<&str>, etag: &str| {
            let mut l = Letter::from_message(
                &Message::builder()
                    .message_id("m")
                    .body("not an event")
                    .message_attributes(attributes::ERROR_KIND, string("corrupt"))
                    .build(),
                0,
            );
            l.key = key.map(String::from);
            l.etag = Some(etag.into());
            l
        };
        let collapsed = by_source(vec![
            letter(Some("a.jpg"), "e1"),
            letter(Some("b.jpg"), "e1"),
            letter(Some("a.jpg"), "e1"),
            letter(Some("a.jpg"), "e2"),
            letter(None, "e1"),
            letter(None, "e1"),
        ]);
        let shown: Vec<(Option<&str>, Option<&str>, u32)> = collapsed
            .iter()
            .map(|l| (l.key.as_deref(), l.etag.as_deref(), l.copies))
            .collect();
        assert_eq!(
            shown,
            [
                (Some("a.jpg"), Some("e1"), 2),
                (Some("b.jpg"), Some("e1"), 1),
                (Some("a.jpg"), Some("e2"), 1),
                (None, Some("e1"), 1),
                (None, Some("e1"), 1),
            ]
        );
    }

    #[test]
    fn kinds_are_counted() {
        let letter = |kind: &str| Letter {
            kind: kind.into(),
            ..Letter::from_message(&Message::builder().build(), 0)
        };
        let counts = kinds(&[letter("corrupt"), letter("s3_get"), letter("corrupt")]);
        assert_eq!(counts["corrupt"], 2);
        assert_eq!(counts["s3_get"], 1);
    }
}
