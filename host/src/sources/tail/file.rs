//! One tailed file: where it is, which file it is, and its complete lines.
//!
//! A file is known by its device and inode **and** a hash of its first line.
//! The inode alone is not enough: once logrotate deletes an old file, a new
//! audit file may get the same inode; its first line (with its time and ids)
//! tells it apart. The same hash finds the copy logrotate's `copytruncate`
//! leaves beside a truncated file.
//!
//! The stored position is `(file, offset of the first byte not yet
//! committed)`; it moves only after the store committed every line before it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which file a position belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// First 16 hex digits of the SHA-256 of the first line.
    pub head: String,
}

impl FileKey {
    /// The prefix of every external id derived from this file's lines.
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.dev.to_le_bytes());
        h.update(self.ino.to_le_bytes());
        h.update(self.head.as_bytes());
        hex16(&h.finalize())
    }
}

/// The stored cursor of a tail source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The file.
    pub file: FileKey,
    /// Bytes before this offset are committed.
    pub offset: u64,
}

impl crate::store::CheckpointState for Position {
    const KIND: &'static str = "tail";
    const VERSION: u32 = 1;
}

fn hex16(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash that identifies a file by its first line.
pub fn head_hash(first_line: &[u8]) -> String {
    hex16(&Sha256::digest(first_line))
}

#[cfg(unix)]
fn dev_ino(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dev_ino(_meta: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The first line of `file` (without its newline), if it is complete.
fn first_line(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    file.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(end) = chunk[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..end]);
            return Ok(Some(line));
        }
        line.extend_from_slice(&chunk[..n]);
        if line.len() > 16 << 20 {
            // Not a line-oriented file; identify it by its first 16 MiB.
            return Ok(Some(line));
        }
    }
}

/// A complete line and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte.
    pub offset: u64,
    /// Its bytes, without the newline (and without a trailing `\r`).
    pub bytes: Vec<u8>,
}

/// An open file being read.
pub struct Reader {
    file: File,
    /// The file's path when it was opened.
    pub path: PathBuf,
    dev: u64,
    ino: u64,
    /// The file, once its first line is complete.
    pub key: Option<FileKey>,
    /// Bytes before this are committed.
    pub committed: u64,
    /// Bytes read so far (committed + handed out + the partial line).
    read_to: u64,
    /// The bytes after the last complete line handed out.
    partial: Vec<u8>,
    /// Offset of `partial`'s first byte.
    partial_at: u64,
}

impl Reader {
    /// Opens `path` and positions at `offset` (of the file's content as it is).
    pub fn open(path: &Path, offset: u64) -> io::Result<Reader> {
        let mut file = File::open(path)?;
        let (dev, ino) = dev_ino(&file.metadata()?);
        let key = first_line(&mut file)?.map(|l| FileKey {
            dev,
            ino,
            head: head_hash(&l),
        });
        file.seek(SeekFrom::Start(offset))?;
        Ok(Reader {
            file,
            path: path.to_path_buf(),
            dev,
            ino,
            key,
            committed: offset,
            read_to: offset,
            partial: Vec::new(),
            partial_at: offset,
        })
    }

    /// Whether this reader holds the file `key` names (same inode and first line).
    pub fn is(&self, key: &FileKey) -> bool {
        self.dev == key.dev && self.ino == key.ino && self.key.as_ref().is_none_or(|k| k.head == key.head)
    }

    /// Whether this reader holds the inode `key` names, whatever its content.
    pub fn same_inode(&self, key: &FileKey) -> bool {
        self.dev == key.dev && self.ino == key.ino
    }

    /// Whether `path` still names the file this reader holds.
    pub fn still_at(&self, path: &Path) -> bool {
        match fs::metadata(path) {
            Ok(meta) => dev_ino(&meta) == (self.dev, self.ino),
            Err(_) => false,
        }
    }

    /// True when the file is now shorter than what was read: it was truncated
    /// (copytruncate, or `> file`).
    pub fn truncated(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() < self.read_to)
    }

    /// Reads up to `max_lines` complete lines. A partial last line stays
    /// unread until its newline arrives (or `finish` when the file is done).
    pub fn read_lines(&mut self, max_lines: usize, lines: &mut Vec<Line>) -> io::Result<()> {
        let mut chunk = vec![0u8; 256 << 10];
        while lines.len() < max_lines {
            // Hand out complete lines already buffered.
            let mut start = 0;
            while lines.len() < max_lines {
                let Some(end) = self.partial[start..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                let mut bytes = &self.partial[start..start + end];
                if bytes.last() == Some(&b'\r') {
                    bytes = &bytes[..bytes.len() - 1];
                }
                lines.push(Line {
                    offset: self.partial_at + start as u64,
                    bytes: bytes.to_vec(),
                });
                start += end + 1;
            }
            self.partial.drain(..start);
            self.partial_at += start as u64;
            if lines.len() >= max_lines {
                break;
            }
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&chunk[..n]);
            self.read_to += n as u64;
        }
        if self.key.is_none() && (self.partial_at > 0 || !lines.is_empty()) {
            let pos = self.file.stream_position()?;
            self.key = first_line(&mut self.file)?.map(|l| FileKey {
                dev: self.dev,
                ino: self.ino,
                head: head_hash(&l),
            });
            self.file.seek(SeekFrom::Start(pos))?;
        }
        Ok(())
    }

    /// The file will not grow any more (it was rotated away): its unfinished
    /// last line, if any, is handed out as a line so that nothing is lost.
    pub fn finish(&mut self, lines: &mut Vec<Line>) {
        if !self.partial.is_empty() {
            lines.push(Line {
                offset: self.partial_at,
                bytes: std::mem::take(&mut self.partial),
            });
            self.partial_at = self.read_to;
        }
    }

    /// Where the position stands once `lines` are committed.
    pub fn position_after(&self, last: Option<&Line>) -> Option<Position> {
        let key = self.key.clone()?;
        let offset = match last {
            Some(l) => l.offset + l.bytes.len() as u64 + 1,
            None => self.committed,
        };
        Some(Position {
            file: key,
            offset: offset.min(self.read_to),
        })
    }
}

/// Finds, beside `path`, the file `key` names: the renamed old file after a
/// rotation, or (with `copy`) a file with the same first line but another
/// inode, the copy `copytruncate` made.
pub fn find_sibling(path: &Path, key: &FileKey, copy: bool) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let candidate = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let (dev, ino) = dev_ino(&meta);
        let same_inode = dev == key.dev && ino == key.ino;
        if same_inode == copy {
            continue;
        }
        let Ok(mut file) = File::open(&candidate) else { continue };
        if let Ok(Some(line)) = first_line(&mut file)
            && head_hash(&line) == key.head
        {
            return Some(candidate);
        }
    }
    None
}
