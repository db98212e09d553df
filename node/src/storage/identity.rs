//! The identity file: which ensemble a data directory belongs to, so that a
//! volume left over from another ensemble is refused instead of silently
//! adopted, and which incarnation of its member it is.
//!
//! ```text
//! identity = "SYNODID\0" version:u32 incarnation:u64 cluster_id:u64 flags:u32 name_len:u32 name[name_len] crc:u32
//! ```
//!
//! Little-endian; `crc` is CRC32C of every byte before it; `cluster_id` 0
//! means "not known yet" (the first leader has not minted it, or this node
//! has not applied it). `flags` bit 0: the directory was initialised empty
//! in an ensemble that already existed (`--initial-cluster-state
//! existing`), so its member votes in nothing until it has been re-added.
//! Version 1 files have no `flags` (read as 0). The file is `<data-dir>/identity`, always replaced
//! whole: written as `identity.tmp`, fsynced, renamed over the old one and
//! the directory fsynced, so a crash leaves either the old or the new file,
//! never a mix. Any mismatch on read is damage and refuses the start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::fs::FileSystem;

const MAGIC: &[u8; 8] = b"SYNODID\0";
const FORMAT_VERSION: u32 = 2;
/// Magic, version, incarnation, cluster id, flags and the name's length.
const FIXED_LEN: usize = 8 + 4 + 8 + 8 + 4 + 4;
/// Version 1 had no flags.
const FIXED_LEN_V1: usize = FIXED_LEN - 4;
const FLAG_JOINED_EXISTING: u32 = 1;
/// Cluster names are flags, not data: anything longer is damage.
const MAX_NAME_BYTES: usize = 4096;
pub const IDENTITY_FILE: &str = "identity";
const TMP_NAME: &str = "identity.tmp";

/// What a data directory says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `--cluster` name the directory was initialised with.
    pub cluster: String,
    /// Drawn from the OS when the directory was first initialised: a member
    /// whose directory was wiped comes back with another one.
    pub incarnation: u64,
    /// The ensemble's id, once this node has applied it.
    pub cluster_id: Option<u64>,
    /// The directory was initialised empty in an ensemble that already
    /// existed: the member votes in nothing until the configuration binds
    /// its id to this incarnation (it was re-added).
    pub joined_existing: bool,
}

/// Why the identity file cannot be used, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the identity file {} is damaged: {reason}. Do not edit it: if this directory really \
         belongs to this ensemble, move the whole data directory aside and let the node rejoin \
         as a new member",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the data directory {} belongs to cluster {file:?}, but this node was started with \
         --cluster {flag:?}: it is another ensemble's directory. Give this node its own empty \
         --data-dir, or start it with --cluster {file:?} if the directory is the right one",
        dir.display()
    )]
    OtherCluster {
        dir: PathBuf,
        file: String,
        flag: String,
    },
    #[error(
        "the data directory {} belongs to the ensemble with cluster id {}, but its state (log \
         and snapshot) is of cluster id {}: the directories were mixed. Give this node its own \
         empty --data-dir and let it rejoin",
        dir.display(), format_id(*file), format_id(*state)
    )]
    ClusterIdMismatch { dir: PathBuf, file: u64, state: u64 },
    #[error("no randomness from the operating system for the incarnation id: {0}")]
    Randomness(String),
}

/// The identity file of a data directory, as loaded or initialised; or,
/// without a data directory, an identity that lasts for this run only.
#[derive(Debug)]
pub struct IdentityFile {
    fs: Arc<dyn FileSystem>,
    /// `None` when the node keeps its state in memory only.
    dir: Option<PathBuf>,
    identity: Identity,
    /// The recorded cluster id (0: none yet), shared with the peer
    /// transport, which stamps it on every frame and refuses frames of
    /// another cluster id.
    shared_cluster_id: Arc<AtomicU64>,
}

