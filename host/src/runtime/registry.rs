//! Which mapper serves which source, and hot reload from the mapper directory.
//!
//! Built-in mappers are always there as the fallback. A `.wasm` file in the
//! directory is compiled and validated off the hot path (it must link against
//! the capability-free WASI linker, answer `describe`, and pass its sidecar
//! fixtures in `<file stem>.fixtures/` if that folder exists) and only then
//! replaces the mapper of the same name in one atomic map update. Calls
//! already running keep the `Arc` of the old version and finish on it. A
//! broken file is rejected with a log line naming it, and whatever served
//! before keeps serving. Deleting a file falls back to the built-in.
//!
//! Trust: a file (or the directory) that someone other than the service's
//! user (or root) could write, and a symbolic link, are refused; with
//! `mapper.allowed_sha256` only listed contents load; a drop-in that takes
//! over a built-in source must bring fixtures unless the operator opts out.
//! Every swap is logged at WARN with name, version, file and SHA-256. A file
//! that could not be checked for a transient reason (no instance free) is
//! checked again at the next scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use audit_guest_sdk::fixtures::Fixture;
use sha2::{Digest, Sha256};
use wasmtime::component::Linker;

use super::capacity::Calls;
use super::engine::MapperEngine;
use super::instance::{LoadError, LoadedMapper};
use super::sandbox::{GuestState, linker};
use super::{InstanceMode, Limits, MapperStatus, RuntimeConfig};

/// Drop-in files one directory may hold; more are refused with a log line
/// (each mapper keeps warm instances, which the instance pool counts).
pub(crate) const MAX_DROP_INS: usize = 16;

/// Which drop-in mapper files may be loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// When not empty, only files with one of these SHA-256 digests load.
    pub allowed_sha256: Vec<[u8; 32]>,
    /// Lets a drop-in take over a built-in source without fixtures.
    pub override_without_fixtures: bool,
}

/// Where the serving version of a mapper came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Builtin,
    File(PathBuf),
}

#[derive(Clone)]
pub(crate) struct Active {
    pub(crate) mapper: Arc<LoadedMapper>,
    pub(crate) origin: Origin,
}

/// What the last scan saw of one file.
struct SeenFile {
    /// Size and modification time: unchanged means not read again.
    stamp: Stamp,
    hash: [u8; 32],
    /// The mapper name it provides, when it loaded.
    serves: Option<String>,
}

/// Size, modification time and (on Unix) inode and mode, of the entry
/// itself (a link is not followed): a file renamed into place always
/// differs, whatever times it carries, and so does a file whose permissions
/// changed.
type Stamp = (u64, Option<std::time::SystemTime>, u64, u32);

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, mode) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.mode())
    };
    #[cfg(not(unix))]
    let (inode, mode) = (0, 0);
    Some((meta.len(), meta.modified().ok(), inode, mode))
}

/// Reload outcomes, for logs and metrics.
#[derive(Default)]
pub(crate) struct ReloadCounts {
    pub(crate) loaded: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

pub(crate) struct Registry {
    engine: Arc<MapperEngine>,
    linker: Linker<GuestState>,
    limits: Limits,
    mode: InstanceMode,
    trust: Trust,
    pub(crate) calls: Arc<Calls>,
    dir: Option<PathBuf>,
    builtins: HashMap<String, Arc<LoadedMapper>>,
    active: RwLock<HashMap<String, Active>>,
    files: Mutex<HashMap<PathBuf, SeenFile>>,
    pub(crate) counts: ReloadCounts,
}

impl Registry {
    /// Loads the built-in mappers (which must all load) and the directory's.
    pub(crate) fn new(
        engine: Arc<MapperEngine>,
        builtins: &[&[u8]],
        config: RuntimeConfig,
    ) -> anyhow::Result<Registry> {
        let RuntimeConfig {
            dir,
            limits,
            mode,
            capacity,
            trust,
        } = config;
        let calls = Arc::new(Calls::new(capacity));
        let linker = linker(engine.wasmtime())?;
        let mut loaded = HashMap::new();
        for bytes in builtins {
            let component = engine.compile(bytes).context("compile a built-in mapper")?;
            let mapper = LoadedMapper::load(&component, &linker, limits, mode.for_mapper(true), calls.clone())
                .context("load a built-in mapper")?;
            loaded.insert(mapper.info.name.clone(), Arc::new(mapper));
        }
        let active = loaded
            .iter()
            .map(|(name, m)| {
                let a = Active {
                    mapper: m.clone(),
                    origin: Origin::Builtin,
                };
                (name.clone(), a)
            })
            .collect();
        let registry = Registry {
            engine,
            linker,
            limits,
            mode,
            trust,
            calls,
            dir,
            builtins: loaded,
            active: RwLock::new(active),
            files: Mutex::new(HashMap::new()),
            counts: ReloadCounts::default(),
        };
        registry.rescan();
        Ok(registry)
    }

    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The mapper serving `source` right now.
    pub(crate) fn get(&self, source: &str) -> Option<Arc<LoadedMapper>> {
        self.active
            .read()
            .expect("active mappers")
            .get(source)
            .map(|a| a.mapper.clone())
    }

