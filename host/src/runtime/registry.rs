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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use audit_guest_sdk::fixtures::Fixture;
use sha2::{Digest, Sha256};
use wasmtime::component::Linker;

use super::engine::MapperEngine;
use super::instance::{GuestState, LoadedMapper, linker};
use super::{InstanceMode, Limits, MapperStatus};

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

/// Size, modification time and (on Unix) inode: a file renamed into place
/// always differs, whatever times it carries.
type Stamp = (u64, Option<std::time::SystemTime>, u64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.len(), meta.modified().ok(), inode))
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
        dir: Option<PathBuf>,
        limits: Limits,
        mode: InstanceMode,
    ) -> anyhow::Result<Registry> {
        let linker = linker(engine.wasmtime())?;
        let mut loaded = HashMap::new();
        for bytes in builtins {
            let component = engine.compile(bytes).context("compile a built-in mapper")?;
            let mapper = LoadedMapper::load(&component, &linker, limits, mode.for_mapper(true))
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
    pub(crate) fn validate(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<LoadedMapper> {
        let component = self.engine.compile(bytes)?;
        let mode = self.mode.for_mapper(false);
        let mapper = LoadedMapper::load(&component, &self.linker, self.limits, mode)?;
        let fixtures_dir = path.with_extension("fixtures");
        if fixtures_dir.is_dir() {
            let fixtures = Fixture::load_dir(&fixtures_dir, &mapper.info.name)?;
            for fixture in &fixtures {
                let diffs = mapper.differences(fixture)?;
                if !diffs.is_empty() {
                    anyhow::bail!("fixture {} differs: {}", fixture.name, diffs.join("; "));
                }
            }
        }
        Ok(mapper)
    }

    /// Looks at the directory once: loads new and changed files, falls back
    /// for removed ones. Returns how many mappers changed.
    pub(crate) fn rescan(&self) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let present = match wasm_files(dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the mapper directory");
                return 0;
            }
        };
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
        let stamp = stamp.unwrap_or((0, None, 0));
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
        match self.validate(path, &bytes) {
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
                tracing::info!(
                    file = %path.display(),
                    mapper = %name,
                    version = %version,
                    took_ms = started.elapsed().as_millis() as u64,
                    "mapper loaded"
                );
                true
            }
            Err(e) => {
                self.counts.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %path.display(),
                    reason = %format!("{e:#}"),
                    "mapper rejected; the previous version keeps serving"
                );
                self.files.lock().expect("seen files").insert(
                    path.to_path_buf(),
                    SeenFile {
                        stamp,
                        hash,
                        serves: previous,
                    },
                );
                false
            }
        }
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
                tracing::info!(file = %path.display(), mapper = %name, "mapper file removed; the built-in serves again");
            }
            None => {
                active.remove(name);
                tracing::warn!(file = %path.display(), mapper = %name, "mapper file removed; no built-in for this source");
            }
        }
    }
}

fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
