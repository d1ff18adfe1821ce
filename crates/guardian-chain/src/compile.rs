//! Compiling the project's Solidity (`contracts/`) with the pinned `forge`, for the commands and
//! tests that deploy it (`guardian rehearse`, `guardian safe deploy`, `guardian module deploy`,
//! `guardian audit deploy-anchor`, the end-to-end tests and benchmarks).
//!
//! `contracts/foundry.toml` is the build's one configuration (sources, remappings into the
//! toolchain's `node_modules`, optimizer), the same file an operator's own `forge build` reads.
//! guardian only adds the solc it resolved (`--use`, so `GUARDIAN_SOLC` holds) and keeps the
//! caller's `FOUNDRY_*` variables away from the build, so a profile set for another project
//! cannot change the bytecode guardian deploys. forge's cache (`contracts/cache`) makes an
//! unchanged project compile nothing the second time; the artifacts its cache lists are read
//! from `contracts/out`.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs::{self, File},
    path::Path,
    process::Command,
};

use alloy::{json_abi::JsonAbi, primitives::Bytes};
use eyre::{Result, WrapErr, bail};
use serde::Deserialize;

use crate::{CompiledContract, Contracts, Toolchain};

/// The npm packages `contracts/` imports from (remapped in `contracts/foundry.toml`).
const LIBRARIES: [&str; 3] =
    ["@openzeppelin/contracts", "@safe-global/safe-contracts", "@gnosis-guild/zodiac-core"];

/// Compile `contracts/` of the toolchain's project (or reuse the cached artifacts when no
/// source changed). Serialised across processes by a lock file in the cache folder.
pub fn compile(toolchain: &Toolchain) -> Result<Contracts> {
    let project_root = toolchain.contracts_dir();
    let node_modules = toolchain.node_modules();
    for package in LIBRARIES {
        if !node_modules.join(package).is_dir() {
            bail!(
                "{package} is not installed under {}; run scripts/setup.sh",
                node_modules.display()
            );
        }
    }
    let cache_dir = project_root.join("cache");
    fs::create_dir_all(&cache_dir).wrap_err_with(|| format!("creating {}", cache_dir.display()))?;
    let lock_path = cache_dir.join(".compile.lock");
    let lock = File::create(&lock_path)
        .wrap_err_with(|| format!("opening lock file {}", lock_path.display()))?;
    lock.lock().wrap_err_with(|| format!("locking {}", lock_path.display()))?;

    let reused_cache = run_forge(toolchain, &project_root)?;
    let by_name = read_artifacts(&project_root)?;
    drop(lock);
    Ok(Contracts::new(by_name, reused_cache))
}

/// What `forge build --json` prints: solc's diagnostics and the sources it compiled (none when
/// the cache was up to date). It exits 0 even when solc reports errors, so they are read here.
#[derive(Deserialize)]
struct BuildOutput {
    errors: Vec<Diagnostic>,
    #[serde(default)]
    contracts: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Diagnostic {
    severity: String,
    #[serde(rename = "formattedMessage", default)]
    formatted_message: String,
    #[serde(default)]
    message: String,
}

/// Runs `forge build` in `project_root`; true when it compiled nothing (cache up to date).
fn run_forge(toolchain: &Toolchain, project_root: &Path) -> Result<bool> {
    let mut command = Command::new(toolchain.forge());
    command
        .current_dir(project_root)
        .arg("build")
        .arg("--root")
        .arg(project_root)
        .arg("--use")
        .arg(toolchain.solc())
        .args(["--offline", "--json"]);
    for name in foundry_variables(std::env::vars_os().map(|(name, _)| name)) {
        command.env_remove(name);
    }
    let shown = format!(
        "{} build --root {} --use {} --offline --json",
        toolchain.forge().display(),
        project_root.display(),
        toolchain.solc().display()
    );
    let output = command.output().wrap_err_with(|| format!("running {shown}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            stderr
        );
    }
    build_outcome(&output.stdout, project_root).wrap_err_with(|| {
        if stderr.trim().is_empty() {
            shown
        } else {
            format!("{shown} (stderr: {})", stderr.trim())
        }
    })
}

/// The environment variables forge would read as configuration (`FOUNDRY_PROFILE`,
/// `FOUNDRY_OPTIMIZER`, …; `DAPP_*` are its older spelling): kept from the build.
fn foundry_variables(names: impl Iterator<Item = OsString>) -> Vec<OsString> {
    names
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("FOUNDRY_") || name.starts_with("DAPP_")
        })
        .collect()
}

