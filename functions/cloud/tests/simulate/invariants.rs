//! What must hold once the system is quiet, whatever the schedule did. Quiet means: no action
//! left, the work queues empty, and, when the DLQ held letters, the operator's redrive after the
//! faults ended has run to quiet as well (so "nothing is lost" is checked end to end: a redrive
//! finishes every upload).

use std::collections::HashMap;

use imgpipe_cloud::dlq::{Letter, by_source};
use imgpipe_core::Metadata;
use imgpipe_core::events::{OutputRef, image_event};
use imgpipe_core::metadata::Status;

use crate::driver::{
    DLQ, ENDPOINT_DOWN, ENDPOINT_UP, Expect, GPU, INGEST, JOBS, OUTPUT, Outcome, Scenario,
    WEBHOOK_DLQ, WEBHOOKS,
};

/// The violated invariants (empty: all hold).
pub fn check(scenario: &Scenario, o: &Outcome) -> Vec<String> {
    let world = &o.world;
    let mut bad = Vec::new();
    // No message is lost, and the system settles.
    if !o.quiet {
        bad.push(format!("not quiet after {} steps (livelock?)", o.steps));
    }
    for url in [JOBS, GPU, WEBHOOKS] {
        let left = world.queue(url).messages.len();
        if left > 0 {
            bad.push(format!("{left} message(s) left on {url}"));
        }
    }
    let published = world.published();
    // Every copy of an event is byte-identical.
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for p in &published {
        if let Some(first) = by_id.insert(&p.event_id, &p.message)
            && first != p.message
        {
            bad.push(format!("two different events with id {}", p.event_id));
        }
    }
    let letters = by_source(
        world
            .peek(DLQ)
            .iter()
            .map(|m| Letter::from_message(m, 0))
            .collect(),
    );
    let has_letter = |key: &str, etag: &str| {
        letters.iter().any(|l| {
            l.key.as_deref() == Some(key)
                && l.etag
                    .as_deref()
                    .is_none_or(|e| e.trim_matches('"') == etag)
        })
    };
    // A manifest's batch.done is published once its last item ended, with the right counts.
    if let Some((manifest, items, done, failed)) = scenario.manifest {
        let last = published
            .iter()
            .filter(|p| p.event_type == "imgpipe.batch.done")
            .filter_map(|p| serde_json::from_str::<serde_json::Value>(&p.message).ok())
            .rfind(|v| v["data"]["manifest"]["key"] == manifest);
        match last {
            None => bad.push(format!("{manifest}: imgpipe.batch.done was not published")),
            Some(event) => {
                let counts = &event["data"]["counts"];
                let got = (
                    counts["items"].as_u64(),
                    counts["done"].as_u64(),
                    counts["failed"].as_u64(),
                );
                if got != (Some(items), Some(done), Some(failed)) {
                    bad.push(format!(
                        "{manifest}: batch.done counts (items, done, failed) = {got:?}, expected ({items}, {done}, {failed})"
                    ));
                }
            }
        }
    }
    // Every event reaches each webhook endpoint (a 2xx, the event's id as webhook-id, the event as
    // the body) or lands in the webhook DLQ after its schedule.
    if scenario.webhooks {
        let received = world.received();
        let webhook_letters = world.peek(WEBHOOK_DLQ);
        let lettered = |id: &str, url: &str| {
            webhook_letters.iter().any(|m| {
                let attribute = |name: &str| {
                    m.message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .map(str::to_string)
                };
                use imgpipe_cloud::webhook_sender::attributes::{EVENT_ID, URL};
                attribute(EVENT_ID).as_deref() == Some(id) && attribute(URL).as_deref() == Some(url)
            })
        };
        for p in &published {
            let to = |url: &'static str| {
                received
                    .iter()
                    .filter(move |r| r.url == url && r.webhook_id == p.event_id)
            };
            if !to(ENDPOINT_UP).any(|r| (200..300).contains(&r.status)) {
                bad.push(format!(
                    "event {} ({}) never reached {ENDPOINT_UP} with a 2xx",
                    p.event_id, p.event_type
                ));
            }
            if to(ENDPOINT_UP)
                .chain(to(ENDPOINT_DOWN))
                .any(|r| r.body != p.message)
            {
                bad.push(format!(
                    "a delivery with webhook-id {} carried another body",
                    p.event_id
                ));
            }
            if !lettered(&p.event_id, ENDPOINT_DOWN) {
                bad.push(format!(
                    "event {} never reached {ENDPOINT_DOWN} and is not in the webhook DLQ",
                    p.event_id
                ));
            }
        }
    }
    let layout = &o.config.layout;
    // Every URL of a manifest ends with one outcome: imported (then processed like an upload) or
    // rejected with its class.
    let mut expect: Vec<(String, Expect)> = scenario
        .expect
        .iter()
        .map(|(k, e)| (k.to_string(), *e))
        .collect();
    for (manifest, index, class) in &scenario.imports {
        let key = imgpipe_cloud::importer::outcome_key(layout, manifest, *index);
        let Some(found) = world.object(OUTPUT, &key) else {
            bad.push(format!("{manifest} URL {index}: no outcome at {key}"));
            continue;
        };
        let outcome: serde_json::Value = serde_json::from_slice(&found.bytes).unwrap_or_default();
        match class {
            None if outcome["status"] == "imported" => match outcome["key"].as_str() {
                Some(imported) => expect.push((imported.to_string(), Expect::Good)),
                None => bad.push(format!("{manifest} URL {index}: imported without a key")),
            },
            Some(class) if outcome["status"] == "rejected" && outcome["class"] == *class => {}
            _ => bad.push(format!(
                "{manifest} URL {index}: outcome {outcome}, expected {}",
                class.map_or("imported".to_string(), |c| format!("rejected as {c}"))
            )),
        }
    }
    for (key, expect) in &expect {
        let key = key.as_str();
        let dir = format!("{}{key}/", layout.prefix);
        let metadata_key = layout.metadata_key(key);
        let tombstone_key = format!("{dir}{}", imgpipe_cloud::deletion::TOMBSTONE);
        let outputs: Vec<String> = world
            .keys(OUTPUT)
            .into_iter()
            .filter(|k| k.starts_with(&dir))
            .collect();
        let Some(source) = world.object(INGEST, key) else {
            // Removed: nothing of it is left but its tombstone, and the removal was announced.
            if let Some(k) = outputs.iter().find(|k| **k != tombstone_key) {
                bad.push(format!("{key} was deleted but {k} is left"));
            }
            if world.object(OUTPUT, &tombstone_key).is_none() {
                bad.push(format!("{key} was deleted but has no tombstone"));
            }
            let announced = published.iter().any(|p| {
                p.event_type == "imgpipe.image.deleted"
                    && serde_json::from_str::<serde_json::Value>(&p.message)
                        .is_ok_and(|v| v["data"]["source"]["key"] == *key)
            });
            if !announced {
                bad.push(format!(
                    "{key} was deleted but imgpipe.image.deleted was not published"
                ));
            }
            // The CDN was told to forget its outputs.
            let path = format!("/{}", dir.replace(' ', "%20"));
            if !world
                .invalidations()
                .iter()
                .flatten()
                .any(|p| p.starts_with(&path))
            {
                bad.push(format!(
                    "{key} was deleted but the CDN was not told to forget {path}"
                ));
            }
            continue;
        };
        // Every upload ends with one final metadata.json for its ETag.
        let Some(document) = world.object(OUTPUT, &metadata_key) else {
            bad.push(format!("{key} has no metadata.json"));
            continue;
        };
        let metadata: Metadata = match serde_json::from_slice(&document.bytes) {
            Ok(m) => m,
            Err(e) => {
                bad.push(format!("{key}: metadata.json unreadable: {e}"));
                continue;
            }
        };
        if metadata.source.etag.as_deref().map(|e| e.trim_matches('"'))
            != Some(source.etag.as_str())
        {
            bad.push(format!(
                "{key}: metadata.json is for ETag {:?}, the source is {}",
                metadata.source.etag, source.etag
            ));
        }
        match (metadata.status, expect) {
            (Status::Done, Expect::Bad) => bad.push(format!("{key} is a bad file but ended done")),
            (Status::Done, Expect::Good) => {
                if metadata.preset_set_hash != o.presets_hash {
                    bad.push(format!("{key} ended with another preset set's outputs"));
                }
                // Every derivative it lists exists; nothing else is left in its folder.
                for d in &metadata.derivatives {
                    if world.object(OUTPUT, &d.key).is_none() {
                        bad.push(format!("{key}: listed derivative {} does not exist", d.key));
                    }
                }
                for k in &outputs {
                    if *k != metadata_key && !metadata.derivatives.iter().any(|d| d.key == *k) {
                        bad.push(format!("{key}: {k} is left in its folder but not listed"));
                    }
                }
                if scenario.focus {
                    bad.extend(focus_followed(key, &source, &metadata, o));
                }
            }
            (Status::Failed, expect) => {
                let retryable = metadata.error.as_ref().is_some_and(|e| e.retryable);
                // A bad file's document keeps its real reason, unless the store failed at random.
                if *expect == Expect::Bad && retryable && o.calm {
                    bad.push(format!(
                        "{key}'s document lost its real reason: {:?}",
                        metadata.error
                    ));
                }
                // Faults end before the operator's redrive, so a good file ends done; without
                // one, only a retryable failure (retries ran out under random faults) is allowed.
                if *expect == Expect::Good && (scenario.operator_redrive || o.calm || !retryable) {
                    bad.push(format!(
                        "{key} is a good file but ended failed: {:?}",
                        metadata.error
                    ));
                }
                // Every failure has its letter.
                if !has_letter(key, &source.etag) {
                    bad.push(format!(
                        "{key} failed ({:?}) but has no DLQ letter",
                        metadata.error.as_ref().map(|e| &e.kind)
                    ));
                }
            }
        }
        // Every ended image is announced, with the event its document makes.
        let expected = image_event(
            &metadata,
            &OutputRef {
                bucket: OUTPUT,
                metadata_key: &metadata_key,
                cdn_base_url: o.config.cdn_base_url.as_deref(),
            },
        );
        let expected_json = serde_json::to_string(&expected).unwrap();
        if !published.iter().any(|p| p.message == expected_json) {
            bad.push(format!(
                "{key}: its {} event ({}) was not published",
                expected.event_type, expected.id
            ));
        }
    }
    bad
}

