//! What the benchmarks share: the tests' helpers (a fixed token, Azurite, the stand-in
//! Functions host), the simulator on a runtime of its own, and the protect request for a fleet VM.

use sqlvm_backup_emulator::scenario::{Scenario, VmSpec};
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};
use sqlvm_backup_shared::workflow::state::{DatabaseFilter, ProtectInput, WorkflowInput};

/// The test helpers: a fixed token, Azurite, the stand-in Functions host.
#[path = "../../tests/common/mod.rs"]
pub mod common;

pub use common::StaticToken;

/// Protect one fleet VM into the vault of its subscription and region, with its first policy.
pub fn protect_input(sim_scenario: &Scenario, vm: &VmSpec) -> WorkflowInput {
    let vault = sim_scenario.vaults.iter().find(|v| v.subscription_id == vm.subscription_id && v.location == vm.location).expect("vault");
    WorkflowInput::Protect(ProtectInput {
        vm_id: format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            vm.subscription_id, vm.resource_group, vm.name
        ),
        vault_id: Some(format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}",
            vault.subscription_id, vault.resource_group, vault.name
        )),
        policy: Some(vault.policies[0].name.clone()),
        databases: DatabaseFilter::default(),
        auto_protect: false,
        initial_full_backup: false,
    })
}

/// Start a simulator on its own single-threaded runtime in its own OS thread.
pub fn start_isolated(sc: Scenario) -> RunningSimulator {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let sim = server::start(sc, SimulatorOptions::default()).await.expect("sim");
            let _ = tx.send(sim);
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("simulator started")
}
