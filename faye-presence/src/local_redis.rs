//! The `redis-server` that `faye-presence` starts for itself when no Redis is given: a temporary
//! directory, a free loopback port, the module loaded from a private copy (overwriting a loaded `.so`
//! by a rebuild would crash the server), killed when this guard drops.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::process::{Child, Command};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct LocalRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl LocalRedis {
    pub async fn start(module: Option<PathBuf>) -> Result<Self, BoxError> {
        let module = match module {
            Some(path) => path,
            None => std::env::current_exe()?.with_file_name("libpresence.so"),
        };
        if !module.exists() {
            return Err(format!(
                "no Redis given and no module at {} to start one (build it with `cargo build --release -p presence-module`, or pass --module or --redis)",
                module.display()
            )
            .into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("faye-presence-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let copy = dir.join("libpresence.so");
        std::fs::copy(&module, &copy)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--loadmodule")
            .arg(&copy)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it (scripts/prerequisites.sh) or pass --redis"))?;
        let redis = LocalRedis { child, port, dir };
        redis.wait_ready().await?;
        tracing::info!(port, pid = redis.child.id(), module = %module.display(), "started a local redis-server with the presence module");
        Ok(redis)
    }

    async fn wait_ready(&self) -> Result<(), BoxError> {
        let client = redis::Client::open(self.url())?;
        for _ in 0..100 {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the local redis-server did not start within 5 s".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        // Killed by its pid and reaped, so no zombie outlives this process.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}
