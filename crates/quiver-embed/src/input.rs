//! Reading input texts from files and streams.

use std::io::BufRead;

use crate::error::{EmbedError, Result};

/// Read `reader` as one text per line (`\n` or `\r\n` endings). A line that is not valid UTF-8
/// is an [`EmbedError::InvalidUtf8`] naming the line; nothing is replaced silently.
pub fn read_lines<R: BufRead>(mut reader: R) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| EmbedError::io("<input>", e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => lines.push(s.to_owned()),
            Err(e) => {
                return Err(EmbedError::InvalidUtf8 {
                    line: line_no,
                    offset: e.valid_up_to(),
                })
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_crlf() {
        let v = read_lines(&b"a\r\nb\n\nc"[..]).unwrap();
        assert_eq!(v, vec!["a", "b", "", "c"]);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = read_lines(&b"ok\nbad \xff here\n"[..]).unwrap_err();
        assert!(
            matches!(err, EmbedError::InvalidUtf8 { line: 2, offset: 4 }),
            "{err}"
        );
    }
}
