//! Integration tests of the `ackemu` binary against real processes.
//!
//! This binary uses libtest-mimic so it can also *be* the child process the
//! tests switch: when `ACKEMU_IT_CHILD` is set it runs [`child::main`]
//! instead of the tests (a process with an admin port, a failpoint on its
//! work path and an mTLS gRPC server).

mod architecture;
mod chaos;
mod child;
mod cloud;
mod kubeconfig;
mod up;
mod util;

use libtest_mimic::{Arguments, Trial};

fn main() {
    if std::env::var_os(child::ENV).is_some() {
        child::main();
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("chaos::failpoint_set_changes_a_child_process", || {
            util::run(chaos::failpoint_set_changes_a_child_process())
        }),
        Trial::test(
            "chaos::hang_is_listed_in_debug_tasks_and_released_by_clear",
            || util::run(chaos::hang_is_listed_in_debug_tasks_and_released_by_clear()),
        ),
        Trial::test("chaos::metrics_endpoint_is_valid_prometheus_text", || {
            util::run(chaos::metrics_endpoint_is_valid_prometheus_text())
        }),
        Trial::test(
            "chaos::clock_offset_past_expiry_breaks_mtls_handshakes",
            || util::run(chaos::clock_offset_past_expiry_breaks_mtls_handshakes()),
        ),
        Trial::test("chaos::bad_input_gets_clear_errors", || {
            util::run(chaos::bad_input_gets_clear_errors())
        }),
        Trial::test(
            "cloud::failpoint_on_a_cloud_action_through_ackemu_cloud",
            || util::run(cloud::failpoint_on_a_cloud_action_through_ackemu_cloud()),
        ),
        Trial::test("up::up_serves_kubectl_and_down_leaves_nothing", || {
            util::run(up::up_serves_kubectl_and_down_leaves_nothing())
        }),
        Trial::test("up::up_with_workers_runs_pods_behind_services", || {
            util::run(up::up_with_workers_runs_pods_behind_services())
        }),
        Trial::test("kubeconfig::real_kubectl_reads_our_kubeconfig", || {
            util::run(kubeconfig::real_kubectl_reads_our_kubeconfig())
        }),
        Trial::test(
            "architecture::component_crates_do_not_depend_on_each_other",
            architecture::component_crates_do_not_depend_on_each_other,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