impl IdentityFile {
    /// Loads `<dir>/identity`, or initialises it with `cluster`, a new
    /// incarnation from `mint` and `joined_existing` when the directory has
    /// none (a fresh directory, or one written before identity files
    /// existed). Refuses a directory of another cluster. Call it only while
    /// holding the storage lock, so that no other process writes the file
    /// meanwhile.
    pub fn open_or_init(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        cluster: &str,
        joined_existing: bool,
        mint: impl FnOnce() -> Result<u64, IdentityError>,
    ) -> Result<IdentityFile, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        match fs.read(&path) {
            Ok(bytes) => {
                let identity =
                    decode(&bytes).map_err(|reason| IdentityError::Corrupt { path, reason })?;
                if identity.cluster != cluster {
                    return Err(IdentityError::OtherCluster {
                        dir: dir.to_path_buf(),
                        file: identity.cluster,
                        flag: cluster.to_owned(),
                    });
                }
                Ok(IdentityFile::new(fs, Some(dir.to_path_buf()), identity))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let identity = Identity {
                    cluster: cluster.to_owned(),
                    incarnation: mint()?,
                    cluster_id: None,
                    joined_existing,
                };
                write(&*fs, dir, &identity)?;
                tracing::info!(
                    dir = %dir.display(),
                    cluster,
                    incarnation = %format_id(identity.incarnation),
                    joined_existing,
                    "initialised the data directory's identity"
                );
                Ok(IdentityFile::new(fs, Some(dir.to_path_buf()), identity))
            }
            Err(source) => Err(IdentityError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// An identity for a node without a data directory: nothing to
    /// remember it in, so every run is a new incarnation.
    pub fn in_memory(cluster: &str, incarnation: u64) -> IdentityFile {
        IdentityFile::new(
            Arc::new(super::RealFs),
            None,
            Identity {
                cluster: cluster.to_owned(),
                incarnation,
                cluster_id: None,
                joined_existing: false,
            },
        )
    }

    fn new(fs: Arc<dyn FileSystem>, dir: Option<PathBuf>, identity: Identity) -> IdentityFile {
        let shared_cluster_id = Arc::new(AtomicU64::new(identity.cluster_id.unwrap_or(0)));
        IdentityFile {
            fs,
            dir,
            identity,
            shared_cluster_id,
        }
    }

    /// The cluster id as the peer transport reads it (0: none yet); it
    /// follows [`IdentityFile::set_cluster_id`].
    pub fn shared_cluster_id(&self) -> Arc<AtomicU64> {
        self.shared_cluster_id.clone()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Records the ensemble's cluster id, replacing the file atomically.
    /// The in-memory copy changes only once the file is durable.
    pub fn set_cluster_id(&mut self, id: u64) -> Result<(), IdentityError> {
        let mut next = self.identity.clone();
        next.cluster_id = Some(id);
        if let Some(dir) = &self.dir {
            write(&*self.fs, dir, &next)?;
        }
        self.identity = next;
        self.shared_cluster_id.store(id, Ordering::Release);
        Ok(())
    }

    /// Refuses a recovered state of another ensemble than the one this
    /// directory recorded (a log or snapshot directory of another cluster
    /// put beside this identity file).
    pub fn check_state(&self, state: Option<u64>) -> Result<(), IdentityError> {
        match (self.identity.cluster_id, state) {
            (Some(file), Some(state)) if file != state => Err(IdentityError::ClusterIdMismatch {
                dir: self.dir.clone().unwrap_or_default(),
                file,
                state,
            }),
            _ => Ok(()),
        }
    }
}

/// A cluster or incarnation id as shown to operators: 16 hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A random u64 from the OS, never 0 (0 stands for "none" on disk and in
/// snapshots).
pub fn random_id() -> Result<u64, IdentityError> {
    loop {
        let id = getrandom::u64().map_err(|error| IdentityError::Randomness(error.to_string()))?;
        if id != 0 {
            return Ok(id);
        }
    }
}

pub fn encode(identity: &Identity) -> Vec<u8> {
    let name = identity.cluster.as_bytes();
    let mut b = Vec::with_capacity(FIXED_LEN + name.len() + 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&identity.incarnation.to_le_bytes());
    b.extend_from_slice(&identity.cluster_id.unwrap_or(0).to_le_bytes());
    let flags = if identity.joined_existing {
        FLAG_JOINED_EXISTING
    } else {
        0
    };
    b.extend_from_slice(&flags.to_le_bytes());
    // Names are flags of at most a few dozen bytes; longer ones are
    // refused by decode, so they are never written either.
    b.extend_from_slice(&(name.len() as u32).to_le_bytes());
    b.extend_from_slice(name);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks a whole identity file, or says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<Identity, String> {
    if bytes.len() < FIXED_LEN_V1 + 4 {
        return Err(format!("it is cut short ({} bytes)", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("this is not a Synod identity file (bad magic)".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != le_u32(crc) {
        return Err("the checksum does not match".into());
    }
    let version = le_u32(&body[8..]);
    let fixed = match version {
        1 => FIXED_LEN_V1,
        FORMAT_VERSION => FIXED_LEN,
        _ => {
            return Err(format!(
                "format version {version} is not supported (this build reads versions 1 to \
                 {FORMAT_VERSION}); run the Synod version that wrote it"
            ));
        }
    };
    if body.len() < fixed {
        return Err(format!("it is cut short ({} bytes)", bytes.len()));
    }
    let incarnation = le_u64(&body[12..]);
    let cluster_id = le_u64(&body[20..]);
    let flags = if version == 1 { 0 } else { le_u32(&body[28..]) };
    let name_len = le_u32(&body[fixed - 4..]) as usize;
    if name_len > MAX_NAME_BYTES || body.len() != fixed + name_len {
        return Err(format!(
            "the cluster name's length {name_len} does not match the file's length {}",
            bytes.len()
        ));
    }
    if flags & !FLAG_JOINED_EXISTING != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let cluster = String::from_utf8(body[fixed..].to_vec())
        .map_err(|_| "the cluster name is not UTF-8".to_string())?;
    Ok(Identity {
        cluster,
        incarnation,
        cluster_id: (cluster_id != 0).then_some(cluster_id),
        joined_existing: flags & FLAG_JOINED_EXISTING != 0,
    })
}

/// Replaces `<dir>/identity` atomically: temp file, fsync, rename, fsync of
/// the directory (the same steps as a snapshot file).
fn write(fs: &dyn FileSystem, dir: &Path, identity: &Identity) -> Result<(), IdentityError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { op, path, source }
    };
    fs.create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(IDENTITY_FILE);
    let mut file = fs.create(&tmp).map_err(io("create", &tmp))?;
    file.write_all_at(0, &encode(identity))
        .map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io("sync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FaultFs;

    fn dir() -> PathBuf {
        PathBuf::from("/data")
    }

    fn open(
        fs: &Arc<FaultFs>,
        cluster: &str,
        mint: impl FnOnce() -> Result<u64, IdentityError>,
    ) -> Result<IdentityFile, IdentityError> {
        IdentityFile::open_or_init(fs.clone(), &dir(), cluster, false, mint)
    }

    fn mint(id: u64) -> impl FnOnce() -> Result<u64, IdentityError> {
        move || Ok(id)
    }

    #[test]
    fn round_trip() {
        for identity in [
            Identity {
                cluster: "prod-eu".into(),
                incarnation: 7,
                cluster_id: None,
                joined_existing: false,
            },
            Identity {
                cluster: String::new(),
                incarnation: u64::MAX,
                cluster_id: Some(0xfeed_f00d),
                joined_existing: true,
            },
        ] {
            assert_eq!(decode(&encode(&identity)), Ok(identity));
        }
    }

    #[test]
    fn initialises_once_then_reloads() {
        let fs = Arc::new(FaultFs::new());
        let mut file = open(&fs, "a", mint(5)).expect("init");
        assert_eq!(file.identity().incarnation, 5);
        assert_eq!(file.identity().cluster_id, None);
        file.set_cluster_id(99).expect("set");
        // A second start keeps the incarnation: `mint` is not called.
        let again = open(&fs, "a", || panic!("minted again")).expect("reload");
        assert_eq!(
            again.identity(),
            &Identity {
                cluster: "a".into(),
                incarnation: 5,
                cluster_id: Some(99),
                joined_existing: false,
            }
        );
    }

    #[test]
    fn joined_existing_is_recorded_at_initialisation_only() {
        let fs = Arc::new(FaultFs::new());
        let file =
            IdentityFile::open_or_init(fs.clone(), &dir(), "a", true, mint(6)).expect("init");
        assert!(file.identity().joined_existing);
        // A restart with `new` keeps what the directory was created as.
        let again =
            IdentityFile::open_or_init(fs.clone(), &dir(), "a", false, mint(7)).expect("reload");
        assert!(again.identity().joined_existing);
        assert_eq!(again.identity().incarnation, 6);
    }

    #[test]
    fn a_version_1_file_reads_without_flags() {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&9u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(b"a");
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&b),
            Ok(Identity {
                cluster: "a".into(),
                incarnation: 9,
                cluster_id: None,
                joined_existing: false,
            })
        );
    }

    #[test]
    fn another_clusters_directory_is_refused_naming_both() {
        let fs = Arc::new(FaultFs::new());
        open(&fs, "blue", mint(1)).expect("init");
        let error = open(&fs, "green", mint(2)).expect_err("another cluster");
        assert!(
            matches!(error, IdentityError::OtherCluster { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("\"blue\"") && message.contains("\"green\""),
            "{message}"
        );
    }

    #[test]
    fn a_state_of_another_cluster_id_is_refused() {
        let fs = Arc::new(FaultFs::new());
        let mut file = open(&fs, "a", mint(1)).expect("init");
        file.check_state(Some(7)).expect("no id recorded yet");
        file.set_cluster_id(7).expect("set");
        file.check_state(Some(7)).expect("same id");
        file.check_state(None).expect("state without an id yet");
        let message = file
            .check_state(Some(8))
            .expect_err("another id")
            .to_string();
        assert!(
            message.contains(&format_id(7)) && message.contains(&format_id(8)),
            "{message}"
        );
    }

    #[test]
    fn any_damage_is_refused() {
        let fs = Arc::new(FaultFs::new());
        open(&fs, "a", mint(3)).expect("init");
        let path = dir().join(IDENTITY_FILE);
        let len = fs.contents(&path).expect("written").len() as u64;
        for offset in 0..len {
            let fs = Arc::new(FaultFs::new());
            open(&fs, "a", mint(3)).expect("init");
            fs.flip_bit(&path, offset, (offset % 8) as u8)
                .expect("flip");
            let error = open(&fs, "a", mint(4)).expect_err("damaged file accepted");
            assert!(matches!(error, IdentityError::Corrupt { .. }), "{error}");
        }
        for cut in [0, 5, FIXED_LEN] {
            assert!(
                decode(
                    &encode(&Identity {
                        cluster: "a".into(),
                        incarnation: 1,
                        cluster_id: None,
                        joined_existing: false,
                    })[..cut]
                )
                .is_err()
            );
        }
    }

    /// A crash at any point of an update leaves the old or the new file,
    /// never a damaged one, and never a directory without one.
    #[test]
    fn updates_are_atomic() {
        for syncs in 0..3 {
            let fs = Arc::new(FaultFs::new());
            let mut file = open(&fs, "a", mint(8)).expect("init");
            fs.cut_power_after(syncs);
            let written = file.set_cluster_id(42).is_ok();
            fs.crash_with(|_, unsynced| unsynced / 2);
            let after = open(&fs, "a", || panic!("minted again")).expect("a whole file survives");
            assert_eq!(after.identity().incarnation, 8);
            if written {
                assert_eq!(after.identity().cluster_id, Some(42));
            } else {
                assert!(matches!(after.identity().cluster_id, None | Some(42)));
            }
        }
    }
}
