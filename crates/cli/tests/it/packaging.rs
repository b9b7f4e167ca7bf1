//! The packaging files: the systemd unit is accepted by systemd (`systemd-analyze verify`, with
//! `ExecStart` pointed at the binary under test) and stays hardened (`systemd-analyze security
//! --offline`: exposure at most 2.0 of 10, systemd's "OK").

use std::path::Path;
use std::process::Command;

use crate::support::trustgate;

const UNIT: &str = "../../packaging/systemd/trustgate.service";

#[test]
fn the_systemd_unit_verifies_and_stays_hardened() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT))
        .expect("the unit file");
    assert!(unit.contains("ExecStart=/usr/local/bin/trustgate serve"));
    let binary = trustgate().get_program().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("trustgate.service");
    std::fs::write(
        &file,
        unit.replace(
            "/usr/local/bin/trustgate",
            binary.to_str().expect("utf-8 path"),
        ),
    )
    .expect("write");

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/ci-setup.sh installs it)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&file)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {report}");
}
