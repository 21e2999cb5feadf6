use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use imgpipe_core::metadata::Status;
use serde_json::Value;

use crate::harness::{Stack, fixture, imgpipe_binary, setup};

/// Set A: `thumb` and `old`. Set B: `thumb` unchanged, `old` removed, `small` added.
const SET_A: &str = r#"
[[preset]]
name = "thumb"
width = 64
height = 64
fit = "cover"
format = "jpeg"
quality = 70

[[preset]]
name = "old"
width = 100
height = 100
fit = "inside"
format = "webp"
quality = 70
"#;

const SET_B: &str = r#"
[[preset]]
name = "thumb"
width = 64
height = 64
fit = "cover"
format = "jpeg"
quality = 70

[[preset]]
name = "small"
width = 120
height = 120
fit = "inside"
format = "jpeg"
quality = 75
"#;

fn preset_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("imgpipe-it-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `imgpipe <args> --stack <stack>` and returns stdout; panics with stderr when it fails.
async fn imgpipe(stack_name: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(imgpipe_binary())
        .args(args)
        .args(["--stack", stack_name])
        .envs(crate::harness::aws_env())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "imgpipe {args:?} failed: {stderr}");
    eprintln!("imgpipe {args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn exists(stack: &Stack, key: &str) -> bool {
    stack.get(&stack.derivatives, key).await.is_some()
}

async fn metadata(stack: &Stack, key: &str) -> Option<imgpipe_core::Metadata> {
    let bytes = stack
        .get(&stack.derivatives, &stack.metadata_key(key))
        .await?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reprocesses_exactly_the_stale_sources_and_drops_removed_presets() {
    let stack = setup("backfill").await;
    let name = stack.name.clone();
    let (a, b) = (preset_file("a", SET_A), preset_file("b", SET_B));
    let keys: Vec<String> = (1..=4).map(|i| format!("photos/bf {i}.jpg")).collect();

    // Three sources made with set A…
    let worker = stack
        .start_worker_with(&[("IMGPIPE_PRESETS_FILE", a.to_str().unwrap())])
        .await;
    for (i, key) in keys[..3].iter().enumerate() {
        stack
            .put(key, fixture(&format!("Landscape_{}.jpg", i + 1)))
            .await;
    }
    for key in &keys[..3] {
        stack.wait_for_metadata(key).await;
    }
    worker.stop().await;
    // …the presets change to set B; a fourth source is made with it…
    let worker = stack
        .start_worker_with(&[("IMGPIPE_PRESETS_FILE", b.to_str().unwrap())])
        .await;
    stack.put(&keys[3], fixture("Landscape_4.jpg")).await;
    let fourth = stack.wait_for_metadata(&keys[3]).await;
    // …and the first one's metadata.json is lost (its outputs stay).
    stack
        .delete(&stack.derivatives, &stack.metadata_key(&keys[0]))
        .await;
    let dir = |key: &str| format!("derived/{key}/");
    assert!(exists(&stack, &format!("{}old.webp", dir(&keys[0]))).await);

    // Dry run: counts only.
    let b_path = b.to_str().unwrap();
    let dry = last_json(
        &imgpipe(
            &name,
            &["backfill", "--presets", b_path, "--dry-run", "--json"],
        )
        .await,
    );
    assert_eq!(dry["listed"], 4, "{dry}");
    assert_eq!(dry["current"], 1, "{dry}");
    assert_eq!(dry["stale"], 2, "{dry}");
    assert_eq!(dry["missing"], 1, "{dry}");
    assert_eq!(dry["enqueued"], 3, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["preset_set_hash"], fourth.preset_set_hash.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        0,
        "a dry run sends nothing"
    );

    // --stale-only: the two made with set A, not the one without metadata.
    let run = last_json(
        &imgpipe(
            &name,
            &["backfill", "--presets", b_path, "--stale-only", "--json"],
        )
        .await,
    );
    assert_eq!(
        (run["stale"].as_u64(), run["enqueued"].as_u64()),
        (Some(2), Some(2)),
        "{run}"
    );
    assert_eq!(run["last_key"], keys[3].as_str());
    stack.wait_until_drained().await;
    for key in &keys[1..3] {
        let m = metadata(&stack, key).await.expect("re-processed");
        assert_eq!(m.status, Status::Done);
        assert_eq!(
            m.preset_set_hash, fourth.preset_set_hash,
            "{key} re-made with set B"
        );
        let names: BTreeSet<String> = m.derivatives.iter().map(|d| d.preset.clone()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["small".to_string(), "thumb".to_string()])
        );
        assert!(
            !exists(&stack, &format!("{}old.webp", dir(key))).await,
            "the removed preset's output of {key} is deleted"
        );
        assert!(exists(&stack, &format!("{}small.jpg", dir(key))).await);
    }
    assert!(
        metadata(&stack, &keys[0]).await.is_none(),
        "--stale-only leaves sources without metadata"
    );
    let untouched = metadata(&stack, &keys[3]).await.unwrap();
    assert_eq!(
        untouched.processed_at, fourth.processed_at,
        "a current source is not re-processed"
    );

    // A full run: only the source without metadata is left; its stray output goes too.
    let run = last_json(&imgpipe(&name, &["backfill", "--presets", b_path, "--json"]).await);
    assert_eq!(
        (
            run["current"].as_u64(),
            run["stale"].as_u64(),
            run["missing"].as_u64(),
            run["enqueued"].as_u64()
        ),
        (Some(3), Some(0), Some(1), Some(1)),
        "{run}"
    );
    stack.wait_until_drained().await;
    let first = metadata(&stack, &keys[0]).await.expect("made");
    assert_eq!(first.preset_set_hash, fourth.preset_set_hash);
    assert!(
        !exists(&stack, &format!("{}old.webp", dir(&keys[0]))).await,
        "stray output of a removed preset deleted"
    );

    // Nothing is stale any more; a resumed run starts after the key it is given.
    let after = last_json(
        &imgpipe(
            &name,
            &[
                "backfill",
                "--presets",
                b_path,
                "--dry-run",
                "--json",
                "--start-after",
                &keys[1],
            ],
        )
        .await,
    );
    assert_eq!(
        (after["listed"].as_u64(), after["enqueued"].as_u64()),
        (Some(2), Some(0)),
        "{after}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_failures_and_redrive_after_the_fix_processes_them() {
    let stack = setup("redrive").await;
    let name = stack.name.clone();
    let keys: Vec<String> = (1..=5).map(|i| format!("dlq/img {i}.jpg")).collect();
    // The cause: a pixel limit far too low for these photos.
    let worker = stack
        .start_worker_with(&[("IMGPIPE_MAX_PIXELS", "1000")])
        .await;
    for (i, key) in keys.iter().enumerate() {
        stack
            .put(key, fixture(&format!("Portrait_{}.jpg", i + 1)))
            .await;
    }
    for key in &keys {
        assert_eq!(stack.wait_for_metadata(key).await.status, Status::Failed);
    }
    stack.wait_until_drained().await;
    worker.stop().await;

    let status: Value = serde_json::from_str(&imgpipe(&name, &["status", "--json"]).await).unwrap();
    let queue = |name: &str| {
        status["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    assert_eq!(queue("jobs-dlq")["visible"], 5, "{status}");
    assert_eq!(queue("jobs")["visible"], 0, "{status}");
    assert!(queue("jobs-dlq")["oldest_age_s"].is_u64(), "{status}");
    assert_eq!(status["failures"]["over_limit"], 5, "{status}");

    let listed: Value =
        serde_json::from_str(&imgpipe(&name, &["dlq", "list", "--json"]).await).unwrap();
    let letters = listed.as_array().unwrap();
    assert_eq!(letters.len(), 5, "{listed}");
    let listed_keys: BTreeSet<&str> = letters.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(listed_keys, keys.iter().map(String::as_str).collect());
    for letter in letters {
        assert_eq!(letter["kind"], "over_limit");
        assert_eq!(letter["attempts"], 1);
        assert_eq!(letter["retryable"], false);
        assert!(
            letter["message"].as_str().unwrap().contains("pixel"),
            "{letter}"
        );
        assert!(letter["age_s"].is_u64());
    }
    // Listing consumed nothing.
    assert_eq!(stack.visible(&stack.dlq_url).await, 5);

    // Another kind: nothing moves.
    let none = last_json(&imgpipe(&name, &["dlq", "redrive", "--kind", "corrupt", "--json"]).await);
    assert_eq!(
        (none["moved"].as_u64(), none["left"].as_u64()),
        (Some(0), Some(5)),
        "{none}"
    );

    // The fix (default limits), then the redrive: five done, the DLQ empty.
    let worker = stack.start_worker().await;
    let some = last_json(&imgpipe(&name, &["dlq", "redrive", "--max", "2", "--json"]).await);
    assert_eq!(
        (some["moved"].as_u64(), some["method"].as_str()),
        (Some(2), Some("receive-send-delete")),
        "{some}"
    );
    // The rest with SQS's own move task (its messages keep the failure attributes).
    let rest = last_json(&imgpipe(&name, &["dlq", "redrive", "--move-task", "--json"]).await);
    assert_eq!(
        (rest["moved"].as_u64(), rest["method"].as_str()),
        (Some(3), Some("move-task")),
        "{rest}"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    for key in &keys {
        loop {
            if metadata(&stack, key)
                .await
                .is_some_and(|m| m.status == Status::Done)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} not done after the redrive"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    stack.wait_until_drained().await;
    assert_eq!(stack.depth(&stack.dlq_url).await, 0, "the DLQ is empty");
    worker.stop().await;

    // Purging needs --yes.
    let refused = tokio::process::Command::new(imgpipe_binary())
        .args(["dlq", "purge", "--stack", &name])
        .envs(crate::harness::aws_env())
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
}
