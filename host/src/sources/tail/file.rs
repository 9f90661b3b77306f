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

/// The first line of `file` (without its newline), if it is complete; of a
/// first line longer than `max` bytes, its first `max` bytes.
fn first_line(file: &mut File, max: usize) -> io::Result<Option<Vec<u8>>> {
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
        if line.len() > max {
            // An overlong first line: the file is known by its start.
            line.truncate(max);
            return Ok(Some(line));
        }
    }
}

/// The key of `file` (device `dev`, inode `ino`), once its first line is complete.
fn file_key(file: &mut File, dev: u64, ino: u64, max_line: usize) -> io::Result<Option<FileKey>> {
    Ok(first_line(file, max_line)?.map(|l| FileKey {
        dev,
        ino,
        head: head_hash(&l),
    }))
}

/// A complete line and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte.
    pub offset: u64,
    /// Its bytes, without the newline (and without a trailing `\r`); of an
    /// overlong line, its first `max_line_bytes`.
    pub bytes: Vec<u8>,
    /// Offset of the first byte after it (after its newline).
    pub end: u64,
    /// The line was longer than `max_line_bytes`: its whole length (without
    /// the newline). Only its start was kept; the rest was read past.
    pub overlong: Option<u64>,
}

/// An overlong line being read past: where it started and its start.
#[derive(Debug)]
struct Cut {
    offset: u64,
    head: Vec<u8>,
}

/// The bytes read from the file at a time.
const CHUNK_BYTES: usize = 256 << 10;

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
    /// Lines longer than this are cut (`max_line_bytes`).
    max_line: usize,
    /// An overlong line whose newline has not come yet.
    cut: Option<Cut>,
}

