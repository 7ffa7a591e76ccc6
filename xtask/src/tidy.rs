//! Architecture invariants, checked from `cargo metadata` and the source tree. Runs as a normal
//! test (`tidy_workspace` below), so `cargo test` fails the moment an invariant is broken.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The layers of DESIGN.md §2, lowest first. A Tessera crate may depend (normally) only on
/// crates of a strictly lower layer; a crate missing from this table is itself an error, so a new
/// crate has to be placed deliberately.
const LAYERS: &[(&str, u32)] = &[
    ("tessera-core", 0),
    ("tessera-crypto", 1),
    ("tessera-store", 2),
    ("tessera-biometrics", 3),
    ("tessera-demographics", 3),
    ("tessera-idrepo", 4),
    ("tessera-abis", 5),
    // Seals its outbox through the repository's sealed items.
    ("tessera-notify", 5),
    // Above the ABIS: the pipeline de-duplicates through it.
    ("tessera-registration", 6),
    ("tessera-auth", 5),
    ("tessera-credentials", 5),
    ("tessera-oidc", 5),
    ("tessera-api", 7),
    ("tessera", 8),
];

/// Third-party crates that only one Tessera crate may use directly: (dependency, sole owner, why).
const OWNED: &[(&str, &str, &str)] = &[
    ("sqlx", "tessera-store", "only store knows SQL"),
    ("axum", "tessera-api", "only api serves HTTP"),
    ("tower-http", "tessera-api", "only api serves HTTP"),
    ("hyper", "tessera-api", "only api serves HTTP"),
    ("utoipa", "tessera-api", "only api knows the wire format"),
    ("utoipa-axum", "tessera-api", "only api knows the wire format"),
    ("figment", "tessera", "only the binary reads configuration"),
    ("clap", "tessera", "only the binary parses command lines"),
    ("tracing-subscriber", "tessera", "only the binary sets up telemetry"),
    ("aws-lc-rs", "tessera-crypto", "only crypto touches key material"),
    ("ring", "tessera-crypto", "only crypto touches key material"),
    ("cryptoki", "tessera-crypto", "only crypto touches key material"),
    ("aes-gcm", "tessera-crypto", "only crypto touches key material"),
];

/// Crates that do no I/O: no runtime, network, database or filesystem adapters.
const PURE: &[&str] = &["tessera-core"];
const IO_CRATES: &[&str] = &["tokio", "sqlx", "axum", "hyper", "object_store", "reqwest", "tower", "tower-http", "tempfile"];

/// Test-support crates that must only ever be dev-dependencies.
const DEV_ONLY: &[&str] = &["tessera-testkit"];

/// Never allowed anywhere (see DESIGN.md §6): slow, and a timing advisory (RUSTSEC-2023-0071).
const BANNED: &[(&str, &str)] = &[("rsa", "use aws-lc-rs for RSA")];

/// Checks the dependency graph in `metadata` (the JSON of `cargo metadata --no-deps`).
/// Returns every violation, one sentence each.
pub fn check_metadata(metadata: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let empty = Vec::new();
    let packages = metadata["packages"].as_array().unwrap_or(&empty);
    for pkg in packages {
        let name = pkg["name"].as_str().unwrap_or("?");
        if name == "xtask" {
            continue;
        }
        let is_test_support = DEV_ONLY.contains(&name);
        let layer = LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
        if layer.is_none() && !is_test_support {
            errors.push(format!("{name}: not in the layer table of xtask/src/tidy.rs; place it in a layer"));
        }
        for dep in pkg["dependencies"].as_array().unwrap_or(&empty) {
            let dep_name = dep["name"].as_str().unwrap_or("?");
            let dev = dep["kind"].as_str() == Some("dev");
            if let Some((_, why)) = BANNED.iter().find(|(b, _)| *b == dep_name) {
                errors.push(format!("{name} depends on {dep_name}, which is banned: {why}"));
            }
            if dev {
                continue;
            }
            if DEV_ONLY.contains(&dep_name) {
                errors.push(format!("{name} depends on {dep_name} outside [dev-dependencies]; it is test support only"));
            }
            if is_test_support {
                continue;
            }
            if let Some((_, owner, why)) = OWNED.iter().find(|(d, _, _)| *d == dep_name)
                && *owner != name
            {
                errors.push(format!("{name} depends on {dep_name}, but {why} ({owner})"));
            }
            if PURE.contains(&name) && IO_CRATES.contains(&dep_name) {
                errors.push(format!("{name} depends on {dep_name}, but {name} must do no I/O"));
            }
            if let (Some(mine), Some(theirs)) = (layer, LAYERS.iter().find(|(n, _)| *n == dep_name).map(|(_, l)| *l))
                && theirs >= mine
            {
                errors.push(format!("{name} (layer {mine}) depends on {dep_name} (layer {theirs}); dependencies point downwards only"));
            }
        }
    }
    errors
}

