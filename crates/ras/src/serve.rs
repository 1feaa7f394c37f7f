//! The serve loop: one reply line per non-blank request line, until EOF.

use crate::errors::RpcError;
use crate::methods;
use crate::session::Session;
use crate::transport::{read_line, write_line, Line, MAX_LINE};
use crate::wire::{decode, Echo, Reply};
use std::io::{self, BufRead, Write};
use std::panic::AssertUnwindSafe;
use tokio::runtime::Runtime;

/// The whole provider process: [`serve`] until EOF (or broken streams), then close the
/// session's drivers so that their backend sessions are released (bounded).
pub(crate) fn serve_process<R: BufRead, W: Write>(
    rt: &Runtime,
    session: &mut Session,
    input: &mut R,
    output: &mut W,
) -> io::Result<()> {
    let result = serve(rt, session, input, output);
    rt.block_on(session.close());
    result
}

/// Serves requests from `input` to `output` until EOF. Returns an error only when the
/// streams themselves fail (a bad line is answered and the loop continues).
pub(crate) fn serve<R: BufRead, W: Write>(
    rt: &Runtime,
    session: &mut Session,
    input: &mut R,
    output: &mut W,
) -> io::Result<()> {
    loop {
        let text = match read_line(input, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::Text(t) if t.is_empty() => continue,
            Line::Text(t) => t,
            Line::TooLong => {
                reply_err(
                    session,
                    output,
                    &Echo::default(),
                    &RpcError::parse(&format!("the line exceeds {MAX_LINE} bytes")),
                )?;
                continue;
            }
            Line::BadUtf8 => {
                reply_err(session, output, &Echo::default(), &RpcError::parse("the line is not valid UTF-8"))?;
                continue;
            }
        };
        let req = match decode(&text) {
            Ok(r) => r,
            Err((e, echo)) => {
                tracing::info!(code = e.code, "IN invalid request");
                reply_err(session, output, &echo, &e)?;
                continue;
            }
        };
        tracing::info!(method = %req.method, "IN");
        session.begin_request();
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(methods::dispatch(session, &req))))
            .unwrap_or_else(|_| Err(RpcError::internal(format!("Internal error while handling {}", req.method))));
        let echo = Echo { id: req.id.clone(), jsonrpc: req.jsonrpc };
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(v) => {
                tracing::info!(method = %req.method, ms, "OUT ok");
                write_line(output, &Reply::ok(&echo, &v))?;
            }
            Err(e) => {
                tracing::info!(method = %req.method, ms, code = e.code, error = %e.message, "OUT error");
                reply_err(session, output, &echo, &e)?;
            }
        }
    }
}

fn reply_err<W: Write>(session: &Session, output: &mut W, echo: &Echo, e: &RpcError) -> io::Result<()> {
    let message = format!("{}: {}", session.prefix(), e.message);
    write_line(output, &Reply::err(echo, e.code, &message))
}