    /// Whether the mapper serving `source` is the built-in one (part of
    /// this binary), not a file from the directory.
    pub(crate) fn serves_builtin(&self, source: &str) -> bool {
        let active = self.active.read().expect("active mappers");
        matches!(active.get(source), Some(a) if a.origin == Origin::Builtin)
    }

    pub(crate) fn status(&self) -> Vec<MapperStatus> {
        let mut list: Vec<MapperStatus> = self
            .active
            .read()
            .expect("active mappers")
            .values()
            .map(|a| MapperStatus {
                name: a.mapper.info.name.clone(),
                version: a.mapper.info.version.clone(),
                file: match &a.origin {
                    Origin::Builtin => None,
                    Origin::File(p) => Some(p.clone()),
                },
                event_types: a.mapper.info.event_types.len(),
                contract: a.mapper.contract(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Compiles and validates one candidate file.
    pub(crate) fn validate(&self, path: &Path, bytes: &[u8], hash: &[u8; 32]) -> Result<LoadedMapper, LoadError> {
        let invalid = |e: anyhow::Error| LoadError::Invalid(e);
        if !self.trust.allowed_sha256.is_empty() && !self.trust.allowed_sha256.contains(hash) {
            return Err(invalid(anyhow::anyhow!(
                "its SHA-256 {} is not in mapper.allowed_sha256",
                hex(hash)
            )));
        }
        let component = self.engine.compile(bytes).map_err(invalid)?;
        let mode = self.mode.for_mapper(false);
        let mapper = LoadedMapper::load(&component, &self.linker, self.limits, mode, self.calls.clone())?;
        let fixtures_dir = path.with_extension("fixtures");
        if fixtures_dir.is_dir() {
            let fixtures = Fixture::load_dir(&fixtures_dir, &mapper.info.name).map_err(|e| invalid(e.into()))?;
            for fixture in &fixtures {
                let diffs = mapper.differences(fixture)?;
                if !diffs.is_empty() {
                    return Err(invalid(anyhow::anyhow!(
                        "fixture {} differs: {}",
                        fixture.name,
                        diffs.join("; ")
                    )));
                }
            }
        } else if self.builtins.contains_key(&mapper.info.name) && !self.trust.override_without_fixtures {
            return Err(invalid(anyhow::anyhow!(
                "it takes over the built-in `{}` mapper without fixtures: add them in {} (see docs/writing-a-mapper.md) \
                 or set mapper.allow_override_without_fixtures = true",
                mapper.info.name,
                fixtures_dir.display()
            )));
        }
        Ok(mapper)
    }

    /// Looks at the directory once: loads new and changed files, falls back
    /// for removed ones. Returns how many mappers changed.
    pub(crate) fn rescan(&self) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let mut present = match wasm_files(dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the mapper directory");
                return 0;
            }
        };
        if present.len() > MAX_DROP_INS {
            tracing::warn!(
                dir = %dir.display(), files = present.len(), ignored = ?&present[MAX_DROP_INS..],
                "more than {MAX_DROP_INS} mapper files; the ones after the first {MAX_DROP_INS} by name are ignored"
            );
            present.truncate(MAX_DROP_INS);
        }
        if let Err(why) = trust::writable_only_by_us(dir) {
            tracing::warn!(dir = %dir.display(), reason = %why, "mapper directory refused; built-in mappers serve");
            present.clear();
        }
        let mut changed = 0;
        for path in &present {
            changed += usize::from(self.consider(path));
        }
        let gone: Vec<(PathBuf, Option<String>)> = {
            let mut files = self.files.lock().expect("seen files");
            let gone: Vec<PathBuf> = files.keys().filter(|p| !present.contains(p)).cloned().collect();
            gone.into_iter()
                .map(|p| {
                    let serves = files.remove(&p).and_then(|s| s.serves);
                    (p, serves)
                })
                .collect()
        };
        for (path, serves) in gone {
            if let Some(name) = serves {
                self.fall_back(&name, &path);
                changed += 1;
            }
        }
        changed
    }

    /// Loads `path` if its content is new. Returns true when a mapper changed.
    fn consider(&self, path: &Path) -> bool {
        // The periodic rescan reads nothing when size and time are unchanged.
        let stamp = stamp_of(path);
        if let Some(stamp) = stamp {
            let files = self.files.lock().expect("seen files");
            if files.get(path).is_some_and(|seen| seen.stamp == stamp) {
                return false;
            }
        }
        let stamp = stamp.unwrap_or((0, None, 0, 0));
        if let Err(why) = trust::writable_only_by_us(path) {
            self.refuse(path, stamp, [0; 32], &why);
            return false;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read mapper file");
                return false;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let previous = {
            let files = self.files.lock().expect("seen files");
            match files.get(path) {
                Some(seen) if seen.hash == hash => {
                    drop(files);
                    if let Some(seen) = self.files.lock().expect("seen files").get_mut(path) {
                        seen.stamp = stamp;
                    }
                    return false;
                }
                Some(seen) => seen.serves.clone(),
                None => None,
            }
        };
        let started = std::time::Instant::now();
        match self.validate(path, &bytes, &hash) {
            Ok(mapper) => {
                let name = mapper.info.name.clone();
                let version = mapper.info.version.clone();
                let active = Active {
                    mapper: Arc::new(mapper),
                    origin: Origin::File(path.to_path_buf()),
                };
                self.active
                    .write()
                    .expect("active mappers")
                    .insert(name.clone(), active);
                self.files.lock().expect("seen files").insert(
                    path.to_path_buf(),
                    SeenFile {
                        stamp,
                        hash,
                        serves: Some(name.clone()),
                    },
                );
                if let Some(old) = previous.filter(|old| *old != name) {
                    self.fall_back(&old, path);
                }
                self.counts.loaded.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %path.display(),
                    mapper = %name,
                    version = %version,
                    sha256 = %hex(&hash),
                    took_ms = started.elapsed().as_millis() as u64,
                    "mapper swapped in: it maps every new delivery of its source"
                );
                true
            }
            Err(LoadError::Busy(busy)) => {
                // Not recorded as seen: the next scan checks it again.
                tracing::info!(file = %path.display(), reason = %busy, "mapper file not checked yet; trying again at the next scan");
                false
            }
            Err(LoadError::Invalid(e)) => {
                self.refuse(path, stamp, hash, &format!("{e:#}"));
                false
            }
        }
    }

    /// Logs and counts a refused file; remembers it so it is not read again
    /// until it changes.
    fn refuse(&self, path: &Path, stamp: Stamp, hash: [u8; 32], why: &str) {
        self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            file = %path.display(),
            sha256 = %hex(&hash),
            reason = %why,
            "mapper rejected; the previous version keeps serving"
        );
        let mut files = self.files.lock().expect("seen files");
        let serves = files.get(path).and_then(|seen| seen.serves.clone());
        files.insert(path.to_path_buf(), SeenFile { stamp, hash, serves });
    }

    /// `path` no longer provides `name`: serve the built-in again (or nothing).
    fn fall_back(&self, name: &str, path: &Path) {
        let mut active = self.active.write().expect("active mappers");
        let from_this_file = matches!(active.get(name), Some(a) if a.origin == Origin::File(path.to_path_buf()));
        if !from_this_file {
            return;
        }
        match self.builtins.get(name) {
            Some(builtin) => {
                active.insert(
                    name.to_string(),
                    Active {
                        mapper: builtin.clone(),
                        origin: Origin::Builtin,
                    },
                );
                tracing::warn!(file = %path.display(), mapper = %name, "mapper file removed; the built-in serves again");
            }
            None => {
                active.remove(name);
                tracing::warn!(file = %path.display(), mapper = %name, "mapper file removed; no built-in for this source");
            }
        }
    }
}

/// The `.wasm` entries of the directory (links included: they are refused
/// with a reason, not skipped in silence).
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if path.extension().is_some_and(|e| e == "wasm") && (kind.is_file() || kind.is_symlink()) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who may change a mapper file.
mod trust {
    use std::path::Path;

    /// Refuses a symbolic link, and a path that a user other than the
    /// service's (or root) could write: group- or world-writable, or owned
    /// by another user.
    pub(super) fn writable_only_by_us(path: &Path) -> Result<(), String> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read its metadata: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err("it is a symbolic link; mapper files are not followed through links".into());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mode = meta.mode();
            if mode & 0o022 != 0 {
                return Err(format!(
                    "its mode {:o} lets other users write it; make it writable by its owner only (chmod go-w)",
                    mode & 0o7777
                ));
            }
            if let Some(us) = our_uid()
                && meta.uid() != us
                && meta.uid() != 0
            {
                return Err(format!(
                    "it is owned by uid {}, neither the service's user (uid {us}) nor root",
                    meta.uid()
                ));
            }
        }
        Ok(())
    }

    /// The service's effective user: the owner of `/proc/self` on Linux.
    #[cfg(unix)]
    fn our_uid() -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
}
