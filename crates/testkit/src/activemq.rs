//! A private ActiveMQ 5 broker for tests, from Debian's `activemq` package: STOMP on a free
//! loopback port, its own data directory, no web console, no JMX, a small heap. One per test
//! binary ([`Broker::shared`]) with a unique queue per test ([`unique_queue`]), or one per test
//! ([`Broker::start`]) where a test must own the broker.
//!
//! Without ActiveMQ (or Java) the broker tests skip, loudly, on a developer's machine; when
//! `TESSERA_TEST_ACTIVEMQ_HOME` is set (`cargo xtask ci` sets it after installing the package)
//! or `CI=true`, a missing broker fails them instead: a transport test that silently skips
//! proves nothing.
//!
//! The broker runs under a small `sh` watchdog whose stdin is a pipe from the test process: when
//! that pipe closes (the [`Broker`] is dropped, or the test process exits or is killed, which
//! also covers the shared broker that no one drops) the watchdog kills the JVM and removes the
//! data directory, so no broker outlives its tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where ActiveMQ is installed; setting it also makes a missing broker an error.
pub const HOME_VAR: &str = "TESSERA_TEST_ACTIVEMQ_HOME";
/// Where Debian's `activemq` package installs it.
pub const DEFAULT_HOME: &str = "/usr/share/activemq";
/// A user who may read, write and create every queue and topic.
pub const USER: &str = "tessera";
pub const PASSWORD: &str = "tessera-test-password";
/// A user who may read but not write: sending as them is refused with an ERROR frame.
pub const READER: &str = "reader";
pub const READER_PASSWORD: &str = "reader-test-password";
/// Prefix of the per-queue dead letter queues (`individualDeadLetterStrategy`): a message NACKed
/// on `/queue/X` lands on `/queue/DLQ.X`.
pub const DLQ_PREFIX: &str = "DLQ.";
/// Longest wait for the broker to accept STOMP connections. It starts in about a second on an
/// idle machine; the JVM's start-up is CPU-bound and this machine compiles in parallel.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts when the chosen port was taken between choosing and binding it.
const START_ATTEMPTS: u32 = 3;
/// JVM heap ceiling and the broker's own memory limit for in-flight messages: room for a few
/// 16 MiB frames (the STOMP client's limit), no more.
const HEAP_MB: u32 = 256;
const BROKER_MEMORY_MB: u32 = 96;

/// A running broker; stopped (and its data removed) when dropped.
#[derive(Debug)]
pub struct Broker {
    stomp: SocketAddr,
    dir: PathBuf,
    watchdog: Child,
    /// Closing this tells the watchdog to stop the broker.
    stdin: Option<ChildStdin>,
    started_in: Duration,
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // The watchdog kills the JVM with SIGKILL, so this does not wait for a shutdown.
        let _ = self.watchdog.wait();
    }
}

static SHARED: OnceLock<Option<Broker>> = OnceLock::new();

/// A queue name no other test uses, as a STOMP destination: `/queue/tessera.test.{label}.{uuid}`.
#[must_use]
pub fn unique_queue(label: &str) -> String {
    format!("/queue/tessera.test.{label}.{}", uuid::Uuid::new_v4().simple())
}

