//! Compiling the project's Solidity (`contracts/`) with foundry-compilers, for the commands and
//! tests that deploy it (`guardian rehearse`, `guardian safe deploy`, `guardian module deploy`,
//! the end-to-end tests and benchmarks).
//!
//! A crate of its own so that foundry-compilers (and the Solidity parser it brings) builds in
//! parallel with the crates that only drive the chain: they depend on `guardian-chain`, which
//! holds the compiled contracts' types but no compiler.
//!
//! The Safe 1.4.1, OpenZeppelin and Zodiac (module base) sources are imported from the
//! toolchain's `node_modules` by remappings, so `contracts/src` holds only our own code. Artifacts
//! and foundry's cache live in `contracts/out` and `contracts/cache`; an unchanged project
//! compiles nothing the second time.

use std::{collections::BTreeMap, fs::File, path::Path};

use eyre::{Result, WrapErr, bail};
use foundry_compilers::{
    Artifact, Project, ProjectPathsConfig,
    artifacts::{Optimizer, Settings, remappings::Remapping},
    multi::{MultiCompiler, MultiCompilerSettings},
    solc::{Solc, SolcCompiler, SolcSettings},
};
use guardian_chain::{CompiledContract, Contracts, Toolchain};

/// The npm packages `contracts/` imports from, each remapped to `toolchain/node_modules/<package>/`.
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
    std::fs::create_dir_all(&cache_dir)
        .wrap_err_with(|| format!("creating {}", cache_dir.display()))?;
    let lock_path = cache_dir.join(".compile.lock");
    let lock = File::create(&lock_path)
        .wrap_err_with(|| format!("opening lock file {}", lock_path.display()))?;
    lock.lock().wrap_err_with(|| format!("locking {}", lock_path.display()))?;

    let project = build_project(toolchain, &project_root, &node_modules)?;
    let output = project.compile().wrap_err_with(|| {
        format!("compiling the Solidity project at {}", project_root.display())
    })?;
    if output.has_compiler_errors() {
        bail!("solc reported errors in {}:\n{output}", project_root.display());
    }
    let reused_cache = output.is_unchanged();

    let mut by_name = BTreeMap::new();
    for (id, artifact) in output.into_artifacts() {
        let (Some(abi), Some(bytecode), Some(deployed)) = (
            artifact.get_abi(),
            artifact.get_bytecode_bytes(),
            artifact.get_deployed_bytecode_bytes(),
        ) else {
            continue;
        };
        if bytecode.is_empty() {
            continue; // interfaces and abstract contracts
        }
        let contract = CompiledContract {
            name: id.name.clone(),
            abi: abi.into_owned(),
            bytecode: bytecode.into_owned(),
            deployed_bytecode: deployed.into_owned(),
        };
        // Our own sources win over a library contract of the same name.
        let ours = id.source.starts_with(project_root.join("src")) || id.source.starts_with("src");
        if ours || !by_name.contains_key(&id.name) {
            by_name.insert(id.name, contract);
        }
    }
    drop(lock);
    Ok(Contracts::new(by_name, reused_cache))
}

fn build_project(
    toolchain: &Toolchain,
    project_root: &Path,
    node_modules: &Path,
) -> Result<Project<MultiCompiler>> {
    let remapping = |name: &str| Remapping {
        context: None,
        name: format!("{name}/"),
        path: format!("{}/", node_modules.join(name).display()),
    };
    let paths = ProjectPathsConfig::builder()
        .root(project_root)
        .sources(project_root.join("src"))
        .artifacts(project_root.join("out"))
        .cache(project_root.join("cache/solidity-files-cache.json"))
        .no_libs()
        .remappings(LIBRARIES.map(remapping))
        .allowed_path(node_modules)
        .build()
        .wrap_err("configuring project paths")?;

    let solc = Solc::new(toolchain.solc())
        .wrap_err_with(|| format!("running `{} --version`", toolchain.solc().display()))?;
    let compiler = MultiCompiler { solc: Some(SolcCompiler::Specific(solc)), vyper: None };
    let settings = MultiCompilerSettings {
        solc: SolcSettings {
            settings: Settings {
                // Safe's singleton exceeds the 24 KiB code-size limit without the optimizer.
                optimizer: Optimizer { enabled: Some(true), runs: Some(200), details: None },
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    Project::builder()
        .paths(paths)
        .settings(settings)
        .build(compiler)
        .wrap_err("configuring the foundry-compilers project")
}
