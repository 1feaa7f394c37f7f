//! A provider that cannot start (e.g. its `--log-file` cannot be opened) still speaks the
//! protocol: every request is answered with one JSON-RPC error naming the reason, so RAS
//! shows it instead of a silent provider, and nothing else is written to stdout.

use crate::errors::INTERNAL_ERROR;
use crate::transport::{read_line, write_line, Line, MAX_LINE};
use crate::wire::{decode, Echo, Reply};
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

/// Answers every request on stdin with `-32603 "polyvisor: <reason>"` until EOF, then
/// exits 1 (the provider did not run).
pub fn refuse(reason: &str) -> ExitCode {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let _ = refuse_on(reason, &mut stdin.lock(), &mut stdout.lock());
    ExitCode::FAILURE
}

fn refuse_on<R: BufRead, W: Write>(reason: &str, input: &mut R, output: &mut W) -> io::Result<()> {
    let message = format!("polyvisor: {reason}");
    loop {
        let echo = match read_line(input, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::Text(t) if t.is_empty() => continue,
            Line::Text(t) => match decode(&t) {
                Ok(req) => Echo { id: req.id, jsonrpc: req.jsonrpc },
                Err((_, echo)) => echo,
            },
            Line::TooLong | Line::BadUtf8 => Echo::default(),
        };
        write_line(output, &Reply::err(&echo, INTERNAL_ERROR, &message))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_gets_the_reason_with_its_id() {
        let input = "{\"id\":1,\"method\":\"provider/initialize\"}\n\n{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"guests/list\"}\nnot json\n";
        let mut out = Vec::new();
        refuse_on("cannot open the log file /x: denied", &mut input.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let m = "polyvisor: cannot open the log file /x: denied";
        assert_eq!(
            text,
            format!(
                "{{\"id\":1,\"error\":{{\"code\":-32603,\"message\":\"{m}\"}}}}\n\
                 {{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"error\":{{\"code\":-32603,\"message\":\"{m}\"}}}}\n\
                 {{\"error\":{{\"code\":-32603,\"message\":\"{m}\"}}}}\n"
            )
        );
    }
}
