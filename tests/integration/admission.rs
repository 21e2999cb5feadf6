//! Memory admission on the real `derive` binary: four 24 MP JPEGs arrive together at a worker with
//! four slots and a memory budget that fits two of their predicted peaks. All four are done, no more
//! than two were ever admitted at once (from the worker's own records), and the process's peak RSS
//! stayed under its budget.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use imgpipe_core::metadata::Status;
use imgpipe_core::{PresetSet, decode, encode, probe};

use crate::harness::{derive_binary, fixture, setup};

/// A 6000×4000 JPEG (quality 90), tiled from the 12 MP Olympus photo. Default presets decode it at
/// 1/2 scale (3000×2000), its largest phase.
fn jpeg_24mp() -> Vec<u8> {
    let source = fixture("large_olympus-e-p3_12mp.jpg");
    let header = probe::probe(&source).unwrap();
    let tile = decode::decode(&source, &header, 1, None, u64::MAX).unwrap();
    let (w, h, c) = (6000usize, 4000usize, tile.channels as usize);
    let (tw, th) = (tile.width as usize, tile.height as usize);
    let mut data = vec![0u8; w * h * c];
    for y in 0..h {
        for x in 0..w {
            let from = ((y % th) * tw + (x % tw)) * c;
            data[(y * w + x) * c..][..c].copy_from_slice(&tile.data[from..from + c]);
        }
    }
    let pixels = imgpipe_core::pixels::Pixels {
        width: w as u32,
        height: h as u32,
        channels: c as u8,
        data,
    };
    let preset = PresetSet::from_toml(
        "[[preset]]\nname = \"x\"\nwidth = 6000\nheight = 4000\nformat = \"jpeg\"\nquality = 90\n",
    )
    .unwrap();
    encode::encode(pixels, &preset.presets()[0], [255, 255, 255]).unwrap()
}

/// The derive worker's VmHWM (peak resident set) and VmRSS, in bytes. Read from /proc while it runs:
/// wait4's ru_maxrss would include this test process's own high-water mark, which Linux carries
/// into a child across exec.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Starts the worker binary with `--memory-mib`; returns it and its JSON log lines as they arrive.
fn start(
    env: &std::collections::HashMap<String, String>,
    memory_mib: u64,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut child = Command::new(derive_binary())
        .args(["--json-logs", "--wait-seconds", "1", "--concurrency", "4"])
        .arg(format!("--memory-mib={memory_mib}"))
        .envs(crate::harness::aws_env())
        .envs(env)
        .env("RUST_LOG", "info,imgpipe_cloud::handler=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = lines.send(value);
            }
        }
    });
    (child, received)
}

fn wait_for(
    lines: &std::sync::mpsc::Receiver<serde_json::Value>,
    message: &str,
) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no '{message}' log line within 60 s"));
        if line["fields"]["message"] == message {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_large_images_under_a_budget_for_two_are_all_done_within_it() {
    let stack = setup("admission").await;
    let bytes = jpeg_24mp();
    let predicted = imgpipe_core::memory::predict_peak(
        &bytes,
        &PresetSet::default_set(),
        &imgpipe_core::Limits::default(),
    )
    .unwrap()
    .bytes
    .div_ceil(1024 * 1024);
    let env = stack.worker_env(&[]);

    // What the process holds before any image (its resident set at start) sets the budget: that,
    // the headroom, and room for 2.2 predicted peaks (two fit, three do not).
    let (mut probe_run, lines) = start(&env, 4096);
    let on = wait_for(&lines, "memory admission on");
    probe_run.kill().unwrap();
    probe_run.wait().unwrap();
    let resident = on["fields"]["resident_mib"].as_u64().unwrap();
    let images_mib = predicted * 22 / 10;
    let budget = resident + imgpipe_cloud::admission::HEADROOM_MIB + images_mib + 8;

    let (mut worker, lines) = start(&env, budget);
    let on = wait_for(&lines, "memory admission on");
    assert!(
        on["fields"]["images_mib"].as_u64().unwrap() >= 2 * predicted,
        "{on} (predicted {predicted} MiB per image)"
    );
    assert!(
        on["fields"]["images_mib"].as_u64().unwrap() < 3 * predicted,
        "{on}"
    );
    let keys: Vec<String> = (0..4).map(|i| format!("uploads/large-{i}.jpg")).collect();
    futures::future::join_all(keys.iter().map(|k| stack.put(k, bytes.clone()))).await;

    // Admitted and released, in the worker's order: never more than two images between the two.
    let (mut running, mut most, mut done) = (0, 0, 0);
    while done < keys.len() {
        let line = lines
            .recv_timeout(Duration::from_secs(240))
            .expect("the worker stopped logging before all four were done");
        match line["fields"]["message"].as_str() {
            Some("admitted") => {
                assert_eq!(line["fields"]["alone"], false, "{line}");
                running += 1;
                most = most.max(running);
            }
            Some("released") => running -= 1,
            Some("done") => done += 1,
            Some("dead-lettered") => panic!("{line}"),
            _ => {}
        }
    }
    let (peak, _) = memory_of(worker.id());
    worker.kill().unwrap();
    worker.wait().unwrap();

    for key in &keys {
        assert_eq!(
            stack.wait_for_metadata(key).await.status,
            Status::Done,
            "{key}"
        );
    }
    assert_eq!(
        most, 2,
        "images admitted at once (budget {budget} MiB, {predicted} MiB each)"
    );
    assert!(
        peak < budget * 1024 * 1024,
        "peak RSS {} MiB over the {budget} MiB budget",
        peak / (1024 * 1024)
    );
    eprintln!(
        "admission: 4 × 24 MP, predicted {predicted} MiB each, budget {budget} MiB (resident {resident}), peak RSS {} MiB, at most {most} at once",
        peak / (1024 * 1024)
    );
}
