//! `tessera bench pipeline`: end-to-end registrations per second through the real server
//! processes (upload → UIN issued, with biometric de-duplication against a synthetic gallery).
//!
//! In order, outside the clock: a scratch data directory (`init` in-process, UIN pool filled
//! for every packet, one centre, one operator, one in-memory machine key); the ABIS gallery
//! filled with GALLERY synthetic persons through `Engine::insert_set` (timed and reported on
//! its own); COUNT packets sealed (distinct synthetic people; every tenth a re-enrolment of an
//! earlier one, with another spelling of the name and a fresh capture); the server processes
//! spawned (`serve`, or `serve --role api` and two `serve --role worker`) and waited for until
//! each has loaded the gallery. On the clock: every packet uploaded with bounded concurrency,
//! then the database polled (one count query) until every packet is final. Latencies come
//! from each packet's status history (upload accepted → final event), the stage costs from the
//! workers' `job done` log lines. The bench is the adjudicator of any case opened (decided from
//! the ground truth as soon as it is seen; counted in `adjudicated`). Correctness is checked after the clock stops: every packet
//! final, every re-enrolment a duplicate of its person's UIN, every other packet issued, no UIN
//! twice. Logs carry ids, stages and timings only (the synthetic people are not real either).

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera_biometrics::synth::SynthPerson;
use tessera_biometrics::templates::TemplateSet;
use tessera_core::Rid;
use tessera_core::id::{CentreId, MachineId};
use tessera_crypto::{MachineKey, Purpose, Recipient};
use tessera_idrepo::access::{Role, create_token};
use tessera_registration::packet::{Draft, FileKind, Flow, IDENTITY_FILE};
use tessera_store::registration as rows;
use tessera_store::{now_ms, uin_pool};

/// Bounds of one run.
pub const GALLERY_MAX: usize = 1_000_000;
/// A RID's sequence has five digits, and every packet of the run comes from one machine.
pub const COUNT_MAX: usize = 99_999;
const CONCURRENCY_MAX: usize = 256;
const TIMEOUT_MAX_S: u64 = 24 * 3600;
/// How long a server process may take to load the gallery and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(1800);
/// Every tenth packet is a re-enrolment of someone registered earlier in the run.
const REENROL_EVERY: usize = 10;
const FINAL: &[&str] = &["issued", "updated", "found", "duplicate", "rejected"];
const CENTRE: &str = "10001";
const MACHINE: &str = "20001";
const OPERATOR: &str = "officer-1";
/// Persons generated (then inserted) at a time while the gallery is filled.
const FILL_CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// One `tessera serve` process: API and worker.
    Single,
    /// One `serve --role api` and two `serve --role worker` processes.
    Split,
}

#[derive(Debug, Clone)]
pub struct Args {
    /// `None`: SQLite in the scratch directory.
    pub database_url: Option<String>,
    pub gallery: usize,
    pub count: usize,
    pub topology: Topology,
    pub concurrency: usize,
    pub timeout_s: u64,
    /// Worker poll interval of the servers (an idle worker sleeps this long between polls).
    pub poll_ms: u64,
    pub keep: bool,
}

/// A sealed packet: RID, person, whether a re-enrolment, bytes.
type Sealed = (String, usize, bool, Vec<u8>);

