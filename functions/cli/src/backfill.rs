//! `imgpipe backfill`: after a preset change, enqueue S3-shaped jobs for the sources whose outputs
//! are stale ([`imgpipe_cloud::backfill`] decides, from a HEAD of each metadata.json).
//!
//! Sources are checked in key order, many HEADs in flight, and jobs go out in batches of 10 at
//! `--rate`. Ctrl-C finishes the batch in hand and prints the `--start-after` key to resume from:
//! every key up to it was checked and, when stale, enqueued.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use imgpipe_cloud::backfill::{self, SourceFilter, Tally, Verdict};
use imgpipe_cloud::event::ObjectEvent;
use imgpipe_cloud::store::{self, Listed};
use imgpipe_core::OutputLayout;

use crate::resources::{Clients, ResourceArgs, Resources, required};

/// `imgpipe backfill`'s options.
#[derive(clap::Args, Debug)]
pub struct BackfillArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// Only sources under this key prefix (default: the stack's IngestPrefix, else all).
    #[arg(long)]
    prefix: Option<String>,
    /// The preset file the stack runs (its IMGPIPE_PRESETS_FILE); default: the built-in set.
    #[arg(long)]
    presets: Option<PathBuf>,
    /// Only sources made with another preset set or from another version; leave sources without
    /// metadata.json alone.
    #[arg(long)]
    stale_only: bool,
    /// Jobs sent per second at most, e.g. `50` or `50/s` (default: as fast as SQS takes them).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Send the jobs to the GPU queue instead of the jobs queue.
    #[arg(long)]
    gpu: bool,
    /// Check and count, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start after this key (the one an interrupted run printed).
    #[arg(long)]
    start_after: Option<String>,
    /// metadata.json HEADs in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print the counts as one JSON object on stdout at the end.
    #[arg(long)]
    json: bool,
    /// With a CDN: do not wait for the jobs to finish; print the invalidation to run afterwards
    /// instead of making it.
    #[arg(long)]
    no_wait: bool,
    /// With a CDN: longest wait for the jobs before giving up on the invalidation (it is then
    /// printed to run by hand).
    #[arg(long, default_value_t = 120)]
    wait_minutes: u64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("'{text}' is not a rate like 50 or 50/s")),
    }
}

/// The result of a run, also printed with `--json`.
#[derive(Debug, serde::Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    tally: &'a Tally,
    dry_run: bool,
    queue: Option<&'a str>,
    preset_set_hash: &'a str,
    /// The last key checked (and enqueued when stale): `--start-after` resumes after it.
    last_key: Option<&'a str>,
    interrupted: bool,
    invalidation: Option<String>,
}