/// Reads `forge build --json`'s output: an error when solc reported one, else whether the cache
/// was up to date (no contract compiled).
fn build_outcome(stdout: &[u8], project_root: &Path) -> Result<bool> {
    let build: BuildOutput =
        serde_json::from_slice(stdout).wrap_err("reading forge's JSON output")?;
    let errors: Vec<&str> = build
        .errors
        .iter()
        .filter(|d| d.severity == "error")
        .map(|d| if d.formatted_message.is_empty() { &d.message } else { &d.formatted_message })
        .map(String::as_str)
        .collect();
    if !errors.is_empty() {
        bail!("solc reported errors in {}:\n{}", project_root.display(), errors.join("\n"));
    }
    Ok(build.contracts.is_empty())
}

/// forge's cache file: every source of the last build with the artifacts it wrote. It is the
/// index of `out/`, which may also hold artifacts no longer built (renamed sources, another
/// tool's layout).
#[derive(Deserialize)]
struct Cache {
    files: BTreeMap<String, CachedSource>,
}

#[derive(Deserialize)]
struct CachedSource {
    /// Contract name → solc version → profile → artifact.
    #[serde(default)]
    artifacts: BTreeMap<String, BTreeMap<String, BTreeMap<String, ArtifactRef>>>,
}

#[derive(Deserialize)]
struct ArtifactRef {
    /// Relative to `out/`.
    path: String,
}

/// One artifact of `out/`, as forge writes it.
#[derive(Deserialize)]
struct Artifact {
    abi: JsonAbi,
    bytecode: Code,
    #[serde(rename = "deployedBytecode")]
    deployed_bytecode: Code,
}

#[derive(Deserialize)]
struct Code {
    /// Hex, or hex with `__$…$__` placeholders while libraries are unlinked.
    object: String,
}

