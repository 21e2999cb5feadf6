//! The seeded scheduler: users act (upload, delete, re-upload, change presets, redrive) at
//! moments the seed picks, workers receive batches in the seed's order, and each batch runs
//! through the real [`Handler`] and the worker's own settlement ([`queue::settle`]) against the
//! simulated cloud, until the system is quiet.

use std::collections::HashMap;
use std::sync::Arc;

use imgpipe_cloud::effects::Effects;
use imgpipe_cloud::{BatchFunction, Config, Handler, queue};
use imgpipe_core::PresetSet;

use crate::rng::Rng;
use crate::world::{Faults, Sim, World};

pub const INGEST: &str = "ingest";
pub const OUTPUT: &str = "derivatives";
pub const JOBS: &str = "sim://jobs";
pub const GPU: &str = "sim://gpu";
pub const DLQ: &str = "sim://dlq";
pub const TOPIC: &str = "arn:sim:sns:events";
pub const WEBHOOKS: &str = "sim://webhooks";
pub const WEBHOOK_DLQ: &str = "sim://webhooks-dlq";
/// The two webhook endpoints of the webhook scenario; the second is down for good.
pub const ENDPOINT_UP: &str = "https://app.example/hooks/imgpipe";
pub const ENDPOINT_DOWN: &str = "https://down.example/hooks/imgpipe";
/// The queues' visibility timeout and maxReceiveCount (the template's: 180 s, 5).
pub const VISIBILITY: u64 = 180;
pub const MAX_RECEIVES: u32 = 5;
const MAX_STEPS: usize = 3000;

/// The small preset sets the scenarios use (a JPEG and a WebP; the second renames one).
pub const PRESETS_A: &str = r#"
[[preset]]
name = "thumb"
width = 48
height = 48
fit = "cover"
format = "jpeg"
quality = 70

[[preset]]
name = "small"
width = 96
height = 96
fit = "inside"
format = "webp"
quality = 70
"#;
pub const PRESETS_B: &str = r#"
[[preset]]
name = "thumb"
width = 40
height = 40
fit = "cover"
format = "jpeg"
quality = 70

[[preset]]
name = "tiny"
width = 24
height = 24
fit = "inside"
format = "webp"
quality = 70
"#;

/// The focal-point scenario's set: a cover that follows the app's point (re-made when it changes)
/// and one that keeps to the centre (never re-made).
pub const PRESETS_FOCUS: &str = r#"
[[preset]]
name = "thumb"
width = 32
height = 32
fit = "cover"
gravity = "auto"
format = "jpeg"
quality = 70

[[preset]]
name = "strip"
width = 48
height = 16
fit = "cover"
format = "webp"
quality = 70
"#;

pub fn presets(text: &str) -> PresetSet {
    PresetSet::from_file_text("sim.toml", text).expect("sim presets parse")
}

/// What a user or operator does.
#[derive(Debug, Clone)]
pub enum Action {
    /// An upload (or re-upload) to the ingest bucket; S3 sends ObjectCreated.
    Upload {
        key: &'static str,
        bytes: &'static [u8],
    },
    /// A delete; S3 sends ObjectRemoved.
    Delete { key: &'static str },
    /// The preset set changes to [`PRESETS_B`], then `imgpipe backfill` sends a job per source.
    ChangePresets,
    /// `imgpipe dlq redrive`: every letter back to the jobs queue, marked redriven.
    Redrive,
    /// The API sets the source's focal point (`PUT /v1/images/{id}/focus`): a copy onto itself
    /// with a new `focus` user metadata, same bytes and ETag; S3 sends ObjectCreated:Copy.
    SetFocus {
        key: &'static str,
        focus: &'static str,
    },
    /// S3 delivers the last upload's ObjectCreated notification again (at least once).
    Renotify { key: &'static str },
    /// The next `reads` GetObject calls of `key` (any bucket) fail: an outage of one object.
    BreakReads { key: &'static str, reads: u32 },
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::Upload { key, bytes } => format!(
                "upload {key} ({} bytes, ETag {})",
                bytes.len(),
                crate::world::etag_of(bytes)
            ),
            Action::Delete { key } => format!("delete {key}"),
            Action::ChangePresets => "preset set changed; backfill jobs sent".into(),
            Action::Redrive => "dlq redrive".into(),
            Action::SetFocus { key, focus } => format!("the app sets {key}'s focus to {focus}"),
            Action::Renotify { key } => format!("S3 notifies {key}'s upload again"),
            Action::BreakReads { key, reads } => format!("the next {reads} reads of {key} fail"),
        }
    }
}

/// How a source must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Processed (or, under injected faults, failed after retries with a letter).
    Good,
    /// A bad file: failed for good, with a letter.
    Bad,
}