/// Runs the backfill; returns the process exit code (130 when interrupted).
pub async fn run(args: BackfillArgs) -> anyhow::Result<i32> {
    let clients = Clients::load().await;
    let resources = Resources::resolve(&clients.shared, &args.resources).await?;
    let bucket = required(&resources.ingest_bucket, "--bucket", "IngestBucketName")?.to_string();
    let output_bucket = required(
        &resources.output_bucket,
        "--output-bucket",
        "DerivativesBucketName",
    )?
    .to_string();
    let queue = if args.gpu {
        required(&resources.gpu_queue, "--gpu-queue-url", "GpuJobsQueueUrl")?
    } else {
        required(&resources.jobs_queue, "--queue-url", "JobsQueueUrl")?
    }
    .to_string();
    let presets = crate::load_presets(args.presets.as_deref())?;
    let preset_hash = presets.hash().to_string();
    let layout = OutputLayout {
        prefix: resources.output_prefix.clone(),
    };
    let prefix = args
        .prefix
        .clone()
        .unwrap_or(resources.ingest_prefix.clone());
    let filter = SourceFilter {
        outputs: (bucket == output_bucket).then(|| layout.clone()),
        manifest_prefix: resources.manifest_prefix.clone(),
    };
    eprintln!(
        "backfill: listing s3://{bucket}/{prefix}{} (preset set {preset_hash})",
        args.start_after
            .as_deref()
            .map(|k| format!(" after '{k}'"))
            .unwrap_or_default()
    );
    let listed = store::list_objects(
        &clients.s3,
        &bucket,
        &prefix,
        None,
        args.start_after.as_deref(),
    )
    .await
    .map_err(|f| anyhow::anyhow!("{f}"))?;
    let mut tally = Tally {
        listed: listed.len() as u64,
        ..Tally::default()
    };
    let sources: Vec<Listed> = listed
        .into_iter()
        .filter(|l| match filter.excludes(&l.key) {
            Some(_) => {
                tally.not_sources += 1;
                false
            }
            None => true,
        })
        .collect();
    let mut progress = Progress::new(sources.len() as u64);
    let mut pacer = Pacer::new(args.rate);
    let mut pending: Vec<ObjectEvent> = Vec::new();
    // The sources this run sent jobs for: with a CDN, the invalidation waits until they are done.
    let mut awaiting: Vec<&Listed> = Vec::new();
    let mut last_key: Option<String> = None;
    let mut resume_key: Option<String> = args.start_after.clone();
    let mut interrupted = false;
    let mut failure: Option<anyhow::Error> = None;
    let s3 = &clients.s3;
    let mut verdicts = futures::stream::iter(sources.iter())
        .map(|source| {
            let (layout, output_bucket, preset_hash) = (&layout, &output_bucket, &preset_hash);
            async move {
                let verdict =
                    backfill::inspect(s3, output_bucket, layout, source, preset_hash).await;
                (source, verdict)
            }
        })
        .buffered(args.concurrency.max(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut ctrl_c => { interrupted = true; break; }
            next = verdicts.next() => next,
        };
        let Some((source, verdict)) = next else { break };
        let verdict: Verdict = match verdict {
            Ok(v) => v,
            Err(f) => {
                failure = Some(anyhow::anyhow!("checking {}: {f}", source.key));
                break;
            }
        };
        tally.count(&verdict);
        if verdict.wants_job(args.stale_only) {
            tally.enqueued += 1;
            if !args.dry_run {
                pending.push(backfill::job(&bucket, source));
                awaiting.push(source);
            }
        }
        last_key = Some(source.key.clone());
        if pending.len() >= pacer.batch()
            && let Err(e) = pacer.send(&clients.sqs, &queue, &mut pending).await
        {
            failure = Some(e);
            break;
        }
        if pending.is_empty() {
            resume_key = last_key.clone();
        }
        progress.step(&tally);
    }
    if failure.is_none() {
        match pacer.send(&clients.sqs, &queue, &mut pending).await {
            Ok(()) => resume_key = last_key.clone(),
            Err(e) => failure = Some(e),
        }
    } else {
        // Jobs of keys checked before the failing one that were not sent yet are not counted.
        tally.enqueued -= pending.len() as u64;
    }
    progress.finish(&tally);
    let complete = failure.is_none() && !interrupted;
    let mut invalidation = None;
    if let Some(distribution) = resources.cdn_distribution_id.as_deref()
        && complete
        && !args.dry_run
        && tally.enqueued > 0
    {
        let path = format!(
            "{}*",
            imgpipe_core::pipeline::public_url("", &layout.prefix)
        );
        let later = format!(
            "aws cloudfront create-invalidation --distribution-id {distribution} --paths '{path}'"
        );
        if args.no_wait {
            eprintln!("backfill: --no-wait: once the jobs are done, run: {later}");
        } else {
            let s3 = &clients.s3;
            let wait = wait_until_current(
                s3,
                &bucket,
                &output_bucket,
                &layout,
                &awaiting,
                &preset_hash,
            );
            let wait = tokio::time::timeout(Duration::from_secs(args.wait_minutes * 60), wait);
            tokio::select! {
                done = wait => {
                    if done.is_ok() {
                        invalidation = Some(invalidate_prefix(&clients.shared, distribution, &path).await?);
                    } else {
                        eprintln!("backfill: the jobs did not all finish within {} minutes (see imgpipe status / dlq list); once they are done, run: {later}", args.wait_minutes);
                    }
                }
                _ = &mut ctrl_c => {
                    interrupted = true;
                    eprintln!("backfill: every job is sent; interrupted while waiting for them. Once they are done, run: {later}");
                }
            }
        }
    }
    let summary = Summary {
        tally: &tally,
        dry_run: args.dry_run,
        queue: (!args.dry_run).then_some(queue.as_str()),
        preset_set_hash: &preset_hash,
        last_key: resume_key.as_deref(),
        interrupted,
        invalidation,
    };
    eprintln!(
        "backfill: {} listed, {} sources: {} current, {} stale, {} missing, {} failed; {} jobs {}{}",
        tally.listed,
        tally.listed - tally.not_sources,
        tally.current,
        tally.stale,
        tally.missing,
        tally.failed,
        tally.enqueued,
        if args.dry_run {
            "would be sent (dry run)"
        } else {
            "sent"
        },
        if args.stale_only {
            " (--stale-only)"
        } else {
            ""
        }
    );
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    if let Some(e) = failure {
        if let Some(key) = &resume_key {
            eprintln!("backfill stopped; resume with: --start-after '{key}'");
        }
        return Err(e);
    }
    if interrupted {
        match &resume_key {
            Some(key) => eprintln!(
                "interrupted; every key up to '{key}' is done. Resume with: --start-after '{key}'"
            ),
            None => eprintln!("interrupted before the first key; run again to start over"),
        }
        return Ok(130);
    }
    Ok(0)
}

