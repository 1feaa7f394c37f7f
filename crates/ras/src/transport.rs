//! Line transport: bounded line reads from stdin (no unbounded memory on a huge line)
//! and compact, flushed, BOM-less reply lines.

use std::io::{self, BufRead, Write};

/// Longest accepted request line: 1 MiB plus a margin.
pub(crate) const MAX_LINE: usize = 1024 * 1024 + 4096;

/// One raw input line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A UTF-8 line, BOM stripped and trimmed (may be empty).
    Text(String),
    /// Longer than the limit; its bytes were discarded.
    TooLong,
    /// Not valid UTF-8.
    BadUtf8,
    /// End of input.
    Eof,
}

/// Reads one line of at most `max` bytes; the rest of a longer line is consumed and
/// dropped without being stored.
pub(crate) fn read_line<R: BufRead>(r: &mut R, max: usize) -> io::Result<Line> {
    let mut buf: Vec<u8> = Vec::new();
    let mut overflow = false;
    let mut any = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            if !any {
                return Ok(Line::Eof);
            }
            break;
        }
        any = true;
        let (chunk_len, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (avail.len(), false),
        };
        if !overflow {
            if buf.len() + chunk_len > max {
                overflow = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&avail[..chunk_len]);
            }
        }
        r.consume(if done { chunk_len + 1 } else { chunk_len });
        if done {
            break;
        }
    }
    if overflow {
        return Ok(Line::TooLong);
    }
    match String::from_utf8(buf) {
        Ok(s) => Ok(Line::Text(s.trim_start_matches('\u{feff}').trim().to_string())),
        Err(_) => Ok(Line::BadUtf8),
    }
}

/// Writes one compact JSON value followed by `\n` and flushes.
pub(crate) fn write_line<W: Write, T: serde::Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    let mut out = serde_json::to_vec(value).map_err(io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, max).unwrap();
            let eof = l == Line::Eof;
            out.push(l);
            if eof {
                return out;
            }
        }
    }

    #[test]
    fn bom_crlf_whitespace_and_last_line_without_newline() {
        let got = lines("\u{feff}{\"a\":1}\r\n  \r\n  x  \nlast".as_bytes(), 100);
        assert_eq!(
            got,
            [
                Line::Text("{\"a\":1}".into()),
                Line::Text("".into()),
                Line::Text("x".into()),
                Line::Text("last".into()),
                Line::Eof
            ]
        );
    }

    #[test]
    fn long_lines_are_discarded_and_reading_continues() {
        let mut input = vec![b'a'; 50];
        input.extend_from_slice(b"\nok\n\xff\xfe\n");
        assert_eq!(lines(&input, 20), [Line::TooLong, Line::Text("ok".into()), Line::BadUtf8, Line::Eof]);
    }
}
