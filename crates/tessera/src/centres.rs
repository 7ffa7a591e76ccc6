//! `tessera centre …` and `tessera machine …`: the administrator's side of registration —
//! centres, the machines registered to them (public keys only; a machine's key pair is made on
//! the machine with `tessera machine keygen`), the operators and supervisors assigned to each
//! centre, and the registration certificate clients encrypt packets to.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tessera_core::id::{CentreId, MachineId};
use tessera_crypto::{MachineKey, Purpose};
use tessera_idrepo::IdRepo;
use tessera_store::registration as rows;
use tessera_store::{StoreError, now_ms};

#[derive(Debug, clap::Subcommand)]
pub enum CentreCmd {
    /// Register a centre (5-digit id, the first part of every RID made there).
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
    /// Stop (or resume) accepting packets from a centre's machines.
    SetStatus {
        #[arg(long)]
        id: String,
        /// active or inactive.
        #[arg(long)]
        status: String,
    },
    /// Assign an operator or supervisor (their user id appears in the packets they make).
    Assign {
        #[arg(long)]
        centre: String,
        #[arg(long)]
        user: String,
        /// operator or supervisor.
        #[arg(long)]
        role: String,
    },
    /// Remove an assignment.
    Unassign {
        #[arg(long)]
        centre: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Every centre with its staff, as JSON lines.
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum MachineCmd {
    /// On the registration machine: create its signing key pair (the private key stays in FILE,
    /// 0600) and print the public key to register with the server.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Register a machine of a centre by its public key (base64, from `machine keygen`).
    Register {
        #[arg(long)]
        id: String,
        #[arg(long)]
        centre: String,
        #[arg(long)]
        public_key: String,
    },
    /// Revoke a machine: its packets are refused from now on.
    Revoke {
        #[arg(long)]
        id: String,
    },
    /// Every machine, as JSON lines.
    List,
    /// Print the registration certificate (PEM) that clients encrypt packets to.
    Certificate,
}

/// `machine keygen` needs no data directory.
///
/// # Errors
/// The key file exists already, or cannot be written.
pub fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let key = MachineKey::create_file(out).with_context(|| format!("cannot create {}", out.display()))?;
    println!("{}", json!({ "key_file": out.display().to_string(), "public_key": STANDARD.encode(key.public_key()) }));
    Ok(ExitCode::SUCCESS)
}

fn store_msg(e: StoreError, what: &str) -> anyhow::Error {
    match e {
        StoreError::Conflict => anyhow::anyhow!("{what} exists already"),
        StoreError::Invalid(m) => anyhow::anyhow!("{m}"),
        e => anyhow::anyhow!("{what}: {} ({})", e.code(), e),
    }
}

/// # Errors
/// Invalid ids or values, unknown centres, storage errors.
pub async fn centre_command(repo: &IdRepo, cmd: CentreCmd) -> anyhow::Result<ExitCode> {
    let db = repo.db();
    match cmd {
        CentreCmd::Create { id, name } => {
            CentreId::parse(&id).map_err(|e| anyhow::anyhow!("centre id: {e}"))?;
            rows::insert_centre(db, &id, &name, now_ms()).await.map_err(|e| store_msg(e, "the centre"))?;
            println!("{}", json!({ "centre": id, "status": "active" }));
        }
        CentreCmd::SetStatus { id, status } => {
            if !matches!(status.as_str(), "active" | "inactive") {
                bail!("status must be active or inactive");
            }
            if !rows::set_centre_status(db, &id, &status, now_ms()).await? {
                bail!("no centre {id}");
            }
            println!("{}", json!({ "centre": id, "status": status }));
        }
        CentreCmd::Assign { centre, user, role } => {
            staff_role(&role)?;
            if rows::centre(db, &centre).await?.is_none() {
                bail!("no centre {centre}");
            }
            rows::assign_staff(db, &centre, &user, &role, now_ms()).await.map_err(|e| store_msg(e, "the assignment"))?;
            println!("{}", json!({ "centre": centre, "user": user, "role": role }));
        }
        CentreCmd::Unassign { centre, user, role } => {
            staff_role(&role)?;
            if !rows::unassign_staff(db, &centre, &user, &role).await? {
                bail!("{user} is not {role} at centre {centre}");
            }
        }
        CentreCmd::List => {
            for c in rows::centres(db).await? {
                let staff: Vec<_> = rows::staff(db, &c.id).await?.into_iter().map(|(u, r)| json!({ "user": u, "role": r })).collect();
                println!(
                    "{}",
                    json!({ "centre": c.id, "name": c.name, "status": c.status, "created_at_ms": c.created_at_ms, "staff": staff })
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn staff_role(role: &str) -> anyhow::Result<()> {
    if matches!(role, "operator" | "supervisor") { Ok(()) } else { bail!("role must be operator or supervisor") }
}

/// # Errors
/// Invalid ids or keys, unknown centres or machines, storage and keystore errors.
pub async fn machine_command(repo: &IdRepo, cmd: MachineCmd) -> anyhow::Result<ExitCode> {
    let db = repo.db();
    match cmd {
        MachineCmd::Keygen { out } => return keygen(&out),
        MachineCmd::Register { id, centre, public_key } => {
            MachineId::parse(&id).map_err(|e| anyhow::anyhow!("machine id: {e}"))?;
            let key = STANDARD.decode(public_key.trim()).ok().filter(|k| k.len() == tessera_crypto::machine::PUBLIC_KEY_LEN);
            let Some(key) = key else { bail!("public key must be the base64 of 32 bytes (Ed25519), as `machine keygen` prints it") };
            if rows::centre(db, &centre).await?.is_none() {
                bail!("no centre {centre}");
            }
            rows::insert_machine(db, &id, &centre, &key, now_ms()).await.map_err(|e| store_msg(e, "the machine"))?;
            println!("{}", json!({ "machine": id, "centre": centre, "status": "active" }));
        }
        MachineCmd::Revoke { id } => {
            if !rows::set_machine_status(db, &id, "revoked", now_ms()).await? {
                bail!("no machine {id}");
            }
            println!("{}", json!({ "machine": id, "status": "revoked" }));
        }
        MachineCmd::List => {
            for m in rows::machines(db).await? {
                println!(
                    "{}",
                    json!({ "machine": m.id, "centre": m.centre_id, "status": m.status, "public_key": STANDARD.encode(&m.public_key), "created_at_ms": m.created_at_ms })
                );
            }
        }
        MachineCmd::Certificate => {
            println!("{}", crate::keys::certificate_pem(&**repo.keystore(), Purpose::Registration)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
