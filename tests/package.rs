//! The deployment zip (`scripts/package.sh`): packs the test build of the binary, unpacks it with `unzip` (which
//! restores unix modes), checks the layout the Functions host expects (../shared/docs/azure-functions.md §4.2), and
//! starts the binary the way the host does (§1.2, §1.3) until it answers its readiness request.
//!
//! Needs `zip` and `unzip` (.ci/run installs them). The script never builds here: `--binary` is the debug binary.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    root().join("scripts/package.sh")
}

fn host_json() -> Value {
    serde_json::from_slice(&fs::read(root().join("host.json")).unwrap()).unwrap()
}

/// The repository's function folders: every `functions/<Name>/function.json`.
fn repo_functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(root().join("functions")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().join("function.json").is_file() {
            names.insert(entry.file_name().into_string().unwrap());
        }
    }
    assert!(!names.is_empty(), "no functions/*/function.json in the repository");
    names
}

fn show(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A scratch folder for this test process under target/tmp; folders left by test processes that are gone are removed.
fn scratch(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let prefix = format!("{name}-");
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok())
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

struct Packaged {
    zip: PathBuf,
    unpacked: PathBuf,
    /// What package.sh printed, for failure messages.
    log: String,
}

/// Packs the test binary once per test process and unpacks it; both tests below read the result.
fn packaged() -> &'static Packaged {
    static PACKAGED: OnceLock<Packaged> = OnceLock::new();
    PACKAGED.get_or_init(|| {
        let dir = scratch("package");
        let zip = dir.join("app.zip");
        let output = Command::new(script())
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_sqlvm-backup"))
            .arg("--out")
            .arg(&zip)
            .output()
            .expect("run scripts/package.sh");
        let log = show(&output);
        assert!(output.status.success(), "scripts/package.sh failed\n{log}");
        assert!(zip.is_file(), "no zip at {}\n{log}", zip.display());
        assert!(String::from_utf8_lossy(&output.stdout).contains(&zip.display().to_string()), "the script prints the zip path\n{log}");

        let unpacked = dir.join("app");
        let unzip = Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&unpacked)
            .output()
            .expect("run unzip (apt-get install -y unzip; .ci/run installs it)");
        assert!(unzip.status.success(), "unzip failed\n{}", show(&unzip));
        Packaged { zip, unpacked, log }
    })
}

#[test]
fn zip_holds_host_json_the_function_folders_and_the_executable_at_its_root() {
    let packaged = packaged();
    let app = &packaged.unpacked;
    let log = &packaged.log;
    let host = host_json();
    let exe = host["customHandler"]["description"]["defaultExecutablePath"].as_str().expect("defaultExecutablePath");
    let functions = repo_functions();

    // Nothing at the root but host.json, the executable and one folder per function; no functions/ folder.
    let mut expected: BTreeSet<String> = functions.clone();
    expected.insert("host.json".into());
    expected.insert(exe.into());
    let found: BTreeSet<String> = fs::read_dir(app).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!found.contains("functions"), "the function folders must sit at the zip root, not under functions/: {found:?}");
    assert_eq!(found, expected, "zip root\n{log}");

    assert_eq!(fs::read(app.join("host.json")).unwrap(), fs::read(root().join("host.json")).unwrap(), "host.json is the repository's");
    for name in &functions {
        let folder = app.join(name);
        assert!(folder.is_dir(), "{name} is a folder");
        let inside: Vec<String> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(inside, ["function.json"], "{name}/ holds only function.json");
        assert_eq!(
            fs::read(folder.join("function.json")).unwrap(),
            fs::read(root().join("functions").join(name).join("function.json")).unwrap(),
            "{name}/function.json is the repository's"
        );
    }

    let binary = app.join(exe);
    let meta = fs::metadata(&binary).unwrap();
    assert!(meta.is_file(), "{exe} is a file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{exe} keeps mode 0755 through the zip");

    // Entries are stored in a fixed (sorted) order, files only.
    let listing = Command::new("unzip").arg("-Z1").arg(&packaged.zip).output().unwrap();
    assert!(listing.status.success(), "{}", show(&listing));
    let entries: Vec<String> = String::from_utf8(listing.stdout).unwrap().lines().map(str::to_owned).collect();
    let mut sorted = entries.clone();
    sorted.sort();
    assert_eq!(entries, sorted, "zip entries in sorted order");
    assert_eq!(entries.len(), functions.len() + 2, "one entry per file: {entries:?}");
}

/// Kills the handler when the test ends, also on a failed assertion.
struct Handler(Child);

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status code of `GET /`, as the host's readiness probe sends it; None while nothing answers.
fn get_root(port: u16) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// docs/config.example.json plus an `azureStorage` section pointing at a closed port: the handler must not contact
/// storage or ARM while it starts.
fn inline_config() -> String {
    let path = root().join("docs/config.example.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config["azureStorage"] = json!({
        "accountName": "devstoreaccount1",
        "queueEndpoint": "http://127.0.0.1:9/devstoreaccount1",
        "blobEndpoint": "http://127.0.0.1:9/devstoreaccount1",
        "queue": "sqlvm-steps",
        "container": "sqlvm-state",
        "accountKey": "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    });
    config.to_string()
}

#[test]
fn unpacked_binary_started_like_the_functions_host_answers_readiness() {
    let packaged = packaged();
    let app = &packaged.unpacked;
    let host = host_json();
    let description = &host["customHandler"]["description"];
    let exe = description["defaultExecutablePath"].as_str().unwrap();
    let arguments: Vec<&str> =
        description["arguments"].as_array().map(|a| a.iter().map(|v| v.as_str().expect("string argument")).collect()).unwrap_or_default();
    // workingDirectory "" means the app root (§1.2).
    let working_dir = match description["workingDirectory"].as_str().unwrap_or("") {
        "" => app.clone(),
        dir => app.join(dir),
    };

    let port = free_port();
    let stdout = app.parent().unwrap().join("handler.stdout");
    let stderr = app.parent().unwrap().join("handler.stderr");
    let child = Command::new(app.join(exe))
        .args(&arguments)
        .current_dir(&working_dir)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_APP_ROOT_PATH", app)
        .env("SQLVM_BACKUP_CONFIG", inline_config())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe} {arguments:?}: {e}"));
    let mut handler = Handler(child);
    let output = || {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            fs::read_to_string(&stdout).unwrap_or_default(),
            fs::read_to_string(&stderr).unwrap_or_default()
        )
    };

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if let Some(status) = handler.0.try_wait().unwrap() {
            panic!("`{exe} {}` exited before it was ready: {status}\n{}", arguments.join(" "), output());
        }
        last = get_root(port).or(last);
        if last == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "`{exe} {}` did not answer GET / with 200 on port {port} within 20 s (last answer: {last:?})\n{}",
            arguments.join(" "),
            output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_missing_binary_is_refused() {
    let dir = scratch("package-missing");
    let zip = dir.join("app.zip");
    let missing = dir.join("no-such-sqlvm-backup");
    let output = Command::new(script()).arg("--binary").arg(&missing).arg("--out").arg(&zip).output().expect("run scripts/package.sh");
    let log = show(&output);
    assert!(!output.status.success(), "a missing --binary must fail\n{log}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--binary") && stderr.contains(&missing.display().to_string()),
        "the error names the option and the path\n{log}"
    );
    assert!(stderr.contains("no such file"), "the error says what is wrong\n{log}");
    assert!(!zip.exists(), "no zip written");
    let _ = fs::remove_dir_all(&dir);
}