/// Waits until every source in `sources` has a metadata.json made with `preset_hash` (done or
/// failed, from this upload or a newer one) or no longer exists, checking the remaining ones every
/// 5 seconds: the moment a CDN invalidation can no longer be overtaken by a job still to write.
async fn wait_until_current(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    output_bucket: &str,
    layout: &OutputLayout,
    sources: &[&Listed],
    preset_hash: &str,
) {
    let mut remaining: Vec<&Listed> = sources.to_vec();
    let total = remaining.len();
    loop {
        let checks: Vec<_> = futures::stream::iter(remaining.iter().copied())
            .map(|source| async move {
                let done =
                    settled(s3, bucket, output_bucket, layout, &source.key, preset_hash).await;
                (source, done)
            })
            .buffered(16)
            .collect()
            .await;
        let mut still = Vec::new();
        for (source, done) in checks {
            match done {
                Ok(true) => {}
                Ok(false) => still.push(source),
                // A failed check is asked again next round.
                Err(f) => {
                    eprintln!("backfill: checking {}: {f}", source.key);
                    still.push(source);
                }
            }
        }
        remaining = still;
        if remaining.is_empty() {
            return;
        }
        eprintln!(
            "backfill: waiting for {} of {total} jobs before invalidating the CDN (Ctrl-C stops waiting)",
            remaining.len()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// True when `key`'s metadata.json was made with `preset_hash`, or the source is gone.
async fn settled(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    output_bucket: &str,
    layout: &OutputLayout,
    key: &str,
    preset_hash: &str,
) -> Result<bool, imgpipe_cloud::failure::Failure> {
    let metadata_key = layout.metadata_key(key);
    match store::head_tags(s3, output_bucket, &metadata_key).await? {
        Some(tags) => match tags.get(store::document_tags::PRESET_HASH) {
            Some(hash) => Ok(hash == preset_hash),
            None => Ok(store::get_metadata(s3, output_bucket, &metadata_key)
                .await?
                .is_some_and(|m| m.preset_set_hash == preset_hash)),
        },
        None => Ok(store::head(s3, bucket, key).await?.is_none()),
    }
}

/// One invalidation of the whole output prefix after a backfill's jobs are done (cheaper, and far
/// under CloudFront's in-progress limits, unlike one per image).
async fn invalidate_prefix(
    shared: &aws_config::SdkConfig,
    distribution: &str,
    path: &str,
) -> anyhow::Result<String> {
    let path = path.to_string();
    let cloudfront = aws_sdk_cloudfront::Client::new(shared);
    let ids = imgpipe_cloud::invalidation::invalidate(&cloudfront, distribution, std::slice::from_ref(&path))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))
        .context("invalidating the outputs on the CDN (the jobs are sent; run `aws cloudfront create-invalidation` yourself)")?;
    eprintln!(
        "backfill: CDN invalidation of {path} on {distribution}: {}",
        ids.join(", ")
    );
    Ok(path)
}

/// Sends jobs in batches of up to 10, no faster than the rate.
struct Pacer {
    rate: Option<f64>,
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Self {
            rate,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Jobs per SendMessageBatch: 10, fewer at a rate under 10/s so batches do not burst.
    fn batch(&self) -> usize {
        self.rate.map_or(10, |r| (r.floor() as usize).clamp(1, 10))
    }

    async fn send(
        &mut self,
        sqs: &aws_sdk_sqs::Client,
        queue: &str,
        pending: &mut Vec<ObjectEvent>,
    ) -> anyhow::Result<()> {
        for chunk in pending.chunks(10) {
            if let Some(rate) = self.rate {
                let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            backfill::send_jobs(sqs, queue, chunk)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            self.sent += chunk.len() as u64;
        }
        pending.clear();
        Ok(())
    }
}

/// A progress bar on a terminal, a plain line every 5 seconds otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        total: u64,
        done: u64,
        started: Instant,
        last: Instant,
    },
}

impl Progress {
    fn new(total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} sources  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            Self::Bar(bar)
        } else {
            Self::Lines {
                total,
                done: 0,
                started: Instant::now(),
                last: Instant::now(),
            }
        }
    }

    fn step(&mut self, tally: &Tally) {
        match self {
            Self::Bar(bar) => {
                bar.inc(1);
                bar.set_message(format!(
                    "stale {}  missing {}  enqueued {}",
                    tally.stale, tally.missing, tally.enqueued
                ));
            }
            Self::Lines {
                total,
                done,
                started,
                last,
            } => {
                *done += 1;
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    let rate = *done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    let eta =
                        Duration::from_secs(((*total - *done) as f64 / rate.max(1e-3)) as u64);
                    eprintln!(
                        "backfill: {done}/{total} sources checked, {} enqueued, {rate:.0}/s, ETA {}",
                        tally.enqueued,
                        humantime::format_duration(eta)
                    );
                }
            }
        }
    }

    fn finish(&self, _tally: &Tally) {
        if let Self::Bar(bar) = self {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_or_without_per_second() {
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("2.5/s"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn slow_rates_send_small_batches() {
        assert_eq!(Pacer::new(None).batch(), 10);
        assert_eq!(Pacer::new(Some(3.0)).batch(), 3);
        assert_eq!(Pacer::new(Some(0.5)).batch(), 1);
        assert_eq!(Pacer::new(Some(500.0)).batch(), 10);
    }
}
