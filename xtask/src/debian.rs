//! Installing a missing Debian package for a test suite (PostgreSQL, SoftHSM2, ActiveMQ), as
//! root or through passwordless sudo, so the README's test command needs no set-up by hand.

use std::process::Command;

/// Whether this process runs as root (no sudo needed; initdb must then run as `postgres`).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_get(args: &[&str]) -> Result<(), String> {
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo", "-n"] };
    let full: Vec<&str> = sudo.iter().chain(["apt-get"].iter()).chain(args).copied().collect();
    let status = Command::new(full[0])
        .args(&full[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run {}: {e}", full.join(" ")))?;
    if status.success() { Ok(()) } else { Err(format!("`{}` failed ({status})", full.join(" "))) }
}

/// Installs `package` (without recommends), refreshing the package lists first if the plain
/// install fails (they may be missing or stale).
pub fn install(package: &str) -> Result<(), String> {
    eprintln!("xtask: installing Debian's {package} package");
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    if apt_get(&install).is_err() {
        apt_get(&["update", "-q"])?;
        apt_get(&install)?;
    }
    Ok(())
}
