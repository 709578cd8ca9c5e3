//! Where the lines come from: files (plain or gzip, told by their first
//! bytes), the files of a directory, or standard input (`-`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::PullLogError;

/// A line longer than this is cut there (and, having lost its end, is
/// rejected): a file of binary data must not be read into memory whole.
pub const MAX_LINE: usize = 1 << 20;

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

impl Source {
    /// How reports name it: the path, or `-`.
    pub fn name(&self) -> PathBuf {
        match self {
            Source::File(path) => path.clone(),
            Source::Stdin => PathBuf::from("-"),
        }
    }
}

/// The files `inputs` name, in order: a file as it is, a directory's
/// regular files (not its subdirectories) sorted by name, a glob's matches
/// sorted by name (a directory matched gives its files), `-` as standard
/// input (once). A path that cannot be read, a directory without files, or
/// a glob that matches nothing is an error: the operator meant to give logs
/// there.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<Source>, PullLogError> {
    let mut sources = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            if !sources.contains(&Source::Stdin) {
                sources.push(Source::Stdin);
            }
            continue;
        }
        let read_error = |source| PullLogError::Read {
            path: input.clone(),
            source,
        };
        let meta = match std::fs::metadata(input) {
            Ok(meta) => meta,
            // Quoted from the shell (a cron line, a unit file), or a
            // pattern the shell found nothing for.
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_glob(input) => {
                for path in glob(input)? {
                    if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                        sources.extend(directory(&path)?.into_iter().map(Source::File));
                    } else {
                        sources.push(Source::File(path));
                    }
                }
                continue;
            }
            Err(e) => return Err(read_error(e)),
        };
        if !meta.is_dir() {
            sources.push(Source::File(input.clone()));
            continue;
        }
        sources.extend(directory(input)?.into_iter().map(Source::File));
    }
    Ok(sources)
}

/// The regular files of `dir` (links to files count: /var/log/containers
/// links to pod logs), sorted; none is an error.
fn directory(dir: &Path) -> Result<Vec<PathBuf>, PullLogError> {
    let read_error = |source| PullLogError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(PullLogError::Empty {
            path: dir.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

/// Whether `path` holds glob syntax (`*`, `?`, `[...]`, `{a,b}`).
fn is_glob(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '[', '{'])
}

/// The paths `pattern` matches, sorted: `*`, `?`, `[...]` and `{a,b}`
/// within one component, `**` across any number. The walk starts at the
/// longest leading part without glob syntax and goes no deeper than the
/// pattern can match.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, PullLogError> {
    let text = pattern.to_string_lossy();
    let invalid = |reason: String| PullLogError::Glob {
        pattern: pattern.to_owned(),
        reason,
    };
    let matcher = globset::GlobBuilder::new(&text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| invalid(e.kind().to_string()))?
        .compile_matcher();
    let components: Vec<Component> = pattern.components().collect();
    let literal = components
        .iter()
        .take_while(|c| !is_glob(Path::new(c.as_os_str())))
        .count();
    let base: PathBuf = if literal == 0 {
        PathBuf::from(".")
    } else {
        components[..literal].iter().collect()
    };
    let rest = &components[literal..];
    let depth = if rest.iter().any(|c| c.as_os_str() == "**") {
        usize::MAX
    } else {
        rest.len()
    };
    let mut matched = Vec::new();
    for entry in walkdir::WalkDir::new(&base).min_depth(1).max_depth(depth) {
        let entry = entry.map_err(|e| PullLogError::Read {
            path: e.path().map_or_else(|| base.clone(), Path::to_owned),
            source: e.into(),
        })?;
        let path = if literal == 0 {
            entry.path().strip_prefix(".").unwrap_or(entry.path())
        } else {
            entry.path()
        };
        if matcher.is_match(path) {
            matched.push(path.to_owned());
        }
    }
    if matched.is_empty() {
        return Err(invalid("matches no file".to_owned()));
    }
    matched.sort();
    Ok(matched)
}

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not at all.
    None,
    /// gzip (`1f 8b`), possibly several members, as logrotate and kubelet
    /// write.
    Gzip,
}

/// An open input, decompressed.
pub struct Opened {
    /// Its lines.
    pub reader: Box<dyn BufRead>,
    /// How it was compressed.
    pub compression: Compression,
}

