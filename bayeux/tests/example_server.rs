//! The runnable example, as a user starts it, against the real Faye client: one client on WebSocket and
//! one on long-polling exchange messages through it.

mod common;

use common::{assert_used, run_node, unique_prefix};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `target/<profile>/examples/server`, which `cargo test` builds next to the test binaries.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir.join("examples/server");
    assert!(
        bin.exists(),
        "{} missing: run the tests with `cargo test -p bayeux`",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_server_serves_real_faye_clients() {
    let mut child = Command::new(example_binary())
        .args(["--listen", "127.0.0.1:0", "--timeout", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
        }
        panic!("the example exited before listening");
    })
    .await
    .expect("the example listens within 20 s");
    let url = format!("http://{addr}/faye");
    let prefix = unique_prefix("example");
    let args = [
        url.as_str(),
        "websocket",
        "long-polling",
        &prefix,
        "no-reject",
    ];
    let r = run_node("faye_client.js", &args).await;
    assert_used(&r["aTypes"], "websocket");
    assert_used(&r["bTypes"], "long-polling");
    child.kill().await.unwrap();
}
