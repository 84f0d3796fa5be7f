//! `sqlvm-backup serve --config` as a child process, reaching the simulator through its
//! managed-identity endpoint; ready once it prints `ready on <base>`. Killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sqlvm_backup_emulator::server::RunningSimulator;

pub struct ServeProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, from the ready line.
    pub base: String,
}

impl ServeProcess {
    pub fn start(config: &std::path::Path, sim: &RunningSimulator) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqlvm-backup"))
            .args(["serve", "--config"])
            .arg(config)
            .env("IDENTITY_ENDPOINT", sim.identity_endpoint())
            .env("IDENTITY_HEADER", sim.identity_header())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next().expect("a line").expect("utf8");
        let base = line.strip_prefix("ready on ").expect("ready line").to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        ServeProcess { child, base }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(self) {}
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