impl Reader {
    /// Opens `path` and positions at `offset` (of the file's content as it
    /// is); lines longer than `max_line` bytes will be cut.
    pub fn open(path: &Path, offset: u64, max_line: usize) -> io::Result<Reader> {
        let mut file = File::open(path)?;
        let (dev, ino) = dev_ino(&file.metadata()?);
        let key = file_key(&mut file, dev, ino, max_line)?;
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
            max_line,
            cut: None,
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
    /// A line longer than `max_line` bytes is handed out with its start only
    /// and [`Line::overlong`] set; memory stays within `max_line` plus one
    /// chunk whatever the file holds.
    pub fn read_lines(&mut self, max_lines: usize, lines: &mut Vec<Line>) -> io::Result<()> {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        while lines.len() < max_lines {
            if !self.take_lines(max_lines, lines) {
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
            self.key = file_key(&mut self.file, self.dev, self.ino, self.max_line)?;
            self.file.seek(SeekFrom::Start(pos))?;
        }
        Ok(())
    }

    /// Hands out the complete lines buffered, up to `max_lines`; true when
    /// all were taken (more may be read). What is left without a newline is
    /// cut once it grows past `max_line`.
    fn take_lines(&mut self, max_lines: usize, lines: &mut Vec<Line>) -> bool {
        let mut start = 0;
        let mut all_taken = false;
        while lines.len() < max_lines {
            let rest = &self.partial[start..];
            let Some(len) = rest.iter().position(|b| *b == b'\n') else {
                all_taken = true;
                break;
            };
            let at = self.partial_at + start as u64;
            let end = at + len as u64 + 1;
            lines.push(match self.cut.take() {
                Some(cut) => Line {
                    offset: cut.offset,
                    bytes: cut.head,
                    end,
                    overlong: Some(end - 1 - cut.offset),
                },
                // A line that came whole is cut the same way.
                None if len > self.max_line => Line {
                    offset: at,
                    bytes: rest[..self.max_line].to_vec(),
                    end,
                    overlong: Some(len as u64),
                },
                None => Line {
                    offset: at,
                    bytes: rest[..len].strip_suffix(b"\r").unwrap_or(&rest[..len]).to_vec(),
                    end,
                    overlong: None,
                },
            });
            start += len + 1;
        }
        self.partial.drain(..start);
        self.partial_at += start as u64;
        if all_taken {
            if self.cut.is_none() && self.partial.len() > self.max_line {
                self.cut = Some(Cut {
                    offset: self.partial_at,
                    head: self.partial[..self.max_line].to_vec(),
                });
            }
            if self.cut.is_some() {
                // Read past: only the start of an overlong line is kept.
                self.partial_at += self.partial.len() as u64;
                self.partial.clear();
            }
        }
        all_taken
    }

    /// The file will not grow any more (it was rotated away): its unfinished
    /// last line, if any, is handed out as a line so that nothing is lost.
    pub fn finish(&mut self, lines: &mut Vec<Line>) {
        if let Some(cut) = self.cut.take() {
            lines.push(Line {
                offset: cut.offset,
                bytes: cut.head,
                end: self.read_to,
                overlong: Some(self.read_to - cut.offset),
            });
        } else if !self.partial.is_empty() {
            lines.push(Line {
                offset: self.partial_at,
                bytes: std::mem::take(&mut self.partial),
                end: self.read_to,
                overlong: None,
            });
        }
        self.partial_at = self.read_to;
    }

    /// Where the position stands once `lines` are committed.
    pub fn position_after(&self, last: Option<&Line>) -> Option<Position> {
        let key = self.key.clone()?;
        let offset = last.map_or(self.committed, |l| l.end);
        Some(Position {
            file: key,
            offset: offset.min(self.read_to),
        })
    }
}

/// Finds, beside `path`, the file `key` names: the renamed old file after a
/// rotation, or (with `copy`) a file with the same first line but another
/// inode, the copy `copytruncate` made. `max_line` as the reader's.
pub fn find_sibling(path: &Path, key: &FileKey, copy: bool, max_line: usize) -> Option<PathBuf> {
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
        if let Ok(Some(line)) = first_line(&mut file, max_line)
            && head_hash(&line) == key.head
        {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes `content` to a file in `pieces`, reading after each one, and
    /// returns the lines read (with `finish` at the end) and the most bytes
    /// the reader held at once.
    fn read_in_pieces(content: &[u8], pieces: &[usize], max_line: usize) -> (Vec<Line>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = File::create(&path).unwrap();
        let mut reader = Reader::open(&path, 0, max_line).unwrap();
        let (mut lines, mut held, mut at) = (Vec::new(), 0, 0);
        for &n in pieces.iter().chain(std::iter::once(&usize::MAX)) {
            let to = at + n.min(content.len() - at);
            file.write_all(&content[at..to]).unwrap();
            at = to;
            reader.read_lines(usize::MAX, &mut lines).unwrap();
            held = held.max(reader.partial.len() + reader.cut.as_ref().map_or(0, |c| c.head.len()));
        }
        reader.finish(&mut lines);
        (lines, held)
    }

    #[test]
    fn an_overlong_line_keeps_its_start_and_the_reader_holds_little() {
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 20 << 20));
        content.extend_from_slice(b"\r\nnext\r\nlast");
        let (lines, held) = read_in_pieces(&content, &[3, 5 << 20, 7 << 20, 1, 9 << 20], 1 << 20);
        let shown: Vec<(u64, usize, Option<u64>)> =
            lines.iter().map(|l| (l.offset, l.bytes.len(), l.overlong)).collect();
        let long = 20 << 20;
        assert_eq!(
            shown,
            vec![
                (0, 5, None),
                (6, 1 << 20, Some(long + 1)),
                (6 + long + 2, 4, None),
                (6 + long + 8, 4, None)
            ]
        );
        assert_eq!(lines[2].bytes, b"next");
        assert_eq!(lines.last().unwrap().end, content.len() as u64);
        assert!(held <= (1 << 20) + 2 * CHUNK_BYTES, "held {held} bytes");
    }

    #[test]
    fn a_crlf_line_ends_after_its_newline() {
        let (lines, _) = read_in_pieces(b"a\r\nb\n", &[], 1024);
        assert_eq!(lines[0].end, 3, "the next line starts after `\\r\\n`");
        assert_eq!(lines[1].offset, 3);
    }
}
