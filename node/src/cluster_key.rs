//! Where `boxoffice node` and `boxoffice api` get the cluster key that signs internal calls:
//! the environment variable `BOXOFFICE_CLUSTER_KEY` or `--cluster-key-file`. Without either
//! they refuse to start unless told `--insecure` (secure by default, as CockroachDB is).
//! `boxoffice dev` generates one and keeps it in `<data dir>/cluster.key`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use boxoffice_raft::storage::write_file_atomic;
use boxoffice_raft::ClusterKey;

/// The environment variable holding the key itself.
pub const CLUSTER_KEY_ENV: &str = "BOXOFFICE_CLUSTER_KEY";
/// The file `boxoffice dev` keeps its generated key in, inside its data dir.
pub const DEV_KEY_FILE: &str = "cluster.key";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// File holding the cluster key (at least 32 bytes; surrounding whitespace ignored)
    /// that signs and checks every internal call. Or put the key itself in the environment
    /// variable BOXOFFICE_CLUSTER_KEY.
    #[arg(long, env = "BOXOFFICE_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Run without a cluster key: internal calls are neither signed nor checked, so anyone
    /// who reaches a storage node's port can write to the inventory. Tests and demos only.
    #[arg(long, env = "BOXOFFICE_INSECURE")]
    pub insecure: bool,
}

impl KeyArgs {
    /// The key, or `None` for `--insecure`; an error when there is neither or both.
    pub fn resolve(&self) -> anyhow::Result<Option<ClusterKey>> {
        let from_env = std::env::var(CLUSTER_KEY_ENV).ok();
        let text = match (&from_env, &self.cluster_key_file) {
            (Some(_), Some(_)) => {
                bail!("both {CLUSTER_KEY_ENV} and --cluster-key-file are set; keep one")
            }
            (Some(key), None) => key.trim().to_owned(),
            (None, Some(path)) => read_key_file(path)?,
            (None, None) if self.insecure => return Ok(None),
            (None, None) => bail!(
                "no cluster key: set {CLUSTER_KEY_ENV} or --cluster-key-file \
                 (or --insecure for a test cluster nobody else can reach)"
            ),
        };
        if self.insecure {
            bail!("--insecure together with a cluster key: keep one");
        }
        let key = ClusterKey::new(text.as_bytes())
            .with_context(|| format!("the cluster key from {}", self.source()))?;
        Ok(Some(key))
    }

    fn source(&self) -> String {
        match &self.cluster_key_file {
            Some(path) => path.display().to_string(),
            None => CLUSTER_KEY_ENV.to_owned(),
        }
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cluster key file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// `boxoffice dev`'s key: read from `dir/cluster.key`, or generated and written there
/// (durably, readable by its owner only) on first start.
pub fn dev_key(dir: &Path) -> anyhow::Result<ClusterKey> {
    let path = dir.join(DEV_KEY_FILE);
    let text = if path.exists() {
        read_key_file(&path)?
    } else {
        let text = ClusterKey::generate_text();
        std::fs::create_dir_all(dir)?;
        write_file_atomic(dir, DEV_KEY_FILE, format!("{text}\n").as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        text
    };
    ClusterKey::new(text.as_bytes())
        .with_context(|| format!("the cluster key in {}", path.display()))
}