/// A done document of a focal-point scenario: made with the focal point its source has now, its
/// crops those of a fresh run with that point, and every file it lists byte for byte what a run
/// with that point makes (the whole set's run, or the re-made presets' run for their files).
fn focus_followed(
    key: &str,
    source: &crate::world::Stored,
    metadata: &Metadata,
    o: &Outcome,
) -> Vec<String> {
    use imgpipe_core::focus::refocus;
    let mut bad = Vec::new();
    let wanted = imgpipe_cloud::store::focus_in(&source.metadata).unwrap_or(None);
    if refocus::needed(metadata, wanted) {
        bad.push(format!(
            "{key}: metadata.json's focus is {:?}, the source's {wanted:?}",
            metadata.focus
        ));
    }
    let run = |presets: &imgpipe_core::PresetSet, analysis| {
        imgpipe_core::process(
            &source.bytes,
            &imgpipe_core::SourceRef {
                bucket: INGEST.into(),
                key: key.into(),
                etag: Some(source.etag.clone()),
                focus: wanted,
                analysis,
            },
            presets,
            &o.config.pipeline_options(),
            &mut imgpipe_core::Engine::default(),
        )
        .expect("the source processes")
    };
    let fresh = run(&o.config.presets, None);
    let invalidated = o.world.invalidations_at();
    // When the image was first announced done (`t=<clock> effect n: Publish imgpipe.image.done …`;
    // the scenario has one key): from then on anyone may have fetched and cached its files.
    let first_done: Option<u64> = o
        .world
        .trace()
        .iter()
        .find(|l| l.contains("Publish imgpipe.image.done"))
        .and_then(|l| l.strip_prefix("t=")?.split(' ').next()?.parse().ok());
    let remade = refocus::presets(&o.config.presets)
        .map(|subset| run(&subset, refocus::analysis(metadata, wanted)));
    for d in &metadata.derivatives {
        let shape = |d: &imgpipe_core::metadata::DerivativeInfo| (d.width, d.height, d.crop);
        match fresh.metadata.derivatives.iter().find(|f| f.key == d.key) {
            Some(f) if shape(f) == shape(d) => {}
            other => bad.push(format!(
                "{key}: {} is {:?}, a fresh run with the source's focus makes {:?}",
                d.key,
                shape(d),
                other.map(shape)
            )),
        }
        let made = |p: &imgpipe_core::Processed| {
            p.derivatives
                .iter()
                .find(|f| f.key == d.key)
                .map(|f| f.bytes.clone())
        };
        // A file rewritten after the image was announced done (a cover re-made for a new point)
        // was invalidated on the CDN after its last write.
        let written_at = o.world.object(OUTPUT, &d.key).map(|f| f.modified);
        let path = format!("/{}", d.key);
        if let (Some(at), Some(first)) = (written_at, first_done)
            && at > first
            && !invalidated
                .iter()
                .any(|(t, paths)| *t >= at && paths.contains(&path))
        {
            bad.push(format!(
                "{key}: {} was rewritten at t={at} but the CDN was not told to forget it after that",
                d.key
            ));
        }
        let stored = o.world.object(OUTPUT, &d.key).map(|f| f.bytes);
        let expected = [Some(made(&fresh)), remade.as_ref().map(made)];
        if stored.is_some() && !expected.iter().flatten().any(|e| *e == stored) {
            bad.push(format!(
                "{key}: {} holds other bytes than a run with the source's focus makes",
                d.key
            ));
        }
    }
    bad
}