/// Every deployable contract of the last build, by name: the artifacts forge's cache lists,
/// read from `out/`. Interfaces, abstract contracts and bytecode with unlinked libraries are
/// left out; when a library contract shares a name with one of ours (`src/`), ours wins.
fn read_artifacts(project_root: &Path) -> Result<BTreeMap<String, CompiledContract>> {
    let cache_path = project_root.join("cache/solidity-files-cache.json");
    let text =
        fs::read(&cache_path).wrap_err_with(|| format!("reading {}", cache_path.display()))?;
    let cache: Cache = serde_json::from_slice(&text)
        .wrap_err_with(|| format!("{} is not forge's cache file", cache_path.display()))?;
    let out = project_root.join("out");
    let mut by_name = BTreeMap::new();
    for (source, entry) in cache.files {
        let ours = source.starts_with("src/");
        for (name, versions) in entry.artifacts {
            for artifact in versions.values().flat_map(BTreeMap::values) {
                let file = out.join(&artifact.path);
                let text =
                    fs::read(&file).wrap_err_with(|| format!("reading {}", file.display()))?;
                let artifact: Artifact = serde_json::from_slice(&text)
                    .wrap_err_with(|| format!("{} is not a forge artifact", file.display()))?;
                let (Ok(bytecode), Ok(deployed)) = (
                    artifact.bytecode.object.parse::<Bytes>(),
                    artifact.deployed_bytecode.object.parse::<Bytes>(),
                ) else {
                    continue; // unlinked library placeholders
                };
                if bytecode.is_empty() {
                    continue; // interfaces and abstract contracts
                }
                if ours || !by_name.contains_key(&name) {
                    let contract = CompiledContract {
                        name: name.clone(),
                        abi: artifact.abi,
                        bytecode,
                        deployed_bytecode: deployed,
                    };
                    by_name.insert(name.clone(), contract);
                }
            }
        }
    }
    Ok(by_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(code: &str) -> String {
        serde_json::json!({
            "abi": [{"type": "function", "name": "paused", "inputs": [], "outputs": [{"name": "", "type": "bool", "internalType": "bool"}], "stateMutability": "view"}],
            "bytecode": {"object": code, "sourceMap": "", "linkReferences": {}},
            "deployedBytecode": {"object": code, "sourceMap": "", "linkReferences": {}},
            "methodIdentifiers": {"paused()": "5c975abb"},
        })
        .to_string()
    }

    /// A project folder with forge's cache listing `built` (source, contract, artifact path,
    /// bytecode) and those artifacts in `out/`.
    fn project(built: &[(&str, &str, &str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = serde_json::Map::new();
        for (source, name, path, code) in built {
            let out = dir.path().join("out").join(path);
            fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
            fs::write(out, artifact(code)).expect("write artifact");
            let entry = files
                .entry(source.to_string())
                .or_insert_with(|| serde_json::json!({"sourceName": source, "artifacts": {}}));
            entry["artifacts"][*name] =
                serde_json::json!({"0.8.28": {"default": {"path": path, "build_id": "b1"}}});
        }
        let cache = serde_json::json!({"_format": "", "paths": {}, "files": files});
        fs::create_dir_all(dir.path().join("cache")).expect("mkdir cache");
        fs::write(dir.path().join("cache/solidity-files-cache.json"), cache.to_string())
            .expect("write cache");
        dir
    }

    #[test]
    fn artifacts_keep_deployable_contracts_and_prefer_ours() {
        let unlinked = "0x73__$0123456789abcdef0123456789abcdef01$__";
        let dir = project(&[
            ("src/Vault.sol", "VaultV1", "Vault.sol/VaultV1.json", "0x6001"),
            ("/lib/IERC165.sol", "IERC165", "IERC165.sol/IERC165.json", "0x"),
            ("src/Lib.sol", "Linked", "Lib.sol/Linked.json", unlinked),
            // A library contract named like one of ours, listed before and after it.
            ("/lib/a/Ownable.sol", "Ownable", "a/Ownable.sol/Ownable.json", "0x01"),
            ("src/Ownable.sol", "Ownable", "Ownable.sol/Ownable.json", "0x02"),
            ("/lib/z/Ownable.sol", "Ownable", "z/Ownable.sol/Ownable.json", "0x03"),
        ]);
        // An artifact of an earlier build that the cache no longer lists, in another format.
        fs::create_dir_all(dir.path().join("out/Old.sol")).expect("mkdir");
        fs::write(dir.path().join("out/Old.sol/Old.json"), "{\"abi\": 3}").expect("write");

        let found = read_artifacts(dir.path()).expect("reads");
        assert_eq!(found.keys().map(String::as_str).collect::<Vec<_>>(), ["Ownable", "VaultV1"]);
        assert_eq!(found["VaultV1"].bytecode.as_ref(), [0x60, 0x01]);
        assert_eq!(found["Ownable"].deployed_bytecode.as_ref(), [0x02]);
        assert!(found["VaultV1"].abi.function("paused").is_some());
    }

    #[test]
    fn an_artifact_that_does_not_parse_names_its_file() {
        let dir = project(&[("src/Broken.sol", "Broken", "Broken.sol/Broken.json", "0x01")]);
        fs::write(dir.path().join("out/Broken.sol/Broken.json"), "{\"abi\": 3}").expect("write");
        let err = read_artifacts(dir.path()).expect_err("not an artifact");
        assert!(format!("{err:#}").contains("Broken.sol/Broken.json"), "{err:#}");
        fs::remove_file(dir.path().join("out/Broken.sol/Broken.json")).expect("rm");
        let err = read_artifacts(dir.path()).expect_err("missing artifact");
        assert!(format!("{err:#}").contains("Broken.sol/Broken.json"), "{err:#}");
    }

    #[test]
    fn foundry_configuration_variables_stay_out_of_the_build() {
        let names =
            ["PATH", "FOUNDRY_PROFILE", "HOME", "FOUNDRY_OPTIMIZER", "DAPP_SOLC", "MY_FOUNDRY_X"];
        let kept = foundry_variables(names.into_iter().map(OsString::from));
        assert_eq!(kept, ["FOUNDRY_PROFILE", "FOUNDRY_OPTIMIZER", "DAPP_SOLC"]);
    }

    #[test]
    fn forge_output_errors_and_cache_reuse() {
        let root = Path::new("/p/contracts");
        let skipped = br#"{"errors": [], "sources": {}, "contracts": {}, "build_infos": []}"#;
        assert!(build_outcome(skipped, root).expect("no error"));
        let compiled = br#"{"errors": [{"severity": "warning", "message": "w"}],
            "sources": {"src/Vault.sol": {"id": 0}}, "contracts": {"src/Vault.sol": {}}}"#;
        assert!(!build_outcome(compiled, root).expect("a warning is no error"));
        let failed = br#"{"errors": [{"severity": "warning", "message": "w"},
            {"severity": "error", "message": "e", "formattedMessage": "ParserError: e --> src/V.sol:4:10"}],
            "sources": {}, "contracts": {}}"#;
        let err = format!("{:#}", build_outcome(failed, root).expect_err("solc error"));
        assert!(err.contains("ParserError: e --> src/V.sol:4:10"), "{err}");
        assert!(err.contains("/p/contracts") && !err.contains(": w"), "{err}");
        assert!(build_outcome(b"Error: not json", root).is_err());
    }
}