/// A child process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
fn per_sec(n: usize, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Builds `n` items on every core, item `i` from an RNG seeded by `(seed, i / 1024)`.
fn build<T: Send>(n: usize, first: usize, seed: u64, make: impl Fn(&mut StdRng, usize) -> T + Sync) -> Vec<T> {
    const BLOCK: usize = 1024;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let start_block = first / BLOCK;
    let end_block = (first + n).div_ceil(BLOCK);
    let blocks: Vec<usize> = (start_block..end_block).collect();
    let per = blocks.len().div_ceil(threads).max(1);
    let make = &make;
    let parts: Vec<Vec<T>> = std::thread::scope(|s| {
        let hs: Vec<_> = blocks
            .chunks(per)
            .map(|bs| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for &b in bs {
                        let mut rng = StdRng::seed_from_u64(seed ^ (b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                        for i in b * BLOCK..((b + 1) * BLOCK) {
                            let item = make(&mut rng, i);
                            if (first..first + n).contains(&i) {
                                out.push(item);
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    parts.into_iter().flatten().collect()
}

/// A synthetic identity record; `variant` spells the name another way (a re-enrolment).
fn record(person: usize, variant: bool) -> Value {
    let name =
        if variant { format!("Persson{person} Famiily{}", person * 7 % 101) } else { format!("Person{person} Family{}", person * 7 % 101) };
    json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": format!("19{:02}-{:02}-{:02}", 40 + person % 60, 1 + person % 12, 1 + person % 28),
        "gender": if person.is_multiple_of(2) { "female" } else { "male" },
        "email": format!("resident{person}@example.org"),
        "addressLine1": [{"language": "eng", "value": format!("{} Harbour Road", person + 1)}],
        "city": [{"language": "eng", "value": "Port Town"}],
        "region": [{"language": "eng", "value": "Coast"}],
        "individualBiometrics": {"format": "cbeff", "ref": "bio"},
    })
}

/// The person packet `seq` is of, and whether it is a re-enrolment.
fn person_of(seq: usize) -> (usize, bool) {
    if seq % REENROL_EVERY == REENROL_EVERY - 1 {
        // An earlier person, chosen deterministically among those enrolled before.
        let firsts = seq - seq / REENROL_EVERY;
        let earlier = (seq.wrapping_mul(2_654_435_761) >> 7) % firsts.max(1);
        (earlier, true)
    } else {
        (seq - seq / REENROL_EVERY, false)
    }
}

pub async fn run(a: Args) -> anyhow::Result<Value> {
    if a.gallery > GALLERY_MAX {
        bail!("--gallery must be at most {GALLERY_MAX}");
    }
    if a.count == 0 || a.count > COUNT_MAX {
        bail!("--count must be between 1 and {COUNT_MAX}");
    }
    if a.concurrency == 0 || a.concurrency > CONCURRENCY_MAX {
        bail!("--concurrency must be between 1 and {CONCURRENCY_MAX}");
    }
    if a.timeout_s == 0 || a.timeout_s > TIMEOUT_MAX_S {
        bail!("--timeout-s must be between 1 and {TIMEOUT_MAX_S}");
    }
    let scratch = std::env::temp_dir().join(format!("tessera-bench-pipeline-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let result = run_in(&a, &scratch).await;
    if a.keep {
        eprintln!("bench: scratch directory kept: {}", scratch.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

async fn run_in(a: &Args, scratch: &Path) -> anyhow::Result<Value> {
    let data_dir = scratch.join("data");
    let over = crate::config::Overrides { config: None, data_dir: Some(data_dir.clone()), database_url: a.database_url.clone() };
    let cfg = crate::config::Config::load(&over, None, None)?;
    let database = if cfg.database_url.starts_with("sqlite:") { "sqlite" } else { "postgres" };
    let opened = crate::open_all(&cfg).await?;
    crate::init(&cfg, &opened).await?;
    let repo = opened.repo.clone();
    let db = repo.db().clone();

    // The UIN pool holds a number for every packet (refills are not what is measured).
    let mut rng = StdRng::from_os_rng();
    while uin_pool::stats(&db).await?.unused < i64::try_from(a.count).unwrap_or(i64::MAX) + 1000 {
        if uin_pool::refill(&db, &cfg.uin, &mut rng, uin_pool::REFILL_BATCH_MAX, now_ms()).await? == 0 {
            bail!("the UIN pool cannot grow");
        }
    }
    let mut tokens = Vec::new();
    for (name, role) in [("bench uploader", Role::Operator), ("bench adjudicator", Role::Adjudicator)] {
        let made = create_token(&db, &**repo.keystore(), &tessera_idrepo::Actor::cli(), name, role, None, now_ms()).await?;
        tokens.push(made.secret);
    }
    let [token, adjudicator]: [String; 2] = tokens.try_into().map_err(|_| anyhow::anyhow!("two tokens"))?;
    let machine = MachineKey::ephemeral()?;
    rows::insert_centre(&db, CENTRE, "Bench Centre", now_ms()).await?;
    rows::assign_staff(&db, CENTRE, OPERATOR, "operator", now_ms()).await?;
    rows::insert_machine(&db, MACHINE, CENTRE, &machine.public_key(), now_ms()).await?;
    let certificate = crate::keys::certificate_pem(&**repo.keystore(), Purpose::Registration)?;
    let recipient = Recipient::parse(certificate.as_bytes())?;

    // The gallery, through the engine as the pipeline inserts (sealed rows, change log). With
    // shards > 1 this process's engine holds no gallery in memory; the servers load it.
    let fill_started = Instant::now();
    fill_gallery(&cfg, &repo, a.gallery, if database == "sqlite" { 4 } else { 8 }).await?;
    let fill_s = fill_started.elapsed().as_secs_f64();
    eprintln!("bench: gallery of {} filled in {fill_s:.1} s", a.gallery);

    // The packets.
    let seal_started = Instant::now();
    let packet_bytes_max = cfg.registration.packet_bytes_max;
    let base = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let base = time::PrimitiveDateTime::new(base.date(), base.time().replace_millisecond(0).unwrap_or(base.time()));
    let firsts = a.count - a.count / REENROL_EVERY;
    let people: Vec<SynthPerson> = build(firsts, 0, 0xB1_0000, |rng, _| SynthPerson::random(rng));
    let sealed: Vec<anyhow::Result<Sealed>> = build(a.count, 0, 0xC0_0000, |rng, seq| {
        let (person, again) = person_of(seq);
        let Some(p) = people.get(person) else { return Err(anyhow::anyhow!("no person {person}")) };
        let created = base + time::Duration::milliseconds(i64::try_from(seq).unwrap_or(0));
        let rid = Rid::new(CentreId::parse(CENTRE)?, MachineId::parse(MACHINE)?, u32::try_from(seq + 1)?, created)?;
        let draft = Draft {
            rid,
            flow: Flow::New,
            operator: OPERATOR.into(),
            supervisor: None,
            created_at_ms: created.assume_utc().unix_timestamp() * 1000,
            gps: None,
            uin: None,
            guardian_uin: None,
            exceptions: vec![],
            capture: vec![],
            files: vec![
                (IDENTITY_FILE.into(), FileKind::Identity, serde_json::to_vec(&record(person, again))?),
                ("bio".into(), FileKind::Biometrics, p.cbeff(rng, "2026-01-01T09:00:00.000Z")),
            ],
        };
        Ok((rid.to_string(), person, again, draft.seal(&machine, &recipient, packet_bytes_max)?))
    });
    drop(people);
    let packets: Vec<Sealed> = sealed.into_iter().collect::<anyhow::Result<_>>()?;
    let seal_s = seal_started.elapsed().as_secs_f64();
    let packet_bytes: usize = packets.iter().map(|p| p.3.len()).sum::<usize>() / packets.len();
    eprintln!("bench: {} packets sealed in {seal_s:.1} s", packets.len());
    // The servers open the database themselves.
    opened.close().await;

    // The servers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let started = Instant::now();
    let mut procs = Vec::new();
    let mut load_s = Vec::new();
    let roles: &[(&str, Option<&str>)] = match a.topology {
        Topology::Single => &[("all", None)],
        Topology::Split => &[("api", Some("api")), ("worker-1", Some("worker")), ("worker-2", Some("worker"))],
    };
    for (name, role) in roles {
        let log = scratch.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--data-dir").arg(&data_dir);
        if let Some(url) = &a.database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        if let Some(r) = role {
            cmd.args(["--role", r]);
        }
        for var in ["TESSERA_DATABASE_URL", "TESSERA_DATA_DIR", "TESSERA_CONFIG", "TESSERA_LOG", "TESSERA_ROLE", "TESSERA_LISTEN"] {
            cmd.env_remove(var);
        }
        cmd.env("TESSERA_ABIS__ENABLED", "true")
            .env("TESSERA_WORKER__POLL_INTERVAL_MS", a.poll_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        let child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
        procs.push(Proc { child, log, name: (*name).to_owned() });
    }
    // Ready: the API listens (after loading the gallery); a worker has started its loop.
    for p in &mut procs {
        let ready = if p.name == "worker-1" || p.name == "worker-2" { "worker started" } else { "listening" };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(s) =
                log_lines(&p.log).find(|v| v["fields"]["message"] == "ABIS gallery loaded").and_then(|v| v["fields"]["seconds"].as_f64())
                && log_lines(&p.log).any(|v| v["fields"]["message"] == ready)
            {
                load_s.push(json!({"process": p.name, "gallery_load_s": s}));
                break;
            }
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status}) before it was ready; see {}", p.name, p.log.display());
            }
            if Instant::now() > deadline {
                bail!("{} was not ready within {} s", p.name, READY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ready_s = started.elapsed().as_secs_f64();
    eprintln!("bench: servers ready in {ready_s:.1} s");

    // On the clock: uploads, then processing until every packet is final.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let base_url = format!("http://127.0.0.1:{port}");
    let packets = Arc::new(packets);
    let next = Arc::new(AtomicUsize::new(0));
    let t0_ms = now_ms();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.concurrency {
        let (http, packets, next, token, url) = (http.clone(), packets.clone(), next.clone(), token.clone(), base_url.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rid, _, _, bytes)) = packets.get(i) else { return Ok::<_, anyhow::Error>(()) };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let sent = http
                        .post(format!("{url}/v1/packets"))
                        .bearer_auth(&token)
                        .header("content-type", "application/octet-stream")
                        .body(bytes.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => break,
                        Ok(r) if r.status().is_client_error() => bail!("packet {rid} refused: HTTP {}", r.status()),
                        other if attempt >= 5 => {
                            bail!("packet {rid} not accepted after {attempt} attempts: {:?}", other.map(|r| r.status()))
                        }
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("upload task panicked")??;
    }
    let upload_s = t0.elapsed().as_secs_f64();
    eprintln!("bench: {} packets uploaded in {upload_s:.1} s", packets.len());
    let deadline = t0 + Duration::from_secs(a.timeout_s);
    let db = tessera_store::Db::open(&cfg.database_url).await?;
    let mut last_report = Instant::now();
    let person_of: HashMap<&str, usize> = packets.iter().map(|(rid, person, ..)| (rid.as_str(), *person)).collect();
    let mut adjudicated = 0;
    loop {
        let counts = rows::count_by_status(&db).await?;
        if counts.iter().any(|(s, n)| s == "adjudication" && *n > 0) {
            adjudicated += adjudicate(&http, &base_url, &adjudicator, &person_of).await?;
        }
        let done: i64 = counts.iter().filter(|(s, _)| FINAL.contains(&s.as_str())).map(|(_, n)| n).sum();
        if usize::try_from(done).unwrap_or(0) >= packets.len() {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("bench: {done} of {} final after {:.0} s", packets.len(), t0.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        for p in &mut procs {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status}) during the run; see {}", p.name, p.log.display());
            }
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} packets final within {} s ({counts:?})", packets.len(), a.timeout_s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let polled_s = t0.elapsed().as_secs_f64();

    // Off the clock: every packet's status (through the API, as an operator sees it).
    let mut statuses: HashMap<String, Value> = HashMap::with_capacity(packets.len());
    let next = Arc::new(AtomicUsize::new(0));
    let mut status_tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, packets, next, token, url) = (http.clone(), packets.clone(), next.clone(), token.clone(), base_url.clone());
        status_tasks.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rid, ..)) = packets.get(i) else { return Ok::<_, anyhow::Error>(got) };
                let r = http.get(format!("{url}/v1/packets/{rid}")).bearer_auth(&token).send().await?;
                let v: Value = serde_json::from_slice(&r.bytes().await?)?;
                got.push((rid.clone(), v));
            }
        });
    }
    while let Some(r) = status_tasks.join_next().await {
        statuses.extend(r.context("status task panicked")??);
    }
    db.close().await;
    // The servers stop (SIGKILL: the scratch directory is thrown away).
    drop(procs);

    // Latencies (upload accepted → final event) and the end of the run, from the histories.
    let mut latencies = Vec::with_capacity(packets.len());
    let mut last_final_ms = t0_ms;
    for (rid, ..) in packets.iter() {
        let s = &statuses[rid];
        let history = s["history"].as_array().cloned().unwrap_or_default();
        let accepted = history.iter().find(|e| e["stage"] == "upload").and_then(|e| e["at_ms"].as_i64());
        let fin = history.iter().find(|e| e["outcome"].as_str().is_some_and(|o| FINAL.contains(&o))).and_then(|e| e["at_ms"].as_i64());
        if let (Some(a0), Some(f)) = (accepted, fin) {
            latencies.push(f - a0);
            last_final_ms = last_final_ms.max(f);
        }
    }
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)] // milliseconds
    let e2e_s = (last_final_ms - t0_ms) as f64 / 1000.0;

    // Correctness: one UIN per person, issued by exactly one of its packets (which one may be
    // the re-enrolment: of two registrations of a person in flight at once, the one that was
    // not found by the other proceeds and the other ends a duplicate), every other packet a
    // duplicate of it, no UIN issued twice.
    let mut problems: Vec<String> = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut of_person: HashMap<usize, (HashSet<String>, usize)> = HashMap::new();
    let mut issued = HashSet::new();
    let mut reenrolments_duplicate = 0;
    for (rid, person, again, _) in packets.iter() {
        let s = &statuses[rid];
        let status = s["status"].as_str().unwrap_or("?").to_owned();
        *by_status.entry(status.clone()).or_default() += 1;
        let entry = of_person.entry(*person).or_default();
        match (status.as_str(), s["uin"].as_str()) {
            ("issued", Some(u)) => {
                if !issued.insert(u.to_owned()) {
                    problems.push(format!("{rid}: a UIN issued twice"));
                }
                entry.0.insert(u.to_owned());
                entry.1 += 1;
            }
            ("duplicate", Some(u)) => {
                reenrolments_duplicate += usize::from(*again);
                entry.0.insert(u.to_owned());
            }
            (other, _) if problems.len() < 20 => problems.push(format!("{rid}: ended {other} (reason {})", s["reason"])),
            _ => {}
        }
    }
    let people_with_two = of_person.values().filter(|(uins, _)| uins.len() > 1).count();
    if people_with_two > 0 {
        problems.push(format!("{people_with_two} persons hold more than one UIN"));
    }
    let not_issued_once = of_person.values().filter(|(_, n)| *n != 1).count();
    if not_issued_once > 0 {
        problems.push(format!("{not_issued_once} persons were issued a UIN by no packet or by several"));
    }

    let stages = stage_costs(scratch, a.topology);
    let goal = 50.0;
    let mosip = 0.01 * 2.0;
    let rate = per_sec(packets.len(), e2e_s);
    Ok(json!({
        "bench": "pipeline",
        "database": database,
        "topology": match a.topology { Topology::Single => "single", Topology::Split => "split" },
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "gallery": a.gallery,
        "gallery_fill_s": fill_s,
        "gallery_fill_per_s": per_sec(a.gallery, fill_s),
        "packets": packets.len(),
        "reenrolments": packets.iter().filter(|p| p.2).count(),
        "packet_bytes_mean": packet_bytes,
        "seal_s": seal_s,
        "servers_ready_s": ready_s,
        "gallery_load": load_s,
        "upload_concurrency": a.concurrency,
        "worker_poll_ms": a.poll_ms,
        "upload_s": upload_s,
        "uploads_per_s": per_sec(packets.len(), upload_s),
        "end_to_end_s": e2e_s,
        "all_final_seen_s": polled_s,
        "registrations_per_s": rate,
        "latency_ms": {"p50": percentile(&latencies, 0.5), "p95": percentile(&latencies, 0.95), "max": latencies.last().copied().unwrap_or(0)},
        "goal_per_s": goal,
        "ratio_to_goal": rate / goal,
        "mosip_2_vcpu_per_s": mosip,
        "ratio_to_mosip_2_vcpu": rate / mosip,
        "by_status": by_status,
        "adjudicated": adjudicated,
        "reenrolments_duplicate": reenrolments_duplicate,
        "distinct_uins_issued": issued.len(),
        "stages": stages,
        "correct": problems.is_empty(),
        "problems": problems,
    }))
}

/// The bench as the adjudicator (on the clock: a person would take longer): decides each open
/// case from the ground truth, a duplicate of the candidate who is the same synthetic person,
/// else not a duplicate. Returns how many it decided. Cases come from strangers near the
/// ABIS match threshold (about one search in `10^(targetFPIR/10)`).
async fn adjudicate(http: &reqwest::Client, base: &str, token: &str, person_of: &HashMap<&str, usize>) -> anyhow::Result<usize> {
    let get = async |url: String| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&http.get(url).bearer_auth(token).send().await?.bytes().await?)?)
    };
    let list = get(format!("{base}/v1/adjudications?limit=200")).await?;
    let mut decided = 0;
    for case in list["cases"].as_array().into_iter().flatten() {
        let id = case["id"].as_str().context("a case without id")?;
        let detail = get(format!("{base}/v1/adjudications/{id}")).await?;
        let person = detail["registration"]["rid"].as_str().and_then(|r| person_of.get(r));
        let same = detail["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["uin"].is_string() && person.is_some() && c["rid"].as_str().and_then(|r| person_of.get(r)) == person);
        let body = match same {
            Some(c) => json!({"decision": "duplicate", "uin": c["uin"], "reason": "bench: same synthetic person"}),
            None => json!({"decision": "not_duplicate", "reason": "bench: another synthetic person"}),
        };
        let r = http
            .post(format!("{base}/v1/adjudications/{id}/decision"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        if r.status().is_success() {
            decided += 1;
        }
    }
    Ok(decided)
}

fn log_lines(path: &Path) -> impl Iterator<Item = Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect::<Vec<Value>>()
        .into_iter()
}

/// Per stage, from the `job done` lines of the worker logs: jobs, mean and p50/p95 ms, total
/// seconds; and the jobs that waited for an in-flight candidate.
fn stage_costs(scratch: &Path, topology: Topology) -> Value {
    let logs: &[&str] = match topology {
        Topology::Single => &["all"],
        Topology::Split => &["worker-1", "worker-2"],
    };
    let mut per: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut waits = 0;
    for name in logs {
        for v in log_lines(&scratch.join(format!("{name}.log"))) {
            let f = &v["fields"];
            if f["message"] == "job waits" {
                waits += 1;
            }
            if f["message"] == "job done"
                && let (Some(stage), Some(ms)) = (f["stage"].as_str(), f["ms"].as_f64())
            {
                // Jobs other than packet stages (a UIN pool refill) by their kind.
                let stage = if stage.is_empty() { f["kind"].as_str().unwrap_or("other") } else { stage };
                #[allow(clippy::cast_possible_truncation)] // milliseconds
                per.entry(stage.to_owned()).or_default().push((ms * 1000.0) as i64);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (stage, mut us) in per {
        us.sort_unstable();
        let total: i64 = us.iter().sum();
        #[allow(clippy::cast_precision_loss)]
        out.insert(
            stage,
            json!({
                "jobs": us.len(),
                "mean_ms": total as f64 / 1000.0 / us.len().max(1) as f64,
                "p50_ms": percentile(&us, 0.5) as f64 / 1000.0,
                "p95_ms": percentile(&us, 0.95) as f64 / 1000.0,
                "total_s": total as f64 / 1e6,
            }),
        );
    }
    json!({"per_stage": out, "snoozed_jobs": waits})
}

/// Inserts `n` synthetic persons into the ABIS tables, `tasks` inserts at a time, generating
/// the templates on every core a chunk at a time.
async fn fill_gallery(cfg: &crate::config::Config, repo: &tessera_idrepo::IdRepo, n: usize, tasks: usize) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut engine_cfg = cfg.abis.engine();
    engine_cfg.shards = 2;
    let fetch = tessera_abis::datashare::Datashare::new(None, None).map_err(|e| anyhow::anyhow!("data share client: {e}"))?;
    let engine = Arc::new(
        tessera_abis::Engine::open(repo.clone(), Arc::new(fetch), engine_cfg, &mut |_, _| {})
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the ABIS engine ({}): {e}", e.code()))?,
    );
    let mut last_report = Instant::now();
    let mut first = 0;
    while first < n {
        let len = FILL_CHUNK.min(n - first);
        let sets: Vec<TemplateSet> =
            tokio::task::spawn_blocking(move || build(len, first, 0x6A_1100, |rng, _| SynthPerson::random(rng).capture(rng))).await?;
        let sets = Arc::new(sets);
        let next = Arc::new(AtomicUsize::new(0));
        let mut js = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (engine, sets, next) = (engine.clone(), sets.clone(), next.clone());
            js.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(set) = sets.get(i) else { return Ok::<_, anyhow::Error>(()) };
                    let g = first + i;
                    let reference = format!("00000000-0000-4000-8000-{g:012x}");
                    let r = engine.insert_set(&format!("{reference}-insert"), &reference, set, now_ms()).await;
                    if !r.is_success() {
                        bail!("gallery insert {g} failed: reason {:?}", r.failure_reason);
                    }
                }
            });
        }
        while let Some(r) = js.join_next().await {
            r.context("insert task panicked")??;
        }
        first += len;
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("bench: gallery {first} of {n}");
            last_report = Instant::now();
        }
    }
    Ok(())
}
