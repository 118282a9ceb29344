//! Embeds the source revision as `PULSE_REVISION` for `/version` and `pulse_build_info`.
//!
//! Container builds have no `.git`, so the revision can be passed in the
//! environment (`PULSE_REVISION=$(git rev-parse --short HEAD)`); otherwise git is
//! asked, and "unknown" is the honest answer when neither is available.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PULSE_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("PULSE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PULSE_REVISION={revision}");
}
