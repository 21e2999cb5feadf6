//! imgpipe-cloud: the AWS edges around the pure core.
//!
//! `S3 put ⇒ SQS ⇒ parse event ⇒ skip done/ignored ⇒ route (CPU here, or forward to the GPU queue,
//! or fan a manifest out) ⇒ fetch ⇒ imgpipe-core ⇒ put ×N ⇒ metadata.json ⇒ delete`
//!
//! # Layout
//! - [`config`]: environment configuration with documented defaults, validated at start-up.
//! - [`event`]: SQS body → S3 notification → object events (key decoding, test events, SNS envelopes).
//! - [`batch`]: what the drivers run ([`batch::BatchFunction`]) and the per-message [`Outcome`].
//! - [`handler`]: the image batch function; permanent vs transient decisions; announcing outcomes.
//! - [`notify`]: events to the SNS topic; [`progress`]: which manifest items ended (compare-and-swap).
//! - [`webhook`] and [`webhook_sender`]: Standard Webhooks signing and the retrying webhook sender.
//! - [`effects`]: the boundary every S3, SQS, SNS and CloudFront call of the flows crosses (the
//!   AWS executor in [`effects::aws`]; the fault simulator's in `tests/simulate`).
//! - [`store`] and [`queue`]: S3 and SQS operations, on that boundary.
//! - [`worker`] and [`lambda`]: the two drivers (long-poll process, Lambda runtime); [`process`]:
//!   logging and shutdown signal for the binaries.
//! - [`metrics`]: per-record CloudWatch metrics as Embedded Metric Format lines.
//! - [`aws_error`]: AWS SDK errors as code, message, status and request id.
//! - [`failure`]: failures with a kind, a message and whether a retry can help.
//! - [`manifest`]: batch manifests (JSON or CSV lists of keys or URLs) fanned out to the GPU queue;
//!   [`importer`]: their URLs fetched into the ingest bucket, under [`url_policy`]'s checks.
//! - [`ordering`]: which of a key's unordered, repeated S3 events acts (sequencers, versions);
//!   [`deletion`]: removed sources take their outputs with them, leaving a tombstone;
//!   [`invalidation`]: and the CDN forgets them.
//! - [`backfill`]: which sources a preset change made stale, and their re-processing jobs;
//!   [`dlq`]: looking at, redriving and purging dead-lettered jobs.
#![warn(missing_docs)]

pub mod admission;
pub mod aws_error;
pub mod backfill;
pub mod batch;
pub mod body;
pub mod config;
pub mod deadline;
pub mod deletion;
pub mod dlq;
pub mod effects;
pub mod event;
pub mod failure;
pub mod handler;
pub mod importer;
pub mod invalidation;
pub mod lambda;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod ordering;
pub mod process;
pub mod progress;
pub mod queue;
pub mod secret;
pub mod source_status;
pub mod store;
pub mod url_policy;
pub mod webhook;
pub mod webhook_sender;
pub mod worker;

pub use batch::{BatchFunction, MessageResult, Outcome};
pub use config::Config;
pub use handler::Handler;