/// Opens `source`, telling gzip by its first bytes, whatever the name says.
/// Compressions that are not read are refused by name.
pub fn open(source: &Source) -> Result<Opened, PullLogError> {
    let name = source.name();
    let read_error = |source| PullLogError::Read {
        path: name.clone(),
        source,
    };
    let raw: Box<dyn Read> = match source {
        Source::File(path) => Box::new(File::open(path).map_err(read_error)?),
        Source::Stdin => Box::new(io::stdin()),
    };
    let mut buffered = BufReader::with_capacity(1 << 16, raw);
    let head = buffered.fill_buf().map_err(read_error)?.to_vec();
    let unsupported = |format: &str, tool: &str| PullLogError::Compressed {
        path: name.clone(),
        format: format.to_owned(),
        tool: tool.to_owned(),
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        return Ok(Opened {
            reader: Box::new(BufReader::with_capacity(1 << 16, decoder)),
            compression: Compression::Gzip,
        });
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(unsupported("zstd", "zstdcat"));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Err(unsupported("xz", "xzcat"));
    }
    if head.starts_with(b"BZh") {
        return Err(unsupported("bzip2", "bzcat"));
    }
    Ok(Opened {
        reader: Box::new(buffered),
        compression: Compression::None,
    })
}

/// Reads the next line into `line` (without its `\n`), keeping at most
/// [`MAX_LINE`] bytes of it; `Ok(None)` at the end, `Ok(Some(cut))` with
/// `cut` true when the line was longer.
pub fn next_line(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> io::Result<Option<bool>> {
    line.clear();
    let mut cut = false;
    let mut read_any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(read_any.then_some(cut));
        }
        read_any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = done.unwrap_or(buf.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(Some(cut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lines(data: &[u8]) -> Vec<(String, bool)> {
        let mut reader: &[u8] = data;
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let Some(cut) = next_line(&mut reader, &mut line).unwrap() {
            out.push((String::from_utf8_lossy(&line).into_owned(), cut));
        }
        out
    }

    #[test]
    fn lines_end_at_newlines_and_the_last_needs_none() {
        assert_eq!(
            lines(b"a\nbb\n\nc"),
            [
                ("a".into(), false),
                ("bb".into(), false),
                (String::new(), false),
                ("c".into(), false)
            ]
        );
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn an_endless_line_is_cut_and_the_next_one_read_whole() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\n");
        let read = lines(&data);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0.len(), MAX_LINE);
        assert!(read[0].1);
        assert_eq!(read[1], ("next".into(), false));
    }

    #[test]
    fn gzip_is_told_by_its_bytes_and_other_compressions_are_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain_name = dir.path().join("access.log.gz");
        std::fs::write(&plain_name, b"plain\n").unwrap();
        let gz_name = dir.path().join("access.log");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"one\n").unwrap();
        let mut data = encoder.finish().unwrap();
        // A second member, as `cat a.gz b.gz` makes.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"two\n").unwrap();
        data.extend(encoder.finish().unwrap());
        std::fs::write(&gz_name, data).unwrap();
        let zst = dir.path().join("old.log");
        std::fs::write(&zst, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();

        let read_all = |path: &Path| {
            let mut opened = open(&Source::File(path.to_path_buf())).unwrap();
            let mut text = String::new();
            opened.reader.read_to_string(&mut text).unwrap();
            (text, opened.compression)
        };
        assert_eq!(read_all(&plain_name), ("plain\n".into(), Compression::None));
        assert_eq!(read_all(&gz_name), ("one\ntwo\n".into(), Compression::Gzip));
        let err = open(&Source::File(zst.clone())).err().unwrap().to_string();
        assert!(err.contains("zstd") && err.contains("zstdcat"), "{err}");
        assert!(err.contains(&zst.display().to_string()), "{err}");
    }

    #[test]
    fn a_directory_gives_its_files_sorted_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.log"), "").unwrap();
        std::fs::write(dir.path().join("a.log.1.gz"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let sources = expand(&[dir.path().to_path_buf(), "-".into(), "-".into()]).unwrap();
        assert_eq!(
            sources,
            [
                Source::File(dir.path().join("a.log.1.gz")),
                Source::File(dir.path().join("b.log")),
                Source::Stdin
            ]
        );
        let err = expand(&[dir.path().join("sub")]).unwrap_err().to_string();
        assert!(err.contains("sub") && err.contains("no files"), "{err}");
        let err = expand(&[dir.path().join("missing")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
