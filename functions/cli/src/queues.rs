//! `imgpipe status` and `imgpipe dlq list|redrive|purge`: the queues of a stack, for operators.

use std::collections::BTreeMap;

use anyhow::bail;
use imgpipe_cloud::dlq::{self, Letter, Selection};
use imgpipe_cloud::queue;

use crate::resources::{Clients, ResourceArgs, Resources, required};

/// `imgpipe status`'s options.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// Dead-lettered messages read (not consumed) per DLQ for the failure kinds.
    #[arg(long, default_value_t = 100)]
    sample: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `imgpipe dlq`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered jobs (key, kind, message, attempts, age) without consuming them.
    List {
        #[command(flatten)]
        target: DlqTarget,
        /// Most letters listed.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Send dead-lettered jobs back to their queue (after fixing the cause).
    Redrive {
        #[command(flatten)]
        target: DlqTarget,
        /// Only letters of this failure kind (see `dlq list`).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long)]
        max: Option<u64>,
        /// Use SQS's StartMessageMoveTask (all letters, no --kind/--max). It keeps each message's
        /// receive count, so a job may arrive with its attempts used up; the default re-sends.
        #[arg(long, conflicts_with_all = ["kind", "max"])]
        move_task: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete every dead-lettered job.
    Purge {
        #[command(flatten)]
        target: DlqTarget,
        /// Confirm: the letters are gone for good.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead-letter queue.
#[derive(clap::Args, Debug)]
pub struct DlqTarget {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The GPU queue's DLQ instead of the jobs queue's.
    #[arg(long)]
    gpu: bool,
}

impl DlqTarget {
    /// (DLQ URL, the queue its letters go back to).
    fn queues(&self, resources: &Resources) -> anyhow::Result<(String, String)> {
        Ok(if self.gpu {
            (
                required(&resources.gpu_dlq, "--gpu-dlq-url", "GpuDlqUrl")?.to_string(),
                required(&resources.gpu_queue, "--gpu-queue-url", "GpuJobsQueueUrl")?.to_string(),
            )
        } else {
            (
                required(&resources.jobs_dlq, "--dlq-url", "DlqUrl")?.to_string(),
                required(&resources.jobs_queue, "--queue-url", "JobsQueueUrl")?.to_string(),
            )
        })
    }
}

/// One queue's line of `imgpipe status`.
#[derive(Debug, serde::Serialize)]
struct QueueStatus {
    name: &'static str,
    url: String,
    visible: u64,
    in_flight: u64,
    /// Age of the oldest message, seconds: for a DLQ, since the oldest letter was dead-lettered
    /// (read from the letters); for a work queue, SQS's `ApproximateAgeOfOldestMessage` from
    /// CloudWatch (reading its messages would take them from the workers; the metric is per
    /// minute, a few minutes late, and absent where CloudWatch has none, as on LocalStack).
    oldest_age_s: Option<u64>,
}

/// The whole status.
#[derive(Debug, serde::Serialize)]
struct Status {
    queues: Vec<QueueStatus>,
    /// Failure kinds among the sampled dead letters (all DLQs together).
    failures: BTreeMap<String, u64>,
    /// Dead letters read for `failures`.
    sampled: u64,
}

/// `imgpipe status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let clients = Clients::load().await;
    let r = Resources::resolve(&clients.shared, &args.resources).await?;
    let named: [(&'static str, &Option<String>, bool); 6] = [
        ("jobs", &r.jobs_queue, false),
        ("jobs-dlq", &r.jobs_dlq, true),
        ("gpu", &r.gpu_queue, false),
        ("gpu-dlq", &r.gpu_dlq, true),
        ("webhooks", &r.webhook_queue, false),
        ("webhooks-dlq", &r.webhook_dlq, true),
    ];
    let mut status = Status {
        queues: Vec::new(),
        failures: BTreeMap::new(),
        sampled: 0,
    };
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&clients.shared);
    for (name, url, is_dlq) in named {
        let Some(url) = url else { continue };
        let depth = queue::depth(&clients.sqs, url)
            .await
            .map_err(|f| anyhow::anyhow!("{name} queue: {f}"))?;
        let mut oldest_age_s = None;
        if !is_dlq && depth.visible + depth.in_flight > 0 {
            oldest_age_s = oldest_age(&cloudwatch, url).await;
        }
        if is_dlq && depth.visible > 0 {
            let letters = dlq::peek(&clients.sqs, url, args.sample)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            oldest_age_s = letters.iter().map(|l| l.age_s).max();
            status.sampled += letters.len() as u64;
            for (kind, count) in dlq::kinds(&letters) {
                *status.failures.entry(kind).or_default() += count;
            }
        }
        status.queues.push(QueueStatus {
            name,
            url: url.clone(),
            visible: depth.visible,
            in_flight: depth.in_flight,
            oldest_age_s,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "{:<13} {:>9} {:>10} {:>12}",
        "queue", "waiting", "in flight", "oldest"
    );
    for q in &status.queues {
        println!(
            "{:<13} {:>9} {:>10} {:>12}",
            q.name,
            q.visible,
            q.in_flight,
            q.oldest_age_s.map_or("-".into(), age)
        );
    }
    if status.failures.is_empty() {
        println!("no dead-lettered jobs");
    } else {
        println!("failure kinds in the DLQs ({} read):", status.sampled);
        for (kind, count) in &status.failures {
            println!("  {kind:<20} {count}");
        }
    }
    Ok(())
}

/// The latest `ApproximateAgeOfOldestMessage` (maximum over a minute) of the queue at `url` in the
/// last 15 minutes; `None` without data or when CloudWatch cannot be read (said on stderr).
async fn oldest_age(cloudwatch: &aws_sdk_cloudwatch::Client, url: &str) -> Option<u64> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let name = url.rsplit('/').next()?;
    let now = std::time::SystemTime::now();
    let result = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(Dimension::builder().name("QueueName").value(name).build())
        .start_time(DateTime::from(now - std::time::Duration::from_secs(900)))
        .end_time(DateTime::from(now))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await;
    match result {
        Ok(out) => out
            .datapoints()
            .iter()
            .filter_map(|d| Some((d.timestamp()?.secs(), d.maximum()?)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, age)| age.max(0.0) as u64),
        Err(e) => {
            eprintln!(
                "CloudWatch GetMetricStatistics for {name}: {} (oldest age left empty)",
                imgpipe_cloud::aws_error::brief(&e)
            );
            None
        }
    }
}

fn age(seconds: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

/// `imgpipe dlq …`.
pub async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    let clients = Clients::load().await;
    match command {
        DlqCommand::List { target, max, json } => {
            let r = Resources::resolve(&clients.shared, &target.resources).await?;
            let (dlq_url, _) = target.queues(&r)?;
            let letters = dlq::peek(&clients.sqs, &dlq_url, max)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            // One line per (key, ETag), with the number of letters for it.
            let letters = dlq::by_source(letters);
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print_letters(&letters);
            }
        }
        DlqCommand::Redrive {
            target,
            kind,
            max,
            move_task,
            json,
        } => {
            let r = Resources::resolve(&clients.shared, &target.resources).await?;
            let (dlq_url, queue_url) = target.queues(&r)?;
            let report = if move_task {
                dlq::move_task(&clients.sqs, &dlq_url, &queue_url).await
            } else {
                dlq::redrive(&clients.sqs, &dlq_url, &queue_url, &Selection { kind, max }).await
            }
            .map_err(|f| anyhow::anyhow!("{f}"))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} sent back to {queue_url} ({}); {} left in the DLQ; {} extra copies of a source deleted",
                    report.moved, report.method, report.left, report.duplicates
                );
            }
        }
        DlqCommand::Purge { target, yes } => {
            if !yes {
                bail!("purging deletes every dead-lettered job for good; add --yes to confirm");
            }
            let r = Resources::resolve(&clients.shared, &target.resources).await?;
            let (dlq_url, _) = target.queues(&r)?;
            dlq::purge(&clients.sqs, &dlq_url)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            println!("purged {dlq_url}");
        }
    }
    Ok(())
}

fn print_letters(letters: &[Letter]) {
    if letters.is_empty() {
        println!("the DLQ is empty");
        return;
    }
    println!(
        "{:<40} {:<18} {:>8} {:>10}  message",
        "key", "kind", "attempts", "age"
    );
    for l in letters {
        let key = match (l.key.as_deref(), l.copies) {
            (None, _) => "-".to_string(),
            (Some(key), 1) => key.to_string(),
            (Some(key), n) => format!("{key} (×{n})"),
        };
        println!(
            "{:<40} {:<18} {:>8} {:>10}  {}",
            key,
            l.kind,
            l.attempts.map_or("-".into(), |a| a.to_string()),
            age(l.age_s),
            l.message
        );
    }
    let copies: u32 = letters.iter().map(|l| l.copies).sum();
    println!(
        "{} dead-lettered jobs ({copies} letters: a job can be lettered again after a crash)",
        letters.len()
    );
}