/// Every `.rs` file must open with a `//!` line saying what it is for.
pub fn check_headers(root: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let mut stack = vec![root.join("crates"), root.join("xtask")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if !text.starts_with("//!") {
                    errors.push(format!("{}: must open with a `//!` line saying what the file is for", p.display()));
                }
            }
        }
    }
    errors.sort();
    errors
}

/// Every crate inherits the workspace lints (so `unsafe_code` stays forbidden everywhere).
pub fn check_lints(root: &Path, metadata: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for pkg in metadata["packages"].as_array().into_iter().flatten() {
        let Some(manifest) = pkg["manifest_path"].as_str() else { continue };
        let text = std::fs::read_to_string(manifest).unwrap_or_default();
        let inherits = text.split("[lints]").nth(1).is_some_and(|rest| rest.trim_start().starts_with("workspace = true"));
        if !inherits {
            let shown = Path::new(manifest).strip_prefix(root).unwrap_or(Path::new(manifest)).display().to_string();
            errors.push(format!("{shown}: needs `[lints] workspace = true`"));
        }
    }
    errors
}

fn metadata(root: &Path) -> Result<Value, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
}

pub fn run(root: &Path) -> Result<(), String> {
    let meta = metadata(root)?;
    let mut errors = check_metadata(&meta);
    errors.extend(check_lints(root, &meta));
    errors.extend(check_headers(root));
    if errors.is_empty() {
        eprintln!("xtask: tidy: all invariants hold");
        Ok(())
    } else {
        Err(format!("tidy found {} problem(s):\n  {}", errors.len(), errors.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(name: &str, kind: Option<&str>) -> Value {
        json!({ "name": name, "kind": kind })
    }

    #[test]
    fn tidy_workspace() {
        let root = crate::workspace_root();
        if let Err(e) = run(&root) {
            panic!("{e}");
        }
    }

    #[test]
    fn a_clean_graph_passes() {
        let meta = json!({ "packages": [
            { "name": "tessera-core", "dependencies": [dep("serde", None), dep("proptest", Some("dev"))] },
            { "name": "tessera-store", "dependencies": [dep("tessera-core", None), dep("sqlx", None), dep("tessera-testkit", Some("dev"))] },
            { "name": "tessera-testkit", "dependencies": [dep("sqlx", None)] },
            { "name": "tessera", "dependencies": [dep("tessera-store", None), dep("clap", None)] },
        ]});
        assert_eq!(check_metadata(&meta), Vec::<String>::new());
    }

    /// A fabricated graph that breaks each invariant once: each is reported.
    #[test]
    fn every_violation_is_reported() {
        let meta = json!({ "packages": [
            { "name": "tessera-core", "dependencies": [dep("tokio", None), dep("tessera-store", None)] },
            { "name": "tessera-store", "dependencies": [dep("axum", None), dep("tessera-testkit", None)] },
            { "name": "tessera-api", "dependencies": [dep("figment", None), dep("rsa", Some("dev"))] },
            { "name": "tessera-mystery", "dependencies": [] },
        ]});
        let errors = check_metadata(&meta);
        let expect = [
            "tessera-core depends on tokio, but tessera-core must do no I/O",
            "tessera-core (layer 0) depends on tessera-store (layer 2); dependencies point downwards only",
            "tessera-store depends on axum, but only api serves HTTP (tessera-api)",
            "tessera-store depends on tessera-testkit outside [dev-dependencies]; it is test support only",
            "tessera-api depends on figment, but only the binary reads configuration (tessera)",
            "tessera-api depends on rsa, which is banned: use aws-lc-rs for RSA",
            "tessera-mystery: not in the layer table of xtask/src/tidy.rs; place it in a layer",
        ];
        for e in expect {
            assert!(errors.iter().any(|x| x == e), "missing: {e}\ngot: {errors:#?}");
        }
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    }

    #[test]
    fn a_file_without_a_header_is_reported() {
        let dir = std::env::temp_dir().join(format!("tidy-test-{}", std::process::id()));
        let src = dir.join("crates/x/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("good.rs"), "//! Good.\n").unwrap();
        std::fs::write(src.join("bad.rs"), "// Not a module doc.\n").unwrap();
        let errors = check_headers(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("bad.rs"));
    }
}
