//! `tessera credential verify|present`: what a verifier and a holder do with an SD-JWT VC, offline
//! (the JWKS from a file) or with the JWKS fetched from the issuer. Output names claims and codes;
//! the disclosed values are printed only because the caller holds the credential.

use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tessera_credentials::sd_jwt;

/// Largest JWKS read.
const JWKS_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum CredentialCmd {
    /// Verifies a credential or presentation: the issuer's signature, validity, and every
    /// disclosure; prints the issuer, type, validity and the disclosed claims as JSON. Exit 1
    /// with the error code on stderr when it does not verify.
    Verify {
        /// The issuer's JWKS: a file, or an http(s) URL (`<issuer>/.well-known/jwks.json`).
        #[arg(long)]
        jwks: String,
        /// Refuse credentials from any other issuer (`iss`).
        #[arg(long)]
        issuer: Option<String>,
        /// The compact credential; `-` or absent: standard input.
        #[arg(long)]
        credential: Option<PathBuf>,
    },
    /// Keeps only the named claims' disclosures: the presentation to hand a verifier.
    Present {
        /// Claims to disclose, comma-separated (e.g. `fullName,dateOfBirth`).
        #[arg(long, value_delimiter = ',', required = true)]
        claims: Vec<String>,
        #[arg(long)]
        credential: Option<PathBuf>,
    },
}

fn read_credential(path: Option<&Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    let limit = sd_jwt::COMPACT_BYTES_MAX as u64 + 1;
    match path {
        Some(p) if p != Path::new("-") => {
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?.take(limit).read_to_string(&mut text)?
        }
        _ => std::io::stdin().take(limit).read_to_string(&mut text)?,
    };
    Ok(text.trim().to_owned())
}

async fn read_jwks(source: &str) -> anyhow::Result<serde_json::Value> {
    let bytes = if source.starts_with("https://") || source.starts_with("http://") {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let res = http.get(source).send().await.context("cannot fetch the JWKS")?;
        if !res.status().is_success() {
            bail!("the JWKS URL answered {}", res.status());
        }
        let body = res.bytes().await?;
        body.to_vec()
    } else {
        std::fs::read(source).with_context(|| format!("cannot read {source}"))?
    };
    if bytes.len() > JWKS_BYTES_MAX {
        bail!("the JWKS is larger than {JWKS_BYTES_MAX} bytes");
    }
    serde_json::from_slice(&bytes).context("the JWKS is not JSON")
}

pub async fn command(cmd: CredentialCmd) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        CredentialCmd::Verify { jwks, issuer, credential } => {
            let keys = sd_jwt::keys_of_jwks(&read_jwks(&jwks).await?);
            if keys.is_empty() {
                bail!("the JWKS holds no Ed25519 key");
            }
            let compact = read_credential(credential.as_deref())?;
            let now = tessera_store::now_ms().div_euclid(1000);
            match sd_jwt::verify(&compact, &|kid| keys.get(kid).cloned(), issuer.as_deref(), now) {
                Ok(v) => {
                    let out = serde_json::json!({
                        "valid": true,
                        "issuer": v.issuer,
                        "vct": v.vct,
                        "id": v.id,
                        "kid": v.kid,
                        "issued_at": v.issued_at_s,
                        "expires_at": v.expires_at_s,
                        "disclosed": v.disclosed,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", e.code());
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        CredentialCmd::Present { claims, credential } => {
            let compact = read_credential(credential.as_deref())?;
            let names: Vec<&str> = claims.iter().map(String::as_str).collect();
            match sd_jwt::present(&compact, &names) {
                Ok(p) => {
                    println!("{p}");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", e.code());
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
    }
}
