//! ActiveMQ for the message-queue (STOMP) tests: installs Debian's `activemq` package, and the
//! Java runtime it runs on, when missing. The tests start their own private broker from it
//! (`tessera_testkit::activemq`); `ci` sets `TESSERA_TEST_ACTIVEMQ_HOME` so that they fail, rather
//! than skip, should it still be missing.

use std::path::Path;
use std::process::Command;

/// Where Debian's `activemq` package installs the broker.
pub const HOME: &str = "/usr/share/activemq";
/// The variable `tessera_testkit::activemq` reads.
pub const HOME_VAR: &str = "TESSERA_TEST_ACTIVEMQ_HOME";
/// ActiveMQ 5.17 needs Java 11 or later.
const JAVA_MIN: u32 = 11;

/// The major version of the `java` on PATH.
fn java_major() -> Option<u32> {
    let out = Command::new("java").arg("-version").output().ok()?;
    parse_java_major(&String::from_utf8_lossy(&out.stderr))
}

/// From `java -version`'s output: `openjdk version "17.0.15" …` → 17, `java version "1.8.0_392"` → 8.
fn parse_java_major(text: &str) -> Option<u32> {
    let version = text.split('"').nth(1)?;
    let mut parts = version.split(['.', '-', '+', '_']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

/// The ActiveMQ installation for the tests: `TESSERA_TEST_ACTIVEMQ_HOME` when set, otherwise
/// Debian's package, installed here if needed; and a Java runtime to run it (the package depends
/// on one, but it may have been removed since, or be too old).
pub fn from_env_or_install() -> Result<String, String> {
    let home = match std::env::var(HOME_VAR) {
        Ok(h) if !h.is_empty() => {
            eprintln!("xtask: using ActiveMQ from {HOME_VAR}={h}");
            h
        }
        _ => HOME.to_owned(),
    };
    let jar = Path::new(&home).join("bin/activemq.jar");
    if !jar.exists() {
        if home != HOME {
            return Err(format!("{} not found ({HOME_VAR} is set)", jar.display()));
        }
        eprintln!("xtask: {} not found", jar.display());
        crate::debian::install("activemq")?;
        if !jar.exists() {
            return Err(format!("{} is still missing after installing activemq; install ActiveMQ 5 or set {HOME_VAR}", jar.display()));
        }
    }
    if java_major().is_none_or(|v| v < JAVA_MIN) {
        crate::debian::install("default-jre-headless")?;
    }
    match java_major() {
        Some(v) if v >= JAVA_MIN => Ok(home),
        Some(v) => Err(format!("ActiveMQ needs Java {JAVA_MIN} or later; `java` is Java {v}")),
        None => Err("ActiveMQ needs Java: `java -version` does not run".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn java_versions() {
        let parse = super::parse_java_major;
        assert_eq!(parse("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment"), Some(17));
        assert_eq!(parse("java version \"1.8.0_392\""), Some(8));
        assert_eq!(parse("openjdk version \"21-ea\" 2023-09-19"), Some(21));
        assert_eq!(parse("bash: java: command not found"), None);
    }
}
