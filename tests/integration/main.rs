//! Integration tests: the deployed template on a real LocalStack, the real worker, real uploads.
//! `make test` starts LocalStack (with pre-signed URL signature checks on) and runs these; each test
//! deploys its own stack, so buckets and queues are unique per test.

mod harness;

/// Memory admission on the real `derive` binary: four 24 MP images under a budget for two.
mod admission;

/// The upload API against S3: POST policy conditions enforced by S3, PUT's signed Content-Type,
/// status pending → done / failed, the `api` binary's health and 4xx answers.
mod api;
mod receiver;

/// Manifests: one `imgpipe.batch.done` after the last item, repeated with the same id; the
/// compare-and-swap progress counts racing item ends once each.
mod batches;
/// Deleting a source deletes its outputs (only its own), announces it, and a re-upload brings them
/// back; a late creation older than the deletion is ignored.
mod deletion;
/// A JPEG upload yields every default derivative with the right size and headers, and `done` metadata.
mod derive_default_presets;
/// Done/failed events on the SNS topic: one per outcome, the same id for a duplicate, published on
/// redelivery when a worker wrote metadata but did not publish.
mod events;
/// Bad files go to the DLQ with their reason and a `failed` document, once, never retried.
mod failures;
/// The local edge gateway over real derivatives: the CloudFront Function's case table (negotiation,
/// 404s, refused paths), conditional and HEAD requests, and `imgpipe serve` answering curl-style.
mod gateway;
/// Heavy sources and manifests routed to the GPU queue and processed by the real `gpu-worker`
/// (`--backend auto`, which falls back to the CPU where there is no GPU).
mod gpu_routing;
/// URL imports from a manifest: an allowed host's photo is imported and processed; a bad scheme,
/// a host not allowed, private and IPv4-mapped addresses, a redirect into a private network, an
/// oversize body and a slow server are each refused with their class and reason in the summary.
mod imports;
/// s3:TestEvent, duplicate notifications, and writes to the output location.
mod no_extra_work;
/// Variants on request through the local edge: a ladder rung absent after upload is rendered on
/// its first request and then served from S3; 20 concurrent first requests for a signed variant
/// render once; unsigned, tampered and unoffered variants are refused with no render; a failed
/// source renders nothing; deleting the source removes its rendered variants; an AVIF-accepting
/// browser gets the default `preview` group's on-request AVIF rendered once for 20 concurrent
/// first requests, then served from S3.
mod on_request;
/// Operations: `imgpipe backfill` after a preset change re-processes exactly the stale sources and
/// deletes the removed preset's outputs; `imgpipe status` and `dlq list` show five failures, and
/// `dlq redrive` after the fix ends with five done and an empty DLQ.
mod operations;
/// Private by default: every path the CDN (its local twin) and the API answer without auth, read as
/// an anonymous client would, shows no location or capture time; an authenticated caller reads them.
mod privacy;
/// The `derive` binary itself: Lambda mode against a Runtime API stub (batch item failures, images
/// returned unstarted before the deadline), and SIGTERM in worker mode; `api` and `render` answering
/// API Gateway and function-URL events under the stub.
mod process_modes;
/// The bucket boundary: another bucket's records and manifest items touch nothing of this stack.
mod trust_boundaries;
/// Upload paths: pre-signed PUT URL, multipart upload, keys with spaces and non-ASCII letters.
mod upload_paths;
/// Signed webhooks: retries keep the id, the Python library verifies them, undeliverable ones end
/// in the webhook DLQ with the last status.
mod webhooks;