impl Broker {
    /// The broker shared by every test of this test binary, started on first use. `None` when
    /// ActiveMQ is not installed and not required (see the module documentation).
    ///
    /// # Panics
    /// When ActiveMQ is required but missing, or installed but fails to start.
    pub fn shared() -> Option<&'static Broker> {
        SHARED.get_or_init(Broker::start).as_ref()
    }

    /// A broker of the caller's own. `None` when ActiveMQ is not installed and not required.
    ///
    /// # Panics
    /// When ActiveMQ is required but missing, or installed but fails to start.
    #[must_use]
    pub fn start() -> Option<Broker> {
        let home = std::env::var_os(HOME_VAR).map_or_else(|| PathBuf::from(DEFAULT_HOME), PathBuf::from);
        let required = std::env::var_os(HOME_VAR).is_some() || std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        let jar = home.join("bin/activemq.jar");
        let java = java_binary();
        let missing = if !jar.exists() {
            Some(format!("{} not found", jar.display()))
        } else if Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            Some(format!("no Java runtime ({} cannot be run)", java.display()))
        } else {
            None
        };
        if let Some(why) = missing {
            let advice = format!(
                "ActiveMQ is needed for the message-queue tests: {why}. Install Debian's `activemq` package \
                 (`cargo xtask ci` does), or point {HOME_VAR} at an ActiveMQ 5 installation."
            );
            assert!(!required, "{advice}");
            eprintln!("SKIPPED (not a pass): {advice}");
            return None;
        }
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Broker::try_start(&home, &java) {
                Ok(broker) => {
                    eprintln!("testkit: ActiveMQ STOMP on {} (started in {:.1?})", broker.stomp, broker.started_in);
                    return Some(broker);
                }
                Err(e) => last_error = e,
            }
        }
        panic!("ActiveMQ did not start ({START_ATTEMPTS} attempts): {last_error}");
    }

    fn try_start(home: &Path, java: &Path) -> Result<Broker, String> {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("tessera-activemq-").tempdir().map_err(|e| format!("temporary directory: {e}"))?.keep();
        let conf = dir.join("conf");
        let data = dir.join("data");
        let fail = |e: String| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        std::fs::create_dir_all(&conf).map_err(|e| fail(format!("{}: {e}", conf.display())))?;
        std::fs::create_dir_all(&data).map_err(|e| fail(format!("{}: {e}", data.display())))?;
        let port = free_port().map_err(|e| fail(format!("no free port: {e}")))?;
        std::fs::write(conf.join("activemq.xml"), broker_xml(&data, port)).map_err(|e| fail(e.to_string()))?;
        std::fs::write(conf.join("log4j.properties"), LOG4J).map_err(|e| fail(e.to_string()))?;
        let prop = |name: &str, path: &Path| format!("-Dactivemq.{name}={}", path.display());
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("tessera-activemq-watchdog")
            .arg(&dir)
            .arg(java)
            .args([
                "-Xms32m".to_owned(),
                format!("-Xmx{HEAP_MB}m"),
                "-XX:+UseSerialGC".into(),
                "-XX:TieredStopAtLevel=1".into(),
                "-Djava.awt.headless=true".into(),
            ])
            .arg(format!("-Dlog4j.configuration=file:{}", conf.join("log4j.properties").display()))
            .args([prop("home", home), prop("base", &dir), prop("conf", &conf), prop("data", &data)])
            .arg("-jar")
            .arg(home.join("bin/activemq.jar"))
            .arg("start")
            .arg(format!("xbean:file:{}", conf.join("activemq.xml").display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run sh: {e}")))?;
        let stdin = watchdog.stdin.take();
        let stomp = SocketAddr::from(([127, 0, 0, 1], port));
        // From here on, dropping the broker stops the JVM and removes the directory.
        let mut broker = Broker { stomp, dir, watchdog, stdin, started_in: Duration::ZERO };
        let log = broker.dir.join("broker.log");
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = broker.watchdog.try_wait() {
                let mut tail = String::new();
                if let Some(out) = broker.watchdog.stdout.as_mut() {
                    let _ = out.read_to_string(&mut tail);
                }
                return Err(format!("the broker exited during start-up ({status}); its log ends:\n{tail}"));
            }
            if stomp_ready(stomp) {
                broker.started_in = started.elapsed();
                return Ok(broker);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = tail.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        Err(format!("no STOMP on {stomp} after {START_TIMEOUT:?}; broker log:\n{tail}"))
    }

    /// `host:port` of the STOMP connector.
    #[must_use]
    pub fn stomp_addr(&self) -> String {
        self.stomp.to_string()
    }

    /// How long the broker took to accept STOMP connections.
    #[must_use]
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The broker's data directory (KahaDB store and `broker.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin/java")).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("java"))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the broker answers a STOMP CONNECT with CONNECTED: the port accepting is not enough,
/// the broker may still be starting its services behind it.
fn stomp_ready(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let connect = format!("CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{USER}\npasscode:{PASSWORD}\n\n\0");
    if s.write_all(connect.as_bytes()).is_err() {
        return false;
    }
    let mut reply = [0u8; 9];
    let ok = s.read_exact(&mut reply).is_ok() && &reply == b"CONNECTED";
    let _ = s.write_all(b"DISCONNECT\n\n\0");
    ok
}

/// `$1` the data directory, the rest the JVM's command line. Runs the JVM in the background,
/// kills it when stdin closes, and once it has exited prints the end of its log (read when the
/// broker dies during start-up) and removes the directory.
/// (A background job's stdin is /dev/null unless redirected: hence fd 3.)
const WATCHDOG: &str = r#"dir="$1"; shift
exec 3<&0
"$@" >"$dir/broker.log" 2>&1 </dev/null 3<&- &
pid=$!
{ cat <&3 >/dev/null; kill -9 "$pid" 2>/dev/null; } &
exec 3<&-
wait "$pid"
tail -c 16000 "$dir/broker.log" 2>/dev/null
rm -rf "$dir"
"#;

const LOG4J: &str = "log4j.rootLogger=WARN, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d %-5p %c{1} - %m%n
";

/// The broker: STOMP only, on loopback; authentication (two users) and authorisation (the
/// reader may not write); KahaDB in the private directory without disk syncs (a test broker
/// need not survive a power cut); a dead letter queue per queue; no JMX, advisories, scheduler
/// or web console.
fn broker_xml(data: &Path, port: u16) -> String {
    let data = data.display();
    format!(
        r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="tessera-test" useJmx="false" advisorySupport="false"
          schedulerSupport="false" persistent="true" useShutdownHook="false" dataDirectory="{data}">
    <destinationPolicy><policyMap><policyEntries>
      <policyEntry queue=">">
        <deadLetterStrategy><individualDeadLetterStrategy queuePrefix="{DLQ_PREFIX}" useQueueForQueueMessages="true"/></deadLetterStrategy>
      </policyEntry>
    </policyEntries></policyMap></destinationPolicy>
    <persistenceAdapter><kahaDB directory="{data}/kahadb" journalDiskSyncStrategy="never" journalMaxFileLength="16mb"/></persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage limit="{BROKER_MEMORY_MB} mb"/></memoryUsage>
      <storeUsage><storeUsage limit="2 gb"/></storeUsage>
      <tempUsage><tempUsage limit="256 mb"/></tempUsage>
    </systemUsage></systemUsage>
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username="{USER}" password="{PASSWORD}" groups="writers"/>
          <authenticationUser username="{READER}" password="{READER_PASSWORD}" groups="readers"/>
        </users>
      </simpleAuthenticationPlugin>
      <authorizationPlugin><map><authorizationMap><authorizationEntries>
        <authorizationEntry queue=">" read="writers,readers" write="writers" admin="writers,readers"/>
        <authorizationEntry topic=">" read="writers,readers" write="writers" admin="writers,readers"/>
      </authorizationEntries>
      <tempDestinationAuthorizationEntry>
        <tempDestinationAuthorizationEntry read="writers" write="writers" admin="writers"/>
      </tempDestinationAuthorizationEntry>
      </authorizationMap></map></authorizationPlugin>
    </plugins>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}?transport.tcpNoDelay=true&amp;wireFormat.maxFrameSize=33554432"/>
    </transportConnectors>
  </broker>
</beans>
"#
    )
}
