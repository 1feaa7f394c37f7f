//! The driver's envelopes and the stand-in's answers against exchanges recorded from real
//! Windows hosts: a private stand-in keeps every exchange of one driver session
//! (`--record`), and `testing/hyperv/recorded_check.py` compares each message polyvisor
//! uses (shell Create, Command, Receive, Signal, Delete) with the requests and answers in
//! pywinrm's own test suite (`winrm/tests/conftest.py` of the installed pywinrm): same
//! elements and attributes, same Action, ResourceURI and option names.

mod common;

use common::StandIn;
use polyvisor_core::Driver;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn envelopes_and_answers_have_the_shape_of_recorded_windows_exchanges() {
    let rec = polyvisor_test_support::temp::dir("hyperv-recorded");
    let dir = rec.path().to_string_lossy().into_owned();
    let s = StandIn::start_with(&["--record", &dir]);
    let d = s.driver();
    assert!(d.probe().await.unwrap().contains("HV-STANDIN-01"));
    assert_eq!(d.list_guests().await.unwrap().len(), 3);
    d.close().await; // the shell Delete
    let script = polyvisor_test_support::bin::repo_path("testing/hyperv/recorded_check.py");
    let out = Command::new("python3").arg(&script).arg(&dir).output().expect("python3 with pywinrm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for m in ["Create", "Command", "Receive", "Signal", "Delete"] {
        assert!(
            stdout.contains(&format!("PASS {m} request")) && stdout.contains(&format!("PASS {m} answer")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("11 compared, 0 failed"), "{stdout}");
}