/// A scenario: what happens, in order, and how each key must end.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub actions: Vec<Action>,
    pub expect: Vec<(&'static str, Expect)>,
    /// Source reads of these keys fail this many times (a store outage on one object).
    pub broken_reads: Vec<(&'static str, u32)>,
    /// Manifest scenarios route through the GPU queue.
    pub routing: bool,
    /// Every action happens before any worker receives (the events wait together).
    pub eager: bool,
    /// After the faults end, the operator redrives the DLQ once (and every upload must finish);
    /// without, the state the system reached on its own is checked.
    pub operator_redrive: bool,
    /// Events also go to two webhook endpoints (one down) through the webhook sender.
    pub webhooks: bool,
    /// What the web serves (URL imports).
    pub web: Vec<(&'static str, &'static [u8])>,
    /// The URL items of a manifest and how each must end: (manifest key, index, `None` for
    /// imported, or the refusal class).
    pub imports: Vec<(&'static str, usize, Option<&'static str>)>,
    /// A manifest this scenario uploads, and the counts its last `imgpipe.batch.done` must carry:
    /// (key, items, done, failed).
    pub manifest: Option<(&'static str, u64, u64, u64)>,
    /// Processed with [`PRESETS_FOCUS`] (covers that follow the app's focal point) instead of
    /// [`PRESETS_A`]; the documents' focus and crops are then checked against the sources'.
    pub focus: bool,
}

impl Default for Scenario {
    /// No actions, no expectations; jobs on the CPU path, actions at the scheduler's moments,
    /// no webhooks, no web, and the operator's redrive at the end.
    fn default() -> Self {
        Self {
            name: "",
            actions: Vec::new(),
            expect: Vec::new(),
            broken_reads: Vec::new(),
            routing: false,
            eager: false,
            operator_redrive: true,
            webhooks: false,
            web: Vec::new(),
            imports: Vec::new(),
            manifest: None,
            focus: false,
        }
    }
}

/// How the scheduler behaves.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// Chance (‰) that a user acts before a worker's next receive, while work is queued.
    pub act_per_mille: u32,
    /// Largest batch a receive takes.
    pub max_batch: u64,
    /// Chance (‰) that SQS hands a received message out a second time.
    pub duplicate_per_mille: u32,
}

impl Knobs {
    pub const CALM: Knobs = Knobs {
        act_per_mille: 0,
        max_batch: 1,
        duplicate_per_mille: 0,
    };
}

/// What one schedule did.
pub struct Outcome {
    pub world: Arc<World>,
    pub presets_hash: String,
    pub steps: usize,
    pub quiet: bool,
    /// No call failed at random (only the scenario's own outages and single faults).
    pub calm: bool,
    pub config: Arc<Config>,
}

fn config(routing: bool, presets_text: &str) -> Config {
    let mut vars: HashMap<&str, &str> = HashMap::from([
        ("IMGPIPE_INGEST_BUCKET", INGEST),
        ("IMGPIPE_OUTPUT_BUCKET", OUTPUT),
        ("IMGPIPE_DLQ_URL", DLQ),
        ("IMGPIPE_EVENTS_TOPIC_ARN", TOPIC),
        ("IMGPIPE_CDN_DISTRIBUTION_ID", "SIMCDN"),
        ("IMGPIPE_METRICS", "off"),
        ("IMGPIPE_CONCURRENCY", "1"),
        ("IMGPIPE_MAX_ATTEMPTS", "5"),
        ("IMGPIPE_QUEUE_URL", JOBS),
    ]);
    if routing {
        vars.insert("IMGPIPE_IMPORT_ALLOW_HOSTS", "images.example");
        vars.insert("IMGPIPE_GPU_QUEUE_URL", GPU);
        vars.insert("IMGPIPE_MANIFEST_PREFIX", "manifests/");
    }
    let mut config = Config::from_lookup(|v| vars.get(v).map(|s| s.to_string())).expect("config");
    config.presets = presets(presets_text);
    config
}

/// The GPU worker's configuration: the same, without routing (it processes what it receives).
fn gpu_config(cpu: &Config) -> Config {
    let mut config = config(false, PRESETS_A);
    config.presets = cpu.presets.clone();
    config
}

/// An SQS client for the drivers' receive loop only; the simulator never uses it (every call of
/// the flows goes through the effect boundary), and an accidental use fails at once.
fn unused_sqs() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The webhook sender, as `imgpipe-webhooks` runs it, on the simulated queues and endpoints.
fn sender(world: &Arc<World>) -> Arc<imgpipe_cloud::webhook_sender::Sender> {
    use imgpipe_cloud::webhook_sender::{Sender, WebhookConfig};
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let urls = format!("{ENDPOINT_UP},{ENDPOINT_DOWN}");
    let vars: HashMap<&str, &str> = HashMap::from([
        ("IMGPIPE_WEBHOOK_URLS", urls.as_str()),
        ("IMGPIPE_WEBHOOK_SECRET", SECRET),
        ("IMGPIPE_WEBHOOK_QUEUE_URL", WEBHOOKS),
        ("IMGPIPE_WEBHOOK_DLQ_URL", WEBHOOK_DLQ),
        ("IMGPIPE_CONCURRENCY", "1"),
    ]);
    let config =
        WebhookConfig::from_lookup(|v| vars.get(v).map(|s| s.to_string())).expect("webhook config");
    let signer = imgpipe_cloud::webhook::Signer::new(SECRET).expect("secret");
    let sim = Sim(Arc::clone(world));
    Arc::new(Sender::with_effects(
        Arc::new(sim.clone()),
        Arc::new(sim),
        unused_sqs(),
        signer,
        config,
    ))
}

fn handler(world: &Arc<World>, config: Config) -> Arc<Handler> {
    let sim = Sim(Arc::clone(world));
    let effects = Effects {
        store: Arc::new(sim.clone()),
        queues: Arc::new(sim.clone()),
        topic: Arc::new(sim.clone()),
        cdn: Some(Arc::new(sim.clone())),
        web: Arc::new(sim),
        clock: Arc::new(crate::world::VirtualClock(Arc::clone(world))),
    };
    Arc::new(Handler::with_effects(effects, unused_sqs(), config))
}

/// Runs `scenario` under `seed`, `faults` and `knobs` until quiet (or the step limit).
pub fn run(scenario: &Scenario, seed: u64, mut faults: Faults, knobs: Knobs) -> Outcome {
    for (key, n) in &scenario.broken_reads {
        faults.broken_reads.insert(key.to_string(), *n);
    }
    let calm = faults.fail_per_mille == 0;
    let world = World::new(faults, seed);
    for bucket in [INGEST, OUTPUT] {
        world.add_bucket(bucket);
    }
    world.add_queue(JOBS, VISIBILITY, Some((MAX_RECEIVES, DLQ)));
    world.add_queue(GPU, VISIBILITY, Some((MAX_RECEIVES, DLQ)));
    world.add_queue(DLQ, 30, None);
    world.add_queue(WEBHOOKS, 60, Some((20, WEBHOOK_DLQ)));
    world.add_queue(WEBHOOK_DLQ, 30, None);
    // S3 notifies the jobs queue of what lands in the ingest bucket (URL imports write there).
    world.notify_on(INGEST, JOBS);
    for (url, bytes) in &scenario.web {
        world.serve(url, bytes);
    }
    if scenario.webhooks {
        world.subscribe_webhooks(WEBHOOKS, &[ENDPOINT_DOWN]);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut rng = Rng::new(seed);
    let mut cpu_config = config(
        scenario.routing,
        if scenario.focus {
            PRESETS_FOCUS
        } else {
            PRESETS_A
        },
    );
    let mut steps = 0;
    let mut quiet = false;
    runtime.block_on(async {
        let mut cpu = handler(&world, cpu_config.clone());
        let mut gpu = handler(&world, gpu_config(&cpu_config));
        let mut webhooks = sender(&world);
        let mut actions: std::collections::VecDeque<Action> =
            scenario.actions.iter().cloned().collect();
        let mut next_action = actions.pop_front();
        let mut final_redrive = !scenario.operator_redrive;
        let mut notified: HashMap<&str, String> = HashMap::new();
        while steps < MAX_STEPS {
            steps += 1;
            let queued = world.queue(JOBS).messages.len()
                + world.queue(GPU).messages.len()
                + world.queue(WEBHOOKS).messages.len();
            if let Some(action) = next_action.clone()
                && (queued == 0 || scenario.eager || rng.chance(knobs.act_per_mille))
            {
                world.note(format!("t={} user: {}", world.now(), action.describe()));
                match &action {
                    Action::Upload { key, bytes } => {
                        let etag =
                            world.user_put(INGEST, key, bytes, &[("imgpipe-status", "pending")]);
                        let sequencer = world.next_sequencer();
                        let body = crate::world::s3_event(
                            INGEST,
                            "ObjectCreated:Put",
                            key,
                            Some(bytes.len() as u64),
                            Some(&etag),
                            sequencer,
                        );
                        world.enqueue(JOBS, body.clone(), Vec::new());
                        notified.insert(*key, body);
                    }
                    Action::SetFocus { key, focus } => {
                        if let Some(etag) = world.user_set_metadata(INGEST, key, "focus", focus) {
                            let sequencer = world.next_sequencer();
                            let size = world.object(INGEST, key).map(|o| o.bytes.len() as u64);
                            let body = crate::world::s3_event(
                                INGEST,
                                "ObjectCreated:Copy",
                                key,
                                size,
                                Some(&etag),
                                sequencer,
                            );
                            world.enqueue(JOBS, body.clone(), Vec::new());
                            notified.insert(*key, body);
                        }
                    }
                    Action::Renotify { key } => {
                        world.enqueue(JOBS, notified[key].clone(), Vec::new());
                    }
                    Action::BreakReads { key, reads } => world.break_reads(key, *reads),
                    Action::Delete { key } => {
                        world.user_delete(INGEST, key);
                        let sequencer = world.next_sequencer();
                        world.enqueue(
                            JOBS,
                            crate::world::s3_event(
                                INGEST,
                                "ObjectRemoved:Delete",
                                key,
                                None,
                                None,
                                sequencer,
                            ),
                            Vec::new(),
                        );
                    }
                    Action::ChangePresets => {
                        cpu_config.presets = presets(PRESETS_B);
                        cpu = handler(&world, cpu_config.clone());
                        gpu = handler(&world, gpu_config(&cpu_config));
                        for key in world.keys(INGEST) {
                            let object = world.object(INGEST, &key).unwrap();
                            let listed = imgpipe_cloud::store::Listed {
                                key: key.clone(),
                                size: object.bytes.len() as u64,
                                etag: Some(object.etag.clone()),
                                modified: 0,
                            };
                            world.enqueue(
                                JOBS,
                                imgpipe_cloud::backfill::job(INGEST, &listed).to_body(),
                                Vec::new(),
                            );
                        }
                    }
                    Action::Redrive => {
                        let letters = world.queue(DLQ).messages;
                        world.drain(DLQ);
                        let mut sent = std::collections::HashSet::new();
                        for letter in letters {
                            // One job per source, as `imgpipe dlq redrive` does.
                            if !sent.insert(letter.body.clone()) {
                                continue;
                            }
                            let kind = letter
                                .attributes
                                .iter()
                                .find(|(n, _, _)| n == queue::attributes::ERROR_KIND)
                                .map_or("max_receives".to_string(), |(_, v, _)| v.clone());
                            world.enqueue(
                                JOBS,
                                letter.body,
                                vec![(queue::attributes::REDRIVEN.to_string(), kind, false)],
                            );
                        }
                    }
                }
                next_action = actions.pop_front();
                continue;
            }
            let ready: Vec<&str> = [JOBS, GPU, WEBHOOKS]
                .into_iter()
                .filter(|q| world.visible(q) > 0)
                .collect();
            if ready.is_empty() {
                match world.next_visible(&[JOBS, GPU, WEBHOOKS]) {
                    Some(at) => world.advance(at.saturating_sub(world.now()).max(1)),
                    None if next_action.is_none()
                        && !final_redrive
                        && !world.queue(DLQ).messages.is_empty() =>
                    {
                        // The outage is over: the operator redrives the DLQ once, and the system
                        // must finish every upload (nothing is lost).
                        final_redrive = true;
                        world.calm();
                        next_action = Some(Action::Redrive);
                    }
                    None if next_action.is_none() => {
                        quiet = true;
                        break;
                    }
                    None => {}
                }
                continue;
            }
            let url = ready[rng.below(ready.len() as u64) as usize];
            let max = 1 + rng.below(knobs.max_batch) as usize;
            let duplicate = rng.chance(knobs.duplicate_per_mille);
            let messages = world.receive(url, max, &mut rng, duplicate);
            if messages.is_empty() {
                continue;
            }
            let ids: Vec<String> = messages
                .iter()
                .filter_map(|m| m.message_id().map(str::to_string))
                .collect();
            world.note(format!(
                "t={} worker receives {ids:?} from {url}",
                world.now()
            ));
            let batch: Vec<_> = messages
                .into_iter()
                .map(imgpipe_cloud::worker::to_lambda_message)
                .collect();
            let queues = Sim(Arc::clone(&world));
            let (image, webhook_sender) = match url {
                GPU => (Some(Arc::clone(&gpu)), None),
                WEBHOOKS => (None, Some(Arc::clone(&webhooks))),
                _ => (Some(Arc::clone(&cpu)), None),
            };
            let work = async move {
                let results = match (image, webhook_sender) {
                    (Some(handler), _) => handler.handle_batch(batch).await,
                    (None, Some(sender)) => sender.handle_batch(batch).await,
                    (None, None) => unreachable!("every queue has its consumer"),
                };
                queue::settle(&queues, url, &results).await;
            };
            let killed = tokio::select! {
                biased;
                _ = world.crash.notified() => true,
                _ = work => false,
            };
            if killed || world.crashed() {
                // SIGKILL (after the batch's last effect, too): a new process; the batch's
                // messages stay hidden until their visibility runs out.
                if !killed {
                    let _ = futures::FutureExt::now_or_never(world.crash.notified());
                }
                world.restart();
                cpu = self::handler(&world, cpu_config.clone());
                gpu = self::handler(&world, gpu_config(&cpu_config));
                webhooks = sender(&world);
            }
            world.advance(1);
        }
    });
    Outcome {
        presets_hash: cpu_config.presets.hash().to_string(),
        config: Arc::new(cpu_config),
        world,
        steps,
        quiet,
        calm,
    }
}
