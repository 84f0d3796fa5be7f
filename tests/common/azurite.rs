//! An Azurite (Azure Storage emulator) per test: installed on first use into `target/azurite`,
//! started on free loopback ports with its data in a temporary directory, killed on drop.
//!
//! The tests provision it themselves so that `cargo test --workspace` needs nothing but Node and
//! npm on the machine. A missing npm or a failed install fails the test loudly: a storage test
//! that silently skips would let the storage code rot unnoticed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlvm_backup::azure_storage::StorageAuth;
use sqlvm_backup_shared::secret::Secret;

/// Azurite's built-in development account.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The development account's well-known key (public, documented by Microsoft).
pub const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Pinned: later releases declare Node >= 21/22, and this machine has Node 20.
pub const AZURITE_VERSION: &str = "3.35.0";

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Azurite. Endpoints are path-style (`http://127.0.0.1:{port}/devstoreaccount1`).
pub struct Azurite {
    pub blob_endpoint: String,
    pub queue_endpoint: String,
    child: Child,
    stderr_path: PathBuf,
    // Dropped after the child is killed: Azurite's files live here.
    _tempdir: TempDir,
}

impl Azurite {
    /// Installs Azurite if needed and starts a fresh instance. Panics (failing the test) with
    /// the reason when it cannot.
    pub fn start() -> Azurite {
        let bin = azurite_bin();
        let mut last_error = String::new();
        // A second try with fresh ports covers the race between choosing a free port and
        // Azurite binding it.
        for _ in 0..2 {
            match try_start(&bin) {
                Ok(a) => return a,
                Err(e) => last_error = e,
            }
        }
        panic!("Azurite did not start: {last_error}");
    }

    /// The development account's key, as the clients take it.
    pub fn auth(&self) -> StorageAuth {
        StorageAuth::AccountKey { account: DEV_ACCOUNT.to_string(), key: Secret::new(DEV_KEY) }
    }

    /// `{queue_endpoint}/{name}`.
    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/{name}", self.queue_endpoint)
    }

    /// `{blob_endpoint}/{name}`.
    pub fn container_url(&self, name: &str) -> String {
        format!("{}/{name}", self.blob_endpoint)
    }

    /// What Azurite wrote to stderr so far (for assertion messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn try_start(bin: &Path) -> Result<Azurite, String> {
    let tempdir = TempDir::new("azurite");
    let data = tempdir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    let stderr_path = tempdir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
    let [blob, queue, table] = free_ports();
    let mut child = Command::new(bin)
        // In memory (it refuses --location then): a test's Azurite never outlives the test,
        // and disk writes only slow it.
        .args(["--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--inMemoryPersistence"])
        .current_dir(&data)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &blob.to_string()])
        .args(["--queueHost", "127.0.0.1", "--queuePort", &queue.to_string()])
        .args(["--tableHost", "127.0.0.1", "--tablePort", &table.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(format!("Azurite exited early ({status}); stderr:\n{err}"));
        }
        if accepts(blob) && accepts(queue) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("Azurite did not listen on ports {blob} and {queue} within {START_TIMEOUT:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Azurite {
        blob_endpoint: format!("http://127.0.0.1:{blob}/{DEV_ACCOUNT}"),
        queue_endpoint: format!("http://127.0.0.1:{queue}/{DEV_ACCOUNT}"),
        child,
        stderr_path,
        _tempdir: tempdir,
    })
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
}

/// Three distinct free loopback ports (bound together, then released).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    [port(&listeners[0]), port(&listeners[1]), port(&listeners[2])]
}

/// The Azurite script: `AZURITE_BIN` if set, else `target/azurite/node_modules/.bin/azurite`,
/// installed with npm the first time. The install runs under an exclusive lock on
/// `target/azurite.lock`, so parallel test processes (nextest runs one per test) install once
/// and the others wait for it.
fn azurite_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("AZURITE_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.exists(), "AZURITE_BIN={} does not exist", bin.display());
        return bin;
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = target.join("azurite");
    let bin = dir.join("node_modules").join(".bin").join("azurite");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let lock_path = target.join("azurite.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    #[allow(clippy::incompatible_msrv)] // File::lock is stable since 1.89; the toolchain is 1.95.
    lock.lock().unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    // Another process may have installed it while this one waited for the lock.
    if !bin.exists() {
        install(&dir);
    }
    assert!(bin.exists(), "npm finished but {} is missing", bin.display());
    drop(lock);
    bin
}

fn install(dir: &Path) {
    let spec = format!("azurite@{AZURITE_VERSION}");
    let out = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(dir)
        .args([spec.as_str(), "--no-audit", "--no-fund", "--loglevel=error"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the Azure Storage tests need Azurite, installed with npm (Node 20+), but `npm` could not run: {e}. \
                 Install Node.js and npm, or set AZURITE_BIN to an azurite script."
            )
        });
    if !out.status.success() {
        panic!(
            "`npm install --prefix {} {spec}` failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A directory removed on drop (the test dependencies have no tempfile crate).
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{:016x}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
